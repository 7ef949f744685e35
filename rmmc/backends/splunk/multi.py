"""SPL for rules over several sources: union, join, subqueries, and parse.

* **Sources.**  Every search of a rule that reads several tables selects its table's events
  with `category="AdvancedHunting-<Table>"`: the field Defender's streaming API (Event Hubs,
  as Splunk's add-ons ingest it) names an event's table by.  Said once as a warning: which
  field tells the sources apart is the environment's (issue 12: per-target mappings).
* **union** is one search: `(<selector A> <A's terms>) OR (<selector B> <B's terms>)`, then
  one `| where` OR-ing each source's eval tests under its selector (each source's columns
  named through its own table's profile), `withsource=` as `| eval C=case(<selector>, "A",
  ...)`, then the union's stages, each column named alike in every source (else refused).
* **join** is Splunk's `join` with the right side as a subsearch, `max=0` (every matching
  right row, as KQL's inner join): keys are compared as `rmmc_k<i>=coalesce(key, "")` on both
  sides (KQL matches '' with '' and a null key with a null key); the right columns the rest of
  the query reads are carried under their KQL output names (`Timestamp1`, `DeviceName1` ...),
  nothing else, so no left field is overwritten.  `innerunique` first keeps one left event per
  key (`dedup`: Splunk keeps the first result, KQL an arbitrary one); `leftsemi` joins a
  de-duplicated key list (`max=1`); `leftanti` joins it `type=left` and keeps the rows the
  marker did not reach; `leftouter` is `type=left` (missing strings filled with "").  A
  subsearch returns at most 50,000 rows by default (limits.conf `[join] subsearch_maxout`):
  said as a note, as any engine's limits.
* **Subqueries** `x in (T | ...)` (a top-level test of the detection or of a later filter, on
  a string) are the same semi / anti join on `coalesce(x, "")` (lowered on both sides for `in~`).
* **rightsemi / rightanti** keep the right rows that have (no) match, right columns only: the
  leftsemi / leftanti join of the sides swapped (`right_joins_swapped`), the right side then
  the main search.
* **parse** is `rex` on the source text with the pattern's literals escaped, each column a
  lazy named group, the end of the text `\\z`; a column the pattern did not reach is "".

Not said (refused at their place): rightouter / fullouter joins,
mv-expand (Splunk's `mvexpand` works on multivalue fields, not on JSON arrays), `has_any`
against a subquery.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from rmmc.backends.base import note, shape
from rmmc.backends.splunk.expr import SplRefusal, eval_name
from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, Severity

TARGET = "splunk"
SOURCE_FIELD = "category"
SOURCE_PREFIX = "AdvancedHunting-"


def selector(table: str | None) -> tuple[str, str]:
    """(search term, eval test) selecting one table's events."""
    if not table:
        raise SplRefusal("a source with no table cannot be told apart from the others in SPL")
    value = f"{SOURCE_PREFIX}{table}"
    return f'{SOURCE_FIELD}="{value}"', f'{SOURCE_FIELD}=="{value}"'


def placed(placement: Any, table: str | None) -> Any:
    """The placement of the sub-rule reading `table`, when the environment places each source on
    its own (`Target.parts`: its macro, its filter), keeping the others for nested sub-rules."""
    parts = getattr(placement, "parts", ())
    return replace(placement.part(table), parts=parts) if parts else placement


def placed_selector(table: str | None, placement: Any, emitter: Any) -> tuple[str, str | None] | None:
    """(search term, eval test) selecting one source's events where the environment placed each
    source (its search when the sources' differ; its filter, e.g. `EventCode==1`, as the test:
    None when it has none); None without an environment's placement (the streaming API's field)."""
    if not getattr(placement, "parts", ()):
        return None
    part = placement.part(table)
    search = part.search if part.search and part.search != placement.search else ""
    if search:
        from rmmc.backends.splunk.backend import _check_prefix

        search = _check_prefix(search, macros=True)
    return search, (emitter.where(part.filter) if part.filter is not None else None)


def _untold(table: str | None) -> SplRefusal:
    return SplRefusal(f"the environment gives the source of {table} no test of its own (a filter such as "
                      "EventCode), so SPL cannot tell its events from the union's other sources")


def selector_warning() -> Diagnostic:
    return Diagnostic(Severity.WARNING, f"{TARGET}: each source is selected by {SOURCE_FIELD}="
                      f"\"{SOURCE_PREFIX}<Table>\" (the table field of Defender's streaming API); where "
                      "your data tells tables apart otherwise, change it (environments)", None, "source")


def subsearch_note() -> Diagnostic:
    return note(TARGET, "join runs its right side as a subsearch, which Splunk caps at 50,000 rows "
                        "by default (limits.conf [join] subsearch_maxout): raise it for large sides")


# ------------------------------------------------------------------ joins


def right_joins_swapped(rule: ir.Rule) -> ir.Rule:
    """The rule with its first rightsemi / rightanti join written as the leftsemi / leftanti
    join of the swapped sides: its right sub-rule becomes the main search (with the rule's
    title and the stages after the join), the rule up to the join its right side.  Both keep
    the right rows that have (no) match on the same keys, with the right columns only, each
    once (Join: the key equality is symmetric)."""
    for i, stage in enumerate(rule.stages):
        if isinstance(stage, ir.Join) and stage.kind in ir.RIGHT_ONLY_JOINS and not stage.lookup:
            if rule.union is not None or stage.right.union is not None or rule.exclusions \
                    or rule.source.external is not None or stage.right.source.external is not None:
                return rule
            left = replace(rule, stages=rule.stages[:i])
            swapped = ir.Join("leftsemi" if stage.kind == "rightsemi" else "leftanti", left,
                              tuple((r, l) for l, r in stage.keys), stage.right_columns, stage.left_columns,
                              span=stage.span)
            return replace(stage.right, metadata=rule.metadata,
                           stages=(*stage.right.stages, swapped, *rule.stages[i + 1:]))
    return rule



def _later_fields(later: tuple[ir.Stage, ...]) -> dict[str, ir.Field]:
    """The columns the stages after a join read (to carry from its right side)."""
    found: dict[str, ir.Field] = {}
    for stage in later:
        nodes: list[Any] = ir.stage_expressions(stage)
        if isinstance(stage, ir.Rename):
            nodes.extend(ir.Field(old) for _, old in stage.pairs)
        elif isinstance(stage, ir.Join):
            nodes.extend(ir.Field(left) for left, _ in stage.keys)
        elif isinstance(stage, ir.Parse):
            nodes.append(stage.source)
        for node in nodes:
            for f in ir.expr_fields(node):
                found.setdefault(f.name, f)
    return found


def _kind(type_name: str) -> str:
    if type_name in ("string", "guid"):
        return "string"
    if type_name in ("datetime", "timespan"):
        return "time"
    return "number"


def join_commands(stage: ir.Join, later: tuple[ir.Stage, ...], writer: Any) -> list[str]:
    """A Join stage as SPL commands (see the module docstring)."""
    emitter = writer.emitter
    kind = "leftouter" if stage.lookup and stage.kind == "leftouter" else stage.kind
    if kind not in ("inner", "innerunique", "leftouter", "leftsemi", "leftanti"):
        raise SplRefusal(f"a {kind} join keeps rows of the right side, which Splunk's join (the "
                         "main search's rows, matched with a subsearch's) cannot return", stage.span)
    sub_lines, right = emitter.subsearch(stage.right)
    keys = [f"rmmc_k{i + 1}" for i in range(len(stage.keys))]
    left_keys = [f"{k}=coalesce({emitter.column_text(ir.Field(lk))[0]}, \"\")"
                 for k, (lk, _) in zip(keys, stage.keys)]
    right_keys = [f"{k}=coalesce({right.column_text(ir.Field(rk))[0]}, \"\")"
                  for k, (_, rk) in zip(keys, stage.keys)]
    commands = ["eval " + ", ".join(left_keys)]
    key_list = " ".join(keys)
    body = " | ".join(sub_lines) + " | eval " + ", ".join(right_keys)
    if kind in ("leftsemi", "leftanti"):
        body += f" | dedup {key_list}"
        if kind == "leftsemi":
            commands.append(f"join type=inner max=1 {key_list} [{body} | table {key_list}]")
            commands.append(f"fields - {key_list}")
        else:
            commands.append(f"join type=left max=1 {key_list} [{body} | eval rmmc_m=1 | table {key_list} rmmc_m]")
            commands.append("where isnull(rmmc_m)")
            commands.append(f"fields - {key_list} rmmc_m")
        writer.diagnostics.append(subsearch_note())
        return commands
    if kind == "innerunique":
        commands.append(f"dedup {key_list}")
        writer.diagnostics.append(note(TARGET, "innerunique: KQL keeps one arbitrary left row per key; "
                                               "SPL's dedup keeps the first result", stage.span))
    if stage.left_columns is None or stage.right_columns is None:
        raise SplRefusal("the columns of a side of the join are unknown (a table rmmc does not know): "
                         "which right columns to carry cannot be told", stage.span)
    names = ir.join_output_names(stage.left_columns, stage.right_columns, stage.kind,
                                 tuple(r for _, r in stage.keys), stage.lookup)
    wanted = _later_fields(later)
    carried: list[tuple[str, str, str]] = []  # (output name, right eval text, kind)
    taken = {emitter.mapped(c) for c in stage.left_columns} | {n for n, _ in emitter.columns.values()}
    for column, name in zip(stage.right_columns, names):
        if not name or name not in wanted:
            continue
        field = wanted[name]
        value = right.writer.value(ir.Field(column, field.type), stage.span)
        kind_of = _kind(field.type)
        text = f"coalesce({value.text}, \"\")" if kind_of == "string" and value.kind != "string" else value.text
        spl_name = writer.own_name(name)
        if spl_name in taken:
            raise SplRefusal(f"the right column {name} would take the name {spl_name}, which a left "
                             "field has in SPL", stage.span)
        carried.append((spl_name, text, kind_of))
        emitter.columns[name] = (spl_name, kind_of)
    if len(carried) < sum(1 for n in names if n):
        writer.diagnostics.append(shape(TARGET, "the join's right columns that no later stage reads are "
                                                "not carried into the rows", stage.span))
    evals = "".join(f", {n}={t}" for n, t, _ in carried)
    fields = " ".join([*keys, *(n for n, _, _ in carried)])
    join_type = "left" if kind == "leftouter" else "inner"
    commands.append(f"join type={join_type} max=0 {key_list} [{body}{evals} | table {fields}]")
    commands.append(f"fields - {key_list}")
    strings = [n for n, _, k in carried if k == "string"]
    if kind == "leftouter" and strings:
        commands.append('fillnull value="" ' + " ".join(strings))
    writer.diagnostics.append(subsearch_note())
    return commands


def subquery_commands(node: ir.InSubquery, emitter: Any) -> list[str]:
    """A top-level `x in (sub-rule)` test of the detection as a semi (or anti) join."""
    if node.rule is None:
        raise SplRefusal(f"{node.query}: rmmc has no model of this subquery", node.span)
    if node.op is not ir.Op.EQUALS:
        raise SplRefusal("has_any against a subquery has no SPL form (a join matches whole values)", node.span)
    if getattr(node.field, "type", "string") not in ("string", "guid"):
        raise SplRefusal(f"{node.field.name} in (subquery) on a {node.field.type}: a null would match "
                         "what SPL's join reads as empty", node.span)
    from rmmc.compiler.rows import output_column

    column = node.column or output_column(node.rule)
    if column is None:
        raise SplRefusal("the subquery's column is unknown", node.span)
    sub_lines, right = emitter.subsearch(node.rule)
    left = emitter.writer.string(node.field, node.span)
    value = right.writer.string(ir.Field(column), node.span)
    if not node.case_sensitive:
        left, value = f"lower({left})", f"lower({value})"
    body = " | ".join(sub_lines) + f" | eval rmmc_k1={value} | dedup rmmc_k1"
    if not node.negated:
        return [f"eval rmmc_k1={left}", f"join type=inner max=1 rmmc_k1 [{body} | table rmmc_k1]",
                "fields - rmmc_k1"]
    return [f"eval rmmc_k1={left}", f"join type=left max=1 rmmc_k1 [{body} | eval rmmc_m=1 | table rmmc_k1 rmmc_m]",
            "where isnull(rmmc_m)", "fields - rmmc_k1 rmmc_m"]


# ------------------------------------------------------------------ parse


def parse_commands(stage: ir.Parse, writer: Any) -> list[str]:
    from rmmc.backends.splunk.backend import regex_literal, regex_string

    emitter = writer.emitter
    source = emitter.writer.string(stage.source, stage.span)
    temp = writer.temp()
    groups: list[tuple[str, str]] = []
    pattern = []
    for part in stage.pattern:
        if part is None:
            pattern.append(".*?")
        elif isinstance(part, tuple):
            group = f"rmmcp{len(groups) + 1}"
            groups.append((part[0], group))
            pattern.append(f"(?<{group}>.*?)")
        else:
            pattern.append(regex_literal(part))
    regex = regex_string("".join(pattern) + "\\z")
    commands = [f"eval {temp}={source}", f"rex field={temp} {regex}"]
    assignments = []
    for column, group in groups:
        name = writer.out_name(column)
        assignments.append((name, f"coalesce({group}, \"\")"))
        writer.define(column, name, "string")
    commands.extend(writer.set_fields(assignments))
    commands.append("fields - " + " ".join([temp, *(g for _, g in groups)]))
    return commands


# ------------------------------------------------------------------ union


def union_search(rule: ir.Rule, emitter_for: Callable[[ir.Rule], Any],
                 terms_of: Callable[[Any, ir.Rule], tuple[list[str], list[str]]], placement: Any = None) \
        -> tuple[list[str], list[str], list[Any], list[tuple[str, str]]]:
    """A union's search and where parts: (search terms, where terms, branch emitters,
    (label, selector eval) per branch).  Each branch is selected by its environment's placement
    when there is one (its own search and filter), else by the streaming API's table field."""
    from rmmc.compiler.branches import split_union

    parts = split_union(replace(rule, stages=()))
    searches, wheres, emitters, selectors = [], [], [], []
    any_where = False
    per_branch = []
    for label, part in parts:
        branch_columns(part)  # refuses a branch stage SPL cannot say per source
        emitter = emitter_for(part)
        search_terms, where_terms = terms_of(emitter, part)
        sel_search, sel_eval = placed_selector(part.source.table, placement, emitter) or selector(part.source.table)
        per_branch.append((sel_search, search_terms, sel_eval, where_terms))
        any_where = any_where or bool(where_terms)
        emitters.append(emitter)
        selectors.append((label, sel_eval))
    common = len({tuple(w) for _, _, _, w in per_branch}) == 1  # every source tests alike
    for (label, _), (sel_search, search_terms, sel_eval, where_terms) in zip(parts, per_branch):
        searches.append("(" + (" ".join(t for t in [sel_search, *search_terms] if t) or "*") + ")")
        if any_where and not common:
            if sel_eval is None:
                raise _untold(label)
            wheres.append("(" + " AND ".join([sel_eval, *(w for w in where_terms if w != sel_eval)]) + ")")
    if any_where and common:
        wheres.append("(" + " AND ".join(per_branch[0][3]) + ")")
    if all(s == "(*)" for s in searches):
        searches = []
    return searches, wheres, emitters, selectors


def branch_columns(part: ir.Rule) -> Any:
    """`branches.branch_columns`, its refusal said for SPL (one search reads every source)."""
    from rmmc.compiler.branches import NotSplit, branch_columns as columns

    try:
        return columns(part)
    except NotSplit as exc:
        raise SplRefusal(str(exc), exc.span) from None


def branch_column_commands(union: Any, parts: list[ir.Rule], emitters: list[Any],
                           selectors: list[tuple[str, str]], stages: tuple[ir.Stage, ...]) -> list[str]:
    """One `eval c=case(<selector>, <c in that source>, ...)` per column the union's rows hold
    differently per source (a branch's projection, `withsource`, a field another source names
    otherwise), for the columns the union's stages read (all of them when no stage after the
    union fixes its columns); then, when every branch fixed its columns, `table` of them."""
    from rmmc.backends.splunk.backend import _PLAIN_NAME, quote
    from rmmc.compiler.schema import load_schema

    columns = [branch_columns(part) for part in parts]
    read: dict[str, str] = {}
    for stage in stages:
        for name in sorted(ir.stage_reads(stage)):
            read.setdefault(name, "string")
        if isinstance(stage, ir.Project):
            for _, expr in stage.columns:
                for f in ir.expr_fields(expr):
                    read.setdefault(f.name, f.type)
        if isinstance(stage, (ir.Project, ir.Summarize)):
            break
    closes = any(isinstance(s, (ir.Project, ir.Summarize)) for s in stages)
    all_closed = all(c.closed is not None for c in columns)
    stages_read = set(read)
    if not closes:
        for c in columns:
            for name in (c.closed or list(c.defs)):
                read.setdefault(name, "string")
    commands: list[str] = []
    dropped: set[str] = set()
    for name in read:
        if name in union.columns:
            continue
        exprs = []
        for part, c in zip(parts, columns):
            table = load_schema().table(part.source.table or "")
            exprs.append(c.of(name, (table.column_type(name) if table else None) or "string"))
        plain = all(isinstance(e, ir.Field) and e.name == name for e in exprs)
        if plain and len({e.mapped(name) or name for e in emitters}) == 1:
            continue
        types = {e.type for e in exprs if e is not None}
        kind = "string" if types <= {"string", "guid"} else "number" if types <= {"int", "long", "real"} \
            else "time" if types <= {"datetime"} else None
        if kind is None and "dynamic" in types and name not in stages_read:
            # a dynamic value (a path into AdditionalFields ...) only shown: SPL has no column for
            # it, as for one source (stages.extend)
            union.diagnostics.append(shape("splunk", f"the union's column {name} holds a dynamic value in "
                                           "a source, which SPL has no column for: the output leaves it out"))
            dropped.add(name)
            continue
        if kind is None:
            raise SplRefusal(f"the union's column {name} holds values of different types per source "
                             f"({', '.join(sorted(types))})")
        if not _PLAIN_NAME.match(name):
            raise SplRefusal(f"the union's column {name} is no name SPL's eval can set")
        cases = []
        for (label, test), emitter, expr in zip(selectors, emitters, exprs):
            if test is None:
                raise _untold(label)
            if expr is None:
                text = '""' if kind == "string" else "null()"
            elif isinstance(expr, ir.Literal) and isinstance(expr.value, str):
                text = quote(expr.value)
            else:
                value = emitter.writer.value(expr)
                text = f"coalesce({value.text}, \"\")" if kind == "string" and value.kind != "string" else value.text
            cases.append(f"{test}, {text}")
        commands.append(f"eval {name}=case({', '.join(cases)})")
        union.columns[name] = (name, kind)
    if not closes and all_closed:
        shown = list(dict.fromkeys(n for c in columns for n in c.closed if n not in dropped))
        commands.append("table " + " ".join(union.columns[n][0] if n in union.columns else
                                             (emitters[0].mapped(n) or n) for n in shown))
    return commands
