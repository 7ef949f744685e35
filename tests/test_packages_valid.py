"""Every package rmmc writes for the bundled rules (seeds and the RMM pack, rules/), the shared
RMM corpus and SigmaHQ's windows rules passes the checks its platform applies on import
(`tests/package_checks.py`: the Azure-Sentinel repository's analytic-rule validation, Kibana's
rule API JSON schemas, savedsearches.conf syntax), and no package that is not marked hunting
looks back further than its schedule's interval + overlap."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from package_checks import (elastic_problems, elastic_validator, kql_output_has, package_window,
                            parse_conf_strict, sentinel_problems)
from rmmc.backends.base import EmitOptions
from rmmc.compiler.documents import iter_rule_files
from rmmc.environments.model import Schedule
from rmmc.translation import translate_file

REPO = Path(__file__).resolve().parent.parent
ENVS = {"kql": ("defender-xdr", "sentinel"), "splunk": ("splunk-sysmon", "splunk-cim", "splunk-defender"),
        "eql": ("elastic-winlogbeat", "elastic-endpoint"), "esql": ("elastic-winlogbeat", "elastic-endpoint")}
WINDOW = Schedule().window


def _packages(root: Path, target: str, env: str, schedule=None):
    """(path, package text) of every rule under `root` that translates (lossy and unknown fields
    allowed: the package is what is checked here)."""
    out = []
    for path in iter_rule_files([str(root)]):
        for result in translate_file(path, target, EmitOptions(allow_lossy=True), package=True, env=env,
                                     allow_unknown_fields=True, schedule=schedule):
            if result.ok:
                out.append((f"{path}#{result.document.index}", result.text))
    return out


SOURCES = ("rules", "rmm-corpus", "sigmahq-windows")
_SHARED = {"rmm-corpus": ("corpus", "rmm"), "sigmahq-windows": ("corpus", "sigma", "rules", "windows")}


def _root(source: str, request) -> Path:
    """The rules of a source: the bundled ones, or a shared corpus (skipped when absent)."""
    if source == "rules":
        return REPO / "rules"
    path = request.getfixturevalue("shared_dir").joinpath(*_SHARED[source])
    if not path.is_dir():
        pytest.skip(f"shared/{'/'.join(_SHARED[source])} not present")
    return path


def _check_window(target: str, where: str, text: str, window: timedelta = WINDOW) -> list[str]:
    hunting, windows = package_window(target, text)
    if hunting:
        return []
    return [f"{where}: looks back {w} > {window}" for w in windows if w > window]


# ------------------------------------------------------------------ Sentinel


@pytest.mark.corpus
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("env", ENVS["kql"])
def test_sentinel_packages_pass_the_repository_checks(env, source, request, terminal_report):
    from rmmc.packaging.columns import table_columns

    problems = []
    packages = _packages(_root(source, request), "kql", env)
    assert packages
    hunting = 0
    for where, text in packages:
        body = yaml.safe_load(text)
        problems += [f"{where}: {p}" for p in sentinel_problems(body)]
        problems += _check_window("kql", where, text)
        hunting += body.get("kind") != "Scheduled"
        table = (body["requiredDataConnectors"] or [{}])[0].get("dataTypes", [None])[0]
        for mapping in body.get("entityMappings", ()):
            for field in mapping["fieldMappings"]:
                if not kql_output_has(body["query"], field["columnName"], table_columns(table)):
                    problems.append(f"{where}: maps {field['columnName']}, not an output column")
    if source == "sigmahq-windows":  # SigmaHQ rules hold no aggregation: all scheduled
        assert hunting == 0
    terminal_report(f"Sentinel packages checked, {source} in {env}: {len(packages)} ({hunting} hunting)")
    assert not problems, "\n".join(problems[:30])


def test_sentinel_refuses_a_query_longer_than_an_analytic_rule_holds():
    from rmmc.translation import translate_text

    values = ", ".join(f"'tool{i:05}.exe'" for i in range(800))
    text = f"DeviceProcessEvents\n| where FileName in~ ({values})\n"
    [plain] = translate_text(text, "kql")
    [packaged] = translate_text(text, "kql", package=True)
    assert plain.ok and len(plain.text) > 10000
    assert not packaged.ok and packaged.text == "" and packaged.verdict == "refused"
    assert any("at most 10,000" in d.message for d in packaged.diagnostics if d.is_error)


def test_sentinel_entity_mappings_follow_the_output():
    """The RMM pack's summarize keeps DeviceName and AccountUpn: Host and Account are mapped
    from them, and the process and file columns the summarize dropped are not mapped."""
    packages = dict(_packages(REPO / "rules" / "rmm" / "AnyDesk", "kql", "sentinel"))
    create = next(yaml.safe_load(t) for w, t in packages.items() if "createproc" in w)
    assert create["entityMappings"] == [
        {"entityType": "Host", "fieldMappings": [{"identifier": "FullName", "columnName": "DeviceName"}]},
        {"entityType": "Account", "fieldMappings": [{"identifier": "FullName", "columnName": "AccountUpn"}]}]
    grouping = create["incidentConfiguration"]["groupingConfiguration"]
    assert grouping["groupByEntities"] == ["Host", "Account"] and grouping["lookbackDuration"] == "P5D"
    assert grouping["groupByCustomDetails"] == ["DeviceId"] and create["customDetails"] == {"DeviceId": "DeviceId"}
    assert create["eventGroupingSettings"] == {"aggregationKind": "AlertPerResult"}
    assert create["queryFrequency"] == "5m" and create["queryPeriod"] == "6m"
    assert "ago(6m)" in create["query"] and "5d" not in create["query"]


# ------------------------------------------------------------------ Elastic


@pytest.fixture(scope="module")
def reference(shared_dir) -> Path:
    if not (shared_dir / "reference" / "elastic" / "api_schemas").is_dir():
        pytest.skip("shared/reference/elastic/api_schemas not present")
    return shared_dir / "reference"


@pytest.mark.corpus
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("env", ENVS["eql"])
@pytest.mark.parametrize("target", ["eql", "esql"])
def test_elastic_packages_validate_against_the_api_schemas(target, env, source, reference, request,
                                                          terminal_report):
    validator = elastic_validator(reference, target)
    problems = []
    packages = _packages(_root(source, request), target, env)
    assert packages
    for where, text in packages:
        assert text.endswith("\n") and text.count("\n") == 1, where  # one ndjson line
        body = json.loads(text)
        problems += [f"{where}: {p}" for p in elastic_problems(validator, body)]
        problems += _check_window(target, where, text)
    terminal_report(f"Elastic {target} packages validated, {source} in {env}: {len(packages)}")
    assert not problems, "\n".join(problems[:30])


def test_elastic_threat_names_and_subtechniques(reference):
    """Techniques carry their ATT&CK names; a sub-technique sits in its parent's list, under the
    tactic ATT&CK files it under (added when the rule does not name it)."""
    from dataclasses import replace

    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document
    from rmmc.packaging import package

    rule = compile_document(read_path(str(REPO / "rules" / "rmm_remotepc_netconn.txt")).documents[0]).rule
    meta = replace(rule.metadata, tactics=("CommandAndControl",),
                   techniques=("T1219.002", "T1219", "T1059.001", "T9999"))
    _, text, diagnostics = package(replace(rule, metadata=meta), "eql", "process where true")
    threat = json.loads(text)["threat"]
    assert [t["tactic"]["name"] for t in threat] == ["Command and Control", "Execution"]
    [c2] = threat[0]["technique"]
    assert c2 == {"id": "T1219", "name": "Remote Access Tools",
                  "reference": "https://attack.mitre.org/techniques/T1219/",
                  "subtechnique": [{"id": "T1219.002", "name": "Remote Desktop Software",
                                    "reference": "https://attack.mitre.org/techniques/T1219/002/"}]}
    [execution] = threat[1]["technique"]
    assert execution["name"] == "Command and Scripting Interpreter"
    assert execution["subtechnique"][0]["name"] == "PowerShell"
    messages = " ".join(d.message for d in diagnostics)
    assert "T9999" in messages and "Execution" in messages
    assert not elastic_problems(elastic_validator(reference, "eql"), json.loads(text))


# ------------------------------------------------------------------ Splunk


@pytest.mark.corpus
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("env", ENVS["splunk"])
def test_splunk_stanzas_parse(env, source, request, terminal_report):
    problems = []
    packages = _packages(_root(source, request), "splunk", env)
    assert packages
    for where, text in packages:
        try:
            stanzas = parse_conf_strict(text)
        except AssertionError as exc:
            problems.append(f"{where}: {exc}")
            continue
        [settings] = stanzas.values()
        assert settings["search"].strip() and "\n\n" not in settings["search"], where
        if settings.get("alert.suppress") == "1":
            fields = settings["alert.suppress.fields"].split(",")
            if "| stats " in settings["search"]:  # grouped: by fields the stats keeps
                assert all(f and f in settings["search"] for f in fields), where
            assert settings["alert.digest_mode"] == "0", where
        problems += _check_window("splunk", where, text)
    terminal_report(f"Splunk stanzas parsed, {source} in {env}: {len(packages)}")
    assert not problems, "\n".join(problems[:30])


# ------------------------------------------------------------------ schedules


@pytest.mark.parametrize("target", ["kql", "splunk", "esql"])
def test_schedule_option_sets_every_window(target):
    schedule = Schedule(timedelta(hours=1), timedelta(minutes=10))
    packages = _packages(REPO / "rules" / "rmm" / "AnyDesk", target, ENVS[target][0], schedule)
    assert len(packages) >= 2  # file signatures have no Sysmon / Winlogbeat source
    for where, text in packages:
        hunting, windows = package_window(target, text)
        assert not hunting and set(windows) == {timedelta(minutes=70)}, (where, windows)
