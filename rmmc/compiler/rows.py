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

Every row remembers the events it came from (`Row.sources`, indexes into `events`): one for a
row of an event, the group's members for an aggregated row.  `rmmc verify` uses them to tell
which events an event-level target must alert on.
"""

from __future__ import annotations

import fnmatch
import json
from datetime import datetime
from typing import Any, Iterable

from rmmc.compiler import ir
from rmmc.compiler.evaluator import Context, Event, evaluate, evaluate_expr
from rmmc.compiler.functions import to_text

class Row(dict):
    """A row: column -> value, and the indexes of the events it came from."""

    __slots__ = ("sources",)

    def __init__(self, values: Any = (), sources: frozenset[int] = frozenset()):
        super().__init__(values)
        self.sources = sources


def run(rule: ir.Rule, events: Iterable[Event], *, now: datetime | None = None,
        subqueries: Any = None, apply_exclusions: bool = False) -> list[Row]:
    """The rows the rule returns over `events` (its lookback is not applied)."""
    if apply_exclusions:
        rule = rule.with_exclusions_applied()
    ctx = Context(subqueries, now)
    rows = [Row(e, frozenset((i,))) for i, e in enumerate(events)
            if evaluate(rule.condition, e, ctx=ctx) is True]
    return run_stages(rule.stages, rows, ctx)


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


def _arg_extreme(agg: ir.Aggregate, rows: list[Row], ctx: Context) -> Row:
    by, columns = agg.args[0], agg.args[1:]
    best_row, best = None, None
    for row in rows:
        value = evaluate_expr(by, row, ctx)
        if value is None:
            continue
        try:
            better = best is None or (value > best if agg.function.startswith("arg_max") else value < best)
        except TypeError:
            better = False
        if better:
            best_row, best = row, value
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
