"""Whole-query verification: the rows (or the alerts) of a translation against the source's.

A rule is more than its detection: its stages compute columns, filter on them, aggregate and
threshold.  `check_whole` compares what each target returns over the same events with what the
reference evaluator (`rmmc.compiler.rows`) says the rule returns:

* KQL runs on duckdb-kql and must return the same rows: the same columns with the same
  values, as a multiset (in order when the rule sorts; a `take` without a total order only
  has to return that many of the rows the rule could return);
* Sigma and EQL return events, not rows: they must alert on the same events as the rule
  (every event some returned row came from, `Row.sources`), or, for a Sigma correlation, on
  the same groups (the key values of the rows that pass its threshold).

Values are compared as their kind of value (`normal`): numbers by value, a datetime in UTC, a
set (`make_set`) in any order, and '' as null (KQL's missing string); columns whose value
Kusto leaves to chance (`any`, `take_any`) are not compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from rmmc.compiler import ir
from rmmc.compiler.rows import Row, run

INDEX = "rmmc_event"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
"""The instant events are generated around and the reference's `now()`: the real time, since
the engines read their own clock for `ago()`."""

_UNORDERED = frozenset({"make_set", "make_set_if"})
_ARBITRARY = frozenset({"any", "take_any"})


# ------------------------------------------------------------------ events


def group_events(rule: ir.Rule, events: list[dict[str, Any]], limit: int = 60) -> list[dict[str, Any]]:
    """`events` plus, when the rule aggregates, groups of events sized around each threshold the
    rule puts on an aggregate (one below, at, one above), so thresholds are crossed on purpose:
    copies of events the detection selects, each group under its own key values (and, for a
    `dcount` threshold, with as many distinct values as the group is large)."""
    from rmmc.compiler.evaluator import evaluate

    summarize = ir.summarize_of(rule.stages)
    if summarize is None:
        return events
    selected = [e for e in events if evaluate(rule.condition, e) is True]
    if not selected:
        return events
    bounds = _thresholds(rule, summarize)
    sizes = sorted({1, 2, *(b + d for b in bounds for d in (-1, 0, 1) if 0 < b + d <= limit)})
    keys = [e for _, e in summarize.group_by if isinstance(e, ir.Field)]
    # group keys: present in every event (as Defender's DeviceId, DeviceName ... are), as the
    # Sigma backend's note on correlations assumes
    for e in events:
        for key in keys:
            if e.get(key.name) in (None, ""):
                e[key.name] = 1 if key.type in ("int", "long", "real") else "device"
    distinct = [a.args[0] for a in summarize.aggregates
                if a.function in ("dcount", "dcountif") and a.args and isinstance(a.args[0], ir.Field)]
    out = list(events)
    for n in sizes:
        for j in range(n):
            e = dict(selected[j % len(selected)])
            for key in keys:
                e[key.name] = n if key.type in ("int", "long", "real") else f"group{n}"
            for f in distinct:
                e[f.name] = j if f.type in ("int", "long", "real") else f"{e.get(f.name) or ''}#{j}"
            if evaluate(rule.condition, e) is not True:
                e = dict(selected[j % len(selected)], **{k.name: e[k.name] for k in keys})
            if evaluate(rule.condition, e) is not True:
                # a key the detection tests: the group is named inside one selected value (a
                # `has` test still holds), else it keeps that value
                anchor = selected[0]
                for key in keys:
                    if isinstance(anchor.get(key.name), str):
                        e[key.name] = f"{anchor[key.name]} group{n}"
                for f in distinct:
                    e[f.name] = j if f.type in ("int", "long", "real") else f"{selected[0].get(f.name) or ''}#{j}"
                if evaluate(rule.condition, e) is not True:
                    e.update({k.name: anchor.get(k.name) for k in keys})
            out.append(e)
    return out


def _thresholds(rule: ir.Rule, summarize: ir.Summarize) -> set[int]:
    made = {a.name for a in summarize.aggregates if a.name}
    after = rule.stages[rule.stages.index(summarize) + 1:]
    bounds: set[int] = set()
    for stage in after:
        if not isinstance(stage, ir.Filter):
            continue
        for p in ir.walk_predicates(stage.condition):
            if isinstance(p.field, ir.Field) and p.field.name in made:
                for v in p.values:
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                        bounds.add(int(v))
    return bounds


def with_time(events: list[dict[str, Any]], rule: ir.Rule) -> list[dict[str, Any]]:
    """Each event with a Timestamp a minute before `NOW` unless the rule tests its own (inside
    any lookback the translations write)."""
    names = {f.name for r in all_rules(rule) for f in _all_fields(r)}
    out = []
    for e in events:
        e = dict(e)
        for column in ("Timestamp", "TimeGenerated"):
            if column in names and column not in e:
                e[column] = NOW - timedelta(minutes=1)
        out.append(e)
    return out


def all_rules(rule: ir.Rule) -> list[ir.Rule]:
    """The rule and every rule inside it (union branches, join right sides, subqueries)."""
    out, pending = [], [rule]
    while pending:
        current = pending.pop()
        out.append(current)
        pending.extend(ir.sub_rules(current))
    return out


def tables_read(rule: ir.Rule) -> dict[str, list[ir.Rule]]:
    """Each table the rule reads, with the (sub-)rules that read it directly."""
    found: dict[str, list[ir.Rule]] = {}
    for current in all_rules(rule):
        if current.union is None and current.source.table:
            found.setdefault(current.source.table, []).append(current)
    return found


def _all_fields(rule: ir.Rule) -> list[ir.Field]:
    """The event columns the rule reads: every field read where no earlier stage has made a
    column of that name (a column an extend replaces is still read before it)."""
    found: dict[str, ir.Field] = {}
    made: set[str] = set()
    closed = False  # after a project or summarize no event column is left

    def read(*nodes: Any) -> None:
        if closed:
            return
        for node in nodes:
            for f in ir.expr_fields(node):
                if f.name not in made:
                    found.setdefault(f.name, f)

    read(rule.condition)
    for stage in rule.stages:
        if isinstance(stage, ir.Filter):
            read(stage.condition)
        elif isinstance(stage, ir.Extend):
            read(*(e for _, e in stage.columns))
            made.update(n for n, _ in stage.columns)
        elif isinstance(stage, ir.Project):
            read(*(e for _, e in stage.columns))
            closed = True
        elif isinstance(stage, ir.Summarize):
            read(*(e for _, e in stage.group_by), *(a for agg in stage.aggregates for a in agg.args))
            closed = True
        elif isinstance(stage, ir.Sort):
            read(*(k.expr for k in stage.keys))
        elif isinstance(stage, ir.Rename):
            read(*(ir.Field(old) for _, old in stage.pairs))
            made.update(new for new, _ in stage.pairs)
        elif isinstance(stage, ir.Join):
            closed = True  # the columns after it are both sides': not this table's to add
        elif isinstance(stage, ir.MvExpand):
            read(*(e for _, e, _ in stage.columns))
            made.update(n for n, _, _ in stage.columns)
            if stage.index:
                made.add(stage.index)
        elif isinstance(stage, ir.Parse):
            read(stage.source)
            made.update(stage.columns)
    if rule.union is not None:
        return []  # its branches read the tables
    if rule.lookback is not None:
        from rmmc.backends.kql import time_column

        column = time_column(rule.source.table or "DeviceEvents")
        found.setdefault(column, ir.Field(column, "datetime"))
    return list(found.values())


# ------------------------------------------------------------------ values


def normal(value: Any, unordered: bool = False) -> Any:
    """A value in a form that compares equal across engines."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        number = float(value)
        if math.isnan(number):
            return ("nan",)
        return ("number", round(number, 9))
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return ("datetime", value.astimezone(timezone.utc).isoformat())
    if isinstance(value, timedelta):
        return ("timespan", value.total_seconds())
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return normal(json.loads(value), unordered)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        items = [normal(v) for v in value]
        return ("list", tuple(sorted(items, key=repr) if unordered else items))
    if isinstance(value, dict):
        return ("bag", tuple(sorted((str(k), normal(v)) for k, v in value.items())))
    return str(value)


def _columns(rule: ir.Rule) -> tuple[set[str], set[str]]:
    """(columns to compare as sets, columns not to compare) of the rule's result."""
    unordered, skipped = set(), set()
    for stage in (s for r in all_rules(rule) for s in r.stages):  # a sub-rule's columns may reach the rows
        if isinstance(stage, ir.Summarize):
            for a in stage.aggregates:
                if a.function in _UNORDERED and a.name:
                    unordered.add(a.name)
                if a.function in _ARBITRARY:
                    if a.name:
                        skipped.add(a.name)
                    skipped.update(x.name for x in a.args if isinstance(x, ir.Field))
                limited = (a.function in ("make_set", "make_list") and len(a.args) > 1) or \
                    (a.function in ("make_set_if", "make_list_if") and len(a.args) > 2)
                if limited and a.name:  # which values a limit keeps is the engine's choice
                    skipped.add(a.name)
    return unordered, skipped


def _is_index(column: str) -> bool:
    """The event-index column, or a join's copy of it (`rmmc_event1` ...)."""
    return column.startswith(INDEX) and column[len(INDEX):].isdigit() or column == INDEX


def comparable_rows(rows: Iterable[dict[str, Any]], rule: ir.Rule) -> list[tuple]:
    unordered, skipped = _columns(rule)
    out = []
    for row in rows:
        items = tuple(sorted((k, normal(v, k in unordered)) for k, v in row.items()
                             if k not in skipped and not _is_index(k) and normal(v) is not None))
        out.append(items)
    return out


def _sort_keys(rule: ir.Rule) -> tuple[ir.SortKey, ...] | None:
    """The keys of the rule's last sort when the rows still hold them as columns (no stage
    after it changes rows or names), else None."""
    for stage in reversed(rule.stages):
        if isinstance(stage, ir.Sort):
            if all(isinstance(k.expr, ir.Field) for k in stage.keys):
                return stage.keys
            return None
        if not isinstance(stage, (ir.Limit, ir.Filter)):
            return None
    return None


def _in_order(rows: list[dict[str, Any]], keys: tuple[ir.SortKey, ...]) -> bool:
    """Whether rows are ordered by the keys (KQL's null placement; ties in any order)."""
    from rmmc.compiler.rows import _Key

    def key_of(row: dict[str, Any], key: ir.SortKey) -> "_Key":
        first = key.nulls_first if key.nulls_first is not None else not key.descending
        smallest = first if not key.descending else not first  # where a null sorts as a value
        value = row.get(key.expr.name)
        return _Key(None if value == "" and key.expr.type not in ("string", "guid") else value, smallest)

    for a, b in zip(rows, rows[1:]):
        for key in keys:
            x, y = key_of(a, key), key_of(b, key)
            before, after = (y, x) if key.descending else (x, y)
            if after < before:
                return False
            if before < after:
                break
    return True


def _limited(rule: ir.Rule) -> bool:
    return any(isinstance(s, ir.Limit) for s in rule.stages)


def same_rows(rule: ir.Rule, expected: list[dict[str, Any]], got: list[dict[str, Any]],
              events: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether an engine's rows are the rule's rows, and a description of the first difference."""
    want, have = comparable_rows(expected, rule), comparable_rows(got, rule)
    if _limited(rule):
        unlimited = replace(rule, stages=tuple(s for s in rule.stages if not isinstance(s, ir.Limit)))
        pool = comparable_rows(run(unlimited, events, now=NOW), rule)
        if len(have) != len(want):
            return False, f"{len(have)} rows where the rule returns {len(want)}"
        missing = [r for r in have if r not in pool]
        return (not missing, f"a row the rule never returns: {_show(missing[0])}" if missing else "")
    keys = _sort_keys(rule)
    if keys is not None and not _in_order(got, keys):
        return False, "the rows are not in the rule's order"
    want, have = sorted(want, key=repr), sorted(have, key=repr)
    if want == have:
        return True, ""
    extra = [r for r in have if r not in want]
    lacking = [r for r in want if r not in have]
    if extra:
        return False, f"returns a row the rule does not: {_show(extra[0])}"
    if lacking:
        return False, f"lacks a row the rule returns: {_show(lacking[0])}"
    return False, "the same rows in another order"


def _show(row: tuple) -> str:
    text = ", ".join(f"{k}={_plain(v)}" for k, v in row)
    return "{" + (text if len(text) < 300 else text[:297] + "...") + "}"


def _plain(value: Any) -> str:
    if isinstance(value, tuple) and value and value[0] in ("number", "bool", "datetime", "timespan"):
        return str(value[1])
    return repr(value)


# ------------------------------------------------------------------ what alerts


def alerting_events(rows: list[Row]) -> list[int]:
    """The events a target that returns events must alert on: those some row came from."""
    return sorted({i for row in rows for i in getattr(row, "sources", ())})


def correlation_keys(rule: ir.Rule) -> list[str]:
    """The group keys a Sigma correlation keeps: those that are event fields (a key computed
    by an earlier stage, or a time bin, is dropped, as the Sigma backend reports)."""
    from rmmc.compiler.pushdown import computed_columns

    summarize = ir.summarize_of(rule.stages)
    if summarize is None:
        return []
    computed = computed_columns(rule.stages[:rule.stages.index(summarize)])
    return [n for n, e in summarize.group_by if isinstance(e, ir.Field) and e.name not in computed]


def correlation_groups(rule: ir.Rule, events: list[dict[str, Any]]) -> set[tuple]:
    """The groups a Sigma correlation for the rule fires on: the kept key values
    (`correlation_keys`) of the rows that pass the filter right after the summarize."""
    summarize = ir.summarize_of(rule.stages)
    at = rule.stages.index(summarize)
    upto = rule.stages[:at + 1]
    if at + 1 < len(rule.stages) and isinstance(rule.stages[at + 1], ir.Filter):
        upto = rule.stages[:at + 2]
    rows = run(replace(rule, stages=tuple(upto)), events, now=NOW)
    keys = correlation_keys(rule)
    return {tuple(_fold(row.get(k)) for k in keys) for row in rows}


def _fold(value: Any) -> Any:
    """pySigma's sqlite correlation groups by lower() of text keys."""
    from rmmc.compiler.functions import fold

    return fold(value) if isinstance(value, str) else ("" if value is None else value)


# ------------------------------------------------------------------ Sigma correlations on SQLite


def run_sigma_correlation(rule: ir.Rule, text: str, events: list[dict[str, Any]]) -> set[tuple]:
    """The groups pySigma's sqlite backend fires a Sigma correlation on, over `events` a minute
    apart from `NOW` back (inside any timespan the correlation has): the key values as it
    reports them (text keys lower-cased)."""
    import sqlite3

    from rmmc.verify.engines import (_SQLITE_TYPES, EngineError, EngineUnavailable, _sigma_names,
                                     _sqlite_value, sigma_sqlite)

    try:
        from sigma.backends.sqlite import sqliteBackend
        from sigma.collection import SigmaCollection
    except ImportError:
        raise EngineUnavailable("pySigma and pysigma-backend-sqlite are not installed") from None
    try:
        queries = sqliteBackend().convert(SigmaCollection.from_yaml(text))
    except Exception as exc:
        raise EngineError(f"pySigma's sqlite backend refuses it: {str(exc)[:200]}") from None
    if len(queries) != 1:
        raise EngineError("pySigma's sqlite backend gave no single correlation query")
    summarize = ir.summarize_of(rule.stages)
    names = _sigma_names(rule)
    counted = [a.args[0].name for a in (summarize.aggregates if summarize else ())
               if a.args and isinstance(a.args[0], ir.Field)]
    for key in [*(summarize.keys if summarize else ()), *counted]:
        if key not in names:
            names[key] = (_sigma_key(rule, key), ir.Field(key))
    names = {k: v for k, v in names.items() if v[0].lower() != "timestamp"}  # the table's own
    kept = correlation_keys(rule)
    conn = sigma_sqlite()
    try:
        columns = [("timestamp", "TEXT")] + [(s, _SQLITE_TYPES.get(f.type, "TEXT COLLATE NOCASE"))
                                             for s, f in names.values()]
        conn.execute("CREATE TABLE logs (" + ", ".join(f'"{n}" {t}' for n, t in columns) + ")")
        for i, event in enumerate(events):
            stamp = (NOW - timedelta(seconds=len(events) - i)).strftime("%Y-%m-%d %H:%M:%S")
            row = [stamp] + [_sqlite_value(event.get(column)) for column in names]
            conn.execute(f"INSERT INTO logs VALUES ({', '.join('?' * len(row))})", row)
        found = set()
        for (keys,) in conn.execute(f"SELECT group_keys FROM ({queries[0]})"):
            values = json.loads(keys) if keys else {}
            sigma = [names[k][0] for k in kept]
            found.add(tuple(_fold(values.get(s)) for s in sigma))
        return found
    except sqlite3.Error as exc:
        raise EngineError(f"SQLite cannot run pySigma's correlation: {exc}") from None
    finally:
        conn.close()


def _sigma_key(rule: ir.Rule, column: str) -> str:
    from rmmc.backends.sigma.fields import FieldMapper
    from rmmc.compiler.schema import load_schema

    if rule.source.taxonomy == "sigma":
        return column
    table = load_schema().table(rule.source.table) if rule.source.table else None
    return FieldMapper(rule.source.table, table).sigma(column)


# ------------------------------------------------------------------ KQL rows on duckdb-kql

_DUCK_TYPES = {"string": "VARCHAR", "guid": "VARCHAR", "int": "INTEGER", "long": "BIGINT",
               "real": "DOUBLE", "double": "DOUBLE", "decimal": "DOUBLE", "bool": "BOOLEAN",
               "datetime": "TIMESTAMP", "dynamic": "JSON", "timespan": "INTERVAL"}


def _column_type(table_name: str | None, name: str, value: Any) -> str:
    from rmmc.compiler.schema import load_schema

    table = load_schema().table(table_name) if table_name else None
    known = table.column_type(name) if table is not None else None
    if known:
        return known
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "real"
    if isinstance(value, datetime):
        return "datetime"
    return "string"


def run_kql_rows(rule: ir.Rule, text: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a KQL query on duckdb-kql over tables holding `events` (each event in the
    table it names under `ir.TABLE`, or the rule's own).  A rule over several tables gets
    every column of each table rmmc knows, as the real tables have them (a join names its
    columns after both sides' columns)."""
    from rmmc.verify.engines import _UNICODE_ESCAPE, EngineError, EngineUnavailable

    try:
        import duckdb_kql
    except ImportError:
        raise EngineUnavailable("duckdb-kql is not installed") from None
    if _UNICODE_ESCAPE.search(text):  # it reads `\u0001` as the text `u0001`: an engine gap
        raise EngineError("duckdb-kql does not read \\u / \\x escapes in string literals")
    con = duckdb_kql.connect()
    try:
        con.execute("SET TimeZone='UTC'")
    except Exception:  # noqa: BLE001 - not every build knows the setting; UTC is its default
        pass
    readers = tables_read(rule)
    default = rule.source.table or (text.split()[0] if text.split() and not readers else None) or "T"
    if not readers:
        readers = {default: [rule]}
    whole = bool(ir.features(rule)) or len(readers) > 1
    modelled = {c for r in all_rules(rule) for s in r.stages if isinstance(s, ir.Join)
                for c in (*(s.left_columns or ()), *(s.right_columns or ()))}
    for table, rules in readers.items():
        members = [(i, e) for i, e in enumerate(events) if e.get(ir.TABLE, default) == table]
        _create_table(con, table, rules, members, whole, modelled)
    try:
        relation = duckdb_kql.query(con, text)
        columns = list(relation.columns)
        dynamic = [str(t).upper() == "JSON" for t in relation.types]
        rows = relation.fetchall()
    except Exception as exc:  # the engine's own limits (functions it lacks)
        raise EngineError(f"duckdb-kql cannot run it: {type(exc).__name__}: {str(exc)[:200]}") from None
    try:  # a dynamic column comes back as JSON text: its value is what the text says
        return [{c: (json.loads(v) if d and isinstance(v, str) else v) for c, d, v in zip(columns, dynamic, r)}
                for r in rows]
    except ValueError as exc:
        raise EngineError(f"duckdb-kql returned a dynamic value that is no JSON: {exc}") from None


def _create_table(con: Any, table: str, rules: list[ir.Rule], members: list[tuple[int, dict[str, Any]]],
                  whole: bool, modelled: set[str] = frozenset()) -> None:
    """One table of the event set in duckdb: `INDEX` (the event's place in the whole set),
    then the columns the rules read, the events hold and (with `whole`) the table has."""
    from rmmc.compiler.schema import load_schema

    fields: dict[str, ir.Field] = {}
    known = load_schema().table(table)
    if whole and known is not None:
        fields.update((c, ir.Field(c, t)) for c, t in known.columns.items())
        read = {f.name for rule in rules for f in _all_fields(rule)}  # Sentinel's columns the rule names
        read |= modelled  # and those a join of the rule counts among a side's columns
        fields.update((c, ir.Field(c, t)) for c, t in known.sentinel_columns.items() if c in read)
    for rule in rules:
        for f in _all_fields(rule):
            fields.setdefault(f.name, f)
    for _, event in members:  # every column the events hold, as the real table has them all
        for name, value in event.items():
            if name not in fields and name not in (INDEX, ir.TABLE):
                fields[name] = ir.Field(name, _column_type(table, name, value))
    names = list(fields)
    spec = ", ".join([f'"{INDEX}" BIGINT'] + [f'"{n}" {_DUCK_TYPES.get(fields[n].type, "VARCHAR")}' for n in names])
    con.execute(f'CREATE TABLE "{table}" ({spec})')
    rows = []
    for i, event in members:
        row: list[Any] = [i]
        for n in names:
            value, kind = event.get(n), fields[n].type
            if value is None and kind in ("string", "guid"):
                value = ""
            elif kind == "dynamic" and value is not None and not isinstance(value, str):
                value = json.dumps(value)
            elif kind == "dynamic" and isinstance(value, str) and not _is_json(value):
                value = json.dumps(value)  # text that is no JSON: the model reads it as a string
            elif kind == "datetime" and isinstance(value, datetime):
                value = value.astimezone(timezone.utc).replace(tzinfo=None)
            row.append(value)
        rows.append(row)
    if rows:
        con.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(rows[0]))})', rows)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def read_kql_rows(text: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of rmmc's own reading of a KQL query (where duckdb-kql is not installed): the
    text against rmmc's model of it, not against an engine."""
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.verify.engines import EngineError

    lowered = lower_text(text)
    if lowered.rule is None:
        raise EngineError("rmmc cannot read its own KQL back: "
                          + "; ".join(d.message for d in lowered.diagnostics if d.is_error))
    return run(lowered.rule, events, now=NOW)


__all__ = ["INDEX", "NOW", "alerting_events", "correlation_groups", "group_events", "normal",
           "run_kql_rows", "same_rows", "with_time"]
