"""The Sigma backend: an IR rule as a Sigma rule (YAML), with its meaning kept.

`emit_sigma(rule, options)` writes one YAML stream: the Sigma rule, then, when the rule
aggregates, a Sigma correlation rule (`event_count`, see `output`) that refers to it by
`name`.  The detection is exact (`detection`); whatever cannot be said exactly is a
`lossy` or `unsupported` diagnostic, and a rule with any `unsupported` part yields no text.

Exclusions (false-positive scenarios).  By default they travel as `falsepositives` text and
are not applied, as in the KQL rule.  They are deliberately not written as Sigma filter
documents in the same stream: pySigma applies every filter it finds beside a rule when it
loads the collection, which would change what the rule selects.  `emit_sigma_filters` writes
the understood ones as separate Sigma filter documents (`filter: {rules: [<rule id>], ...}`,
for a filter file / sigma-cli `--filter`); `options.apply_exclusions` ANDs them into the
detection as `and not filter_<name>`.

A membership test against another table (`in (T | ...)`, IR `InSubquery`) is widened away
(`rmmc.backends.widen`) and reported `lossy`: the Sigma rule then matches a superset.  One
against an external table (KQL `externaldata`) is a Sigma placeholder (`placeholders`).

A rule whose condition is constant is refused: Sigma has no exact "every event" (or "no
event") detection; `|exists` on some field would not be exact.

YAML is written only with PyYAML's safe dumper (`yaml_text.dump_all`, never by string
building), so no value can break out of its scalar, and line-break characters YAML readers
fold (NEL, U+2028, U+2029) are written as escapes.
"""

from __future__ import annotations

import re
from typing import Any

from dataclasses import replace
from datetime import timedelta

from rmmc.backends.base import (EmitOptions, Translation, lossy, note, refuse_expression_tests, shape,
                                stage_text, unsupported)
from rmmc.compiler.branches import NotSplit, split_union
from rmmc.compiler.correlate import NotACorrelation, correlation
from rmmc.compiler.pushdown import push_filters
from rmmc.backends.sigma.detection import (ConditionLowerer, Lowered, Namer, compact, render,
                                           s_and, widening_diagnostics)
from rmmc.backends.sigma.computed import raw_field_tests
from rmmc.backends.sigma.fields import TARGET, FieldMapper
from rmmc.backends.sigma.meta import MetaBuilder
from rmmc.backends.sigma.placeholders import ATTRIBUTE
from rmmc.backends.sigma.output import DEFAULT_TIMESPAN, plan_output
from rmmc.compiler.diagnostics import Diagnostic, Severity, has_error
from rmmc.compiler.ir import Const, Exclusion, Join, Not, Rule, Summarize
from rmmc.compiler.paths import path_name, path_warning_text, with_paths

__all__ = ["emit_sigma", "emit_sigma_filters"]
HANDLES = frozenset({"union", "join", "parse"})  # parse: only before shape-only stages (_without_parse)
"""The constructs over several sources this backend writes (see `rmmc.backends.emit`)."""


def emit_sigma(rule: Rule, options: EmitOptions = EmitOptions(), *, schema: Any = None) -> Translation:
    """The rule as a Sigma YAML stream (rule, then its correlation when it aggregates; a
    union as one rule per source; a join as two rules and their temporal correlation).

    `schema` is a `rmmc.compiler.schema.Schema` (default: `load_schema()`).  A rule on Defender
    columns is first put into the `sigma` environment (`in_sigma`, per source): Sigma's names and
    Sysmon's value conventions, the inverse of how the Sigma reader reads them."""
    rule, unparsed = _without_parse(rule)
    if unparsed is None:
        return Translation(TARGET, "", (unsupported(TARGET, "parse (columns extracted at query time) is not "
                                                            "translated to sigma", _parse_span(rule)),))
    if unparsed:
        done = emit_sigma(rule, options, schema=schema)
        return replace(done, diagnostics=(*unparsed, *done.diagnostics))
    if rule.union is not None:
        return _emit_union(rule, options, schema)
    if any(isinstance(s, Join) for s in rule.stages):
        return _emit_join(rule, options, schema)
    documents, diagnostics, _ = _documents(rule, options, schema)
    return Translation(TARGET, _dump(documents) if documents else "", tuple(diagnostics))


def _without_parse(rule: Rule) -> tuple[Rule, list[Diagnostic] | None]:
    """A rule whose `parse` (kind simple, not parse-where: every row stays, Kusto filling ''
    where the pattern does not match) is followed by stages that only shape the output
    (extend, project, project-away/rename/reorder, sort, another such parse): which events
    alert does not depend on them, so they are dropped, each with a shape warning.  None
    (refused) when a parse remains anywhere else; the rule as it is when it has none."""
    from rmmc.backends.base import dropped_stages
    from rmmc.compiler import ir

    if ir.PARSE not in ir.features(rule):
        return rule, []
    at = next((i for i, s in enumerate(rule.stages) if isinstance(s, ir.Parse)), None)
    if at is None or rule.union is not None:
        return rule, None
    tail = rule.stages[at:]
    if not all(isinstance(s, (*ir.ROW_STAGES, ir.Sort)) or (isinstance(s, ir.Parse) and not s.drop) for s in tail):
        return rule, None
    kept = replace(rule, stages=rule.stages[:at])
    if ir.PARSE in ir.features(kept):
        return rule, None
    return kept, dropped_stages(tail, TARGET, "Sigma")


def _parse_span(rule: Rule):
    from rmmc.compiler import ir

    return ir.features(rule).get(ir.PARSE)


def in_sigma(rule: Rule) -> tuple[Rule, list[Diagnostic]]:
    """A rule on a Defender table's columns in the `sigma` environment (`rmmc.environments`);
    a rule already in Sigma's names is returned as it is."""
    if rule.source.taxonomy == "sigma" or rule.source.table is None:
        return rule, []
    from rmmc.environments import default_environment
    from rmmc.environments.adapt import adapt

    adapted = adapt(rule, default_environment("sigma"))
    return (adapted.rule if adapted.rule is not None else rule), list(adapted.diagnostics)


def _documents(rule: Rule, options: EmitOptions, schema: Any,
               named: bool = False) -> tuple[list[dict[str, Any]] | None, list[Diagnostic], str]:
    """The Sigma documents of a single-table rule (None when refused), what was said, and the
    rule's `name` (set when `named` or when a correlation refers to it)."""
    rule, adapted = in_sigma(rule)
    if has_error(adapted):
        return None, adapted, ""
    documents, diagnostics, name = _single_documents(rule, options, schema, named)
    return documents, [*adapted, *diagnostics], name


def _single_documents(rule: Rule, options: EmitOptions, schema: Any,
                      named: bool) -> tuple[list[dict[str, Any]] | None, list[Diagnostic], str]:
    rule = push_filters(rule)  # Sigma says the detection: every filter that can move, moves
    rule = replace(rule, condition=raw_field_tests(rule.condition))  # computed.py
    rule, paths = with_paths(rule)  # `AdditionalFields.x`: a field named by its path
    refused = refuse_expression_tests(rule.condition, TARGET, "Sigma")
    if refused:
        return None, list(refused), ""
    ctx = _Context(rule, options, schema)
    ctx.diagnostics.extend(Diagnostic(Severity.WARNING, path_warning_text(p, path_name(p, TARGET, rule.source.table),
                                                                          TARGET), None, "path") for p in paths)
    detection = ctx.detection(apply_exclusions=options.apply_exclusions)
    plan = plan_output(rule, ctx.fields)
    ctx.diagnostics.extend(plan.diagnostics)
    ctx.exclusion_notes(options.apply_exclusions)
    if detection is None or has_error(ctx.all_diagnostics()):
        return None, ctx.all_diagnostics(), ""

    meta = ctx.meta
    base: dict[str, Any] = {"title": meta.title, "id": meta.rule_id()}
    name = _slug(meta.title) or "rule_" + meta.rule_id().split("-")[0]
    if plan.correlation is not None or named:
        base["name"] = name
    base.update(ctx.header())
    base["logsource"] = ctx.logsource
    base["detection"] = detection
    placeholders = ctx.lowerer.placeholders.attribute()
    if placeholders:  # what each `%name%` stands for (placeholders.py)
        base[ATTRIBUTE] = placeholders
    if plan.fields:
        base["fields"] = plan.fields
    falsepositives = ctx.falsepositives()
    if falsepositives:
        base["falsepositives"] = falsepositives
    base["level"] = meta.level()
    documents = [base]

    if plan.correlation is not None:
        correlation = dict(plan.correlation, rules=[name])
        keys = ", ".join(correlation.get("group-by", [])) or "no group key"
        corr: dict[str, Any] = {
            "title": f"{meta.title} (event count)",
            "id": meta.derived_id("correlation"),
            "status": base["status"],
            "description": (f"Groups ({keys}) with at least one event of rule '{name}' within "
                            f"{correlation['timespan']}: the KQL rule's summarize."),
        }
        for key in ("references", "author", "date", "modified", "tags"):
            if key in base:
                corr[key] = base[key]
        corr["correlation"] = correlation
        if falsepositives:
            corr["falsepositives"] = falsepositives
        corr["level"] = base["level"]
        documents.append(corr)
    return documents, ctx.all_diagnostics(), name


# ------------------------------------------------------------------ several sources


def _part(rule: Rule, label: str) -> Rule:
    """A rule of a collection: the rule's metadata, titled after its part, its own id."""
    meta = MetaBuilder(rule)
    return replace(rule, metadata=replace(rule.metadata, title=f"{meta.title} ({label})",
                                          id=meta.derived_id(f"part:{label}")))


def _emit_union(rule: Rule, options: EmitOptions, schema: Any) -> Translation:
    """A union: one Sigma rule per source (its own logsource and field names), titled with a
    shared prefix; together they alert on what the union returns."""
    rule, unordered = without_final_sorts(rule)
    at = next((i for i, s in enumerate(rule.stages) if isinstance(s, Summarize)), None)
    counted = rule.stages[at:] if at is not None else ()
    try:
        parts = split_union(replace(rule, stages=rule.stages[:at]) if at is not None else rule)
    except NotSplit as exc:
        return Translation(TARGET, "", (unsupported(TARGET, str(exc), exc.span),))
    documents: list[dict[str, Any]] = []
    diagnostics: list[Diagnostic] = list(unordered)
    names: list[str] = []
    live = [(label, part) for label, part in parts if part.condition != Const(False)]
    if live and len(live) < len(parts):  # a source none of whose events can match adds no rule
        for label, part in parts:
            if part.condition == Const(False):
                diagnostics.append(note(TARGET, f"the union's source {label} can return no row (its "
                                                "tests are false on every event of it): no rule for it",
                                        rule.union.span))
        parts = live
    for label, part in parts:
        docs, said, name = _documents(_part(part, label), options, schema, named=bool(counted))
        diagnostics.extend(d for d in said if d not in diagnostics)
        if docs is None:
            return Translation(TARGET, "", tuple(diagnostics))
        if counted:
            name = _unique(name, names, _slug(label))
            docs[0]["name"] = name
        documents.extend(docs)
        names.append(name)
    diagnostics.append(note(TARGET, f"the union is a collection of {len(parts)} Sigma rules, one per "
                                    "source, titled with the rule's title", rule.union.span))
    if counted:
        corr, said = _union_correlation(rule, parts, names, counted, documents[0], schema)
        diagnostics.extend(d for d in said if d not in diagnostics)
        if corr is None:
            return Translation(TARGET, "", tuple(diagnostics))
        documents.append(corr)
    return Translation(TARGET, _dump(documents), tuple(diagnostics))


def without_final_sorts(rule: Rule) -> tuple[Rule, list[Diagnostic]]:
    """A union's sorts that only order its output: those after which every stage keeps one
    row per row and tests nothing (extend, project, project-away/rename/reorder, sort), so no
    later take, aggregation or filter reads the order.  A Sigma collection returns the
    matching events in no order: dropped with a shape warning (the alerts are the same)."""
    from rmmc.backends.base import stage_text
    from rmmc.compiler import ir

    tail = len(rule.stages)
    while tail > 0 and isinstance(rule.stages[tail - 1], (*ir.ROW_STAGES, ir.Sort)):
        tail -= 1
    sorts = [s for s in rule.stages[tail:] if isinstance(s, ir.Sort)]
    if not sorts:
        return rule, []
    said = [shape(TARGET, f"'| {stage_text(s)}' is dropped: a Sigma collection returns the matching "
                          "events in no order", s.span) for s in sorts]
    kept = tuple(s for s in rule.stages[:tail]) + tuple(s for s in rule.stages[tail:] if not isinstance(s, ir.Sort))
    return replace(rule, stages=kept), said


def _union_correlation(rule: Rule, parts: list[tuple[str, Rule]], names: list[str], counted: tuple[Any, ...],
                       first: dict[str, Any], schema: Any) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    """The aggregation after a union as one correlation over every source's rule (the field
    names each source's rule uses, joined under aliases where they differ)."""
    plans = []
    for _, part in parts:
        mapper = FieldMapper(part.source.table, _table_schema(part, schema), part.source.taxonomy)
        plans.append(plan_output(replace(part, stages=tuple(counted), lookback=rule.lookback), mapper))
    said = list(plans[0].diagnostics)
    if plans[0].correlation is None or has_error(said):
        return None, said
    body = dict(plans[0].correlation, rules=list(names))
    aliases: dict[str, dict[str, str]] = {}
    keys = list(body.get("group-by", []))
    for i, key in enumerate(keys):
        per = [p.correlation.get("group-by", [])[i] for p in plans]
        if len(set(per)) > 1:
            aliases[key] = dict(zip(names, per))
    field_name = body["condition"].get("field") if isinstance(body.get("condition"), dict) else None
    if field_name:
        per = [p.correlation["condition"].get("field") for p in plans]
        if len(set(per)) > 1:
            aliases[field_name] = dict(zip(names, per))
    if aliases:
        body = {k: v for k, v in body.items() if k not in ("timespan", "condition")}
        body["aliases"] = aliases
        body["timespan"] = plans[0].correlation["timespan"]
        body["condition"] = plans[0].correlation["condition"]
    meta = MetaBuilder(rule)
    corr = {"title": meta.title, "id": meta.rule_id(), "status": first["status"],
            "description": f"Over the rules {', '.join(names)}: the KQL rule's summarize after its union.",
            "correlation": body, "level": first["level"]}
    return corr, said


def _emit_join(rule: Rule, options: EmitOptions, schema: Any) -> Translation:
    """A join of two detections within a time window: the two rules and a `temporal_ordered`
    (right after left, within T) or `temporal` (within T either way) correlation grouped by
    the join keys (`rmmc.compiler.correlate`)."""
    from rmmc.backends.sigma.values import sigma_timespan

    try:
        found = correlation(rule)
    except NotACorrelation as exc:
        return Translation(TARGET, "", (unsupported(TARGET, f"the join: {exc}", exc.span),))
    diagnostics: list[Diagnostic] = [lossy(TARGET, message, span, subject=node)
                                     for message, span, node in found.problems]
    window = found.window
    if window is not None and window.ordered():
        kind, span = "temporal_ordered", window.high
    elif window is not None and window.symmetric():
        kind, span = "temporal", window.high
    else:
        lookbacks = [lb.window for lb in (found.left.lookback, found.right.lookback) if lb is not None]
        reach = [abs(b) for b in (window.low, window.high) if b is not None] if window else []
        span = max(reach) if reach else (min(lookbacks) if lookbacks else DEFAULT_TIMESPAN)
        ordered = window is not None and window.low is not None and window.low >= timedelta(0)
        kind = "temporal_ordered" if ordered else "temporal"
        if window is not None and not found.problems:
            diagnostics.append(lossy(
                TARGET, f"the window {window.describe()} (right event time minus left) is not one a "
                f"Sigma correlation says ({'(0, T]' if ordered else '[-T, T]'}): written as {kind} "
                f"within {span}", found.span, subject=found.join))
    timespan, exact = sigma_timespan(span)
    if not exact:
        diagnostics.append(lossy(TARGET, f"the window {span} is rounded up to the timespan {timespan}",
                                 found.span, subject=found.join))
    title = MetaBuilder(rule).title
    sides = []
    for label, side in (("left", found.left), ("right", found.right)):
        part = _part(replace(side, metadata=rule.metadata, exclusions=rule.exclusions if label == "left" else ()),
                     f"{side.source.table}, {label}")
        docs, said, name = _documents(part, options, schema, named=True)
        diagnostics.extend(d for d in said if d not in diagnostics)
        if docs is None:
            return Translation(TARGET, "", tuple(diagnostics))
        sides.append((docs, name, side))
    (left_docs, left_name, left), (right_docs, right_name, right) = sides
    right_name = right_docs[0]["name"] = _unique(right_name, [left_name], "right")
    group, aliases = [], {}
    left_fields = FieldMapper(left.source.table, _table_schema(left, schema), left.source.taxonomy)
    right_fields = FieldMapper(right.source.table, _table_schema(right, schema), right.source.taxonomy)
    for left_key, right_key in found.keys:
        a, b = left_fields.sigma(left_key), right_fields.sigma(right_key)
        group.append(a)
        if a != b:
            aliases[a] = {left_name: a, right_name: b}
    body: dict[str, Any] = {"type": kind, "rules": [left_name, right_name], "group-by": group}
    if aliases:
        body["aliases"] = aliases
    body["timespan"] = timespan
    meta = MetaBuilder(rule)
    corr: dict[str, Any] = {
        "title": title, "id": meta.rule_id(), "status": left_docs[0]["status"],
        "description": (f"An event of '{left_name}' and one of '{right_name}' with equal "
                        f"{', '.join(group)}, {'the second at most' if kind == 'temporal_ordered' else 'within'} "
                        f"{timespan} {'after the first' if kind == 'temporal_ordered' else 'of each other'}: "
                        "the KQL rule's join."),
        "correlation": body, "level": left_docs[0]["level"]}
    diagnostics.append(note(TARGET, "group keys: KQL's join matches keys case-sensitively; a Sigma "
                                    "correlation leaves that to the backend (pySigma's sqlite backend "
                                    "folds case and skips events missing a key)", found.span))
    if found.after:
        diagnostics.extend(shape(TARGET, f"'| {stage_text(s)}' after the join is dropped: a Sigma "
                                         "correlation reports its group keys", getattr(s, "span", None))
                           for s in found.after)
    return Translation(TARGET, _dump(left_docs + right_docs + [corr]), tuple(diagnostics))


def emit_sigma_filters(rule: Rule, options: EmitOptions = EmitOptions(), *,
                       schema: Any = None) -> Translation:
    """The rule's understood exclusions as Sigma filter documents referring to the rule's id
    (for a separate filter file: loaded beside the rule, pySigma applies them).  A join's
    exclusions read its left events: they refer to the rule of the left side."""
    target_id = None
    if any(isinstance(s, Join) for s in rule.stages):
        try:
            found = correlation(rule)
        except NotACorrelation:
            return Translation(TARGET, "", ())
        target_id = MetaBuilder(_part(replace(found.left, metadata=rule.metadata),
                                      f"{found.left.source.table}, left")).rule_id()
    elif rule.union is not None:
        return Translation(TARGET, "", ())  # a union's exclusions are kept as text
    else:
        rule, adapted = in_sigma(rule)
        if has_error(adapted):
            return Translation(TARGET, "", tuple(adapted))
    ctx = _Context(rule, options, schema)
    meta = ctx.meta
    documents = []
    for slug, exclusion in ctx.exclusion_slugs():
        if exclusion.condition is None:
            ctx.diagnostics.append(note(TARGET, f"exclusion {exclusion.name!r} is free text: no filter"))
            continue
        namer = Namer()
        expr = ctx.lower_exclusion(exclusion, slug, namer)
        if expr is True:
            ctx.diagnostics.append(note(TARGET, f"exclusion {exclusion.name!r} excludes no event: no filter"))
            continue
        if expr is False:
            ctx.diagnostics.append(unsupported(
                TARGET, f"exclusion {exclusion.name!r} excludes every event: a Sigma filter needs a detection",
                exclusion.span))
            continue
        body: dict[str, Any] = {"rules": [target_id or meta.rule_id()], **namer.selections,
                                "condition": render(expr, namer)}
        doc: dict[str, Any] = {
            "title": f"{meta.title}: exclude {exclusion.name}",
            "id": meta.derived_id(f"filter:{slug}"),
            "status": meta.status(),
            "description": exclusion.description or exclusion.text or exclusion.name,
            **{k: v for k, v in (("date", meta.date()), ("modified", meta.modified())) if v is not None},
            "logsource": ctx.logsource,
            "filter": body,
        }
        documents.append(doc)
    ctx.diagnostics.extend(widening_diagnostics_all(ctx))
    if has_error(ctx.all_diagnostics()) or not documents:
        return Translation(TARGET, "", tuple(ctx.all_diagnostics()))
    return Translation(TARGET, _dump(documents), tuple(ctx.all_diagnostics()))


# ------------------------------------------------------------------ shared state of one rule


class _Context:
    """One rule's table schema, field map, lowering and diagnostics."""

    def __init__(self, rule: Rule, options: EmitOptions, schema: Any) -> None:
        self.rule = rule
        self.options = options
        self.diagnostics: list[Diagnostic] = []
        table = _table_schema(rule, schema)
        self.fields = FieldMapper(rule.source.table, table, rule.source.taxonomy)
        self.lowerer = ConditionLowerer(self.fields, options, self.diagnostics)
        self.meta = MetaBuilder(rule)
        self.logsource = self.meta.logsource(table)
        self._lowered: list[Lowered] = []

    def all_diagnostics(self) -> list[Diagnostic]:
        self.fields.finish()
        return [*self.meta.diagnostics, *self.diagnostics, *self.fields.diagnostics]

    def header(self) -> dict[str, Any]:
        m, meta = self.rule.metadata, self.meta
        out: dict[str, Any] = {"status": meta.status(), "description": meta.description()}
        references = meta.references()
        if references:
            out["references"] = references
        if m.author and m.author.strip():
            out["author"] = m.author.strip()
        for key, value in (("date", meta.date()), ("modified", meta.modified())):
            if value is not None:
                out[key] = value
        tags = meta.tags()
        if tags:
            out["tags"] = tags
        return out

    def exclusion_slugs(self) -> list[tuple[str, Exclusion]]:
        out, used = [], set()
        for i, exclusion in enumerate(self.rule.exclusions, 1):
            slug = _slug(exclusion.name)[:40].strip("_") or str(i)
            while slug in used:
                slug = f"{slug}_{i}"
            used.add(slug)
            out.append((slug, exclusion))
        return out

    def lower_exclusion(self, exclusion: Exclusion, slug: str, namer: Namer) -> Lowered:
        expr = compact(self.lowerer.lower_widened(Not(exclusion.condition)))
        namer.name_all(expr, f"filter_{slug}")
        self._lowered.append(expr)
        return expr

    def detection(self, apply_exclusions: bool) -> dict[str, Any] | None:
        """The `detection:` map, or None (with an `unsupported` diagnostic) when refused."""
        namer = Namer()
        base = compact(self.lowerer.lower_widened(self.rule.condition))
        namer.name_all(base, "selection")
        self._lowered.append(base)
        parts = [base]
        if apply_exclusions:
            for slug, exclusion in self.exclusion_slugs():
                if exclusion.condition is not None:
                    parts.append(self.lower_exclusion(exclusion, slug, namer))
        whole = s_and(parts)
        self.diagnostics.extend(widening_diagnostics_all(self))
        if base is True and whole is True:
            self.diagnostics.append(unsupported(
                TARGET, "the rule matches every event of its table: a Sigma rule needs a detection "
                        "(an |exists test would not be exact)"))
            return None
        if whole is False:
            self.diagnostics.append(unsupported(
                TARGET, "the rule matches no event (its condition is always false): nothing to detect"))
            return None
        if whole is True:  # base True, every exclusion excluded nothing
            self.diagnostics.append(unsupported(
                TARGET, "the rule matches every event of its table: a Sigma rule needs a detection"))
            return None
        return {**namer.selections, "condition": render(whole, namer)}

    def exclusion_notes(self, applied: bool) -> None:
        understood = [e for e in self.rule.exclusions if e.condition is not None]
        free = [e for e in self.rule.exclusions if e.condition is None]
        if applied:
            for e in free:
                self.diagnostics.append(note(TARGET, f"exclusion {e.name!r} is free text: listed under "
                                                     "falsepositives, not applied", e.span))
        elif understood:
            self.diagnostics.append(note(
                TARGET, f"{len(understood)} exclusion(s) are listed under falsepositives and not "
                        "applied, as in the KQL rule (apply_exclusions ANDs them into the detection; "
                        "emit_sigma_filters writes them as Sigma filter documents)"))

    def falsepositives(self) -> list[str]:
        """metadata.false_positives, each scenario that is an exclusion's name (or description)
        replaced by the exclusion's fuller line; other exclusions appended."""
        out = [fp.strip() for fp in self.rule.metadata.false_positives if fp and fp.strip()]
        for e in self.rule.exclusions:
            line = e.name
            if e.description:
                line += f": {e.description}"
            if e.text:
                line += f" (exclusion: {e.text})"
            same = [i for i, fp in enumerate(out) if fp in (e.name.strip(), (e.description or "").strip())]
            if same:
                out[same[0]] = line
            elif line not in out:
                out.append(line)
        return out


def widening_diagnostics_all(ctx: _Context) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for expr in ctx._lowered:
        out.extend(widening_diagnostics(expr))
    ctx._lowered.clear()
    return out


def _table_schema(rule: Rule, schema: Any) -> Any | None:
    if rule.source.table is None:
        return None
    if schema is None:
        from rmmc.compiler.schema import load_schema

        schema = load_schema()
    return schema.table(rule.source.table)


def _unique(name: str, taken: list[str], tail: str) -> str:
    """`name`, or (when a rule of the stream has it) the name with `tail` at its end."""
    if name not in taken:
        return name
    name = f"{name[:79 - len(tail)]}_{tail}"
    n = 2
    while name in taken:
        name, n = f"{name}_{n}", n + 1
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:80]


def _dump(documents: list[dict[str, Any]]) -> str:
    from rmmc.backends.yaml_text import dump_all

    return dump_all(documents)

