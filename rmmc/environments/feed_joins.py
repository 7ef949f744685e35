"""A join with an external feed, in an environment whose feeds are placeholders (Sigma), as the
membership test it is for the events that alert.

`T | join kind=inner (<feed>) on $left.k == $right.c` keeps each event of T whose `k` equals
some feed row's `c` (once per such row, with the feed's columns added); `<feed> | join
kind=innerunique (T ...) on $left.c == $right.k` (the default kind: one feed row per key, then
every matching event) keeps the same events.  Which events alert is then exactly
`k in (<feed> | project c)`: KQL's `in`, case-sensitive as join keys are (Kusto join docs: keys
compare equal; strings case-sensitively), a null key matching nothing (a feed's string column
holds '' for an empty field, never null: `rmmc.compiler.external`; an event's missing key is
null; `rmmc placeholders` refuses a feed giving '').  A `leftouter` join of events with a feed
keeps every event: it only adds columns.  What changes is the output's shape only - the feed's
columns, one row per matching feed row, and the stages after the join, which may only shape
the output (extend, project, project-away, project-rename, project-reorder, sort): said as
`shape`.  Anything else (a filter or an aggregation after the join, a feed on both or neither
side, keys not strings, innerunique with the events on the left, which keeps one event per
key) is left to the backend, which refuses it.
"""

from __future__ import annotations

from dataclasses import replace

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, has_error

_SHAPE_ONLY = (ir.Extend, ir.Project, ir.ProjectAway, ir.Rename, ir.Reorder, ir.Sort)
_EVENTS_FIRST = ("inner", "leftsemi")                    # events on the left, feed on the right
_FEED_FIRST = ("inner", "innerunique", "rightsemi")      # feed on the left, events on the right


def feed_joins(rule: ir.Rule) -> tuple[ir.Rule, list[Diagnostic]]:
    """The rule with its one join against a feed written as a feed test (module doc), and the
    shape diagnostics; the rule unchanged (no diagnostics) when it is no such join."""
    from rmmc.backends.base import shape, stage_text

    joins = [i for i, s in enumerate(rule.stages) if isinstance(s, ir.Join)]
    if rule.union is not None or len(joins) != 1:
        return rule, []
    at = joins[0]
    join: ir.Join = rule.stages[at]
    before, after = rule.stages[:at], rule.stages[at + 1:]
    if len(join.keys) != 1 or join.lookup or not all(isinstance(s, _SHAPE_ONLY) for s in after):
        return rule, []
    (left_key, right_key), = join.keys
    feed_right = _is_feed(join.right) and rule.source.external is None
    feed_left = rule.source.external is not None and not ir.sub_rules(replace(rule, stages=before)) \
        and not _reads_feed_anywhere(join.right) and join.right.union is None
    said = [shape("environment", f"'| {stage_text(s)}' is dropped after the join with the feed: "
                                 "each alert is the whole event", getattr(s, "span", None)) for s in after]
    if feed_right and join.kind == "leftouter":
        said.insert(0, shape("environment", "the leftouter join with the feed only adds the feed's columns "
                                            "(one row per matching feed row): every event alerts as without it",
                             join.span))
        return replace(rule, stages=before), said
    if feed_right and join.kind in _EVENTS_FIRST and _string_column(rule, before, left_key):
        test = _feed_test(left_key, join.right, right_key, join.span)
        if test is None:
            return rule, []
        said.insert(0, _test_said(join, left_key))
        return replace(rule, stages=(*before, ir.Filter(test, join.span))), said
    if feed_left and join.kind in _FEED_FIRST and _string_column(join.right, join.right.stages, right_key):
        feed = replace(rule, stages=before)
        test = _feed_test(right_key, feed, left_key, join.span)
        if test is None:
            return rule, []
        said.insert(0, _test_said(join, right_key))
        events = join.right
        return replace(events, metadata=rule.metadata, exclusions=rule.exclusions,
                       lookback=events.lookback or rule.lookback,
                       stages=(*events.stages, ir.Filter(test, join.span))), said
    return rule, []


def _test_said(join: ir.Join, key: str) -> Diagnostic:
    from rmmc.backends.base import shape

    return shape("environment", f"the {join.kind} join with the feed is the test {key} in (<feed>): the same "
                                "events alert, without the feed's columns and once each (not once per "
                                "matching feed row)", join.span)


def _feed_test(key: str, feed: ir.Rule, column: str, span) -> ir.InSubquery | None:
    """`key in (<feed> | project column)`, the subquery as KQL text (what `rmmc placeholders`
    runs) and lowered from that text; None unless the feed's column is a string."""
    from rmmc.backends.kql import emit_kql
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.compiler.kql.printer import kql_name
    from rmmc.compiler.rows import output_column

    declared = dict(feed.source.external.columns) if feed.source.external is not None else {}
    if not _plain_column(feed, column) or declared.get(column) != "string":
        return None
    text = emit_kql(feed)
    if not text.ok or not text.text:
        return None
    query = f"{text.text.strip()} | project {kql_name(column)}"
    lowered = lower_text(query)
    if lowered.rule is None or has_error(lowered.diagnostics) \
            or output_column(lowered.rule) != column:
        return None
    return ir.InSubquery(ir.Field(key, "string"), query, None, case_sensitive=True, span=span,
                         rule=lowered.rule, column=column)


def _plain_column(feed: ir.Rule, column: str) -> bool:
    """Whether the feed's rows hold `column` as the feed declares it (no stage makes or
    renames it)."""
    for stage in feed.stages:
        if isinstance(stage, (ir.Extend, ir.Project)) and any(
                n == column and not (isinstance(e, ir.Field) and e.name == column) for n, e in stage.columns):
            return False
        if isinstance(stage, ir.Rename) and any(column in pair for pair in stage.pairs):
            return False
        if isinstance(stage, ir.Summarize) and column not in [n for n, _ in stage.group_by]:
            return False
        if not isinstance(stage, (ir.Extend, ir.Project, ir.Rename, ir.Summarize, ir.Filter, ir.ProjectAway,
                                  ir.Reorder, ir.Sort)):
            return False
    return True


def _string_column(rule: ir.Rule, stages, name: str) -> bool:
    """Whether `name` is a string column of the events' table that no stage makes."""
    from rmmc.compiler.schema import load_schema

    if rule.union is not None or rule.source.table is None:
        return False
    for stage in stages:
        if isinstance(stage, (ir.Extend, ir.Project)) and any(
                n == name and not (isinstance(e, ir.Field) and e.name == name) for n, e in stage.columns):
            return False
        if isinstance(stage, ir.Rename) and any(name in pair for pair in stage.pairs):
            return False
        if not isinstance(stage, (ir.Extend, ir.Project, ir.Filter, ir.ProjectAway, ir.Reorder, ir.Sort)):
            return False
    table = load_schema().table(rule.source.table)
    return table is not None and table.column_type(name) == "string"


def _is_feed(rule: ir.Rule) -> bool:
    return rule.union is None and rule.source.external is not None and not ir.sub_rules(rule)


def _reads_feed_anywhere(rule: ir.Rule) -> bool:
    pending = [rule]
    while pending:
        current = pending.pop()
        if current.source.external is not None:
            return True
        pending.extend(ir.sub_rules(current))
    return False
