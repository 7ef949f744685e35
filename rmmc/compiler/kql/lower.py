"""Lowering: a parsed KQL query (and its rule document) -> the detection model (IR).

What it does: resolves scalar and list lets, folds constant subqueries over `datatable`,
inlines tabular lets the body refers to (`materialize()` included: it only caches),
turns `Timestamp between (now(-5d)..now())` / `Timestamp > ago(5d)` into the lookback, ANDs
the leading wheres into the detection, and keeps every later operator as a stage, in the
query's order: extend, where, summarize / count / distinct, project (with expressions),
project-away / -keep / -rename / -reorder, sort, top, take, join / lookup (the right side
lowered as a rule of its own), mv-expand, parse.  `union` makes a rule over several branch
rules; `x in (T | ...)` / `has_any (T | ...)` against a real table is a subquery whose model
is lowered the same way.  Scalar expressions become model expressions
(`rmmc.compiler.functions`), so a condition may test a computed column or a function call.
What it cannot lower exactly (a function outside the model, parse with typed columns ...) is
a located error naming the construct: never a silent approximation.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.kql import ast as A
from rmmc.compiler.constants import Constants, NotConstant, RelativeTime, timespan_text
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span, has_error
from rmmc.compiler.extremes import extreme_columns
from rmmc.compiler.functions import OPERATORS, lookup
from rmmc.compiler.kql.printer import expr as kql_expr, to_kql

TIME_COLUMNS = ("Timestamp", "TimeGenerated")

# KQL binary string operators -> (IR op, case sensitive, negated)
_STRING_OPS: dict[str, tuple[ir.Op, bool, bool]] = {
    "==": (ir.Op.EQUALS, True, False), "!=": (ir.Op.EQUALS, True, True),
    "<>": (ir.Op.EQUALS, True, True), "=~": (ir.Op.EQUALS, False, False),
    "!~": (ir.Op.EQUALS, False, True), "matches regex": (ir.Op.REGEX, True, False),
    "notcontains": (ir.Op.CONTAINS, False, True), "containscs": (ir.Op.CONTAINS, True, False),
    "notcontainscs": (ir.Op.CONTAINS, True, True),
}
for _word, _op in (("has", ir.Op.TERM), ("hasprefix", ir.Op.TERM_PREFIX),
                   ("hassuffix", ir.Op.TERM_SUFFIX), ("contains", ir.Op.CONTAINS),
                   ("startswith", ir.Op.STARTSWITH), ("endswith", ir.Op.ENDSWITH)):
    _STRING_OPS[_word] = (_op, False, False)
    _STRING_OPS["!" + _word] = (_op, False, True)
    _STRING_OPS[_word + "_cs"] = (_op, True, False)
    _STRING_OPS["!" + _word + "_cs"] = (_op, True, True)

_LIST_OPS: dict[str, tuple[ir.Op, bool, bool, bool]] = {  # op, cased, negated, all values
    "in": (ir.Op.EQUALS, True, False, False), "!in": (ir.Op.EQUALS, True, True, False),
    "in~": (ir.Op.EQUALS, False, False, False), "!in~": (ir.Op.EQUALS, False, True, False),
    "has_any": (ir.Op.TERM, False, False, False), "has_all": (ir.Op.TERM, False, False, True),
}
_COMPARISONS = {"<": ir.Op.LT, "<=": ir.Op.LE, ">": ir.Op.GT, ">=": ir.Op.GE}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_STRING_TYPES = ("string", "guid")

class _Unsupported(Exception):
    def __init__(self, node: Any, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


@dataclass(frozen=True)
class Lowered:
    """The IR rule (None when the query cannot be lowered) and what lowering found.
    Diagnostic spans are in the coordinates of the text that was lowered."""

    rule: ir.Rule | None
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return self.rule is not None and not has_error(self.diagnostics)


def _span(node: Any) -> Span | None:
    return getattr(node, "span", None)


def _describe(node: Any) -> str:
    try:
        text = to_kql(node)
    except (TypeError, RecursionError):
        return type(node).__name__
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


# Aggregation functions: (default-name prefix, fewest and most arguments, result type rule).
# The default names are Kusto's (checked with Microsoft's parser): `dcount(x)` is dcount_x,
# `dcount(<expression>)` dcount_, `take_any(x)` keeps x, `arg_max` keeps its columns.
_SAME = "same"
AGGREGATES: dict[str, tuple[str, int, int | None, str]] = {
    "count": ("count_", 0, 0, "long"), "countif": ("countif_", 1, 1, "long"),
    "dcount": ("dcount_", 1, 2, "long"), "dcountif": ("dcountif_", 2, 3, "long"),
    "min": ("min_", 1, 1, _SAME), "max": ("max_", 1, 1, _SAME),
    "minif": ("minif_", 2, 2, _SAME), "maxif": ("maxif_", 2, 2, _SAME),
    "sum": ("sum_", 1, 1, _SAME), "sumif": ("sumif_", 2, 2, _SAME),
    "avg": ("avg_", 1, 1, "real"), "avgif": ("avgif_", 2, 2, "real"),
    "make_set": ("set_", 1, 2, "dynamic"), "make_set_if": ("set_", 2, 3, "dynamic"),
    "make_list": ("list_", 1, 2, "dynamic"), "make_list_if": ("list_", 2, 3, "dynamic"),
    "any": ("any_", 1, 1, _SAME), "take_any": ("", 1, 1, _SAME),
    "arg_max": ("", 2, None, _SAME), "arg_min": ("", 2, None, _SAME),
}
_AGGREGATE_ALIASES = {"makeset": "make_set", "makelist": "make_list", "count_distinct": "dcount"}
# Functions of one column whose result Kusto names after that column (checked on its parser).
_NAME_KEEPING = frozenset({"bin", "floor", "tostring", "todatetime", "tolong", "toint", "todouble",
                           "toreal", "tobool", "toboolean", "todynamic", "parse_json", "toguid"})
_TIME_TYPES = ("datetime", "timespan")


@dataclass
class _State:
    """What lowering has built so far: the detection (leading `where`s), the stages after it,
    the lookback windows seen, and the row's columns (name -> type) at this point."""

    conditions: list[ir.Condition] = field(default_factory=list)
    stages: list[ir.Stage] = field(default_factory=list)
    lookbacks: list[tuple[timedelta, str]] = field(default_factory=list)
    columns: dict[str, str] | None = None  # None: the table is unknown, any column may exist
    # While `columns` is None: the types of the columns the query itself made (an extend of a
    # table rmmc does not know still says what `x = tolong(...)` is).
    computed: dict[str, str] = field(default_factory=dict)
    redefined: set[str] = field(default_factory=set)  # table columns an extend or rename replaced
    aggregated: bool = False  # a summarize (or take) happened: rows are no longer events
    closed: bool = False  # a project or summarize made the columns exactly `columns`
    dropped: set[str] = field(default_factory=set)  # columns a project-away or rename removed
    source: ir.Source = field(default_factory=lambda: ir.Source(None))
    union: ir.Union | None = None

    def add(self, stage: ir.Stage) -> None:
        self.stages.append(stage)


class _Lowerer:
    def __init__(self, schema: Any | None, parent: "_Lowerer | None" = None,
                 diagnostics: list[Diagnostic] | None = None):
        self.schema = schema
        self.table = None
        self.state = _State()
        if parent is None:
            self.root = self
            self.diagnostics: list[Diagnostic] = [] if diagnostics is None else diagnostics
            self.lets: dict[str, Any] = {}
            self.constants = Constants(self.lets)
            self.warned_columns: set[str] = set()
            self._inlining: set[str] = set()
            self.query: Any = None  # the query lowered (its names, read once: `_names_written`)
            self._named: set[str] | None = None
        else:  # a tabular expression inside the query: the same lets, its own rows
            self.diagnostics = parent.diagnostics if diagnostics is None else diagnostics
            self.lets = parent.lets
            self.constants = parent.constants
            self.warned_columns = parent.warned_columns
            self._inlining = parent._inlining
            self.root = parent.root

    # -- diagnostics
    def warn(self, message: str, node: Any = None, code: str = "warning") -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, message, _span(node), code))

    def note(self, message: str, node: Any = None, code: str = "note") -> None:
        self.diagnostics.append(Diagnostic(Severity.NOTE, message, _span(node), code))

    def error(self, message: str, node: Any = None, code: str = "unsupported") -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, message, _span(node), code))

    # -- the query
    def lower(self, query: A.Query, metadata: ir.Metadata) -> ir.Rule | None:
        if query.directives:
            # Kusto.Explorer's client directives (#connect, ...) act in the client, before the
            # query is sent: which cluster and database it runs against, request properties.
            # Microsoft's parser reads any `#` line before the first statement as one; what a
            # given one does is the client's, not the query language's, and no detection
            # platform documents them, so none is read as a comment.
            directive = query.directives[0]
            self.error(f"'{directive.text[:40]}' is a client directive (a '#' line, as Kusto.Explorer's "
                       "#connect): it acts outside the query, which rmmc cannot follow (write // for a comment)",
                       directive)
            return None
        body = None
        for statement in query.statements:
            if isinstance(statement, A.Let):
                self.lets[statement.name] = statement.value
            elif isinstance(statement, A.SetOption):
                self.note(f"query option 'set {statement.name}' has no effect on the detection", statement)
            elif isinstance(statement, A.ExprStatement):
                if body is not None:
                    self.error("the query has several result statements; a rule has one", statement)
                    return None
                body = statement.expr
        if body is None:
            self.error("the query has no result statement (only lets)", query, "no-body")
            return None
        self.query = query
        try:
            return self.tabular(body, metadata)
        except _Unsupported as exc:
            self.error(exc.message, exc.node)
            return None

    def tabular(self, body: Any, metadata: ir.Metadata = ir.Metadata()) -> ir.Rule:
        """A tabular expression as a rule: its source (a table, or a union), then each
        operator (raises `_Unsupported`)."""
        state = self.state
        source, operators = self._flatten(body)
        if isinstance(source, A.Union):
            self._union(source, state, None)
        elif isinstance(source, A.Search):
            self._search(source, state)
        else:
            state.source = self._source(source)
            if self.table is not None:
                state.columns = self._table_columns(self.table)
        for op in operators:
            self._operator(op, state)
        return self._rule(state, metadata)

    def _table_columns(self, table: Any) -> dict[str, str]:
        """A table's columns: Defender's, and those only Sentinel's copy has (TimeGenerated ...)
        when the query names them: a query that reads them runs on Sentinel."""
        columns = dict(table.columns)
        if table.sentinel_columns:
            named = self.root.names_written()
            columns.update((n, t) for n, t in table.sentinel_columns.items() if n in named and n not in columns)
        return columns

    def names_written(self) -> set[str]:
        """Every name the query writes (read once, when a table has Sentinel-only columns)."""
        if self._named is None:
            self._named = _names(self.query) if self.query is not None else set()
        return self._named

    def _rule(self, state: _State, metadata: ir.Metadata) -> ir.Rule:
        lookback = None
        if state.lookbacks:
            window, text = min(state.lookbacks, key=lambda pair: pair[0])
            lookback = ir.Lookback(window, text)
        return ir.Rule(metadata, state.source, ir.all_of(state.conditions), lookback, (),
                       tuple(state.stages), state.union)

    def sub(self, node: Any, diagnostics: list[Diagnostic] | None = None) -> tuple[ir.Rule, "_Lowerer"]:
        """A tabular expression inside the query (a join's right side, a union branch, a
        subquery) as a rule of its own, and the lowerer that made it (its columns)."""
        child = _Lowerer(self.schema, self, diagnostics)
        return child.tabular(node), child

    def _flatten(self, body: Any, seen: frozenset[str] = frozenset()) -> tuple[Any, list[Any]]:
        """The body's source and operators, with tabular lets it starts from inlined (and
        `materialize(x)`, which only caches x, read as x)."""
        while isinstance(body, A.Paren):
            body = body.expr
        if isinstance(body, A.Pipeline):
            source, operators = self._flatten(body.source, seen)
            return source, operators + list(body.operators)
        if _is_materialize(body):
            return self._flatten(body.args[0], seen)
        if isinstance(body, A.Name) and body.name in self.lets:
            if body.name in seen:
                raise _Unsupported(body, f"'{body.name}' refers to itself")
            bound = self.lets[body.name]
            if isinstance(bound, A.FunctionDef):
                raise _Unsupported(body, f"'{body.name}' is a function defined in the query; "
                                   "calls to query functions cannot be lowered")
            return self._flatten(bound, seen | {body.name})
        return body, []

    def _source(self, source: Any) -> ir.Source:
        if isinstance(source, A.ExternalData):
            external = self._external(source)
            self.state.columns = dict(external.columns)
            self.state.closed = True
            return ir.Source(None, external=external)
        if isinstance(source, A.SearchColumn):
            raise _Unsupported(source, f"{_describe(source)} is search's Column:value condition, written where "
                               "the query's table should stand")
        if not isinstance(source, A.Name):
            what = type(source).__name__
            if isinstance(source, A.Union):
                what = "union"
            elif isinstance(source, A.GenericSource):
                what = source.name
            elif isinstance(source, A.Datatable):
                what = "datatable"
            elif isinstance(source, A.Call):
                what = f"{_describe(source.func)}()"
            raise _Unsupported(source, f"unsupported source: {what} (a rule reads one table)")
        name = source.name
        table = self.schema.table(name) if self.schema is not None else None
        self.table = table
        if table is None:
            self.warn(f"unknown table '{name}': not a Defender XDR table rmmc knows; columns "
                      "are not checked and the Sigma logsource is unknown", source, "unknown-table")
            return ir.Source(name)
        logsource = table.logsource or {}
        try:
            kind = ir.EventKind(table.event_kind)
        except ValueError:
            kind = ir.EventKind.UNKNOWN
        return ir.Source(name, kind, logsource.get("product"), logsource.get("category"),
                         logsource.get("service"))

    def _external(self, node: A.ExternalData) -> ir.ExternalTable:
        """`externaldata (...) [uris] with (...)` as an external table (see `ir.ExternalTable`)."""
        uris = []
        for item in node.uris:
            value = self._constant(item)
            if not isinstance(value, str) or not value:
                raise _Unsupported(item, "an externaldata URI must be a constant string")
            uris.append(value)
        columns = []
        for decl in node.columns:
            type_name = _TYPE_ALIASES.get(decl.type.lower(), decl.type.lower())
            if type_name not in _EXTERNAL_TYPES:
                raise _Unsupported(decl, f"externaldata column '{decl.name}' of type {decl.type} is not lowered")
            if any(decl.name == name for name, _ in columns):
                raise _Unsupported(decl, f"externaldata declares the column '{decl.name}' twice")
            columns.append((decl.name, type_name))
        fmt, ignore_first = None, False
        for name, value_node in node.properties:
            key = name.lower()
            if key == "format" and isinstance(value_node, A.Name) and value_node.name not in self.lets:
                value = value_node.name  # `format=txt`, a bare word, as Kusto reads it too
            else:
                value = self._constant(value_node)
            if key == "format":
                if not isinstance(value, str) or value.lower() not in ir.EXTERNAL_FORMATS:
                    raise _Unsupported(value_node, f"externaldata format {value!r} is not one rmmc reads "
                                       f"({', '.join(ir.EXTERNAL_FORMATS)})")
                fmt = value.lower()
            elif key == "ignorefirstrecord":
                if not isinstance(value, bool):
                    raise _Unsupported(value_node, "ignoreFirstRecord takes true or false")
                ignore_first = value
            else:
                raise _Unsupported(value_node, f"externaldata property '{name}' is not lowered "
                                   "(format and ignoreFirstRecord are)")
        from rmmc.compiler.external import detect_format

        hidden = tuple(bool(getattr(item, "obfuscated", False)) for item in node.uris)
        return ir.ExternalTable(tuple(uris), tuple(columns), fmt or detect_format(uris[0]), ignore_first,
                                fmt is not None, node.span, hidden)

    # -- operators
    def _operator(self, op: Any, state: _State) -> None:
        if isinstance(op, A.Where):
            self._where(op, state)
        elif isinstance(op, A.Extend):
            self._extend(op, state)
        elif isinstance(op, A.Summarize):
            self._summarize(op, state)
        elif isinstance(op, A.Count):
            state.add(ir.Summarize((), (ir.Aggregate("Count", "count"),), op.span))
            self._aggregated(state, {"Count": "long"})
        elif isinstance(op, A.Distinct):
            self._distinct(op, state)
        elif isinstance(op, A.Project):
            columns = self._columns(op.items, state, "project")
            state.add(ir.Project(tuple(columns), op.span))
            self._reshape(state, {n: e for n, e in columns}, keep_others=False)
        elif isinstance(op, A.ProjectRename):
            for item in op.renames:
                if isinstance(item, A.Name):  # Kusto's semantic check: KS110
                    name = kql_expr(item)
                    raise _Unsupported(item, f"project-rename {name}: a column rename assignment is "
                                       f"expected (NewName = {name})")
            pairs = tuple(op.renames)
            for new, old in pairs:
                self._known(old, op, state)
            state.add(ir.Rename(pairs, op.span))
            if state.columns is not None:
                renamed = {old: new for new, old in pairs}
                state.columns = {renamed.get(k, k): t for k, t in state.columns.items()}
            else:
                moved = {new: state.computed.pop(old, None) for new, old in pairs}
                for new, type_name in moved.items():
                    state.computed.pop(new, None)
                    if type_name is not None:
                        state.computed[new] = type_name
            state.redefined.update(new for new, _ in pairs)
            state.redefined.update(old for _, old in pairs)
            state.dropped.update(old for _, old in pairs)
            state.dropped.difference_update(new for new, _ in pairs)
        elif isinstance(op, (A.ProjectAway, A.ProjectKeep, A.ProjectReorder)):
            self._column_selection(op, state)
        elif isinstance(op, A.Sort):
            state.add(ir.Sort(tuple(self._sort_key(k, state) for k in op.keys), op.span))
        elif isinstance(op, A.Top):
            count = self._int(op.count)
            if count is None:
                raise _Unsupported(op.count, "top needs a constant row count")
            state.add(ir.Sort((self._sort_key(op.key, state),), op.span))
            state.add(ir.Limit(count, op.span))
            state.aggregated = True
        elif isinstance(op, A.Take):
            count = self._int(op.count)
            if count is None:
                raise _Unsupported(op.count, "take needs a constant row count")
            state.add(ir.Limit(count, op.span))
            state.aggregated = True
        elif isinstance(op, A.As):
            self.note(f"'as {op.name}' names the result; it has no effect on the detection", op)
        elif isinstance(op, A.Join):
            self._join(op, state)
        elif isinstance(op, A.Lookup):
            self._join(op, state, lookup=True)
        elif isinstance(op, A.Union):
            self._union(op, state, self._rule(state, ir.Metadata()))
        elif isinstance(op, A.MvExpand):
            self._mv_expand(op, state)
        elif isinstance(op, A.Parse):
            self._parse(op, state)
        elif isinstance(op, A.GenericOperator) and op.name == "render":
            self.note("'render' only says how a client draws the result; it is not translated", op)
        elif isinstance(op, A.GenericOperator) and op.name == "serialize" and op.raw.strip() == "serialize":
            self.note("'serialize' only marks the rows as ordered; it changes no row", op)
        elif isinstance(op, A.GenericOperator):
            raise _Unsupported(op, f"unsupported operator: {op.name}")
        else:
            raise _Unsupported(op, f"unsupported operator: {type(op).__name__}")

    # -- several sources
    def _union(self, node: A.Union, state: _State, prior: ir.Rule | None) -> None:
        """`union A, B ...` (or `... | union B`, whose left side `prior` is the first branch):
        the state becomes a rule over the branches' rows."""
        withsource, fuzzy = None, False
        for param in node.params:
            name = param.name.lower()
            if name == "withsource":
                withsource = self._param_name(param)
            elif name == "isfuzzy":
                value = self._constant(param.value)
                if not isinstance(value, bool):
                    raise _Unsupported(param, "isfuzzy takes true or false")
                fuzzy = value
            elif name == "kind":
                if self._param_name(param).lower() != "outer":
                    raise _Unsupported(param, "union kind=inner (only the columns every branch has) "
                                       "is not lowered")
            elif name.startswith("hint."):
                continue  # how a cluster runs it: no effect on the rows
            else:
                raise _Unsupported(param, f"union parameter '{param.name}' is not lowered")
        branches: list[ir.Rule] = []
        columns: list[dict[str, str] | None] = []
        if prior is not None:
            branches.append(prior)
            columns.append(state.columns)
        for item in node.tables:
            if isinstance(item, A.Star):
                raise _Unsupported(item, "union * (every table) is not lowered: name the tables")
            if isinstance(item, A.NamePattern):
                names = self._matching_tables(item)
                for name in names:
                    rule, child = self.sub(A.Name(name, span=item.span))
                    branches.append(rule)
                    columns.append(child.state.columns)
                continue
            rule, child = self.sub(item)
            branches.append(rule)
            columns.append(child.state.columns)
        if len(branches) < 1:
            raise _Unsupported(node, "union of no table")
        labels = tuple(_label(rule, i) for i, rule in enumerate(branches))
        merged = self._union_columns(node, branches, columns, withsource)
        kinds = {b.source.kind for b in branches}
        kind = kinds.pop() if len(kinds) == 1 else ir.EventKind.UNKNOWN
        state.conditions, state.stages, state.lookbacks = [], [], []
        state.redefined, state.dropped = set(), set()
        state.aggregated = False
        state.closed = merged is not None
        state.columns = merged
        state.source = ir.Source(None, kind)
        state.union = ir.Union(tuple(branches), withsource, fuzzy, labels, node.span)
        self.table = None

    def _search(self, node: A.Search, state: _State) -> None:
        """`search [kind=...] in (T, ...) predicate`: Kusto's documented meaning, `union
        withsource=$table T, ... | where predicate` with its terms spelled out (`search.py`)."""
        from rmmc.compiler.kql import search

        try:
            cased = search.case_sensitive(node.params)
            if node.tables is None:
                raise search.SearchError(node, "search without `in (...)` reads every table of the database: "
                                         "name the tables (`search in (T1, T2) ...`)")
            for table in node.tables:
                if isinstance(table, A.Name) and table.name in self.lets:
                    raise search.SearchError(table, f"search in ({table.name}): a let is not a table; Kusto "
                                             "names its rows in $table otherwise")
                if not isinstance(table, (A.Name, A.NamePattern)):
                    raise search.SearchError(table, "search in (...) of a query: Kusto names its rows in $table "
                                             "otherwise; name tables")
            withsource = A.OpParam("withsource", A.Name(search.TABLE_COLUMN, span=node.span), span=node.span)
            self._union(A.Union((withsource,), node.tables, span=node.span), state, None)
            labels = state.union.labels if state.union is not None else ()
            predicate = search.where_predicate(node.predicate, state.columns, labels, cased, self._is_tabular)
        except search.SearchError as exc:
            raise _Unsupported(exc.node, exc.message) from None
        self._where(A.Where(predicate, span=node.span), state)

    def _param_name(self, param: Any) -> str:
        value = param.value
        if isinstance(value, A.Name):
            return value.name
        if isinstance(value, A.StringLit):
            return value.value
        raise _Unsupported(param, f"{param.name} takes a name here, not {_describe(value)}")

    def _matching_tables(self, item: A.NamePattern) -> list[str]:
        if self.schema is None:
            raise _Unsupported(item, f"the table pattern '{item.pattern}' cannot be resolved without a schema")
        names = [n for n in self.schema.tables if fnmatch.fnmatchcase(n, item.pattern)]
        if not names:
            raise _Unsupported(item, f"no table rmmc knows matches '{item.pattern}'")
        self.note(f"'{item.pattern}' is read as the tables of rmmc's Defender schema that match it: "
                  f"{', '.join(names)} (a table rmmc does not know is left out)", item, "resolved")
        return names

    def _union_columns(self, node: Any, branches: list[ir.Rule], columns: list[dict[str, str] | None],
                       withsource: str | None) -> dict[str, str] | None:
        """The union's columns: every branch's, in order of first appearance (None when a
        branch's are unknown)."""
        merged: dict[str, str] = {withsource: "string"} if withsource else {}
        for rule, found in zip(branches, columns):
            if found is None:
                return None
            for name, type_name in found.items():
                if name == withsource:
                    continue
                known = merged.setdefault(name, type_name)
                if known != type_name:
                    raise _Unsupported(node, f"the column '{name}' is {known} in one branch and {type_name} "
                                       "in another: Kusto's union splits it by type, which is not lowered")
        return merged

    def _join(self, op: Any, state: _State, lookup: bool = False) -> None:
        """`join kind=K (right) on keys` / `lookup`: a stage matching the rows so far with a
        sub-rule's rows."""
        what = "lookup" if lookup else "join"
        kind = "leftouter" if lookup else "innerunique"
        for param in op.params:
            name = param.name.lower()
            if name == "kind":
                value = self._param_name(param).lower()
                value = _JOIN_KIND_ALIASES.get(value, value)
                allowed = ("leftouter", "inner") if lookup else ir.JOIN_KINDS
                if value not in allowed:
                    raise _Unsupported(param, f"{what} kind={value} is not a {what} kind rmmc lowers "
                                       f"({', '.join(allowed)})")
                kind = value
            elif name.startswith("hint."):
                continue  # how a cluster runs it: no effect on the rows
            else:
                raise _Unsupported(param, f"{what} parameter '{param.name}' is not lowered")
        right, child = self.sub(op.right)
        right_columns = child.state.columns
        keys = tuple(self._join_key(c, what) for c in op.on)
        if not keys:
            raise _Unsupported(op, f"{what} without keys")
        left_columns = state.columns
        for (left_key, right_key), node in zip(keys, op.on):
            self._known(left_key, node, state)
            if right_columns is not None and right_key not in right_columns:
                raise _Unsupported(node, f"the right side of the {what} has no column '{right_key}'")
            if left_columns is not None and right_columns is not None:
                a, b = left_columns[left_key], right_columns[right_key]
                if a != b and not {a, b} <= {"string", "guid"}:
                    raise _Unsupported(node, f"{what} key '{left_key}' is {a} on the left and {b} on the "
                                       "right: Kusto refuses to match keys of different types")
        known = left_columns is not None and right_columns is not None
        if kind in ir.LEFT_ONLY_JOINS:
            columns = left_columns
        elif kind in ir.RIGHT_ONLY_JOINS:
            columns = dict(right_columns) if right_columns is not None else None
        elif known:
            names = ir.join_output_names(list(left_columns), list(right_columns), kind,
                                         tuple(k for _, k in keys), lookup)
            columns = dict(left_columns)
            for (column, type_name), name in zip(right_columns.items(), names):
                if name:
                    columns[name] = type_name
        else:
            columns = None
        state.add(ir.Join(kind, right, keys, tuple(left_columns) if known else None,
                          tuple(right_columns) if known else None, lookup, op.span))
        state.columns = columns
        state.aggregated = True
        state.closed = columns is not None

    def _join_key(self, node: Any, what: str) -> tuple[str, str]:
        while isinstance(node, A.Paren):
            node = node.expr
        if isinstance(node, A.Name):
            return node.name, node.name
        if isinstance(node, A.Binary) and node.op == "==":
            sides = {}
            for side in (node.left, node.right):
                if (isinstance(side, A.Member) and isinstance(side.target, A.Name)
                        and side.target.name in ("$left", "$right")):
                    sides[side.target.name] = side.name
            if len(sides) == 2:
                return sides["$left"], sides["$right"]
        raise _Unsupported(node, f"{what} condition {_describe(node)}: only equal columns (`Key` or "
                           "`$left.A == $right.B`) are lowered")

    def _mv_expand(self, op: A.MvExpand, state: _State) -> None:
        index = None
        for param in op.params:
            name = param.name.lower()
            if name == "with_itemindex":
                index = self._param_name(param)
            elif name in ("bagexpansion", "kind") and self._param_name(param).lower() == "bag":
                continue
            else:
                raise _Unsupported(param, f"mv-expand parameter '{param.name}' is not lowered")
        limit = None
        if op.limit is not None:
            limit = self._int(op.limit)
            if limit is None:
                raise _Unsupported(op.limit, "mv-expand limit needs a constant row count")
        columns: list[tuple[str, ir.Expr, str | None]] = []
        for item in op.items:
            node = item.item
            if isinstance(node, A.Assignment):
                if len(node.targets) != 1:
                    raise _Unsupported(node, "mv-expand with several names for one value is not lowered")
                name, value = node.targets[0], node.value
            else:
                name, value = _expanded_name(node), node
                if name is None:
                    raise _Unsupported(node, f"mv-expand of {_describe(node)} needs a name (`name = ...`)")
            to_type = item.to_type.lower() if item.to_type else None
            to_type = {"boolean": "bool", "double": "real"}.get(to_type, to_type)
            if to_type not in (None, "string", "dynamic", "long", "int", "real", "bool"):
                raise _Unsupported(item, f"mv-expand to typeof({item.to_type}) is not lowered")
            columns.append((name, self.expr(value), to_type))
        if index is not None and any(index == name for name, _, _ in columns):
            raise _Unsupported(op, f"with_itemindex names the expanded column '{index}'")
        if index is not None and state.columns is not None and index in state.columns:
            raise _Unsupported(op, f"with_itemindex={index} names a column the rows already have")
        state.add(ir.MvExpand(tuple(columns), limit, index, op.span))
        if state.columns is not None:
            for name, _, to_type in columns:
                state.columns[name] = to_type or "dynamic"
            if index is not None:
                state.columns[index] = "long"
        state.redefined.update(name for name, _, _ in columns)
        state.aggregated = True

    def _parse(self, op: A.Parse, state: _State) -> None:
        for param in op.params:
            if param.name.lower() == "kind" and self._param_name(param).lower() == "simple":
                continue
            raise _Unsupported(param, f"parse {param.name}={_describe(param.value)} is not lowered "
                               "(only kind=simple)")
        source = self.expr(op.source)
        parts: list[Any] = []
        for i, part in enumerate(op.pattern):
            if isinstance(part, A.Star):
                if parts and isinstance(parts[-1], tuple):
                    raise _Unsupported(part, f"'*' right after the string column '{parts[-1][0]}' is "
                                       "ambiguous (Kusto refuses it too)")
                parts.append(None)
            elif isinstance(part, A.StringLit):
                if not part.value:
                    raise _Unsupported(part, "an empty string in a parse pattern (Kusto refuses it too)")
                parts.append(part.value)
            elif isinstance(part, A.ParseColumn):
                if part.type is not None and part.type.lower() != "string":
                    raise _Unsupported(part, f"parse into a typed column ({part.name}:{part.type}) is not "
                                       "lowered; parse it as a string and convert it")
                if parts and not isinstance(parts[-1], str):  # first, it takes the text's start
                    raise _Unsupported(part, f"the parse column '{part.name}' does not follow a string "
                                       "(Kusto refuses it too)")
                if any(isinstance(p, tuple) and p[0] == part.name for p in parts):
                    raise _Unsupported(part, f"the parse column '{part.name}' is given twice")
                parts.append((part.name,))
            else:
                raise _Unsupported(part, f"cannot lower the parse pattern part {_describe(part)}")
        stage = ir.Parse(source, tuple(parts), False, op.span)
        state.add(stage)
        if state.columns is not None:
            for name in stage.columns:
                state.columns.pop(name, None)
                state.columns[name] = "string"
        state.redefined.update(stage.columns)
        state.dropped.difference_update(stage.columns)

    def _where(self, op: A.Where, state: _State) -> None:
        """Leading `where`s are the detection; later ones are filter stages, in place."""
        leading = not state.stages
        kept: list[ir.Condition] = []
        for conjunct in _conjuncts(op.predicate):
            if self._lookback(conjunct, state):
                continue
            kept.append(self.condition(conjunct))
        if not kept:
            return
        if leading:
            state.conditions.extend(kept)
        else:
            state.add(ir.Filter(ir.all_of(kept), op.span))

    def _extend(self, op: A.Extend, state: _State) -> None:
        columns = self._columns(op.items, state, "extend")
        state.add(ir.Extend(tuple(columns), op.span))
        self._reshape(state, dict(columns), keep_others=True)

    def _reshape(self, state: _State, made: dict[str, ir.Expr], keep_others: bool) -> None:
        """The row's columns after an extend (keep_others) or a project."""
        if state.columns is not None:
            columns = dict(state.columns) if keep_others else {}
            for name, expr in made.items():
                columns.pop(name, None)
                columns[name] = expr.type
            state.columns = columns
        elif not keep_others:
            state.columns = {name: expr.type for name, expr in made.items()}
        else:
            state.computed.update((name, expr.type) for name, expr in made.items())
        if not keep_others:
            state.closed = True
        for name, expr in made.items():
            if not (isinstance(expr, ir.Field) and expr.name == name and name not in state.redefined):
                state.redefined.add(name)
        if not keep_others and state.columns is not None:
            # a table column that a project did not keep as it is can no longer be the lookback's
            state.redefined.update(n for n in (self.table.columns if self.table else ()) if n not in made)

    def _aggregated(self, state: _State, columns: dict[str, str]) -> None:
        state.columns = columns
        state.aggregated = state.closed = True

    def _columns(self, items: Any, state: _State, what: str) -> list[tuple[str, ir.Expr]]:
        """`name = expr` items (or a bare column / name-keeping call) as (name, expression),
        each read against the row before the operator."""
        out: list[tuple[str, ir.Expr]] = []
        names: set[str] = set()
        for item in items:
            if isinstance(item, A.Assignment):
                if len(item.targets) != 1:
                    raise _Unsupported(item, f"{what} with several names for one value (a tuple "
                                       "assignment) cannot be lowered")
                name, value = item.targets[0], item.value
            else:
                value = item
                name = self._default_name(item)
                if name is None:
                    raise _Unsupported(item, f"{what} of {_describe(item)} needs a name (`name = ...`): "
                                       "rmmc does not reproduce Kusto's generated column names")
            if name in names:
                raise _Unsupported(item, f"the column '{name}' is given twice in one {what}")
            names.add(name)
            out.append((name, self.expr(value)))
        return out

    def _default_name(self, node: Any) -> str | None:
        """Kusto's name for an unnamed column: a column keeps its name, as do `bin()` and the
        conversions of one column (`tostring(x)` is x)."""
        while isinstance(node, A.Paren):
            node = node.expr
        if isinstance(node, A.Name) and node.name not in self.lets:
            return node.name
        if (isinstance(node, A.Call) and isinstance(node.func, A.Name) and node.func.name in _NAME_KEEPING
                and node.args):
            return self._default_name(node.args[0])
        return None

    def _distinct(self, op: A.Distinct, state: _State) -> None:
        if any(isinstance(i, A.Star) for i in op.items):
            if state.columns is None:
                raise _Unsupported(op, "distinct * over a table rmmc does not know cannot be lowered")
            keys = tuple((n, ir.Field(n, t)) for n, t in state.columns.items())
        else:
            keys = tuple(self._columns(op.items, state, "distinct"))
        state.add(ir.Summarize(keys, (), op.span))
        self._aggregated(state, {n: e.type for n, e in keys})

    def _column_selection(self, op: Any, state: _State) -> None:
        patterns = tuple(self._pattern(c) for c in (op.columns if not isinstance(op, A.ProjectReorder)
                                                     else [k.expr for k in op.columns]))
        if isinstance(op, A.ProjectReorder):
            if any(k.direction for k in op.columns):
                raise _Unsupported(op, "project-reorder with asc/desc ordering cannot be lowered")
            state.add(ir.Reorder(patterns, op.span))
            return
        if isinstance(op, A.ProjectAway):
            state.add(ir.ProjectAway(patterns, op.span))
            state.dropped.update(p for p in patterns if "*" not in p)
            state.computed = {n: t for n, t in state.computed.items()
                              if not any(fnmatch.fnmatchcase(n, p) for p in patterns)}
            if state.columns is not None:
                state.columns = {n: t for n, t in state.columns.items()
                                 if not any(fnmatch.fnmatchcase(n, p) for p in patterns)}
            return
        if state.columns is None:
            raise _Unsupported(op, "project-keep over a table rmmc does not know cannot be lowered")
        kept = {n: t for n, t in state.columns.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
        state.add(ir.Project(tuple((n, ir.Field(n, t)) for n, t in kept.items()), op.span))
        state.columns = kept

    def _pattern(self, node: Any) -> str:
        if isinstance(node, A.Name):
            return node.name
        if isinstance(node, A.NamePattern):
            return node.pattern
        raise _Unsupported(node, f"expected a column name or pattern, found {_describe(node)}")

    def _sort_key(self, key: A.SortKey, state: _State) -> ir.SortKey:
        direction = (key.direction or "desc").lower()
        if direction not in ("asc", "desc"):
            raise _Unsupported(key, f"sort order '{key.direction}' cannot be lowered")
        nulls = None if key.nulls is None else key.nulls == "first"
        return ir.SortKey(self.expr(key.expr), direction == "desc", nulls)

    def _int(self, node: Any) -> int | None:
        try:
            value = self.constants.value(node)
        except NotConstant:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    # -- summarize
    def _summarize(self, op: A.Summarize, state: _State) -> None:
        if op.params:
            self.note("summarize hints have no effect on the detection", op.params[0])
        keys = self._columns(op.by, state, "summarize by") if op.by else []
        aggregates: list[ir.Aggregate] = []
        out_columns: dict[str, str] = {n: e.type for n, e in keys}
        renames: list[tuple[str, str]] = []  # `Last = arg_max(Timestamp, ...)`: a rename after it
        kusto: list[str] = list(out_columns)  # Kusto's result columns (a name given takes the place)
        for item in op.aggregates:
            aggregate, made = self._aggregate(item, state, out_columns)
            aggregates.append(aggregate)
            if aggregate.function in ("arg_max", "arg_min"):
                # its columns, named as Kusto names them (extremes.py)
                pairs = extreme_columns(aggregate, tuple(keys), out_columns, state.columns or {})
                if [n for n, _ in pairs] != [n for n, _ in extreme_columns(aggregate, tuple(keys), kusto,
                                                                           state.columns or {})]:
                    raise _Unsupported(item, f"{aggregate.function}() returns a column named as one an "
                                       "earlier part of this summarize renamed: Kusto names it otherwise")
                types = {**(state.columns or {}),
                         **{a.name: a.type for a in aggregate.args if isinstance(a, ir.Field)}}
                made = {name: types.get(source, "dynamic") for name, source in pairs}
                named = self._extreme_names(item, aggregate, pairs, kusto)
                renames.extend(named)
                given = {old: new for new, old in named}
                kusto.extend(given.get(n, n) for n, _ in pairs)
            else:
                if renames and not isinstance(item, A.Assignment) and \
                        self._aggregate(item, state, dict.fromkeys(kusto, ""))[0].name != aggregate.name:
                    raise _Unsupported(item, "this aggregate's generated name is one an earlier part of "
                                       "this summarize renamed: Kusto names it otherwise")
                kusto.extend(made)
            for name, type_name in made.items():
                out_columns[name] = type_name
            for new, old in renames:  # taken from here on: the old name too, until the rename
                out_columns.setdefault(new, out_columns[old])
        state.add(ir.Summarize(tuple(keys), tuple(aggregates), op.span))
        if renames:
            # `Last = arg_max(Timestamp, *)`: the columns arg_max returns, with its first ones
            # named (Kusto's result, checked on its parser: Last holds the maximum, and
            # Timestamp is no column of the result)
            state.add(ir.Rename(tuple(renames), op.span))
            renamed = {old: new for new, old in renames}
            out_columns = {renamed.get(k, k): out_columns[renamed.get(k, k)] if k in renamed else t
                           for k, t in out_columns.items() if k not in renamed.values()}
        if state.columns is None and any(isinstance(a, ir.Star) for g in aggregates for a in g.args):
            # arg_max(Timestamp, *) over rows whose columns rmmc does not know: it keeps them
            # all, so they stay unknown (not closed to the keys)
            state.aggregated = True
            return
        self._aggregated(state, out_columns)

    def _aggregate(self, item: Any, state: _State, taken: dict[str, str]) -> tuple[ir.Aggregate, dict[str, str]]:
        name, expr = (item.targets, item.value) if isinstance(item, A.Assignment) else ((), item)
        while isinstance(expr, A.Paren):
            expr = expr.expr
        if not (isinstance(expr, A.Call) and isinstance(expr.func, A.Name)):
            raise _Unsupported(item, f"cannot lower the aggregation {_describe(expr)}")
        function = _AGGREGATE_ALIASES.get(expr.func.name, expr.func.name)
        spec = AGGREGATES.get(function)
        if spec is None:
            raise _Unsupported(expr, f"the aggregation function {function}() is not in rmmc's model")
        prefix, fewest, most, result = spec
        count = len(expr.args)
        if count < fewest or (most is not None and count > most):
            raise _Unsupported(expr, f"{function}() takes {fewest}" + ("" if most == fewest else
                               f" to {most}" if most is not None else " or more") + f" arguments, not {count}")
        args: list[ir.Expr] = []
        conditional = function.endswith("if")
        for i, arg in enumerate(expr.args):
            if isinstance(arg, A.Star):
                if function not in ("arg_max", "arg_min") or i == 0:
                    raise _Unsupported(arg, f"'*' is not an argument of {function}()")
                args.append(ir.Star())
            elif conditional and i == count - 1:
                args.append(ir.Boolean(self.condition(arg)))
            else:
                args.append(self.expr(arg))
        if function in ("arg_max", "arg_min"):  # its columns: _summarize names them
            if not all(isinstance(a, (ir.Star, ir.Field)) for a in args):
                raise _Unsupported(item, f"{function}() of an expression needs its columns named; "
                                   "rmmc does not reproduce Kusto's generated names")
            return ir.Aggregate(None, function, tuple(args)), {}
        type_name = args[0].type if result == _SAME and args else ("long" if result == _SAME else result)
        if len(name) > 1:
            raise _Unsupported(item, "several names for one aggregate cannot be lowered")
        if name:
            column = name[0]
        elif function == "take_any":
            if not isinstance(args[0], ir.Field):
                raise _Unsupported(item, "take_any() of an expression needs a name (`name = ...`)")
            column = args[0].name
        else:
            first = args[0] if args and not (conditional and function == "countif") else None
            column = prefix + (first.name if isinstance(first, ir.Field) else "")
            base, n = column, 1
            while column in taken:
                column, n = f"{base}{n}", n + 1
        if column in taken:
            raise _Unsupported(item, f"the column '{column}' is given twice in one summarize")
        return ir.Aggregate(column, function, tuple(args)), {column: type_name}

    def _extreme_names(self, item: Any, aggregate: ir.Aggregate, pairs: list[tuple[str, str]],
                       taken: list[str]) -> list[tuple[str, str]]:
        """`(a, b) = arg_max(x, c, ...)` names the columns arg_max returns in order (x, then c
        ...; `pairs` are the (result column, input column) it returns): the (new, old) renames
        that give them those names.  Refused where a name is taken (Kusto would suffix it) or
        `*` would be named."""
        if not isinstance(item, A.Assignment):
            return []
        names = item.targets
        if len(names) > len(aggregate.args) or any(isinstance(a, ir.Star) for a in aggregate.args[:len(names)]):
            raise _Unsupported(item, f"{aggregate.function}() names more columns than it returns "
                               "(only its first columns, not `*`, take names)")
        own = [name for name, _ in pairs]
        renames = []
        for new, (old, _) in zip(names, pairs):
            if new == old:
                continue
            if new in taken or new in own or new in names[:names.index(new)]:
                raise _Unsupported(item, f"naming the column {old} of {aggregate.function}() {new}: "
                                   "the name is taken in this summarize")
            renames.append((new, old))
        return renames

    # -- lookback
    def _lookback(self, conjunct: Any, state: _State) -> bool:
        """Whether `conjunct` is a time window ending now on the table's time column, while
        the rows are still its events (then it becomes the lookback)."""
        if state.aggregated:
            return False
        if isinstance(conjunct, A.Between) and not conjunct.negated and self._is_time_column(conjunct.left, state):
            low, high = self._time(conjunct.low), self._time(conjunct.high)
            if isinstance(low, RelativeTime) and isinstance(high, RelativeTime):
                if high.offset != timedelta(0) or low.offset >= timedelta(0):
                    return False
                state.lookbacks.append((-low.offset, timespan_text(-low.offset)))
                return True
            return False
        if isinstance(conjunct, A.Binary) and conjunct.op in (">", ">=", "<", "<="):
            left, right, op = conjunct.left, conjunct.right, conjunct.op
            if self._is_time_column(right, state) and not self._is_time_column(left, state):
                left, right, op = right, left, _MIRROR[op]
            if self._is_time_column(left, state) and op in (">", ">="):
                bound = self._time(right)
                if isinstance(bound, RelativeTime) and bound.offset < timedelta(0):
                    state.lookbacks.append((-bound.offset, timespan_text(-bound.offset)))
                    return True
        return False

    def _is_time_column(self, node: Any, state: _State) -> bool:
        return (isinstance(node, A.Name) and node.name in TIME_COLUMNS and node.name not in self.lets
                and node.name not in state.redefined)

    def _time(self, node: Any) -> Any:
        try:
            return self.constants.value(node)
        except NotConstant:
            return None

    # -- scalar expressions
    def expr(self, node: Any) -> ir.Expr:
        """A KQL scalar expression as a model expression (constants folded)."""
        while isinstance(node, A.Paren):
            node = node.expr
        if isinstance(node, A.Name) and node.name not in self.lets:
            return self._column(node)
        try:
            value = self.constants.value(node)
        except NotConstant as exc:
            if "template placeholder" in exc.reason:  # `{{StartTimeISO}}`: not a runnable rule yet
                raise _Unsupported(exc.node if _span(exc.node) else node, exc.reason) from None
            value = _NO_VALUE
        if value is not _NO_VALUE:
            return self._literal(value, node)
        if isinstance(node, A.Name):  # a scalar let that is no constant here (`2*1h`): its expression
            bound = self.lets[node.name]
            if isinstance(bound, (A.FunctionDef, A.Pipeline, A.Datatable)) or node.name in self._inlining:
                raise _Unsupported(node, f"'{node.name}' is not a scalar value here")
            self._inlining.add(node.name)
            try:
                return self.expr(bound)
            finally:
                self._inlining.discard(node.name)
        if isinstance(node, A.Call) and isinstance(node.func, A.Name):
            return self._call(node)
        if isinstance(node, A.Binary) and node.op in OPERATORS:
            return self._function("add" if node.op == "+" else OPERATORS[node.op],
                                  (self.expr(node.left), self.expr(node.right)), node)
        if isinstance(node, A.Unary) and node.op in ("-", "+"):
            inner = self.expr(node.operand)
            return inner if node.op == "+" else self._function("negate", (inner,), node)
        if isinstance(node, A.Member):
            return self._function("member", (self.expr(node.target), ir.Literal(node.name)), node)
        if isinstance(node, A.Index):
            index = self.expr(node.index)
            function = "member" if isinstance(index, ir.Literal) and isinstance(index.value, str) else "index"
            return self._function(function, (self.expr(node.target), index), node)
        if isinstance(node, (A.Binary, A.Logical, A.ListOp, A.Between)):
            return ir.Boolean(self.condition(node))
        if isinstance(node, A.SearchColumn):
            raise _Unsupported(node, f"{_describe(node)} is search's syntax; outside `search` its meaning is not "
                               f"documented (write {_describe(node.column)} has ... for a term)")
        raise _Unsupported(node, f"cannot lower the expression {_describe(node)}")

    def _literal(self, value: Any, node: Any) -> ir.Expr:
        if isinstance(value, RelativeTime):
            if value.offset == timedelta(0):
                return ir.Call("now", (), "datetime")
            if value.offset < timedelta(0):
                return ir.Call("ago", (ir.Literal(-value.offset, "timespan"),), "datetime")
            return ir.Call("now", (ir.Literal(value.offset, "timespan"),), "datetime")
        if value is None:
            return ir.Literal(None, "dynamic")
        if isinstance(value, bool):
            return ir.Literal(value, "bool")
        if isinstance(value, int):
            return ir.Literal(value, "long")
        if isinstance(value, float):
            return ir.Literal(value, "real")
        if isinstance(value, str):
            return ir.Literal(value, "string")
        if isinstance(value, datetime):
            return ir.Literal(value, "datetime")
        if isinstance(value, timedelta):
            return ir.Literal(value, "timespan")
        if isinstance(value, list):
            return ir.Literal(tuple(value), "dynamic")
        raise _Unsupported(node, f"cannot lower the constant {_describe(node)}")

    def _call(self, node: A.Call) -> ir.Expr:
        name = node.func.name
        if any(isinstance(a, A.NamedArg) for a in node.args):
            raise _Unsupported(node, f"named arguments of {name}() cannot be lowered")
        if name in ("iff", "iif") and len(node.args) == 3:
            return self._function("iff", (ir.Boolean(self.condition(node.args[0])), self.expr(node.args[1]),
                                          self.expr(node.args[2])), node)
        if name == "case" and len(node.args) >= 3 and len(node.args) % 2 == 1:
            args: list[ir.Expr] = []
            for i, arg in enumerate(node.args):
                last = i == len(node.args) - 1
                args.append(ir.Boolean(self.condition(arg)) if i % 2 == 0 and not last else self.expr(arg))
            return self._function("case", tuple(args), node)
        if name in ("not", "isempty", "isnotempty", "isnull", "isnotnull", "notnull", "isnotnull"):
            return ir.Boolean(self.condition(node))
        if name == "replace" and len(node.args) == 3:
            # the deprecated replace(regex, rewrite, text) is replace_regex(text, regex, rewrite)
            # (learn.microsoft.com/kusto/query/replace-function)
            regex, rewrite, text = node.args
            return self._call(replace(node, func=A.Name("replace_regex"), args=(text, regex, rewrite)))
        if name in ("extract_json", "extractjson") and len(node.args) in (2, 3):
            return self._extract_json(node)
        if name in ("ago", "now"):
            args = tuple(self.expr(a) for a in node.args)
            if any(a.type != "timespan" for a in args):
                raise _Unsupported(node, f"{name}() needs a timespan")
            return ir.Call(name, args, "datetime")
        spec = lookup(name)
        if spec is None:
            raise _Unsupported(node, f"the function {name}() is not in rmmc's model")
        args = []
        for i, arg in enumerate(node.args):
            lowered = self.expr(arg)
            if i in spec.literal_args and not isinstance(lowered, ir.Literal):
                raise _Unsupported(arg, f"argument {i + 1} of {name}() must be a constant")
            args.append(lowered)
        return self._function(spec.name, tuple(args), node)

    def _extract_json(self, node: A.Call) -> ir.Expr:
        """`extract_json(path, source [, typeof(T)])`: the element's string, converted to T by
        `to<T>()` ("optionally convert the extracted string to a specific type": Kusto's page)."""
        from rmmc.compiler.functions import json_path_steps

        path = self._constant(node.args[0])
        if not isinstance(path, str) or json_path_steps(path) is None:
            raise _Unsupported(node.args[0], "extract_json() needs a constant JSONPath of keys and indexes "
                               "($.a.b, $['a'], $.a[0])")
        call = self._function("extract_json", (ir.Literal(path), self.expr(node.args[1])), node)
        if len(node.args) == 2:
            return call
        kind = node.args[2]
        if not (isinstance(kind, A.Call) and isinstance(kind.func, A.Name) and kind.func.name == "typeof"
                and len(kind.args) == 1 and isinstance(kind.args[0], A.Name)):
            raise _Unsupported(kind, "the third argument of extract_json() is a type: typeof(...)")
        type_name = kind.args[0].name.lower()
        conversion = _EXTRACT_JSON_CONVERSIONS.get(type_name)
        if conversion is None:
            raise _Unsupported(kind, f"extract_json() to typeof({type_name}) is not lowered "
                               f"({', '.join(_EXTRACT_JSON_CONVERSIONS)} are)")
        return call if conversion == "tostring" else self._function(conversion, (call,), node)

    def _function(self, name: str, args: tuple[ir.Expr, ...], node: Any) -> ir.Call:
        spec = lookup(name)
        assert spec is not None, name
        if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
            raise _Unsupported(node, f"{name}() does not take {len(args)} arguments")
        if name in ("trim", "trim_start", "trim_end", "extract", "extract_all", "replace_regex"):
            position = {"replace_regex": 1}.get(name, 0)
            pattern = args[position]
            if isinstance(pattern, ir.Literal) and isinstance(pattern.value, str):
                self._check_regex(pattern.value, node)
        type_name = spec.result_type([a.type for a in args])
        if name == "extract" and len(args) == 4 and isinstance(args[3], ir.Literal):
            type_name = str(args[3].value)
        call = ir.Call(name, args, type_name)
        if all(isinstance(a, ir.Literal) for a in args) and name not in _NOT_FOLDED:
            return self._folded(call, node)
        return call

    def _folded(self, call: ir.Call, node: Any) -> ir.Expr:
        """A call on constants as its value (`2*1h` is 2h), computed as the evaluator means it;
        left as a call when it has no value here."""
        from rmmc.compiler.evaluator import evaluate_expr
        from rmmc.compiler.functions import EvaluationError

        try:
            value = evaluate_expr(call, {})
        except (EvaluationError, TypeError, ValueError, ArithmeticError):
            return call
        if isinstance(value, (list, dict)) or value is None:
            return call
        return ir.Literal(value, call.type)

    # -- conditions
    def condition(self, node: Any) -> ir.Condition:
        if isinstance(node, A.Paren):
            return self.condition(node.expr)
        if isinstance(node, A.Logical):
            parts = [self.condition(o) for o in node.operands]
            return ir.all_of(parts) if node.op == "and" else ir.any_of(parts)
        if isinstance(node, A.Call) and isinstance(node.func, A.Name) and node.func.name in (
                "not", "isempty", "isnotempty", "isnull", "isnotnull", "notnull"):
            return self._call_condition(node)
        if isinstance(node, A.Binary):
            return self._binary(node)
        if isinstance(node, A.ListOp):
            return self._list(node)
        if isinstance(node, A.Between):
            return self._between(node)
        if isinstance(node, A.BoolLit):
            return ir.Const(node.value)
        value = self.expr(node)
        if isinstance(value, ir.Boolean):
            return value.condition
        if isinstance(value, ir.Literal):
            if isinstance(value.value, bool):
                return ir.Const(value.value)
            raise _Unsupported(node, f"{_describe(node)} is not a condition")
        if value.type not in ("bool", "boolean", "dynamic"):
            what = f"'{node.name}' is not a boolean column" if isinstance(node, A.Name) else \
                f"{_describe(node)} is not a boolean"
            raise _Unsupported(node, f"{what}; a condition needs a comparison")
        return ir.Predicate(value, ir.Op.EQUALS, (True,), span=node.span)

    def _call_condition(self, node: A.Call) -> ir.Condition:
        name = node.func.name
        if len(node.args) != 1:
            raise _Unsupported(node, f"{name}() takes one argument")
        if name == "not":
            return ir.Not(self.condition(node.args[0]))
        subject = self.expr(node.args[0])
        negated = name in ("isnotempty", "isnotnull", "notnull")
        if name in ("isnull", "isnotnull", "notnull") and subject.type in _STRING_TYPES:
            # KQL strings are never null: isnull(s) is always false, isnotnull(s) true.
            self.note(f"{name}() of a string is always {str(negated).lower()} in KQL "
                      "(strings are never null)", node)
            return ir.Const(negated)
        if isinstance(subject, ir.Literal):
            empty = subject.value is None or subject.value == ""
            return ir.Const(empty != negated)
        return ir.Predicate(subject, ir.Op.EMPTY, (), negated=negated, span=node.span)

    def _subject_and_value(self, left: Any, right: Any, op: str | None = None) -> tuple[ir.Expr, Any, Any, bool]:
        """(subject, constant value or _NO_VALUE, the value's node, swapped) of a comparison:
        the side that is not a constant is the subject."""
        right_value = self._maybe_constant(right)
        if right_value is not _NO_VALUE:
            return self.expr(left), right_value, right, False
        left_value = self._maybe_constant(left)
        if left_value is not _NO_VALUE:
            return self.expr(right), left_value, left, True
        return self.expr(left), _NO_VALUE, right, False

    def _maybe_constant(self, node: Any) -> Any:
        while isinstance(node, A.Paren):
            node = node.expr
        if isinstance(node, A.Name) and node.name not in self.lets:
            return _NO_VALUE
        try:
            value = self.constants.value(node)
        except NotConstant:
            return _NO_VALUE
        return _NO_VALUE if isinstance(value, RelativeTime) else value

    def _binary(self, node: A.Binary) -> ir.Condition:
        op = node.op
        if op == "=":
            self.warn("'=' compares here as '=='; write '==' to say so", node, "suspicious")
            op = "=="
        if op in _COMPARISONS:
            return self._comparison(node, op)
        if op not in _STRING_OPS:
            raise _Unsupported(node, f"unsupported operator '{op}' in a condition")
        ir_op, cased, negated = _STRING_OPS[op]
        subject, value, value_node, swapped = self._subject_and_value(node.left, node.right)
        if swapped and ir_op is not ir.Op.EQUALS:
            raise _Unsupported(node, f"'{op}' with a constant on its left cannot be lowered")
        if value is _NO_VALUE:
            if ir_op is ir.Op.EQUALS:
                compare = {"==": "==", "!=": "!=", "<>": "!=", "=~": "=~", "!~": "!~"}[op]
                return ir.Compare(subject, compare, self.expr(node.right), node.span)
            raise _Unsupported(node.right, f"'{op}' needs a constant value here, not {_describe(node.right)}")
        if subject.type not in _STRING_TYPES:
            if ir_op is not ir.Op.EQUALS:
                if subject.type == "dynamic" and isinstance(value, str):
                    return ir.Predicate(subject, ir_op, (value,), False, cased, negated, node.span)
                raise _Unsupported(node, f"'{op}' on the {subject.type} {self._what(subject)} is not lowered")
            return ir.Predicate(subject, ir.Op.EQUALS, (self._typed(value, subject, value_node),),
                                negated=negated, case_sensitive=True, span=node.span)
        if not isinstance(value, str):
            raise _Unsupported(value_node, f"'{op}' needs a string here, not {_describe(value_node)}")
        if ir_op is ir.Op.REGEX:
            self._check_regex(value, value_node)
        return ir.Predicate(subject, ir_op, (value,), False, cased, negated, node.span)

    def _what(self, subject: ir.Expr) -> str:
        return f"column '{subject.name}'" if isinstance(subject, ir.Field) else f"expression {subject.name}"

    def _comparison(self, node: A.Binary, op: str) -> ir.Condition:
        subject, value, value_node, swapped = self._subject_and_value(node.left, node.right)
        if swapped:
            op = _MIRROR[op]
        if value is _NO_VALUE:
            return ir.Compare(subject, op, self.expr(node.right), node.span)
        if (subject.type in ("int", "long") and isinstance(value, float) and value != int(value)
                and abs(value) < 2 ** 53):
            # Kusto compares a long with a real as reals (numeric promotion); for a whole number x
            # `x < 8.4` is `x < 9`, `x <= 8.4` is `x <= 8`, `x > 8.4` is `x > 8`, `x >= 8.4` is `x >= 9`.
            op_ir = _COMPARISONS[op]
            bound = math.ceil(value) if op in ("<", ">=") else math.floor(value)
            return ir.Predicate(subject, op_ir, (bound,), span=node.span)
        return ir.Predicate(subject, _COMPARISONS[op], (self._typed(value, subject, value_node),), span=node.span)

    def _between(self, node: A.Between) -> ir.Condition:
        subject = self.expr(node.left)
        low, high = self._maybe_constant(node.low), self._maybe_constant(node.high)
        if low is _NO_VALUE or high is _NO_VALUE:
            if node.negated:
                raise _Unsupported(node, "!between with bounds that are not constants cannot be lowered")
            return ir.all_of([ir.Compare(subject, ">=", self.expr(node.low), node.span),
                              ir.Compare(subject, "<=", self.expr(node.high), node.span)])
        values = (self._typed(low, subject, node.low), self._typed(high, subject, node.high))
        return ir.Predicate(subject, ir.Op.BETWEEN, values, negated=node.negated, span=node.span)

    def _list(self, node: A.ListOp) -> ir.Condition:
        ir_op, cased, negated, all_values = _LIST_OPS[node.op]
        if (len(node.items) == 1 and self._is_tabular(node.items[0])
                and (ir_op is ir.Op.EQUALS or (ir_op is ir.Op.TERM and not all_values))):
            try:
                self.constants.column_values(node.items[0])
            except NotConstant:
                return self._subquery(node, self.expr(node.left), ir_op, cased, negated)
        subject = self.expr(node.left)
        values: list[Any] = []
        for item in node.items:
            values.extend(self._list_values(item, node.op))
        if subject.type not in _STRING_TYPES:
            if ir_op is not ir.Op.EQUALS and not (subject.type == "dynamic" and all(isinstance(v, str) for v in values)):
                raise _Unsupported(node, f"'{node.op}' on the {subject.type} {self._what(subject)} is not lowered")
            if ir_op is ir.Op.EQUALS:
                typed = tuple(self._typed(v, subject, node) for v in values)
                return ir.Predicate(subject, ir.Op.EQUALS, typed, negated=negated, case_sensitive=True, span=node.span)
        strings = []
        for v in values:
            if isinstance(v, bool) or v is None:
                raise _Unsupported(node, f"'{node.op}' list holds a non-string value {v!r}")
            strings.append(v if isinstance(v, str) else str(v))
        if not strings:
            return ir.Const(all_values != negated) if all_values else ir.Const(negated)
        return ir.Predicate(subject, ir_op, tuple(strings), all_values, cased, negated, node.span)

    def _is_tabular(self, item: Any, seen: frozenset[str] = frozenset()) -> bool:
        """Whether a list item is a tabular expression (a query, a let bound to one, a table)."""
        while isinstance(item, A.Paren):
            item = item.expr
        if isinstance(item, (A.Pipeline, A.Union, A.Search, A.GenericSource, A.Datatable, A.ExternalData)) or _is_materialize(item):
            return True
        if isinstance(item, A.Name) and item.name not in seen:
            bound = self.lets.get(item.name)
            if bound is None:
                return self.schema is not None and self.schema.table(item.name) is not None
            return self._is_tabular(bound, seen | {item.name})
        return False

    def _subquery(self, node: A.ListOp, subject: ir.Expr, op: ir.Op, cased: bool,
                  negated: bool) -> ir.Condition:
        """`x in (T | ...)` / `x has_any (T | ...)` over a real table: a subquery (lets
        inlined), with its model when rmmc can lower it (else only a KQL target can say it)."""
        inlined = _inline_lets(node.items[0], self.lets)
        while isinstance(inlined, A.Paren):
            inlined = inlined.expr
        query = kql_expr(inlined)
        local: list[Diagnostic] = []
        rule, column, table = None, None, None
        try:
            rule, child = self.sub(node.items[0], local)
        except _Unsupported as exc:
            why = exc.message
        else:
            if has_error(local):
                why, rule = next(d.message for d in local if d.is_error), None
            else:
                self.diagnostics.extend(local)
                columns = child.state.columns
                column = next(iter(columns)) if columns else None
                table = rule.source.table
        if rule is None:
            source, _ = self._flatten(inlined)
            table = source.name if isinstance(source, A.Name) else None
            self.note(f"the subquery is kept as written, for KQL only: rmmc cannot model it ({why})",
                      node.items[0], "opaque-subquery")
        return ir.InSubquery(subject, query, table, cased, negated, node.span, rule, op, column)

    def _list_values(self, item: Any, op: str = "in") -> list[Any]:
        if isinstance(item, A.Paren) or isinstance(item, A.Pipeline) or (
                isinstance(item, A.Name) and isinstance(self.lets.get(item.name), (A.Pipeline, A.Datatable, A.Paren, A.ExternalData))):
            try:
                return self.constants.column_values(item)
            except NotConstant as exc:
                raise _Unsupported(exc.node if _span(exc.node) else item,
                                   f"'{op}' against a tabular expression that is not constant cannot "
                                   f"be lowered ({exc.reason}); it is a join") from None
        value = self._constant(item)
        return value if isinstance(value, list) else [value]

    # -- leaves
    def _known(self, name: str, node: Any, state: _State) -> None:
        if state.columns is not None and name not in state.columns:
            raise _Unsupported(node, f"there is no column '{name}' at this point of the query")

    def _column(self, node: Any) -> ir.Field:
        if not isinstance(node, A.Name):
            raise _Unsupported(node, f"expected a column, found {_describe(node)}")
        name = node.name
        if name in self.lets:
            raise _Unsupported(node, f"'{name}' is a let value, not a column")
        state = self.state
        columns = state.columns
        if columns is not None and name in columns:
            return ir.Field(name, columns[name])
        if columns is not None and state.union is not None and not state.stages and name not in state.dropped:
            raise _Unsupported(node, f"no table of the union (or search) has a column '{name}' "
                               "(Microsoft's parser refuses it too)")
        if state.closed or name in state.dropped:
            raise _Unsupported(node, f"the column '{name}' is not in the rows at this point of the query "
                               "(an earlier project, summarize or project-away removed it)")
        if columns is None and name in state.computed:
            return ir.Field(name, state.computed[name])
        table = self.table
        if table is None:
            return ir.Field(name)
        if name not in self.warned_columns:
            self.warned_columns.add(name)
            hint = table.suggest(name)
            where = table.name
            message = f"unknown column '{name}' in {where}"
            if hint:
                message += f"; did you mean '{hint}'?"
            self.warn(message, node, "unknown-column")
        return ir.Field(name)

    def _constant(self, node: Any) -> Any:
        try:
            return self.constants.value(node)
        except NotConstant as exc:
            culprit = exc.node if _span(exc.node) is not None else node
            raise _Unsupported(culprit, f"expected a constant value, found {_describe(node)}: {exc.reason}") from None

    def _typed(self, value: Any, subject: ir.Expr, node: Any) -> Any:
        kind = subject.type
        value = _implicit(value, kind)
        if kind in ("int", "long") and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in ("int", "long") and isinstance(value, float) and value == int(value):
            return int(value)
        if kind in ("real", "double", "decimal") and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in ("bool", "boolean") and isinstance(value, bool):
            return value
        if kind == "datetime" and isinstance(value, datetime):
            return value
        if kind == "timespan" and isinstance(value, timedelta):
            return value
        if kind in _STRING_TYPES and isinstance(value, str):
            return value
        if kind == "dynamic" and isinstance(value, (str, int, float, bool)):
            return value
        if kind == "dynamic":
            raise _Unsupported(node, f"comparisons on the dynamic {self._what(subject)} are not lowered")
        what = f"'{subject.name}'" if isinstance(subject, ir.Field) else subject.name
        raise _Unsupported(node, f"{what} is {kind}; {_describe(node)} is not a {kind} value")

    def _check_regex(self, pattern: str, node: Any) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _Unsupported(node, f"invalid regular expression: {exc}") from None


_NO_VALUE = object()
_EXTRACT_JSON_CONVERSIONS = {"string": "tostring", "int": "toint", "long": "tolong", "real": "todouble",
                             "double": "todouble", "bool": "tobool", "boolean": "tobool", "datetime": "todatetime"}
_EXTERNAL_TYPES = ("string", "guid", "int", "long", "real", "bool", "datetime", "timespan", "dynamic")
_TYPE_ALIASES = {"double": "real", "boolean": "bool", "date": "datetime", "time": "timespan",
                 "int32": "int", "int64": "long"}
_JOIN_KIND_ALIASES = {"anti": "leftanti", "leftantisemi": "leftanti", "rightantisemi": "rightanti",
                      "semi": "leftsemi"}


def _names(node: Any) -> set[str]:
    """Every name written in a syntax tree (iteratively: trees may be deep)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, A.Name):
            found.add(item.name)
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, A.Node):
            stack.extend(getattr(item, f.name) for f in fields(item) if f.name != "span")
    return found


def _is_materialize(node: Any) -> bool:
    return (isinstance(node, A.Call) and isinstance(node.func, A.Name) and node.func.name == "materialize"
            and len(node.args) == 1)


def _label(rule: ir.Rule, position: int) -> str:
    """What `union withsource=` says for a branch: its table when it is a bare table, else
    `union_arg<position>` (as Kusto names it)."""
    bare = (rule.union is None and rule.source.table and not rule.stages and rule.lookback is None
            and rule.condition == ir.Const(True))
    return rule.source.table if bare else f"union_arg{position}"


def _expanded_name(node: Any) -> str | None:
    """Kusto's name for `mv-expand x` (x), `mv-expand a.b` (a_b), and for either behind
    `todynamic()` / `parse_json()` (the same: measured on Microsoft's parser)."""
    while isinstance(node, A.Paren):
        node = node.expr
    if (isinstance(node, A.Call) and isinstance(node.func, A.Name) and node.func.name in ("todynamic", "parse_json")
            and len(node.args) == 1):
        return _expanded_name(node.args[0])
    if isinstance(node, A.Name):
        return node.name
    if isinstance(node, A.Member):
        inner = _expanded_name(node.target)
        return f"{inner}_{node.name}" if inner else None
    return None


_NOT_FOLDED = frozenset({"ago", "now", "ingestion_time"})  # their value is the query's, not the text's


def _implicit(value: Any, kind: str) -> Any:
    """A constant as Kusto reads it against a column of type `kind`: a string that reads as a
    number, a bool or a datetime is that value (`RemotePort == '3389'`, `IsLocalAdmin ==
    'true'`, as duckdb-kql measured Kusto converting), and 0 / 1 are a bool's false / true.
    Anything else is returned as it is (and refused by `_typed` if it does not fit)."""
    if isinstance(value, str):
        if kind in ("int", "long") and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        if kind in ("real", "double", "decimal"):
            try:
                return float(value)
            except ValueError:
                return value
        if kind in ("bool", "boolean") and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if kind == "datetime":
            from rmmc.compiler.functions import to_datetime

            return to_datetime(value) or value
    if kind in ("bool", "boolean") and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def _inline_lets(node: Any, lets: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """`node` with every let it refers to replaced by its bound expression (scalars in
    parentheses), so it can stand alone in another query."""
    if _is_materialize(node):  # materialize(x) only caches x
        return A.Paren(_inline_lets(node.args[0], lets, seen))
    if isinstance(node, A.Name) and node.name in lets and node.name not in seen:
        bound = lets[node.name]
        if isinstance(bound, A.FunctionDef):
            raise _Unsupported(node, f"'{node.name}' is a function defined in the query")
        inner = _inline_lets(bound, lets, seen | {node.name})
        atomic = (A.Paren, A.Pipeline, A.Name, A.StringLit, A.NumberLit, A.TimespanLit, A.TypedLit,
                  A.BoolLit, A.DynamicLit, A.Call, A.Member, A.Index)
        return inner if isinstance(inner, atomic) else A.Paren(inner)
    if isinstance(node, tuple):
        return tuple(_inline_lets(item, lets, seen) for item in node)
    if isinstance(node, A.Node):
        changes = {}
        for f in fields(node):
            if f.name == "span":
                continue
            value = getattr(node, f.name)
            new = _inline_lets(value, lets, seen)
            if new is not value:
                changes[f.name] = new
        return replace(node, **changes) if changes else node
    return node


def _conjuncts(node: Any) -> list[Any]:
    """The top-level AND operands of a predicate (parentheses looked through)."""
    while isinstance(node, A.Paren):
        node = node.expr
    if isinstance(node, A.Logical) and node.op == "and":
        out = []
        for operand in node.operands:
            out.extend(_conjuncts(operand))
        return out
    return [node]


# ------------------------------------------------------------------ entry points


def _default_schema():
    from rmmc.compiler.schema import load_schema

    return load_schema()


def lower_query(query: A.Query, metadata: ir.Metadata | None = None, schema: Any = "default") -> Lowered:
    """Lower a parsed query.  Diagnostics are in the query's coordinates."""
    lowerer = _Lowerer(_default_schema() if schema == "default" else schema)
    try:
        rule = lowerer.lower(query, metadata or ir.Metadata())
    except RecursionError:
        lowerer.error("the query is nested too deeply to lower", query, "too-deep")
        rule = None
    if rule is not None and has_error(lowerer.diagnostics):
        rule = None
    return Lowered(rule, tuple(query.warnings) + tuple(lowerer.diagnostics))


def lower_text(text: str, metadata: ir.Metadata | None = None, schema: Any = "default") -> Lowered:
    """Parse and lower KQL text (syntax errors come back as diagnostics)."""
    from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql

    try:
        query = parse_kql(text)
    except KqlSyntaxError as exc:
        return Lowered(None, exc.diagnostics)
    return lower_query(query, metadata, schema)
