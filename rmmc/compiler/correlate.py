"""Joins read as correlated events, for targets that say "these events happen together".

Sigma correlations, EQL sequences and SPL's stats-based correlation say: an event of one
detection and an event of another, with equal key fields, within a time window.  A KQL join
means that exactly when (`correlation(rule)`):

* the rule is `<left detection> [row stages] | join kind=inner (<right detection> [row
  stages]) on <keys> | where <window> [and tests of one side] | [row stages, sort]`: both sides
  read events of one table each, every key is an event field of its side, the stages before
  and after only shape columns;
* the window bounds the right event's time minus the left event's (`Timestamp1 between
  (Timestamp .. Timestamp + 5m)`, `Timestamp1 - Timestamp <= 5m`, `Timestamp1 > Timestamp`
  ...), the time columns being each side's own;
* the kind is `inner`: the default `innerunique` keeps one left row per key value before
  pairing, so which pairs the window keeps depends on Kusto's pick (not exact); a semi join or
  a join with no window means "both happen" over the whole lookback (not a window); an anti
  join means one happens without the other.

`Correlation.problems` lists why the join is not exactly such a correlation (each with the
span and the model node to blame); a backend reports them `lossy` (refused unless
--allow-lossy) and writes the nearest correlation, or refuses when `refusal` is set.  Tests
after the join that read one side's columns move into that side's detection (exact for an
inner join: a pair passes them when its event does).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Span
from rmmc.compiler.pushdown import push_filters

_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}
TIME_COLUMNS = ("Timestamp", "TimeGenerated", "@timestamp", "_time")
"""An event's time: Defender XDR's, Sentinel's, and the time fields environments put a rule's
time in (Elastic's, Splunk's; tests/test_environments_multi.py checks every built-in's)."""


@dataclass(frozen=True)
class Window:
    """Bounds on (right event time - left event time); None: unbounded on that side."""

    low: timedelta | None = None
    low_strict: bool = False
    high: timedelta | None = None
    high_strict: bool = False

    def describe(self) -> str:
        low = "-inf" if self.low is None else str(self.low)
        high = "+inf" if self.high is None else str(self.high)
        return f"{'(' if self.low_strict or self.low is None else '['}{low}, {high}" \
               f"{')' if self.high_strict or self.high is None else ']'}"

    def ordered(self) -> bool:
        """Right strictly after left, at most `high` later: (0, T]."""
        return (self.low == timedelta(0) and self.low_strict and self.high is not None
                and not self.high_strict and self.high > timedelta(0))

    def symmetric(self) -> bool:
        """Within T of each other either way: [-T, T]."""
        return (self.high is not None and self.low is not None and not self.low_strict
                and not self.high_strict and self.low == -self.high and self.high > timedelta(0))


@dataclass
class Correlation:
    """Two detections correlated by equal keys within a window (see the module docstring)."""

    left: ir.Rule  # one table's events: source, lookback, detection (no stages)
    right: ir.Rule
    keys: tuple[tuple[str, str], ...]  # (left event field, right event field)
    kind: str
    window: Window | None
    join: ir.Join
    after: tuple[ir.Stage, ...] = ()  # shape-only stages after the join
    problems: list[tuple[str, Span | None, Any]] = field(default_factory=list)

    @property
    def span(self) -> Span | None:
        return self.join.span


class NotACorrelation(Exception):
    """The join cannot be said as a correlation of events at all (refused)."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


def correlation(rule: ir.Rule) -> Correlation:
    """The rule's join as a correlation (raises `NotACorrelation`)."""
    rule = push_filters(rule)
    if rule.union is not None:
        raise NotACorrelation("a join after a union is not a correlation of two detections")
    joins = [i for i, s in enumerate(rule.stages) if isinstance(s, ir.Join)]
    if len(joins) != 1:
        raise NotACorrelation("a rule with several joins is not one correlation of two detections",
                              rule.stages[joins[1]].span if len(joins) > 1 else None)
    at = joins[0]
    join: ir.Join = rule.stages[at]  # type: ignore[assignment]
    if join.kind in ("leftanti", "rightanti"):
        raise NotACorrelation(f"a {join.kind} join means one event happens without the other: no "
                              "correlation says that", join.span)
    before = rule.stages[:at]
    for stage in before:
        if not isinstance(stage, ir.ROW_STAGES):
            raise NotACorrelation(f"before the join the rows are not events ({type(stage).__name__})",
                                  stage.span)
    right = push_filters(join.right)
    if right.union is not None or right.source.table is None:
        raise NotACorrelation("the join's right side does not read one table", join.span)
    for stage in right.stages:
        if not isinstance(stage, ir.ROW_STAGES):
            raise NotACorrelation(f"the join's right side is not events ({type(stage).__name__})",
                                  getattr(stage, "span", None) or join.span)
    if rule.source.table is None:
        raise NotACorrelation("the join's left side does not read one table", join.span)
    keys = []
    for left_key, right_key in join.keys:
        a, b = raw_column(before, left_key), raw_column(right.stages, right_key)
        if a is None or b is None:
            raise NotACorrelation(f"the join key {left_key if a is None else right_key} is computed, not "
                                  "an event field", join.span)
        keys.append((a, b))
    sides = _output_sides(join, before, right.stages)
    left_rule = ir.Rule(rule.metadata, rule.source, rule.condition, rule.lookback)
    right_rule = ir.Rule(ir.Metadata(), right.source, right.condition, right.lookback)
    found = Correlation(left_rule, right_rule, tuple(keys), join.kind, None, join)
    after = list(rule.stages[at + 1:])
    bounds: list[tuple[str, timedelta, bool, Any]] = []
    while after and isinstance(after[0], ir.Filter):
        stage = after.pop(0)
        for conjunct in _conjuncts(stage.condition):
            bound = _time_bound(conjunct, sides, found)
            if bound is not None:
                bounds.extend(bound)
                continue
            moved = _one_side(conjunct, sides)
            if moved is None:
                raise NotACorrelation("a test after the join compares the two sides (only a time "
                                      "window can)", stage.span)
            side, condition = moved
            if side == "left":
                found.left = replace(found.left, condition=ir.all_of([found.left.condition, condition]))
            else:
                found.right = replace(found.right, condition=ir.all_of([found.right.condition, condition]))
    for stage in after:
        if not isinstance(stage, (*ir.ROW_STAGES, ir.Sort)):
            raise NotACorrelation(f"after the join the rows are not pairs of events ({type(stage).__name__})",
                                  stage.span)
    found.after = tuple(after)
    if bounds:
        found.window = _window(bounds)
    _judge(found)
    return found


def _judge(found: Correlation) -> None:
    """What keeps the join from meaning "both happen within the window"."""
    say = found.problems.append
    kind, span = found.kind, found.span
    if kind in ("leftanti", "rightanti"):
        raise NotACorrelation(f"a {kind} join means one event happens without the other: no "
                              "correlation says that", span)
    if kind not in ("inner", "innerunique", "leftsemi", "rightsemi"):
        raise NotACorrelation(f"a {kind} join also returns unmatched rows: not a correlation", span)
    if kind == "innerunique" and found.window is not None:
        say(("the join is innerunique (KQL's default): it keeps one left row per key before the "
             "window is tested, so which pairs pass depends on Kusto's pick; write kind=inner",
             span, found.join))
    if found.window is None:
        say((f"the {kind} join has no time window: it pairs events anywhere in the lookback, "
             "not within a time of each other", span, found.join))
    elif found.window.low is None and found.window.high is None:
        say(("the window bounds no time", span, found.join))


def raw_column(stages: tuple[ir.Stage, ...] | list[ir.Stage], name: str) -> str | None:
    """The event field a column is after row stages (a rename or `x = y` followed back), or
    None when it is computed (or gone)."""
    for stage in reversed(list(stages)):
        if isinstance(stage, (ir.Project, ir.Extend)):
            for column, expr in stage.columns:
                if column == name:
                    if isinstance(expr, ir.Field):
                        name = expr.name
                        break
                    return None
            else:
                if isinstance(stage, ir.Project):
                    return None
        elif isinstance(stage, ir.Rename):
            for new, old in stage.pairs:
                if new == name:
                    name = old
                    break
                if old == name:
                    return None
        elif isinstance(stage, ir.ProjectAway):
            import fnmatch

            if any(fnmatch.fnmatchcase(name, p) for p in stage.patterns):
                return None
        elif isinstance(stage, ir.Summarize):  # a group key that is a field, else computed
            key = dict(stage.group_by).get(name)
            if not isinstance(key, ir.Field):
                return None
            name = key.name
        elif isinstance(stage, (ir.Join, ir.MvExpand, ir.Parse)):
            return None
    return name


def _output_sides(join: ir.Join, before: tuple[ir.Stage, ...], right_stages: tuple[ir.Stage, ...]) \
        -> dict[str, tuple[str, str | None]]:
    """Each column after the join: (side, the event field it is, or None when computed)."""
    if join.left_columns is None or join.right_columns is None:
        raise NotACorrelation("the columns of a side of the join are unknown (a table rmmc does not "
                              "know): which side a later test reads cannot be told", join.span)
    out: dict[str, tuple[str, str | None]] = {c: ("left", raw_column(before, c)) for c in join.left_columns}
    names = ir.join_output_names(join.left_columns, join.right_columns, join.kind,
                                 tuple(k for _, k in join.keys), join.lookup)
    for column, name in zip(join.right_columns, names):
        if name:
            out[name] = ("right", raw_column(right_stages, column))
    return out


def _conjuncts(condition: ir.Condition) -> list[ir.Condition]:
    return list(condition.operands) if isinstance(condition, ir.And) else [condition]


def _one_side(condition: ir.Condition, sides: dict[str, tuple[str, str | None]]) \
        -> tuple[str, ir.Condition] | None:
    """A condition reading one side's event fields only, rewritten over those fields."""
    used = ir.expr_fields(condition)
    found = {sides.get(f.name, ("?", None)) for f in used}
    which = {side for side, _ in found}
    if len(which) != 1 or "?" in which or any(raw is None for _, raw in found):
        return None
    side = which.pop()
    mapping = {f.name: sides[f.name][1] for f in used}
    return side, _rename(condition, mapping)


def _rename(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, ir.Field):
        return ir.Field(mapping.get(node.name, node.name), node.type)
    if isinstance(node, ir.Predicate):
        return replace(node, field=_rename(node.field, mapping))
    if isinstance(node, ir.Compare):
        return replace(node, left=_rename(node.left, mapping), right=_rename(node.right, mapping))
    if isinstance(node, ir.InSubquery):
        return replace(node, field=_rename(node.field, mapping))
    if isinstance(node, (ir.And, ir.Or)):
        return type(node)(tuple(_rename(o, mapping) for o in node.operands))
    if isinstance(node, ir.Not):
        return ir.Not(_rename(node.operand, mapping))
    if isinstance(node, ir.Call):
        return replace(node, args=tuple(_rename(a, mapping) for a in node.args))
    if isinstance(node, ir.Boolean):
        return replace(node, condition=_rename(node.condition, mapping))
    return node


# ------------------------------------------------------------------ the window


def _time_term(expr: Any, sides: dict[str, tuple[str, str | None]], found: Correlation) \
        -> tuple[str, timedelta] | None:
    """`side's time field [+ or - a timespan]` as (side, offset)."""
    if isinstance(expr, ir.Field):
        side, raw = sides.get(expr.name, (None, None))
        if side and raw in TIME_COLUMNS:
            return side, timedelta(0)
        return None
    if isinstance(expr, ir.Call) and expr.function in ("add", "subtract") and len(expr.args) == 2:
        base, offset = expr.args
        if expr.function == "add" and isinstance(base, ir.Literal):
            base, offset = offset, base
        if isinstance(offset, ir.Literal) and isinstance(offset.value, timedelta):
            inner = _time_term(base, sides, found)
            if inner is not None:
                sign = 1 if expr.function == "add" else -1
                return inner[0], inner[1] + sign * offset.value
    return None


def _time_bound(condition: ir.Condition, sides, found: Correlation) -> list[tuple[str, timedelta, bool, Any]] | None:
    """A conjunct that bounds (right time - left time), as [(op, bound, strict...)], or None."""
    if isinstance(condition, ir.Compare) and condition.op in _MIRROR:
        a, b = _time_term(condition.left, sides, found), _time_term(condition.right, sides, found)
        if a is None or b is None or a[0] == b[0]:
            return None
        op = condition.op
        # a_side + a_off  op  b_side + b_off
        if a[0] == "right":  # R - L op b_off - a_off
            return _bounds(op, b[1] - a[1], condition)
        return _bounds(_MIRROR[op], a[1] - b[1], condition)  # R - L op' a_off - b_off
    if isinstance(condition, ir.Predicate) and isinstance(condition.field, ir.Call) \
            and condition.field.function == "subtract" and not condition.negated:
        x, y = (_time_term(arg, sides, found) for arg in condition.field.args)
        if x is None or y is None or x[0] == y[0] or x[1] or y[1]:
            return None
        sign = 1 if x[0] == "right" else -1  # (R - L) or -(R - L)
        values = [v for v in condition.values if isinstance(v, timedelta)]
        if len(values) != len(condition.values):
            return None
        op = {ir.Op.LT: "<", ir.Op.LE: "<=", ir.Op.GT: ">", ir.Op.GE: ">="}.get(condition.op)
        if condition.op is ir.Op.BETWEEN and len(values) == 2:
            low, high = values
            return _bounds(">=", low, condition) + _bounds("<=", high, condition) if sign > 0 else \
                _bounds("<=", -low, condition) + _bounds(">=", -high, condition)
        if op is None or len(values) != 1:
            return None
        return _bounds(op if sign > 0 else _MIRROR[op], sign * values[0], condition)
    return None


def _bounds(op: str, value: timedelta, node: Any) -> list[tuple[str, timedelta, bool, Any]]:
    if op == "==":
        return [(">=", value, False, node), ("<=", value, False, node)]
    return [(op[0], value, op in ("<", ">"), node)]


def _window(bounds: list[tuple[str, timedelta, bool, Any]]) -> Window:
    low, low_strict, high, high_strict = None, False, None, False
    for op, value, strict, _ in bounds:
        if op == ">":
            if low is None or value > low or (value == low and strict):
                low, low_strict = value, strict
        else:
            if high is None or value < high or (value == high and strict):
                high, high_strict = value, strict
    return Window(low, low_strict, high, high_strict)
