"""What a rule returns, in Sigma: an aggregation as a correlation, and a diagnostic for every
stage Sigma cannot hold.

The rule's filters have already moved into its detection where they could
(`rmmc.compiler.pushdown`).  What is left:

* `summarize count() by K1, K2` over the lookback becomes `correlation: {type: event_count,
  rules: [<base>], group-by: [K1, K2], timespan: <lookback>, condition: {gte: 1}}`: it fires
  for exactly the groups that have an event.  A filter on the count right after it (`| where
  count_ > 5`) is the correlation's condition (`gt: 5`), and on `dcount(F)` it makes a
  `value_count` correlation on F: the threshold is kept, never dropped.
* the timespan is the lookback: "within T" over a hunt of the last T is the KQL count.  With
  `bin(Timestamp, T)` among the keys KQL counts per aligned bucket of T while a correlation
  counts within any window of T, which also fires on events that straddle a bucket edge:
  `lossy`.
* every other aggregate, computed column, projection, rename or order changes only what an
  alert shows (`shape`); a filter that is not such a threshold, a limit, or a threshold on
  an aggregate a correlation cannot count changes which alerts fire (`lossy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rmmc.backends.base import dropped_stages, lossy, note, shape, stage_text
from rmmc.backends.sigma.fields import TARGET, FieldMapper
from rmmc.backends.sigma.values import sigma_timespan
from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.constants import timespan_text
from rmmc.compiler.pushdown import computed_columns

DEFAULT_TIMESPAN = timedelta(days=30)  # Defender advanced hunting keeps 30 days of data
_THRESHOLD_OPS = {ir.Op.GT: "gt", ir.Op.GE: "gte", ir.Op.LT: "lt", ir.Op.LE: "lte", ir.Op.EQUALS: "eq"}


@dataclass
class OutputPlan:
    """The Sigma side of a rule's stages."""

    correlation: dict[str, Any] | None = None  # the `correlation:` block, rules: filled later
    fields: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def plan_output(rule: ir.Rule, fields: FieldMapper) -> OutputPlan:
    plan = OutputPlan()
    say = plan.diagnostics.append
    stages = list(rule.stages)
    at = next((i for i, s in enumerate(stages) if isinstance(s, ir.Summarize)), None)
    before = stages if at is None else stages[:at]
    computed = computed_columns(before)
    if at is None:
        projection = next((s for s in reversed(before) if isinstance(s, ir.Project)), None)
        plan.diagnostics.extend(dropped_stages([s for s in before if s is not projection], TARGET, "Sigma"))
        if projection is not None:
            plan.fields = [fields.sigma(n) for n, e in projection.columns
                           if isinstance(e, ir.Field) and e.name == n and n not in computed]
            say(shape(TARGET, f"'| {stage_text(projection)}' is kept only as the rule's `fields` list: "
                              "Sigma returns whole events", projection.span))
        if rule.lookback is not None:
            say(note(TARGET, f"lookback {_lookback_text(rule)} is left to the scheduler: "
                             "a Sigma rule has no time window"))
        return plan
    plan.diagnostics.extend(dropped_stages(before, TARGET, "Sigma"))
    summarize: ir.Summarize = stages[at]  # type: ignore[assignment]
    after = stages[at + 1:]
    threshold = None
    if after and isinstance(after[0], ir.Filter):
        threshold = _threshold(after[0], summarize)
        if threshold is not None:
            after = after[1:]
    keys, binned = [], None
    for name, expr in summarize.group_by:
        if isinstance(expr, ir.Call) and expr.function == "bin" and isinstance(expr.args[0], ir.Field) \
                and expr.args[0].name in ("Timestamp", "TimeGenerated") and isinstance(expr.args[1], ir.Literal):
            binned = expr.args[1].value
            continue
        if isinstance(expr, ir.Field) and expr.name not in computed:
            keys.append(fields.sigma(expr.name))
            continue
        message = (f"grouping by {name} = {_describe(expr)} is dropped: a correlation groups by "
                   "event fields only")
        say(lossy(TARGET, message + (", so its threshold counts other groups" if threshold else ""),
                  summarize.span, subject=summarize) if threshold else shape(TARGET, message, summarize.span))
    counted = threshold[2] if threshold else None
    for a in summarize.aggregates:
        if a is counted or (a.function == "count" and not a.args):
            if a.function == "count":
                say(note(TARGET, f"{a.name}=count() is the correlation's event count; the column "
                                 f"name {a.name} is not kept"))
            continue
        call = f"{a.function}({', '.join(_describe(x) for x in a.args)})"
        say(shape(TARGET, f"{a.name + ' = ' if a.name else ''}{call} is dropped: a Sigma "
                          "correlation reports its group keys and count", summarize.span))
    if not summarize.group_by and summarize.aggregates and not threshold:
        say(lossy(TARGET, "without group keys KQL returns one row even when no event matches "
                          "(count 0); the correlation fires only when one does", subject=summarize))
    plan.diagnostics.extend(dropped_stages(after, TARGET, "a Sigma correlation"))
    window = _window(rule, binned, say)
    spec, exact = sigma_timespan(window)
    if not exact:
        say(lossy(TARGET, f"the window {window} is rounded up to the timespan {spec}", subject="lookback"))
    if keys:
        say(note(TARGET, "group keys: KQL groups case-sensitively and puts events missing a key "
                         "under ''; a Sigma correlation leaves both to the backend (pySigma's "
                         "sqlite backend folds case and skips events missing a key)"))
    plan.fields = list(keys)
    kind, condition = "event_count", {"gte": 1}
    if threshold is not None:
        op, bound, aggregate = threshold
        condition = {op: bound}
        if aggregate.function == "dcount":
            kind = "value_count"
            condition = {"field": fields.sigma(aggregate.args[0].name), op: bound}
    correlation: dict[str, Any] = {"type": kind, "rules": []}
    if keys:
        correlation["group-by"] = keys
    correlation["timespan"] = spec
    correlation["condition"] = condition
    plan.correlation = correlation
    return plan


def _threshold(stage: ir.Filter, summarize: ir.Summarize) -> tuple[str, int, ir.Aggregate] | None:
    """`where <count> <op> N` on the summarize's `count()` (or `dcount(F)` of an event field):
    the correlation's condition (op, N, the aggregate)."""
    p = stage.condition
    if not (isinstance(p, ir.Predicate) and isinstance(p.field, ir.Field) and not p.negated
            and p.op in _THRESHOLD_OPS and len(p.values) == 1):
        return None
    bound = p.values[0]
    if isinstance(bound, float) and bound == int(bound):
        bound = int(bound)
    if isinstance(bound, bool) or not isinstance(bound, int):
        return None
    for a in summarize.aggregates:
        if a.name != p.field.name:
            continue
        if a.function == "count" and not a.args:
            return _THRESHOLD_OPS[p.op], bound, a
        if a.function == "dcount" and len(a.args) == 1 and isinstance(a.args[0], ir.Field):
            return _THRESHOLD_OPS[p.op], bound, a
    return None


def _window(rule: ir.Rule, binned: Any, say) -> timedelta:
    if isinstance(binned, timedelta):
        say(lossy(TARGET, f"bin(Timestamp, {timespan_text(binned)}) counts per aligned bucket; the correlation "
                          f"timespan counts within any window of that length, so groups whose events "
                          "straddle a bucket edge now fire too", subject="lookback"))
        return binned
    if rule.lookback is not None:
        say(note(TARGET, f"lookback {_lookback_text(rule)} is the correlation timespan: over a hunt "
                         "of the last window the counts are the same; scheduled, the correlation "
                         "counts within any window of that length"))
        return rule.lookback.window
    say(lossy(TARGET, "the rule has no lookback: the correlation timespan is 30d "
                      "(Defender's hunting retention); set the window you schedule", subject="lookback"))
    return DEFAULT_TIMESPAN


def _describe(expr: Any) -> str:
    from rmmc.compiler.functions import describe

    return describe(expr)


def _lookback_text(rule: ir.Rule) -> str:
    lb = rule.lookback
    if lb is None:
        return "(none)"
    return lb.text or str(lb.window)
