"""How a packaged rule runs: scheduled over `interval + overlap`, or a hunting query.

A hunting query (the RMM rules' `Timestamp between (now(-5d)..now())`) looks back days; a
scheduled rule that re-scans those days every 5 minutes alerts on each event hundreds of times.
So a package runs every `interval` and looks back `interval + overlap` (the `Schedule` of the
environment, or `--schedule`), and the rule's lookback is replaced by that window before the
backend writes the query -- unless the rule's meaning *needs* its whole window: a test on
aggregated values (`where Count > 5` after `summarize`), the top rows of the window, one
aggregate row over the window, a join or subquery matching events across it.  Those are packaged
as hunting queries over their own window (Sentinel hunting query, Splunk report without alert
actions, an Elastic rule whose `from` is the window), and a note says why.

A `summarize ... by keys` without a later test is scheduled: every group with an event in a run's
window is a row of that run, so the same groups alert; only the aggregated values (counts, first
and last seen) cover the run's window instead of the hunting window (a note says so).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from rmmc.compiler import ir
from rmmc.environments.model import Schedule, duration_text


@dataclass(frozen=True)
class Plan:
    """What a package does: `schedule` (interval, overlap); `hunting` says why the rule is
    packaged as a hunting query (None: scheduled); `window` is what each run scans (interval +
    overlap when scheduled, the rule's own lookback when hunting); `lookback` is the hunting
    lookback the rule gave (for suppression periods)."""

    schedule: Schedule
    hunting: str | None
    window: timedelta
    lookback: timedelta | None
    aggregates: bool = False  # the rule summarizes: its values cover a run's window

    @property
    def scheduled(self) -> bool:
        return self.hunting is None

    def describe(self) -> str:
        if self.hunting:
            return (f"packaged as a hunting query over {duration_text(self.window)}: the rule "
                    f"{self.hunting}, which a shorter scheduled window would change")
        text = (f"scheduled every {duration_text(self.schedule.interval)}, each run looking back "
                f"{duration_text(self.window)} (interval + {duration_text(self.schedule.overlap)} "
                "overlap)")
        if self.lookback is not None:
            text += f", not the hunting query's {duration_text(self.lookback)}"
        if self.aggregates:
            text += ("; the same groups alert, their aggregated values (counts, first and last "
                     "seen) cover each run's window")
        return text


def needs_window(rule: ir.Rule) -> str | None:
    """Why the rule's result depends on its whole lookback window (a phrase), else None."""
    found = ir.features(rule)
    if ir.JOIN in found:
        return "joins events across its window"
    if ir.SUBQUERY in found and not _feeds_only(rule):
        return "compares events with a subquery over its window"
    rules = [rule]
    if rule.union is not None:
        rules.extend(rule.union.branches)
    for current in rules:
        reason = _stages_need_window(current.stages)
        if reason:
            return reason
    return None


def _feeds_only(rule: ir.Rule) -> bool:
    """Whether every subquery reads an external table (a feed: the same rows whatever the window)."""
    pending, subqueries = [rule], []
    while pending:
        current = pending.pop()
        for c in [current.condition, *(s.condition for s in current.stages if isinstance(s, ir.Filter))]:
            subqueries += [n for n in ir.walk(c) if isinstance(n, ir.InSubquery) and n.rule is not None]
        pending.extend(ir.sub_rules(current))
    return all(n.rule.source.external is not None for n in subqueries)


def _stages_need_window(stages) -> str | None:
    aggregated = sorted_ = False
    for stage in stages:
        if isinstance(stage, ir.Summarize):
            if not stage.group_by and stage.aggregates:
                return "aggregates its whole window into one row"
            aggregated = True
        elif isinstance(stage, ir.Filter) and aggregated:
            return "tests aggregated values (a threshold over its window)"
        elif isinstance(stage, ir.Sort):
            sorted_ = True
        elif isinstance(stage, ir.Limit) and sorted_:
            return "keeps the top rows of its window"
    return None


def plan(rule: ir.Rule, schedule: Schedule | None = None) -> Plan:
    """The package plan of `rule` under `schedule` (None: 5m + 1m)."""
    schedule = schedule or Schedule()
    lookback = rule.lookback.window if rule.lookback is not None and rule.lookback.window > timedelta(0) \
        else None
    reason = needs_window(rule)
    if reason is not None:
        return Plan(schedule, reason, lookback or schedule.window, lookback)
    aggregates = any(isinstance(s, ir.Summarize) for s in rule.stages)
    return Plan(schedule, None, schedule.window, lookback, aggregates)


def scheduled_rule(rule: ir.Rule, chosen: Plan) -> ir.Rule:
    """The rule as a scheduled run executes it: a lookback of the run's window in place of the
    hunting lookback (its union branches too), so every target's query text scans only that
    window.  A hunting plan keeps the rule."""
    if not chosen.scheduled:
        return rule
    window = ir.Lookback(chosen.window, duration_text(chosen.window))
    return _with_lookback(rule, window)


def _with_lookback(rule: ir.Rule, window: ir.Lookback) -> ir.Rule:
    union = rule.union
    if union is not None:
        union = replace(union, branches=tuple(_with_lookback(b, window) for b in union.branches))
    has_own = rule.lookback is not None or union is None
    return replace(rule, lookback=window if has_own else rule.lookback, union=union)
