"""A union in ES|QL: one FROM over every branch's indexes, each branch's tests under its source's
filter, per-source columns as CASE (rmmc/backends/esql/union.py).

Rows are checked on the ES|QL interpreter (tests/esql_interp.py) over events shaped as the
environment holds them (`Adapted.target_event`), against the reference evaluator's rows
(`rmmc.compiler.rows.run`), as tests/test_environments_multi.py does for SPL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from esql_interp import run as esql_run
from rmmc.backends.base import EmitOptions
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.environments import load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import emit_adapted, translate_file, translate_text
from rmmc.verify.multi import multi_events
from rmmc.verify.whole import INDEX, NOW
from tests.row_sets import comparable


def _rule(kql: str) -> ir.Rule:
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    return lowered.rule


RAW = "raw"  # an event's fields as stored, besides those the rule reads (set after shaping)


def _esql_rows(text: str, adapted, events: list[dict]) -> list[dict]:
    """The ES|QL run over the events as the environment holds them (no metadata: absent)."""
    shaped = []
    for event in events:
        row = adapted.target_event({k: v for k, v in event.items() if k != RAW})
        row.update(event.get(RAW, {}))
        shaped.append({k: v for k, v in row.items() if v is not None and k not in (ir.TABLE, INDEX)})
    rows = esql_run(text, shaped, now=NOW)
    return [{k: v for k, v in r.items() if k not in ("_id", "_version", "_index")} for r in rows]


def _translated(kql: str, env: str = "elastic-winlogbeat"):
    rule = _rule(kql)
    adapted = adapt(rule, load_environment(env))
    assert adapted.ok, adapted.diagnostics
    out = emit_adapted("esql", adapted, EmitOptions())
    return rule, adapted, out


def _agree(rule, adapted, out, extra: list[dict] = ()) -> list[dict]:
    """The ES|QL's rows equal the reference's; returns the reference rows."""
    events = [adapted.normalize(e) for e in multi_events(rule)]
    events += [{**adapted.normalize({k: v for k, v in e.items() if k != RAW}), RAW: e.get(RAW, {})} for e in extra]
    expected = run(rule, [{k: v for k, v in e.items() if k != RAW} for e in events], now=NOW)
    got = _esql_rows(out.text, adapted, events)
    names = {v: k for part in [*adapted.parts.values(), adapted] for k, v in part.names.items()}
    assert comparable(got, lambda k: names.get(k, "Timestamp" if k == "@timestamp" else k)) == \
        comparable(expected), out.text
    return expected


def _event(table: str, minutes: int = 10, **columns) -> dict:
    return {ir.TABLE: table, "Timestamp": NOW - timedelta(minutes=minutes), **columns}


# ------------------------------------------------------------------ two tables


TWO = """union DeviceProcessEvents, DeviceNetworkEvents
| where InitiatingProcessFileName =~ 'cmd.exe'
| project Timestamp, DeviceName, InitiatingProcessFileName"""


def test_two_tables_are_one_from_each_branch_under_its_filter_and_rows_agree():
    rule, adapted, out = _translated(TWO)
    assert out.ok, out.diagnostics
    lines = out.text.splitlines()
    assert lines[0] == "FROM winlogbeat-*,logs-windows.*,logs-system.security-* METADATA _id, _version, _index"
    # Sysmon: the initiating process is the parent in a process creation, the process itself in a
    # connection; each branch tests its own field under its own event code
    assert lines[1] == ('| WHERE ((TO_LOWER(winlog.channel) == "microsoft-windows-sysmon/operational") AND '
                        '(TO_LOWER(event.code) == "1") AND (TO_LOWER(process.parent.name) == "cmd.exe")) OR '
                        '((TO_LOWER(winlog.channel) == "microsoft-windows-sysmon/operational") AND '
                        '(TO_LOWER(event.code) == "3") AND (TO_LOWER(process.name) == "cmd.exe"))')
    assert lines[2].startswith("| EVAL InitiatingProcessFileName = CASE(")
    # a process creation *of* cmd.exe (by explorer.exe) is no row: the network branch's test
    # (process.name) must not reach it; a connection by cmd.exe is one
    leak = _event("DeviceProcessEvents", DeviceName="ws1", InitiatingProcessFileName="explorer.exe",
                  **{RAW: {"process.name": "cmd.exe"}})
    hit = _event("DeviceNetworkEvents", DeviceName="ws2", InitiatingProcessFileName="CMD.exe")
    expected = _agree(rule, adapted, out, [leak, hit])
    names = {r["DeviceName"] for r in expected}
    assert "ws2" in names and "ws1" not in names


def test_a_branchs_test_cannot_reach_another_sources_events():
    """Written without the filters, the WHERE would keep the process creation of cmd.exe (the
    network branch reads process.name): the rows would differ (the check above can fail)."""
    rule, adapted, out = _translated(TWO)
    unfiltered = out.text.replace('(TO_LOWER(event.code) == "1") AND ', "").replace(
        '(TO_LOWER(event.code) == "3") AND ', "")
    leak = _event("DeviceProcessEvents", DeviceName="ws1", InitiatingProcessFileName="explorer.exe")
    assert run(rule, [adapted.normalize(leak)], now=NOW) == []  # FileName is cmd.exe: not the rule's column
    events = [{**adapted.normalize(leak), RAW: {"process.name": "cmd.exe"}}]
    assert _esql_rows(out.text, adapted, events) == []
    assert [r["host.name"] for r in _esql_rows(unfiltered, adapted, events)] == ["ws1"]


# ------------------------------------------------------------------ withsource, columns per source


WITHSOURCE = """union withsource=Source DeviceProcessEvents, DeviceNetworkEvents
| where DeviceName startswith 'ws' and Source == 'DeviceNetworkEvents' or InitiatingProcessFileName =~ 'cmd.exe'
| project Source, DeviceName, InitiatingProcessFileName"""


def test_withsource_is_a_case_over_the_source_filters_and_rows_agree():
    rule, adapted, out = _translated(WITHSOURCE)
    assert out.ok, out.diagnostics
    evals = [line for line in out.text.splitlines() if line.startswith("| EVAL ")]
    assert len(evals) == 1 and evals[0].startswith(
        '| EVAL Source = CASE((TO_LOWER(COALESCE(winlog.channel, "")) == "microsoft-windows-sysmon/operational") '
        'AND (TO_LOWER(COALESCE(event.code, "")) == "1"), "DeviceProcessEvents", ')
    assert '"3"), "DeviceNetworkEvents")' in evals[0]
    # Source == 'DeviceNetworkEvents' is decided per branch: the process branch keeps only cmd.exe
    assert '(TO_LOWER(event.code) == "1") AND (TO_LOWER(process.parent.name) == "cmd.exe"))' in out.text
    events = [_event("DeviceNetworkEvents", DeviceName="ws9", InitiatingProcessFileName="x.exe"),
              _event("DeviceProcessEvents", DeviceName="ws8", InitiatingProcessFileName="x.exe")]
    expected = _agree(rule, adapted, out, events)
    sources = {(r["DeviceName"], r["Source"]) for r in expected}
    assert ("ws9", "DeviceNetworkEvents") in sources and not any(d == "ws8" for d, _ in sources)


def test_a_column_held_differently_per_source_in_winlogbeat_and_endpoint():
    kql = """union DeviceProcessEvents, DeviceNetworkEvents
| where DeviceName startswith 'ws'
| project Timestamp, DeviceName, ActionType, InitiatingProcessFileName"""
    rule, adapted, out = _translated(kql)
    assert out.ok, out.diagnostics
    # ActionType is event.code's word in process events, network.direction's in connections
    assert "ActionType = CASE(" in out.text and '"ProcessCreated"' in out.text and "network.direction" in out.text
    _agree(rule, adapted, out)
    # Elastic Defend: each kind of event in its own data stream, told apart by event.category
    rule, adapted, out = _translated(kql, env="elastic-endpoint")
    assert out.ok, out.diagnostics
    assert out.text.startswith("FROM logs-endpoint.events.process-*,logs-endpoint.events.network-*")
    _agree(rule, adapted, out)
    # logon events have no filter of their own there: nothing tells them from the others
    (result,) = translate_text(kql.replace("DeviceNetworkEvents", "DeviceLogonEvents")
                               .replace(", ActionType, InitiatingProcessFileName", ""), "esql", env="elastic-endpoint")
    assert not result.ok and result.text == ""
    (error,) = [d for d in result.diagnostics if d.is_error]
    assert "DeviceLogonEvents no test of its own" in error.message and error.span is not None


# ------------------------------------------------------------------ stages after the union


SUMMARIZE = """union DeviceProcessEvents, DeviceNetworkEvents
| where Timestamp > ago(1d)
| where InitiatingProcessFileName in~ ('anydesk.exe', 'cmd.exe')
| summarize Events = count(), Tools = dcount(InitiatingProcessFileName) by DeviceName
| where Events > 1"""


def test_union_then_summarize_and_a_threshold_rows_agree():
    rule, adapted, out = _translated(SUMMARIZE)
    assert out.ok, out.diagnostics
    lines = out.text.splitlines()
    assert lines[0] == "FROM winlogbeat-*,logs-windows.*,logs-system.security-*"  # aggregating: no METADATA
    assert lines[1] == "| WHERE @timestamp > NOW() - 1 day"  # the branches look back alike: said once
    assert "| WHERE Events > 1" in lines
    events = [_event("DeviceProcessEvents", DeviceName="ws1", InitiatingProcessFileName="AnyDesk.exe"),
              _event("DeviceNetworkEvents", DeviceName="ws1", InitiatingProcessFileName="cmd.exe"),
              _event("DeviceNetworkEvents", DeviceName="ws2", InitiatingProcessFileName="cmd.exe")]
    expected = _agree(rule, adapted, out, events)
    by_device = {r["DeviceName"]: (r["Events"], r["Tools"]) for r in expected}
    assert by_device.get("ws1") == (2, 2) and "ws2" not in by_device  # one event: not over the threshold
    # the reference applies no lookback (rows.run): two events 2 days old are no row here
    old = [adapted.normalize(_event(t, minutes=3000, DeviceName="ws3", InitiatingProcessFileName="cmd.exe"))
           for t in ("DeviceProcessEvents", "DeviceNetworkEvents")]
    assert _esql_rows(out.text, adapted, old) == []
    assert [r["host.name"] for r in _esql_rows(out.text.replace("| WHERE @timestamp > NOW() - 1 day\n", ""),
                                               adapted, old)] == ["ws3"]


# ------------------------------------------------------------------ refusals


def test_a_branch_with_its_own_summarize_is_refused_at_the_branch():
    kql = "union (DeviceProcessEvents | summarize n = count() by DeviceName), DeviceNetworkEvents"
    (result,) = translate_text(kql, "esql")
    (error,) = [d for d in result.diagnostics if d.is_error]
    assert "own Summarize stage" in error.message
    assert error.span is not None and kql[error.span.offset:error.span.end].startswith("summarize")


def test_a_source_read_twice_is_refused_not_returned_once():
    (result,) = translate_text("union (DeviceProcessEvents | where FileName == 'a.exe'), "
                               "(DeviceProcessEvents | where FolderPath has 'temp')", "esql")
    assert not result.ok
    assert any("not told apart" in d.message for d in result.diagnostics if d.is_error)


def test_the_any_device_table_hunt_is_refused_for_deviceevents_and_its_known_tables_translate(repo_root):
    path = repo_root / "rules" / "rmm_publisher_any_device_table.txt"
    for env in ("elastic-endpoint", "elastic-winlogbeat"):
        (result,) = translate_file(str(path), "esql", env=load_environment(env))
        assert not result.ok
        assert any("no source for table DeviceEvents" in d.message for d in result.diagnostics if d.is_error)
    kql = """union withsource=SourceTable DeviceProcessEvents, DeviceNetworkEvents, DeviceFileEvents, DeviceRegistryEvents, DeviceImageLoadEvents
| where Timestamp > ago(7d)
| where InitiatingProcessFileName in~ ('AnyDesk.exe', 'rustdesk.exe')
| project Timestamp, SourceTable, DeviceName, ActionType, InitiatingProcessFileName"""
    rule, adapted, out = _translated(kql)
    assert out.ok, out.diagnostics
    for code in ('== "1"', '== "3"', 'IN ("11", "23", "26")', 'IN ("12", "13", "14")', '== "7"'):
        assert f"(TO_LOWER(event.code) {code})" in out.text, code
    _agree(rule, adapted, out)


@pytest.mark.parametrize("kql", [
    "union (DeviceProcessEvents | where FileName =~ 'a.exe' | project DeviceName, FileName), "
    "(DeviceNetworkEvents | project DeviceName, Url = RemoteUrl) | where DeviceName startswith 'ws'",
    "union (DeviceProcessEvents | project DeviceName, Name = FileName), "
    "(DeviceNetworkEvents | project DeviceName, Name = RemoteUrl) | where Name has 'anydesk'",
], ids=["one-branch-column", "renamed-per-branch"])
def test_branches_that_project_their_own_columns_rows_agree(kql):
    rule, adapted, out = _translated(kql)
    assert out.ok, out.diagnostics
    assert "CASE(" in out.text
    _agree(rule, adapted, out)


def test_a_union_test_on_a_column_one_table_lacks_reaches_no_other_column():
    """FileName is a column of DeviceProcessEvents only: KQL's network rows have none, so the
    test is false on them.  Winlogbeat holds FileName as process.name in process events, and
    process.name is the connecting process in network events: the test is decided per branch
    (false in the network branch), never applied to network events' process.name."""
    rule, adapted, out = _translated("union DeviceProcessEvents, DeviceNetworkEvents | where FileName == 'x' "
                                     "| project DeviceName, RemotePort")
    assert out.ok, out.diagnostics
    connection = adapted.normalize(_event("DeviceNetworkEvents", DeviceName="ws1", RemotePort=1))
    started = adapted.normalize(_event("DeviceProcessEvents", DeviceName="ws2", FileName="x"))
    assert run(rule, [connection, started], now=NOW) == [{"DeviceName": "ws2", "RemotePort": None}]
    got = _esql_rows(out.text, adapted, [{**connection, RAW: {"process.name": "x"}}, started])
    assert [r.get("host.name") for r in got] == ["ws2"]
