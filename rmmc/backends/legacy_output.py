"""A rule's stages in the fixed shape the backends read before stages existed.

    extend (constants, computed) -> summarize -> project -> rename -> sort -> limit -> post

`classic_output(rule)` reads the rule's stages into that shape while they fit it; every stage
after the first one that does not fit (a filter after an extend or a summarize, a second
summarize, an extend after a summarize ...) is kept, in order, as canonical KQL text in
`post`, which those backends report one by one.  Computed columns are KQL text too.  This is
the bridge for backends that do not yet emit stages natively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rmmc.compiler import ir


@dataclass(frozen=True)
class ClassicAggregate:
    name: str
    function: str
    field: str | None = None
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ClassicAggregation:
    group_by: tuple[str, ...]
    aggregates: tuple[ClassicAggregate, ...] = ()
    bin_field: str | None = None
    bin_size: timedelta | None = None


@dataclass(frozen=True)
class ClassicOutput:
    constants: tuple[tuple[str, Any], ...] = ()
    computed: tuple[tuple[str, str], ...] = ()
    aggregation: ClassicAggregation | None = None
    projection: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    sort: tuple[tuple[str, str], ...] = ()
    limit: int | None = None
    post: tuple[str, ...] = ()
    post_stages: tuple[ir.Stage, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return self == ClassicOutput()


def _kql(stage: ir.Stage) -> str:
    from rmmc.backends.kql import ConditionEmitter, stage_operators
    from rmmc.compiler.kql_printer import to_kql

    try:
        return " | ".join(to_kql(op) for op in stage_operators(stage, ConditionEmitter()))
    except Exception:  # noqa: BLE001 - a text for a message only
        return type(stage).__name__


def _expr_text(expr: Any) -> str:
    from rmmc.backends.kql import ConditionEmitter
    from rmmc.compiler.kql_printer import to_kql

    try:
        return to_kql(ConditionEmitter().expr(expr))
    except Exception:  # noqa: BLE001
        return getattr(expr, "name", "?")


def classic_output(rule: ir.Rule) -> ClassicOutput:
    constants: list[tuple[str, Any]] = []
    computed: list[tuple[str, str]] = []
    aggregation = None
    projection: tuple[str, ...] = ()
    renames: list[tuple[str, str]] = []
    sort: list[tuple[str, str]] = []
    limit = None
    post: list[str] = []
    post_stages: list[ir.Stage] = []
    phase = 0  # 0 extend, 1 summarize done, 2 project, 3 rename, 4 sort, 5 limit
    for index, stage in enumerate(rule.stages):
        if post:
            post.append(_kql(stage))
            post_stages.append(stage)
            continue
        fits = False
        if isinstance(stage, ir.Extend) and phase == 0:
            for name, expr in stage.columns:
                if isinstance(expr, ir.Literal) and isinstance(expr.value, (str, int, float, bool)):
                    constants.append((name, expr.value))
                else:
                    computed.append((name, _expr_text(expr)))
            fits = True
        elif isinstance(stage, ir.Summarize) and phase == 0:
            aggregation = _aggregation(stage)
            fits = aggregation is not None
            phase = 1
        elif isinstance(stage, ir.Project) and phase <= 1 and all(
                isinstance(e, ir.Field) and e.name == n for n, e in stage.columns):
            projection = tuple(n for n, _ in stage.columns)
            phase, fits = 2, True
        elif isinstance(stage, ir.Rename) and phase <= 3:
            renames.extend(stage.pairs)
            phase, fits = 3, True
        elif isinstance(stage, ir.Sort) and phase <= 3 and all(
                isinstance(k.expr, ir.Field) and k.nulls_first is None for k in stage.keys):
            sort = [(k.expr.name, "desc" if k.descending else "asc") for k in stage.keys]
            phase, fits = 4, True
        elif isinstance(stage, ir.Limit) and phase <= 4:
            limit = stage.count
            phase, fits = 5, True
        if not fits:
            post.append(_kql(stage))
            post_stages.append(stage)
    return ClassicOutput(tuple(constants), tuple(computed), aggregation, projection, tuple(renames),
                         tuple(sort), limit, tuple(post), tuple(post_stages))


def _aggregation(stage: ir.Summarize) -> ClassicAggregation | None:
    group_by: list[str] = []
    bin_field = bin_size = None
    for name, expr in stage.group_by:
        if isinstance(expr, ir.Field) and expr.name == name:
            group_by.append(name)
        elif (isinstance(expr, ir.Call) and expr.function == "bin" and isinstance(expr.args[0], ir.Field)
              and isinstance(expr.args[1], ir.Literal) and isinstance(expr.args[1].value, timedelta)
              and bin_field is None):
            bin_field, bin_size = expr.args[0].name, expr.args[1].value
            group_by.append(name)
        else:
            return None
    aggregates = []
    for agg in stage.aggregates:
        args = list(agg.args)
        column = None
        if args and isinstance(args[0], ir.Field) and not agg.function.endswith("if"):
            column = args.pop(0).name
        extra = []
        for a in args:
            if isinstance(a, ir.Star):
                extra.append("*")
            elif isinstance(a, ir.Boolean):
                extra.append(_expr_text(a))
            else:
                extra.append(_expr_text(a))
        if agg.function == "countif" or (agg.function.endswith("if") and agg.function != "countif"):
            if agg.function != "countif" and agg.args and isinstance(agg.args[0], ir.Field):
                column = agg.args[0].name
                extra = [_expr_text(a) for a in agg.args[1:]]
        aggregates.append(ClassicAggregate(agg.name or "", agg.function, column, tuple(extra)))
    return ClassicAggregation(tuple(group_by), tuple(aggregates), bin_field, bin_size)
