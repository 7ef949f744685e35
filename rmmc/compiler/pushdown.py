"""Filters moved into the detection: an equivalent rule whose event filter says as much as it can.

Backends whose language has no stages (Sigma, EQL) can only say a rule's detection, and the
others run fastest when every test is in the first filter.  `push_filters(rule)` gives a rule
that means the same (the same rows, in the same order) in which every `Filter` stage that
can be evaluated on the raw event has moved into `rule.condition`:

* through `Extend`, `Project`, `Rename`, `ProjectAway`, `Reorder` and `Sort` a filter moves by
  substitution: a column those stages computed is replaced by the expression that computed it
  (`extend u = tolower(url) | where u == 'a'` tests `tolower(url) == 'a'`), a renamed column by
  its old name, a dropped one by null;
* a filter never moves past a `Summarize` or a `Limit` (the rows there are not events, or not
  all of them);
* each moved condition is then simplified (`rewrite.simplify`): a test on an expression becomes
  a test on the raw field where that is exactly the same test.

Only top-level conjuncts move, each on its own (AND commutes); one that cannot (a subquery on
a computed column) stays a filter in its place.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.fast_replace import replace


class _Gone:
    """A column a stage dropped: reading it gives null."""


_GONE = _Gone()


class _Unsaid:
    """A column computed from something no condition on the raw event can say (a subquery
    inside an `iff`): a filter reading it stays where it is."""


_UNSAID = _Unsaid()


def push_filters(rule: ir.Rule) -> ir.Rule:
    """The same rule with every filter that can move into the detection moved there."""
    from rmmc.compiler.rewrite import simplify

    if not any(isinstance(s, ir.Filter) for s in rule.stages):
        condition = simplify(rule.condition)
        return rule if condition is rule.condition else replace(rule, condition=condition)
    defs: dict[str, Any] = {}
    gone: list[str] = []  # patterns of dropped columns (project-away), and "*" after a project
    moved: list[ir.Condition] = []
    kept: list[ir.Stage] = []
    stages = list(rule.stages)
    for index, stage in enumerate(stages):
        if isinstance(stage, (ir.Summarize, ir.Limit, ir.Join, ir.MvExpand)) or (
                isinstance(stage, ir.Parse) and stage.drop):
            kept.extend(stages[index:])  # the rows after it are not one per event
            break
        if isinstance(stage, ir.Filter):
            stay = []
            for conjunct in _conjuncts(stage.condition):
                substituted = _substitute(conjunct, defs, gone)
                if substituted is None:
                    stay.append(conjunct)
                else:
                    moved.append(substituted)
            if stay:
                kept.append(replace(stage, condition=ir.all_of(stay)))
            continue
        kept.append(stage)
        if isinstance(stage, ir.Extend):
            made = {name: _definition_of(expr, defs, gone) for name, expr in stage.columns}
            defs.update(made)
        elif isinstance(stage, ir.Project):
            defs = {name: _definition_of(expr, defs, gone) for name, expr in stage.columns}
            gone = ["*"]
        elif isinstance(stage, ir.Rename):
            renamed = {new: _definition(old, defs, gone) for new, old in stage.pairs}
            for _, old in stage.pairs:
                defs[old] = _GONE
            defs.update(renamed)
        elif isinstance(stage, ir.Parse):  # extracted at query time: no test on the event says it
            defs.update((name, _UNSAID) for name in stage.columns)
        elif isinstance(stage, ir.ProjectAway):
            for name in list(defs):
                if any(fnmatch.fnmatchcase(name, p) for p in stage.patterns):
                    defs[name] = _GONE
            gone.extend(stage.patterns)
    condition = simplify(ir.all_of([rule.condition, *moved]))
    return replace(rule, condition=condition, stages=tuple(kept))


def computed_columns(stages) -> set[str]:
    """The columns these stages compute or rename: what is no longer the event's own field."""
    names: set[str] = set()
    for stage in stages:
        if isinstance(stage, (ir.Extend, ir.Project)):
            names.update(n for n, e in stage.columns if not (isinstance(e, ir.Field) and e.name == n))
        elif isinstance(stage, ir.Rename):
            names.update(new for new, _ in stage.pairs)
        elif isinstance(stage, ir.Parse):
            names.update(stage.columns)
        elif isinstance(stage, ir.MvExpand):
            names.update(name for name, _, _ in stage.columns)
    return names


def _conjuncts(condition: ir.Condition) -> list[ir.Condition]:
    return list(condition.operands) if isinstance(condition, ir.And) else [condition]


def _definition(name: str, defs: dict[str, Any], gone: list[str]) -> Any:
    """What a column of the current row is: an expression, `_GONE`, or a raw column."""
    if name in defs:
        return defs[name]
    if any(fnmatch.fnmatchcase(name, p) for p in gone):
        return _GONE
    return _Renamed(name)


def _definition_of(expr: Any, defs: dict[str, Any], gone: list[str]) -> Any:
    """What a computed column is over the raw event, or `_UNSAID`."""
    try:
        return _substitute_expr(expr, defs, gone)
    except _CannotMove:
        return _UNSAID


def _substitute_expr(expr: Any, defs: dict[str, Any], gone: list[str]) -> Any:
    """`expr` over the current row rewritten over the raw event."""
    if isinstance(expr, ir.Field):
        value = _definition(expr.name, defs, gone)
        if value is _UNSAID:
            raise _CannotMove()
        if value is _GONE:
            return ir.Literal(None, expr.type)
        if isinstance(value, _Renamed):
            return expr if value.old == expr.name else ir.Field(value.old, expr.type)
        return value
    if isinstance(expr, ir.Call):
        return replace(expr, args=tuple(_substitute_expr(a, defs, gone) for a in expr.args))
    if isinstance(expr, ir.Boolean):
        condition = _substitute(expr.condition, defs, gone)
        if condition is None:
            raise _CannotMove()
        return replace(expr, condition=condition)
    return expr


class _Renamed:
    """A raw column under its own or another name (`project-rename new = old` reads `old`),
    typed where it is read."""

    __slots__ = ("old",)

    def __init__(self, old: str):
        self.old = old


class _CannotMove(Exception):
    pass


def _substitute(condition: ir.Condition, defs: dict[str, Any], gone: list[str]) -> ir.Condition | None:
    """The condition over the raw event, or None when it cannot be said there."""
    try:
        return _substitute_condition(condition, defs, gone)
    except _CannotMove:
        return None


def _substitute_condition(c: ir.Condition, defs: dict[str, Any], gone: list[str]) -> ir.Condition:
    if isinstance(c, ir.Predicate):
        subject = _substitute_expr(c.field, defs, gone)
        if isinstance(subject, ir.Literal):
            return _constant_predicate(c, subject)
        return replace(c, field=subject)
    if isinstance(c, ir.Compare):
        return replace(c, left=_substitute_expr(c.left, defs, gone), right=_substitute_expr(c.right, defs, gone))
    if isinstance(c, ir.InSubquery):
        subject = _substitute_expr(c.field, defs, gone)
        if isinstance(subject, ir.Literal):
            raise _CannotMove()
        if isinstance(subject, ir.Field):
            subject = ir.Field(subject.name, c.field.type)
        return replace(c, field=subject)
    if isinstance(c, ir.And):
        return ir.all_of([_substitute_condition(o, defs, gone) for o in c.operands])
    if isinstance(c, ir.Or):
        return ir.any_of([_substitute_condition(o, defs, gone) for o in c.operands])
    if isinstance(c, ir.Not):
        return ir.Not(_substitute_condition(c.operand, defs, gone))
    return c


def _constant_predicate(p: ir.Predicate, subject: ir.Literal) -> ir.Condition:
    """A predicate whose subject became a constant (a dropped column): decided now."""
    from rmmc.compiler.evaluator import evaluate_predicate

    probe = replace(p, field=subject)
    result = evaluate_predicate(probe, {})
    return probe if result is None else ir.Const(result)
