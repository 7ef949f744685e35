"""A union put into an environment: each branch by its own source, the union's own detection
and stages over the columns its branches hold alike (see `rmmc.environments.adapt`).

* a test of the union's detection (or of a filter right after it) on columns every branch holds
  in one form is rewritten once, over that form; one on columns they hold differently moves
  into every branch (a filter over a union is the union of the filtered branches), where each
  branch's own form rewrites it;
* a later stage reads a column named alike in every branch; one the branches hold differently
  is computed by each branch under the rule's own name (`extend C = <C in this source>`), so
  the union's stages read one name;
* the union's placement is what its branches share; each keeps its own in `Target.parts`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, Severity
from rmmc.compiler.rewrite import without_columns
from rmmc.environments.adapt import Adapted, Adapter, Target
from rmmc.environments.forms import Form
from rmmc.environments.model import Environment
from rmmc.environments.reads import DECISIVE, column_roles


class UnionAdapter(Adapter):
    """A union: each branch adapted by its own source; the union's own detection and stages
    read the columns its branches hold alike (see the module docstring)."""

    def __init__(self, rule: ir.Rule, env: Environment, branches: list[Adapter], allow_unknown: bool):
        self.branches = branches
        self.differs: set[str] = set()
        super().__init__(rule, env, None, Target(), allow_unknown)  # type: ignore[arg-type]

    def holding(self, column: str) -> list[Adapter]:
        """The branches whose rows have the column in the rule's own terms (a union is outer: a
        branch whose table has no such column gives null there, in the rule and here alike);
        every branch when none has it (then it is missing everywhere)."""
        return [b for b in self.branches if b.has_column(column)] or list(self.branches)

    def has_column(self, column: str) -> bool:
        return any(b.has_column(column) for b in self.branches)

    def form(self, column: str) -> Form | None:
        """The form every branch that has the column holds it in, when they agree; else None
        (`differs`, or missing when no branch has it)."""
        if column in self.forms:
            return self.forms[column]
        if column in self.unknown or column in self.missing or column in self.differs:
            return None
        if column == self.rule.union.withsource:
            return None
        branches = self.holding(column)
        forms = [b.output_form(column) for b in branches]
        if all(f is None for f in forms):
            reasons = {b.missing.get(column) for b in branches} - {None}
            self.missing[column] = "; ".join(sorted(reasons)) or None
            if self.allow_unknown:
                self.unknown.add(column)
            return None
        first = forms[0]
        if all(f is not None and _same(f, first) for f in forms):
            self.forms[column] = first
            return first
        self.differs.add(column)
        return None

    def filters(self) -> list[ir.Condition]:
        return []

    def _joined_pairs(self) -> dict[str, tuple[str, str, str]]:
        return {}

    def _member(self, name: str) -> bool:
        return False

    def subject(self, name: str, type_: str) -> Any:
        return ir.Field(name, type_)

    def where(self) -> str:
        return "the union's sources"

    def report_missing(self) -> None:
        """Nothing here: each branch reports the columns it lacks (with this union's roles)."""

    def run(self, outputs: tuple[str, ...] = ()) -> Adapted:
        rule = self.split_detection(self.rule)
        self.reset(rule)
        roles = column_roles(rule)
        for column, forced in self.forced.items():
            roles.setdefault(column, set()).update(forced)
        for column in self.columns:
            if self.form(column) is None and column in self.differs:
                type_ = self.columns[column].type
                for branch in self.holding(column):
                    branch.extend_kept(column, type_)
                self.keep.add(column)
        for column, read in roles.items():
            for branch in self.holding(column):
                branch.forced.setdefault(column, set()).update(read)
        parts = [b.run() for b in self.branches]
        for part in parts:
            self.found.extend(d for d in part.diagnostics if d not in self.found)
        if any(p.rule is None for p in parts):
            return Adapted(None, self.env, None, diagnostics=self.found)
        self.prepare()
        self.roles = roles
        self.dropped = {c for c in self.missing if c not in self.unknown and roles.get(c) and DECISIVE not in roles[c]}
        condition = self.condition(rule.condition)
        stages = self.stages(rule.stages)
        for name in outputs:
            self.rename(name)
        condition, stages = self.widen_unplaced(condition, stages)
        self.parts = [*parts, *self.parts]
        self.target = _common_target([p.placement for p in parts])
        union = replace(rule.union, branches=tuple(p.rule for p in parts))
        kinds = {p.rule.source.taxonomy for p in parts}
        source = replace(rule.source, taxonomy=kinds.pop() if len(kinds) == 1 else None)
        adapted = replace(rule, condition=condition, stages=stages, union=union, source=source)
        return self.result(adapted)

    def split_detection(self, rule: ir.Rule) -> ir.Rule:
        """The union's detection and leading filters: each test on columns the branches hold
        differently moves into every branch (a filter over a union is the union of the filtered
        branches), where each branch's form rewrites it; the others stay."""
        stages = list(rule.stages)
        tests = _conjuncts(rule.condition)
        while stages and isinstance(stages[0], ir.Filter):
            tests += _conjuncts(stages.pop(0).condition)
        withsource = rule.union.withsource
        stay, move = [], []
        for test in tests:
            names = [f.name for f in ir.expr_fields(test)]
            alike = all(self.form(n) is not None for n in names if n != withsource)
            # a column only some branches' tables have is null in the others' rows: the test
            # moves into every branch and is decided there (its field in the holding branch's
            # form may mean another column in the others', e.g. process.name)
            partly = any(self.has_column(n) and not all(b.has_column(n) for b in self.branches)
                         for n in names)
            (stay if withsource in names or (alike and not partly) else move).append(test)
        if not move:
            return rule
        for test in move:
            for branch in self.branches:
                lacking = frozenset(n for n in (f.name for f in ir.expr_fields(test)) if not branch.has_column(n))
                if not lacking:
                    branch.push(test)
                    continue
                decided = without_columns(test, lacking)
                if decided is None:
                    self.found.append(Diagnostic(
                        Severity.ERROR, f"{self.env.name}: a test of the union on {', '.join(sorted(lacking))}, "
                        f"which {branch.table} does not have, cannot be decided for its rows (it reads other "
                        "columns too, or compares a null under a not)", getattr(test, "span", None) or rule.union.span, "unsupported"))
                    continue
                if decided != ir.Const(True):
                    branch.push(decided)
        for name in {f.name for t in move for f in ir.expr_fields(t)}:
            self.differs.discard(name)
            self.missing.pop(name, None)
        return replace(rule, condition=ir.all_of(stay) if stay else ir.Const(True), stages=tuple(stages))


def _conjuncts(condition: ir.Condition) -> list[ir.Condition]:
    if isinstance(condition, ir.And):
        return [c for o in condition.operands for c in _conjuncts(o)]
    return [] if condition == ir.Const(True) else [condition]


def _same(a: Form, b: Form) -> bool:
    """Whether two sources hold a column alike (one form, one field, the same settings)."""
    return (type(a) is type(b) and a.field == b.field and a.spec.form == b.spec.form
            and dict(a.spec.options) == dict(b.spec.options))


def _common_target(targets: list[Target]) -> Target:
    """A union's placement: what its branches share; several Elastic indexes as one pattern
    list (`a,b`), the branches' own placements in `parts`."""
    def shared(name: str) -> Any:
        values = {getattr(t, name) for t in targets}
        return values.pop() if len(values) == 1 else None

    indexes = list(dict.fromkeys(i for t in targets for part in (t.index or "").split(",") if (i := part.strip())))
    return Target(shared("search"), shared("datamodel"), ",".join(indexes) or None, None, shared("time_field"))
