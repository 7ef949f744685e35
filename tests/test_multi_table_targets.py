"""Several sources on every target: the multi-table RMM hunts of rules/ verified on the engines,
their SPL run by the SPL interpreter against the reference evaluator, and each target's form
of union, join and subquery held to its documented meaning."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from rmmc.backends import emit
from rmmc.backends.base import EmitOptions
from rmmc.compiler import ir
from rmmc.compiler.documents import read_path
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.pipeline import compile_document
from rmmc.compiler.rows import run
from rmmc.verify.multi import multi_events
from rmmc.verify.whole import NOW
from tests.row_sets import comparable, spl_time_as_timestamp

ROOT = Path(__file__).resolve().parent.parent
HUNTS = {
    # file: verdict per target in its default environment (kql: defender-xdr, sigma: sigma,
    # splunk: splunk-sysmon, eql: elastic-winlogbeat), then with --allow-lossy and
    # --allow-unknown-fields, then verify's status for sigma and eql (verify writes unknown
    # fields under their own names).  Sysmon has no DeviceId (every join key and group key
    # here), no version information in network events, no DeviceEvents / DeviceLogonEvents /
    # DeviceFileCertificateInfo source; the sigma environment holds SHA1 / SHA256 inside Hashes,
    # which a correlation cannot group by.
    "rmm_process_then_netconn_5m.txt": ({"splunk": "refused", "sigma": "exact", "eql": "refused"},
                                        {"splunk": "exact", "sigma": "exact", "eql": "lossy"},
                                        {"sigma": "agree", "eql": "agree"}),
    "rmm_file_write_then_exec.txt": ({"splunk": "refused", "sigma": "refused", "eql": "refused"},
                                     {"splunk": "exact", "sigma": "refused", "eql": "lossy"},
                                     {"sigma": "refused", "eql": "agree"}),
    "rmm_tool_on_many_devices.txt": ({"splunk": "refused", "sigma": "exact", "eql": "refused"},
                                     {"splunk": "exact", "sigma": "exact", "eql": "refused"},
                                     {"sigma": "agree", "eql": "refused"}),
    "rmm_publisher_any_device_table.txt": ({"splunk": "refused", "sigma": "exact", "eql": "refused"},
                                           {"splunk": "refused", "sigma": "exact", "eql": "refused"},
                                           {"sigma": "agree", "eql": "refused"}),
    "rmm_process_unapproved_signer.txt": ({"splunk": "refused", "sigma": "refused", "eql": "refused"},
                                          {"splunk": "refused", "sigma": "refused", "eql": "refused"},
                                          {"sigma": "refused", "eql": "refused"}),
}


def _rule(name: str) -> ir.Rule:
    (doc,) = read_path(str(ROOT / "rules" / name)).documents
    compiled = compile_document(doc)
    assert compiled.rule is not None, compiled.diagnostics
    return compiled.rule


@pytest.mark.parametrize("name", sorted(HUNTS))
def test_each_hunt_translates_as_expected_and_verify_agrees(name):
    pytest.importorskip("duckdb_kql")
    pytest.importorskip("sigma.backends.sqlite")
    pytest.importorskip("eql")
    from rmmc.translation import translate_file
    from rmmc.verify import verify_paths

    strict, allowed, verified = HUNTS[name]
    path = str(ROOT / "rules" / name)
    verdicts = {t: translate_file(path, t)[0].verdict for t in ("kql", "splunk", "sigma", "eql")}
    assert verdicts == {"kql": "exact", **strict}
    loose = {t: translate_file(path, t, EmitOptions(allow_lossy=True), allow_unknown_fields=True)[0]
             for t in ("splunk", "sigma", "eql")}
    assert {t: r.verdict for t, r in loose.items()} == allowed
    if allowed["eql"] == "lossy":
        assert loose["eql"].text.startswith("sequence ") and " with maxspan=" in loose["eql"].text
    (verdict,) = list(verify_paths([path], ["kql", "sigma", "eql"]))
    got = {t.target: t for t in verdict.targets}
    assert got["kql"].status == "agree" and got["kql"].engine == "duckdb-kql", got["kql"]
    assert {t: got[t].status for t in ("sigma", "eql")} == verified, got
    assert not verdict.failed


# ------------------------------------------------------------------ SPL, run


def _spl_events(events: list[dict]) -> list[dict]:
    """Events as Splunk holds them for the `defender` profile: the table in `category` (the
    streaming API's field), the time as `_time` epoch seconds, no dynamic bags."""
    out = []
    for e in events:
        row = {k: v for k, v in e.items() if v is not None and k != ir.TABLE and not isinstance(v, dict)}
        row["category"] = "AdvancedHunting-" + e[ir.TABLE]
        stamp = row.pop("Timestamp", None)
        if isinstance(stamp, datetime):
            row["_time"] = stamp.timestamp()
        out.append(row)
    return out


@pytest.mark.parametrize("name", [n for n in sorted(HUNTS)])
def test_each_hunts_spl_returns_the_rules_rows(name):
    spl_pipeline = pytest.importorskip("tests.spl_pipeline")
    from tests.pcre import available

    if available() is not None:
        pytest.skip(available())
    rule = _rule(name)
    out = emit("splunk", rule, EmitOptions(), fields="defender")
    assert out.ok, out.diagnostics
    events = multi_events(rule)
    expected = run(rule, events, now=NOW)
    got = spl_pipeline.run(out.text, _spl_events(events))
    assert expected, "the events exercise the rule"
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text


# ------------------------------------------------------------------ forms per target

JOIN = ("DeviceProcessEvents | where FileName =~ 'a.exe'\n"
        "| join kind=inner (DeviceNetworkEvents | where RemoteUrl has 'x.com' | project T2 = Timestamp, DeviceId)"
        " on DeviceId\n| where T2 > Timestamp and T2 <= Timestamp + 5m")


def _emit(target: str, kql: str, **options):
    lowered = lower_text(kql)
    assert lowered.ok, lowered.diagnostics
    return emit(target, lowered.rule, EmitOptions(**options), "defender" if target in ("splunk", "eql") else None)


def test_sigma_says_a_windowed_join_as_two_rules_and_a_temporal_ordered_correlation():
    pytest.importorskip("sigma.collection")
    from sigma.collection import SigmaCollection

    out = _emit("sigma", JOIN)
    assert out.ok, out.diagnostics
    docs = list(yaml.safe_load_all(out.text))
    assert [d["logsource"]["category"] for d in docs[:2]] == ["process_creation", "network_connection"]
    corr = docs[2]["correlation"]
    assert corr["type"] == "temporal_ordered" and corr["timespan"] == "5m" and corr["group-by"] == ["DeviceId"]
    assert corr["rules"] == [docs[0]["name"], docs[1]["name"]]
    assert len(SigmaCollection.from_yaml(out.text).rules) == 3


@pytest.mark.parametrize("window, kind, exact", [
    ("T2 > Timestamp and T2 <= Timestamp + 5m", "temporal_ordered", True),
    ("T2 between (Timestamp - 5m .. Timestamp + 5m)", "temporal", True),
    ("T2 >= Timestamp and T2 <= Timestamp + 5m", "temporal_ordered", False),  # pySigma orders strictly
    ("T2 - Timestamp between (1m .. 5m)", "temporal_ordered", False),
])
def test_only_the_windows_a_correlation_says_are_exact(window, kind, exact):
    kql = JOIN.replace("T2 > Timestamp and T2 <= Timestamp + 5m", window)
    out = _emit("sigma", kql, allow_lossy=True)
    assert out.ok, out.diagnostics
    assert yaml.safe_load_all(out.text).__next__() is not None
    corr = [d for d in yaml.safe_load_all(out.text) if "correlation" in d][0]["correlation"]
    assert corr["type"] == kind
    assert any(d.code == "lossy" for d in out.diagnostics) != exact


def test_innerunique_and_missing_windows_are_lossy_and_anti_joins_refused():
    lossy = _emit("sigma", JOIN.replace("kind=inner ", ""), allow_lossy=True)
    assert any("innerunique" in d.message and d.code == "lossy" for d in lossy.diagnostics)
    no_window = _emit("sigma", JOIN.split("\n| where T2")[0], allow_lossy=True)
    assert any("no time window" in d.message for d in no_window.diagnostics)
    anti = _emit("sigma", JOIN.replace("kind=inner", "kind=leftanti").split("\n| where T2")[0])
    assert not anti.ok and "leftanti" in anti.diagnostics[0].message


def test_eql_says_a_windowed_join_as_a_sequence_and_a_union_by_category():
    pytest.importorskip("eql")
    from rmmc.verify.eql_elastic import parse

    seq = _emit("eql", JOIN, allow_lossy=True)
    assert seq.text.startswith("sequence by DeviceId with maxspan=5m [process where ")
    assert parse(seq.text, sequences=True) is not None
    union = _emit("eql", "union DeviceProcessEvents, DeviceFileEvents | where FolderPath endswith 'x.exe'")
    assert union.ok and union.text.startswith('any where (event.category == "process" and ')
    assert '(event.category == "file" and ' in union.text
    parse(union.text)


def test_eql_sequence_groups_follow_elasticsearchs_order_and_maxspan():
    pytest.importorskip("eql")
    from rmmc.verify.eql_elastic import sequence_groups

    query = 'sequence by k with maxspan=5m [process where a == "x"] [network where true]'
    events = [{"event.category": "process", "a": "x", "k": "1"}, {"event.category": "network", "k": "1"},
              {"event.category": "network", "k": "2"}, {"event.category": "process", "a": "x", "k": "2"}]
    assert sequence_groups(query, events, [0, 300, 0, 1]) == {("1",)}  # 5m is within; 2 came first
    assert sequence_groups(query, events, [0, 301, 0, 1]) == set()
    assert sequence_groups(query, events, [0, 0, 0, 1]) == {("1",)}  # a tie: the index order decides


def test_spl_says_joins_and_subqueries_with_splunks_join_and_a_keyed_subsearch():
    out = _emit("splunk", JOIN)
    assert out.ok, out.diagnostics
    lines = out.text.splitlines()
    assert lines[0].startswith('search category="AdvancedHunting-DeviceProcessEvents"')
    assert any(line.startswith("| join type=inner max=0 rmmc_k1 [search category=") for line in lines)
    semi = _emit("splunk", "DeviceProcessEvents | where SHA1 !in (DeviceFileCertificateInfo | where Signer has 'x'"
                           " | distinct SHA1)")
    assert semi.ok and "| join type=left max=1 rmmc_k1 [" in semi.text and "| where isnull(rmmc_m)" in semi.text
    assert any(d.code == "source" for d in semi.diagnostics)


@pytest.mark.parametrize("kql", [
    JOIN,
    JOIN.replace("kind=inner", "kind=leftsemi").split("\n| where T2")[0],
    JOIN.replace("kind=inner", "kind=leftanti").split("\n| where T2")[0],
    JOIN.replace("kind=inner ", "").split("\n| where T2")[0] + "\n| project DeviceId, FileName, T2",
    JOIN.replace("kind=inner", "kind=leftouter").split("\n| where T2")[0] + "\n| project DeviceId, FileName, T2",
    "DeviceProcessEvents | where DeviceId in (DeviceNetworkEvents | where RemoteUrl has 'x.com' | distinct DeviceId)",
    "DeviceProcessEvents | where DeviceId !in~ (DeviceNetworkEvents | where RemoteUrl has 'x.com' | distinct DeviceId)",
    "union withsource=S DeviceProcessEvents, DeviceNetworkEvents | where DeviceId == 'd1' | project S, DeviceId",
    "union withsource=S (DeviceProcessEvents | where FileName =~ 'a.exe' | project DeviceId, Name = FileName),"
    " (DeviceNetworkEvents | project DeviceId, Name = RemoteUrl, U = strcat(RemoteUrl, '/'))"
    " | where Name has 'x' or DeviceId == 'd1'",
    "union (DeviceProcessEvents | project DeviceId, N = FileName), (DeviceNetworkEvents | project DeviceId)"
    " | summarize c = count(), n = dcount(N) by DeviceId",
    "DeviceProcessEvents | parse ProcessCommandLine with * '--id ' Id ' ' Rest | project Id, Rest",
])
def test_spl_rows_equal_the_evaluators(kql):
    spl_pipeline = pytest.importorskip("tests.spl_pipeline")
    from tests.pcre import available

    if available() is not None:
        pytest.skip(available())
    rule = lower_text(kql).rule
    out = _emit("splunk", kql)
    assert out.ok, out.diagnostics
    t = NOW - timedelta(hours=1)
    events = []
    for i, (device, name, url, cmd) in enumerate([
            ("d1", "a.exe", "x.com", "run --id 42 now"), ("d1", "A.EXE", "y.com", "--id 7 "),
            ("D1", "a.exe", "https://x.com/a", "no id here"), ("d2", "b.exe", "x.com", "x --id  z"),
            (None, "a.exe", "x.com", "--id a b c")]):
        events.append({ir.TABLE: "DeviceProcessEvents", "DeviceId": device, "FileName": name,
                       "ProcessCommandLine": cmd, "Timestamp": t + timedelta(minutes=i)})
        events.append({ir.TABLE: "DeviceNetworkEvents", "DeviceId": device, "RemoteUrl": url,
                       "Timestamp": t + timedelta(minutes=2 * i)})
    events = [{k: v for k, v in e.items() if v is not None} for e in events]
    if not set(ir.features(rule)) - {"parse"}:  # one table: its search names no source (the prefix does)
        events = [e for e in events if e[ir.TABLE] == rule.source.table]
    expected = run(rule, events, now=NOW)
    got = spl_pipeline.run(out.text, _spl_events(events))
    if not any(isinstance(s, (ir.Project, ir.Summarize)) for s in rule.stages):
        keep = {k for row in got for k in row} - {"category"}
        expected = [{k: v for k, v in r.items() if ("_time" if k == "Timestamp" else k) in keep} for r in expected]
        got = [{k: v for k, v in r.items() if k != "category"} for r in got]
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text
    assert math.isfinite(len(got))


# ------------------------------------------------------------------ dynamic fields

PATHS = ("DeviceEvents | where ActionType == 'AntivirusDetection'"
         " and tostring(parse_json(AdditionalFields).ThreatName) has 'Mimikatz'"
         " and AdditionalFields.WasRemediated == 'false'")


@pytest.mark.parametrize("target, written", [
    ("sigma", "AdditionalFields.ThreatName|re|i:"),
    ("splunk", "coalesce('AdditionalFields.ThreatName', \"\")"),
    ("eql", "AdditionalFields.ThreatName regex~"),
    ("esql", 'COALESCE(AdditionalFields.ThreatName, "")'),
])
def test_a_path_into_a_dynamic_column_is_a_field_named_by_its_path(target, written):
    out = _emit(target, PATHS)
    assert out.ok, out.diagnostics
    assert written in out.text
    paths = [d for d in out.diagnostics if d.code == "path"]
    assert {d.message.split(" is a path")[0].split(": ", 1)[1] for d in paths} == {
        "AdditionalFields.ThreatName", "AdditionalFields.WasRemediated"}
    assert not any(d.code == "lossy" for d in out.diagnostics)


def test_a_column_bound_to_parse_json_reads_its_paths_in_spl():
    out = _emit("splunk", "DeviceFileEvents | extend AF = parse_json(AdditionalFields)"
                          " | where tostring(AF.FileType) == 'Shebang' | project SHA256, T = tostring(AF.FileType)")
    assert out.ok, out.diagnostics
    assert "'AdditionalFields.FileType'" in out.text and "AF=" not in out.text  # no column for the bag
    assert any(d.code == "shape" and "AF holds a dynamic value" in d.message for d in out.diagnostics)


def test_json_text_in_a_string_column_is_no_path():
    out = _emit("sigma", "DeviceNetworkEvents | where tostring(parse_json(RemoteUrl).a) == 'b'")
    assert not out.ok  # a string column's JSON text is no field of the event elsewhere


def test_paths_evaluate_on_the_events_dynamic_value():
    lowered = lower_text(PATHS)
    event = {"ActionType": "AntivirusDetection",
             "AdditionalFields": {"ThreatName": "HackTool:Win32/Mimikatz.A", "WasRemediated": "false"}}
    assert run(lowered.rule, [event])
    assert not run(lowered.rule, [dict(event, AdditionalFields={"ThreatName": "Other"})])


# ------------------------------------------------------------------ Sigma collections


def test_a_count_after_a_union_is_one_correlation_over_every_sources_rule():
    pytest.importorskip("sigma.collection")
    from sigma.collection import SigmaCollection

    out = _emit("sigma", "union DeviceProcessEvents, DeviceNetworkEvents | where Timestamp > ago(7d)"
                         " | where InitiatingProcessVersionInfoCompanyName has 'AnyDesk'"
                         " | summarize Devices = dcount(DeviceId) by InitiatingProcessVersionInfoCompanyName"
                         " | where Devices > 3")
    assert out.ok, out.diagnostics
    docs = list(yaml.safe_load_all(out.text))
    rules, corr = docs[:2], docs[2]["correlation"]
    assert [d["logsource"]["category"] for d in rules] == ["process_creation", "network_connection"]
    assert corr["type"] == "value_count" and corr["rules"] == [d["name"] for d in rules]
    assert corr["condition"] == {"field": "DeviceId", "gt": 3} and corr["timespan"] == "7d"
    assert len({d["name"] for d in rules}) == 2
    assert len(SigmaCollection.from_yaml(out.text).rules) == 3
