"""Reading an environment file: YAML in, an `Environment` or located errors out.

Every problem is a `Diagnostic` at its line and column in the file (an unknown key with a
"did you mean", a value of the wrong kind, a field set that does not exist, a form with a
missing setting); nothing raises on bad input.  The structure is checked against `_KEYS`,
one table per level, so the accepted format is written down once.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Span, error
from rmmc.compiler.sigma.yaml_tree import Y, load_stream, plain
from rmmc.environments.errors import EnvironmentError
from rmmc.environments.fieldsets import is_set
from rmmc.environments.model import (TARGETS, Environment, FieldSpec, Match, Placement, Schedule,
                                     SourceMap, parse_schedule, EXTERNAL_KINDS)

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_FIELD = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@:-]*\Z")
_TOP = {"name", "description", "target", "assumes", "time_field", "place", "unknown_fields", "sources",
        "schedule", "external"}
_SCHEDULE = {"interval", "overlap"}
_SOURCE = {"match", "place", "filter", "fields", "names", "others", "schema", "members", "declare",
           "dynamic", "time_field"}
_MATCH = {"table", "kind", "product", "category", "service"}
_PLACE = {"search", "datamodel", "index", "table"}
_FORMS = {  # form -> (its settings, required ones)
    "rename": ({"type"}, set()),
    "hives": ({"hives", "from"}, {"hives"}),
    "joined": ({"part", "separator", "with"}, {"part", "with"}),
    "item": ({"item", "separator", "assign"}, {"item"}),
    "basename": ({"basename", "separator"}, {"basename"}),
    "values": ({"values"}, {"values"}),
}
_FORM_KEY = {"hives": "hives", "part": "joined", "item": "item", "basename": "basename",
             "values": "values"}
NAMINGS = ("sigma", "cim", "ecs", "defender")



class _Reader:
    def __init__(self, path: str, field_sets: frozenset[str]):
        self.path = path
        self.sets = field_sets
        self.found: list[Diagnostic] = []

    def fail(self, message: str, span: Span | None) -> None:
        self.found.append(error(message, span, "environment").with_path(self.path))

    def keys(self, node: Y, allowed: set[str], where: str) -> None:
        for key in node.value:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(allowed))})"
                self.fail(f"unknown key {key!r} in {where}{hint}", node.key_span(key))

    def text(self, node: Y | None, what: str, required: bool = False) -> str | None:
        if node is None or node.value is None:
            if required:
                self.fail(f"{what} is required", None)
            return None
        if not isinstance(node.value, (str, int, float)) or isinstance(node.value, bool):
            self.fail(f"{what} must be text", node.span)
            return None
        return str(node.value)

    def texts(self, node: Y | None, what: str) -> tuple[str, ...] | None:
        if node is None:
            return None
        items = node.value if node.is_list else [node]
        out = []
        for item in items:
            value = self.text(item, what)
            if value is not None:
                out.append(value)
        return tuple(out)

    def field_name(self, node: Y, what: str) -> str | None:
        value = self.text(node, what)
        if value is not None and not _FIELD.match(value):
            self.fail(f"{what} {value!r} is not a field name (letters, digits, _ . @ : -)", node.span)
            return None
        return value

    # ---------------------------------------------------------------- the document

    def environment(self, root: Y, builtin: bool) -> Environment | None:
        if not root.is_map:
            self.fail("an environment is a mapping (name, target, time_field, sources ...)", root.span)
            return None
        self.keys(root, _TOP, "the environment")
        name = self.text(root.get("name"), "name")
        if name is None:
            self.fail("name is required", root.span)
        elif not _NAME.match(name):
            self.fail(f"name {name!r}: lower-case letters, digits, '-' and '_'", root.get("name").span)
        target = self.text(root.get("target"), "target")
        if target is None:
            self.fail("target is required (" + ", ".join(TARGETS) + ")", root.span)
        elif target not in TARGETS:
            self.fail(f"target {target!r} is not one of {', '.join(TARGETS)}", root.get("target").span)
        time_field = None
        if root.get("time_field") is None:
            self.fail("time_field is required (the field holding the event time)", root.span)
        else:
            time_field = self.field_name(root.get("time_field"), "time_field")
        unknown = self.text(root.get("unknown_fields"), "unknown_fields") or "error"
        if unknown not in ("error", "warning"):
            self.fail(f"unknown_fields {unknown!r}: error or warning", root.get("unknown_fields").span)
        assumes = self.texts(root.get("assumes"), "assumes") or ()
        place = self.placement(root.get("place"))
        schedule = self.schedule(root.get("schedule"))
        external = self.text(root.get("external"), "external")
        if external is not None and EXTERNAL_KINDS.get(external) != target:
            kinds = ", ".join(f"{k} ({t})" for k, t in EXTERNAL_KINDS.items())
            self.fail(f"external {external!r} is not how a {target} environment holds external tables "
                      f"(externaldata): {kinds}", root.get("external").span)
        sources_node = root.get("sources")
        sources: list[SourceMap] = []
        if sources_node is None or not sources_node.is_list or not sources_node.value:
            self.fail("sources is required: a list of sources (match, fields ...)",
                      sources_node.span if sources_node else root.span)
        else:
            for item in sources_node.value:
                source = self.source(item)
                if source is not None:
                    sources.append(source)
        if self.found:
            return None
        return Environment(name=name, description=self.text(root.get("description"), "description") or "",
                           target=target, time_field=time_field, sources=tuple(sources), place=place,
                           assumes=assumes, unknown_fields=unknown, path=self.path, builtin=builtin,
                           schedule=schedule, external=external)

    def schedule(self, node: Y | None) -> Schedule | None:
        """`schedule: {interval: 5m, overlap: 1m}` (or the text `5m+1m`): how packaged rules run."""
        if node is None:
            return None
        if node.is_map:
            self.keys(node, _SCHEDULE, "schedule")
            interval = self.text(node.get("interval"), "schedule.interval")
            overlap = self.text(node.get("overlap"), "schedule.overlap")
            if interval is None:
                self.fail("schedule.interval is required (e.g. 5m)", node.span)
                return None
            text = interval + (f"+{overlap}" if overlap is not None else "")
        else:
            text = self.text(node, "schedule")
            if text is None:
                return None
        found = parse_schedule(text)
        if isinstance(found, str):
            self.fail(found, node.span)
            return None
        return found

    def placement(self, node: Y | None) -> Placement:
        if node is None:
            return Placement()
        if not node.is_map:
            self.fail("place is a mapping (search, datamodel, index, table)", node.span)
            return Placement()
        self.keys(node, _PLACE, "place")
        values = {k: self.text(node.get(k), f"place.{k}") for k in _PLACE}
        search = values.get("search")
        if search is not None and re.search(r"[|\x00-\x1f]", search):
            self.fail("place.search must not hold '|' or control characters (it goes after `search`)",
                      node.get("search").span)
        return Placement(**values)

    def source(self, node: Y) -> SourceMap | None:
        if not node.is_map:
            self.fail("a source is a mapping (match, fields ...)", node.span)
            return None
        self.keys(node, _SOURCE, "a source")
        match_node = node.get("match")
        if match_node is None or not match_node.is_map:
            self.fail("a source needs match: (table, kind, product, category or service)",
                      match_node.span if match_node else node.span)
            return None
        self.keys(match_node, _MATCH, "match")
        match = Match(**{k: self.texts(match_node.get(k), f"match.{k}") for k in _MATCH})
        if match.by_table and any(getattr(match, k) is not None for k in ("product", "category", "service")):
            self.fail("match: table/kind (Defender columns) and product/category/service (Sigma names) "
                      "select different rules: use one or the other", match_node.span)
        names = self.text(node.get("names"), "names")
        if names is not None and names not in NAMINGS:
            self.fail(f"names {names!r} is not one of {', '.join(NAMINGS)}", node.get("names").span)
        if names is not None and not match.by_table:
            self.fail("names maps Defender columns: only for a source that matches by table or kind",
                      node.get("names").span)
        others = self.text(node.get("others"), "others")
        if others is not None and "{name}" not in others:
            self.fail("others is a template holding {name} (e.g. 'winlog.event_data.{name}', '{name}')",
                      node.get("others").span)
        schema = self.texts(node.get("schema"), "schema") or ()
        members = self.texts(node.get("members"), "members") or ()
        for key, values in (("schema", schema), ("members", members)):
            listed = node.get(key)
            items = listed.value if listed is not None and listed.is_list else [listed]
            for value in values:
                if not is_set(value):
                    close = difflib.get_close_matches(value, sorted(self.sets), n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    at = next((i.span for i in items if i is not None and i.value == value), listed.span)
                    self.fail(f"{key}: no field set {value!r}{hint}", at)
        return SourceMap(match=match, place=self.placement(node.get("place")),
                         filter=self.filters(node.get("filter")), fields=self.fields(node.get("fields")),
                         names=names, others=others, schema=schema, members=members,
                         declare=self.texts(node.get("declare"), "declare") or (),
                         dynamic=self.texts(node.get("dynamic"), "dynamic") or (),
                         time_field=self.field_name(node.get("time_field"), "time_field")
                         if node.get("time_field") is not None else None, span=node.span)

    def filters(self, node: Y | None) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if node is None:
            return ()
        if not node.is_map:
            self.fail("filter is a mapping: field -> value or list of values", node.span)
            return ()
        out = []
        for key, value in node.value.items():
            if not _FIELD.match(key):
                self.fail(f"filter: {key!r} is not a field name", node.key_span(key))
                continue
            values = plain(value)
            values = tuple(values) if isinstance(values, list) else (values,)
            if not values or any(v is None or isinstance(v, (dict, list)) for v in values):
                self.fail(f"filter {key}: a value or a list of values", value.span)
                continue
            out.append((key, values))
        return tuple(out)

    def fields(self, node: Y | None) -> dict[str, FieldSpec]:
        if node is None:
            return {}
        if not node.is_map:
            self.fail("fields is a mapping: column -> field name or form", node.span)
            return {}
        out = {}
        for column, value in node.value.items():
            spec = self.field_spec(column, value, node.key_span(column))
            if spec is not None:
                out[column] = spec
        return out

    def field_spec(self, column: str, node: Y, span: Span) -> FieldSpec | None:
        if node.value is None:
            return FieldSpec(column, None, absent="", span=span)
        if not node.is_map:
            name = self.field_name(node, f"fields.{column}")
            return FieldSpec(column, name, span=span) if name else None
        if set(node.value) == {"absent"}:
            return FieldSpec(column, None, absent=self.text(node.get("absent"), "absent") or "", span=span)
        forms = [_FORM_KEY[k] for k in node.value if k in _FORM_KEY]
        if len(forms) > 1:
            self.fail(f"fields.{column}: one form at a time ({', '.join(forms)})", span)
            return None
        form = forms[0] if forms else "rename"
        allowed, required = _FORMS[form]
        self.keys(node, allowed | {"field"}, f"fields.{column}")
        if node.get("field") is None:
            self.fail(f"fields.{column}: field is required", span)
            return None
        name = self.field_name(node.get("field"), f"fields.{column}.field")
        for key in sorted(required - set(node.value)):
            self.fail(f"fields.{column}: {form} needs {key}", span)
        options = {k: plain(v) for k, v in node.value.items() if k != "field"}
        problem = _check_form(form, options)
        if problem:
            self.fail(f"fields.{column}: {problem}", span)
        if name is None or problem:
            return None
        return FieldSpec(column, name, form, options, span=span)


def _check_form(form: str, options: dict[str, Any]) -> str | None:
    from rmmc.environments.conventions import HIVE_STYLES

    if form == "hives":
        for key in ("hives", "from"):
            if key in options and options[key] not in HIVE_STYLES:
                return f"{key}: {options[key]!r} is not one of {', '.join(HIVE_STYLES)}"
    if form == "joined":
        if options.get("part") not in ("first", "last"):
            return "part: first (the domain of DOMAIN\\name) or last (the name)"
        if not isinstance(options.get("with"), str) or not options["with"]:
            return "with: the column holding the other part"
        if not isinstance(options.get("separator", "\\"), str) or len(options.get("separator", "\\")) != 1:
            return "separator: one character"
    if form == "rename" and options.get("type", "string") != "string":
        return "type: string (numbers written as text, as Elastic's keyword event.code)"
    if form == "item" and not isinstance(options.get("item"), str):
        return "item: the key of the value in the list (SHA256 in SHA256=...)"
    if form == "basename" and options.get("basename") is not True:
        return "basename: true"
    if form == "values":
        values = options.get("values")
        if not isinstance(values, dict) or not values:
            return "values: a mapping from the column's values to the field's"
        for v in values.values():
            items = v if isinstance(v, list) else [v]
            if not items or any(isinstance(i, (dict, list)) or i is None for i in items):
                return "values: each value maps to a value or a list of values"
    return None


def read_environment(text: str, path: str, builtin: bool = False) -> Environment:
    """An environment from its YAML text; `EnvironmentError` (located diagnostics) when it
    cannot be used."""
    from rmmc.environments.fieldsets import set_names

    source = LineIndex(text)
    documents, problems = load_stream(text, source)
    if problems:
        raise EnvironmentError([d.with_path(path) for d in problems])
    roots = [d.root for d in documents if d.root is not None]
    if len(roots) != 1:
        raise EnvironmentError([error("an environment file holds one YAML document",
                                      roots[1].span if len(roots) > 1 else None, "environment").with_path(path)])
    reader = _Reader(path, set_names())
    env = reader.environment(roots[0], builtin)
    if env is None:
        raise EnvironmentError(reader.found)
    return env
