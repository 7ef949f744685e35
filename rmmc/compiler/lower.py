"""Lowering: a parsed KQL query (and its rule document) -> the detection model (IR).

What it does: resolves scalar and list lets, folds constant subqueries over `datatable`,
inlines tabular lets the body refers to, turns `Timestamp between (now(-5d)..now())` /
`Timestamp > ago(5d)` into the lookback, chains wheres into one AND, and keeps summarize,
extend, project, sort and take as the rule's output.  What it cannot lower exactly (join,
`in` against a real table, parse, mv-expand, conditions on computed columns ...) is a
located error naming the construct: never a silent approximation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler import kql_ast as A
from rmmc.compiler.constants import Constants, NotConstant, RelativeTime, timespan_text
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span
from rmmc.compiler.kql_printer import expr as kql_expr, to_kql

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

# Default output names of aggregation functions (Kusto's own naming).
_DEFAULT_PREFIX = {"count": "count_", "dcount": "dcount_", "min": "min_", "max": "max_",
                   "sum": "sum_", "avg": "avg_", "make_set": "set_", "make_list": "list_",
                   "countif": "countif_", "any": "any_", "take_any": "any_"}
_AGGREGATES = {"count", "countif", "dcount", "dcountif", "min", "max", "sum", "avg", "make_set",
               "make_set_if", "make_list", "make_list_if", "arg_max", "arg_min", "any",
               "take_any", "minif", "maxif", "sumif"}


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
        return self.rule is not None and not any(d.is_error for d in self.diagnostics)


def _span(node: Any) -> Span | None:
    return getattr(node, "span", None)


def _describe(node: Any) -> str:
    try:
        text = to_kql(node)
    except (TypeError, RecursionError):
        return type(node).__name__
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class _State:
    conditions: list[ir.Condition] = field(default_factory=list)
    lookbacks: list[tuple[timedelta, str]] = field(default_factory=list)
    constants: list[tuple[str, Any]] = field(default_factory=list)
    computed: list[tuple[str, str]] = field(default_factory=list)
    aggregation: ir.Aggregation | None = None
    projection: tuple[str, ...] = ()
    renames: list[tuple[str, str]] = field(default_factory=list)
    sort: list[tuple[str, str]] = field(default_factory=list)
    limit: int | None = None
    post: list[str] = field(default_factory=list)

    @property
    def shaped(self) -> bool:
        """Whether the rows are no longer the table's events (aggregated or reshaped)."""
        return (self.aggregation is not None or bool(self.projection) or bool(self.renames)
                or bool(self.sort) or self.limit is not None or bool(self.post))


class _Lowerer:
    def __init__(self, schema: Any | None):
        self.schema = schema
        self.diagnostics: list[Diagnostic] = []
        self.table = None
        self.lets: dict[str, Any] = {}
        self.constants = Constants(self.lets)
        self.computed_names: set[str] = set()
        self.warned_columns: set[str] = set()

    # -- diagnostics
    def warn(self, message: str, node: Any = None, code: str = "warning") -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, message, _span(node), code))

    def note(self, message: str, node: Any = None, code: str = "note") -> None:
        self.diagnostics.append(Diagnostic(Severity.NOTE, message, _span(node), code))

    def error(self, message: str, node: Any = None, code: str = "unsupported") -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, message, _span(node), code))

    # -- the query
    def lower(self, query: A.Query, metadata: ir.Metadata) -> ir.Rule | None:
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
        try:
            source, operators = self._flatten(body)
            rule_source = self._source(source)
            state = _State()
            for op in operators:
                self._operator(op, state)
        except _Unsupported as exc:
            self.error(exc.message, exc.node)
            return None
        lookback = None
        if state.lookbacks:
            window, text = min(state.lookbacks, key=lambda pair: pair[0])
            lookback = ir.Lookback(window, text)
        output = ir.Output(
            constants=tuple(state.constants), computed=tuple(state.computed),
            aggregation=state.aggregation, projection=state.projection,
            renames=tuple(state.renames), sort=tuple(state.sort), limit=state.limit,
            post=tuple(state.post))
        return ir.Rule(metadata, rule_source, ir.all_of(state.conditions), lookback, (), output)

    def _flatten(self, body: Any, seen: frozenset[str] = frozenset()) -> tuple[Any, list[Any]]:
        """The body's source and operators, with tabular lets it starts from inlined."""
        while isinstance(body, A.Paren):
            body = body.expr
        if isinstance(body, A.Pipeline):
            source, operators = self._flatten(body.source, seen)
            return source, operators + list(body.operators)
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

    # -- operators
    def _operator(self, op: Any, state: _State) -> None:
        if isinstance(op, A.Where):
            if state.shaped:
                self._post(op, state, "a filter after summarize/project")
                return
            for conjunct in _conjuncts(op.predicate):
                if self._lookback(conjunct, state):
                    continue
                state.conditions.append(self.condition(conjunct))
        elif isinstance(op, A.Extend):
            self._extend(op, state)
        elif isinstance(op, A.Summarize):
            if state.shaped:
                self._post(op, state, "a second summarize")
                return
            state.aggregation = self._summarize(op)
        elif isinstance(op, A.Count):
            if state.shaped:
                self._post(op, state, "count after summarize/project")
                return
            state.aggregation = ir.Aggregation((), (ir.Aggregate("Count", "count"),))
        elif isinstance(op, A.Distinct):
            if state.shaped or not all(isinstance(i, A.Name) for i in op.items):
                self._post(op, state, "distinct of expressions")
                return
            state.aggregation = ir.Aggregation(tuple(self._column(i).name for i in op.items))
        elif isinstance(op, A.Project):
            if state.post or state.renames or state.sort or state.limit is not None or state.projection:
                self._post(op, state, "project after other reshaping")
                return
            if all(isinstance(i, A.Name) for i in op.items):
                state.projection = tuple(self._output_column(i, state).name for i in op.items)
            else:
                self._post(op, state, "project with computed columns")
        elif isinstance(op, A.ProjectRename):
            if state.sort or state.limit is not None or state.post:
                self._post(op, state, "project-rename after sort/take")
                return
            state.renames.extend(op.renames)
        elif isinstance(op, A.Sort):
            if state.limit is not None or state.post or not all(isinstance(k.expr, A.Name) and k.nulls is None for k in op.keys):
                self._post(op, state, "sort")
                return
            state.sort = [(k.expr.name, k.direction or "desc") for k in op.keys]
        elif isinstance(op, A.Top):
            count = self._int(op.count)
            if count is None or state.limit is not None or state.post or not isinstance(op.key.expr, A.Name) or op.key.nulls:
                self._post(op, state, "top")
                return
            state.sort = [(op.key.expr.name, op.key.direction or "desc")]
            state.limit = count
        elif isinstance(op, A.Take):
            count = self._int(op.count)
            if count is None or state.post:
                self._post(op, state, "take")
                return
            state.limit = count if state.limit is None else min(count, state.limit)
        elif isinstance(op, (A.ProjectAway, A.ProjectKeep, A.ProjectReorder)):
            self._post(op, state, "column selection")
        elif isinstance(op, A.As):
            self.note(f"'as {op.name}' names the result; it has no effect on the detection", op)
        elif isinstance(op, A.Join):
            raise _Unsupported(op, "join cannot be lowered: a rule's detection reads one table "
                               "(no target rmmc emits can correlate two tables in one query)")
        elif isinstance(op, A.Lookup):
            raise _Unsupported(op, "lookup cannot be lowered: it joins another table")
        elif isinstance(op, A.Union):
            raise _Unsupported(op, "union cannot be lowered: a rule reads one table")
        elif isinstance(op, A.MvExpand):
            raise _Unsupported(op, "mv-expand cannot be lowered: it turns one event into several")
        elif isinstance(op, A.Parse):
            raise _Unsupported(op, "parse cannot be lowered: it extracts new columns at query time")
        elif isinstance(op, A.GenericOperator):
            raise _Unsupported(op, f"unsupported operator: {op.name}")
        else:
            raise _Unsupported(op, f"unsupported operator: {type(op).__name__}")

    def _post(self, op: Any, state: _State, what: str) -> None:
        """An operator after the rows were reshaped: kept as KQL text for the KQL backend;
        it must not filter the events (that would change what the rule detects)."""
        if isinstance(op, A.Where) and state.aggregation is None:
            raise _Unsupported(op, f"{what} cannot be lowered: it filters rows the model does not describe")
        state.post.append(to_kql(op))

    def _int(self, node: Any) -> int | None:
        try:
            value = self.constants.value(node)
        except NotConstant:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _extend(self, op: A.Extend, state: _State) -> None:
        if state.shaped:
            self._post(op, state, "extend after summarize")
            return
        for item in op.items:
            if not isinstance(item, A.Assignment) or len(item.targets) != 1:
                raise _Unsupported(item, "extend needs a name for each column (`name = expr`)")
            name = item.targets[0]
            try:
                value = self.constants.value(item.value)
            except NotConstant:
                value = _NO_VALUE
            if value is not _NO_VALUE and isinstance(value, (str, int, float, bool)):
                state.constants.append((name, value))
            else:
                state.computed.append((name, to_kql(item.value)))
            self.computed_names.add(name)

    def _summarize(self, op: A.Summarize) -> ir.Aggregation:
        if op.params:
            self.note("summarize hints have no effect on the detection", op.params[0])
        group_by: list[str] = []
        bin_field = bin_size = None
        for key in op.by:
            name, expr = (key.targets[0], key.value) if isinstance(key, A.Assignment) else (None, key)
            if isinstance(expr, A.Name):
                column = self._group_column(expr)
                group_by.append(name or column)
                if name and name != column:
                    raise _Unsupported(key, "renamed group keys cannot be lowered")
            elif isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.name == "bin" and len(expr.args) == 2 and isinstance(expr.args[0], A.Name):
                size = self.constants.value(expr.args[1]) if not isinstance(expr.args[1], A.Name) or expr.args[1].name in self.lets else None
                if not isinstance(size, timedelta):
                    raise _Unsupported(expr, "bin() needs a constant timespan")
                bin_field, bin_size = self._group_column(expr.args[0]), size
                group_by.append(name or bin_field)
            else:
                raise _Unsupported(key, f"cannot group by the expression {_describe(expr)}")
        aggregates = tuple(self._aggregate(a) for a in op.aggregates)
        return ir.Aggregation(tuple(group_by), aggregates, bin_field, bin_size)

    def _group_column(self, node: A.Name) -> str:
        if node.name in self.computed_names:
            return node.name
        return self._column(node).name

    def _aggregate(self, item: Any) -> ir.Aggregate:
        name, expr = (item.targets[0], item.value) if isinstance(item, A.Assignment) else (None, item)
        if not (isinstance(expr, A.Call) and isinstance(expr.func, A.Name) and expr.func.name in _AGGREGATES):
            raise _Unsupported(item, f"cannot lower the aggregation {_describe(expr)}")
        function = expr.func.name
        args = expr.args
        column = None
        extra: tuple[Any, ...] = ()
        if function in ("count",) and args:
            raise _Unsupported(expr, "count() takes no argument")
        if function.endswith("if"):  # countif, make_set_if ...: the predicate comes last
            extra = (to_kql(args[-1]),) if args else ()
            args = () if function == "countif" else args[:-1]
        if args:
            first = args[0]
            if isinstance(first, A.Name):
                column = self._group_column(first)
            elif isinstance(first, A.Star):
                column = None
            else:
                raise _Unsupported(first, f"cannot aggregate the expression {_describe(first)}")
            extra = extra + tuple(to_kql(a) for a in args[1:])
        if name is None:
            name = _DEFAULT_PREFIX.get(function, function + "_") + (column or "") if function != "count" else "count_"
        return ir.Aggregate(name, function, column, extra)

    def _output_column(self, node: A.Name, state: _State) -> ir.Field:
        if node.name in self.computed_names or (state.aggregation and (node.name in state.aggregation.group_by or any(a.name == node.name for a in state.aggregation.aggregates))):
            return ir.Field(node.name)
        return self._column(node)

    # -- lookback
    def _lookback(self, conjunct: Any, state: _State) -> bool:
        """Whether `conjunct` is a time window ending now on the time column (then it
        becomes the lookback)."""
        if isinstance(conjunct, A.Between) and not conjunct.negated and self._is_time_column(conjunct.left):
            low, high = self._time(conjunct.low), self._time(conjunct.high)
            if isinstance(low, RelativeTime) and isinstance(high, RelativeTime):
                if high.offset != timedelta(0) or low.offset >= timedelta(0):
                    raise _Unsupported(conjunct, "a time window that does not end now cannot be a lookback")
                state.lookbacks.append((-low.offset, timespan_text(-low.offset)))
                return True
            return False
        if isinstance(conjunct, A.Binary) and conjunct.op in (">", ">=", "<", "<="):
            left, right, op = conjunct.left, conjunct.right, conjunct.op
            if self._is_time_column(right) and not self._is_time_column(left):
                left, right, op = right, left, _MIRROR[op]
            if self._is_time_column(left) and op in (">", ">="):
                bound = self._time(right)
                if isinstance(bound, RelativeTime) and bound.offset < timedelta(0):
                    state.lookbacks.append((-bound.offset, timespan_text(-bound.offset)))
                    return True
        return False

    def _is_time_column(self, node: Any) -> bool:
        return isinstance(node, A.Name) and node.name in TIME_COLUMNS and node.name not in self.lets

    def _time(self, node: Any) -> Any:
        try:
            return self.constants.value(node)
        except NotConstant:
            return None

    # -- conditions
    def condition(self, node: Any) -> ir.Condition:
        if isinstance(node, A.Paren):
            return self.condition(node.expr)
        if isinstance(node, A.Logical):
            parts = [self.condition(o) for o in node.operands]
            return ir.all_of(parts) if node.op == "and" else ir.any_of(parts)
        if isinstance(node, A.Call) and isinstance(node.func, A.Name):
            return self._call_condition(node)
        if isinstance(node, A.Binary):
            return self._binary(node)
        if isinstance(node, A.ListOp):
            return self._list(node)
        if isinstance(node, A.Between):
            return self._between(node)
        if isinstance(node, A.BoolLit):
            return ir.Const(node.value)
        if isinstance(node, A.Name) and node.name not in self.lets:
            column = self._column(node)
            if column.type not in ("bool", "boolean"):
                raise _Unsupported(node, f"'{node.name}' is not a boolean column; a condition needs a comparison")
            return ir.Predicate(column, ir.Op.EQUALS, (True,), span=node.span)
        raise _Unsupported(node, f"cannot lower the condition {_describe(node)}")

    def _call_condition(self, node: A.Call) -> ir.Condition:
        name = node.func.name
        if name == "not" and len(node.args) == 1:
            return ir.Not(self.condition(node.args[0]))
        if name in ("isempty", "isnotempty", "isnull", "isnotnull") and len(node.args) == 1:
            column = self._column(node.args[0])
            negated = name in ("isnotempty", "isnotnull")
            if name in ("isnull", "isnotnull") and column.type in _STRING_TYPES:
                # KQL strings are never null: isnull(s) is always false, isnotnull(s) true.
                self.note(f"{name}() of a string column is always {str(negated).lower()} in KQL "
                          "(strings are never null)", node)
                return ir.Const(negated)
            return ir.Predicate(column, ir.Op.EMPTY, (), negated=negated, span=node.span)
        raise _Unsupported(node, f"cannot lower the condition {_describe(node)}")

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
        left, right = node.left, node.right
        if not self._is_column(left) and self._is_column(right) and ir_op is ir.Op.EQUALS:
            left, right = right, left
        column = self._column(left)
        value = self._constant(right)
        if column.type not in _STRING_TYPES:
            if ir_op is not ir.Op.EQUALS:
                raise _Unsupported(node, f"'{op}' on the {column.type} column '{column.name}' is not lowered")
            return ir.Predicate(column, ir.Op.EQUALS, (self._typed(value, column, right),),
                                negated=negated, case_sensitive=True, span=node.span)
        if not isinstance(value, str):
            raise _Unsupported(right, f"'{op}' needs a string here, not {_describe(right)}")
        if ir_op is ir.Op.REGEX:
            self._check_regex(value, right)
        return ir.Predicate(column, ir_op, (value,), False, cased, negated, node.span)

    def _comparison(self, node: A.Binary, op: str) -> ir.Condition:
        left, right = node.left, node.right
        if not self._is_column(left) and self._is_column(right):
            left, right, op = right, left, _MIRROR[op]
        column = self._column(left)
        value = self._constant(right)
        if isinstance(value, RelativeTime):
            raise _Unsupported(node, "a comparison with now()/ago() is only lowered as the "
                               "lookback (a top-level `Timestamp > ago(...)` before summarize)")
        return ir.Predicate(column, _COMPARISONS[op], (self._typed(value, column, right),), span=node.span)

    def _between(self, node: A.Between) -> ir.Condition:
        column = self._column(node.left)
        low, high = self._constant(node.low), self._constant(node.high)
        if isinstance(low, RelativeTime) or isinstance(high, RelativeTime):
            raise _Unsupported(node, "a time window with now()/ago() is only lowered as the "
                               "lookback (a top-level `Timestamp between (ago(...) .. now())`)")
        values = (self._typed(low, column, node.low), self._typed(high, column, node.high))
        return ir.Predicate(column, ir.Op.BETWEEN, values, negated=node.negated, span=node.span)

    def _list(self, node: A.ListOp) -> ir.Condition:
        ir_op, cased, negated, all_values = _LIST_OPS[node.op]
        column = self._column(node.left)
        if ir_op is ir.Op.EQUALS and len(node.items) == 1 and self._is_tabular(node.items[0]):
            try:
                self.constants.column_values(node.items[0])
            except NotConstant:
                return self._subquery(node, column, cased, negated)
        values: list[Any] = []
        for item in node.items:
            values.extend(self._list_values(item, node.op))
        if column.type not in _STRING_TYPES:
            if ir_op is not ir.Op.EQUALS:
                raise _Unsupported(node, f"'{node.op}' on the {column.type} column '{column.name}' is not lowered")
            typed = tuple(self._typed(v, column, node) for v in values)
            return ir.Predicate(column, ir.Op.EQUALS, typed, negated=negated, case_sensitive=True, span=node.span)
        strings = []
        for v in values:
            if isinstance(v, bool) or v is None:
                raise _Unsupported(node, f"'{node.op}' list holds a non-string value {v!r}")
            strings.append(v if isinstance(v, str) else str(v))
        if not strings:
            return ir.Const(all_values != negated) if all_values else ir.Const(negated)
        return ir.Predicate(column, ir_op, tuple(strings), all_values, cased, negated, node.span)

    def _is_tabular(self, item: Any) -> bool:
        while isinstance(item, A.Paren):
            item = item.expr
        if isinstance(item, A.Pipeline):
            return True
        return isinstance(item, A.Name) and isinstance(self.lets.get(item.name), (A.Pipeline, A.Paren))

    def _subquery(self, node: A.ListOp, column: ir.Field, cased: bool, negated: bool) -> ir.Condition:
        """`x in (T | ...)` over a real table: kept as a subquery (lets inlined) that only a
        KQL target can run."""
        inlined = _inline_lets(node.items[0], self.lets)
        source, _ = self._flatten(inlined)
        if not isinstance(source, A.Name):
            raise _Unsupported(node.items[0], "'in' against this tabular expression cannot be lowered")
        while isinstance(inlined, A.Paren):
            inlined = inlined.expr
        query = kql_expr(inlined)
        return ir.InSubquery(column, query, source.name, cased, negated, node.span)

    def _list_values(self, item: Any, op: str = "in") -> list[Any]:
        if isinstance(item, A.Paren) or isinstance(item, A.Pipeline) or (
                isinstance(item, A.Name) and isinstance(self.lets.get(item.name), (A.Pipeline, A.Datatable, A.Paren))):
            try:
                return self.constants.column_values(item)
            except NotConstant as exc:
                raise _Unsupported(exc.node if _span(exc.node) else item,
                                   f"'{op}' against a tabular expression that is not constant cannot "
                                   f"be lowered ({exc.reason}); it is a join") from None
        value = self._constant(item)
        return value if isinstance(value, list) else [value]

    # -- leaves
    def _is_column(self, node: Any) -> bool:
        return isinstance(node, A.Name) and node.name not in self.lets

    def _column(self, node: Any) -> ir.Field:
        if not isinstance(node, A.Name):
            raise _Unsupported(node, f"expected a column, found {_describe(node)}")
        name = node.name
        if name in self.lets:
            raise _Unsupported(node, f"'{name}' is a let value, not a column")
        if name in self.computed_names:
            raise _Unsupported(node, f"a condition on the computed column '{name}' cannot be lowered")
        table = self.table
        if table is None:
            return ir.Field(name)
        column_type = table.column_type(name)
        if column_type is None:
            if name not in self.warned_columns:
                self.warned_columns.add(name)
                hint = table.suggest(name)
                message = f"unknown column '{name}' in {table.name}"
                if hint:
                    message += f"; did you mean '{hint}'?"
                self.warn(message, node, "unknown-column")
            return ir.Field(name)
        return ir.Field(name, column_type)

    def _constant(self, node: Any) -> Any:
        try:
            return self.constants.value(node)
        except NotConstant as exc:
            culprit = exc.node if _span(exc.node) is not None else node
            raise _Unsupported(culprit, f"expected a constant value, found {_describe(node)}: {exc.reason}") from None

    def _typed(self, value: Any, column: ir.Field, node: Any) -> Any:
        kind = column.type
        if kind in ("int", "long") and isinstance(value, int) and not isinstance(value, bool):
            return value
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
        if kind == "dynamic":
            raise _Unsupported(node, f"comparisons on the dynamic column '{column.name}' are not lowered")
        raise _Unsupported(node, f"'{column.name}' is {kind}; {_describe(node)} is not a {kind} value")

    def _check_regex(self, pattern: str, node: Any) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _Unsupported(node, f"invalid regular expression: {exc}") from None


_NO_VALUE = object()


def _inline_lets(node: Any, lets: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """`node` with every let it refers to replaced by its bound expression (scalars in
    parentheses), so it can stand alone in another query."""
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
    if rule is not None and any(d.is_error for d in lowerer.diagnostics):
        rule = None
    return Lowered(rule, tuple(query.warnings) + tuple(lowerer.diagnostics))


def lower_text(text: str, metadata: ir.Metadata | None = None, schema: Any = "default") -> Lowered:
    """Parse and lower KQL text (syntax errors come back as diagnostics)."""
    from rmmc.compiler.kql_parser import KqlSyntaxError, parse_kql

    try:
        query = parse_kql(text)
    except KqlSyntaxError as exc:
        return Lowered(None, exc.diagnostics)
    return lower_query(query, metadata, schema)
