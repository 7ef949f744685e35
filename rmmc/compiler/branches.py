"""A union as one rule per branch, for targets that say one source per rule (a Sigma
collection) or OR one search per source (SPL, EQL `any where`).

`split_union(rule)` gives single-table rules whose rows, concatenated, are the union rule's
rows (up to order): each branch's own detection and stages, then the `withsource` column as a
constant, then the union rule's detection and stages, filters moved into each branch's
detection (`push_filters`, which decides `withsource == 'X'` per branch).  That is exact when
every stage after the union keeps one row per row (extend, filter, project, rename ...): a
summarize, sort or take over the union's rows is not the concatenation of the branches'
(`NotSplit`).  A branch that is itself a union is split too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Span
from rmmc.compiler.pushdown import push_filters


class NotSplit(Exception):
    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


def split_union(rule: ir.Rule) -> list[tuple[str, ir.Rule]]:
    """(label, single-table rule) per branch of a union rule (raises `NotSplit`)."""
    union = rule.union
    assert union is not None
    for stage in rule.stages:
        if not isinstance(stage, (*ir.ROW_STAGES, ir.Filter)):
            raise NotSplit(f"after the union a {type(stage).__name__} stage works on the rows of every "
                           "source together: no one rule per source says it", stage.span)
    labels = union.labels or tuple(b.source.table or f"union_arg{i}" for i, b in enumerate(union.branches))
    out: list[tuple[str, ir.Rule]] = []
    for label, branch in zip(labels, union.branches):
        stages = list(branch.stages)
        if union.withsource:
            stages.append(ir.Extend(((union.withsource, ir.Literal(label, "string")),)))
        if rule.condition != ir.Const(True):
            stages.append(ir.Filter(rule.condition))
        stages.extend(rule.stages)
        windows = [lb for lb in (branch.lookback, rule.lookback) if lb is not None]
        lookback = min(windows, key=lambda lb: lb.window) if windows else None
        part = replace(branch, metadata=rule.metadata, lookback=lookback, stages=tuple(stages),
                       exclusions=rule.exclusions)
        if part.union is not None:
            out.extend(split_union(part))
            continue
        out.append((label, push_filters(part)))
    return out


class BranchColumns:
    """A union branch's columns after its own row stages: each column's expression over the
    branch's raw event (None: removed), and, when a projection fixed them, their order."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.closed: list[str] | None = None

    def of(self, name: str, type_name: str = "string") -> Any:
        """The expression of a column (a raw field when the stages left it as it is), or None."""
        if name in self.defs:
            return self.defs[name]
        if self.closed is not None:
            return None
        return ir.Field(name, type_name)


def branch_columns(part: ir.Rule) -> BranchColumns:
    """What a branch's row stages make of its columns, for a target that reads every source in
    one search and computes a column held differently per source there (SPL, ES|QL); `NotSplit`
    for a stage that is not a row stage."""
    import fnmatch

    from rmmc.compiler.pushdown import _CannotMove, _substitute_expr

    found = BranchColumns()

    def over_raw(expr: Any) -> Any:
        try:
            return _substitute_expr(expr, _Defs(found), [])
        except _CannotMove:
            raise NotSplit("a union branch computes a column from what cannot be said per source",
                           getattr(part.union, "span", None)) from None

    for stage in part.stages:
        if isinstance(stage, ir.Extend):
            made = {name: over_raw(expr) for name, expr in stage.columns}
            found.defs.update(made)
            if found.closed is not None:
                found.closed += [n for n in made if n not in found.closed]
        elif isinstance(stage, ir.Project):
            made = {name: over_raw(expr) for name, expr in stage.columns}
            found.defs = made
            found.closed = list(made)
        elif isinstance(stage, ir.Rename):
            renamed = {new: found.of(old) for new, old in stage.pairs}
            for _, old in stage.pairs:
                found.defs[old] = None
            found.defs.update(renamed)
            if found.closed is not None:
                olds = {old: new for new, old in stage.pairs}
                found.closed = [olds.get(n, n) for n in found.closed]
        elif isinstance(stage, ir.ProjectAway):
            names = found.closed if found.closed is not None else list(found.defs)
            for name in names:
                if any(fnmatch.fnmatchcase(name, p) for p in stage.patterns):
                    found.defs[name] = None
            if found.closed is not None:
                found.closed = [n for n in found.closed if found.defs.get(n) is not None]
            else:
                for pattern in stage.patterns:
                    if "*" not in pattern:
                        found.defs[pattern] = None
        elif isinstance(stage, ir.Reorder):
            continue
        else:
            raise NotSplit(f"a union branch with its own {type(stage).__name__} stage has no form here "
                           "(one search reads every source)", getattr(stage, "span", None))
    return found


class _Defs(dict):
    """The pushdown substitution's view of a branch's columns (a removed one reads as null)."""

    def __init__(self, columns: BranchColumns):
        super().__init__()
        self.columns = columns

    def __contains__(self, name: object) -> bool:
        return name in self.columns.defs or self.columns.closed is not None

    def __getitem__(self, name: str) -> Any:
        from rmmc.compiler.pushdown import _GONE, _Renamed

        value = self.columns.of(name)
        if value is None:
            return _GONE
        if isinstance(value, ir.Field) and not isinstance(value, ir.Call):
            return _Renamed(value.name)
        return value
