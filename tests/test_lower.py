"""Lowering KQL to the detection model: what each construct becomes, and what is refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def lower(text: str):
    result = lower_text(text, schema=None)
    assert result.ok, result.diagnostics
    return result.rule


def refused(text: str):
    result = lower_text(text)
    assert result.rule is None
    errors = [d for d in result.diagnostics if d.is_error]
    assert errors
    return errors[0]


def P(name, op, *values, type="string", **flags):
    return ir.Predicate(ir.Field(name, type), op, tuple(values), **flags)


def test_seed_rule():
    rule = lower(
        "let Time_start = now(-5d);\nlet Time_end = now();\n//\nDeviceNetworkEvents\n"
        "| where Timestamp between (Time_start..Time_end)\n"
        "| where RemoteUrl has 'remotepc.com'\nand InitiatingProcessVersionInfoCompanyName has 'idrive'\n"
        "and InitiatingProcessVersionInfoProductName has_any (\n'remotepc',\n'viewer',\n'remotedesktop'\n)\n"
        "| summarize FirstSeen=min(Timestamp), LastSeen=max(Timestamp),\n"
        "Report=make_set(ReportId), Count=count() by DeviceId, DeviceName,\nRemoteUrl")
    assert rule.source.table == "DeviceNetworkEvents"
    assert rule.lookback == ir.Lookback(timedelta(days=5), "5d")
    assert rule.condition == ir.And((
        P("RemoteUrl", ir.Op.TERM, "remotepc.com"),
        P("InitiatingProcessVersionInfoCompanyName", ir.Op.TERM, "idrive"),
        P("InitiatingProcessVersionInfoProductName", ir.Op.TERM, "remotepc", "viewer", "remotedesktop"),
    ))
    F = ir.Field
    assert rule.stages == (ir.Summarize(
        (("DeviceId", F("DeviceId")), ("DeviceName", F("DeviceName")), ("RemoteUrl", F("RemoteUrl"))),
        (ir.Aggregate("FirstSeen", "min", (F("Timestamp"),)),
         ir.Aggregate("LastSeen", "max", (F("Timestamp"),)),
         ir.Aggregate("Report", "make_set", (F("ReportId"),)), ir.Aggregate("Count", "count"))),)


@pytest.mark.parametrize("where, window", [
    ("Timestamp > ago(7d)", timedelta(days=7)),
    ("Timestamp >= ago(36h)", timedelta(hours=36)),
    ("ago(1h) < Timestamp", timedelta(hours=1)),
    ("Timestamp between (ago(30m) .. now())", timedelta(minutes=30)),
    ("TimeGenerated > ago(1d)", timedelta(days=1)),
])
def test_lookback_forms(where, window):
    rule = lower(f"T | where {where} and x has 'a'")
    assert rule.lookback.window == window
    assert rule.condition == P("x", ir.Op.TERM, "a")


def test_two_windows_keep_the_narrower():
    rule = lower("T | where Timestamp > ago(7d) | where Timestamp > ago(1d)")
    assert rule.lookback.window == timedelta(days=1)
    assert rule.condition == ir.Const(True)


@pytest.mark.parametrize("kql, expected", [
    ("x == 'A'", P("x", ir.Op.EQUALS, "A", case_sensitive=True)),
    ("x != 'A'", P("x", ir.Op.EQUALS, "A", case_sensitive=True, negated=True)),
    ("x =~ 'A'", P("x", ir.Op.EQUALS, "A")),
    ("x !~ 'A'", P("x", ir.Op.EQUALS, "A", negated=True)),
    ("'A' == x", P("x", ir.Op.EQUALS, "A", case_sensitive=True)),
    ("x !has 'a'", P("x", ir.Op.TERM, "a", negated=True)),
    ("x has_cs 'a'", P("x", ir.Op.TERM, "a", case_sensitive=True)),
    ("x hasprefix 'a'", P("x", ir.Op.TERM_PREFIX, "a")),
    ("x !hassuffix_cs 'a'", P("x", ir.Op.TERM_SUFFIX, "a", case_sensitive=True, negated=True)),
    ("x contains 'a'", P("x", ir.Op.CONTAINS, "a")),
    ("x notcontains 'a'", P("x", ir.Op.CONTAINS, "a", negated=True)),
    ("x startswith_cs 'a'", P("x", ir.Op.STARTSWITH, "a", case_sensitive=True)),
    ("x !endswith 'a'", P("x", ir.Op.ENDSWITH, "a", negated=True)),
    ("x matches regex '[0-9]+'", P("x", ir.Op.REGEX, "[0-9]+", case_sensitive=True)),
    ("x in ('a', 'b')", P("x", ir.Op.EQUALS, "a", "b", case_sensitive=True)),
    ("x !in~ ('a', 'b')", P("x", ir.Op.EQUALS, "a", "b", negated=True)),
    ("x has_all ('a', 'b')", P("x", ir.Op.TERM, "a", "b", all_values=True)),
    ("isempty(x)", P("x", ir.Op.EMPTY)),
    ("isnotempty(x)", P("x", ir.Op.EMPTY, negated=True)),
    ("not(x has 'a')", ir.Not(P("x", ir.Op.TERM, "a"))),
    ("x has 'a' or (y has 'b' and z has 'c')", ir.Or((P("x", ir.Op.TERM, "a"), ir.And((P("y", ir.Op.TERM, "b"), P("z", ir.Op.TERM, "c")))))),
])
def test_operators(kql, expected):
    assert lower(f"T | where {kql}").condition == expected


def test_lets_lists_and_datatable_folding():
    rule = lower(
        "let s = 'one'; let l = dynamic(['a', 'b']);"
        " let t = datatable(U:string, N:string)['u1', 'x', 'u2', 'y', 'u1', 'z'];"
        " T | where x has s and y has_any (l) and z has_any ((t | distinct U)) and w in (t | project N)")
    assert rule.condition == ir.And((
        P("x", ir.Op.TERM, "one"), P("y", ir.Op.TERM, "a", "b"),
        P("z", ir.Op.TERM, "u1", "u2"), P("w", ir.Op.EQUALS, "x", "y", "z", case_sensitive=True)))


def test_tabular_let_body_is_inlined():
    rule = lower("let rmmProcess = DeviceProcessEvents | where FileName has 'x'"
                 " | summarize Count=count() by DeviceId | extend rmmProcessName = 'X'; rmmProcess")
    assert rule.source.table == "DeviceProcessEvents"
    assert rule.condition == P("FileName", ir.Op.TERM, "x")
    assert rule.stages == (
        ir.Summarize((("DeviceId", ir.Field("DeviceId")),), (ir.Aggregate("Count", "count"),)),
        ir.Extend((("rmmProcessName", ir.Literal("X")),)))


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ not present")
def test_all_tools_rule_folds_its_170_row_datatable():
    from rmmc.compiler.documents import read_path

    (doc,) = read_path(SHARED / "corpus/rmm/Network Indicators/rmm__all_netconn.yaml").documents
    rule = lower(doc.query)
    (predicate,) = [rule.condition] if isinstance(rule.condition, ir.Predicate) else rule.condition.operands
    assert predicate.field.name == "RemoteUrl" and predicate.op is ir.Op.TERM
    assert len(predicate.values) == len(set(predicate.values)) >= 160
    assert "anydesk.com" in predicate.values and "zohostatic.in" in predicate.values
    assert [name for stage in rule.stages if isinstance(stage, ir.Extend)
            for name, _ in stage.columns] == ["RemoteUrl", "RemoteUrl", "RemoteUrl"]


@pytest.mark.parametrize("kql, fragment, column", [
    ("T | join (U) on $left.x < $right.y", "only equal columns", 17),
    ("T | mv-expand kind=array x", "mv-expand parameter 'kind' is not lowered", 15),
    ("T | parse x with * 'a' y:long", "parse into a typed column (y:long)", 24),
    ("T | parse x with * y 'a'", "the parse column 'y' does not follow a string", 20),
    ("T | evaluate bag_unpack(x)", "unsupported operator: evaluate", 5),
    ("union * | where x", "union * (every table) is not lowered", 7),
    ("T | where x has_all (U | project y)", "'has_all' against a tabular expression that is not constant", 22),
    ("T | where x has strcat(y, 'a')", "'has' needs a constant value here", 17),
    ("T | extend y = rand()", "the function rand() is not in rmmc's model", 16),
    ("T | extend tolower(x)", "needs a name", 12),
    ("DeviceProcessEvents | summarize count() by DeviceId | where FileName has 'a'",
     "the column 'FileName' is not in the rows at this point", 61),
])
def test_refusals_are_located(kql, fragment, column):
    error = refused(kql)
    assert fragment in error.message
    assert error.span.column == column


def test_in_against_another_table_is_a_subquery_with_lets_inlined():
    rule = lower("let start = ago(5d); let hashes = U | where Timestamp > start | distinct SHA1;"
                 " T | where x has 'a' and SHA1 !in~ (hashes)")
    assert rule.condition == ir.And((
        P("x", ir.Op.TERM, "a"),
        ir.InSubquery(ir.Field("SHA1"), "U | where Timestamp > ago(5d) | distinct SHA1", "U",
                      case_sensitive=False, negated=True)))


def test_datetime_and_numeric_comparisons():
    from rmmc.compiler.schema import load_schema

    result = lower_text("DeviceNetworkEvents | where RemotePort between (1 .. 1024)"
                        " and Timestamp < datetime(2024-05-01) and RemotePort != 443", schema=load_schema())
    assert result.ok, result.diagnostics
    assert result.rule.condition == ir.And((
        P("RemotePort", ir.Op.BETWEEN, 1, 1024, type="int"),
        P("Timestamp", ir.Op.LT, datetime(2024, 5, 1, tzinfo=timezone.utc), type="datetime"),
        P("RemotePort", ir.Op.EQUALS, 443, type="int", case_sensitive=True, negated=True),
    ))


def test_unknown_column_has_a_did_you_mean():
    from rmmc.compiler.schema import load_schema

    result = lower_text("DeviceNetworkEvents | where RemoteUrl has 'a' | summarize count() by AccountUpn",
                        schema=load_schema())
    (warning,) = [d for d in result.diagnostics if d.code == "unknown-column"]
    assert warning.message == ("unknown column 'AccountUpn' in DeviceNetworkEvents; "
                               "did you mean 'InitiatingProcessAccountUpn'?")
    assert warning.span.column == 70  # "AccountUpn" starts at offset 69


def test_arg_max_star_over_unknown_columns_keeps_them_unknown():
    """`summarize arg_max(Timestamp, *)` keeps every column of its rows: over a table rmmc does
    not know, a later column is not 'removed by the summarize' (Kusto keeps it); over a known
    table the columns are known and a missing one is still refused."""
    from rmmc.compiler.rows import run

    rule = lower_text("IdentityInfo | summarize arg_max(Timestamp, *) by OnPremSid "
                      "| project Department, OnPremSid").rule
    assert rule is not None
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    events = [{"Timestamp": t0, "OnPremSid": "S-1", "Department": "IT"},
              {"Timestamp": t0 + timedelta(hours=1), "OnPremSid": "S-1", "Department": "HR"}]
    assert [dict(r) for r in run(rule, events, now=t0 + timedelta(days=1))] == \
        [{"Department": "HR", "OnPremSid": "S-1"}]
    known = lower_text("DeviceProcessEvents | summarize arg_max(Timestamp, *) by DeviceId "
                       "| project Department")
    assert known.rule is None
    assert any("Department" in d.message for d in known.diagnostics if d.is_error)
    closed = lower_text("IdentityInfo | summarize count() by OnPremSid | project Department")
    assert closed.rule is None  # a summarize without '*' still keeps only its columns
