"""A rule's stages as ES|QL commands, in the rule's order, each with KQL's meaning.

    Extend     | EVAL a = ..., b = ...        (through temporaries when one reads what another
                                              sets: ES|QL's EVAL sees the columns set to its
                                              left, KQL computes every column from the row before)
    Filter     | WHERE <condition>            (after STATS too: a threshold)
    Summarize  | STATS a = AGG(x) [WHERE c], ... BY k = COALESCE(f, ""), ...  | KEEP keys, aggs
               (a missing string key is '' in KQL: COALESCE groups it with ''; a null number
               key is a group of its own in both; `bin(Timestamp, 1h)` is `DATE_TRUNC`; a
               `dcount` a later stage reads is exact, `MV_COUNT(VALUES(x))`, one only shown
               the approximate `COUNT_DISTINCT`.  A multivalued field, which the model has no
               notion of, would put its row in several groups)
    Project    | EVAL ...  | KEEP a, b, c
    ProjectAway| DROP a, b
    Rename     | RENAME a AS b
    Reorder    | KEEP a, b, *
    Sort       | SORT k DESC NULLS LAST, ...  (null placement always written: KQL's default is
                                              nulls first ascending, last descending)
    Limit      | LIMIT n

A column keeps the event field's name where it replaces one (through the profile), else its
KQL name; temporaries are `rmmc_t<N>` and are dropped after use.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from rmmc.backends.base import lossy, note, shape
from rmmc.backends.esql.expr import Esql
from rmmc.backends.esql.text import Refusal, ident, strip_parens
from rmmc.backends.widen import widen
from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.functions import NUMERIC_TYPES, describe, describe_condition

TARGET = "esql"

AGGREGATES = {
    "count": "COUNT", "countif": "COUNT",
    "dcount": "COUNT_DISTINCT", "dcountif": "COUNT_DISTINCT",
    "sum": "SUM", "sumif": "SUM",
    "avg": "AVG", "avgif": "AVG",
    "min": "MIN", "minif": "MIN",
    "max": "MAX", "maxif": "MAX",
    "make_set": "VALUES", "make_set_if": "VALUES",
    "make_list": "VALUES", "make_list_if": "VALUES",
}
"""KQL model aggregate -> the ES|QL aggregation that computes it (the `*if` forms with `WHERE`
on the aggregation; the argument and the exceptions are prepared by `StageWriter.aggregate`)."""


@dataclass
class StageWriter:
    """Writes stages through the backend's `Emitter` (conditions, expressions, columns)."""

    emitter: Any
    diagnostics: list[Diagnostic] = field(default_factory=list)
    known: list[str] | None = None  # every column of the row (KQL names), once a stage fixed them
    _temps: int = 0

    def temp(self) -> str:
        self._temps += 1
        return f"rmmc_t{self._temps}"

    def say(self, diagnostic: Diagnostic) -> None:
        if diagnostic not in self.diagnostics:
            self.diagnostics.append(diagnostic)

    # -- names

    def name(self, column: str) -> str:
        """The ES|QL identifier of a column the rule reads or writes."""
        return self.emitter.column(column)

    def target(self, column: str) -> str:
        """The identifier a stage writes a column under (no warning: it is made here)."""
        return ident(self.emitter.out_name(column))

    # -- stages

    def write(self, stages: tuple[ir.Stage, ...]) -> list[str]:
        commands: list[str] = []
        for index, stage in enumerate(stages):
            try:
                commands.extend(self.stage(stage, stages[index + 1:]))
            except Refusal as refusal:
                if refusal.span is None:
                    refusal.span = getattr(stage, "span", None)
                raise
        return commands

    def stage(self, stage: ir.Stage, later: tuple[ir.Stage, ...]) -> list[str]:
        if isinstance(stage, ir.Filter):
            return self.filter(stage, later)
        if isinstance(stage, ir.Extend):
            return self.extend(stage)
        if isinstance(stage, ir.Project):
            return self.project(stage)
        if isinstance(stage, ir.Summarize):
            return self.summarize(stage, later)
        if isinstance(stage, ir.ProjectAway):
            return self.project_away(stage)
        if isinstance(stage, ir.Rename):
            return self.rename(stage)
        if isinstance(stage, ir.Reorder):
            return self.reorder(stage)
        if isinstance(stage, ir.Sort):
            return self.sort(stage)
        if isinstance(stage, ir.Limit):
            if isinstance(stage.count, bool) or stage.count < 0:
                raise Refusal(f"limit {stage.count!r} is not a row count")
            return [f"LIMIT {stage.count}"]
        raise Refusal(f"no ES|QL form for the stage {type(stage).__name__}")

    def filter(self, stage: ir.Filter, later: tuple[ir.Stage, ...]) -> list[str]:
        """`| WHERE` in its place.  A test ES|QL cannot say is dropped (lossy: more rows) only
        when no later stage counts or takes rows (no aggregation, no limit); else refused."""
        condition = stage.condition
        if not any(isinstance(s, (ir.Summarize, ir.Limit)) for s in later):
            condition, replaced = widen(condition, lambda n: not self.emitter.expressible(n))
            for node in replaced:
                self.say(lossy(TARGET, f"'{describe_condition(node)}' cannot be said exactly in ES|QL: "
                                       "dropped from the filter, so more rows are returned (never fewer)",
                               getattr(node, "span", None) or stage.span, subject=node))
        if condition == ir.Const(True):
            return []
        return ["WHERE " + strip_parens(self.emitter.emit(condition))]

    # -- computed columns

    def assign(self, columns: tuple[tuple[str, ir.Expr], ...], span) -> list[str]:
        """Commands setting every column from the row as it was before them (KQL's extend and
        project): one `EVAL` when no expression reads a column an assignment to its left sets,
        else every value into a temporary first."""
        columns = tuple((n, e) for n, e in columns if not (isinstance(e, ir.Field) and e.name == n))
        if not columns:
            return []
        values: list[tuple[str, Esql]] = []
        for name, expr in columns:
            value = self.emitter.writer.value(expr, span)
            if value.kind == "span":
                raise Refusal(f"{name} = {describe(expr)}: a timespan column is no ES|QL value", span)
            self.emitter.check_own_name(name, span)
            values.append((name, value))
        targets = [self.target(name) for name, _ in values]
        if len(set(targets)) != len(targets):
            raise Refusal(f"columns {[n for n, _ in values]} would share an ES|QL name", span)
        set_so_far: set[str] = set()
        clash = False
        for name, expr in columns:
            if {f.name for f in ir.expr_fields(expr)} & set_so_far:
                clash = True
            set_so_far.add(name)
        if clash:
            temps = [self.temp() for _ in values]
            commands = ["EVAL " + ", ".join(f"{t} = {v.text}" for t, (_, v) in zip(temps, values)),
                        "EVAL " + ", ".join(f"{target} = {t}" for target, t in zip(targets, temps)),
                        "DROP " + ", ".join(temps)]
        else:
            commands = ["EVAL " + ", ".join(f"{target} = {v.text}" for target, (_, v) in zip(targets, values))]
        for name, value in values:
            self.emitter.columns[name] = value.kind if value.kind in ("segment", "multi") else "value"
        return commands

    def extend(self, stage: ir.Extend) -> list[str]:
        commands = self.assign(stage.columns, stage.span)
        if self.known is not None:
            for name, _ in stage.columns:
                if name in self.known:
                    self.known.remove(name)
                self.known.append(name)
        return commands

    def project(self, stage: ir.Project) -> list[str]:
        commands = self.assign(stage.columns, stage.span)
        names = [name for name, _ in stage.columns]
        shown = [self.name(name) for name in names]
        if len(set(shown)) != len(shown):
            raise Refusal(f"the projected columns {names} would share an ES|QL name")
        self.emitter.columns = {n: self.emitter.columns.get(n, "event") for n in names}
        self.known = names
        commands.append("KEEP " + ", ".join(shown))
        return commands

    def expand(self, patterns: tuple[str, ...], what: str) -> list[str]:
        """The columns (KQL names) a list of KQL names and `*` patterns names."""
        names: list[str] = []
        for pattern in patterns:
            if "*" in pattern:
                if self.known is None:
                    raise Refusal(f"{what} {pattern}: which event fields the pattern names in ES|QL "
                                  "is not known (field names differ)")
                names.extend(c for c in self.known if fnmatch.fnmatchcase(c, pattern))
            else:
                names.append(pattern)
        return list(dict.fromkeys(names))

    def project_away(self, stage: ir.ProjectAway) -> list[str]:
        names = self.expand(stage.patterns, "project-away")
        shown = [self.name(n) for n in names]
        for n in names:
            self.emitter.columns.pop(n, None)
            if self.known is not None and n in self.known:
                self.known.remove(n)
        return ["DROP " + ", ".join(dict.fromkeys(shown))] if shown else []

    def rename(self, stage: ir.Rename) -> list[str]:
        olds = {old for _, old in stage.pairs}
        if any(new in olds and new != old for new, old in stage.pairs):
            raise Refusal("project-rename that swaps or chains names (ES|QL renames one after another)")
        renames = []
        for new, old in stage.pairs:
            source = self.name(old)
            self.emitter.check_own_name(new, stage.span)
            target = self.target(new)
            kind = self.emitter.columns.pop(old, "event")
            if target != source:
                renames.append(f"{source} AS {target}")
            self.emitter.columns[new] = kind
            if self.known is not None:
                self.known = [new if c == old else c for c in self.known]
        return ["RENAME " + ", ".join(renames)] if renames else []

    def reorder(self, stage: ir.Reorder) -> list[str]:
        first = self.expand(stage.patterns, "project-reorder")
        if self.known is not None:
            first = [c for c in first if c in self.known]
            self.known = first + [c for c in self.known if c not in first]
        if not first:
            return []
        return ["KEEP " + ", ".join(dict.fromkeys(self.name(c) for c in first)) + ", *"]

    # -- order

    def sort(self, stage: ir.Sort) -> list[str]:
        """`SORT` by each key with its null placement written out: KQL puts nulls first
        ascending and last descending unless the key says otherwise (ES|QL's default is the
        other way round).  A string is never null in KQL (a missing one is '', the smallest
        text): an event's string field is sorted as it is, its nulls where '' goes."""
        evals, keys, temps = [], [], []
        for key in stage.keys:
            value = self.emitter.writer.value(key.expr, stage.span)
            if value.kind not in ("string", "number", "datetime"):
                raise Refusal(f"sort by {describe(key.expr)}: no order of it rmmc writes in ES|QL")
            if value.kind == "string":
                nulls_first = not key.descending
            else:
                nulls_first = key.nulls_first if key.nulls_first is not None else not key.descending
            if isinstance(key.expr, ir.Field):
                text = self.name(key.expr.name)
            else:
                text = self.temp()
                temps.append(text)
                evals.append(f"{text} = {value.text}")
            keys.append(f"{text} {'DESC' if key.descending else 'ASC'} NULLS {'FIRST' if nulls_first else 'LAST'}")
        commands = ["EVAL " + ", ".join(evals)] if evals else []
        commands.append("SORT " + ", ".join(keys))
        if temps:
            commands.append("DROP " + ", ".join(temps))
        return commands

    # -- aggregation

    def summarize(self, stage: ir.Summarize, later: tuple[ir.Stage, ...]) -> list[str]:
        if not stage.group_by and not stage.aggregates:
            raise Refusal("a distinct of no columns")
        read_later = set().union(*(ir.stage_reads(s) for s in later)) if later else set()
        parts: list[str] = []
        fixes: list[str] = []
        kinds: dict[str, str] = {}
        for agg in stage.aggregates:
            text, kind, fix = self.aggregate(agg, read_later, stage)
            parts.append(text)
            kinds[agg.name] = kind
            if fix:
                fixes.append(fix)
        read_by_aggregates = {self.emitter.out_name(f.name) for agg in stage.aggregates for a in agg.args
                              for f in ir.expr_fields(a)}
        groups, renames = [], []
        for name, expr in stage.group_by:
            value = self.emitter.writer.value(expr, stage.span)
            if value.kind not in ("string", "number", "datetime", "bool"):
                raise Refusal(f"summarize by {describe(expr)}: no ES|QL value to group by")
            self.emitter.check_own_name(name, stage.span)
            target = self.target(name)
            if value.text == target:
                groups.append(target)
            elif self.emitter.out_name(name) in read_by_aggregates:
                temp = self.temp()  # the key's name is read by an aggregate: set it after STATS
                groups.append(f"{temp} = {value.text}")
                renames.append(f"{temp} AS {target}")
            else:
                groups.append(f"{target} = {value.text}")
            kinds[name] = "value"
        text = "STATS"
        if parts:
            text += " " + ", ".join(parts)
        if groups:
            text += " BY " + ", ".join(groups)
        commands = [text]
        if renames:
            commands.append("RENAME " + ", ".join(renames))
        if fixes:
            commands.append("EVAL " + ", ".join(fixes))
        keys = [self.target(n) for n, _ in stage.group_by]
        outputs = [self.target(a.name) for a in stage.aggregates]
        if len(set(keys + outputs)) != len(keys + outputs):
            raise Refusal("summarize columns that would share an ES|QL name")
        if keys and outputs:  # STATS puts the aggregates first, KQL the keys
            commands.append("KEEP " + ", ".join(keys + outputs))
        self.emitter.columns = {n: kinds[n] for n in [*(n for n, _ in stage.group_by),
                                                      *(a.name for a in stage.aggregates)]}
        self.known = [n for n, _ in stage.group_by] + [a.name for a in stage.aggregates]
        return commands

    def aggregate(self, agg: ir.Aggregate, read_later: set[str],
                  stage: ir.Summarize) -> tuple[str, str, str | None]:
        """`name = AGG(argument) [WHERE condition]` for STATS, the kind of its column, and an
        EVAL assignment fixing it after STATS (or None)."""
        function = AGGREGATES.get(agg.function)
        if function is None or agg.name is None:
            raise Refusal(f"the aggregate {agg.function}() has no ES|QL aggregation with KQL's meaning")
        target = self.target(agg.name)
        self.emitter.check_own_name(agg.name, stage.span)
        args = list(agg.args)
        conditions = []
        if agg.function.endswith("if"):
            conditions.append(self.emitter.writer.condition(args.pop(), stage.span))
        where = lambda: (" WHERE " + " AND ".join(conditions)) if conditions else ""  # noqa: E731
        if function == "COUNT":
            return f"{target} = COUNT(*){where()}", "value", None
        if not args:
            raise Refusal(f"{agg.function}() without an argument")
        arg = args[0]
        value = self.emitter.writer.value(arg, stage.span)
        if value.kind not in ("string", "number", "datetime", "bool"):
            raise Refusal(f"{agg.function}({describe(arg)}): no ES|QL aggregation over it with KQL's meaning")
        used_later = agg.name in read_later
        if function == "COUNT_DISTINCT":
            # a string is counted as KQL reads it: '' (a missing value too) is one value
            if used_later:
                self.say(note(TARGET, f"{agg.name} = {agg.function}(...) is counted exactly as "
                                      "MV_COUNT(VALUES(...)), since a later stage reads it (COUNT_DISTINCT "
                                      "is approximate); VALUES is in technical preview, and a group with "
                                      "more values than memory holds fails the query (a circuit breaker "
                                      "error) rather than being miscounted", stage.span))
                return f"{target} = COALESCE(MV_COUNT(VALUES({value.text})), 0){where()}", "value", None
            self.say(shape(TARGET, f"{agg.name} = {agg.function}(...) as COUNT_DISTINCT: approximate "
                                   "(exact for small counts), and only shown: no later stage reads it",
                           stage.span))
            return f"{target} = COUNT_DISTINCT({value.text}){where()}", "value", None
        if function in ("SUM", "AVG"):
            if arg.type not in NUMERIC_TYPES:
                raise Refusal(f"{agg.function}() of a {arg.type}")
            return f"{target} = {function}({value.text}){where()}", "value", None
        if function in ("MIN", "MAX"):
            if value.kind == "string":
                # KQL skips '' (and so missing values); nothing left: '' again
                conditions.append(f"{value.text} != \"\"")
                return f"{target} = {function}({value.text}){where()}", "value", \
                    f"{target} = COALESCE({target}, \"\")"
            if value.kind == "bool":
                raise Refusal(f"{agg.function}() of a bool")
            return f"{target} = {function}({value.text}){where()}", "value", None
        # VALUES: make_set / make_list
        if len(args) > 1 or value.kind == "bool":
            raise Refusal(f"{agg.function}() {'with a size limit' if len(args) > 1 else 'of a bool'}: "
                          "no ES|QL aggregation rmmc writes for it")
        if agg.function.startswith("make_list"):
            if used_later:
                raise Refusal(f"{agg.name} = {agg.function}(...): ES|QL has no list aggregation (VALUES "
                              "keeps each value once) and a later stage reads it")
            what = "VALUES keeps each value once (duplicates dropped), in no set order"
        else:
            what = "VALUES holds the distinct values in no set order (KQL: in order of first appearance)"
        self.say(shape(TARGET, f"{agg.name} = {agg.function}(...): {what}; an empty one is null, "
                               "KQL's []", stage.span))
        return f"{target} = VALUES({value.text}){where()}", "multi", None
