"""Verifying rules over several sources: events for each table, and the checks of the targets
that say a union or a join their own way.

* Events (`multi_events`): boundary events for each (sub-)rule that reads a table, from its
  detection (a union's own detection joined to each branch's), tagged with the table
  (`ir.TABLE`); the keys each join or subquery matches take shared values (`k1`, `k2`) on
  both sides, always present (as DeviceId is); the right side's times spread around each
  window bound the rule writes (`T`, `T ± 1s`, ...) while the left side's sit at one instant,
  so pairs fall inside, outside, on the bounds and at the same instant.
* KQL: the rows, on duckdb-kql (`whole.run_kql_rows` makes one table per source).
* Sigma: a union's collection, each rule on its own table's events (pySigma's sqlite backend):
  the events it selects are the events the rule's rows came from.  A join's temporal
  correlation on SQLite tables per source (a processing pipeline routes each rule's
  logsource to its table, times as Unix seconds): the groups it fires on are the join-key
  values of the rule's pairs.
* EQL: `any where` over events carrying `event.category`; a sequence's groups by
  `eql_elastic.sequence_groups`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.pushdown import push_filters
from rmmc.compiler.schema import load_schema
from rmmc.verify.engines import EngineError, EngineUnavailable
from rmmc.verify.verdicts import events_verdict, groups_verdict
from rmmc.verify.events import boundary_events
from rmmc.verify.whole import NOW, all_rules, alerting_events

KEYS = ("k1", "k2", "k3")  # the right side of a join or subquery takes the first two only
_DYNAMIC = ("AdditionalFields",)


def is_multi(rule: ir.Rule) -> bool:
    return bool(ir.features(rule))


# ------------------------------------------------------------------ events


def _readers(rule: ir.Rule) -> list[ir.Rule]:
    """Each (sub-)rule that reads a table, its detection joined with its enclosing unions'."""
    from rmmc.compiler.branches import NotSplit, split_union

    out: list[ir.Rule] = []

    def visit(current: ir.Rule) -> None:
        if current.union is not None:
            filters = []  # the row stages before any aggregation, join ...
            for stage in current.stages:
                if not isinstance(stage, (ir.Filter, *ir.ROW_STAGES)):
                    break
                filters.append(stage)
            filters = tuple(filters)
            try:
                parts = [part for _, part in split_union(replace(current, stages=filters))]
            except NotSplit:
                parts = list(current.union.branches)
            for part in parts:
                visit(part)
        elif current.source.table:
            out.append(push_filters(current))
        for stage in current.stages:
            if isinstance(stage, ir.Join):
                visit(stage.right)
        for node in ir.walk(current.condition):
            if isinstance(node, ir.InSubquery) and node.rule is not None:
                visit(node.rule)

    visit(rule)
    return out


def caveats(rule: ir.Rule) -> list[str]:
    """Where Kusto leaves a result to the engine, or duckdb-kql reads a construct otherwise
    than Kusto documents (tests/test_multi_table.py): a difference on KQL there is no verdict."""
    from rmmc.compiler.schema import load_schema

    found = []
    for current in all_rules(rule):
        for stage in current.stages:
            if isinstance(stage, ir.Join) and stage.kind == "innerunique" and not stage.lookup:
                found.append("innerunique keeps one arbitrary left row per key (the model the first, "
                             "duckdb-kql another)")
            if isinstance(stage, ir.Join) and stage.kind in ("leftouter", "rightouter", "fullouter"):
                found.append(f"a {stage.kind} join fills the other side's string columns: '' in Kusto "
                             "(strings are never null), NULL in duckdb-kql")
        if current.union is not None:
            tables = [load_schema().table(b.source.table or "") for b in current.union.branches]
            if any(t is None for t in tables) or len({frozenset(t.columns) for t in tables}) > 1:
                found.append("a union fills a string column one source lacks: '' in Kusto (strings are "
                             "never null), NULL in duckdb-kql")
    return list(dict.fromkeys(found))


def _key_columns(rule: ir.Rule) -> dict[str, set[str]]:
    """Per table, the event fields a join or subquery matches on."""
    from rmmc.compiler.correlate import raw_column

    found: dict[str, set[str]] = {}
    for current in all_rules(rule):
        table = current.source.table
        for i, stage in enumerate(current.stages):
            if isinstance(stage, ir.Join):
                right = stage.right
                for left_key, right_key in stage.keys:
                    a = raw_column(current.stages[:i], left_key)
                    b = raw_column(right.stages, right_key)
                    if table and a:
                        found.setdefault(table, set()).add(a)
                    if right.source.table and b:
                        found.setdefault(right.source.table, set()).add(b)
        for node in ir.walk(current.condition):
            if isinstance(node, ir.InSubquery) and node.rule is not None and isinstance(node.field, ir.Field):
                if table:
                    found.setdefault(table, set()).add(node.field.name)
                raw = raw_column(node.rule.stages, node.column) if node.column else None
                if node.rule.source.table and raw:
                    found.setdefault(node.rule.source.table, set()).add(raw)
    return found


def _windows(rule: ir.Rule) -> list[timedelta]:
    spans: set[timedelta] = set()
    for current in all_rules(rule):
        if not any(isinstance(s, ir.Join) for s in current.stages):
            continue
        for stage in current.stages:
            if isinstance(stage, ir.Filter):
                for node in ir.walk(stage.condition):
                    for expr in _exprs(node):
                        if isinstance(expr, ir.Literal) and isinstance(expr.value, timedelta):
                            spans.add(abs(expr.value))
                    if isinstance(node, ir.Predicate):
                        spans.update(abs(v) for v in node.values if isinstance(v, timedelta))
    return sorted(spans)


def _exprs(node: Any) -> list[Any]:
    out, stack = [], []
    if isinstance(node, ir.Compare):
        stack = [node.left, node.right]
    elif isinstance(node, ir.Predicate):
        stack = [node.field]
    while stack:
        expr = stack.pop()
        out.append(expr)
        if isinstance(expr, ir.Call):
            stack.extend(expr.args)
    return out


def _right_tables(rule: ir.Rule) -> set[str]:
    """The tables a join's right side or a subquery reads."""
    out = set()
    for current in all_rules(rule):
        for stage in current.stages:
            if isinstance(stage, ir.Join) and stage.right.source.table:
                out.add(stage.right.source.table)
        for node in ir.walk(current.condition):
            if isinstance(node, ir.InSubquery) and node.rule is not None and node.rule.source.table:
                out.add(node.rule.source.table)
    return out


def multi_events(rule: ir.Rule, sample: int = 40) -> list[dict[str, Any]]:
    """Tagged events around every source's values (see the module docstring)."""
    keys = _key_columns(rule)
    windows = _windows(rule)
    offsets = sorted({timedelta(0), timedelta(seconds=1), -timedelta(seconds=1),
                      *(d for w in windows for d in (w, w - timedelta(seconds=1), w + timedelta(seconds=1), -w))})
    lookbacks = [r.lookback.window for r in all_rules(rule) if r.lookback is not None]
    base = NOW - (min(lookbacks) / 2 if lookbacks else timedelta(hours=1))
    right = _right_tables(rule)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for reader in _readers(rule):
        table = reader.source.table
        if table in seen:
            continue
        seen.add(table)
        same = [r for r in _readers(rule) if r.source.table == table]
        merged = replace(reader, condition=ir.any_of([r.condition for r in same]) if len(same) > 1 else reader.condition)
        events = boundary_events(merged, sample=sample)
        for j, event in enumerate(events):
            event = dict(event)
            event[ir.TABLE] = table
            pool = KEYS[:2] if table in right else KEYS
            schema_table = load_schema().table(table)
            for column in sorted(keys.get(table, ())):
                kind = schema_table.column_type(column) if schema_table is not None else None
                value = pool[j % len(pool)]
                if kind in ("int", "long", "real"):
                    event[column] = int(value[1:])
                elif kind == "datetime":
                    event[column] = base - timedelta(minutes=int(value[1:]))
                elif kind in (None, "string", "guid"):
                    event[column] = value
            if "Timestamp" not in event or not hasattr(event["Timestamp"], "tzinfo"):
                shift = offsets[j % len(offsets)] if table in right and offsets else timedelta(0)
                event["Timestamp"] = base + shift
            out.append(nest_paths(event))
    if rule.union is not None and ir.summarize_of(rule.stages) is not None:
        from rmmc.verify.whole import group_events

        out = group_events(rule, out)  # groups around the thresholds, as for one table
    return out + _feed_events(rule, out, sample)


def _feed_tests(rule: ir.Rule) -> list[tuple[ir.Rule, ir.InSubquery]]:
    """(the rule testing, the test) for each `x in (<externaldata feed> ...)` of a plain field."""
    return [(current, node) for current in all_rules(rule)
            for condition in (current.condition, *(s.condition for s in current.stages if isinstance(s, ir.Filter)))
            for node in ir.walk(condition)
            if isinstance(node, ir.InSubquery) and node.rule is not None and isinstance(node.field, ir.Field)
            and node.rule.source.external is not None]


def _feed_events(rule: ir.Rule, events: list[dict[str, Any]], sample: int) -> list[dict[str, Any]]:
    """For each feed test: the feed's rows (events tagged with its first URI: boundary rows of
    its own filters, and the keys), and copies of a tested event whose field holds each feed
    value and the value in other case, so matches, case variants and misses all occur.  A
    feed value '' is left out (no Sigma placeholder list can say it: `rmmc placeholders`
    refuses it)."""
    from rmmc.compiler.correlate import raw_column
    from rmmc.compiler.rows import output_column, run

    out: list[dict[str, Any]] = []
    for current, node in _feed_tests(rule):
        table = node.rule.source.external
        column = node.column or output_column(node.rule) or table.columns[0][0]
        raw = raw_column(node.rule.stages, column) or column
        declared = dict(table.columns)
        if declared.get(raw) not in ("string", "guid"):
            continue
        rows = [dict(e) for e in boundary_events(push_filters(node.rule), sample=sample)]
        rows += [{raw: key} for key in KEYS[:2]]
        tagged = [{ir.TABLE: table.uris[0], **r} for r in rows]
        try:
            kept = [rows[i] for row in run(node.rule, tagged) for i in row.sources]
        except (ValueError, TypeError):
            kept = []
        rows = _digest_rows(rows, raw, kept) + rows
        values: list[str] = []
        for row in rows:
            if not isinstance(row.get(raw), str) or row[raw] == "":
                continue
            out.append({ir.TABLE: table.uris[0], **{k: v for k, v in row.items() if k in declared}})
            if row[raw] not in values:
                values.append(row[raw])
        tested = [e for e in events if e.get(ir.TABLE) == current.source.table]
        if not tested:
            continue
        for value in values[:12]:
            for variant in dict.fromkeys((value, value.swapcase())):
                out.append({**tested[0], node.field.name: variant})
    return out + _joined_feed_rows(rule, sample)


def _joined_feed_rows(rule: ir.Rule, sample: int) -> list[dict[str, Any]]:
    """For each join with an external feed (either side): feed rows (tagged with its first URI)
    whose key is the first key the events hold and the second in other case (keys match
    case-sensitively), plain and on the boundary rows of the feed's own filters."""
    from rmmc.compiler.correlate import raw_column

    out: list[dict[str, Any]] = []
    for current in all_rules(rule):
        for i, stage in enumerate(current.stages):
            if not isinstance(stage, ir.Join) or len(stage.keys) != 1:
                continue
            (left_key, right_key), = stage.keys
            if stage.right.source.external is not None:
                feed, table, key = stage.right, stage.right.source.external, raw_column(stage.right.stages, right_key)
            elif current.source.external is not None:
                feed = replace(current, stages=current.stages[:i])
                table, key = current.source.external, raw_column(current.stages[:i], left_key)
            else:
                continue
            declared = dict(table.columns)
            if key is None or declared.get(key) not in ("string", "guid"):
                continue
            rows = [{}] + [dict(e) for e in boundary_events(push_filters(feed), sample=sample)]
            for row in rows:
                for value in (KEYS[0], KEYS[1].upper()):
                    out.append({ir.TABLE: table.uris[0], **{k: v for k, v in row.items() if k in declared},
                                key: value})
    return out


def _digest_rows(rows: list[dict[str, Any]], raw: str, kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of a feed row whose value is hex of each digest's length (MD5, SHA1, SHA256; in
    lower and upper case): an environment puts a tested digest column into that domain
    (`forms.Item.normalize`), so a feed of digests then still matches some events.  Made from
    a row the subquery keeps (`kept`), else from any."""
    import hashlib

    row = next(iter(kept), None) or next((r for r in rows if isinstance(r.get(raw), str) and r[raw]), None)
    if row is None:
        return []
    digest = hashlib.sha256(f"{raw}={row.get(raw)}".encode("utf-8", "surrogatepass")).hexdigest()
    return [{**row, raw: digest[:size].upper()} for size in (32, 40, 64)] \
        + [{**row, raw: digest[-size:]} for size in (32, 40, 64)]


def nest_paths(event: dict[str, Any]) -> dict[str, Any]:
    """An event whose generated keys name a path (`AdditionalFields.x`) also holds the value
    inside its dynamic column, as Defender's event does (the flat key stays: other targets
    read it as the field JSON extraction names)."""
    for key in list(event):
        head, dot, rest = key.partition(".")
        if dot and head in _DYNAMIC and "." not in rest and not isinstance(event.get(head), str):
            bag = dict(event.get(head) or {})
            bag[rest] = event[key]
            event[head] = bag
    return event


# ------------------------------------------------------------------ Sigma


def _table_events(events: list[dict[str, Any]], table: str | None) -> list[tuple[int, dict[str, Any]]]:
    return [(i, {k: v for k, v in e.items() if k != ir.TABLE}) for i, e in enumerate(events)
            if e.get(ir.TABLE) == table]


def sigma_with_placeholders(rule: ir.Rule, text: str, events: list[dict[str, Any]],
                            source_events: list[dict[str, Any]]) -> list[int]:
    """The events a Sigma rule with feed placeholders selects: the placeholders filled from the
    feed rows of the event set (`source_events`: a feed's columns are its own in every
    environment; `rmmc.backends.sigma.fill`, with the pipeline that keeps `|cased`), the rule
    run on its own table's events as its environment holds them (`events`)."""
    import yaml

    from rmmc.backends.sigma.fill import FillError, pipeline, pysigma_pipeline
    from rmmc.verify.engines import run_sigma_engine

    try:
        body, _ = pipeline(list(yaml.safe_load_all(text)), None, source_events)
        filled = pysigma_pipeline(body)
    except FillError as exc:
        raise EngineError(f"the placeholders cannot be filled: {exc}") from None
    own = _table_events(events, rule.source.table)
    got = run_sigma_engine(rule, text, [e for _, e in own], filled)
    return sorted(own[i][0] for i in got)


def sigma_union(rule: ir.Rule, text: str, events: list[dict[str, Any]],
                source_events: list[dict[str, Any]] | None = None) -> list[int]:
    """The events a union's Sigma collection alerts on, each rule over its own table (its
    feed placeholders filled from the feed rows of `source_events`, as
    `sigma_with_placeholders` does)."""
    import yaml

    from rmmc.backends.sigma.fill import FillError, pipeline, placeholders_of, pysigma_pipeline
    from rmmc.compiler.branches import split_union
    from rmmc.verify.engines import run_sigma_engine

    from rmmc.backends.sigma.backend import without_final_sorts

    documents = [d for d in yaml.safe_load_all(text) if d and "correlation" not in d]
    parts = split_union(without_final_sorts(rule)[0])  # the order is no alert's business
    if len(documents) != len(parts):
        raise EngineError("the Sigma collection does not hold one rule per source")
    filled = None
    if placeholders_of(documents):
        try:
            filled = pysigma_pipeline(pipeline(documents, None, source_events or [])[0])
        except FillError as exc:
            raise EngineError(f"the placeholders cannot be filled: {exc}") from None
    selected: set[int] = set()
    for document, (_, part) in zip(documents, parts):
        members = _table_events(events, part.source.table)
        got = run_sigma_engine(push_filters(part), yaml.safe_dump(document, sort_keys=False),
                               [e for _, e in members], filled)
        selected.update(members[k][0] for k in got)
    return sorted(selected)


def expected_groups(rule: ir.Rule, events: list[dict[str, Any]], fold: bool) -> set[tuple]:
    """The join-key values of the pairs the join (with its window) keeps."""
    from rmmc.compiler.correlate import correlation
    from rmmc.compiler.functions import fold as fold_text
    from rmmc.compiler.rows import run

    found = correlation(rule)
    pushed = push_filters(rule)
    at = next(i for i, s in enumerate(pushed.stages) if isinstance(s, ir.Join))
    upto = list(pushed.stages[:at + 1])
    for stage in pushed.stages[at + 1:]:
        if not isinstance(stage, ir.Filter):
            break
        upto.append(stage)
    rows = run(replace(pushed, stages=tuple(upto)), events, now=NOW)
    names = [left for left, _ in found.join.keys]

    def norm(v: Any) -> Any:
        return fold_text(v) if fold and isinstance(v, str) else ("" if v is None else v)

    return {tuple(norm(row.get(n)) for n in names) for row in rows}


def sigma_correlation(rule: ir.Rule, text: str, events: list[dict[str, Any]]) -> set[tuple]:
    """The groups a join's Sigma correlation fires on, on SQLite tables per source."""
    from rmmc.compiler.correlate import correlation

    found = correlation(rule)
    lefts, rights = zip(*found.keys)
    return sigma_groups(text, events, [found.left, found.right], [list(lefts), list(rights)])


def sigma_union_groups(rule: ir.Rule, text: str, events: list[dict[str, Any]]) -> set[tuple]:
    """The groups the correlation over a union's rules fires on."""
    from rmmc.compiler.branches import split_union
    from rmmc.verify.whole import correlation_keys

    at = next(i for i, s in enumerate(rule.stages) if isinstance(s, ir.Summarize))
    summarize = rule.stages[at]
    parts = [part for _, part in split_union(replace(rule, stages=rule.stages[:at]))]
    keys = correlation_keys(rule)
    columns = [e.name for n, e in summarize.group_by if n in keys and isinstance(e, ir.Field)]
    counted = [a.args[0].name for a in summarize.aggregates
               if a.function == "dcount" and a.args and isinstance(a.args[0], ir.Field)]
    return sigma_groups(text, events, parts, [columns] * len(parts), counted)


def sigma_groups(text: str, events: list[dict[str, Any]], sides: list[ir.Rule], keys: list[list[str]],
                 extra: list[str] = ()) -> set[tuple]:
    """The group keys (the first side's key fields, folded as pySigma's sqlite backend groups)
    the collection's correlation fires on, each rule on its own source's table."""
    try:
        from sigma.backends.sqlite import sqliteBackend
        from sigma.collection import SigmaCollection
        from sigma.processing.conditions import LogsourceCondition
        from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
        from sigma.processing.transformations import SetStateTransformation
    except ImportError:
        raise EngineUnavailable("pySigma and pysigma-backend-sqlite are not installed") from None
    import yaml

    from rmmc.backends.sigma.fields import FieldMapper
    from rmmc.compiler.correlate import correlation
    from rmmc.compiler.functions import fold
    from rmmc.compiler.schema import load_schema
    from rmmc.verify.engines import _regexp, _sqlite_value, sqlite_like, sqlite_nocase

    documents = [d for d in yaml.safe_load_all(text) if d]
    items, tables = [], []
    for document, side in zip(documents[:len(sides)], sides):
        logsource = {k: v for k, v in document.get("logsource", {}).items() if k in ("product", "category", "service")}
        table = f"t_{side.source.table}"
        tables.append(table)
        items.append(ProcessingItem(SetStateTransformation("table", table),
                                    rule_conditions=[LogsourceCondition(**logsource)]))

    try:
        backend = sqliteBackend(ProcessingPipeline(items=items), timestamp_format="unix")
        queries = backend.convert(SigmaCollection.from_yaml(text))
    except Exception as exc:
        raise EngineError(f"pySigma's sqlite backend refuses it: {str(exc)[:200]}") from None
    correlation_queries = [q for q in queries if "group_keys" in str(q)] or queries[-1:]
    conn = sqlite3.connect(":memory:")
    try:
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        conn.create_collation("NOCASE", sqlite_nocase)
        conn.create_function("like", 2, sqlite_like, deterministic=True)
        conn.create_function("like", 3, sqlite_like, deterministic=True)
        key_names = []
        made: set[str] = set()
        for side, table, side_keys in zip(sides, tables, keys):
            schema_table = load_schema().table(side.source.table)
            mapper = FieldMapper(side.source.table, schema_table, side.source.taxonomy)
            columns: dict[str, str] = {}
            for p in ir.walk_predicates(push_filters(side).condition):
                if isinstance(p.field, ir.Field):
                    columns.setdefault(mapper.sigma(p.field.name), p.field.name)
            for key in [*side_keys, *extra]:
                columns.setdefault(mapper.sigma(key), key)
            columns = {k: v for k, v in columns.items() if k.lower() != "timestamp"}  # the table's own
            key_names.append([mapper.sigma(k) for k in side_keys])
            if table in made:
                continue  # a self-join: one table
            made.add(table)
            spec = ", ".join(['"timestamp" REAL'] + [f'"{c}" TEXT COLLATE NOCASE' for c in columns])
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({spec})')
            for _, event in _table_events(events, side.source.table):
                stamp = event.get("Timestamp")
                row = [stamp.timestamp() if hasattr(stamp, "timestamp") else None] + \
                      [_sqlite_value(event.get(column)) for column in columns.values()]
                conn.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(row))})', row)
        groups: set[tuple] = set()
        for (keys,) in conn.execute(f"SELECT group_keys FROM ({correlation_queries[0]})"):
            values = json.loads(keys) if keys else {}
            groups.add(tuple(fold(values.get(k)) if isinstance(values.get(k), str) else
                             ("" if values.get(k) is None else values.get(k)) for k in key_names[0]))
        return groups
    except sqlite3.Error as exc:
        raise EngineError(f"SQLite cannot run pySigma's correlation: {exc}") from None
    finally:
        conn.close()


# ------------------------------------------------------------------ EQL


def eql_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event with its `event.category`, from its table's kind of event (as EQL reads it)."""
    from rmmc.backends.eql import CATEGORIES
    from rmmc.compiler.schema import load_schema

    out = []
    for event in events:
        event = {k: v for k, v in event.items() if v is not None and k != ir.TABLE}
        table = load_schema().table(events[len(out)].get(ir.TABLE) or "")
        if table is not None:
            try:
                kind = ir.EventKind(table.event_kind)
            except ValueError:
                kind = ir.EventKind.UNKNOWN
            if kind in CATEGORIES:
                event["event.category"] = CATEGORIES[kind]
        out.append(event)
    return out


def eql_union(text: str, events: list[dict[str, Any]]) -> list[int]:
    from rmmc.verify.eql_elastic import select

    return select(text, eql_events(events))


def eql_sequence(text: str, events: list[dict[str, Any]], time_field: str = "Timestamp") -> set[tuple]:
    from rmmc.verify.eql_elastic import sequence_groups

    times = [e[time_field].timestamp() if hasattr(e.get(time_field), "timestamp") else 0.0 for e in events]
    return sequence_groups(text, eql_events(events), times)


def check(target: str, source: ir.Rule, rule: ir.Rule, text: str, events: list[dict[str, Any]],
          shaped: list[dict[str, Any]], expected: list[Any], time_field: str = "Timestamp"):
    """(agree, detail, counterexample, in source) of one target over a multi-table event set,
    or None when the target has no multi-table check here.  `source` reads `events` (its own
    convention); `rule` is its translation's environment's adaptation, which the engine runs
    on `shaped` (the same events as that environment holds them, one for one)."""
    if target == "sigma" and rule.union is not None and ir.summarize_of(rule.stages) is not None:
        from rmmc.verify.whole import correlation_groups

        return groups_verdict(correlation_groups(source, events), sigma_union_groups(rule, text, shaped))
    if target == "sigma" and rule.union is not None:
        wanted, got = alerting_events(expected), sigma_union(rule, text, shaped, events)
        return events_verdict(wanted, got, events)
    if target == "sigma" and any(isinstance(s, ir.Join) for s in rule.stages):
        return groups_verdict(expected_groups(source, events, fold=True), sigma_correlation(rule, text, shaped))
    if target == "sigma" and rule.union is None and _feed_tests(rule) \
            and not any(isinstance(s, ir.Join) for s in rule.stages):
        # a feed row a joined row came from is no event (the join with a feed: feed_joins)
        wanted = [i for i in alerting_events(expected) if events[i].get(ir.TABLE) == rule.source.table]
        return events_verdict(wanted, sigma_with_placeholders(push_filters(rule), text, shaped, events),
                              events)
    if target == "sigma" and rule.union is None and ir.PARSE in ir.features(rule) \
            and not any(isinstance(s, ir.Join) for s in rule.stages):
        from rmmc.backends.sigma.backend import _without_parse
        from rmmc.verify.engines import run_sigma_engine

        stripped, said = _without_parse(rule)  # a parse before shape-only stages: dropped
        if said is None:
            return None
        own = _table_events(shaped, rule.source.table)
        got = run_sigma_engine(push_filters(stripped), text, [e for _, e in own])
        wanted = [i for i in alerting_events(expected) if events[i].get(ir.TABLE) == rule.source.table]
        return events_verdict(wanted, sorted(own[k][0] for k in got), events)
    if target == "eql" and rule.union is not None:
        return events_verdict(alerting_events(expected), eql_union(text, shaped), events)
    if target == "eql" and any(isinstance(s, ir.Join) for s in rule.stages):
        return groups_verdict(expected_groups(source, events, fold=False), eql_sequence(text, shaped, time_field))
    return None
