"""The whole query in ES|QL: the rows a translated rule returns equal the reference's rows.

Each test runs rmmc's ES|QL on `tests/esql_interp.py` (ES|QL's documented semantics, raising
`Undocumented` on edges the documentation leaves open) and compares the rows with
`rmmc.compiler.rows.run` (the reference evaluator's meaning of every stage).  Rows are compared
as KQL shows them: a datetime as epoch seconds, a missing string as '' (KQL's strings are never
null), numbers as numbers, what `VALUES` / `make_set` collected as a sorted tuple (its order is
output shape); rows as a multiset (STATS orders groups its own way), and after a `Sort` the
sequence of sort keys too.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rmmc
from esql_interp import Undocumented, run as esql_rows, tokens
from rmmc.backends import emit
from rmmc.backends.base import EmitOptions
from rmmc.backends.esql.backend import emit_esql
from rmmc.backends.esql.expr import ZERO_TO_1970
from rmmc.compiler import ir
from rmmc.compiler.ir import (Aggregate, And, Boolean, Call, Compare, Const, EventKind, Extend, Field, Filter,
                              Limit, Literal, Metadata, Not, Op, Or, Predicate, Project, ProjectAway, Rename,
                              Reorder, Rule, Sort, SortKey, Source, Summarize)
from rmmc.compiler.rows import run as reference_rows
from rmmc.compiler.schema.profiles import load_profile

TABLE = "DeviceNetworkEvents"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2024, 1, 2, 12, 0, tzinfo=timezone.utc)
T0 = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
SCHEMA = {"RemoteUrl": "string", "DeviceName": "string", "RemotePort": "int", "Timestamp": "datetime"}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rule_of(stages, condition=Const(True)) -> Rule:
    return Rule(Metadata(title="t"), Source(TABLE, EventKind.NETWORK), condition, None, (), tuple(stages))


def esql_name(column: str, fields: str) -> str:
    """The ES|QL column of a KQL column in a profile (as the backend names what it writes)."""
    return load_profile(fields).field(TABLE, column) or column


def to_esql(event: dict, fields: str = "ecs") -> dict:
    """An event as an Elasticsearch document: each column under its profile's field; a missing
    value is no field (null in ES|QL)."""
    return {esql_name(k, fields): v for k, v in event.items() if v is not None}


def normal(value, kind: str):
    if kind == "dynamic":
        if value is None:
            return ()  # nothing collected: KQL's [], ES|QL's null (shape)
        values = value if isinstance(value, (list, tuple)) else [value]
        return tuple(sorted(repr(v) for v in values))
    if isinstance(value, datetime):
        return (value - EPOCH).total_seconds()
    if kind == "string":
        return "" if value is None else value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return round(float(value), 9)
    return value


def column_types(rule: Rule) -> dict[str, str]:
    """Each column's KQL type after the rule's stages (for reading a missing value)."""
    types = dict(SCHEMA)
    for stage in rule.stages:
        if isinstance(stage, (Extend, Project)):
            made = {n: e.type for n, e in stage.columns}
            types = {**types, **made} if isinstance(stage, Extend) else made
        elif isinstance(stage, Summarize):
            made = {n: e.type for n, e in stage.group_by}
            for agg in stage.aggregates:
                first = agg.args[0].type if agg.args and not isinstance(agg.args[0], Boolean) else "long"
                made[agg.name] = {"make_set": "dynamic", "make_set_if": "dynamic", "make_list": "dynamic",
                                  "avg": "real", "avgif": "real"}.get(
                    agg.function, first if agg.function in ("min", "max", "minif", "maxif", "sum", "sumif")
                    else "long")
            types = made
        elif isinstance(stage, ProjectAway):
            types = {n: t for n, t in types.items() if n not in stage.patterns}
        elif isinstance(stage, Rename):
            for new, old in stage.pairs:
                types[new] = types.pop(old, "string")
    return types


def kql_view(row: dict, types: dict[str, str], fields: str | None = None) -> tuple:
    out = {}
    for name, kind in types.items():
        key = esql_name(name, fields) if fields else name
        out[name] = normal(row.get(key), "string" if kind in ("string", "guid") else kind)
    return tuple(sorted(out.items()))


def check_structure(text: str) -> None:
    """One command a line, each read by ES|QL's lexer; every value inside a string literal (no
    control character outside one, no `|` outside one: no value can add a command)."""
    lines = text.split("\n")
    assert lines[0].startswith("FROM ") and all(line.startswith("| ") for line in lines[1:]), text
    for line in lines:
        for tok in tokens(line[2:] if line.startswith("| ") else line):
            assert tok.kind == "str" or not re.search(r"[\x00-\x1f\x7f|]", tok.text), (tok, line)


def compare(rule: Rule, events: list[dict], fields: str = "ecs") -> str:
    """Run both and assert the same rows; return the ES|QL."""
    t = emit_esql(rule, fields=fields)
    assert t.ok, [d.message for d in t.diagnostics]
    check_structure(t.text)
    assert not [d for d in t.diagnostics if d.code == "lossy"], [d.message for d in t.diagnostics]
    types = column_types(rule)
    want = [kql_view(r, types) for r in reference_rows(rule, events, now=NOW)]
    have = [kql_view(r, types, fields) for r in esql_rows(t.text, [to_esql(e, fields) for e in events], now=NOW)]
    sorts = [s for s in rule.stages if isinstance(s, Sort)]
    keys = [k.expr.name for k in sorts[-1].keys if isinstance(k.expr, Field)] if sorts else []
    pick = lambda rows: [[dict(r)[k] for k in keys] for r in rows]  # noqa: E731
    if rule.stages and isinstance(rule.stages[-1], Limit):
        # take after sort: which of the rows tied on the keys are kept is KQL's choice too
        assert len(have) == len(want) and pick(have) == pick(want), t.text
        return t.text
    assert sorted(have, key=repr) == sorted(want, key=repr), t.text
    if sorts and rule.stages[-1] is sorts[-1]:
        assert pick(have) == pick(want), t.text
    return t.text


# ------------------------------------------------------------------ the issue's query


ISSUE_QUERY = """DeviceNetworkEvents
| where RemoteUrl has_any ('remotepc.com', 'signalserver.xyz')
| extend RemoteUrl = trim_start(@'http[s]?://', RemoteUrl)
| extend RemoteUrl = tostring(split(RemoteUrl, '/')[0])
| project RemoteUrl"""

# Checked by hand: the WHERE is KQL's has_any (term regexes on the lower-cased url); each
# extend is one EVAL in order after it, so the filter tests the raw url as the source does.
# trim_start is KQL's `^(R)` removed: R as a Java regex (`:` and `/` escaped, literal in Java),
# in REPLACE; segment 0 of the split is group 1 of a Java regex that matches every text (the
# text before the first '/', or all of it); the second EVAL reads the column the first made,
# never null, so without COALESCE.  project is KEEP; LIMIT 10000 lifts ES|QL's default 1,000.
ISSUE_ESQL = r'''FROM logs-* METADATA _id, _version, _index
| WHERE TO_LOWER(destination.domain) LIKE "*remotepc.com*" OR TO_LOWER(destination.domain) LIKE "*signalserver.xyz*"
| WHERE TO_LOWER(COALESCE(destination.domain, "")) RLIKE "(remotepc\\.com|.*[^0-9a-z]remotepc\\.com)([^0-9a-z].*)?" OR TO_LOWER(COALESCE(destination.domain, "")) RLIKE "(signalserver\\.xyz|.*[^0-9a-z]signalserver\\.xyz)([^0-9a-z].*)?"
| EVAL destination.domain = REPLACE(COALESCE(destination.domain, ""), "^(?:http[s]?\\:\\/\\/)", "")
| EVAL destination.domain = REPLACE(destination.domain, "^([\\s\\S]*?)(?:\\/[\\s\\S]*)?\\z", "$1")
| KEEP destination.domain, _id, _version, _index
| LIMIT 10000'''


def test_issue_query_keeps_its_order():
    rule = rmmc.lower_text(ISSUE_QUERY).rule
    events = [{"RemoteUrl": "https://evil.example/remotepc.com", "Timestamp": T0},
              {"RemoteUrl": "http://remotepc.com/a/b", "Timestamp": T0},
              {"RemoteUrl": "remotepc.com", "Timestamp": T0},
              {"RemoteUrl": "x.signalserver.xyz/q", "Timestamp": T0},
              {"RemoteUrl": "notremotepc.com", "Timestamp": T0}, {"Timestamp": T0}]
    text = compare(rule, events)
    assert text == ISSUE_ESQL
    rows = esql_rows(text, [to_esql(e) for e in events], now=NOW)
    assert [r["destination.domain"] for r in rows] == ["evil.example", "remotepc.com", "remotepc.com",
                                                        "x.signalserver.xyz"]


def test_all_tools_rule(shared_dir):
    path = shared_dir / "corpus" / "rmm" / "Network Indicators" / "rmm__all_netconn.yaml"
    if not path.exists():
        pytest.skip("the all-tools rule is absent")
    # the issue's other example: extends that rewrite RemoteUrl after the filter, then a summarize
    # AccountUpn (a summarize key) is no Winlogbeat field: written under its own name here, the
    # subject being the stages' order, not the environment
    result = rmmc.translate(path.read_text(), to="esql", allow_unknown_fields=True)
    assert result.ok and "| STATS FirstSeen = MIN(@timestamp)" in result.text
    assert not [d.message for d in result.diagnostics if d.is_error or d.code == "lossy"]
    lines = result.text.splitlines()
    where = next(i for i, line in enumerate(lines) if line.startswith("| WHERE") and "destination.domain" in line)
    assert where < next(i for i, line in enumerate(lines) if line.startswith("| EVAL destination.domain ="))


# ------------------------------------------------------------------ stages, checked by hand


def test_extend_reads_the_row_before_it():
    # KQL: every column of one extend is computed from the row before it, so `b` sees the old
    # RemoteUrl; ES|QL's EVAL would see the new one: temporaries keep KQL's meaning, then
    # each is set onto its column and dropped
    url = Field("RemoteUrl")
    stage = Extend((("RemoteUrl", Call("toupper", (url,), "string")),
                    ("b", Call("strcat", (url, Literal("!")), "string"))))
    rule = rule_of([stage])
    text = compare(rule, [{"RemoteUrl": "ab", "Timestamp": T0}, {"Timestamp": T0}])
    assert text == ('FROM logs-* METADATA _id, _version, _index\n| EVAL rmmc_t1 = TO_UPPER(COALESCE(destination.domain, "")), '
                    'rmmc_t2 = CONCAT(COALESCE(destination.domain, ""), "!")\n'
                    '| EVAL destination.domain = rmmc_t1, b = rmmc_t2\n| DROP rmmc_t1, rmmc_t2\n| LIMIT 10000')


def test_threshold_after_stats_counts_exactly():
    # summarize dcount(RemoteUrl) by DeviceName | where n >= 2: the threshold reads the count,
    # so it is exact (MV_COUNT of VALUES, not the approximate COUNT_DISTINCT); a missing url is
    # '' in KQL, one value; a missing device is the '' group
    rule = rmmc.lower_text("DeviceNetworkEvents | summarize n = dcount(RemoteUrl) by DeviceName "
                           "| where n >= 2").rule
    events = [{"DeviceName": "a", "RemoteUrl": "x", "Timestamp": T0},
              {"DeviceName": "a", "RemoteUrl": "y", "Timestamp": T0},
              {"DeviceName": "b", "RemoteUrl": "x", "Timestamp": T0},
              {"DeviceName": "b", "Timestamp": T0},
              {"RemoteUrl": "z", "Timestamp": T0}, {"RemoteUrl": "", "DeviceName": "", "Timestamp": T0},
              {"DeviceName": "c", "RemoteUrl": "x", "Timestamp": T0}]
    text = compare(rule, events)
    assert text == ('FROM logs-*\n| STATS n = COALESCE(MV_COUNT(VALUES(COALESCE(destination.domain, ""))), 0) '
                    'BY host.name = COALESCE(host.name, "")\n| KEEP host.name, n\n| WHERE n >= 2\n| LIMIT 10000')
    rows = esql_rows(text, [to_esql(e) for e in events], now=NOW)
    assert sorted(r["host.name"] for r in rows) == ["", "a", "b"]
    t = emit_esql(rule)
    assert [d.code for d in t.diagnostics if "VALUES" in d.message] == ["note"]


def test_count_by_time_bin_and_number_key():
    # a null port is a group of its own in both; bin(Timestamp, 1h) is DATE_TRUNC, named by a
    # temporary since MIN reads @timestamp too, renamed after STATS; `first` is a keyword of
    # ES|QL (NULLS FIRST), so it is quoted
    rule = rmmc.lower_text("DeviceNetworkEvents | summarize c = count(), s = sum(RemotePort), "
                           "first = min(Timestamp) by RemotePort, bin(Timestamp, 1h) | where c > 1").rule
    events = [{"RemotePort": 1, "Timestamp": at(0)}, {"RemotePort": 1, "Timestamp": at(59)},
              {"RemotePort": 1, "Timestamp": at(61)}, {"Timestamp": at(1)}, {"Timestamp": at(2)}]
    text = compare(rule, events)
    assert ("| STATS c = COUNT(*), s = SUM(destination.port), `first` = MIN(@timestamp) BY destination.port, "
            "rmmc_t1 = DATE_TRUNC(1 hour, @timestamp)\n| RENAME rmmc_t1 AS @timestamp\n") in text
    assert len(esql_rows(text, [to_esql(e) for e in events], now=NOW)) == 2


def test_bins_start_where_kql_starts_them():
    # ES|QL counts DATE_TRUNC's intervals from 0001-01-01, KQL from 1970-01-01: 719,162 days
    # apart, so a day, an hour or 2 days give the same bins and a week does not (0001-01-01 is
    # a Monday, 1970-01-01 a Thursday)
    assert ZERO_TO_1970 == date(1970, 1, 1) - date(1, 1, 1)
    for size, ok in (("1d", True), ("2d", True), ("1h", True), ("15m", True), ("7d", False), ("5h", False)):
        rule = rmmc.lower_text(f"DeviceNetworkEvents | summarize c = count() by bin(Timestamp, {size})").rule
        t = emit_esql(rule)
        assert t.ok == ok, (size, t.diagnostics)
        if ok:
            compare(rule, [{"Timestamp": T0 + timedelta(hours=h * 7)} for h in range(-30, 30)])
        else:
            assert [d.code for d in t.diagnostics if d.is_error] == ["unsupported"]
            assert "0001-01-01" in next(d.message for d in t.diagnostics if d.is_error)


def test_sort_puts_nulls_where_kql_does():
    events = [{"RemotePort": 3, "RemoteUrl": "b", "Timestamp": T0}, {"RemoteUrl": "a", "Timestamp": T0},
              {"RemotePort": 1, "Timestamp": T0}, {"RemotePort": 2, "RemoteUrl": "c", "Timestamp": T0},
              {"RemotePort": 4, "RemoteUrl": "", "Timestamp": T0}]
    for descending in (True, False):
        for nulls_first in (None, True, False):
            compare(rule_of([Sort((SortKey(Field("RemotePort", "int"), descending, nulls_first),))]), events)
            compare(rule_of([Sort((SortKey(Field("RemoteUrl"), descending, nulls_first),))]), events)
    text = compare(rule_of([Sort((SortKey(Field("RemotePort", "int")),))]), events)
    assert "| SORT destination.port DESC NULLS LAST\n" in text  # KQL's default: descending, nulls last


def test_take_after_sort():
    events = [{"RemotePort": p, "Timestamp": T0} for p in (5, 1, 4, 2, 3)]
    rule = rmmc.lower_text("DeviceNetworkEvents | top 2 by RemotePort asc").rule
    text = compare(rule, events)
    assert text.endswith("| SORT destination.port ASC NULLS FIRST\n| LIMIT 2")
    assert [r["destination.port"] for r in esql_rows(text, [to_esql(e) for e in events], now=NOW)] == [1, 2]


def test_project_rename_away_reorder():
    rule = rmmc.lower_text("DeviceNetworkEvents | project RemoteUrl, Port = RemotePort, DeviceName "
                           "| project-rename Url = RemoteUrl | project-away DeviceName "
                           "| project-reorder Port").rule
    text = compare(rule, [{"RemoteUrl": "u", "RemotePort": 1, "DeviceName": "d", "Timestamp": T0}, {"Timestamp": T0}])
    assert text == ("FROM logs-* METADATA _id, _version, _index\n| EVAL Port = destination.port\n| KEEP destination.domain, Port, host.name, _id, _version, _index\n"
                    "| RENAME destination.domain AS Url\n| DROP host.name\n| KEEP Port, *\n| LIMIT 10000")


def test_functions_against_the_reference():
    q = """DeviceNetworkEvents
    | extend a = substring(RemoteUrl, 1, 2), b = substring(RemoteUrl, -2), c = strlen(RemoteUrl) % 3,
             d = toupper(extract(@'(\\d+)', 1, RemoteUrl)), e = replace_string(RemoteUrl, '.', '$-'),
             f = replace_regex(RemoteUrl, @'(\\w)\\.', @'\\1_'), g = trim('x+', RemoteUrl),
             h = iff(RemotePort > 2, 'hi', 'lo'), i = case(RemotePort == 1, 10, RemotePort == 2, 20, 0),
             j = coalesce(extract('q(.)', 1, RemoteUrl), DeviceName, 'none'), k = (RemotePort - 7) / 2,
             l = array_length(split(RemoteUrl, '.')), m = indexof(RemoteUrl, '.'), n = tostring(RemotePort),
             o = tostring(split(RemoteUrl, '.')[-1]), p = trim_end(@'\\.com', RemoteUrl),
             q = tostring(split(RemoteUrl, '.')[1]), r = substring(RemoteUrl, -3, 1), s = tolower(RemoteUrl),
             t = extract(@'[a-z]+\\.', 0, RemoteUrl), u = bin(RemotePort, 2), v = -RemotePort,
             w = todouble(RemotePort) / 4, x = tolong(todouble(RemotePort) / 4 - 1), y = strcat(RemoteUrl, '/', RemotePort),
             z = array_length(split(RemoteUrl, 'co'))"""
    rule = rmmc.lower_text(q).rule
    events = [{"RemoteUrl": "xx12.abc.comx", "RemotePort": 3, "DeviceName": "d", "Timestamp": T0},
              {"RemoteUrl": "a", "RemotePort": 1, "Timestamp": T0},
              {"RemoteUrl": "q7.com", "RemotePort": 2, "Timestamp": T0},
              {"RemoteUrl": "Q.$\\1", "RemotePort": -7, "Timestamp": T0},
              {"RemoteUrl": "x.y.com", "Timestamp": T0}, {"Timestamp": T0}]
    compare(rule, events)


def test_time_functions_and_comparisons():
    q = """DeviceNetworkEvents
    | where (Timestamp > ago(1d) or RemotePort == 2) and startofday(Timestamp) < now()
    | extend late = Timestamp > ago(26h), day = startofday(Timestamp), soon = Timestamp + 90m
    | where RemotePort != strlen(RemoteUrl) and tolower(RemoteUrl) =~ 'AB'"""
    rule = rmmc.lower_text(q).rule
    events = [{"RemoteUrl": u, "RemotePort": p, "Timestamp": NOW - timedelta(hours=h)}
              for u in ("ab", "AB", "x") for p in (1, 2, None) for h in (1, 25, 27, 49)]
    text = compare(rule, events)
    assert "(NOW() - 1 day)" in text and "DATE_TRUNC(1 day, @timestamp)" in text and "(@timestamp + 90 minutes)" in text


def test_a_regex_test_is_a_lucene_rlike_when_cased():
    rule = rmmc.lower_text("DeviceNetworkEvents | where RemoteUrl matches regex @'[0-9]+\\.ab?c'").rule
    text = compare(rule, [{"RemoteUrl": u, "Timestamp": T0} for u in ("x12.abc", "12.ac.", "1.bc", "", "a1.abbc")])
    assert 'RLIKE ".*([0-9]+\\\\.ab?c).*"' in text


def test_refusals_are_located():
    # (the filter on x moves into the detection as a test of parse_json(RemoteUrl).a: line 3)
    for q, line in (("DeviceNetworkEvents\n| extend x = parse_json(RemoteUrl)\n| where x.a == 'b'", 3),
                    ("DeviceNetworkEvents\n| extend x = parse_json(RemoteUrl)", 2),
                    ("DeviceNetworkEvents\n| where RemotePort > 1\n| summarize arg_max(Timestamp, *) by DeviceName", 3),
                    ("DeviceNetworkEvents\n| summarize c = count() by bin(Timestamp, 7d)", 2)):
        t = emit_esql(rmmc.lower_text(q).rule)
        assert not t.ok and t.text == ""
        error = next(d for d in t.diagnostics if d.is_error)
        assert error.code == "unsupported" and error.span is not None and error.span.line == line, (q, error)


def test_a_filter_esql_cannot_say_only_widens_where_nothing_counts_rows_after_it():
    sub = "DeviceName in ((DeviceInfo | project DeviceName))"
    widened = rmmc.lower_text(f"DeviceNetworkEvents | extend L = tolower(RemoteUrl) | where L == 'a' "
                              f"| summarize n = count() by DeviceName | where {sub}").rule
    t = emit_esql(widened)
    assert t.ok and [d.code for d in t.diagnostics if "DeviceInfo" in d.message] == ["lossy"]
    assert t.text.endswith("| KEEP host.name, n\n| LIMIT 10000")  # the dropped filter was last
    counted = rmmc.lower_text(f"DeviceNetworkEvents | summarize n = count() by DeviceName | where {sub} "
                              "| summarize m = count()").rule
    t = emit_esql(counted)
    assert not t.ok and any(d.code == "unsupported" and "DeviceInfo" in d.message for d in t.diagnostics)


def test_a_take_past_what_esql_returns_is_said():
    t = emit_esql(rmmc.lower_text("DeviceNetworkEvents | take 20000").rule)
    assert t.ok and t.text.endswith("| LIMIT 20000")
    assert any(d.code == "note" and "10,000" in d.message for d in t.diagnostics)


# ------------------------------------------------------------------ random multi-stage rules


ALPHABET = 'ab./:1"\\|$'  # a quote, a backslash, a pipe and a dollar: each must stay inside its string
texts = st.text(ALPHABET, max_size=4)
SMALL = st.sampled_from([-3, 2, -1, 0, 1, -2, 3])  # not biased toward 0 as integers() is


def _string_expr(draw, columns: dict[str, str], depth: int = 0):
    strings = [Field(n, t) for n, t in columns.items() if t == "string"]
    numbers = [Field(n, t) for n, t in columns.items() if t in ("int", "long")]
    base = draw(st.sampled_from(strings)) if strings else Literal(draw(texts))
    if depth > 1:
        return base
    inner = _string_expr(draw, columns, depth + 1) if draw(st.booleans()) else base
    choice = draw(st.sampled_from(range(14)))
    if choice == 0:
        return Call(draw(st.sampled_from(["tolower", "toupper"])), (inner,), "string")
    if choice == 1:
        return Call("strcat", (inner, Literal(draw(texts))), "string")
    if choice == 2:
        length = (Literal(draw(st.integers(0, 3)), "long"),) if draw(st.booleans()) else ()
        return Call("substring", (inner, Literal(draw(st.integers(-3, 3)), "long"), *length), "string")
    if choice == 3:
        return Call("trim_start", (Literal(draw(st.sampled_from(["a", "a+", "[./]", "ab|a", "\\$"]))), inner), "string")
    if choice == 4:
        return Call("trim_end", (Literal(draw(st.sampled_from(["b", "\\.", "1*", "[$|]"]))), inner), "string")
    if choice == 5:
        delimiter = draw(st.sampled_from([".", "/", "ab", "$"]))
        split = Call("split", (inner, Literal(delimiter)), "dynamic")
        index = draw(st.integers(-2, 2)) if len(delimiter) == 1 else draw(st.integers(0, 2))
        return Call("tostring", (Call("index", (split, Literal(index, "long")), "dynamic"),), "string")
    if choice == 6:
        return Call("extract", (Literal(draw(st.sampled_from(["a(.)", "([0-9]+)", "(b)\\.?", "\\.[^.]*$"]))),
                                Literal(draw(st.sampled_from([0, 1])), "long"), inner), "string")
    if choice == 7:
        return Call("replace_regex", (inner, Literal(draw(st.sampled_from(["a", "(b)", "\\.", "1+$"]))),
                                      Literal(draw(st.sampled_from(["x", "<$1>", "", "\\\\"])))), "string")
    if choice == 8 and numbers:
        return Call("iff", (Boolean(Predicate(draw(st.sampled_from(numbers)), Op.GT, (1,))), inner,
                            Literal(draw(texts))), "string")
    if choice == 9 and numbers:
        return Call("tostring", (draw(st.sampled_from(numbers)),), "string")
    if choice == 10:
        return Call("coalesce", (inner, Literal(draw(texts))), "string")
    if choice == 11:
        return Call("trim", (Literal(draw(st.sampled_from(["a", "[1.]+"]))), inner), "string")
    if choice == 12:
        return Call("case", (Boolean(Predicate(inner, Op.CONTAINS, (draw(texts),))), Literal("c"),
                             Boolean(Compare(inner, "==", base)), inner, Literal(draw(texts))), "string")
    return Call("replace_string", (inner, Literal(draw(st.sampled_from([".", "a", "/", "$"]))),
                                   Literal(draw(st.sampled_from(["_", "$1", "\\"])))), "string")


def _number_expr(draw, columns: dict[str, str]):
    strings = [Field(n, t) for n, t in columns.items() if t == "string"]
    numbers = [Field(n, t) for n, t in columns.items() if t in ("int", "long")]
    choice = draw(st.sampled_from([1, 7, 2, 8, 3, 0, 4, 5, 6]))  # arithmetic first: drawn most
    base = draw(st.sampled_from(numbers)) if numbers else Literal(draw(SMALL), "long")
    if choice == 0 and strings:
        return Call("strlen", (draw(st.sampled_from(strings)),), "long")
    if choice in (1, 7, 8):
        other = Literal(draw(SMALL), "long") if draw(st.booleans()) else base
        return Call(draw(st.sampled_from(["divide", "modulo", "add", "subtract", "multiply", "divide", "modulo"])),
                    (base, other), "long")
    if choice == 2 and strings:
        return Call("array_length", (Call("split", (draw(st.sampled_from(strings)),
                                                     Literal(draw(st.sampled_from([".", "ab"])))), "dynamic"),), "long")
    if choice == 3 and strings:
        return Call("indexof", (draw(st.sampled_from(strings)), Literal(draw(st.sampled_from([".", "a", "b."])))), "long")
    if choice == 4:
        return Call("bin", (base, Literal(draw(st.integers(1, 3)), "long")), "long")
    if choice == 5:
        return Call("case", (Boolean(Predicate(base, Op.LT, (1,))), Literal(1, "long"),
                             Literal(2, "long")), "long")
    if choice == 6:
        return Call("negate", (base,), "long")
    return base


@st.composite
def conditions_over(draw, columns: dict[str, str]):
    names = [n for n in columns if columns[n] != "dynamic"]
    name = draw(st.sampled_from(names))
    kind = columns[name]
    if kind == "string":
        subject = Field(name) if draw(st.booleans()) else _string_expr(draw, columns, 1)
        p = Predicate(subject, draw(st.sampled_from([Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.TERM, Op.EMPTY])),
                      (draw(texts),), case_sensitive=draw(st.booleans()), negated=draw(st.booleans()))
    elif kind == "datetime":
        p = Predicate(Field(name, kind), Op.GT, (at(draw(st.integers(0, 120))),), negated=draw(st.booleans()))
    else:
        subject = Field(name, kind) if draw(st.booleans()) else _number_expr(draw, columns)
        p = Predicate(subject, draw(st.sampled_from([Op.EQUALS, Op.LT, Op.GE, Op.EMPTY])),
                      (draw(st.integers(-2, 4)),), negated=draw(st.booleans()))
    numbers = [n for n in names if columns[n] in ("int", "long")]
    if len(numbers) >= 2 and draw(st.booleans()):
        a, b = draw(st.permutations(numbers))[:2]
        compare_node = Compare(Field(a, columns[a]), draw(st.sampled_from(["<", "==", "!="])), Field(b, columns[b]))
        return draw(st.sampled_from([And((p, compare_node)), Or((p, compare_node)), Not(compare_node)]))
    strings = [n for n in names if columns[n] == "string"]
    if strings and draw(st.booleans()):
        other = Compare(_string_expr(draw, columns, 1), draw(st.sampled_from(["==", "!=", "=~", "!~"])),
                        Field(draw(st.sampled_from(strings))))
        return draw(st.sampled_from([And((p, other)), Or((p, other)), Not(other)]))
    return p


@st.composite
def summaries(draw, columns: dict[str, str]):
    strings = [n for n in columns if columns[n] == "string"]
    numbers = [n for n in columns if columns[n] in ("int", "long")]
    keys = []
    if strings and draw(st.booleans()):
        keys.append((strings[0], Field(strings[0])))
    if numbers and draw(st.booleans()):
        keys.append((numbers[-1], Field(numbers[-1], columns[numbers[-1]])))
    if strings and draw(st.booleans()):
        keys.append(("k", Call("tolower", (Field(strings[-1]),), "string")))
    if columns.get("Timestamp") == "datetime" and draw(st.booleans()):
        keys.append(("Timestamp", Call("bin", (Field("Timestamp", "datetime"),
                                               Literal(timedelta(hours=draw(st.sampled_from([1, 24]))), "timespan")),
                                       "datetime")))
    aggs = [Aggregate("n", "count")]
    if strings:
        aggs.append(Aggregate("d", "dcount", (Field(draw(st.sampled_from(strings))),)))
        aggs.append(Aggregate("lo", draw(st.sampled_from(["min", "max"])), (Field(strings[-1]),)))
    if columns.get("Timestamp") == "datetime":
        aggs.append(Aggregate("first", "min", (Field("Timestamp", "datetime"),)))
    if numbers:
        number = Field(numbers[0], columns[numbers[0]])
        above = Boolean(Predicate(number, Op.GT, (1,)))
        aggs.append(Aggregate("s", draw(st.sampled_from(["sum", "max"])), (number,)))
        aggs.append(Aggregate("ci", "countif", (above,)))
        aggs.append(Aggregate("av", "avg", (number,)))
        aggs.append(Aggregate("si", "sumif", (number, above)))
        aggs.append(Aggregate("ps", "make_set", (number,)))
        aggs.append(Aggregate("psi", "make_set_if", (number, above)))
        if strings:
            aggs.append(Aggregate("dci", "dcountif", (Field(strings[0]), above)))
            aggs.append(Aggregate("mi", "maxif", (Field(strings[0]), above)))
    if not draw(st.integers(0, 5)):
        aggs = []  # distinct
        keys = keys or [(n, Field(n, t)) for n, t in list(columns.items())[:1]]
    return Summarize(tuple(keys), tuple(aggs))


@st.composite
def multi_stage_rules(draw):
    columns = dict(SCHEMA)
    stages: list[ir.Stage] = []
    summarized = False
    for _ in range(draw(st.integers(1, 4))):
        kinds = ["extend", "filter", "summarize", "project", "sort", "rename", "away", "reorder"]
        choice = draw(st.sampled_from(kinds if not summarized else ["extend", "filter", "sort", "rename"]))
        if choice == "extend":
            made = []
            for _ in range(draw(st.integers(1, 2))):
                name = draw(st.sampled_from(["c1", "c2", "RemoteUrl", "RemotePort"]))
                if name in dict(made):
                    continue
                if draw(st.booleans()):
                    made.append((name, _string_expr(draw, columns)))
                else:
                    made.append((name, _number_expr(draw, columns)))
            stages.append(Extend(tuple(made)))
            for name, expr in made:
                columns.pop(name, None)
                columns[name] = expr.type
        elif choice == "filter":
            stages.append(Filter(draw(conditions_over(columns))))
        elif choice == "project":
            keep = draw(st.lists(st.sampled_from(list(columns)), min_size=1, max_size=3, unique=True))
            stages.append(Project(tuple((n, Field(n, columns[n])) for n in keep)))
            columns = {n: columns[n] for n in keep}
        elif choice == "sort":
            sortable = [n for n in columns if columns[n] != "dynamic"]
            if not sortable:
                continue
            name = draw(st.sampled_from(sortable))
            stages.append(Sort((SortKey(Field(name, columns[name]), draw(st.booleans()),
                                        draw(st.sampled_from([None, True, False]))),)))
            if draw(st.booleans()):
                stages.append(Limit(draw(st.sampled_from([1, 2, 3]))))
                break  # take after sort ends the rule (see compare)
        elif choice == "rename" and not {"r1", "r2"} <= set(columns):
            old = draw(st.sampled_from(list(columns)))
            new = draw(st.sampled_from([n for n in ("r1", "r2") if n not in columns]))
            stages.append(Rename(((new, old),)))
            columns = {(new if n == old else n): t for n, t in columns.items()}
        elif choice == "away" and len(columns) > 1:
            gone = draw(st.sampled_from(list(columns)))
            stages.append(ProjectAway((gone,)))
            columns.pop(gone)
        elif choice == "reorder":
            stages.append(Reorder((draw(st.sampled_from(list(columns))),)))
        elif choice == "summarize":
            stages.append(draw(summaries(columns)))
            columns = column_types(rule_of([Project(tuple((n, Field(n, t)) for n, t in columns.items())),
                                            stages[-1]]))
            summarized = True
            if "n" in columns and draw(st.booleans()):
                threshold = Predicate(Field("n", "long"), Op.GT, (draw(st.integers(0, 2)),))
                if "d" in columns and draw(st.booleans()):
                    threshold = Predicate(Field("d", "long"), Op.GE, (2,))
                if "ps" in columns and draw(st.booleans()):
                    threshold = Predicate(Call("array_length", (Field("ps", "dynamic"),), "long"), Op.GE, (2,))
                stages.append(Filter(threshold))
    return rule_of(stages, draw(st.sampled_from([Const(True), Predicate(Field("DeviceName"), Op.EQUALS, ("b",),
                                                                                 negated=True)])))


events = st.fixed_dictionaries(
    {"Timestamp": st.integers(0, 3000).map(at)},
    optional={"RemoteUrl": st.text(ALPHABET, max_size=6), "DeviceName": st.sampled_from(["a", "b", "A", ""]),
              "RemotePort": st.sampled_from([-3, -2, -1, 0, 1, 2, 3, 4, None])})


@given(multi_stage_rules(), st.lists(events, min_size=3, max_size=8), st.sampled_from(["ecs", "defender", "sigma"]))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_esql_rows_are_the_reference_rows(rule, sample, fields):
    """Every generated rule is within what ES|QL can say: it must be translated, and its rows
    must be the reference's."""
    t = emit_esql(rule, fields=fields)
    assert t.ok, [d.message for d in t.diagnostics if d.is_error]
    try:
        compare(rule, sample, fields)
    except Undocumented as exc:
        raise AssertionError(f"the ES|QL relies on undocumented behaviour ({exc}):\n{t.text}") from None


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | where ipv4_is_private(RemoteUrl)",
    "DeviceNetworkEvents | where not(ipv4_is_private(RemoteUrl))",
    "DeviceNetworkEvents | where ipv4_is_private(RemoteUrl) == false",
    "DeviceNetworkEvents | where ipv4_is_in_range(RemoteUrl, '10.1.0.0/16')",
    "DeviceNetworkEvents | where not(ipv4_is_in_range(RemoteUrl, '10.1.2.3/16'))",
    "DeviceNetworkEvents | extend p = iff(ipv4_is_private(RemoteUrl), 'in', 'out')",
])
def test_ipv4_functions(query):
    rule = rmmc.lower_text(query).rule
    addresses = ["10.1.2.3", " 10.1.2.3 ", "10.1.2.3/24", "10.1.2.3 /24", "010.1.2.3", "172.16.0.1",
                 "172.32.0.1", "192.168.1.1", "8.8.8.8", "1.2.3", "256.1.1.1", "fe80::1", "", "x",
                 "\u300010.0.0.1", "10.0.0.1\n", "10.1.2.3/x/y", "\x1c10.0.0.1"]
    compare(rule, [{"RemoteUrl": a, "Timestamp": T0} for a in addresses] + [{"Timestamp": T0}])


# ------------------------------------------------------------------ real rules


def _shown(value):
    """A value as compared for a corpus rule: what VALUES collected as a set (its order and a
    one-element array's brackets are the shape differences the backend reports), a missing or
    empty value as '' (a string's null is KQL's ''), a datetime in UTC, numbers as floats."""
    if value is None or value == "" or value == [] or value == ():
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (list, tuple)):
        items = sorted({_shown(v) for v in value}, key=repr)
        return items[0] if len(items) == 1 else tuple(items)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value), 6)
    return value


@pytest.mark.corpus
def test_corpus_rules_return_the_reference_rows(kql_corpus):
    """Every third query of the KQL corpus reading a Device* table that ES|QL writes exactly
    returns the reference evaluator's rows on the rule's boundary events (every event inside
    the lookback)."""
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document
    from rmmc.verify.events import boundary_events

    device = re.compile(r"\bDevice[A-Z][A-Za-z]*(Events|Info|Tvm[A-Za-z]*)\b")
    profile = load_profile("ecs")
    files = [p for p in sorted(kql_corpus.rglob("*")) if p.suffix in (".kql", ".csl", ".txt", ".md", ".yaml", ".yml")
             and device.search(p.read_text(encoding="utf-8", errors="replace"))][::3]
    checked = 0
    for path in files:
        try:
            rule = compile_document(read_path(path).documents[0]).rule
        except Exception:  # noqa: BLE001 - a document rmmc does not read: not this test's subject
            continue
        if rule is None:
            continue
        t = emit("esql", rule, EmitOptions())  # what ES|QL does not write (a union ...) is refused
        if not t.ok or any(d.code == "lossy" for d in t.diagnostics):
            continue
        events = boundary_events(rule, sample=20)
        for event in events:
            event.setdefault("Timestamp", NOW)
        table = rule.source.table

        def esql(column: str) -> str:
            return profile.field(table, column) or column

        have = esql_rows(t.text, [{esql(k): v for k, v in e.items() if v is not None} for e in events], now=NOW)
        want = reference_rows(rule, events, now=NOW)
        if any(isinstance(s, Limit) for s in rule.stages):
            assert len(have) == len(want), path
        else:
            columns = set().union(*want) if want else set()
            view = lambda r, name: tuple(sorted((c, repr(_shown(r.get(name(c))))) for c in columns))  # noqa: E731
            assert sorted(view(r, esql) for r in have) == sorted(view(r, str) for r in want), (path, t.text)
        checked += 1
    assert checked >= 150, checked
