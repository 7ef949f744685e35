"""Rule packaging: each package parses in its own format and carries the rule's fields."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from rmmc.compiler.documents import read_path
from rmmc.compiler.pipeline import compile_document
from rmmc.packaging import package
from rmmc.translation import translate_document

RULE_PATH = "rules/rmm_remotepc_netconn.txt"
HOSTILE = 'Evil "quoted" \'title\' ] [x]\n[other]\nsearch = | delete \\'


@pytest.fixture(scope="module")
def doc():
    return read_path(RULE_PATH).documents[0]


@pytest.fixture(scope="module")
def rule(doc):
    return compile_document(doc).rule


def _query(doc, target):
    # The bundled rule reads Defender fields Sysmon and Winlogbeat data lack: written anyway
    # (this is about the package around a query).
    return translate_document(doc, target, allow_unknown_fields=True).text


def _hostile(rule):
    meta = replace(rule.metadata, title=HOSTILE, description=HOSTILE + "\n[default]\nx = 1")
    return replace(rule, metadata=meta)


def parse_conf(text: str) -> dict[str, dict[str, str]]:
    """A .conf reader: `[stanza]` lines, `key = value`, a trailing backslash continues the
    value on the next line (the line break is kept)."""
    stanzas: dict[str, dict[str, str]] = {}
    current = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            assert line.endswith("]") and line.count("]") == 1, line
            current = stanzas.setdefault(line[1:-1], {})
            continue
        assert current is not None and " = " in line, line
        key, value = line.split(" = ", 1)
        while value.endswith("\\") and i < len(lines):
            value = value[:-1] + "\n" + lines[i]
            i += 1
        assert key not in current, key
        current[key] = value
    return stanzas


# ------------------------------------------------------------------ Elastic


@pytest.mark.parametrize("target", ["eql", "esql"])
def test_elastic_package(doc, rule, target):
    query = _query(doc, target)
    suffix, text, diagnostics = package(rule, target, query)
    assert suffix == f".{target}.ndjson"  # eql and esql packages of one rule can share a folder
    lines = text.splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert body["name"] == rule.metadata.title
    assert body["rule_id"] == "30d32feb-6ac7-4d97-8a99-d40f5dfa61b5"
    assert body["description"] == rule.metadata.description
    assert body["risk_score"] == 47 and body["severity"] == "medium"
    assert body["type"] == target and body["language"] == target
    assert body["query"] == query
    assert body["from"] == "now-6m"  # the schedule's interval + overlap, not the hunting 5d
    assert body["interval"] == "5m"
    assert body["enabled"] is False and body["version"] == 1
    assert body["references"] == ["https://github.com/jischell-msft/RemoteManagementMonitoringTools"]
    assert body["false_positives"][0] == "Scheduled System Maintenance via RemotePC"
    assert len(body["false_positives"]) == 5
    if target == "eql":
        assert body["index"] == ["logs-*"]
    else:
        assert "index" not in body
    [threat] = body["threat"]
    assert threat["framework"] == "MITRE ATT&CK"
    assert threat["tactic"] == {"id": "TA0011", "name": "Command and Control",
                                "reference": "https://attack.mitre.org/tactics/TA0011/"}
    [technique] = threat["technique"]
    assert technique["id"] == "T1219"
    assert technique["reference"] == "https://attack.mitre.org/techniques/T1219/"
    assert not any(d.is_error for d in diagnostics)


def test_elastic_levels_and_generated_id(rule):
    for level, score in (("low", 21), ("high", 73), ("critical", 99), ("informational", 21)):
        r = replace(rule, metadata=replace(rule.metadata, level=level))
        body = json.loads(package(r, "eql", "q")[1])
        assert body["risk_score"] == score
        assert body["severity"] == ("low" if level == "informational" else level)
    no_id = replace(rule, metadata=replace(rule.metadata, id=None))
    first = json.loads(package(no_id, "eql", "q")[1])["rule_id"]
    again = json.loads(package(no_id, "esql", "q")[1])["rule_id"]
    assert first == again and first != rule.metadata.id and len(first) == 36


def test_elastic_subtechniques_and_unknown_tactics(rule):
    meta = replace(rule.metadata, tactics=("CommandAndControl", "Nonsense"),
                   techniques=("T1219", "T1059.001", "bogus"))
    suffix, text, diagnostics = package(replace(rule, metadata=meta), "eql", "q")
    c2, execution = json.loads(text)["threat"]
    assert [t["id"] for t in c2["technique"]] == ["T1219"]
    assert c2["technique"][0]["name"] == "Remote Access Tools"
    # T1059 is filed under Execution in ATT&CK: that tactic is added for it
    assert execution["tactic"]["name"] == "Execution"
    [t1059] = execution["technique"]
    assert t1059["name"] == "Command and Scripting Interpreter"
    assert t1059["subtechnique"] == [{"id": "T1059.001", "name": "PowerShell",
                                      "reference": "https://attack.mitre.org/techniques/T1059/001/"}]
    messages = [d.message for d in diagnostics]
    assert sum("Nonsense" in m or "bogus" in m or "added" in m for m in messages) == 3


@pytest.mark.parametrize("target", ["eql", "esql"])
def test_elastic_hostile_metadata(rule, target):
    query = 'a "b" \n c \\ d'
    _, text, _ = package(_hostile(rule), target, query)
    lines = text.splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert body["name"] == HOSTILE.strip()
    assert body["query"] == query


# ------------------------------------------------------------------ Splunk


def test_splunk_package(doc, rule):
    query = _query(doc, "splunk")
    assert "\n" in query
    suffix, text, diagnostics = package(rule, "splunk", query)
    assert suffix == ".conf"
    stanzas = parse_conf(text)
    assert list(stanzas) == [rule.metadata.title]
    s = stanzas[rule.metadata.title]
    assert s["search"] == query.strip("\n")  # the trailing line break is not kept
    assert s["dispatch.earliest_time"] == "-6m"
    assert s["dispatch.latest_time"] == "now"
    assert s["cron_schedule"] == "*/5 * * * *"
    assert s["enableSched"] == "1"
    assert s["alert.track"] == "1"
    assert s["alert.severity"] == "4"
    assert s["counttype"] == "number of events"
    assert s["relation"] == "greater than"
    assert s["quantity"] == "0"
    assert s["description"] == " ".join(rule.metadata.description.split())
    assert not any(d.is_error for d in diagnostics)


def test_splunk_hostile_metadata(rule):
    query = "search x\n[other]\n| where y \\"
    _, text, diagnostics = package(_hostile(rule), "splunk", query)
    stanzas = parse_conf(text)
    assert len(stanzas) == 1
    [(name, s)] = stanzas.items()
    assert "]" not in name and "[" not in name and "\n" not in name
    assert "\n" not in s["description"] and not s["description"].endswith("\\")
    assert s["search"].rstrip() == query
    assert s["cron_schedule"] == "*/5 * * * *"  # nothing swallowed the following settings
    assert diagnostics  # the trailing backslash was noted
    for line in text.splitlines():
        # a line starting with "[" is only ever the stanza header or a continued value
        if line.startswith("["):
            assert line == f"[{name}]" or line == "[other]\\"
    # "[other]" sits inside the continued search value, not at the start of a setting
    assert text.index("[other]") > text.index("search = ")


# ------------------------------------------------------------------ Microsoft Sentinel


def test_sentinel_package(doc, rule):
    query = _query(doc, "kql")
    suffix, text, diagnostics = package(rule, "kql", query)
    assert suffix == ".yaml"
    body = yaml.safe_load(text)
    assert body["id"] == "30d32feb-6ac7-4d97-8a99-d40f5dfa61b5"
    assert body["name"] == rule.metadata.title
    assert body["description"] == rule.metadata.description
    assert body["severity"] == "Medium"
    assert body["requiredDataConnectors"] == [
        {"connectorId": "MicrosoftThreatProtection", "dataTypes": ["DeviceNetworkEvents"]}]
    assert body["queryFrequency"] == "5m"
    assert body["queryPeriod"] == "6m"
    assert body["triggerOperator"] == "gt" and body["triggerThreshold"] == 0
    assert body["tactics"] == ["CommandAndControl"]
    assert body["relevantTechniques"] == ["T1219"]
    assert body["query"].rstrip("\n") == query.rstrip("\n")
    assert body["version"] == "1.0.0" and body["kind"] == "Scheduled"
    assert "query: |" in text  # a block scalar, as the Sentinel repository writes it
    assert not any(d.is_error for d in diagnostics)


def test_sentinel_hostile_metadata(rule):
    query = "T\n| where x == 'a: b' // \"c\"\n- [x]"
    _, text, _ = package(_hostile(rule), "kql", query)
    body = yaml.safe_load(text)
    assert body["name"] == HOSTILE.strip()
    assert body["description"].startswith(HOSTILE.strip())
    assert body["query"].rstrip("\n") == query
    assert body["kind"] == "Scheduled"
    assert list(body)[0] == "id"


def test_sentinel_levels(rule):
    for level, severity in (("informational", "Informational"), ("low", "Low"),
                            ("high", "High"), ("critical", "High")):
        r = replace(rule, metadata=replace(rule.metadata, level=level))
        assert yaml.safe_load(package(r, "kql", "T")[1])["severity"] == severity


# ------------------------------------------------------------------ Sigma and errors


def test_sigma_unchanged(doc, rule):
    query = _query(doc, "sigma")
    assert package(rule, "sigma", query) == (".yml", query, [])


def test_unknown_target(rule):
    with pytest.raises(ValueError):
        package(rule, "nope", "q")


# ------------------------------------------------------------------ schedules


def _kql_package(text, target="kql", **kwargs):
    from rmmc.translation import translate_text

    [result] = translate_text(text, target, package=True, allow_unknown_fields=True, **kwargs)
    assert result.ok, [d.message for d in result.diagnostics]
    return result


_BASE = "DeviceProcessEvents\n| where Timestamp > ago(5d)\n| where FileName =~ 'anydesk.exe'\n"


@pytest.mark.parametrize("stages, hunting", [
    ("", None),
    ("| summarize Count = count() by DeviceName\n", None),
    ("| summarize Count = count() by DeviceName\n| where Count > 5\n", "tests aggregated values"),
    ("| summarize Count = count()\n", "into one row"),
    ("| top 10 by Timestamp\n", "top rows"),
    ("| sort by Timestamp\n", None),
    ("| project DeviceName, FileName\n| take 10\n", None),
])
def test_scheduled_unless_the_meaning_needs_the_window(stages, hunting):
    result = _kql_package(_BASE + stages)
    body = yaml.safe_load(result.text)
    notes = [d.message for d in result.diagnostics if "scheduled every" in d.message
             or "hunting query" in d.message]
    if hunting is None:
        assert body["kind"] == "Scheduled" and body["queryPeriod"] == "6m"
        assert "ago(6m)" in body["query"] and "5d" not in body["query"]
        assert "not the hunting query's 5d" in notes[0]
    else:
        assert "kind" not in body and "queryPeriod" not in body  # the hunting-query form
        assert "ago(5d)" in body["query"]
        assert hunting in notes[0] and "over 5d" in notes[0]


def test_hunting_packages_per_platform():
    text = _BASE + "| summarize Count = count() by DeviceName\n| where Count > 5\n"
    stanza = parse_conf(_kql_package(text, "splunk").text)
    [s] = stanza.values()
    assert s["enableSched"] == "0" and "alert.track" not in s and "cron_schedule" not in s
    assert s["dispatch.earliest_time"] == "-5d"
    body = json.loads(_kql_package(text, "esql").text)
    assert body["tags"] == ["Hunting"] and body["from"] == "now-5d" and body["interval"] == "5d"


def test_union_branches_get_the_window():
    text = ("union (DeviceProcessEvents | where Timestamp > ago(3d)), "
            "(DeviceNetworkEvents | where Timestamp > ago(3d))\n| where DeviceName == 'x'\n")
    body = yaml.safe_load(_kql_package(text).text)
    assert body["query"].count("ago(6m)") == 2 and "3d" not in body["query"]


def test_environment_schedule(tmp_path):
    from rmmc.environments import EnvironmentError, load_environment

    base = open("rmmc/environments/defender-xdr.yml", encoding="utf-8").read()
    good = tmp_path / "hourly.yml"
    good.write_text(base.replace("name: defender-xdr", "name: hourly\nschedule: {interval: 1h, overlap: 5m}"),
                    encoding="utf-8")
    env = load_environment(str(good))
    assert str(env.schedule) == "1h+5m"
    body = yaml.safe_load(_kql_package(_BASE, env=str(good)).text)
    assert (body["queryFrequency"], body["queryPeriod"]) == ("1h", "65m")
    for bad, message in (("schedule: {interval: 7m}", "cron"), ("schedule: {every: 5m}", "unknown key"),
                         ("schedule: 2m+1m", "between 5m and 14d"), ("schedule: 14d+1d", "14d")):
        path = tmp_path / "bad.yml"
        path.write_text(base.replace("name: defender-xdr", "name: bad\n" + bad), encoding="utf-8")
        with pytest.raises(EnvironmentError) as caught:
            load_environment(str(path))
        found = caught.value.diagnostics
        assert any(message in d.message and d.span is not None and d.span.line == 2 for d in found), \
            (bad, [d.message for d in found])


def test_schedule_argument_wins_over_the_environment(tmp_path):
    from rmmc.compiler.documents import read_path as read
    from rmmc.translation import translate_document

    base = open("rmmc/environments/defender-xdr.yml", encoding="utf-8").read()
    path = tmp_path / "hourly.yml"
    path.write_text(base.replace("name: defender-xdr", "name: hourly\nschedule: 1h"), encoding="utf-8")
    doc = read(RULE_PATH).documents[0]
    own = yaml.safe_load(translate_document(doc, "kql", package=True, env=str(path)).text)
    given = yaml.safe_load(translate_document(doc, "kql", package=True, env=str(path), schedule="10m+2m").text)
    assert (own["queryFrequency"], own["queryPeriod"]) == ("1h", "61m")
    assert (given["queryFrequency"], given["queryPeriod"]) == ("10m", "12m")


# ------------------------------------------------------------------ the checks can fail


def test_the_platform_checks_catch_broken_packages(doc, rule):
    """Each check of tests/package_checks.py rejects a package broken in the way it checks."""
    import copy

    from package_checks import parse_conf_strict, sentinel_problems

    body = yaml.safe_load(package(rule, "kql", _query(doc, "kql"))[1])
    assert sentinel_problems(body) == []
    for change, expected in (
            (lambda b: b.update(queryPeriod="4m"), "queryPeriod 4m outside"),
            (lambda b: b.update(queryFrequency="10m", queryPeriod="6m"), "queryPeriod < queryFrequency"),
            (lambda b: b.update(tactics=[]), "no tactic of technique T1219"),
            (lambda b: b.update(tactics=["Execution"]), "no tactic of technique T1219"),
            (lambda b: b["entityMappings"][0]["fieldMappings"][0].update(identifier="Name"), "identifier 'Name'"),
            (lambda b: b["entityMappings"][0]["fieldMappings"][0].update(identifier="DnsDomain"),
             "none of the required"),
            (lambda b: b["entityMappings"].extend(b["entityMappings"] * 3), "entity mappings (1..5)"),
            (lambda b: b["eventGroupingSettings"].update(aggregationKind="Each"), "aggregationKind"),
            (lambda b: b["incidentConfiguration"]["groupingConfiguration"].update(lookbackDuration="P8D"),
             "outside 5m..7d")):
        broken = copy.deepcopy(body)
        change(broken)
        assert any(expected in p for p in sentinel_problems(broken)), expected
    with pytest.raises(AssertionError):
        parse_conf_strict("[a]\nsearch = x\nsearch = y\n")
    with pytest.raises(AssertionError):
        parse_conf_strict("[a]\nsearch = x\n| where y\n")
    with pytest.raises(AssertionError):
        parse_conf_strict("search = x\n")


def test_the_elastic_check_catches_broken_packages(doc, rule, shared_dir):
    from package_checks import elastic_problems, elastic_validator

    reference = shared_dir / "reference"
    if not (reference / "elastic" / "api_schemas").is_dir():
        pytest.skip("shared/reference/elastic not present")
    validator = elastic_validator(reference, "eql")
    body = json.loads(package(rule, "eql", _query(doc, "eql"))[1])
    assert elastic_problems(validator, body) == []
    for change, expected in (
            (lambda b: b.pop("author"), "'author' is a required property"),
            (lambda b: b.update(interval="5 minutes"), "interval"),
            (lambda b: b["alert_suppression"]["group_by"].extend(["a", "b"]), "too long"),
            (lambda b: b["threat"][0]["technique"][0].update(name="T1219"), "named by its id"),
            (lambda b: b["threat"][0]["technique"][0].pop("name"), "'name' is a required property")):
        broken = json.loads(json.dumps(body))
        change(broken)
        assert any(expected in p for p in elastic_problems(validator, broken)), expected


def test_build_schedule(tmp_path):
    """`rmmc build --schedule` packages every rule on that schedule and records it."""
    import shutil

    from rmmc.content.build import build

    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(RULE_PATH, rules)
    result = build(str(rules), str(tmp_path / "dist"), ["sentinel"], schedule="1h+10m", cache_dir=None, jobs=1)
    [written] = (tmp_path / "dist" / "sentinel" / "kql").iterdir()
    body = yaml.safe_load(written.read_text(encoding="utf-8"))
    assert (body["queryFrequency"], body["queryPeriod"]) == ("1h", "70m")
    assert result.manifest["environments"][0]["targets"][0]["schedule"] == "1h+10m"


def test_rules_returning_events_are_suppressed_by_host_and_user():
    """No summarize: Splunk and Elastic suppress by the environment's host and user fields for
    a run's window (the overlap's events alert once); Sentinel groups by the mapped entities."""
    text = "DeviceProcessEvents\n| where Timestamp > ago(5d)\n| where FileName =~ 'anydesk.exe'\n"
    [s] = parse_conf(_kql_package(text, "splunk", env="splunk-sysmon").text).values()
    assert (s["alert.suppress.fields"], s["alert.suppress.period"]) == ("Computer,User", "6m")
    for env in ("elastic-endpoint", "elastic-winlogbeat"):
        body = json.loads(_kql_package(text, "eql", env=env).text)
        assert body["alert_suppression"]["group_by"] == ["host.name", "user.name"]
        assert body["alert_suppression"]["duration"] == {"value": 6, "unit": "m"}
    body = yaml.safe_load(_kql_package(text, "kql").text)
    assert body["incidentConfiguration"]["groupingConfiguration"]["groupByEntities"] == \
        ["Host", "Account", "Process", "File", "FileHash"]


def test_sentinel_cuts_long_names_and_descriptions(rule):
    long = replace(rule, metadata=replace(rule.metadata, title="t" * 300, description="d" * 6000))
    _, text, diagnostics = package(long, "kql", "DeviceProcessEvents")
    body = yaml.safe_load(text)
    assert len(body["name"]) == 256 and len(body["description"]) == 5000
    assert sum("cut" in d.message for d in diagnostics) == 2


@pytest.mark.parametrize("stages, columns", [
    ("", {"DeviceName", "AccountName", "ProcessCommandLine", "SHA256"}),
    ("| project DeviceName, Cmd = ProcessCommandLine\n", {"DeviceName", "Cmd"}),
    ("| summarize arg_max(Timestamp, *) by DeviceId\n", {"DeviceId", "DeviceName", "AccountName"}),
    ("| summarize arg_max(Timestamp, FileName) by DeviceId\n", {"DeviceId", "FileName"}),
    ("| project-away Account*\n| project-rename Host = DeviceName\n", {"Host", "FileName"}),
])
def test_output_columns(stages, columns):
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.packaging.columns import output_columns

    found = set(output_columns(lower_text("DeviceProcessEvents\n" + stages).rule))
    assert columns <= found
    assert not {"AccountName", "DeviceName"} & found if "project-away" in stages else True
    if "project " in stages or "FileName) by" in stages:
        assert found == columns


def test_splunk_refuses_a_schedule_cron_cannot_say(rule):
    from datetime import timedelta

    from rmmc.environments.model import Schedule
    from rmmc.packaging import plan

    _, _, diagnostics = package(rule, "splunk", "search x", plan_=plan(rule, Schedule(timedelta(minutes=7))))
    assert any(d.is_error and "cron" in d.message for d in diagnostics)
