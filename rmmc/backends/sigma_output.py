"""What a rule returns, in Sigma: the aggregation as an event_count correlation, and a lossy
diagnostic for every output Sigma cannot hold.

`summarize ... by K1, K2` over the lookback returns one row per group that has an event, so
it becomes `correlation: {type: event_count, rules: [<base>], group-by: [K1, K2], timespan:
<lookback>, condition: {gte: 1}}`: the correlation fires for exactly those groups.  Its count
is the correlation's event count; every other aggregate (min, max, make_set, dcount, arg_max
...) and every computed or constant column, projection, rename, sort, limit and later KQL
operator (`post`) is reported one by one (`lossy`), never dropped silently.  One exception is
exact: `| where Count > N` right after the summarize becomes the correlation's `gt: N`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rmmc.backends.base import lossy, note
from rmmc.backends.sigma_fields import TARGET, FieldMapper
from rmmc.backends.sigma_values import sigma_timespan
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Aggregate, Rule

DEFAULT_TIMESPAN = timedelta(days=30)  # Defender advanced hunting keeps 30 days of data


def _call(agg: Aggregate) -> str:
    args = [a for a in ((agg.field,) if agg.field else ())] + [str(a) for a in agg.args]
    return f"{agg.name}={agg.function}({', '.join(args)})"


@dataclass
class OutputPlan:
    """The Sigma side of a rule's output."""

    correlation: dict[str, Any] | None = None  # the `correlation:` block, rules: filled later
    fields: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def plan_output(rule: Rule, fields: FieldMapper) -> OutputPlan:
    plan = OutputPlan()
    out = rule.output
    say = plan.diagnostics.append
    computed = {name for name, _ in out.computed} | {name for name, _ in out.constants}
    for name, value in out.constants:
        say(lossy(TARGET, f"constant column {name}={value!r} is dropped: a Sigma rule returns events", subject="output"))
    for name, expr in out.computed:
        say(lossy(TARGET, f"computed column {name}={expr} is dropped: a Sigma rule returns events", subject="output"))
    for new, old in out.renames:
        say(lossy(TARGET, f"rename {new}={old} is dropped: Sigma keeps field names", subject="output"))
    post = list(out.post)

    agg = out.aggregation
    if agg is None:
        if out.projection:
            plan.fields = [fields.sigma(c) for c in out.projection if c not in computed]
            say(lossy(TARGET, f"projection ({', '.join(out.projection)}) is kept only as the rule's "
                              "`fields` list: Sigma returns whole events", subject="output"))
        if rule.lookback is not None:
            say(note(TARGET, f"lookback {_lookback_text(rule)} is left to the scheduler: "
                             "a Sigma rule has no time window"))
    else:
        keys = []
        for key in agg.group_by:
            if key in computed:
                say(lossy(TARGET, f"grouping by computed column {key} is dropped: the correlation "
                                  "groups only by event fields", subject="output"))
                continue
            if agg.bin_field is not None and _is_bin_key(key, agg.bin_field, fields):
                continue
            keys.append(fields.sigma(key))
        if agg.bin_field is not None:
            say(lossy(TARGET, f"grouping by bin({agg.bin_field}, {agg.bin_size}) is dropped: the "
                              "correlation counts over its sliding timespan", subject="output"))
        for a in agg.aggregates:
            if a.function == "count" and not a.args:
                say(note(TARGET, f"{a.name}=count() is the correlation's event count; the column "
                                 f"name {a.name} is not kept"))
            else:
                say(lossy(TARGET, f"{_call(a)} is dropped: Sigma correlations count events", subject="output"))
        if not agg.group_by and agg.aggregates:
            say(lossy(TARGET, "without group keys KQL returns one row even when no event matches "
                              "(count 0); the correlation fires only when one does", subject="output"))
        if rule.lookback is not None:
            window = rule.lookback.window
        else:
            window = DEFAULT_TIMESPAN
            say(lossy(TARGET, "the rule has no lookback: the correlation timespan is 30d "
                              "(Defender's hunting retention); set the window you schedule", subject="lookback"))
        spec, exact = sigma_timespan(window)
        if not exact:
            say(lossy(TARGET, f"lookback {_lookback_text(rule)} is rounded up to the timespan {spec}", subject="lookback"))
        elif rule.lookback is not None:
            say(note(TARGET, f"lookback {_lookback_text(rule)} is the correlation timespan {spec}: "
                             "a sliding window rather than one window ending now"))
        if keys:
            say(note(TARGET, "group keys: KQL groups case-sensitively and puts events missing a key "
                             "under ''; a Sigma correlation leaves both to the backend (pySigma's "
                             "sqlite backend folds case and skips events missing a key)"))
        plan.fields = list(keys)
        correlation: dict[str, Any] = {"type": "event_count", "rules": []}
        if keys:
            correlation["group-by"] = keys
        correlation["timespan"] = spec
        correlation["condition"] = _threshold(rule, post) or {"gte": 1}
        plan.correlation = correlation
        if out.projection:
            say(lossy(TARGET, f"projection ({', '.join(out.projection)}) is dropped: the correlation "
                              "reports its group keys and count", subject="output"))
    for text in post:
        effect = (" (it filters the result rows, so Sigma fires for rows the KQL rule drops)"
                  if text.lstrip().lower().startswith("where") else "")
        say(lossy(TARGET, f"'| {text}' is dropped{effect}", subject="output"))
    if out.sort:
        order = ", ".join(f"{c} {d}" for c, d in out.sort)
        say(lossy(TARGET, f"sort by {order} is dropped: Sigma does not order results", subject="output"))
    if out.limit is not None:
        say(lossy(TARGET, f"limit {out.limit} is dropped: Sigma returns every match", subject="output"))
    return plan


_THRESHOLD = re.compile(r"^\s*where\s+(\w+)\s*(>=|>)\s*(\d+)\s*$")


def _threshold(rule: Rule, post: list[str]) -> dict[str, int] | None:
    """`| where Count > N` right after `summarize Count=count()` is the correlation's own
    condition (`gt: N`); it is taken off `post` when it is."""
    out, agg = rule.output, rule.output.aggregation
    if not post or agg is None or out.projection or out.renames or out.sort or out.limit is not None:
        return None
    match = _THRESHOLD.match(post[0])
    counts = {a.name for a in agg.aggregates if a.function == "count" and not a.args}
    if match is None or match.group(1) not in counts:
        return None
    post.pop(0)
    return {"gte" if match.group(2) == ">=" else "gt": int(match.group(3))}


def _is_bin_key(key: str, bin_field: str, fields: FieldMapper) -> bool:
    """Whether a group key is the `bin(...)` key: the binned column itself, or a name given to
    the bin (a key that is not a column of the table)."""
    if key == bin_field:
        return True
    table = fields.table
    return table is not None and table.column_type(key) is None


def _lookback_text(rule: Rule) -> str:
    lb = rule.lookback
    if lb is None:
        return "(none)"
    return lb.text or str(lb.window)
