"""The columns a rule's query outputs, and the keys its alerts group by.

Entity mappings and suppression fields must name columns the query really returns: the
source's columns (from the schema of its table) until a stage reshapes them (`project`,
`summarize`, `project-away`, `project-rename`, `extend`, a join's right columns).
"""

from __future__ import annotations

import fnmatch

from rmmc.compiler import ir


def table_columns(table: str | None) -> tuple[str, ...]:
    """The columns of a table: the Defender XDR schema (Sentinel's copy included), else the Log
    Analytics table lists; () when unknown."""
    if not table:
        return ()
    from rmmc.compiler.schema import load_schema

    found = load_schema().table(table)
    if found is not None:
        return tuple(dict.fromkeys((*found.columns, *found.sentinel_columns)))
    try:
        from rmmc.environments.fieldsets import field_set

        return tuple(field_set("log_analytics", table))
    except Exception:  # an unknown table: no columns known
        return ()


def output_columns(rule: ir.Rule, table: str | None = None) -> tuple[str, ...]:
    """The columns the rule outputs, in order, as far as the schema knows them (a column it
    cannot know, like a union of unknown tables, is left out: callers map only what is there)."""
    if rule.union is not None:
        columns: list[str] = []
        for branch in rule.union.branches:
            columns.extend(c for c in output_columns(branch) if c not in columns)
        if rule.union.withsource:
            columns.append(rule.union.withsource)
    else:
        columns = list(table_columns(rule.source.table or table))
    return tuple(_through(rule.stages, columns))


def _through(stages, columns: list[str]) -> list[str]:
    for stage in stages:
        if isinstance(stage, ir.Extend):
            columns = columns + [name for name, _ in stage.columns if name not in columns]
        elif isinstance(stage, ir.Project):
            columns = [name for name, _ in stage.columns]
        elif isinstance(stage, ir.ProjectAway):
            columns = [c for c in columns if not any(fnmatch.fnmatchcase(c, p) for p in stage.patterns)]
        elif isinstance(stage, ir.Rename):
            renamed = {old: new for new, old in stage.pairs}
            columns = [renamed.get(c, c) for c in columns]
        elif isinstance(stage, ir.Summarize):
            before = columns
            columns = list(stage.keys) + [a.name for a in stage.aggregates if a.name]
            if any(a.name is None for a in stage.aggregates):  # arg_max(T, *): the row's columns
                columns = list(dict.fromkeys(columns + _arg_columns(stage, before)))
        elif isinstance(stage, ir.Join):
            right = output_columns(stage.right) if stage.right is not None else ()
            if stage.kind in ir.RIGHT_ONLY_JOINS:
                columns = list(right)
            elif stage.kind not in ir.LEFT_ONLY_JOINS:
                columns = columns + [c for c in right if c not in columns]
        elif isinstance(stage, ir.Parse):
            columns = columns + [c for c in stage.columns if c not in columns]
    return columns


def _arg_columns(stage: ir.Summarize, before: list[str]) -> list[str]:
    """The columns `arg_max` / `arg_min` return: those named, every column for `*`."""
    out: list[str] = []
    for aggregate in stage.aggregates:
        if aggregate.name is None:
            for arg in aggregate.args[1:]:
                if isinstance(arg, ir.Star):
                    out.extend(before)
                elif isinstance(arg, ir.Field):
                    out.append(arg.name)
    return out


def group_keys(rule: ir.Rule) -> tuple[str, ...]:
    """The columns the rule's rows are grouped by: the keys of its last `summarize` (kept by
    the stages after it), else () -- each row is then its own finding."""
    keys: tuple[str, ...] = ()
    for stage in rule.stages:
        if isinstance(stage, ir.Summarize):
            keys = tuple(k for k in stage.keys)
        elif keys and isinstance(stage, ir.Project):
            keys = tuple(k for k in keys if k in {name for name, _ in stage.columns})
        elif keys and isinstance(stage, ir.Rename):
            renamed = {old: new for new, old in stage.pairs}
            keys = tuple(renamed.get(k, k) for k in keys)
        elif keys and isinstance(stage, ir.ProjectAway):
            keys = tuple(k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in stage.patterns))
    return keys


# The host and user columns a rule that returns events is suppressed by (Defender names, then
# Sigma's for a rule read from Sigma), each the first its table has.
ENTITY_COLUMNS = (("DeviceName",), ("AccountName", "InitiatingProcessAccountName"))
SIGMA_ENTITY_COLUMNS = (("Computer",), ("User",))


def entity_fields(rule: ir.Rule, env) -> tuple[str, ...]:
    """The fields that hold the rule's host and user in environment `env`, found by adapting
    a projection of those columns (`rmmc.environments.adapt`, the one place names are made):
    what a rule returning events is suppressed by.  A column the environment lacks, or writes
    from several fields, is left out."""
    from dataclasses import replace

    from rmmc.environments.adapt import adapt

    if rule.union is not None:
        return ()
    table = rule.source.table
    have = set(table_columns(table)) if table else None
    out: list[str] = []
    for choices in (ENTITY_COLUMNS if table else SIGMA_ENTITY_COLUMNS):
        column = next((c for c in choices if have is None or c in have), None)
        if column is None:
            continue
        probe = replace(rule, stages=(ir.Project(((column, ir.Field(column)),)),))
        try:
            adapted = adapt(probe, env)
        except Exception:  # no name is better than a wrong one
            continue
        last = adapted.rule.stages[-1] if adapted.ok and adapted.rule.stages else None
        if not isinstance(last, ir.Project) or not last.columns:  # dropped, or not a column here
            continue
        fields = {f.name for f in ir.expr_fields(last.columns[0][1])}
        if len(fields) == 1 and next(iter(fields)) not in out:
            out.append(next(iter(fields)))
    return tuple(out)
