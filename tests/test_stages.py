"""The whole query: stages in order, their meaning over rows, and KQL that returns the same rows.

* the reference evaluator's stages (`rmmc.compiler.rows`) on hand-checked rows;
* the issue's query and the all-tools RMM rule: source and translation run on duckdb-kql and
  return the same rows, which are the evaluator's; the old ordering (extends first) would have
  returned other rows, and verify says so;
* push-down: filters moved into the detection mean the same on generated events.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rmmc.backends.kql import emit_kql
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.pushdown import push_filters
from rmmc.compiler.rows import run

F, L = ir.Field, ir.Literal
SHARED = Path(__file__).resolve().parents[2] / "shared"

ISSUE_QUERY = """DeviceNetworkEvents
| where RemoteUrl has_any ('remotepc.com', 'signalserver.xyz')
| extend RemoteUrl = trim_start(@'http[s]?://', RemoteUrl)
| extend RemoteUrl = tostring(split(RemoteUrl, '/')[0])
| project RemoteUrl"""

URLS = ["https://evil.example/remotepc.com", "https://remotepc.com/login", "http://signalserver.xyz:443/a",
        "remotepc.com", "REMOTEPC.COM/x", "notremotepc.com", "", None, "ftp://remotepc.com/f",
        "https://a.remotepc.com", "signalserver.xyz"]


def lowered(text: str) -> ir.Rule:
    result = lower_text(text)
    assert result.rule is not None, [d.message for d in result.diagnostics]
    return result.rule


# ------------------------------------------------------------------ the evaluator's stages


def test_extend_reads_the_row_before_it():
    """`extend a = x, b = a` (KQL: b cannot see this a) and a replaced column."""
    stage = ir.Extend((("x", ir.Call("strcat", (F("x"), L("!")))), ("y", F("x"))))
    rows = run(ir.Rule(ir.Metadata(), ir.Source("T"), ir.Const(True), stages=(stage,)), [{"x": "a"}])
    assert rows == [{"x": "a!", "y": "a"}]


def test_summarize_counts_groups_and_thresholds():
    rule = lowered("DeviceNetworkEvents | summarize n = count(), u = dcount(RemoteUrl), "
                   "s = make_set(RemoteUrl) by DeviceId | where n >= 2")
    events = [{"DeviceId": "a", "RemoteUrl": "x"}, {"DeviceId": "a", "RemoteUrl": "x"},
              {"DeviceId": "a", "RemoteUrl": "y"}, {"DeviceId": "b", "RemoteUrl": "x"}, {"RemoteUrl": "z"}]
    assert run(rule, events) == [{"DeviceId": "a", "n": 3, "u": 2, "s": ["x", "y"]}]
    rows = run(rule, events)
    assert rows[0].sources == {0, 1, 2}  # the events the group came from


def test_a_missing_string_key_is_the_empty_group():
    rule = lowered("DeviceNetworkEvents | summarize count() by DeviceId")
    assert run(rule, [{"DeviceId": ""}, {}]) == [{"DeviceId": "", "count_": 2}]


def test_summarize_without_keys_returns_one_row_even_over_nothing():
    rule = lowered("DeviceNetworkEvents | where RemoteUrl == 'none' | summarize count()")
    assert run(rule, [{"RemoteUrl": "x"}]) == [{"count_": 0}]


def test_sort_nulls_and_limit():
    rule = lowered("DeviceNetworkEvents | project RemotePort | sort by RemotePort asc | take 3")
    rows = run(rule, [{"RemotePort": 5}, {}, {"RemotePort": 1}, {"RemotePort": 3}])
    assert [r["RemotePort"] for r in rows] == [None, 1, 3]  # nulls first ascending
    rule = lowered("DeviceNetworkEvents | top 2 by RemotePort desc")
    assert [r["RemotePort"] for r in run(rule, [{"RemotePort": 5}, {}, {"RemotePort": 9}])] == [9, 5]


def test_arg_max_keeps_the_row_of_the_largest_value():
    rule = lowered("DeviceNetworkEvents | summarize arg_max(RemotePort, RemoteUrl) by DeviceId")
    rows = run(rule, [{"DeviceId": "a", "RemotePort": 1, "RemoteUrl": "one"},
                      {"DeviceId": "a", "RemotePort": 7, "RemoteUrl": "seven"}])
    assert rows == [{"DeviceId": "a", "RemotePort": 7, "RemoteUrl": "seven"}]


def test_the_issue_query_on_the_evaluator():
    rows = run(lowered(ISSUE_QUERY), [{"RemoteUrl": u} for u in URLS if u is not None])
    assert [r["RemoteUrl"] for r in rows] == [
        "evil.example", "remotepc.com", "signalserver.xyz:443", "remotepc.com", "REMOTEPC.COM",
        "ftp:", "a.remotepc.com", "signalserver.xyz"]


# ------------------------------------------------------------------ KQL rows on duckdb-kql


def _kql_rows(rule: ir.Rule, text: str, events):
    pytest.importorskip("duckdb_kql")
    from rmmc.verify.whole import run_kql_rows

    return run_kql_rows(rule, text, events)


def _comparable(rule, rows):
    from rmmc.verify.whole import comparable_rows

    return sorted(comparable_rows(rows, rule), key=repr)


def test_the_issue_query_returns_the_sources_rows():
    rule = lowered(ISSUE_QUERY)
    out = emit_kql(rule)
    assert out.ok and out.text == ("DeviceNetworkEvents\n"
                                   "| where RemoteUrl has_any ('remotepc.com', 'signalserver.xyz')\n"
                                   "| extend RemoteUrl = trim_start('http[s]?://', RemoteUrl)\n"
                                   "| extend RemoteUrl = tostring(split(RemoteUrl, '/')[0])\n"
                                   "| project RemoteUrl")
    events = [{"RemoteUrl": u} for u in URLS]
    source = _kql_rows(rule, ISSUE_QUERY, events)
    translated = _kql_rows(rule, out.text, events)
    assert _comparable(rule, source) == _comparable(rule, translated) == _comparable(rule, run(rule, events))
    assert {"RemoteUrl": "evil.example"} in translated


def test_the_old_ordering_returns_other_rows_and_verify_says_so():
    """Writing the extends before the where (what the KQL backend used to do) makes the filter
    test the rewritten column: the event 'https://evil.example/remotepc.com' is dropped."""
    from rmmc.verify.whole import same_rows

    rule = lowered(ISSUE_QUERY)
    old = ("DeviceNetworkEvents\n| extend RemoteUrl = trim_start('http[s]?://', RemoteUrl)\n"
           "| extend RemoteUrl = tostring(split(RemoteUrl, '/')[0])\n"
           "| where RemoteUrl has_any ('remotepc.com', 'signalserver.xyz')\n| project RemoteUrl")
    events = [{"RemoteUrl": u} for u in URLS]
    agree, why = same_rows(rule, run(rule, events), _kql_rows(rule, old, events), events)
    assert not agree and "evil.example" in why


def test_verify_checks_the_whole_query():
    from rmmc.verify.runner import verify_rule

    count, verdicts = verify_rule(lowered(ISSUE_QUERY), ["kql", "sigma", "eql"])
    statuses = {v.target: (v.status, v.engine) for v in verdicts}
    assert statuses["kql"] == ("agree", "duckdb-kql")
    assert "rows alike" in next(v.detail for v in verdicts if v.target == "kql")
    # Sigma and EQL say the detection; the rewritten column only shapes the output
    assert statuses["eql"][0] == "agree" and statuses["sigma"][0] == "agree"


@pytest.mark.skipif(not (SHARED / "corpus/rmm").is_dir(), reason="../shared is absent")
def test_the_all_tools_rule_returns_the_sources_rows():
    from rmmc.compiler.documents import read_path
    from rmmc.verify.runner import verify_rule

    (document,) = read_path(str(SHARED / "corpus/rmm/Network Indicators/rmm__all_netconn.yaml")).documents
    rule = lowered(document.query)
    out = emit_kql(rule)
    assert out.ok
    # trim, split on '/', split on ':' stay after the has_any that reads the raw URL
    assert out.text.index("has_any") < out.text.index("trim_start") < out.text.index("summarize")
    events = [{"RemoteUrl": u, "DeviceId": "d1", "DeviceName": "h", "AccountUpn": "u",
               "InitiatingProcessFileName": "p.exe", "ReportId": i,
               "Timestamp": datetime.now(timezone.utc) - timedelta(hours=1)}
              for i, u in enumerate(URLS + ["https://anydesk.com:443/x", "relay.anydesk.com"])]
    source = _kql_rows(rule, document.query, events)
    translated = _kql_rows(rule, out.text, events)
    assert _comparable(rule, source) == _comparable(rule, translated) == _comparable(rule, run(rule, events))
    count, verdicts = verify_rule(rule, ["kql"])
    assert [v.status for v in verdicts] == ["agree"]


def test_a_threshold_is_checked_on_groups_around_its_bound():
    from rmmc.verify.runner import verify_rule

    rule = lowered("DeviceNetworkEvents | where RemoteUrl has 'x.com' | summarize count() by DeviceId "
                   "| where count_ > 3")
    count, verdicts = verify_rule(rule, ["kql", "sigma", "eql"])
    statuses = {v.target: v.status for v in verdicts}
    assert statuses["kql"] == "agree" and statuses["sigma"] == "agree"
    # EQL cannot say the threshold: flagged, and verify sees the difference it flagged
    assert statuses["eql"] == "approximate"


# ------------------------------------------------------------------ push-down


@pytest.mark.parametrize("query", [
    ISSUE_QUERY,
    "DeviceProcessEvents | extend f = tolower(FileName) | where f == 'a.exe' or f endswith '.ps1'",
    "DeviceProcessEvents | project-rename Name = FileName | where Name =~ 'x' | project Name",
    "DeviceProcessEvents | extend n = strlen(ProcessCommandLine) | sort by n desc | where n > 3",
    "DeviceNetworkEvents | extend u = tostring(split(RemoteUrl, '/')[2]) | where u has 'x.com'",
    "DeviceNetworkEvents | extend h = trim_start('https?://', RemoteUrl) | where h startswith 'a.'",
])
def test_pushed_filters_mean_the_same(query):
    from rmmc.verify.events import boundary_events

    rule = lowered(query)
    pushed = push_filters(rule)
    assert not any(isinstance(s, ir.Filter) for s in pushed.stages if s is not ir.summarize_of(pushed.stages))
    events = boundary_events(pushed) + [{"RemoteUrl": u} for u in URLS if u] + [
        {"FileName": n, "ProcessCommandLine": n} for n in ("A.EXE", "x.PS1", "X", "ab")]
    assert run(pushed, events) == run(rule, events)


def test_a_filter_after_a_limit_or_summarize_stays():
    rule = lowered("DeviceNetworkEvents | take 5 | where RemoteUrl has 'a'")
    assert push_filters(rule).stages == rule.stages
    rule = lowered("DeviceNetworkEvents | summarize count() by DeviceId | where count_ > 1")
    assert push_filters(rule).stages == rule.stages


def test_rows_out_of_the_rules_order_differ():
    from rmmc.verify.whole import same_rows

    rule = lowered("DeviceNetworkEvents | project RemotePort | sort by RemotePort desc")
    events = [{"RemotePort": 1}, {"RemotePort": 3}, {}]
    expected = run(rule, events)
    assert [r["RemotePort"] for r in expected] == [3, 1, None]  # nulls last descending
    assert same_rows(rule, expected, [{"RemotePort": 3}, {"RemotePort": 1}, {"RemotePort": None}], events)[0]
    assert not same_rows(rule, expected, [{"RemotePort": 1}, {"RemotePort": 3}, {"RemotePort": None}], events)[0]
    assert not same_rows(rule, expected, [{"RemotePort": None}, {"RemotePort": 3}, {"RemotePort": 1}], events)[0]
