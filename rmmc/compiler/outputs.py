"""Output-only columns: the columns a rule computes or keeps only to show them.

A column that no filter, group key, aggregate, sort key, join or expansion reads (directly, or
through another column computed from it) decides nothing about which rows come out: only what
they show.  Dropping it changes the output's shape, never which alerts fire, so a target that
cannot compute it (a geolocation lookup, a JSON parse) may drop it with a `shape` warning
instead of refusing the whole rule (docs/principles: losing only output shape is a warning).

The decision is data flow over the stages, never a function's name:

* each Extend / Project column, each Rename pair and each named aggregate of a Summarize is a
  *definition* that reads the definitions bound to the names its expression reads (raw event
  fields are bound to none);
* a Filter, Sort, MvExpand or Parse reads its names *for the rows*, and so do a Summarize's
  group keys and an `arg_max` / `arg_min`: their definitions, and all they read, are needed;
  a Join, or an aggregate over `*`, needs every definition bound before it (and this pass
  follows no further);
* what is left is output only (dropping an aggregate keeps the groups: the same rows; a
  Summarize keeps one aggregate at least, or it would be another query, a distinct).

An Extend column that replaces a name already bound (`extend FileName = tolower(FileName)`)
is never dropped: the output would show the old value under the name.  A definition reading
an event field the source's table does not have is never dropped either: that is a mistake in
the rule, not something a target lacks.  `definitions` leaves rules over a union alone; their
one output-only column is the union's `withsource` label (`without_union_label`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Callable, Iterable

from rmmc.compiler import ir


@dataclass(frozen=True)
class Definition:
    """One column definition: stage `stage`, position `position` in it (a column of an Extend
    or Project, a pair of a Rename, an aggregate of a Summarize, a column an operator makes),
    binding `name`; `reads` are the definitions it reads; `text` says it in messages."""

    stage: int
    position: int
    name: str
    text: str
    reads: frozenset[int]  # indices into the list of definitions
    droppable: bool


def definitions(rule: ir.Rule, known_field: Callable[[str], bool] | None = None) -> list[Definition]:
    """Every column definition of the rule's stages, in order, each marked `droppable` when it
    only feeds the output (module docstring).  `known_field(name)`: whether the source event
    has a field of that name (default: the Defender schema of the rule's table)."""
    from rmmc.compiler.functions import describe

    if rule.union is not None:
        return []
    known = known_field or _schema_fields(rule)
    defs: list[Definition] = []
    bound: dict[str, int] = {}  # a name's current definition (absent: the event's field)
    needed: set[int] = set()
    opaque = False  # after a Summarize or Join: a name not bound is no event field

    def reads_of(expr: object) -> frozenset[int]:
        return frozenset(bound[f.name] for f in ir.expr_fields(expr) if f.name in bound)

    def unknown_fields(expr: object) -> bool:
        return any(f.name not in bound and (opaque or not known(f.name)) for f in ir.expr_fields(expr))

    def need(expr: object) -> None:
        needed.update(reads_of(expr))

    def define(index: int, position: int, name: str, text: str, reads: frozenset[int],
               droppable: bool) -> int:
        defs.append(Definition(index, position, name, text, reads, droppable))
        return len(defs) - 1

    def fixed(index: int, names: Iterable[str]) -> dict[str, int]:
        """Columns an operator makes that are never dropped (group keys, expansions ...)."""
        return {name: define(index, -1, name, name, frozenset(), False) for name in names}

    for index, stage in enumerate(rule.stages):
        if isinstance(stage, (ir.Extend, ir.Project)):
            new = {}
            for position, (name, expr) in enumerate(stage.columns):
                text = name if expr == ir.Field(name, expr.type) else f"{name} = {describe(expr)}"
                ok = not unknown_fields(expr)
                if isinstance(stage, ir.Extend):  # replacing a column would show the old value
                    ok = ok and name not in bound and (opaque or not known(name))
                new[name] = define(index, position, name, text, reads_of(expr), ok)
            bound = {**bound, **new} if isinstance(stage, ir.Extend) else new
        elif isinstance(stage, ir.Rename):
            new = {}
            for position, (name, old) in enumerate(stage.pairs):
                reads = frozenset({bound[old]}) if old in bound else frozenset()
                new[name] = define(index, position, name, f"{name} = {old}", reads, old in bound)
            for _, old in stage.pairs:
                bound.pop(old, None)
            bound.update(new)
        elif isinstance(stage, ir.ProjectAway):
            for name in [n for n in bound if any(fnmatchcase(n, p) for p in stage.patterns)]:
                del bound[name]
        elif isinstance(stage, ir.Filter):
            need(stage.condition)
        elif isinstance(stage, ir.Sort):
            for key in stage.keys:
                need(key.expr)
        elif isinstance(stage, ir.Summarize):
            for _, expr in stage.group_by:
                need(expr)
            new = fixed(index, stage.keys)
            for position, aggregate in enumerate(stage.aggregates):
                if any(isinstance(a, ir.Star) for a in aggregate.args):  # arg_max(Timestamp, *)
                    needed.update(bound.values())
                if aggregate.name is None:  # arg_max / arg_min: the group's row decides them
                    for arg in aggregate.args:
                        need(arg)
                    new.update(fixed(index, [a.name for a in aggregate.args if isinstance(a, ir.Field)]))
                    continue
                args = ", ".join(describe(a) for a in aggregate.args)
                new[aggregate.name] = define(
                    index, position, aggregate.name, f"{aggregate.name} = {aggregate.function}({args})",
                    frozenset().union(*(reads_of(a) for a in aggregate.args)),
                    not any(unknown_fields(a) for a in aggregate.args))
            bound, opaque = new, not any(isinstance(a, ir.Star) for g in stage.aggregates for a in g.args)
            if not opaque:  # '*' carried columns this pass does not follow: stop here
                return _settled(defs, needed | set(range(len(defs))))
        elif isinstance(stage, ir.MvExpand):
            for _, expr, _ in stage.columns:
                need(expr)
            bound.update(fixed(index, [name for name, _, _ in stage.columns]))
            if stage.index:
                bound.update(fixed(index, [stage.index]))
        elif isinstance(stage, ir.Parse):
            need(stage.source)
            bound.update(fixed(index, stage.columns))
        elif isinstance(stage, ir.Join):
            needed.update(bound.values())
            return _settled(defs, needed | set(range(len(defs))))
    return _settled(defs, needed)


def _settled(defs: list[Definition], needed: set[int]) -> list[Definition]:
    """The definitions with `droppable` cleared for the needed ones and all they read."""
    pending = list(needed)
    while pending:
        for read in defs[pending.pop()].reads:
            if read not in needed:
                needed.add(read)
                pending.append(read)
    return [replace(d, droppable=d.droppable and i not in needed) for i, d in enumerate(defs)]


def closure(defs: list[Definition], chosen: Iterable[int]) -> set[int]:
    """The chosen definitions and every definition that reads one of them (dropping a column
    drops what is computed from it)."""
    out = set(chosen)
    changed = True
    while changed:
        changed = False
        for i, d in enumerate(defs):
            if i not in out and d.reads & out:
                out.add(i)
                changed = True
    return out


def widest(rule: ir.Rule, defs: list[Definition], choice: int = 0) -> set[int] | None:
    """The most definitions that can be dropped together: every droppable one, except that a
    Project keeps one column that is an event field as it is (a Project must keep one): its
    first such column, or with `choice` n its (n+1)th; None when there is none to drop or no
    such drop (a Project has no (n+1)th one)."""
    chosen = {i for i, d in enumerate(defs) if d.droppable}
    for index, stage in enumerate(rule.stages):
        if not isinstance(stage, ir.Project):
            continue
        mine = [i for i, d in enumerate(defs) if d.stage == index and d.position >= 0]
        if mine and set(mine) <= closure(defs, chosen):
            plain = [i for i in mine if not defs[i].reads]
            if len(plain) <= choice:
                return None
            chosen.discard(plain[choice])
    gone = closure(defs, chosen)
    return gone if gone and drop(rule, defs, gone) is not None else None


def drop(rule: ir.Rule, defs: list[Definition], chosen: Iterable[int]) -> ir.Rule | None:
    """The rule without the chosen definitions (and those computed from them); None when that
    is not a drop of output columns only (a definition not droppable, or a Project left with
    no column)."""
    gone = closure(defs, chosen)
    if any(not defs[i].droppable for i in gone):
        return None
    by_stage: dict[int, set[int]] = {}
    for i in gone:
        by_stage.setdefault(defs[i].stage, set()).add(defs[i].position)
    names = {defs[i].name for i in gone}
    stages: list[ir.Stage] = []
    for index, stage in enumerate(rule.stages):
        positions = by_stage.get(index, set())
        if isinstance(stage, (ir.Extend, ir.Project)) and positions:
            columns = tuple(c for p, c in enumerate(stage.columns) if p not in positions)
            if not columns:
                if isinstance(stage, ir.Project):
                    return None
                continue
            stages.append(replace(stage, columns=columns))
        elif isinstance(stage, ir.Summarize) and positions:
            aggregates = tuple(a for p, a in enumerate(stage.aggregates) if p not in positions)
            if not aggregates:
                return None  # what it counted was the point: a distinct is not a drop of output
            stages.append(replace(stage, aggregates=aggregates))
        elif isinstance(stage, ir.Rename) and positions:
            pairs = tuple(c for p, c in enumerate(stage.pairs) if p not in positions)
            if pairs:
                stages.append(replace(stage, pairs=pairs))
        elif isinstance(stage, (ir.ProjectAway, ir.Reorder)) and names & set(stage.patterns):
            patterns = tuple(p for p in stage.patterns if p not in names)
            if patterns:
                stages.append(replace(stage, patterns=patterns))
        else:
            stages.append(stage)
    return replace(rule, stages=tuple(stages))


def without_union_label(rule: ir.Rule) -> ir.Rule | None:
    """A union rule without its `withsource` column (KQL `union withsource=T`, and `search`'s
    `$table`), when nothing but the output reads it: neither the union's where nor a stage filters, groups, sorts, computes
    or renames with it, a project keeps it only as it is (and keeps another column too), and
    no join, expansion, parse or aggregate over `*` follows (this pass does not follow columns
    through them).  None otherwise."""
    union = rule.union
    if union is None or not union.withsource:
        return None
    name = union.withsource
    if name in {f.name for f in ir.expr_fields(rule.condition)}:  # the union's own where
        return None
    stages: list[ir.Stage] = []
    for stage in rule.stages:
        if isinstance(stage, (ir.Join, ir.MvExpand, ir.Parse)):
            return None
        if isinstance(stage, ir.Summarize) and any(isinstance(a, ir.Star) for g in stage.aggregates for a in g.args):
            return None
        if isinstance(stage, ir.Project):
            columns = tuple(c for c in stage.columns if c != (name, ir.Field(name, c[1].type)))
            if not columns or any(name in {f.name for f in ir.expr_fields(e)} for _, e in columns):
                return None
            stages.append(replace(stage, columns=columns) if columns != stage.columns else stage)
            continue
        if isinstance(stage, (ir.Reorder, ir.ProjectAway)):
            patterns = tuple(p for p in stage.patterns if p != name)
            if patterns:
                stages.append(replace(stage, patterns=patterns))
            continue
        if name in ir.stage_reads(stage):
            return None
        if isinstance(stage, ir.Rename) and any(new == name for new, _ in stage.pairs):
            return None
        if isinstance(stage, ir.Extend) and any(column == name for column, _ in stage.columns):
            return None
        stages.append(stage)
    return replace(rule, union=replace(union, withsource=None), stages=tuple(stages))


def _schema_fields(rule: ir.Rule) -> Callable[[str], bool]:
    from rmmc.compiler.schema import load_schema

    table = load_schema().table(rule.source.table) if rule.source.table else None
    if table is None:
        return lambda name: False
    return table.has_column
