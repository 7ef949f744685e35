"""Environments over several sources: each union branch, join side and subquery put into the
environment by its own source (names, value forms, filter, placement), and what a field the
environment lacks costs by where the rule reads it (output shape, group keys, detection)."""

from __future__ import annotations


from datetime import timedelta

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.environments import list_environments, load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import emit_adapted, translate_text
from rmmc.verify.multi import multi_events
from rmmc.verify.whole import NOW
from tests.row_sets import comparable, spl_rows


def _rule(kql: str) -> ir.Rule:
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    return lowered.rule


# ------------------------------------------------------------------ union


UNION = """union DeviceProcessEvents, DeviceNetworkEvents
| where DeviceName startswith 'ws'
| project Timestamp, DeviceName, ActionType, InitiatingProcessFileName"""


def test_union_branches_take_each_sources_filter_in_splunk_sysmon():
    env = load_environment("splunk-sysmon")
    adapted = adapt(_rule(UNION), env)
    assert adapted.ok, adapted.diagnostics
    process, network = adapted.rule.union.branches
    # each branch carries its own source's filter, in its own names
    assert "EventCode" in {f.name for f in ir.expr_fields(process.condition)}
    assert adapted.placement.part("DeviceProcessEvents").filter != adapted.placement.part("DeviceNetworkEvents").filter
    text = emit_adapted("splunk", adapted, EmitOptions()).text
    assert "EventCode==1" in text and "EventCode==3" in text
    assert "AdvancedHunting-" not in text  # the environment's placement selects, not the streaming API's field
    assert "DeviceName" not in text and "Computer" in text


WITHSOURCE = """union withsource=Source DeviceProcessEvents, DeviceNetworkEvents
| where DeviceName startswith 'ws' and Source == 'DeviceNetworkEvents' or InitiatingProcessFileName =~ 'cmd.exe'
| project Source, DeviceName, InitiatingProcessFileName"""


@pytest.mark.parametrize("kql", [UNION, WITHSOURCE], ids=["project", "withsource"])
def test_union_column_held_differently_per_branch_is_computed_in_each_and_rows_agree(kql):
    """InitiatingProcessFileName is ParentImage's name in Sysmon process events and Image's in
    network events: each branch computes it under the rule's name; the SPL's rows, run over
    Sysmon-shaped events, are the rule's rows (`withsource` told apart by each source's
    EventCode)."""
    rule = _rule(kql)
    env = load_environment("splunk-sysmon")
    adapted = adapt(rule, env)
    for branch in adapted.rule.union.branches:
        extends = [s for s in branch.stages if isinstance(s, ir.Extend)]
        assert any(n == "InitiatingProcessFileName" for s in extends for n, _ in s.columns), branch.stages
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok, out.diagnostics
    events = [adapted.normalize(e) for e in multi_events(rule)]
    expected = run(rule, events, now=NOW)
    assert expected, "the events exercise the rule"
    got = spl_rows(out.text, adapted, events, ("`sysmon`",))
    names = {v: k for k, v in adapted.names.items()}
    assert comparable(got, lambda k: names.get(k, "Timestamp" if k == "_time" else k)) == \
        comparable(expected, lambda k: k), out.text


def _spl_union(kql: str):
    rule = _rule(kql)
    adapted = adapt(rule, load_environment("splunk-sysmon"))
    assert adapted.ok, adapted.diagnostics
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok, out.diagnostics
    return rule, adapted, out


def _at(table: str, **columns) -> dict:
    return {ir.TABLE: table, "Timestamp": NOW - timedelta(minutes=5), **columns}


def test_a_filter_after_an_extend_over_a_union_is_kept_in_spl():
    """`extend x = ... | where x == ...` over a union: the filter is tested in every branch
    (it was once moved into a condition the SPL writer then dropped: every row came back)."""
    rule, adapted, out = _spl_union("union DeviceProcessEvents, DeviceNetworkEvents\n"
                                    "| extend x = strcat(DeviceName, '1')\n| where x == 'ws11'\n"
                                    "| project DeviceName, x")
    events = [adapted.normalize(e) for e in (_at("DeviceProcessEvents", DeviceName="ws1"),
                                             _at("DeviceNetworkEvents", DeviceName="ws1"),
                                             _at("DeviceProcessEvents", DeviceName="ws2"),
                                             _at("DeviceNetworkEvents", DeviceName="ws3"))]
    expected = run(rule, events, now=NOW)
    assert expected == [{"DeviceName": "ws1", "x": "ws11"}] * 2
    got = spl_rows(out.text, adapted, events, ("`sysmon`",))
    names = {v: k for k, v in adapted.names.items()}
    assert comparable(got, lambda k: names.get(k, k)) == comparable(expected), out.text


def test_a_union_test_on_a_column_one_table_lacks_is_false_in_the_other_branch_in_spl():
    """FileName is Image's name in Sysmon process events; network events have no FileName (KQL:
    '' there), and their Image is the connecting process: the test must not reach it."""
    rule, adapted, out = _spl_union("union DeviceProcessEvents, DeviceNetworkEvents\n"
                                    "| where FileName =~ 'x.exe'\n| project DeviceName")
    connection = adapted.normalize(_at("DeviceNetworkEvents", DeviceName="ws1", InitiatingProcessFileName="x.exe"))
    started = adapted.normalize(_at("DeviceProcessEvents", DeviceName="ws2", FileName="x.exe"))
    expected = run(rule, [connection, started], now=NOW)
    assert expected == [{"DeviceName": "ws2"}]
    got = spl_rows(out.text, adapted, [connection, started], ("`sysmon`",))
    assert [r.get("Computer") for r in got] == ["ws2"], out.text


def test_union_branches_with_their_own_macros(tmp_path):
    path = tmp_path / "env.yml"
    path.write_text("""name: two-macros
description: process and network events behind their own macros
target: splunk
time_field: _time
sources:
  - match: {table: DeviceProcessEvents}
    place: {search: '`proc`'}
    filter: {EventCode: 1}
    others: '{name}'
  - match: {table: DeviceNetworkEvents}
    place: {search: '`net`'}
    filter: {EventCode: 3}
    others: '{name}'
""", encoding="utf-8")
    env = load_environment(str(path))
    adapted = adapt(_rule("union DeviceProcessEvents, DeviceNetworkEvents | where DeviceName == 'a'"), env,
                    allow_unknown_fields=True)
    text = emit_adapted("splunk", adapted, EmitOptions()).text
    first = text.splitlines()[0]
    assert "(`proc`" in first and "(`net`" in first, text


def test_union_test_on_a_column_one_source_lacks_is_located():
    env = load_environment("splunk-sysmon")
    adapted = adapt(_rule("union DeviceProcessEvents, DeviceNetworkEvents\n"
                          "| where InitiatingProcessVersionInfoCompanyName has 'AnyDesk'"), env)
    assert not adapted.ok
    (error,) = [d for d in adapted.diagnostics if d.is_error and "DeviceNetworkEvents" in d.message]
    assert "InitiatingProcessVersionInfoCompanyName" in error.message and error.span is not None


def test_esql_writes_a_union_under_each_sources_filter_or_refuses_it_rather_than_dropping_branches():
    kql = "union DeviceProcessEvents, DeviceNetworkEvents | where DeviceName == 'a'"
    (result,) = translate_text(kql, "esql", allow_unknown_fields=True)  # elastic-winlogbeat: event codes
    assert result.ok, result.diagnostics
    assert '(TO_LOWER(event.code) == "1")' in result.text and '(TO_LOWER(event.code) == "3")' in result.text
    (result,) = translate_text(kql, "esql", env="elastic-endpoint")  # event.category there
    assert result.ok, result.diagnostics
    assert '(TO_LOWER(event.category) == "process")' in result.text and '(TO_LOWER(event.category) == "network")' in result.text
    logons = kql.replace("DeviceNetworkEvents", "DeviceLogonEvents")  # no filter of their own there
    (result,) = translate_text(logons, "esql", env="elastic-endpoint")
    assert not result.ok and "union" in " ".join(d.message for d in result.diagnostics if d.is_error)


# ------------------------------------------------------------------ join, subquery


JOIN = """DeviceProcessEvents
| where FileName =~ 'AnyDesk.exe'
| project Timestamp, DeviceName, FileName
| join kind=inner (DeviceNetworkEvents | where RemoteUrl has 'anydesk.com' | project NetworkTime = Timestamp, DeviceName, RemoteUrl) on DeviceName
| where NetworkTime > Timestamp and NetworkTime <= Timestamp + 5m"""


def test_join_in_elastic_winlogbeat_names_both_sides_in_ecs_and_verify_agrees():
    pytest.importorskip("eql")
    from rmmc.verify.runner import verify_rule

    env = load_environment("elastic-winlogbeat")
    rule = _rule(JOIN)
    adapted = adapt(rule, env)
    assert adapted.ok, adapted.diagnostics
    (join,) = [s for s in adapted.rule.stages if isinstance(s, ir.Join)]
    assert join.keys == (("host.name", "host.name"),)
    (result,) = translate_text(JOIN, "eql", allow_lossy=True)
    assert result.text.startswith("sequence by host.name with maxspan=5m"), result.text
    assert "DeviceName" not in result.text and "destination.domain" in result.text
    _, (verdict,) = verify_rule(rule, ["eql"], env=env)
    assert verdict.status == "agree", verdict


def test_join_key_held_in_another_form_is_refused_at_the_join():
    env = load_environment("sigma")
    adapted = adapt(_rule("DeviceProcessEvents | join kind=inner (DeviceImageLoadEvents) on SHA1"), env)
    errors = [d for d in adapted.diagnostics if d.is_error]
    assert errors and all("join" in d.message and "SHA1" in d.message for d in errors)


def test_subquery_in_sentinel_reads_its_own_tables_time():
    kql = ("DeviceProcessEvents | where Timestamp > ago(1d)\n"
           "| where SHA1 in (DeviceFileCertificateInfo | where Timestamp > ago(30d) | where Signer == 'x' "
           "| distinct SHA1)")
    (result,) = translate_text(kql, "kql", env="sentinel")
    assert result.ok, result.diagnostics
    assert "Timestamp" not in result.text and result.text.count("TimeGenerated > ago(") == 2, result.text


def test_subquery_in_splunk_sysmon_is_a_subsearch_over_its_own_source():
    kql = ("DeviceProcessEvents | where DeviceName in (DeviceNetworkEvents | where RemoteUrl has 'anydesk.com' "
           "| distinct DeviceName)")
    (result,) = translate_text(kql, "splunk")
    assert result.ok, [d.message for d in result.diagnostics if d.is_error]
    sub = result.text[result.text.index("["):]
    assert "EventCode==3" in sub and "DestinationHostname" in sub and "Computer" in sub
    assert "DeviceName" not in result.text and "RemoteUrl" not in result.text


def test_each_builtin_time_field_is_a_time_column_for_correlations():
    from rmmc.compiler.correlate import TIME_COLUMNS

    for info in list_environments():
        env = load_environment(info.name)
        assert env.time_field in TIME_COLUMNS
        assert all(s.time_field in (None, *TIME_COLUMNS) for s in env.sources)


# ------------------------------------------------------------------ a field the environment lacks


BASE = "DeviceProcessEvents | where FileName =~ 'AnyDesk.exe'\n"


def _one(kql: str, **kw):
    (result,) = translate_text(BASE + kql, "eql", env="elastic-endpoint", **kw)
    return result


def test_a_missing_field_only_the_output_reads_is_left_out_with_a_shape_warning():
    result = _one("| summarize Report = make_set(ReportId), First = min(Timestamp) by DeviceName")
    assert result.verdict == "exact", result.diagnostics
    (shape,) = [d for d in result.diagnostics if d.code == "shape" and "ReportId" in d.message]
    adapted = adapt(_rule(BASE + "| summarize Report = make_set(ReportId), First = min(Timestamp) "
                                 "by DeviceName"), load_environment("elastic-endpoint"))
    (summarize,) = [s for s in adapted.rule.stages if isinstance(s, ir.Summarize)]
    assert [a.name for a in summarize.aggregates] == ["First"]
    project = adapt(_rule(BASE + "| project DeviceName, ReportId"), load_environment("elastic-endpoint"))
    assert project.ok and [n for n, _ in project.rule.stages[-1].columns] == ["host.name"]


def test_a_missing_group_key_is_lossy_and_written_without_it_when_allowed():
    result = _one("| summarize count() by DeviceName, AccountUpn")
    assert result.verdict == "refused"
    (refusal,) = [d for d in result.diagnostics if "AccountUpn" in d.message]
    assert refusal.code == "lossy" and refusal.is_error
    allowed = adapt(_rule(BASE + "| summarize count() by DeviceName, AccountUpn"),
                    load_environment("elastic-endpoint"))
    (lossy,) = [d for d in allowed.diagnostics if "AccountUpn" in d.message]
    assert isinstance(lossy.subject, ir.Field) and lossy.subject.name == "AccountUpn"
    (summarize,) = [s for s in allowed.rule.stages if isinstance(s, ir.Summarize)]
    assert summarize.keys == ("host.name",)
    assert _one("| summarize count() by DeviceName, AccountUpn", allow_lossy=True).verdict == "lossy"


@pytest.mark.parametrize("tail", [
    "| where AccountUpn == 'a@b'",                                       # a filter
    "| summarize n = dcount(ReportId) by DeviceName | where n > 3",      # a threshold reads it
    "| extend Who = AccountUpn | where isnotempty(Who)",                 # through a computed column
    "| sort by ReportId desc | take 1",                                  # which rows come out
])
def test_a_missing_field_the_detection_reads_stays_an_error(tail):
    result = _one(tail, allow_lossy=True)
    assert result.verdict == "refused"
    assert any(d.code == "environment" and d.is_error for d in result.diagnostics), result.diagnostics
    assert _one(tail, allow_lossy=True, allow_unknown_fields=True).ok


def test_a_join_sides_missing_column_a_later_filter_reads_is_an_error_not_left_out():
    env = load_environment("elastic-endpoint")
    join = ("DeviceProcessEvents | where FileName =~ 'AnyDesk.exe'\n"
            "| join kind=inner (DeviceNetworkEvents | project DeviceName, InitiatingProcessAccountUpn) on DeviceName\n")
    shown = adapt(_rule(join), env)
    assert shown.ok and any(d.code == "shape" and "InitiatingProcessAccountUpn" in d.message for d in shown.diagnostics)
    tested = adapt(_rule(join + "| where InitiatingProcessAccountUpn == 'a@b'"), env)
    assert not tested.ok
    assert any(d.is_error and d.code == "environment" and "InitiatingProcessAccountUpn" in d.message
               for d in tested.diagnostics)


def test_a_subquery_over_a_table_the_environment_lacks_is_dropped_as_lossy():
    kql = ("DeviceProcessEvents | where FileName =~ 'AnyDesk.exe'\n"
           "| where SHA1 !in (DeviceFileCertificateInfo | where Signer == 'AnyDesk Software GmbH' | distinct SHA1)")
    (strict,) = translate_text(kql, "splunk")
    assert not strict.ok
    assert any(d.code == "lossy" and "DeviceFileCertificateInfo" in d.message for d in strict.diagnostics)
    (allowed,) = translate_text(kql, "splunk", allow_lossy=True)
    assert allowed.verdict == "lossy" and "Signer" not in allowed.text and "AnyDesk.exe" in allowed.text
    (kept,) = translate_text(kql, "kql", env="sentinel")  # Sentinel has the table: kept, exact
    assert kept.verdict == "exact" and "DeviceFileCertificateInfo" in kept.text


def test_verify_runs_a_join_in_sentinel_on_events_shaped_per_table():
    pytest.importorskip("duckdb_kql")
    from rmmc.verify.runner import verify_rule

    rule = _rule(JOIN)
    events, (verdict,) = verify_rule(rule, ["kql"], env=load_environment("sentinel"))
    assert verdict.status == "agree" and verdict.engine == "duckdb-kql", verdict
    adapted = adapt(rule, load_environment("sentinel"))
    shaped = [adapted.target_event(e) for e in multi_events(rule)]
    assert shaped and all("TimeGenerated" in e and "Timestamp" not in e for e in shaped)
    assert {e[ir.TABLE] for e in shaped} == {"DeviceProcessEvents", "DeviceNetworkEvents"}


def test_union_over_data_models_is_refused_not_written_as_a_plain_search():
    (result,) = translate_text("union DeviceProcessEvents, DeviceNetworkEvents | where DeviceName == 'a'",
                               "splunk", env="splunk-cim", allow_unknown_fields=True)
    assert not result.ok
    (error,) = [d for d in result.diagnostics if d.is_error]
    assert "Endpoint.Processes" in error.message and "Network_Traffic.All_Traffic" in error.message
