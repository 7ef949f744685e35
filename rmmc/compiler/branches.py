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
