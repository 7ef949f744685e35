"""Where a rule reads each of its event columns, which decides what an environment that lacks
the column costs.

* `DECISIVE`: the detection, a filter, a join key, a sort, an mv-expand or parse, or a column
  a later filter or threshold reads (`where Devices > 3` after `Devices = dcount(DeviceId)`):
  without the column other events alert.
* `GROUP`: a summarize's group key: without it the rows group differently, so a different
  number of alerts fires.
* `OUTPUT`: only the output reads it (a `project` column, an aggregate nothing later tests,
  such as `make_set(ReportId)` or `min(Timestamp)`): without it the same alerts fire with one
  column fewer.

`column_roles(rule)` gives, per event column (a name no earlier stage made), every role it is
read in; `output_names(aggregate)` the columns an aggregate writes.
"""

from __future__ import annotations

from typing import Any, Iterable

from rmmc.compiler import ir
from rmmc.compiler.extremes import aggregate_names

DECISIVE, GROUP, OUTPUT = "decisive", "group", "output"


def output_names(aggregate: ir.Aggregate) -> list[str]:
    """The columns an aggregate writes: its name, or (`arg_max` / `arg_min`) the columns it names."""
    if aggregate.name:
        return [aggregate.name]
    return [a.name for a in aggregate.args if isinstance(a, ir.Field)]


def _names(*nodes: Any) -> set[str]:
    return {f.name for node in nodes for f in ir.expr_fields(node)}


def right_outputs(rule: ir.Rule) -> list[str]:
    """The columns a sub-rule returns, where its stages say (its last project or summarize and
    what follows), else []."""
    out: list[str] | None = None
    for stage in rule.stages:
        if isinstance(stage, ir.Project):
            out = [n for n, _ in stage.columns]
        elif isinstance(stage, ir.Summarize):
            out = [n for n, _ in stage.group_by] + [n for names in aggregate_names(stage) for n in names]
            if any(isinstance(x, ir.Star) for a in stage.aggregates for x in a.args):  # arg_max(T, *)
                out += [c for c in (out and _table_columns(rule)) if c not in out]
        elif out is not None and isinstance(stage, ir.Extend):
            out += [n for n, _ in stage.columns if n not in out]
        elif out is not None and isinstance(stage, ir.Rename):
            renamed = dict((old, new) for new, old in stage.pairs)
            out = [renamed.get(n, n) for n in out]
        elif out is not None and isinstance(stage, ir.ProjectAway):
            out = [n for n in out if n not in stage.patterns]
    return out or []


def joined_names(stage: ir.Join, left: list[str] | None = None) -> dict[str, str]:
    """The columns a join adds, output name -> the right side's column (`DeviceName1` ->
    `DeviceName` where the left side has one); `left`: the left columns when the join does not
    say them."""
    right = right_outputs(stage.right) or list(stage.right_columns or ()) or _table_columns(stage.right)
    lefts = list(stage.left_columns) if stage.left_columns is not None else list(left or [])
    names = ir.join_output_names(lefts, right, stage.kind, tuple(r for _, r in stage.keys), stage.lookup)
    return {name: column for column, name in zip(right, names) if name}


def _table_columns(rule: ir.Rule) -> list[str]:
    """A sub-rule's table's columns (rmmc's schema), for a side whose stages do not say them."""
    if rule.union is not None or not rule.source.table:
        return []
    from rmmc.compiler.schema import load_schema

    table = load_schema().table(rule.source.table)
    return list(table.columns) if table is not None else []


def names_read(stages: tuple[ir.Stage, ...]) -> set[str]:
    """Every column name the stages read, in any role."""
    out: set[str] = set()
    for stage in stages:
        if isinstance(stage, ir.Filter):
            out |= _names(stage.condition)
        elif isinstance(stage, (ir.Extend, ir.Project)):
            out |= _names(*(e for _, e in stage.columns))
        elif isinstance(stage, ir.Summarize):
            out |= _names(*(e for _, e in stage.group_by), *(x for a in stage.aggregates for x in a.args))
        elif isinstance(stage, ir.Sort):
            out |= _names(*(k.expr for k in stage.keys))
        elif isinstance(stage, ir.Rename):
            out |= {old for _, old in stage.pairs}
        elif isinstance(stage, (ir.ProjectAway, ir.Reorder)):
            out |= set(stage.patterns)
        elif isinstance(stage, ir.Join):
            out |= {left for left, _ in stage.keys}
        elif isinstance(stage, ir.MvExpand):
            out |= _names(*(e for _, e, _ in stage.columns))
        elif isinstance(stage, ir.Parse):
            out |= _names(stage.source)
    return out


def needed_after(stages: tuple[ir.Stage, ...]) -> list[set[str]]:
    """For each stage, the names the stages after it read decisively (filters, thresholds,
    keys), carried back through the columns that compute them."""
    needed: set[str] = set()
    out: list[set[str]] = [set() for _ in stages]
    for k in reversed(range(len(stages))):
        out[k] = set(needed)
        stage = stages[k]
        if isinstance(stage, ir.Filter):
            needed |= _names(stage.condition)
        elif isinstance(stage, ir.Extend):
            defined = {n for n, _ in stage.columns}
            needed = (needed - defined) | _names(*(e for n, e in stage.columns if n in needed))
        elif isinstance(stage, ir.Project):
            needed = _names(*(e for n, e in stage.columns if n in needed))
        elif isinstance(stage, ir.Summarize):
            needed = _names(*(e for _, e in stage.group_by),
                            *(x for a, names in zip(stage.aggregates, aggregate_names(stage))
                              if needed & set(names) for x in a.args))
        elif isinstance(stage, ir.Sort):
            needed |= _names(*(key.expr for key in stage.keys))
        elif isinstance(stage, ir.Rename):
            for new, old in stage.pairs:
                if new in needed:
                    needed = (needed - {new}) | {old}
        elif isinstance(stage, ir.Join):
            needed |= {left for left, _ in stage.keys}
        elif isinstance(stage, ir.MvExpand):
            needed |= _names(*(e for _, e, _ in stage.columns))
        elif isinstance(stage, ir.Parse):
            needed |= _names(stage.source)
    return out


def column_roles(rule: ir.Rule, stages: Iterable[ir.Stage] | None = None) -> dict[str, set[str]]:
    """Event column -> the roles it is read in (see the module docstring)."""
    stages = tuple(rule.stages if stages is None else stages)
    after = needed_after(stages)
    roles: dict[str, set[str]] = {}
    made: set[str] = set()
    closed = False

    def read(role: str, *nodes: Any) -> None:
        if closed:
            return
        for name in _names(*nodes):
            if name not in made:
                roles.setdefault(name, set()).add(role)

    read(DECISIVE, rule.condition, *(e.condition for e in rule.exclusions if e.condition is not None))
    for k, stage in enumerate(stages):
        later = after[k]
        if isinstance(stage, ir.Filter):
            read(DECISIVE, stage.condition)
        elif isinstance(stage, (ir.Extend, ir.Project)):
            for name, e in stage.columns:
                read(DECISIVE if name in later else OUTPUT, e)
            made.update(n for n, _ in stage.columns)
            closed = closed or isinstance(stage, ir.Project)
        elif isinstance(stage, ir.Summarize):
            read(GROUP, *(e for _, e in stage.group_by))
            names = aggregate_names(stage)
            for a, own in zip(stage.aggregates, names):
                read(DECISIVE if later & set(own) else OUTPUT, *(x for x in a.args if not isinstance(x, ir.Star)))
            made.update(n for n, _ in stage.group_by)
            made.update(n for own in names for n in own)
            closed = closed or not any(isinstance(x, ir.Star) for a in stage.aggregates for x in a.args)
        elif isinstance(stage, ir.Sort):
            read(DECISIVE, *(key.expr for key in stage.keys))
        elif isinstance(stage, ir.Rename):
            for new, old in stage.pairs:
                if not closed and old not in made:
                    roles.setdefault(old, set()).add(DECISIVE if new in later else OUTPUT)
            made.update(new for new, _ in stage.pairs)
        elif isinstance(stage, ir.Join):
            read(DECISIVE, *(ir.Field(left) for left, _ in stage.keys))
            joined = joined_names(stage)
            made.update(joined)
            closed = closed or (not joined and stage.kind not in ir.LEFT_ONLY_JOINS)  # either side's
        elif isinstance(stage, ir.MvExpand):
            read(DECISIVE, *(e for _, e, _ in stage.columns))
            made.update(n for n, _, _ in stage.columns)
        elif isinstance(stage, ir.Parse):
            read(DECISIVE, stage.source)
            made.update(stage.columns)
    return roles
