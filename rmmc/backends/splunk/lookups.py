"""External tables (KQL `externaldata`) in SPL: each URI's rows as a CSV lookup file.

An environment that declares `external: lookup` holds each URI's rows, as Kusto parses them,
in a lookup file named from the URI (`lookup_file`; `rmmc lookups fetch` writes it), the header
row the declared column names.  A subquery against a feed is a correlation in the main search,
never a subsearch (a subsearch is cut at 10,000 / 50,000 rows and 60 s, silently dropping
matches of a large feed, and its results would become case-insensitive search terms):

    search <the events>
    | eval rmmc_e=1, rmmc_k="=" . <x>                 the events, marked, keyed by x
    | inputlookup append=true strict=true rmmc_ext_<slug>_<hash>.csv   the feed's rows after them
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
holds its text, which SPL would compare as text) are refused at their place.

`has_any` against a feed reads the feed's terms lookup (`..._terms.csv`, `term_lookup`), which
holds beside each string column c the column `rmmc_term_c`: the value's case-insensitive term
test as a PCRE, computed by `rmmc lookups fetch` (`compiler.terms`), so no value is escaped into
a regex at search time; each event then tests each pattern (`_term_commands`).

Each lookup a translation reads is said in a note naming the file and the URI whose rows it
must hold: the meaning is kept provided the lookup holds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from rmmc.backends.base import note, shape
from rmmc.backends.splunk.expr import SplRefusal
from rmmc.compiler import ir
from rmmc.compiler.external import shown_uri, uri_slug

TARGET = "splunk"
_STRING_TYPES = ("string", "guid")
_MARK, _KEY, _LOOKUP_ROW, _HIT = "rmmc_e", "rmmc_k", "rmmc_l", "rmmc_h"


def lookup_file(uri: str, terms: bool = False) -> str:
    """The lookup file holding a URI's rows: `rmmc_ext_<slug>_<8 hex of sha256(uri)>.csv`, the
    slug from the URI's host and last path segment (`external.uri_slug`); with `terms`, the
    file that also holds each string value's term pattern (`..._terms.csv`, `term_lookup`)."""
    import hashlib  # here: it loads OpenSSL (2% of a cold start), needed only for external data

    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:8]
    slug = uri_slug(uri)
    return f"rmmc_ext_{slug}_{digest}{'_terms' if terms else ''}.csv"


TERM_PREFIX = "rmmc_term_"


def term_lookup(rows: list[dict], columns: tuple[tuple[str, str], ...]) \
        -> tuple[list[dict], tuple[tuple[str, str], ...]]:
    """A feed's rows and columns as its terms lookup holds them: beside each string column c a
    column `rmmc_term_c`, the value's case-insensitive KQL term test as a PCRE
    (`compiler.terms.term_pcre`, computed here in Python so that no value is escaped into a
    regex at search time); a null value has none."""
    from rmmc.compiler.functions import to_text
    from rmmc.compiler.terms import term_pcre

    strings = [name for name, type_name in columns if type_name in _STRING_TYPES]
    taken = {name for name, _ in columns}
    for name in strings:
        if TERM_PREFIX + name in taken:
            raise ValueError(f"the feed's column {TERM_PREFIX + name} takes the name of its term column")
    out = []
    for row in rows:
        extended = dict(row)
        for name in strings:
            value = row.get(name)
            extended[TERM_PREFIX + name] = None if value is None else term_pcre(to_text(value))
        out.append(extended)
    return out, (*columns, *((TERM_PREFIX + name, "string") for name in strings))


def lookup_note(table: ir.ExternalTable, uri: str, terms: bool = False) -> Any:
    """The note naming the lookup a translation reads for one URI of a feed (with `terms`, its
    terms lookup) and what it must hold."""
    holds = (f"the lookup {lookup_file(uri, terms)} must hold the rows of {shown_uri(table, uri)} (format "
             f"{table.format}{', first record skipped' if table.ignore_first_record else ''}")
    if terms:
        return note(TARGET, f"{holds}) and each string value's term pattern ({TERM_PREFIX}<column>), as "
                            "`rmmc lookups fetch` writes it (no other tool does): the translation keeps its "
                            "meaning provided it does", table.span)
    return note(TARGET, f"{holds}; `rmmc lookups fetch` writes it): the translation keeps its meaning "
                        "provided it does", table.span)


def _appended_lookups(table: ir.ExternalTable, diagnostics: list[Any], terms: bool = False) -> list[str]:
    """The commands appending each URI's lookup (its terms lookup) to the events, each lookup's
    note added to `diagnostics` once."""
    commands = []
    for uri in table.uris:
        commands.append(f"inputlookup append=true strict=true {lookup_file(uri, terms)}")
        lookup = lookup_note(table, uri, terms)
        if lookup not in diagnostics:
            diagnostics.append(lookup)
    return commands


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


def feed_shape(rule: ir.Rule) -> tuple[ir.ExternalTable, list[Any], dict[str, Any], bool]:
    """A feed sub-rule as (its table, the conditions its rows must pass, each output column as
    an expression over the lookup's columns, whether its rows are made distinct), row order
    aside; raises SplRefusal for a stage that decides more than that."""
    table = rule.source.external
    defs: dict[str, Any] = {name: ir.Field(name, type_name) for name, type_name in table.columns}
    conditions: list[Any] = [rule.condition]
    distinct = False
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
            distinct = True
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
        if distinct and isinstance(stage, (ir.Extend, ir.Project, ir.Rename)):
            raise SplRefusal("a feed's columns computed after its distinct are not written over its lookup",
                             getattr(stage, "span", None))
    return table, conditions, defs, distinct


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
                        diagnostics: list[Any], flag: str | None = None) -> list[str]:
    """`x in (feed ...)` / `!in` / `in~` as a correlation with the feed's lookup (see the
    module docstring); `left`: x as a never-null SPL string.  With `flag`, the events are kept
    and the field `flag` is set (1) on those whose x the feed holds, whatever the negation: the
    caller tests it (a feed test inside `or` / `not`)."""
    rule = node.rule
    table = rule.source.external
    declared(options, table)
    if node.op not in (ir.Op.EQUALS, ir.Op.TERM):
        raise SplRefusal(f"a {node.op.value} test against an external table has no SPL form rmmc writes "
                         "(in / !in / in~ / has_any and joins on equal values do)", node.span)
    if rule.union is not None:
        raise SplRefusal("a union of external tables is not written over lookups", node.span)
    table, conditions, defs, _ = feed_shape(rule)
    from rmmc.compiler.rows import output_column

    column = node.column or output_column(rule) or next(iter(defs), None)
    if column is None or column not in defs:
        raise SplRefusal("the feed's column the test reads is unknown", node.span)
    value = defs[column]
    _strings_only([value, *conditions], node.span)
    emitter = _feed_emitter(table, make_emitter)
    condition = ir.all_of(conditions)
    if node.op is ir.Op.TERM:
        return _term_commands(node, table, condition, value, left, emitter, diagnostics, flag)
    right = emitter.writer.string(value, node.span)
    if not node.case_sensitive:
        left, right = f"lower({left})", f"lower({right})"
    commands = [f'eval {_MARK}=1, {_KEY}="=" . {left}', *_appended_lookups(table, diagnostics)]
    if condition != ir.Const(True):
        commands.append(f"where isnotnull({_MARK}) OR ({emitter.condition_text(condition)})")
    commands.append(f'eval {_KEY}=if(isnull({_MARK}), "=" . {right}, {_KEY}), '
                    f"{_LOOKUP_ROW}=if(isnull({_MARK}), 1, null())")
    if flag is not None:
        commands.append(f"eventstats max({_LOOKUP_ROW}) as {flag} by {_KEY}")
        commands.append(f"where isnotnull({_MARK})")
        commands.append(f"fields - {_MARK} {_KEY} {_LOOKUP_ROW}")
        diagnostics.extend(d for d in emitter.diagnostics if d not in diagnostics)
        return commands
    commands.append(f"eventstats max({_LOOKUP_ROW}) as {_HIT} by {_KEY}")
    test = f"isnull({_HIT})" if node.negated else f"isnotnull({_HIT})"
    commands.append(f"where isnotnull({_MARK}) AND {test}")
    commands.append(f"fields - {_MARK} {_KEY} {_LOOKUP_ROW} {_HIT}")
    diagnostics.extend(d for d in emitter.diagnostics if d not in diagnostics)
    return commands



def _term_source(value: Any, node: ir.InSubquery, table: ir.ExternalTable) -> str:
    """The lookup column whose term patterns test `value` (a feed column, or its tolower():
    the test folds case, and fold(tolower(v)) is fold(v) as `fold` is idempotent)."""
    if isinstance(value, ir.Call) and value.function == "tolower" and len(value.args) == 1:
        value = value.args[0]
    if isinstance(value, ir.Field):
        if any(name == TERM_PREFIX + value.name for name, _ in table.columns):
            raise SplRefusal(f"the feed has a column {TERM_PREFIX + value.name}, the name of the term column "
                             "of its terms lookup", node.span)
        return TERM_PREFIX + value.name
    raise SplRefusal("has_any against a feed value computed from its columns: its lookup holds the term "
                     "patterns of the columns themselves only", node.span)


def _term_commands(node: ir.InSubquery, table: ir.ExternalTable, condition: Any, value: Any, left: str,
                   emitter: Any, diagnostics: list[Any], flag: str | None) -> list[str]:
    """`x has_any (feed ...)` (`!has_any`) over the feed's terms lookup, whose column
    `rmmc_term_<c>` holds each value's case-insensitive term test as a PCRE (`term_lookup`):

        | eval rmmc_e=1
        | inputlookup append=true strict=true rmmc_ext_<slug>_<hash>_terms.csv
        | where isnotnull(rmmc_e) OR (<the feed's filters>)
        | eval rmmc_r=if(isnull(rmmc_e), rmmc_term_<c>, null())
        | eventstats values(rmmc_r) as rmmc_rs           every feed pattern, on every event
        | where isnotnull(rmmc_e)
        | eval rmmc_h=if(isnull(rmmc_rs), null(),
                         if(isnull(mvfind(mvmap(rmmc_rs, if(match(<x>, rmmc_rs), "1", "0")), "^1$")), null(), 1))
        | where isnotnull(rmmc_h)                          (!has_any: isnull(rmmc_h))

    Each event tests each pattern (the Search Reference, multivalue eval functions: `mvmap`'s
    expression may read another single-valued field; `mvfind` gives null when no value
    matches; every eval function taking a string takes a field).  The patterns are tested one
    by one rather than joined into one regex, which PCRE's pattern size limit would cut for a
    large feed.  A has_cs test (case-sensitive) is not written."""
    if node.case_sensitive:
        raise SplRefusal("a case-sensitive term test against an external table is not written (its lookup "
                         "holds case-insensitive term patterns)", node.span)
    source = _term_source(value, node, table)
    commands = [f"eval {_MARK}=1", *_appended_lookups(table, diagnostics, terms=True)]
    if condition != ir.Const(True):
        commands.append(f"where isnotnull({_MARK}) OR ({emitter.condition_text(condition)})")
    commands.append(f"eval rmmc_r=if(isnull({_MARK}), {source}, null())")
    commands.append("eventstats values(rmmc_r) as rmmc_rs")
    commands.append(f"where isnotnull({_MARK})")
    hit = flag or _HIT
    commands.append(f'eval {hit}=if(isnull(rmmc_rs), null(), if(isnull(mvfind(mvmap(rmmc_rs, '
                    f'if(match({left}, rmmc_rs), "1", "0")), "^1$")), null(), 1))')
    if flag is None:
        commands.append(f"where {'isnull' if node.negated else 'isnotnull'}({_HIT})")
        commands.append(f"fields - {_MARK} rmmc_r rmmc_rs {_HIT}")
    else:
        commands.append(f"fields - {_MARK} rmmc_r rmmc_rs")
    diagnostics.extend(d for d in emitter.diagnostics if d not in diagnostics)
    return commands


# ------------------------------------------------------------------ joins against a feed


@dataclass(frozen=True)
class UniqueFeedJoin(ir.Join):
    """An inner join with a feed whose rows are first made unique per key (the first row of
    each): `Feed | join (T ...)`, KQL's innerunique with the feed on the left, turned round."""


_TURNED = {"rightsemi": "leftsemi", "rightanti": "leftanti", "inner": "inner", "innerunique": "inner"}


def feed_first(rule: ir.Rule) -> ir.Rule:
    """`Feed | join kind=K (T ...) on $left.a == $right.b | rest` as the same rows read from T's
    side: `T ... | join kind=K' (Feed) on $left.b == $right.a | rest`, T's columns renamed as KQL
    names them after the feed's (`DeviceName1` where the feed has `DeviceName`) so `rest` reads
    the same names.  rightsemi / rightanti are leftsemi / leftanti; inner stays inner;
    innerunique (KQL's default, one feed row per key) is inner against the feed's first row of
    each key.  Kinds that keep the feed's own rows are refused."""
    table = rule.source.external
    first = next((i for i, s in enumerate(rule.stages) if isinstance(s, ir.Join)), None)
    if first is None:
        raise SplRefusal("an external table as the rule's own source is written over its lookup only when "
                         "it is joined with a table (`Feed | join (T ...) on ...`)", table.span)
    join = rule.stages[first]
    events = join.right
    if events.source.external is not None or events.union is not None or join.lookup:
        raise SplRefusal("a feed joined with another feed or a union is not written over lookups", join.span)
    kind = _TURNED.get(join.kind)
    if kind is None:
        raise SplRefusal(f"a {join.kind} join keeps the feed's own rows, which a correlation on the "
                         "events' rows does not return", join.span)
    if rule.exclusions:
        raise SplRefusal("exclusions over a feed's rows are not written", table.span)
    feed = replace(rule, stages=rule.stages[:first], lookback=None, exclusions=())
    later = rule.stages[first + 1:]
    renames: list[tuple[str, str]] = []
    names = {b: b for _, b in join.keys}
    if kind == "inner":
        if join.left_columns is None or join.right_columns is None:
            raise SplRefusal("the columns of a side of the join are unknown: which names KQL gives them "
                             "cannot be told", join.span)
        out = ir.join_output_names(join.left_columns, join.right_columns, join.kind)
        renames = [(new, old) for old, new in zip(join.right_columns, out) if new != old]
        names = {old: new for new, old in renames}
    turned_type = UniqueFeedJoin if join.kind == "innerunique" else ir.Join
    left_columns = tuple(names.get(c, c) for c in join.right_columns) if join.right_columns is not None else None
    turned = turned_type(kind, feed, tuple((names.get(b, b), a) for a, b in join.keys), left_columns,
                         join.left_columns, False, join.span)
    stages = [*events.stages, *([ir.Rename(tuple(renames), join.span)] if renames else []), turned, *later]
    return replace(events, metadata=rule.metadata, stages=tuple(stages))


def feed_join_commands(stage: ir.Join, later: tuple[ir.Stage, ...], writer: Any) -> list[str]:
    """A join whose right side is a feed, as a correlation with its lookup in the main search:

        | eval rmmc_e=1, rmmc_k1="=" . <left key> ...       [| dedup rmmc_k1 ...  (innerunique)]
        | inputlookup append=true strict=true <file>  | where isnotnull(rmmc_e) OR (<feed filters>)
        | streamstats count as rmmc_n
        | eval rmmc_k1=if(isnull(rmmc_e), "=" . <right key>, rmmc_k1), ...,
               rmmc_l=if(isnull(rmmc_e), tostring(rmmc_n) . ":", null()),
               rmmc_c1=if(isnull(rmmc_e), tostring(rmmc_n) . ":" . <carried column>, null()) ...
        | eventstats values(rmmc_l) as rmmc_v0, values(rmmc_c1) as rmmc_v1 ... by rmmc_k1 ...
        | where isnotnull(rmmc_e) AND isnotnull(rmmc_v0)              (inner kinds)
        | eval rmmc_i=mvrange(0, mvcount(rmmc_v0))  | mvexpand rmmc_i   one row per matching feed row
        | eval <out>=replace(mvindex(rmmc_v1, rmmc_i), "^[0-9]+:", "") ...

    Each feed row is numbered, so `values()` keeps repeated rows apart and every carried column's
    values sort alike (by the number before `:`); `mvindex` then pairs them.  A feed made
    distinct keeps the first row of each distinct tuple (`eventstats min(rmmc_n)` by it).
    `leftsemi` / `leftanti` only ask whether a feed row matches (as `in` / `!in`); `leftouter`
    keeps an event without a match once, its carried columns "" (KQL's null string)."""
    emitter = writer.emitter
    right = stage.right
    table = right.source.external
    declared(getattr(emitter, "options", None), table)
    kind = stage.kind
    if kind not in ("inner", "innerunique", "leftouter", "leftsemi", "leftanti"):  # (a turned one: inner)
        raise SplRefusal(f"a {kind} join against an external table keeps the feed's rows, which a "
                         "correlation on the events' rows does not return", stage.span)
    if right.union is not None:
        raise SplRefusal("a union of external tables is not written over lookups", stage.span)
    table, conditions, defs, distinct = feed_shape(right)
    right_keys = [r for _, r in stage.keys]
    for key in right_keys:
        if key not in defs:
            raise SplRefusal(f"the feed has no column {key}", stage.span)
    left_keys = [_left_key(emitter, lk, stage.span) for lk, _ in stage.keys]
    _strings_only([*(defs[k] for k in right_keys), *conditions], stage.span)
    feed = _feed_emitter(table, lambda: _fresh(emitter))
    keys = [f"rmmc_k{i + 1}" for i in range(len(stage.keys))]
    by = " ".join(keys)
    commands = ["eval rmmc_e=1, " + ", ".join(f'{k}="=" . {v}' for k, v in zip(keys, left_keys))]
    if kind == "innerunique":
        commands.append(f"dedup {by}")
        writer.diagnostics.append(note(TARGET, "innerunique: KQL keeps one arbitrary left row per key; "
                                               "SPL's dedup keeps the first result", stage.span))
    for uri in table.uris:
        commands.append(f"inputlookup append=true strict=true {lookup_file(uri)}")
        writer.diagnostics.append(lookup_note(table, uri))
    condition = ir.all_of(conditions)
    if condition != ir.Const(True):
        commands.append(f"where isnotnull(rmmc_e) OR ({feed.condition_text(condition)})")
    right_values = [feed.writer.string(defs[k], stage.span) for k in right_keys]
    key_evals = [f'{k}=if(isnull(rmmc_e), "=" . {v}, {k})' for k, v in zip(keys, right_values)]
    if kind in ("leftsemi", "leftanti"):
        commands.append("eval " + ", ".join([*key_evals, "rmmc_l=if(isnull(rmmc_e), 1, null())"]))
        commands.append(f"eventstats max(rmmc_l) as rmmc_h by {by}")
        test = "isnotnull(rmmc_h)" if kind == "leftsemi" else "isnull(rmmc_h)"
        commands.append(f"where isnotnull(rmmc_e) AND {test}")
        commands.append(f"fields - rmmc_e {by} rmmc_l rmmc_h")
        writer.diagnostics.extend(d for d in feed.diagnostics if d not in writer.diagnostics)
        return commands
    if stage.left_columns is None:
        raise SplRefusal("the columns of the join's left side are unknown (a table rmmc does not know): "
                         "which names the feed's columns take cannot be told", stage.span)
    right_columns = tuple(defs)
    names = ir.join_output_names(stage.left_columns, right_columns, kind, tuple(right_keys), stage.lookup)
    wanted = _wanted(later)
    carried: list[tuple[str, str]] = []  # (SPL output name, feed value text)
    taken = {emitter.mapped(c) for c in stage.left_columns} | {n for n, _ in emitter.columns.values()}
    for column, name in zip(right_columns, names):
        if not name or name not in wanted:
            continue
        _strings_only([defs[column]], stage.span)
        spl_name = writer.own_name(name)
        if spl_name in taken:
            raise SplRefusal(f"the feed's column {name} would take the name {spl_name}, which a left "
                             "field has in SPL", stage.span)
        carried.append((spl_name, feed.writer.string(defs[column], stage.span)))
    if len(carried) < sum(1 for n in names if n):
        writer.diagnostics.append(shape(TARGET, "the feed's columns that no later stage reads are not "
                                                "carried into the rows", stage.span))
    commands.append("streamstats count as rmmc_n")
    unique = isinstance(stage, UniqueFeedJoin)
    if distinct or unique:  # the first feed row of each distinct tuple (of each key: innerunique)
        kept = [defs[k] for k in right_keys] if unique else list(defs.values())
        tuple_evals = [f'rmmc_d{i + 1}=if(isnull(rmmc_e), "=" . {feed.writer.string(e, stage.span)}, null())'
                       for i, e in enumerate(kept)]
        _strings_only(kept, stage.span)
        dims = " ".join(f"rmmc_d{i + 1}" for i in range(len(tuple_evals)))
        commands.append("eval " + ", ".join(tuple_evals))
        commands.append(f"eventstats min(rmmc_n) as rmmc_m by {dims}")
        commands.append("where isnotnull(rmmc_e) OR rmmc_n==rmmc_m")
        commands.append(f"fields - {dims} rmmc_m")
    number = 'tostring(rmmc_n) . ":"'
    evals = [*key_evals, f"rmmc_l=if(isnull(rmmc_e), {number}, null())",
             *(f"rmmc_c{i + 1}=if(isnull(rmmc_e), {number} . {v}, null())" for i, (_, v) in enumerate(carried))]
    commands.append("eval " + ", ".join(evals))
    stats = ["values(rmmc_l) as rmmc_v0", *(f"values(rmmc_c{i + 1}) as rmmc_v{i + 1}" for i in range(len(carried)))]
    commands.append(f"eventstats {', '.join(stats)} by {by}")
    if kind == "leftouter":
        commands.append("where isnotnull(rmmc_e)")
        commands.append("eval rmmc_i=mvrange(0, if(isnull(rmmc_v0), 1, mvcount(rmmc_v0)))")
    else:
        commands.append("where isnotnull(rmmc_e) AND isnotnull(rmmc_v0)")
        commands.append("eval rmmc_i=mvrange(0, mvcount(rmmc_v0))")
    commands.append("mvexpand rmmc_i")
    outs = [f'{name}=replace(mvindex(rmmc_v{i + 1}, rmmc_i), "^[0-9]+:", "")' for i, (name, _) in enumerate(carried)]
    if kind == "leftouter":  # an event no feed row matched: KQL's null string, ''
        outs = [f'{name}=if(isnull(rmmc_v{i + 1}), "", {text.split("=", 1)[1]})'
                for i, ((name, _), text) in enumerate(zip(carried, outs))]
    if outs:
        commands.append("eval " + ", ".join(outs))
    temps = ["rmmc_e", *keys, "rmmc_n", "rmmc_l", *(f"rmmc_c{i + 1}" for i in range(len(carried))),
             *(f"rmmc_v{i}" for i in range(len(carried) + 1)), "rmmc_i"]
    commands.append("fields - " + " ".join(temps))
    for (column, name) in zip(right_columns, names):
        if name and name in wanted:
            emitter.columns[name] = (writer.own_name(name), "string")
    writer.diagnostics.extend(d for d in feed.diagnostics if d not in writer.diagnostics)
    return commands


def _left_key(emitter: Any, column: str, span: Any) -> str:
    """A left join key as a never-null SPL string (a key of another type is refused: the feed's
    lookup holds text)."""
    if column in emitter.columns:
        kind = emitter.columns[column][1]
        type_name = "string" if kind in ("string", "segment", "event") else kind
    else:
        from rmmc.compiler.schema import load_schema

        table = load_schema().table(emitter.table or "")
        type_name = (table.column_type(column) if table else None) or "string"
    if type_name not in _STRING_TYPES:
        raise SplRefusal(f"the join key {column} is {type_name}: the feed's lookup holds text, which SPL "
                         "would compare as text", span)
    return emitter.writer.string(ir.Field(column, type_name), span)


def _fresh(emitter: Any) -> Any:
    """A plain emitter with no columns of its own (the feed's are added)."""
    from rmmc.backends.splunk.backend import Emitter

    return Emitter(None, emitter.profile_name)


def _wanted(later: tuple[ir.Stage, ...]) -> set[str]:
    from rmmc.backends.splunk.multi import _later_fields

    return set(_later_fields(later))
