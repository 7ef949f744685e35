"""The reference evaluator's stages: what a whole rule returns over a list of events.

`run(rule, events)` selects the events the detection selects (`rule.condition`) and passes
the rows through each stage in order.  A row is a dict of column -> value; a column is read
as its type reads (`evaluator.read`: a missing string is '').  Each stage's meaning follows
KQL:

* Extend: every new column is computed from the row as it was before the stage (an `extend`
  cannot see its own columns); a column of the same name is replaced.
* Filter: the rows where the condition is true.
* Summarize: one row per distinct tuple of group-key values, in order of first appearance (a
  null key is a group of its own), holding the keys then the aggregates; without keys one row,
  even over no rows when there are aggregates; without aggregates (`distinct`) the keys only.
  Aggregates skip nulls: `count()` counts rows, `countif(c)` rows where c is true, `dcount(x)`
  distinct non-null values (exactly: Kusto's dcount estimates, which is exact for small counts
  and said where it matters), `min` / `max` / `sum` / `avg` over non-null values, `make_set` the
  distinct values (an array value adds its elements) and `make_list` every value in order,
  `any` / `take_any` the first non-null value, `arg_max(e, cols)` / `arg_min` the row where e is
  greatest / least (the first on a tie).  The `*if` forms take the rows where their last
  argument is true.
* Project: exactly the listed columns, computed from the row before the stage.
  ProjectAway drops columns (`*` wildcards), Rename renames, Reorder moves columns first.
* Sort: stable, by each key in turn; nulls first ascending and last descending unless the key
  says otherwise.  Limit: the first N rows.

* Join (KQL's join, see `ir.Join`): the right side is a sub-rule run over the same event set;
  rows match on equal key values (strings case-sensitively; a missing string is '' and a null
  key matches a null key, as duckdb-kql measured on Kusto); `innerunique` keeps the first left
  row of each key before pairing; the output order is each left row's pairs in right order
  (KQL promises no order).  MvExpand and Parse: see `ir.MvExpand`, `ir.Parse`.
* A union rule's rows are its branches' rows in branch order (each branch's own detection and
  stages applied), then its detection and stages.

Several tables: `events` is one list; an event names its table under `ir.TABLE` (`"$table"`,
not a column: rows do not hold it), and one that does not belongs to the top rule's table.
Each sub-rule (a union branch, a join's right side, a subquery) reads the events of its own
table; its lookback, like the top rule's, is not applied.

An external table (`ir.ExternalTable`, KQL `externaldata`) is never fetched: its rows are the
text stored at each URI when the caller gives it (`run(..., external={uri: text})`, parsed as
`rmmc.compiler.external` says), else the events of the event set tagged with the URI as their
table (already typed rows), each URI's in turn.

Every row remembers the events it came from (`Row.sources`, indexes into `events`): one for a
row of an event, the group's members for an aggregated row, both sides' for a joined row.
`rmmc verify` uses them to tell which events an event-level target must alert on.
"""

from __future__ import annotations

import fnmatch
import json
from datetime import datetime
from typing import Any, Iterable

from rmmc.compiler import ir
from rmmc.compiler.evaluator import Context, Event, evaluate, evaluate_expr
from rmmc.compiler.extremes import extreme_columns
from rmmc.compiler.functions import to_dynamic, to_text

class Row(dict):
    """A row: column -> value, and the indexes of the events it came from."""

    __slots__ = ("sources",)

    def __init__(self, values: Any = (), sources: frozenset[int] = frozenset()):
        super().__init__(values)
        self.sources = sources


class EventSet:
    """A (multi-table) event set: the events, each of the table it names under `ir.TABLE` or
    else of `default`, and the rows of each sub-rule once run (by identity)."""

    def __init__(self, events: list[Event], default: str | None):
        self.events = events
        self.default = default
        self.tagged = any(ir.TABLE in e for e in events)
        self._rows: dict[int, tuple[ir.Rule, list[Row]]] = {}

    def of(self, table: str | None) -> Iterable[tuple[int, Event]]:
        """(index, event without its table tag) of each event of `table`."""
        if not self.tagged:
            if table == self.default:
                yield from enumerate(self.events)
            return
        for i, e in enumerate(self.events):
            if e.get(ir.TABLE, self.default) == table:
                yield i, ({k: v for k, v in e.items() if k != ir.TABLE} if ir.TABLE in e else e)

    def rows(self, rule: ir.Rule, ctx: Context) -> list[Row]:
        """A sub-rule's rows, run once."""
        known = self._rows.get(id(rule))
        if known is None or known[0] is not rule:
            known = (rule, rule_rows(rule, ctx))
            self._rows[id(rule)] = known
        return known[1]


def run(rule: ir.Rule, events: Iterable[Event], *, now: datetime | None = None,
        subqueries: Any = None, apply_exclusions: bool = False, external: Any = None) -> list[Row]:
    """The rows the rule returns over `events` (its lookback is not applied); `external`: the
    stored text of external tables' URIs (URI -> text or bytes)."""
    if apply_exclusions:
        rule = rule.with_exclusions_applied()
    events = events if isinstance(events, list) else list(events)
    ctx = Context(subqueries, now, EventSet(events, rule.source.table), external)
    return rule_rows(rule, ctx)


def external_rows(table: ir.ExternalTable, ctx: Context) -> list[Row]:
    """An external table's rows (see the module docstring): each URI's stored text parsed, or
    the events tagged with the URI, in URI order; a column a row lacks reads as its type's null."""
    from rmmc.compiler.external import rows_of_text, typed

    out: list[Row] = []
    for uri in table.uris:
        if ctx.external is not None and uri in ctx.external:
            out.extend(Row(r) for r in rows_of_text(table, ctx.external[uri], uri))
        elif ctx.events is not None:
            for i, e in ctx.events.of(uri):
                row = typed([], table.columns)
                row.update((k, v) for k, v in e.items() if k in row)
                out.append(Row(row, frozenset((i,))))
    return out


def rule_rows(rule: ir.Rule, ctx: Context) -> list[Row]:
    """A rule's rows: its source's events (or its branches' rows) that pass its detection,
    through its stages."""
    if rule.union is not None:
        rows = [r for r in union_rows(rule.union, ctx) if evaluate(rule.condition, r, ctx=ctx) is True]
    elif rule.source.external is not None:
        rows = [r for r in external_rows(rule.source.external, ctx) if evaluate(rule.condition, r, ctx=ctx) is True]
    else:
        rows = [Row(e, frozenset((i,))) for i, e in ctx.events.of(rule.source.table)
                if evaluate(rule.condition, e, ctx=ctx) is True]
    return run_stages(rule.stages, rows, ctx)


def first_column(rule: ir.Rule, ctx: Context, column: str | None = None) -> list[Any]:
    """The values of a subquery's first column (its only one, or the first it outputs)."""
    rows = ctx.events.rows(rule, ctx)
    column = column or output_column(rule)
    if column is not None:
        return [row.get(column) for row in rows]
    return [next(iter(row.values()), None) for row in rows]


def output_column(rule: ir.Rule) -> str | None:
    """The first column a rule outputs, when its last shaping stage names it."""
    for stage in reversed(rule.stages):
        if isinstance(stage, ir.Project) and stage.columns:
            return stage.columns[0][0]
        if isinstance(stage, ir.Summarize) and (stage.group_by or stage.aggregates):
            return stage.keys[0] if stage.group_by else stage.aggregates[0].name
        if isinstance(stage, ir.Rename):
            continue
        if not isinstance(stage, (ir.Filter, ir.Sort, ir.Limit)):
            return None
    return None


def union_rows(union: ir.Union, ctx: Context) -> list[Row]:
    out: list[Row] = []
    labels = union.labels or tuple(b.source.table or f"union_arg{i}" for i, b in enumerate(union.branches))
    for label, branch in zip(labels, union.branches):
        for row in ctx.events.rows(branch, ctx):
            if union.withsource:
                new = Row({union.withsource: label}, row.sources)
                new.update((k, v) for k, v in row.items() if k != union.withsource)
            else:
                new = Row(row, row.sources)
            out.append(new)
    return out


def run_stages(stages: Iterable[ir.Stage], rows: list[Row], ctx: Context = Context()) -> list[Row]:
    for stage in stages:
        rows = apply_stage(stage, rows, ctx)
    return rows


def apply_stage(stage: ir.Stage, rows: list[Row], ctx: Context) -> list[Row]:
    if isinstance(stage, ir.Filter):
        return [r for r in rows if evaluate(stage.condition, r, ctx=ctx) is True]
    if isinstance(stage, ir.Extend):
        out = []
        for row in rows:
            values = [(name, evaluate_expr(expr, row, ctx)) for name, expr in stage.columns]
            new = Row(row, _sources(row))
            for name, value in values:
                new.pop(name, None)  # a replaced column moves to the end, as KQL shows it
                new[name] = value
            out.append(new)
        return out
    if isinstance(stage, ir.Project):
        return [Row({name: evaluate_expr(expr, row, ctx) for name, expr in stage.columns}, _sources(row))
                for row in rows]
    if isinstance(stage, ir.ProjectAway):
        return [Row({k: v for k, v in row.items() if not _matches_any(k, stage.patterns)}, _sources(row))
                for row in rows]
    if isinstance(stage, ir.Rename):
        mapping = {old: new for new, old in stage.pairs}
        return [Row({mapping.get(k, k): v for k, v in row.items()}, _sources(row)) for row in rows]
    if isinstance(stage, ir.Reorder):
        out = []
        for row in rows:
            first = [k for p in stage.patterns for k in row if fnmatch.fnmatchcase(k, p)]
            first = list(dict.fromkeys(first))
            out.append(Row({**{k: row[k] for k in first}, **{k: v for k, v in row.items() if k not in first}},
                           _sources(row)))
        return out
    if isinstance(stage, ir.Summarize):
        return summarize(stage, rows, ctx)
    if isinstance(stage, ir.Sort):
        return sort_rows(stage, rows, ctx)
    if isinstance(stage, ir.Limit):
        return rows[:max(stage.count, 0)]
    if isinstance(stage, ir.Join):
        return join_rows(stage, rows, ctx)
    if isinstance(stage, ir.MvExpand):
        return mv_expand(stage, rows, ctx)
    if isinstance(stage, ir.Parse):
        return parse_rows(stage, rows, ctx)
    raise TypeError(f"not a stage: {stage!r}")


def _sources(row: Any) -> frozenset[int]:
    return getattr(row, "sources", frozenset())


def _matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# ------------------------------------------------------------------ aggregation


def group_key(value: Any) -> Any:
    """A hashable stand-in for a value (arrays and bags by their JSON text)."""
    if isinstance(value, (list, tuple, dict)):
        return ("json", to_text(value))
    if isinstance(value, bool):
        return ("bool", value)
    return value


def summarize(stage: ir.Summarize, rows: list[Row], ctx: Context) -> list[Row]:
    groups: dict[tuple, tuple[list[Any], list[Row]]] = {}
    for row in rows:
        values = [evaluate_expr(expr, row, ctx) for _, expr in stage.group_by]
        key = tuple(group_key(v) for v in values)
        groups.setdefault(key, (values, []))[1].append(row)
    if not stage.group_by and stage.aggregates and not groups:
        groups[()] = ([], [])
    out = []
    for values, members in groups.values():
        row = Row(zip(stage.keys, values), frozenset().union(*(_sources(m) for m in members)))
        for agg in stage.aggregates:
            if agg.function in ("arg_max", "arg_min") and isinstance(agg.args[0], ir.Field):
                best = _extreme_row(agg, _conditional(agg, members, ctx)[0], ctx)
                for name, source in extreme_columns(agg, stage.group_by, row, best or {}):
                    row[name] = None if best is None else best.get(source)
            else:
                row.update(aggregate_one(agg, members, ctx))
        out.append(row)
    return out


def _conditional(agg: ir.Aggregate, members: list[Row], ctx: Context) -> tuple[list[Row], tuple]:
    """For an `*if` aggregate: the rows where its condition (last argument) holds, and the
    other arguments."""
    if agg.function.endswith("if") and agg.args:
        test = agg.args[-1]
        kept = [m for m in members if evaluate_expr(test, m, ctx) is True]
        return kept, agg.args[:-1]
    return members, agg.args


def aggregate_one(agg: ir.Aggregate, members: list[Row], ctx: Context) -> Row:
    """One aggregate over a group's rows: {its name: value} (arg_max / arg_min: its columns)."""
    function = agg.function
    rows, args = _conditional(agg, members, ctx)
    base = function.removesuffix("_if").removesuffix("if") if function != "countif" else function
    if function == "count":
        return {agg.name: len(rows)}
    if function == "countif":
        return {agg.name: len(rows)}
    if base in ("arg_max", "arg_min"):
        return _arg_extreme(agg, rows, ctx)
    values = [evaluate_expr(args[0], m, ctx) for m in rows] if args else []
    present = [v for v in values if v is not None]
    name = agg.name
    if base == "dcount":
        return {name: len({group_key(v) for v in present})}
    if base in ("min", "max"):
        comparable = [v for v in present if v != "" or not isinstance(v, str)]
        if not comparable:
            return {name: None}
        try:
            return {name: (min if base == "min" else max)(comparable)}
        except TypeError:
            return {name: None}
    if base == "sum":
        numbers = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {name: sum(numbers) if numbers else None}
    if base == "avg":
        numbers = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {name: sum(numbers) / len(numbers) if numbers else None}
    if base in ("make_set", "make_list"):
        limit = None
        if len(args) > 1:
            limit = evaluate_expr(args[1], {}, ctx)
        items: list[Any] = []
        for value in present:
            if isinstance(value, (list, tuple)) and base == "make_set":
                items.extend(value)
            else:
                items.append(value)
        if base == "make_set":
            seen: dict[Any, Any] = {}
            for item in items:
                seen.setdefault(group_key(item), item)
            items = list(seen.values())
        if isinstance(limit, int) and limit >= 0:
            items = items[:limit]
        return {name: items}
    if base in ("any", "take_any"):
        return {name: present[0] if present else None}
    raise ValueError(f"aggregate {function} has no reference meaning")


def _extreme_row(agg: ir.Aggregate, rows: list[Row], ctx: Context) -> Row | None:
    """The first row where arg_max's (arg_min's) first argument is greatest (least), nulls
    aside; None when it is null everywhere."""
    best_row, best = None, None
    for row in rows:
        value = evaluate_expr(agg.args[0], row, ctx)
        if value is None:
            continue
        try:
            better = best is None or (value > best if agg.function.startswith("arg_max") else value < best)
        except TypeError:
            better = False
        if better:
            best_row, best = row, value
    return best_row


def _arg_extreme(agg: ir.Aggregate, rows: list[Row], ctx: Context) -> Row:
    """An arg_max / arg_min by an expression (outside a summarize's naming: see
    `extremes.extreme_columns` for the columns a summarize gives it)."""
    by, columns = agg.args[0], agg.args[1:]
    best_row = _extreme_row(agg, rows, ctx)
    best = evaluate_expr(by, best_row, ctx) if best_row is not None else None
    by_name = by.name if isinstance(by, ir.Field) else (agg.name or "value")
    out: Row = {by_name: best}
    for column in columns:
        if isinstance(column, ir.Star):
            for k, v in (best_row or {}).items():
                out.setdefault(k, v)
        elif isinstance(column, ir.Field):
            out[column.name] = evaluate_expr(column, best_row, ctx) if best_row is not None else None
    return out


# ------------------------------------------------------------------ order


class _Key:
    """A sort key value with KQL's null placement and a total order across types."""

    __slots__ = ("value", "null_rank")

    def __init__(self, value: Any, nulls_first: bool):
        self.value = value
        self.null_rank = (0 if nulls_first else 2) if value is None else 1

    def __lt__(self, other: "_Key") -> bool:
        if self.null_rank != other.null_rank:
            return self.null_rank < other.null_rank
        if self.value is None:
            return False
        try:
            return self.value < other.value
        except TypeError:
            return json.dumps(to_text(self.value)) < json.dumps(to_text(other.value))


def sort_rows(stage: ir.Sort, rows: list[Row], ctx: Context) -> list[Row]:
    out = list(rows)
    for key in reversed(stage.keys):  # stable sorts, least significant key first
        nulls_first = key.nulls_first if key.nulls_first is not None else not key.descending
        if key.descending:
            nulls_first = not nulls_first  # reverse=True flips the null placement back
        out.sort(key=lambda r: _Key(evaluate_expr(key.expr, r, ctx), nulls_first),
                 reverse=key.descending)
    return out


# ------------------------------------------------------------------ joins


def columns_of(rows: list[Row]) -> list[str]:
    """The columns some row holds, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def _join_key(row: Row, columns: list[str]) -> tuple:
    """A row's key values as join matching sees them: a missing value ('' for a string, null
    otherwise) is one value, matching itself."""
    out = []
    for column in columns:
        value = row.get(column)
        out.append(group_key("" if value is None else value))
    return tuple(out)


def join_rows(stage: ir.Join, left: list[Row], ctx: Context) -> list[Row]:
    right = ctx.events.rows(stage.right, ctx)
    left_keys = [lk for lk, _ in stage.keys]
    right_keys = [rk for _, rk in stage.keys]
    left_columns = list(stage.left_columns) if stage.left_columns is not None else columns_of(left)
    right_columns = list(stage.right_columns) if stage.right_columns is not None else columns_of(right)
    names = ir.join_output_names(left_columns, right_columns, stage.kind, tuple(right_keys), stage.lookup)
    kind = stage.kind
    if kind == "innerunique" and not stage.lookup:
        seen: set[tuple] = set()
        unique = []
        for row in left:
            key = _join_key(row, left_keys)
            if key not in seen:
                seen.add(key)
                unique.append(row)
        left, kind = unique, "inner"
    by_key: dict[tuple, list[Row]] = {}
    for row in right:
        by_key.setdefault(_join_key(row, right_keys), []).append(row)
    if kind in ir.RIGHT_ONLY_JOINS:
        matched = {_join_key(row, left_keys) for row in left}
        keep = kind == "rightsemi"
        return [Row(row, row.sources) for row in right if (_join_key(row, right_keys) in matched) == keep]
    if kind in ir.LEFT_ONLY_JOINS:
        keep = kind == "leftsemi"
        return [Row(row, row.sources) for row in left if (_join_key(row, left_keys) in by_key) == keep]

    def joined(l_row: Row | None, r_row: Row | None) -> Row:
        out = Row({c: None for c in left_columns} if l_row is None else l_row,
                  (l_row.sources if l_row is not None else frozenset())
                  | (r_row.sources if r_row is not None else frozenset()))
        for column, name in zip(right_columns, names):
            if name:
                out[name] = None if r_row is None else r_row.get(column)
        return out

    out: list[Row] = []
    used: set[int] = set()
    for l_row in left:
        matches = by_key.get(_join_key(l_row, left_keys), [])
        for r_row in matches:
            used.add(id(r_row))
            out.append(joined(l_row, r_row))
        if not matches and kind in ("leftouter", "fullouter"):
            out.append(joined(l_row, None))
    if kind in ("rightouter", "fullouter"):
        out.extend(joined(None, r_row) for r_row in right if id(r_row) not in used)
    return out


# ------------------------------------------------------------------ mv-expand and parse


def _elements(value: Any) -> list[Any]:
    """What mv-expand makes of one value: an array's elements, a bag's one-key bags, else the
    value itself (null included); an empty array or bag gives nothing."""
    if isinstance(value, str):
        value = to_dynamic(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return [{k: v} for k, v in value.items()]
    return [value]


def convert_element(value: Any, to_type: str | None) -> Any:
    """`to typeof(T)` over one expanded element (as duckdb-kql measured on Kusto): a string
    is the element's text (null: ''); a number converts (toward zero for an integer), a JSON
    string does not; a bool is a JSON bool or a whole number (not zero)."""
    if to_type in (None, "dynamic"):
        return value
    if to_type == "string":
        return to_text(value)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if to_type in ("long", "int"):
        return int(value) if is_number else None
    if to_type in ("real", "double"):
        return float(value) if is_number else None
    if to_type in ("bool", "boolean"):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) or (isinstance(value, float) and value == int(value)):
            return value != 0
        return None
    raise ValueError(f"mv-expand to typeof({to_type}) has no reference meaning")


def mv_expand(stage: ir.MvExpand, rows: list[Row], ctx: Context) -> list[Row]:
    out: list[Row] = []
    for row in rows:
        lists = [_elements(evaluate_expr(expr, row, ctx)) for _, expr, _ in stage.columns]
        count = max((len(items) for items in lists), default=0)
        if stage.limit is not None:
            count = min(count, max(stage.limit, 0))
        for i in range(count):
            new = Row(row, _sources(row))
            for (name, _, to_type), items in zip(stage.columns, lists):
                new[name] = convert_element(items[i] if i < len(items) else None, to_type)
            if stage.index:
                new[stage.index] = i
            out.append(new)
    return out


def parse_regex(stage: ir.Parse):
    """The pattern of a `parse` as a Python regex: literals as text, `*` and each column
    lazy, the end of the text after the last part (`\\Z`, RE2's `$`)."""
    import re

    out = []
    for part in stage.pattern:
        if part is None:
            out.append(".*?")
        elif isinstance(part, tuple):
            out.append("(.*?)")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out) + r"\Z")


def parse_rows(stage: ir.Parse, rows: list[Row], ctx: Context) -> list[Row]:
    regex = parse_regex(stage)
    columns = stage.columns
    out: list[Row] = []
    for row in rows:
        found = regex.search(to_text(evaluate_expr(stage.source, row, ctx)))
        if found is None and stage.drop:
            continue
        new = Row(row, _sources(row))
        for i, column in enumerate(columns):
            new[column] = found.group(i + 1) if found is not None else ""
        out.append(new)
    return out
