"""External tables (KQL `externaldata`) in SPL: each URI's rows as a CSV lookup file.

An environment that declares `external: lookup` holds each URI's rows, as Kusto parses them,
in a lookup file named from the URI (`lookup_file`; `rmmc lookups fetch` writes it), the header
row the declared column names.  A subquery against a feed is a correlation in the main search,
never a subsearch (a subsearch is cut at 10,000 / 50,000 rows and 60 s, silently dropping
matches of a large feed, and its results would become case-insensitive search terms):

    search <the events>
    | eval rmmc_e=1, rmmc_k="=" . <x>                 the events, marked, keyed by x
    | inputlookup append=true rmmc_ext_<slug>_<hash>.csv    the feed's rows after them
    | where isnotnull(rmmc_e) OR (<the feed's filters>)     on the feed's rows only
    | eval rmmc_k=if(isnull(rmmc_e), "=" . <column>, rmmc_k), rmmc_l=if(isnull(rmmc_e), 1, null())
    | eventstats max(rmmc_l) as rmmc_h by rmmc_k       does a feed row share the event's key?
    | where isnotnull(rmmc_e) AND isnotnull(rmmc_h)    (`!in`: isnull(rmmc_h))
    | fields - rmmc_e rmmc_k rmmc_l rmmc_h

`stats` groups by exact (case-sensitive) values, as KQL's `in` / `==` compare; `in~` lowers
both sides.  The key is prefixed with `=` so it is never empty (KQL's '' is a value: an empty
feed value matches an event whose x is empty).  A lookup cell that is empty reads as null in
Splunk, so each string column is read as `coalesce(c, "")`, KQL's ''.  The feed's own stages
are kept where they decide which values the feed gives: its filters (guarded to its rows),
extends, projections, renames, `distinct`, a sort (no effect on membership); anything else on
the feed (an aggregate, a take, a join) and a column of another type than string (the lookup
holds its text, which SPL would compare as text) are refused at their place.  `has_any` against
a feed (a term search for every value) has no SPL form here and is refused.

Each lookup a translation reads is said in a note naming the file and the URI whose rows it
must hold: the meaning is kept provided the lookup holds them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Any

from rmmc.backends.base import note
from rmmc.backends.splunk.expr import SplRefusal
from rmmc.compiler import ir

TARGET = "splunk"
_STRING_TYPES = ("string", "guid")
_MARK, _KEY, _LOOKUP_ROW, _HIT = "rmmc_e", "rmmc_k", "rmmc_l", "rmmc_h"


def lookup_file(uri: str) -> str:
    """The lookup file holding a URI's rows: `rmmc_ext_<slug>_<8 hex of sha256(uri)>.csv`, the
    slug from the URI's host and last path segment (lower-case letters, digits, `_`)."""
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:8]
    bare = re.sub(r"^[a-z][a-z0-9+.-]*://", "", uri.lower())
    host, _, path = bare.partition("/")
    last = [p for p in re.split(r"[/?#]", path) if p]
    words = [host.split(":")[0].split("@")[-1]] + (last[-1:] if last else [])
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join(words)).strip("_")[:40].strip("_") or "feed"
    return f"rmmc_ext_{slug}_{digest}.csv"


def lookup_note(table: ir.ExternalTable, uri: str) -> Any:
    return note(TARGET, f"the lookup {lookup_file(uri)} must hold the rows of {uri} (format "
                        f"{table.format}{', first record skipped' if table.ignore_first_record else ''}; "
                        "`rmmc lookups fetch` writes it): the translation keeps its meaning provided it does",
                table.span)


def declared(options: Any, table: ir.ExternalTable) -> None:
    """Refuse, located at the externaldata, unless the environment holds external tables as lookups."""
    if getattr(options, "external", None) != "lookup":
        raise SplRefusal("externaldata: this environment does not say how external tables reach Splunk; "
                         "declare `external: lookup` in it (each URI's rows as a CSV lookup file, which "
                         "`rmmc lookups fetch` writes)", table.span)


# ------------------------------------------------------------------ the feed's own stages


def _sub_expr(expr: Any, defs: dict[str, Any]) -> Any:
    if isinstance(expr, ir.Field):
        if expr.name not in defs:
            raise SplRefusal(f"the feed has no column {expr.name} at this point")
        return defs[expr.name]
    if isinstance(expr, ir.Call):
        return replace(expr, args=tuple(_sub_expr(a, defs) for a in expr.args))
    if isinstance(expr, ir.Boolean):
        return replace(expr, condition=_sub_condition(expr.condition, defs))
    return expr


def _sub_condition(c: Any, defs: dict[str, Any]) -> Any:
    if isinstance(c, ir.Predicate):
        return replace(c, field=_sub_expr(c.field, defs))
    if isinstance(c, ir.Compare):
        return replace(c, left=_sub_expr(c.left, defs), right=_sub_expr(c.right, defs))
    if isinstance(c, (ir.And, ir.Or)):
        return type(c)(tuple(_sub_condition(o, defs) for o in c.operands))
    if isinstance(c, ir.Not):
        return ir.Not(_sub_condition(c.operand, defs))
    if isinstance(c, ir.InSubquery):
        raise SplRefusal("a subquery inside a feed's own filter is not written", c.span)
    return c


def feed_shape(rule: ir.Rule) -> tuple[ir.ExternalTable, list[Any], dict[str, Any]]:
    """A feed sub-rule as (its table, the conditions its rows must pass, each output column as
    an expression over the lookup's columns), for a membership test (row order and repeats do
    not matter); raises SplRefusal for a stage that decides more than that."""
    table = rule.source.external
    defs: dict[str, Any] = {name: ir.Field(name, type_name) for name, type_name in table.columns}
    conditions: list[Any] = [rule.condition]
    for stage in rule.stages:
        if isinstance(stage, ir.Filter):
            conditions.append(_sub_condition(stage.condition, defs))
        elif isinstance(stage, ir.Extend):
            made = {name: _sub_expr(expr, defs) for name, expr in stage.columns}
            defs.update(made)
        elif isinstance(stage, ir.Project):
            defs = {name: _sub_expr(expr, defs) for name, expr in stage.columns}
        elif isinstance(stage, ir.Summarize) and not stage.aggregates:
            defs = {name: _sub_expr(expr, defs) for name, expr in stage.group_by}
        elif isinstance(stage, ir.Rename):
            renamed = dict(defs)
            for new, old in stage.pairs:
                renamed.pop(old, None)
            for new, old in stage.pairs:
                renamed[new] = defs[old]
            defs = renamed
        elif isinstance(stage, ir.ProjectAway):
            import fnmatch

            defs = {n: e for n, e in defs.items() if not any(fnmatch.fnmatchcase(n, p) for p in stage.patterns)}
        elif isinstance(stage, (ir.Reorder, ir.Sort)):
            continue
        else:
            raise SplRefusal(f"{type(stage).__name__.lower()} on an external table: only its filters, "
                             "extends, projections, renames and distinct are written over its lookup",
                             getattr(stage, "span", None))
    return table, conditions, defs


def _strings_only(nodes: list[Any], span: Any) -> None:
    for node in nodes:
        for f in ir.expr_fields(node):
            if f.type not in _STRING_TYPES:
                raise SplRefusal(f"the feed's column {f.name} is {f.type}: its lookup holds the value's "
                                 "text, which SPL would compare as text, not as KQL compares a "
                                 f"{f.type}", span)


def _feed_emitter(table: ir.ExternalTable, make_emitter: Any) -> Any:
    emitter = make_emitter()
    for name, _ in table.columns:
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", name):
            raise SplRefusal(f"the feed's column {name} is no name SPL's eval can read", table.span)
        emitter.columns[name] = (name, "event")
    return emitter


def membership_commands(node: ir.InSubquery, left: str, make_emitter: Any, options: Any,
                        diagnostics: list[Any]) -> list[str]:
    """`x in (feed ...)` / `!in` / `in~` as a correlation with the feed's lookup (see the
    module docstring); `left`: x as a never-null SPL string."""
    rule = node.rule
    table = rule.source.external
    declared(options, table)
    if node.op is not ir.Op.EQUALS:
        raise SplRefusal("has_any against an external table: a term search for every value of the feed "
                         "has no SPL form rmmc writes (in / !in / in~ and joins on equal values do)", node.span)
    if rule.union is not None:
        raise SplRefusal("a union of external tables is not written over lookups", node.span)
    table, conditions, defs = feed_shape(rule)
    from rmmc.compiler.rows import output_column

    column = node.column or output_column(rule) or next(iter(defs), None)
    if column is None or column not in defs:
        raise SplRefusal("the feed's column the test reads is unknown", node.span)
    value = defs[column]
    _strings_only([value, *conditions], node.span)
    emitter = _feed_emitter(table, make_emitter)
    condition = ir.all_of(conditions)
    right = emitter.writer.string(value, node.span)
    if not node.case_sensitive:
        left, right = f"lower({left})", f"lower({right})"
    commands = [f'eval {_MARK}=1, {_KEY}="=" . {left}']
    for uri in table.uris:
        commands.append(f"inputlookup append=true {lookup_file(uri)}")
        diagnostics.append(lookup_note(table, uri))
    if condition != ir.Const(True):
        commands.append(f"where isnotnull({_MARK}) OR ({emitter.condition_text(condition)})")
    commands.append(f'eval {_KEY}=if(isnull({_MARK}), "=" . {right}, {_KEY}), '
                    f"{_LOOKUP_ROW}=if(isnull({_MARK}), 1, null())")
    commands.append(f"eventstats max({_LOOKUP_ROW}) as {_HIT} by {_KEY}")
    test = f"isnull({_HIT})" if node.negated else f"isnotnull({_HIT})"
    commands.append(f"where isnotnull({_MARK}) AND {test}")
    commands.append(f"fields - {_MARK} {_KEY} {_LOOKUP_ROW} {_HIT}")
    diagnostics.extend(d for d in emitter.diagnostics if d not in diagnostics)
    return commands

