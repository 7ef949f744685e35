"""A rule's stages as SPL commands, in the rule's order, each with KQL's meaning.

    Extend     | eval a=..., b=...          (temporaries when one reads what another sets:
                                             KQL computes every column from the row before)
    Filter     | where <condition>          (after stats too: a threshold)
    Summarize  | eval <keys, arguments>  | fillnull value="" <keys>  | stats ... by ...
               (stats drops events whose by-field is null, KQL groups them: a null string key
               is '' in KQL, a null number key is put back to null after stats; arg_max /
               arg_min by _time: eventstats + where + dedup)
    Project    | eval ...  | table a b c
    ProjectAway| fields - a, b
    Rename     | rename a AS b
    Reorder    | table in the new order where every column is known, else dropped (shape)
    Sort       | sort 0 <null rank> <key> ...   (the rank puts nulls where KQL does)
    Limit      | head N

Every column a stage makes keeps the event field's name where it replaces one (through the
profile), else its KQL name; temporaries are `rmmc_t<N>` and are removed after use.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Any

from rmmc.backends.base import lossy, note, shape, stage_text
from rmmc.backends.splunk.expr import Spl, SplRefusal, eval_name
from rmmc.backends.widen import widen
from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.functions import INTEGER_TYPES, NUMERIC_TYPES, STRING_TYPES, describe, describe_condition

TARGET = "splunk"
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@-]*\Z")
TIME_TYPES = frozenset({"datetime", "timespan"})

STATS = {
    "count": "count", "countif": "count",
    "dcount": "dc", "dcountif": "dc",
    "sum": "sum", "sumif": "sum",
    "avg": "avg", "avgif": "avg",
    "min": "min", "minif": "min",
    "max": "max", "maxif": "max",
    "make_set": "values", "make_set_if": "values",
    "make_list": "list", "make_list_if": "list",
    "any": "first", "take_any": "first",
}
"""KQL model aggregate -> the stats function that computes it (arguments are prepared by
`StageWriter.aggregate`: strings made never empty where Splunk's handling of an empty value
is not documented, conditions as `if(c, x, null())`)."""


def kind_of(type_name: str, spl: Spl | None = None) -> str:
    """The SPL kind of a column of a KQL type (see `splunk_expr.Spl`)."""
    if spl is not None and spl.kind in ("segment", "multi"):
        return spl.kind
    if type_name in STRING_TYPES:
        return "string"
    if type_name in TIME_TYPES:
        return "time"
    return "number"


@dataclass
class StageWriter:
    """Writes stages through the backend's `Emitter` (conditions, expressions, fields)."""

    emitter: Any
    diagnostics: list[Diagnostic] = field(default_factory=list)
    known: list[str] | None = None  # every column of the row, in order, when a stage fixed them
    renamed: dict[str, str] = field(default_factory=dict)  # columns SPL names otherwise
    _temps: int = 0

    # -- names

    def out_name(self, column: str) -> str:
        """The SPL field a stage writes for a column: the one it has, or the event field it
        replaces through the profile, or its own name."""
        if column in self.emitter.columns:
            return self.emitter.columns[column][0]
        mapped = self.emitter.mapped(column)
        if mapped is not None:
            return mapped
        return self.own_name(column)

    def own_name(self, column: str) -> str:
        """A column's own name in SPL: itself when SPL can write it, else (a space, a dash
        ...) the nearest plain name, which changes only the output's shape (said once)."""
        if _PLAIN.match(column) and not column.startswith("rmmc_t"):
            return column
        name = re.sub(r"[^A-Za-z0-9_]", "_", column)
        if not re.match(r"[A-Za-z]", name):
            name = "c_" + name
        taken = {n for n, _ in self.emitter.columns.values()}
        base, n = name, 1
        while name in taken and self.renamed.get(column) != name:
            name, n = f"{base}_{n}", n + 1
        if column not in self.renamed:
            self.renamed[column] = name
            self.diagnostics.append(shape(TARGET, f"the column {column!r} is named {name} in SPL (a name "
                                                  "SPL cannot write as it is)"))
        return self.renamed[column]

    def temp(self) -> str:
        self._temps += 1
        return f"rmmc_t{self._temps}"

    def set_fields(self, assignments: list[tuple[str, str]]) -> list[str]:
        """Commands setting each field to its eval expression, each read before any is set
        only when none reads another: one `eval` when every name is plain, else through
        temporaries renamed onto the fields (eval cannot name a dotted field on its left)."""
        if not assignments:
            return []
        if all(_PLAIN.match(name) for name, _ in assignments):
            return ["eval " + ", ".join(f"{name}={text}" for name, text in assignments)]
        temps = [self.temp() for _ in assignments]
        return ["eval " + ", ".join(f"{t}={text}" for t, (_, text) in zip(temps, assignments)),
                "rename " + ", ".join(f"{t} as {name}" for t, (name, _) in zip(temps, assignments))]

    def define(self, column: str, name: str, kind: str) -> None:
        self.emitter.columns[column] = (name, kind)

    # -- stages

    def write(self, stages: tuple[ir.Stage, ...]) -> list[str]:
        stages = split_expansions(stages)
        commands: list[str] = []
        for index, stage in enumerate(stages):
            later = stages[index + 1:]
            # the columns known to hold every distinct value a make_set collected: a stage that
            # may make a column anew forgets them once it has read them (a summarize before)
            keeps = isinstance(stage, (ir.Filter, ir.Sort, ir.Limit, ir.ProjectAway, ir.Reorder))
            if isinstance(stage, ir.Summarize):
                self.emitter.sets.clear()
            try:
                commands.extend(self.stage(stage, later))
                if not keeps and not isinstance(stage, ir.Summarize):
                    self.emitter.sets.clear()
            except SplRefusal as refusal:
                if refusal.span is None:
                    refusal.span = getattr(stage, "span", None)
                raise
        return commands

    def stage(self, stage: ir.Stage, later: tuple[ir.Stage, ...]) -> list[str]:
        if isinstance(stage, ir.Filter):
            return self.filter(stage, later)
        if isinstance(stage, ir.Extend):
            return self.extend(stage.columns)
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
                raise SplRefusal(f"limit {stage.count!r} is not a row count")
            return [f"head {stage.count}"] if stage.count > 0 else ["where false()"]
        if isinstance(stage, ir.Join):
            from rmmc.backends.splunk.multi import join_commands

            self.known = None
            if stage.right.source.external is not None:  # a feed: its lookup, in this search
                from rmmc.backends.splunk.lookups import feed_join_commands

                return feed_join_commands(stage, later, self)
            return join_commands(stage, later, self)
        if isinstance(stage, ir.Parse):
            from rmmc.backends.splunk.multi import parse_commands

            return parse_commands(stage, self)
        if isinstance(stage, ir.MvExpand):
            return self.mv_expand(stage)
        raise SplRefusal(f"no SPL form for the stage {type(stage).__name__}")

    def filter(self, stage: ir.Filter, later: tuple[ir.Stage, ...]) -> list[str]:
        """`| where`.  A test SPL cannot say is dropped (lossy: more rows) only when every
        later stage keeps one row per row (no aggregation, no take); else refused."""
        condition, pulled = self.semi_joins(stage.condition)
        if not any(isinstance(s, (ir.Summarize, ir.Limit)) for s in later):
            condition, replaced = widen(condition, lambda n: not self.emitter.expressible(n))
            for node in replaced:
                self.diagnostics.append(lossy(TARGET, f"'{describe_condition(node)}' cannot be said exactly in "
                                                      "SPL: dropped from the filter, so more rows are returned "
                                                      "(never fewer)", getattr(node, "span", None) or stage.span,
                                              subject=node))
        commands = [] if condition == ir.Const(True) else ["where " + self.emitter.condition_text(condition)]
        if pulled:
            from rmmc.backends.splunk.multi import subquery_commands, subsearch_note

            for node in pulled:
                commands.extend(subquery_commands(node, self.emitter))
            self.diagnostics.append(subsearch_note())
        return commands

    def semi_joins(self, condition: ir.Condition) -> tuple[ir.Condition, list[ir.InSubquery]]:
        """A filter's top-level `x in (T | ...)` / `x !in (...)` tests of another table (a
        conjunct: the rows that pass it are the rows a semi or anti join keeps), pulled out to
        be written as the detection writes them (`multi.subquery_commands`), and the rest."""
        from rmmc.backends.splunk.backend import _nnf

        normal = _nnf(condition)
        conjuncts = list(normal.operands) if isinstance(normal, ir.And) else [normal]
        pulled = [c for c in conjuncts if isinstance(c, ir.InSubquery) and c.rule is not None
                  and c.rule.source.external is None and c.op is ir.Op.EQUALS
                  and getattr(c.field, "type", None) in STRING_TYPES]
        if not pulled:
            return condition, []
        return ir.all_of([c for c in conjuncts if not any(c is p for p in pulled)]), pulled

    # -- computed columns

    def assign(self, columns: tuple[tuple[str, ir.Expr], ...]) -> tuple[list[str], list[str]]:
        """Commands setting every column from the row as it was before them (KQL's extend and
        project), and the SPL names set.  One `eval` when no expression reads a column an
        earlier assignment of the same eval sets; else through temporaries."""
        columns = tuple((n, e) for n, e in columns
                        if not (isinstance(e, ir.Field) and e.name == n))  # `x = x` changes nothing
        values = [(name, self.emitter.writer.value(expr, None), expr) for name, expr in columns]
        targets = [self.out_name(name) for name, _, _ in values]
        for (name, value, expr), target in zip(values, targets):
            if value.kind == "multi" and isinstance(expr, ir.Field):
                raise SplRefusal(f"{name} = {describe(expr)}: a copy of collected values")
        set_so_far: set[str] = set()
        clash = False
        for (name, _, expr), target in zip(values, targets):
            if {f.name for f in ir.expr_fields(expr)} & set_so_far:
                clash = True
            set_so_far.add(name)
        commands: list[str] = []
        if clash or not all(_PLAIN.match(t) for t in targets):
            # every value into a temporary first, then each renamed onto its column (rename
            # replaces a field of that name; a null temporary leaves none, as eval would)
            temps = [self.temp() for _ in values]
            commands.append("eval " + ", ".join(f"{t}={v.text}" for t, (_, v, _) in zip(temps, values)))
            commands.append("rename " + ", ".join(f"{tmp} as {t}" for t, tmp in zip(targets, temps)))
        else:
            parts = [f"{t}={v.text}" for t, (_, v, _) in zip(targets, values) if v.text != t]
            if parts:
                commands.append("eval " + ", ".join(parts))
        for (name, value, expr), target in zip(values, targets):
            self.define(name, target, kind_of(expr.type, value))
        return commands, targets

    def extend(self, columns: tuple[tuple[str, ir.Expr], ...]) -> list[str]:
        from rmmc.compiler.paths import dynamic_alias

        kept = []
        for name, expr in columns:  # `AF = parse_json(AdditionalFields)`: its paths name fields
            if dynamic_alias(expr, self.emitter.aliases) is not None:
                self.emitter.aliases[name] = dynamic_alias(expr, self.emitter.aliases)
                self.emitter.columns.pop(name, None)
                self.diagnostics.append(shape(TARGET, f"{name} holds a dynamic value, which SPL has no "
                                                      "column for: its paths are read as the event's "
                                                      "fields, the column itself is not in the rows"))
            else:
                kept.append((name, expr))
        columns = tuple(kept)
        if not columns:
            return []
        commands, _ = self.assign(columns)
        if self.known is not None:
            for name, _ in columns:
                if name in self.known:
                    self.known.remove(name)
                self.known.append(name)
        return commands

    def mv_expand(self, stage: ir.MvExpand) -> list[str]:
        """`mv-expand X = split(s, 'd')`: one row per segment, never none (KQL's split gives at
        least ['']), so neither Splunk's undocumented split() nor mvexpand's dropping of an
        event without the field is ever met: `mvrange(0, n)` over the count of segments,
        `mvexpand` of that index, then segment i by the regex that picks it (the index spliced
        into its repeat count).  A with_itemindex column is the index itself."""
        from rmmc.backends.splunk.backend import WHY_NOT
        from rmmc.backends.splunk.expr import regex_literal, regex_string

        if len(stage.columns) != 1:
            raise SplRefusal("mv-expand of several arrays: " + WHY_NOT["mv-expand"], stage.span)
        name, expr, to_type = stage.columns[0]
        if not (isinstance(expr, ir.Call) and expr.function == "split" and len(expr.args) == 2
                and isinstance(expr.args[1], ir.Literal) and isinstance(expr.args[1].value, str)) \
                or to_type not in (None, "dynamic", "string"):
            raise SplRefusal(f"mv-expand of {describe(expr)}"
                             f"{f' to typeof({to_type})' if to_type not in (None, 'dynamic') else ''}: "
                             "rmmc writes it for split(s, 'delimiter') only: " + WHY_NOT["mv-expand"], stage.span)
        writer = self.emitter.writer
        text = writer.string(expr.args[0], stage.span)
        delimiter = expr.args[1].value
        if stage.limit is not None and stage.limit <= 0:
            return ["where false()"]
        index = self.temp()
        commands: list[str] = []
        if delimiter == "":  # KQL: split(s, '') is [s]
            element = text
            commands.append(f"eval {index}=0")  # its position
        else:
            count = writer.number(ir.Call("array_length", (expr,), "long"), stage.span).text
            if stage.limit is not None:
                count = f"if({count}<{stage.limit}, {count}, {stage.limit})"
            d = regex_literal(delimiter)  # segment i: i delimiters skipped lazily, then up to the next
            head = regex_string("^(?:[\\s\\S]*?" + d + "){")
            tail = regex_string("}([\\s\\S]*?)(?:" + d + "[\\s\\S]*)?\\z")
            commands += [f"eval {index}=mvrange(0, {count})", f"mvexpand {index}"]
            element = f"replace({text}, {head}.tostring({index}).{tail}, \"\\\\1\")"
        target = self.out_name(name)
        commands.append(f"eval {target}={element}")
        self.define(name, target, "string" if to_type == "string" else "segment")
        if stage.index:
            index_name = self.out_name(stage.index)
            commands.append(f"rename {index} as {index_name}")
            self.define(stage.index, index_name, "number")
        else:
            commands.append(f"fields - {index}")
        if self.known is not None:
            for column in (name, stage.index):
                if column:
                    if column in self.known:
                        self.known.remove(column)
                    self.known.append(column)
        self.diagnostics.append(note(TARGET, "mvexpand keeps at most max_mem_usage_mb (limits.conf [mvexpand], "
                                             "500 MB by default) of expanded results per chunk, truncating "
                                             "past it with a warning: raise it for long arrays", stage.span))
        return commands

    def project(self, stage: ir.Project) -> list[str]:
        commands, _ = self.assign(stage.columns)
        names = [name for name, _ in stage.columns]
        shown = [self.spl_of(name) for name in names]
        self.emitter.columns = {n: self.emitter.columns[n] for n in names if n in self.emitter.columns}
        self.known = names
        commands.append("table " + " ".join(shown))
        return commands

    def project_away(self, stage: ir.ProjectAway) -> list[str]:
        names: list[str] = []
        for pattern in stage.patterns:
            if "*" in pattern:
                candidates = self.known if self.known is not None else None
                if candidates is None:
                    raise SplRefusal(f"project-away {pattern}: which event fields the pattern names "
                                     "in Splunk is not known (field names differ)")
                names.extend(c for c in candidates if fnmatch.fnmatchcase(c, pattern))
            else:
                names.append(pattern)
        names = list(dict.fromkeys(names))
        spl = [self.emitter.columns[n][0] if n in self.emitter.columns else (self.emitter.mapped(n) or n)
               for n in names]
        if any(not _FIELD.match(n) for n in spl):
            raise SplRefusal(f"project-away of {names}: a name SPL cannot write safely")
        for n in names:
            self.emitter.columns.pop(n, None)
            if self.known is not None and n in self.known:
                self.known.remove(n)
        return ["fields - " + ", ".join(spl)] if spl else []

    def rename(self, stage: ir.Rename) -> list[str]:
        pairs = []
        for new, old in stage.pairs:
            source = self.emitter.columns.get(old)
            old_name = source[0] if source else self.emitter.field(old)
            kind = source[1] if source else ("eventtime" if old_name == "_time" else None)
            pairs.append((new, old, old_name, kind))
        olds = {old for _, old, _, _ in pairs}
        if any(new in olds and new != old for new, old, _, _ in pairs):
            raise SplRefusal("project-rename that swaps or chains names (Splunk renames one after another)")
        commands = []
        renames = []
        for new, old, old_name, kind in pairs:
            self.emitter.columns.pop(old, None)
            target = self.out_name(new) if new not in self.emitter.columns else self.emitter.columns[new][0]
            if target != old_name:
                renames.append(f"{old_name} as {target}")
            self.define(new, target, kind or "event")
            if self.known is not None:
                self.known = [new if c == old else c for c in self.known]
        if renames:
            commands.append("rename " + ", ".join(renames))
        return commands

    def reorder(self, stage: ir.Reorder) -> list[str]:
        if self.known is None:
            self.diagnostics.append(shape(TARGET, f"'| {stage_text(stage)}' is dropped: Splunk's events "
                                                  "have no column order to change", stage.span))
            return []
        first = [c for p in stage.patterns for c in self.known if fnmatch.fnmatchcase(c, p)]
        first = list(dict.fromkeys(first))
        self.known = first + [c for c in self.known if c not in first]
        return ["table " + " ".join(self.spl_of(c) for c in self.known)]

    def spl_of(self, column: str) -> str:
        if column in self.emitter.columns:
            return self.emitter.columns[column][0]
        return self.emitter.field(column)

    # -- order

    def sort(self, stage: ir.Sort) -> list[str]:
        """`sort 0` (every row) by, for each key, a null rank then the value: KQL puts nulls
        (and, for strings, '') first ascending and last descending unless the key says
        otherwise; Splunk puts a missing field last either way, so the rank decides it."""
        evals, keys, temps = [], [], []
        for key in stage.keys:
            value = self.emitter.writer.value(key.expr, stage.span)
            if value.kind not in ("string", "number"):
                raise SplRefusal(f"sort by {describe(key.expr)}: no order of it in SPL")
            if isinstance(key.expr, ir.Field):
                name, _ = self.emitter.column_text(key.expr)
                field_name = name.strip("'")
            else:
                field_name = self.temp()
                temps.append(field_name)
                evals.append(f"{field_name}={value.text}")
            if value.kind == "string":
                rank = self.temp()
                evals.append(f"{rank}=if(len({value.text})==0, 0, 1)")
                nulls_first = not key.descending  # '' is the smallest text
                order = "str"
            else:
                rank = self.temp() if value.nullable else None
                if rank:
                    evals.append(f"{rank}=if(isnull({value.text}), 0, 1)")
                nulls_first = key.nulls_first if key.nulls_first is not None else not key.descending
                order = "num"
            if rank:
                temps.append(rank)
                keys.append(("+" if nulls_first else "-") + f"num({rank})")
            keys.append(("-" if key.descending else "+") + f"{order}({field_name})")
        commands = ["eval " + ", ".join(evals)] if evals else []
        commands.append("sort 0 " + ", ".join(keys))
        if temps:
            commands.append("fields - " + ", ".join(temps))
        return commands

    # -- aggregation

    def summarize(self, stage: ir.Summarize, later: tuple[ir.Stage, ...]) -> list[str]:
        if not stage.group_by and not stage.aggregates:
            raise SplRefusal("a distinct of no columns")
        read_later = set().union(*(ir.stage_reads(s) for s in later)) if later else set()
        extremes = [a for a in stage.aggregates if a.function in ("arg_max", "arg_min")]
        if extremes:
            return self.arg_extreme(stage, extremes, read_later)
        evals: list[str] = []
        keys: list[tuple[str, str, str, str]] = []  # (column, spl by-field, final name, kind)
        nullable: set[str] = set()
        for name, expr in stage.group_by:
            value = self.emitter.writer.value(expr, stage.span)
            if value.kind == "segment" and expr.type in STRING_TYPES and not isinstance(expr, ir.Field):
                value = Spl(f"coalesce({value.text}, \"\")", False, "string")  # tostring(path): '' where absent
            if value.kind in ("multi", "segment") and not isinstance(expr, ir.Field):
                raise SplRefusal(f"summarize by {describe(expr)}: no SPL value to group by")
            kind = kind_of(expr.type, value)
            if isinstance(expr, ir.Field) and expr.name == name and kind == "string" \
                    and not self.emitter.columns.get(name, ("", ""))[1] == "multi":
                by = self.emitter.column_text(expr)[0].strip("'")
                keys.append((name, by, by, kind))
                continue
            temp = self.temp()
            evals.append(f"{temp}={value.text}")
            keys.append((name, temp, self.key_name(name), kind))
            if value.nullable:
                nullable.add(name)
        parts: list[str] = []
        after: list[tuple[str, str]] = []
        outputs: list[tuple[str, str, str]] = []
        for agg in stage.aggregates:
            part, out_kind = self.aggregate(agg, evals, after, read_later, stage, later)
            parts.append(part)
            outputs.append((agg.name, self.key_name(agg.name), out_kind))
        commands = []
        if evals:
            commands.append("eval " + ", ".join(evals))
        by_fields = [by for _, by, _, _ in keys]
        filled = [by for column, by, _, kind in keys if kind == "string" or column in nullable]
        if filled:
            commands.append('fillnull value="" ' + " ".join(filled))
        by = (" by " + " ".join(by_fields)) if by_fields else ""
        if parts:
            commands.append("stats " + " ".join(parts) + by)
        else:  # distinct: the groups only
            if "count" in by_fields:
                raise SplRefusal("distinct of a column named count")
            commands.extend(["stats count" + by, "fields - count"])
        renames = [f"{by_field} as {final}" for _, by_field, final, _ in keys if by_field != final]
        if renames:
            commands.append("rename " + ", ".join(renames))
        restore = [(final, f"if(tostring({eval_name(final)})==\"\", null(), {eval_name(final)})")
                   for column, _, final, kind in keys if kind != "string" and column in nullable]
        commands.extend(self.set_fields(restore + after))
        self.emitter.columns = {}
        for column, _, final, kind in keys:
            self.define(column, final, kind)
        for column, final, kind in outputs:
            self.define(column, final, kind)
        self.known = [c for c, _, _, _ in keys] + [c for c, _, _ in outputs]
        return commands

    def key_name(self, column: str) -> str:
        """The name an aggregation's output column gets: the event field's through the profile
        (a key that is a field keeps its name), else its own."""
        mapped = self.emitter.mapped(column)
        if mapped is not None and _FIELD.match(mapped):
            return mapped
        return self.own_name(column)

    def aggregate(self, agg: ir.Aggregate, evals: list[str], after: list[tuple[str, str]], read_later: set[str],
                  stage: ir.Summarize, later: tuple[ir.Stage, ...] | None = None) -> tuple[str, str]:
        """`function(argument) AS name` for stats (the argument prepared in `evals`, fixes
        after stats in `after`) and the kind of the result."""
        function = STATS.get(agg.function)
        if function is None or agg.name is None:
            raise SplRefusal(f"the aggregate {agg.function}() has no stats function with KQL's meaning")
        name = self.key_name(agg.name)
        args = list(agg.args)
        condition = None
        if agg.function.endswith("if"):
            condition = self.emitter.writer.condition(args.pop(), stage.span)
        if agg.function in ("count", "countif"):
            if condition is None:
                return f"count as {name}", "count"
            temp = self.temp()
            evals.append(f"{temp}=if({condition}, 1, null())")
            return f"count({temp}) as {name}", "count"
        if not args:
            raise SplRefusal(f"{agg.function}() without an argument")
        arg = args[0]
        value = self.emitter.writer.value(arg, stage.span)
        if value.kind in ("multi", "segment"):
            raise SplRefusal(f"{agg.function}({describe(arg)}): no stats function over it with KQL's meaning")
        string = arg.type in STRING_TYPES
        used_later = agg.name in read_later
        if used_later and function in ("values", "list") and later is not None:
            members, other = membership_reads(agg.name, later)
            if members and (function != "values" or not string or len(args) > 1):
                raise SplRefusal(f"set_has_element() of {agg.name} = {agg.function}(...): SPL tests it only on "
                                 "every distinct text a make_set() of strings with no limit collects")
            used_later = other
        if function == "dc":
            # a string: '' is a value in KQL; Splunk's handling of an empty value is not
            # documented, so every value is counted with a prefix that makes it non-empty
            text = f"(\"_\".{value.text})" if string else value.text
            return f"dc({self.argument(arg, text, condition, evals)}) as {name}", "count"
        if function in ("sum", "avg"):
            if arg.type not in NUMERIC_TYPES:
                raise SplRefusal(f"{agg.function}() of a {arg.type}")
            return f"{function}({self.argument(arg, value.text, condition, evals)}) as {name}", "number"
        if function in ("min", "max"):
            if string:
                # KQL skips '' and orders text by code point; Splunk orders numeric-looking
                # text as numbers, so every value gets a prefix that is no digit
                temp = self.temp()
                test = f"{value.text}==\"\""
                if condition is not None:
                    test = f"NOT ({condition}) OR {test}"
                evals.append(f"{temp}=if({test}, null(), \"_\".{value.text})")
                after.append((name, f"if(isnull({eval_name(name)}), \"\", substr({eval_name(name)}, 2))"))
                return f"{function}({temp}) as {name}", "string"
            if arg.type not in NUMERIC_TYPES and arg.type not in TIME_TYPES:
                raise SplRefusal(f"{agg.function}() of a {arg.type}")
            if arg.type in TIME_TYPES:
                self.diagnostics.append(note(TARGET, f"{agg.name} holds a time as epoch seconds (KQL: a "
                                                     f"{arg.type})", stage.span))
            kind = "time" if arg.type in TIME_TYPES else "number"
            return f"{function}({self.argument(arg, value.text, condition, evals)}) as {name}", kind
        if function == "first":
            return f"first({self.argument(arg, self.raw(arg, value), condition, evals)}) as {name}", \
                kind_of(arg.type)
        # values / list: collected values
        if value.kind not in ("string", "number"):
            raise SplRefusal(f"{agg.function}() of {describe(arg)}")
        if function == "values" and len(args) == 1 and (string or arg.type in INTEGER_TYPES):
            self.emitter.sets[agg.name] = "string" if string else "integer"  # every distinct value
        collected = self.argument(arg, self.raw(arg, value), condition, evals)
        what = "values() keeps every distinct value, sorted as text" if function == "values" else \
            "list() keeps at most 100 values"
        if used_later and (string or function == "list"):
            self.diagnostics.append(lossy(TARGET, f"{agg.name} = {agg.function}(...) as {function}(): {what} "
                                          "and leaves out missing ones, and a later stage reads it, so "
                                          "rows it decides may differ", stage.span, subject=stage))
        else:
            self.diagnostics.append(shape(TARGET, f"{agg.name} = {agg.function}(...) as {function}(): "
                                          f"{what} (the values shown may differ in order or number)",
                                          stage.span))
        return f"{function}({collected}) as {name}", "multi"

    def raw(self, arg: Any, value: Spl) -> str:
        """A column itself where null may be left out (values, list, first), else the value."""
        if isinstance(arg, ir.Field) and value.text.startswith("coalesce("):
            return self.emitter.column_text(arg)[0]
        return value.text

    def argument(self, arg: Any, text: str, condition: str | None, evals: list[str]) -> str:
        """The field stats reads: the column itself, or a temporary holding the value (null
        where the aggregate's condition is false)."""
        if condition is None and isinstance(arg, ir.Field) and (text == self.emitter.column_text(arg)[0]):
            return text.strip("'") if _FIELD.match(text.strip("'")) else text
        temp = self.temp()
        evals.append(f"{temp}=if({condition}, {text}, null())" if condition is not None else f"{temp}={text}")
        return temp

    def arg_extreme(self, stage: ir.Summarize, extremes: list[ir.Aggregate], read_later: set[str]) -> list[str]:
        """`arg_max(Timestamp, ...) by keys`: each group's row with the latest time (the first of
        them on a tie), as `eventstats max(_time)` + `where` + `dedup` (which keeps the first).
        Only by the event time (never null in Splunk); a key that is no plain column (`bin(Timestamp,
        1h)`) is computed first.  The columns are named as Kusto names them (extremes.py): one
        whose name is taken (`Timestamp1`, the latest time, beside the key `Timestamp`) is copied
        to that name before the keys are set."""
        from rmmc.compiler.extremes import extreme_columns

        if len(extremes) > 1:
            raise SplRefusal("several arg_max / arg_min in one summarize")
        if not stage.group_by:
            raise SplRefusal(f"{extremes[0].function}() without keys: KQL returns one row even over no "
                             "events, eventstats none")
        agg = extremes[0]
        by = agg.args[0]
        if not isinstance(by, ir.Field) or self.emitter.column_text(by)[1] != "eventtime":
            raise SplRefusal(f"{agg.function}({describe(by)}, ...): rmmc writes it by the event time only "
                             "(a group whose value is null everywhere has no row in Splunk)")
        time_name = self.emitter.column_text(by)[0]
        evals: list[str] = []
        keys = []  # (column, spl by-field, kind, final field)
        for name, expr in stage.group_by:
            if isinstance(expr, ir.Field) and expr.name == name:
                field_name = self.emitter.column_text(expr)[0].strip("'")
                keys.append((name, field_name, kind_of(expr.type), field_name))
                continue
            value = self.emitter.writer.value(expr, stage.span)
            if value.kind in ("multi", "segment"):
                raise SplRefusal(f"{agg.function}() by {describe(expr)}: no SPL value to group by")
            temp = self.temp()
            evals.append(f"{temp}={value.text}")
            final = self.key_name(name)
            if not _PLAIN.match(final):
                raise SplRefusal(f"{agg.function}() by {describe(expr)}: its column {name} is no name "
                                 "SPL's eval can set")
            keys.append((name, temp, kind_of(expr.type, value), final))
        after: list[tuple[str, str]] = []
        parts, outputs = [], []
        taken = [k for k, _, _, _ in keys]  # the result's columns before arg_max's
        for other in stage.aggregates:
            if other is agg:
                continue
            part, kind = self.aggregate(other, evals, after, read_later, stage)
            parts.append(part)
            outputs.append((other.name, self.key_name(other.name), kind))
            if stage.aggregates.index(other) < stage.aggregates.index(agg):
                taken.append(other.name)
        best = self.temp()
        parts.append(f"{'max' if agg.function == 'arg_max' else 'min'}({time_name}) as {best}")
        star = any(isinstance(a, ir.Star) for a in agg.args[1:])
        pairs = extreme_columns(agg, stage.group_by, taken, self.star_columns() if star else ())
        made = {out for out, _ in pairs}
        unsure = [n for n in sorted(read_later - made) if any(re.fullmatch(re.escape(t) + "[0-9]+", n)
                                                               for t in taken + [by.name])]
        if star and unsure:  # `*` may hold a column Kusto renames that rmmc does not see here
            raise SplRefusal(f"arg_max(..., *): whether {unsure[0]} is a column Kusto renames (its name "
                             "taken) is unknown over these rows' columns")
        # a column under another name: each event's value copied first (eventstats may write an
        # aggregate, and the keys are set, on the field it is read from)
        copies, renamed = [], {}
        for out, source in pairs:
            if out != source:
                text, kind = self.emitter.column_text(ir.Field(source, by.type if source == by.name else "string"))
                target = self.own_name(out)
                copies.append((target, text))
                renamed[out] = (target, "time" if kind == "eventtime" else kind)
        by_fields = [k for _, k, _, _ in keys]
        commands = []
        if evals:
            commands.append("eval " + ", ".join(evals))
        commands.extend(self.set_fields(copies))  # before fillnull: a key's null is copied as null
        commands.append('fillnull value="" ' + " ".join(by_fields))
        commands.append("eventstats " + " ".join(parts) + " by " + " ".join(by_fields))
        commands.append(f"where {time_name}=={best}")
        commands.append("dedup " + " ".join(by_fields))
        restore = [(k, f"if(tostring({eval_name(k)})==\"\", null(), {eval_name(k)})")
                   for _, k, kind, _ in keys if kind != "string"]
        commands.extend(self.set_fields(restore + after))
        moved = [(final, eval_name(field_name)) for _, field_name, _, final in keys if final != field_name]
        commands.extend(self.set_fields(moved))
        temps = [best] + [e.split("=", 1)[0] for e in evals]
        commands.append("fields - " + ", ".join(temps))
        before = dict(self.emitter.columns)
        if star:
            kept = before
        else:
            kept = {}
            for out, source in pairs:
                if out not in renamed and source in before:
                    kept[out] = before[source]
        kept.update(renamed)
        self.emitter.columns = kept
        for column, _, kind, final in keys:
            self.define(column, final, kind)
        for column, final, kind in outputs:
            self.define(column, final, kind)
        if not star:
            names = [k for k, _, _, _ in keys] + [out for out, _ in pairs] + [c for c, _, _ in outputs]
            commands.append("table " + " ".join(self.spl_of(n) for n in dict.fromkeys(names)))
            self.known = list(dict.fromkeys(names))
        return commands

    def star_columns(self) -> list[str]:
        """The row's columns (what `*` stands for), as far as rmmc knows them: the columns a
        stage fixed, else the table's (rmmc's schema) and those the stages made.  A column `*`
        renames beyond them is missing from the output only; a later stage reading such a name
        is refused (`arg_extreme`)."""
        if self.known is not None:
            return list(self.known)
        table = None
        if self.emitter.table:
            from rmmc.compiler.schema import load_schema

            table = load_schema().table(self.emitter.table)
        return list(dict.fromkeys([*(table.columns if table is not None else ()), *self.emitter.columns]))


def membership_reads(name: str, later: tuple[ir.Stage, ...]) -> tuple[bool, bool]:
    """How later stages read the column `name` until one makes it anew: (as the set of a
    `set_has_element(name, 'text')`, in any other way).  Which values a `values()` shows or in
    what order never changes whether a non-empty text is among them."""
    members = other = False

    def visit(node: Any) -> None:
        nonlocal members, other
        if isinstance(node, ir.Call) and node.function == "set_has_element" and len(node.args) == 2 \
                and isinstance(node.args[0], ir.Field) and node.args[0].name == name:
            needle = node.args[1]
            if isinstance(needle, ir.Literal) and isinstance(needle.value, str) and needle.value:
                members = True
                return
        if isinstance(node, ir.Field):
            other = other or node.name == name
        elif isinstance(node, ir.Predicate):
            visit(node.field)
        elif isinstance(node, (ir.And, ir.Or)):
            for operand in node.operands:
                visit(operand)
        elif isinstance(node, ir.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, ir.Boolean):
            visit(node.condition)
        elif isinstance(node, ir.Not):
            visit(node.operand)
        elif isinstance(node, ir.Compare):
            visit(node.left)
            visit(node.right)
        elif isinstance(node, ir.InSubquery):
            visit(node.field)

    for stage in later:
        made: set[str] = set()
        if isinstance(stage, ir.Rename):
            other = other or any(old == name for _, old in stage.pairs)
            made = {new for new, _ in stage.pairs}
        elif isinstance(stage, (ir.Extend, ir.Project)):
            for column, expr in stage.columns:
                if not (isinstance(expr, ir.Field) and expr.name == column):
                    visit(expr)
                    made.add(column)
        else:
            for expr in ir.stage_expressions(stage):
                visit(expr)
        if name in made or isinstance(stage, ir.Summarize):
            break
    return members, other


def split_expansions(stages: tuple[ir.Stage, ...]) -> tuple[ir.Stage, ...]:
    """`extend X = split(s, 'd') | mv-expand X` as `mv-expand X = split(s, 'd')`: the array is
    never a column of its own (SPL holds none), only its elements.  Only where the extend sets
    none of s's columns and the mv-expand comes next."""
    out = list(stages)
    for i in range(len(out) - 1):
        extend, expand = out[i], out[i + 1]
        if not (isinstance(extend, ir.Extend) and isinstance(expand, ir.MvExpand) and len(expand.columns) == 1):
            continue
        name, expr, to_type = expand.columns[0]
        if not (isinstance(expr, ir.Field) and expr.name == name):
            continue
        values = dict(extend.columns)
        made = values.get(name)
        if not (isinstance(made, ir.Call) and made.function == "split" and len(made.args) == 2) \
                or {f.name for f in ir.expr_fields(made)} & set(values):
            continue
        rest = tuple((n, e) for n, e in extend.columns if n != name)
        out[i] = ir.Extend(rest, span=extend.span) if rest else ir.Filter(ir.Const(True), span=extend.span)
        out[i + 1] = replace(expand, columns=((name, made, to_type),))
    return tuple(out)
