"""A union of several sources as one ES|QL query.

    FROM <every branch's index pattern, once each> [METADATA _id, _version, _index]
    | WHERE <time> > NOW() - <span>                           (when every branch looks back alike)
    | WHERE (<A's filter> AND <A's tests>) OR (<B's filter> AND <B's tests>)
    | EVAL C = CASE(<A's filter>, <C in A>, <B's filter>, <C in B>)   (per column held differently)
    | <the union's stages, as for one source>

Each branch is the environment's sub-rule for its source (`rmmc.environments.union`): its
detection already holds its source's filter (`Target.filter`, e.g. `event.code == "1"`), its
tests are written as the single-source path writes them (each conjunct's indexable superset
first, `prefilter`), with the IR's three values.  The union's own detection is moved into every
branch (`branches.split_union`), through the branch's computed columns.

Why it is exact:

* A row passes the WHERE when one branch's conjunction is true; that conjunction holds the
  branch's filter, and the filters of two branches are disjoint (checked: a field both test for
  equality with no value in common), so a row is true for at most one branch: no branch's test
  reaches another's events, whatever the null of a test the other branch's events lack (OR is
  true when one side is true, whatever the other).  A union whose branches cannot be told apart
  (no filter, or filters that may both hold: the same source twice) is refused, as KQL would
  return such an event once per branch.
* `CASE(<A's filter>, ...)` takes, on each row, the value of the one branch whose filter holds
  (the filters are two-valued: a string test reads `COALESCE(f, "")`); a branch without the
  column gives "" for a string (KQL's missing string) or null.
* `withsource=Source` is such a column: `CASE(<A's filter>, "A", ...)`.

Branches that look back over different windows each carry their own time test.

Refused (located): branches not told apart (above; a source without an environment's filter), a
branch with its own stages that are not row-wise (a branch's summarize, sort or take works on
that branch's rows alone: one FROM has no such form), a column whose type differs per branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rmmc.backends.base import EmitOptions
from rmmc.backends.esql.backend import (DEFAULT_INDEX, Emitter, _INDEX, _table, detection, lookback_test,
                                where_parts)
from rmmc.backends.esql.text import Refusal, ident, join, paren, strip_parens
from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic

_ROW_STAGES = (ir.Extend, ir.Project, ir.Rename, ir.ProjectAway, ir.Reorder)


@dataclass
class UnionEmitter(Emitter):
    """The columns of a union's rows: a column every branch names alike, or one a `CASE` made."""

    branches: list[Emitter] = field(default_factory=list)
    index: str = DEFAULT_INDEX
    known: list[str] | None = None

    def mapped(self, name: str) -> str | None:
        names = {b.mapped(name) for b in self.branches}
        return names.pop() if len(names) == 1 else None

    def column(self, name: str) -> str:
        if name not in self.columns and name not in self.paths:
            names = {b.mapped(name) or name for b in self.branches}
            if len(names) > 1:
                raise Refusal(f"the column {name} is named differently in the union's sources "
                              f"({', '.join(sorted(names))}): no one ES|QL field holds it")
        return super().column(name)


def _selector_tests(condition: Any) -> list[ir.Predicate]:
    """A source filter's equality tests (its top-level conjuncts)."""
    parts = condition.operands if isinstance(condition, ir.And) else (condition,)
    return [p for p in parts if isinstance(p, ir.Predicate) and p.op is ir.Op.EQUALS and not p.negated
            and not p.all_values and isinstance(p.field, ir.Field)]


def _disjoint(a: Any, b: Any) -> bool:
    """Whether no event passes both source filters: a field both test for equality with no value
    in common (compared case-folded and as text: a superset of each test's own equality)."""
    tests_b = {}
    for p in _selector_tests(b):
        tests_b.setdefault(p.field.name, []).append({str(v).casefold() for v in p.values})
    for p in _selector_tests(a):
        values = {str(v).casefold() for v in p.values}
        if any(not (values & other) for other in tests_b.get(p.field.name, [])):
            return True
    return False


@dataclass
class _Branch:
    label: str
    rule: ir.Rule
    emitter: Emitter
    selector: ir.Condition | None
    index: str | None
    columns: Any = None


def _check_stages(label: str, part: ir.Rule, union: ir.Union) -> Any:
    """The branch's columns over its raw event (`BranchColumns`); refused: a stage that is not
    row-wise (a summarize, sort, take or filter of the branch's own rows)."""
    from rmmc.compiler.branches import NotSplit, branch_columns

    for stage in part.stages:
        if not isinstance(stage, _ROW_STAGES):
            raise Refusal(f"the union's branch {label} has its own {type(stage).__name__} stage, which "
                          "works on that branch's rows alone: one FROM over every source has no such form",
                          getattr(stage, "span", None) or union.span)
    try:
        return branch_columns(part)
    except NotSplit:
        raise Refusal(f"the union's branch {label} computes a column from what ES|QL cannot say per "
                      "source", union.span) from None


def union_commands(rule: ir.Rule, options: EmitOptions, profile: Any, fields: Any,
                   found: list[Diagnostic]) -> tuple[list[str], UnionEmitter]:
    """The commands after FROM that select a union's rows and set the columns its branches hold
    differently, and the emitter the union's stages are written through (its `index`: the FROM
    list; its `known`: the columns when every branch fixed them)."""
    from rmmc.compiler.branches import NotSplit, split_union
    from rmmc.compiler.paths import with_paths

    union = rule.union
    assert union is not None
    placement = options.placement
    try:
        parts = split_union(replace(rule, stages=()))
    except NotSplit as exc:  # no stages: only a nested union's own stages can refuse here
        raise Refusal(str(exc), exc.span or union.span) from None
    branches: list[_Branch] = []
    try:
        for label, part in parts:
            columns = _check_stages(label, part, union)
            part, paths = with_paths(part)
            em = Emitter(_table(part), profile, fields, taxonomy=part.source.taxonomy)
            em.paths.update((p.name, p) for p in paths)
            own = placement.part(part.source.table) if getattr(placement, "parts", ()) else None
            branches.append(_Branch(label, part, em, getattr(own, "filter", None),
                                    getattr(own, "index", None), columns))
        _check_told_apart(branches, union)
        commands = _where(branches, options, found)
        index = _index(branches, placement)
        emitter = UnionEmitter(None, profile, fields, taxonomy=rule.source.taxonomy,
                               branches=[b.emitter for b in branches], index=index)
        commands += _column_commands(emitter, branches, rule.stages)
    finally:
        for b in branches:
            found.extend(d for d in b.emitter.diagnostics if d not in found)
    emitter.case_folded = any(b.emitter.case_folded for b in branches)
    return commands, emitter


def _check_told_apart(branches: list[_Branch], union: ir.Union) -> None:
    """Refuse branches whose events cannot be told apart: every branch needs its environment's
    source filter, and every two filters must exclude each other."""
    if len(branches) < 2:
        return
    for b in branches:
        if b.selector is None:
            raise Refusal(f"the environment gives the source of {b.label} no test of its own (a filter "
                          "such as event.code): one ES|QL query over every source cannot tell its events "
                          "from the union's other sources", union.span)
    for i, a in enumerate(branches):
        for b in branches[i + 1:]:
            if not _disjoint(a.selector, b.selector):
                raise Refusal(f"the sources of {a.label} and {b.label} are not told apart by their filters "
                              "(an event may pass both): KQL returns such an event once per branch, one "
                              "ES|QL query once", union.span)


def _where(branches: list[_Branch], options: EmitOptions, found: list[Diagnostic]) -> list[str]:
    """`WHERE <time>` when every branch looks back alike, then `WHERE (A) OR (B) ...`."""
    since = [lookback_test(b.emitter, b.rule, found) for b in branches]
    shared = since[0] if len(set(since)) == 1 else None
    commands = [f"WHERE {shared}"] if shared is not None else []
    disjuncts = []
    for b, own_since in zip(branches, since):
        condition = detection(b.emitter, b.rule, options, found)
        present = set(condition.operands) if isinstance(condition, ir.And) else {condition}
        if b.selector is not None:  # the adapted detection holds its filter; said once either way
            missing = [t for t in (b.selector.operands if isinstance(b.selector, ir.And) else (b.selector,))
                       if t not in present]
            condition = ir.all_of([*missing, condition])
        parts = [] if shared is not None or own_since is None else [paren(own_since)]
        if condition != ir.Const(True):
            index_parts, exact_parts = where_parts(b.emitter, condition)
            parts += index_parts + exact_parts
        if not parts:
            if len(branches) == 1:
                return commands
            parts = ["true"]
        disjuncts.append(paren(join("AND", parts)) if len(parts) > 1 else parts[0])
    return commands + ["WHERE " + strip_parens(join("OR", disjuncts))]


def _index(branches: list[_Branch], placement: Any) -> str:
    """Every branch's index patterns, once each, in order, comma-separated."""
    patterns = [p.strip() for b in branches for p in (b.index or "").split(",") if p.strip()]
    if not patterns:
        patterns = [p.strip() for p in (getattr(placement, "index", None) or DEFAULT_INDEX).split(",")]
    index = ",".join(dict.fromkeys(patterns))
    if not _INDEX.fullmatch(index):
        raise Refusal(f"index pattern {index!r} is not a plain index pattern")
    return index


def _reads(stages: tuple[ir.Stage, ...]) -> tuple[dict[str, str], bool]:
    """The columns the union's stages read from its rows (name -> model type, where a stage
    says it), up to the first stage that fixes the columns; and whether one does."""
    read: dict[str, str] = {}
    for stage in stages:
        for name in sorted(ir.stage_reads(stage)):
            read.setdefault(name, "")
        for node in ir.stage_expressions(stage):
            for f in ir.expr_fields(node):
                if not read.get(f.name):
                    read[f.name] = f.type
        if isinstance(stage, (ir.Project, ir.Summarize)):
            return read, True
    return read, False


def _kind(types: set[str]) -> str | None:
    if types <= {"string", "guid"}:
        return "string"
    if types <= {"int", "long", "real", "decimal"}:
        return "number"
    if types <= {"datetime"}:
        return "datetime"
    if types <= {"bool", "boolean"}:
        return "bool"
    return None


def _column_commands(emitter: UnionEmitter, branches: list[_Branch], stages: tuple[ir.Stage, ...]) -> list[str]:
    """`EVAL C = CASE(<A's filter>, <C in A>, ...)` for each column the union's stages read (all
    the branches' columns when no stage fixes them) that some branch computes, renames or names
    otherwise; then, when every branch fixed its columns and no stage does, `KEEP` of them."""
    from rmmc.compiler.schema import load_schema

    read, closes = _reads(stages)
    columns = [b.columns for b in branches]
    if not closes:
        for c in columns:
            for name in (c.closed or list(c.defs)):
                read.setdefault(name, "")
    assignments: list[tuple[str, str, set[str]]] = []  # (target, expression, event fields it reads)
    selected = {b.emitter.out_name(f.name) for b in branches if b.selector is not None
                for f in ir.expr_fields(b.selector)}
    for name, stated in read.items():
        exprs = []
        for b, c in zip(branches, columns):
            table = load_schema().table(b.rule.source.table or "")
            exprs.append(c.of(name, stated or (table.column_type(name) if table else None) or "string"))
        plain = all(isinstance(e, ir.Field) and not isinstance(e, ir.Call) and e.name == name for e in exprs)
        if plain and len({b.emitter.mapped(name) or name for b in branches}) == 1:
            continue
        if len(branches) > 1 and any(b.selector is None for b in branches):
            raise Refusal(f"the union's column {name} is held differently per source, and a source has no "
                          "filter to tell its rows apart")
        types = {e.type for e in exprs if e is not None}
        kind = _kind(types)
        if kind is None:
            raise Refusal(f"the union's column {name} holds values of different types per source "
                          f"({', '.join(sorted(types))})")
        values = []
        reads = set(selected)
        for b, expr in zip(branches, exprs):
            if expr is None:
                values.append((b, '""' if kind == "string" else "null"))
                continue
            value = b.emitter.writer.value(expr)
            if value.kind != kind and not (kind == "string" and value.kind == "segment"):
                raise Refusal(f"the union's column {name} is a {value.kind} in {b.label}, a {kind} elsewhere")
            values.append((b, f"COALESCE({value.text}, \"\")" if value.kind == "segment" else value.text))
            reads |= {b.emitter.out_name(f.name) for f in ir.expr_fields(expr)}
        if len({text for _, text in values}) == 1:  # every row is one branch's: no CASE needed
            expression = values[0][1]
        else:
            pairs = [f"{strip_parens(b.emitter.emit(b.selector))}, {text}" for b, text in values]
            expression = f"CASE({', '.join(pairs)})"
        emitter.check_own_name(name)
        assignments.append((ident(emitter.out_name(name)), expression, {ident(n) for n in reads}))
        emitter.columns[name] = "value"
    commands = _assign(assignments)
    if not closes and all(c.closed is not None for c in columns):
        shown = list(dict.fromkeys(n for c in columns for n in c.closed))
        commands.append("KEEP " + ", ".join(dict.fromkeys(emitter.column(n) for n in shown)))
        emitter.columns = {n: emitter.columns.get(n, "event") for n in shown}
        emitter.known = shown
    return commands


def _assign(assignments: list[tuple[str, str, set[str]]]) -> list[str]:
    """One `EVAL` of every column; through temporaries when an expression reads an event field an
    assignment to its left replaces (an EVAL's assignment sees those to its left)."""
    if not assignments:
        return []
    set_before: set[str] = set()
    clash = False
    for target, _, reads in assignments:
        clash = clash or bool(reads & set_before)
        set_before.add(target)
    if not clash:
        return ["EVAL " + ", ".join(f"{target} = {text}" for target, text, _ in assignments)]
    temps = [f"rmmc_u{i + 1}" for i in range(len(assignments))]
    return ["EVAL " + ", ".join(f"{t} = {text}" for t, (_, text, _) in zip(temps, assignments)),
            "EVAL " + ", ".join(f"{target} = {t}" for t, (target, _, _) in zip(temps, assignments)),
            "DROP " + ", ".join(temps)]
