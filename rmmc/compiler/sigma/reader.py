"""Sigma YAML (rules, correlations, filters; one or several documents) into the detection model.

For each rule the reader maps the logsource to the Defender table pySigma's `microsoft_xdr`
pipeline routes it to (`Schema.table_for_logsource`; `service: <DeviceTable>`, which rmmc's
Sigma backend writes for tables without a Sigma logsource, names that table), and each Sigma
field to that table's column (`TableSchema.column_for_sigma`, the inverse map per table:
`Image` is `FolderPath` in process events and `InitiatingProcessFolderPath` in network events).
A field with no column there keeps its Sigma name, with a warning.  A logsource with no
Defender table keeps every field under its Sigma name (`Source.taxonomy == "sigma"`).

Documents that belong together are read together: a correlation (event_count) becomes its
base rule with a `summarize count() by ...` output, and a filter document ANDs its condition
into the rules it names, as pySigma applies it.  Nothing raises: every problem is a
diagnostic at its place in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Severity, Span, error, has_error, warning
from rmmc.compiler.prefilter import drop_implied
from rmmc.compiler.schema import load_schema
from rmmc.compiler.slots_init import fast_init
from rmmc.compiler.sigma.condition import (CAnd, CExpr, CNot, ConditionError, Quantified, Ref,
                                           names_for, parse_condition)
from rmmc.compiler.sigma.predicates import plain_item, plain_predicate, predicate
from rmmc.compiler.sigma.values import (KNOWN_MODIFIERS, LIST_MODIFIERS, SigmaValueProblem, Unsupported,
                                        modified)
from rmmc.compiler.sigma.yaml_tree import Y, load_stream, plain, plain_mapping

_LEVELS = ("informational", "low", "medium", "high", "critical")
_TECHNIQUE = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)
_TACTIC = re.compile(r"^attack\.([a-z]+(?:[-_][a-z]+)*)$")
_TIMESPAN = re.compile(r"^(\d+)([smhdwMy])$")
_TIMESPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MERGEABLE = frozenset({ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.ENDSWITH, ir.Op.TERM,
                        ir.Op.TERM_PREFIX, ir.Op.TERM_SUFFIX, ir.Op.REGEX, ir.Op.CIDR})
COUNT_COLUMN = "Count"


@dataclass(frozen=True, slots=True)
class SigmaRule:
    """One rule read from a Sigma file: the rule (None when it has an error), its
    diagnostics, its metadata as written, and where its document(s) sit in the file."""

    rule: ir.Rule | None
    diagnostics: tuple[Diagnostic, ...]
    title: str | None
    metadata: dict[str, Any]
    span: Span
    kind: str = "rule"  # rule, correlation


fast_init(SigmaRule)  # (one per rule read: built through its slots)


def read_sigma_text(text: str, path: str = "<sigma>", schema: Any = "default",
                    source: LineIndex | None = None, composed: list[Any] | None = None
                    ) -> tuple[list[SigmaRule], list[Diagnostic]]:
    """Every rule of a Sigma YAML stream, and the file-level diagnostics.  `composed`: the
    stream's YAML nodes, when the caller has them already (`yaml_tree.compose_stream`)."""
    source = source or LineIndex(text)
    documents, problems = load_stream(text, source, composed)
    if problems:
        return [], problems
    if schema == "default":
        schema = load_schema()
    roots, duplicates = [], []
    for d in documents:  # (a loop: two comprehensions were two calls per file)
        if d.root is not None:
            roots.append(d.root)
            duplicates.append(list(d.duplicates))
    return _StreamReader(schema, path).read(roots, duplicates)


def read_sigma_rules(text: str, path: str = "<sigma>") -> list[tuple[ir.Rule | None, list[Diagnostic]]]:
    """(rule, diagnostics) for each rule of a Sigma YAML stream (the library's short form);
    file-level problems come back as one entry with no rule."""
    rules, problems = read_sigma_text(text, path)
    out = [(r.rule, list(r.diagnostics)) for r in rules]
    if problems:
        out.append((None, problems))
    return out


# ------------------------------------------------------------------ the stream

_ROUTES: dict[tuple, tuple[ir.Source, Any]] = {}
"""(schema, product, category, service) -> the rule's source and the table the logsource goes
to (or None): the same for every rule of that logsource (a schema never changes once loaded,
and a source is a frozen value), and `table_for_logsource` looks at every table's logsources."""


def _route(schema: Any, product: str | None, category: str | None, service: str | None
           ) -> tuple[ir.Source, Any]:
    """The source of a rule with this logsource, and its table (None: no Defender table)."""
    table = None
    if schema is not None:
        if service is not None and schema.table(service) is not None:
            table = schema.table(service)
        else:
            table = schema.table_for_logsource(product, category, service)
    if table is None:
        return ir.Source(None, ir.EventKind.UNKNOWN, product, category, service, taxonomy="sigma"), None
    return ir.Source(table.name, ir.EventKind(table.event_kind), product, category, service), table


_LOGSOURCE_KEYS = ("product", "category", "service")


def _logsource_texts(values: dict[str, Y]) -> list[str | None]:
    """The logsource's product, category and service as text (None when missing or null), as
    `str(plain(node))` gives each (one call per rule, not one per key)."""
    texts = []
    for name in _LOGSOURCE_KEYS:
        node = values.get(name)
        value = None if node is None else node.value
        texts.append(value if value is None or value.__class__ is str else str(plain(node)))
    return texts


class _StreamReader:
    def __init__(self, schema: Any, path: str):
        self.schema = schema
        self.path = path

    def read(self, roots: list[Y], duplicates: list[list[Diagnostic]]) -> tuple[list[SigmaRule], list[Diagnostic]]:
        file_level: list[Diagnostic] = []
        rules: list[tuple[Y, SigmaRule]] = []
        correlations: list[Y] = []
        filters: list[Y] = []
        for root, dups in zip(roots, duplicates):
            if root.value.__class__ is not dict:  # (a Y's mapping is a plain dict)
                file_level.append(error("a Sigma document must be a mapping (title:, logsource:, "
                                        "detection: ...)", root.span, "sigma-structure"))
                continue
            keys = root.value  # (a mapping: its keys looked up without `Y.get`)
            if keys.get("correlation") is not None:
                correlations.append(root)
            elif keys.get("filter") is not None:
                filters.append(root)
            elif keys.get("action") is not None and keys.get("detection") is None:
                file_level.append(error(
                    f"action: {plain(root.get('action'))!r} (a Sigma 1 rule collection) is not "
                    "supported: write each rule in full", root.key_span("action"), "sigma-unsupported"))
            elif keys.get("detection") is not None:
                rules.append((root, self.rule(root, dups)))
            else:
                file_level.append(error("not a Sigma rule: no detection, correlation or filter",
                                        root.span, "sigma-structure"))
        for f in filters:
            rules = self.apply_filter(f, rules, file_level)
        hidden: set[int] = set()
        out: list[SigmaRule] = []
        correlated: list[tuple[int, SigmaRule]] = []
        for c in correlations:
            result, bases = self.correlation(c, rules)
            spec = plain(c.get("correlation"))
            if not (isinstance(spec, dict) and spec.get("generate") is True):
                hidden.update(bases)  # Sigma: base rules are not output on their own by default
            position = min(bases) if bases else len(rules)
            correlated.append((position, result))
        for i, (_, rule) in enumerate(rules):
            for position, result in correlated:
                if position == i:
                    out.append(result)
            if i not in hidden:
                out.append(rule)
        out.extend(result for position, result in correlated if position >= len(rules))
        return out, file_level

    # -------------------------------------------------------------- one rule

    def rule(self, root: Y, duplicates: list[Diagnostic]) -> SigmaRule:
        found: list[Diagnostic] = list(duplicates)
        meta = plain_mapping(root, "detection")
        title = str(meta["title"]).strip() if meta.get("title") else None
        keys = root.value
        source, table = self.source(keys.get("logsource"), found, root)
        condition = _Detection(keys.get("detection"), table, found).condition()
        rule = None
        span = root.span
        if condition is not None and not has_error(found):
            rule = ir.Rule(self.metadata(meta, span), source, condition)
        path = self.path
        diagnostics = tuple([d.with_path(path) for d in found]) if found else ()  # (most: none)
        return SigmaRule(rule, diagnostics, title, meta, span)

    def source(self, logsource: Y | None, found: list[Diagnostic], root: Y) -> tuple[ir.Source, Any]:
        if logsource is None or logsource.value.__class__ is not dict:
            found.append(error("logsource: missing or not a mapping", (logsource or root).span,
                               "sigma-structure"))
            return ir.Source(None, taxonomy="sigma"), None
        product, category, service = _logsource_texts(logsource.value)
        key = (self.schema, product, category, service)
        routed = _ROUTES.get(key)
        if routed is None:
            if len(_ROUTES) > 4096:
                _ROUTES.clear()
            routed = _ROUTES[key] = _route(self.schema, product, category, service)
        return routed

    def metadata(self, meta: dict[str, Any], span: Span) -> ir.Metadata:
        """The rule's metadata (once per rule: each key looked up once, lists not copied, a
        remembered tag's meaning without a call)."""
        get = meta.get
        techniques: list[str] = []
        tactics: list[str] = []
        for tag in _items(get("tags")):
            meaning = _TAG_MEANINGS.get(tag) if tag.__class__ is str else None
            if meaning is None:
                meaning = _tag_meaning(tag if tag.__class__ is str else str(tag))
            technique, tactic = meaning
            if technique is not None:
                techniques.append(technique)
            elif tactic is not None:  # (a tag names one of them at most)
                tactics.append(tactic)
        level = str(get("level") or "").lower()
        # (positional, in `ir.Metadata`'s field order: a class called with keywords builds a
        # dict of them first, a third of this call; test_reader_speedups checks the order)
        return ir.Metadata(
            str(v) if (v := get("id")) else None,  # id
            str(v).strip() if (v := get("title")) else None,  # title
            str(v).strip() if (v := get("description")) else None,  # description
            str(v).strip() if (v := get("author")) else None,  # author
            _strs(get("references")),  # references
            tuple(tactics), tuple(techniques),
            level if level in _LEVELS else None,  # level
            str(v) if (v := get("status")) else None,  # status
            str(v) if (v := get("date")) else None,  # date
            str(v) if (v := get("modified")) else None,  # modified
            _texts(get("falsepositives")),  # false_positives
            self.path, span)  # source_path, source_span

    # -------------------------------------------------------------- filters

    def apply_filter(self, root: Y, rules: list[tuple[Y, SigmaRule]],
                     file_level: list[Diagnostic]) -> list[tuple[Y, SigmaRule]]:
        body = root.get("filter")
        if body is None or not body.is_map:
            file_level.append(error("filter: must be a mapping with rules, selections and a condition",
                                    root.span, "sigma-structure"))
            return rules
        wanted = {str(r) for r in _as_list(plain(body.get("rules")))}
        out = []
        applied = False
        for y, rule in rules:
            names = {str(rule.metadata.get("id")), str(rule.metadata.get("name"))}
            if rule.rule is None or not (wanted & names):
                out.append((y, rule))
                continue
            found: list[Diagnostic] = []
            detection = body.with_value({k: v for k, v in body.value.items() if k != "rules"})
            table = self.schema.table(rule.rule.source.table) if (self.schema and rule.rule.source.table) else None
            condition = _Detection(detection, table, found).condition()
            found = [d.with_path(self.path) for d in found]
            if condition is None or has_error(found):
                out.append((y, replace(rule, rule=None, diagnostics=rule.diagnostics + tuple(found))))
            else:
                new_rule = replace(rule.rule, condition=ir.all_of([rule.rule.condition, condition]))
                note = Diagnostic(Severity.NOTE, f"filter {plain(root.get('title'))!r} is applied "
                                  "(ANDed into the detection, as pySigma does)", root.span, "sigma-filter",
                                  self.path)
                out.append((y, replace(rule, rule=new_rule, diagnostics=rule.diagnostics + tuple(found) + (note,))))
            applied = True
        if not applied:
            file_level.append(warning(
                f"filter {plain(root.get('title'))!r} names no rule of this file "
                f"({', '.join(sorted(wanted)) or 'none'}): not applied", root.span, "sigma-filter"))
        return out

    # -------------------------------------------------------------- correlations

    def correlation(self, root: Y, rules: list[tuple[Y, SigmaRule]]) -> tuple[SigmaRule, list[int]]:
        found: list[Diagnostic] = []
        meta = {k: plain(v) for k, v in root.value.items() if k != "correlation"}
        title = str(meta["title"]).strip() if meta.get("title") else None
        body = root.get("correlation")
        spec = plain(body) if body is not None else None
        bases: list[int] = []

        def failed(message: str, span: Span) -> tuple[SigmaRule, list[int]]:
            found.append(error(message, span, "sigma-correlation"))
            return SigmaRule(None, tuple(d.with_path(self.path) for d in found), title, meta,
                             root.span, "correlation"), bases

        if not isinstance(spec, dict):
            return failed("correlation: must be a mapping (type, rules, group-by, timespan, condition)",
                          root.span)
        wanted = [str(r) for r in _as_list(spec.get("rules"))]
        for name in wanted:
            hits = [i for i, (_, r) in enumerate(rules)
                    if name in (str(r.metadata.get("id")), str(r.metadata.get("name")))]
            if not hits:
                return failed(f"correlation: rule {name!r} is not in this file", body.key_span("rules"))
            bases.extend(hits)
        kind = spec.get("type")
        if kind not in ("event_count", "value_count"):
            return failed(f"correlation type {kind!r} is not supported (event_count and value_count "
                          "have a form in rmmc's detection model)", body.key_span("type"))
        if len(bases) != 1:
            return failed("correlation: event_count over several rules is not supported",
                          body.key_span("rules"))
        base = rules[bases[0]][1]
        if base.rule is None:
            found.extend(base.diagnostics)
            return failed(f"correlation: its rule {wanted[0]!r} has errors", body.key_span("rules"))
        table = self.schema.table(base.rule.source.table) if (self.schema and base.rule.source.table) else None
        group_by = []
        for key in _as_list(spec.get("group-by")):
            column = _column(str(key), table, found, body.key_span("group-by"))[0]
            group_by.append(column)
        window = _timespan(spec.get("timespan"))
        if window is None:
            return failed(f"correlation: timespan {spec.get('timespan')!r} is not a Sigma timespan "
                          "(a number and one of s m h d w)", body.key_span("timespan"))
        condition = spec.get("condition")
        counted = None
        if kind == "value_count":
            if not isinstance(condition, dict) or not isinstance(condition.get("field"), str):
                return failed("correlation: a value_count condition names the field whose distinct "
                              "values it counts (`field:`)", body.key_span("condition"))
            condition = {k: v for k, v in condition.items() if k != "field"}
            counted = _column(str(spec["condition"]["field"]), table, found, body.key_span("condition"))[0]
        threshold = _threshold(condition)
        if threshold is None:
            return failed(f"correlation: condition {spec.get('condition')!r} is not supported "
                          "(one of gt, gte, lt, lte, eq with a number)", body.key_span("condition"))
        found.append(warning(
            f"correlation timespan {spec.get('timespan')} is read as the rule's lookback: events are "
            "counted over one window ending now, not over every sliding window of that length",
            body.key_span("timespan"), "sigma-correlation"))
        stages = correlation_stages(group_by, threshold, counted, table)
        metadata = self.metadata({**base.metadata, **{k: v for k, v in meta.items() if v is not None}}, root.span)
        rule = replace(base.rule, metadata=metadata, stages=stages,
                       lookback=ir.Lookback(window, str(spec.get("timespan"))))
        diagnostics = tuple(d.with_path(self.path) for d in found) + base.diagnostics
        if has_error(diagnostics):
            rule = None
        return SigmaRule(rule, diagnostics, title or base.title, meta, root.span, "correlation"), bases


# ------------------------------------------------------------------ detection


class _Detection:
    """One `detection:` block (or filter body) into one condition."""

    def __init__(self, node: Y | None, table: Any, found: list[Diagnostic]):
        self.node = node
        self.table = table
        self.found = found
        self.built: dict[str, ir.Condition | None] = {}
        # (asked for each item: looked up once; `_readers` makes them for a table's first rule)
        readers = _NO_READERS if table is None else _TABLE_READERS.get(table)
        self.readers = readers if readers is not None else _readers(table)

    def condition(self) -> ir.Condition | None:
        node = self.node
        if node is None or node.value.__class__ is not dict:
            self.found.append(error("detection: must be a mapping of selections and a condition",
                                    node.span if node else None, "sigma-structure"))
            return None
        selections = node.value  # (its keys looked up without `Y.get`)
        cond_node = selections.get("condition")
        if cond_node is None:
            self.found.append(error("detection: no condition", node.span, "sigma-structure"))
            return None
        self.names = names = []
        for key in selections:  # (a loop: a comprehension is a call per rule)
            if key != "condition" and key != "timeframe":
                names.append(key)
        if selections.get("timeframe") is not None:
            self.found.append(error("detection: timeframe (Sigma 1 aggregation) is not supported; "
                                    "use a correlation rule", node.key_span("timeframe"), "sigma-unsupported"))
            return None
        texts = cond_node.value if cond_node.is_list else [cond_node]
        parts = []
        for item in texts:
            if not isinstance(item.value, str):
                self.found.append(error("condition: must be text", item.span, "sigma-structure"))
                return None
            try:
                tree = parse_condition(item.value)
            except ConditionError as exc:
                self.found.append(error(str(exc), _at(item, exc.column), "sigma-condition"))
                return None
            built = self.resolve(tree, item)
            if built is None:
                return None
            parts.append(built)
        return parts[0] if len(parts) == 1 else ir.any_of(parts)  # (either of one is that one)

    def resolve(self, expr: CExpr, where: Y) -> ir.Condition | None:
        if isinstance(expr, Ref):
            if expr.name not in self.names:
                self.found.append(error(f"condition: no selection named {expr.name!r}",
                                        _at(where, expr.column), "sigma-condition"))
                return None
            return self.selection(expr.name)
        if isinstance(expr, Quantified):
            names = names_for(expr.pattern, self.names)
            if not names:
                self.found.append(error(f"condition: {expr.quantity} of {expr.pattern} matches no selection",
                                        _at(where, expr.column), "sigma-condition"))
                return None
            items = []
            for name in names:  # (loops here: a comprehension is a call of its own)
                items.append(self.selection(name))
            if not all(items):  # (see "Parts not read" below)
                return None
            if len(items) == 1:  # (all or any of one is that one)
                return items[0]
            return ir.all_of(items) if expr.quantity == "all" else ir.any_of(items)
        if isinstance(expr, CNot):
            inner = self.resolve(expr.item, where)
            if isinstance(inner, ir.Predicate):  # the same test (a comparison stays unknown on null)
                return inner.negate()
            return None if inner is None else ir.Not(inner)
        items = []
        for part in expr.items:
            items.append(self.resolve(part, where))
        if not all(items):  # (see "Parts not read" below)
            return None
        return ir.all_of(items) if isinstance(expr, CAnd) else ir.any_of(items)

    def selection(self, name: str) -> ir.Condition | None:
        built = self.built
        if name not in built:
            built[name] = self._selection(self.node.value[name], name)
        return built[name]

    def _selection(self, node: Y, name: str) -> ir.Condition | None:
        value = node.value  # (a Y's collection is a plain dict or list)
        if value.__class__ is dict:
            items = []
            for key, v in value.items():  # (a loop: a comprehension is a call per selection)
                items.append(self.item(key, node.key_span(key), v))
            if not all(items):  # (see "Parts not read" below)
                return None
            if len(items) == 1:  # most selections: one item, its own AND
                return items[0]
            return ir.all_of(drop_implied(items))
        if value.__class__ is list and value and all(v.value.__class__ is dict for v in value):
            maps = [self._selection(v, name) for v in value]
            return ir.any_of(maps) if all(maps) else None  # (see "Parts not read" below)
        if node.is_list and any(v.is_map for v in node.value):
            self.found.append(error(f"selection {name!r} mixes field maps and keywords",
                                    node.span, "sigma-structure"))
            return None
        self.found.append(error(
            f"selection {name!r} is a keyword (full-text) search: rmmc's detection model tests "
            "named fields only", node.span, "sigma-keywords"))
        return None

    def item(self, key: str, key_span: Span, node: Y) -> ir.Condition | None:
        known = _KEYS.get((self.table, key))
        if known is None:
            known = self.key(key, key_span)
            if known is None:
                return None
        field, modifiers, value_modifiers, link_all, neq, reading, column, column_type, unmapped = known
        if unmapped:
            self.found.append(_unmapped(field, self.table, key_span))
        value = node.value  # (a Y's collection is a plain list or dict)
        if value.__class__ is dict:
            self.found.append(error(f"{key}: a value must be a scalar or a list", node.span, "sigma-structure"))
            return None
        raws = value if value.__class__ is list else [node]
        condition = plain_item(raws, value_modifiers, column, column_type, link_all, key_span)
        if condition is not None:  # most items: plain texts or numbers, one predicate (what `_link` makes)
            if reading is not None:
                condition = _read_values(condition, reading, self.found)
            return ir.Not(condition) if neq else condition
        per_value: list[list[ir.Predicate]] = []
        for raw in raws:
            if raw.is_map or raw.is_list:
                self.found.append(error(f"{key}: a value must be a scalar", raw.span, "sigma-structure"))
                return None
            simple = plain_predicate(column, column_type, raw.value, value_modifiers, key_span)
            if simple is not None:  # the common case, as `apply_modifiers` + `predicate` give it
                per_value.append([simple])
                continue
            try:
                values = modified(raw.value, modifiers)
            except Unsupported as exc:
                self.found.append(error(f"{key}: {exc}", key_span, "sigma-unsupported"))
                return None
            except SigmaValueProblem as exc:
                self.found.append(error(f"{key}: {exc}", raw.span, "sigma-value"))
                return None
            predicates = [predicate(column, column_type, v, key_span) for v in values]
            for p in predicates:
                if p.op is ir.Op.EQUALS and p.values == ("",) and p.field.type == "string":
                    self.found.append(Diagnostic(
                        Severity.NOTE, f"{field}: '' also matches events without the field (in the "
                        "detection model, as in KQL, a missing string reads as '')", raw.span, "sigma-empty"))
            per_value.append(predicates)
        if not per_value:
            return ir.Const(link_all)
        condition = _link(per_value, link_all)
        if reading is not None:
            condition = _read_values(condition, reading, self.found)
        return ir.Not(condition) if neq else condition

    def key(self, key: str, key_span: Span) -> tuple | None:
        """How a detection key (`Field|mod|mod`) reads on this table: (field, modifiers, value
        modifiers, `all`, `neq`, the table's reader of the field, column, column type, whether
        the field has no column), remembered in `_KEYS`; None (with the error) for a key that
        cannot be read."""
        field, *modifiers = key.split("|")
        if not field:
            self.found.append(error(f"{key!r}: a keyword (full-text) search with modifiers: rmmc's "
                                    "detection model tests named fields only", key_span, "sigma-keywords"))
            return None
        for m in modifiers:
            if m not in KNOWN_MODIFIERS:
                self.found.append(error(f"unknown modifier {m!r} on {field}", key_span, "sigma-modifier"))
                return None
        reading = self.readers.get(field)
        if reading is not None:  # a field the table holds in another convention
            column, column_type, unmapped = field, "string", False
        else:
            column, column_type, unmapped = _column_of(field, self.table)
        known = (field, tuple(modifiers), tuple(m for m in modifiers if m not in LIST_MODIFIERS),
                 "all" in modifiers, "neq" in modifiers, reading, column, column_type, unmapped)
        if len(_KEYS) > 4096:
            _KEYS.clear()
        _KEYS[(self.table, key)] = known
        return known


# Parts not read: a part that could not be read is None (its error found already); `all(parts)` says
# none is, without a Python call per part or per check: a condition is never false (no IR node
# defines `__bool__` or `__len__`; `test_reader_speedups` checks it).


_KEYS: dict[tuple, tuple] = {}
"""(table, detection key) -> how the key reads (`_Detection.key`): the same for every item
with that key on that table (a table, its Sigma readers and its columns never change once
loaded), and the SigmaHQ rules write a few thousand keys over 8,600 items."""


def _readers(table: Any) -> dict:
    """Sigma fields the table holds in another convention (hives, DOMAIN\\name, Hashes, EventType):
    `rmmc.environments.reading`."""
    if table is None:
        return _NO_READERS
    readers = _TABLE_READERS.get(table)
    if readers is None:  # (imported on first use: a rule with no table never loads environments)
        from rmmc.environments.reading import sigma_readers

        readers = _TABLE_READERS[table] = sigma_readers(table)
    return readers


_NO_READERS: dict = {}
_TABLE_READERS: dict[Any, dict] = {}
"""Table -> `sigma_readers(table)` (built once per table there; looked up here without
importing it for every rule)."""


def _read_values(condition: ir.Condition, reading: Any, found: list[Diagnostic]) -> ir.Condition:
    """Each predicate of one detection item rewritten onto the table's columns."""
    if isinstance(condition, ir.Predicate):
        return reading(condition, found)
    if isinstance(condition, ir.And):
        return ir.all_of([_read_values(c, reading, found) for c in condition.operands])
    if isinstance(condition, ir.Or):
        return ir.any_of([_read_values(c, reading, found) for c in condition.operands])
    if isinstance(condition, ir.Not):
        return ir.Not(_read_values(condition.operand, reading, found))
    return condition


def _link(per_value: list[list[ir.Predicate]], link_all: bool) -> ir.Condition:
    """Any (or, with `all`, every) raw value; a raw value is any of its expansions.  Single
    predicates that differ only in their value are merged into one multi-valued predicate."""
    if link_all and all(len(ps) == 1 for ps in per_value):
        return _merge([ps[0] for ps in per_value], all_values=True)
    if link_all:
        return ir.all_of([_merge(ps, all_values=False) for ps in per_value])
    return _merge([p for ps in per_value for p in ps], all_values=False)


def _merge(predicates: list[ir.Predicate], all_values: bool) -> ir.Condition:
    if len(predicates) == 1:  # most items: one value, nothing to merge
        return predicates[0]
    groups: dict[tuple, list[ir.Predicate]] = {}  # (in the order each group first occurs)
    for p in predicates:  # (one lookup per predicate: its key's hash calls Field's and Op's)
        key = (p.field, p.op, p.case_sensitive, p.negated) if p.op in _MERGEABLE else (id(p),)
        members = groups.get(key)
        if members is None:
            groups[key] = [p]
        else:
            members.append(p)
    out: list[ir.Condition] = []
    for members in groups.values():
        first = members[0]
        if len(members) == 1:
            out.append(first)
            continue
        values = tuple(v for m in members for v in m.values)
        out.append(ir.Predicate(first.field, first.op, values, all_values, first.case_sensitive,
                                first.negated, first.span))
    return ir.all_of(out) if all_values else ir.any_of(out)


def _column(field: str, table: Any, found: list[Diagnostic], span: Span) -> tuple[str, str | None]:
    """The column a Sigma field lands on in the rule's table, and its type."""
    column, column_type, unmapped = _column_of(field, table)
    if unmapped:
        found.append(_unmapped(field, table, span))
    return column, column_type


def _column_of(field: str, table: Any) -> tuple[str, str | None, bool]:
    """`_column`'s column and type, and whether the field has no column in the table (the
    warning `_column` gives then)."""
    if table is None:
        return field, None, False
    column = table.column_for_sigma(field)
    if column is None and table.column_type(field) is not None:
        column = field  # a Defender column name written as is (rmmc's own Sigma does this)
    if column is None:
        return field, None, True
    return column, table.column_type(column), False


def _unmapped(field: str, table: Any, span: Span) -> Diagnostic:
    return warning(f"Sigma field {field} has no column in {table.name}: kept as {field!r}", span,
                   "sigma-field")


def _at(node: Y, column: int) -> Span:
    """The place of a column of a condition text in the file (exact for a plain one-line scalar)."""
    if node.plain_style:
        return Span(node.span.offset + column, node.span.offset + column, node.span.line,
                    node.span.column + column)
    return node.span


def _tag_meaning(tag: str) -> tuple[str | None, str | None]:
    """(ATT&CK technique, tactic) a tag names (at most one of them): `attack.t1059.001` is
    T1059.001, `attack.command-and-control` is CommandAndControl.  Remembered per tag: the
    SigmaHQ rules write a few hundred tags thousands of times."""
    meaning = _TAG_MEANINGS.get(tag)
    if meaning is None:
        if (m := _TECHNIQUE.match(tag)):
            meaning = (m.group(1).upper(), None)
        elif (m := _TACTIC.match(tag)):
            meaning = (None, "".join(w.capitalize() for w in re.split(r"[-_]", m.group(1))))
        else:
            meaning = (None, None)
        if len(_TAG_MEANINGS) > 4096:
            _TAG_MEANINGS.clear()
        _TAG_MEANINGS[tag] = meaning
    return meaning


_TAG_MEANINGS: dict[str, tuple[str | None, str | None]] = {}


def _items(value: Any) -> list[Any] | tuple[Any, ...]:
    """`_as_list(value)` to iterate over once: a list itself, not a copy."""
    if value is None:
        return ()
    return value if isinstance(value, list) else (value,)


def _texts(value: Any) -> tuple[str, ...]:
    """The texts of `_items(value)` but nulls (a loop: a comprehension is a call of its own;
    `str` called only on what is not a text already, as `_strs`)."""
    out = []
    for item in _items(value):
        if item is not None:
            out.append(item if item.__class__ is str else str(item))
    return tuple(out)


def _strs(value: Any) -> tuple[str, ...]:
    """`tuple(map(str, _items(value)))`: the items themselves when all are texts (a rule's
    references: `str` called through `map` per item was a tenth of reading a rule's
    metadata)."""
    out = tuple(_items(value))
    for item in out:
        if item.__class__ is not str:
            return tuple(map(str, out))
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _timespan(value: Any) -> timedelta | None:
    match = _TIMESPAN.match(str(value).strip()) if value is not None else None
    if match is None or match.group(2) in "My":
        return None
    return timedelta(seconds=int(match.group(1)) * _TIMESPAN_UNITS[match.group(2)])


_COMPARISON_OPS = {">": ir.Op.GT, ">=": ir.Op.GE, "<": ir.Op.LT, "<=": ir.Op.LE}


def correlation_stages(group_by: list[str], threshold: tuple[str, int], counted: str | None,
                       table: Any) -> tuple[ir.Stage, ...]:
    """An event_count (or, with `counted`, value_count) correlation as stages: count the events
    (the distinct values of `counted`) per group, then keep the groups that pass the threshold
    (none needed for `gte: 1`, which every group passes)."""
    def field(name: str) -> ir.Field:
        kind = table.column_type(name) if table is not None else None
        return ir.Field(name, kind or "string")

    keys = tuple((k, field(k)) for k in group_by)
    if counted is None:
        aggregate = ir.Aggregate(COUNT_COLUMN, "count")
    else:
        aggregate = ir.Aggregate(COUNT_COLUMN, "dcount", (field(counted),))
    stages: list[ir.Stage] = [ir.Summarize(keys, (aggregate,))]
    op, bound = threshold
    if (op, bound) != (">=", 1):
        subject = ir.Field(COUNT_COLUMN, "long")
        test = (ir.Predicate(subject, ir.Op.EQUALS, (bound,), case_sensitive=True) if op == "=="
                else ir.Predicate(subject, _COMPARISON_OPS[op], (bound,)))
        stages.append(ir.Filter(test))
    return tuple(stages)


def _threshold(condition: Any) -> tuple[str, int] | None:
    if not isinstance(condition, dict) or len(condition) != 1:
        return None
    (op, value), = condition.items()
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=="}.get(str(op))
    if symbol is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return symbol, value
