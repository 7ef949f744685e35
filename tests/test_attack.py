"""ATT&CK from data: v19 tactics (Stealth, Defense Impairment) and v18 names are read, every
output keeps them or says why not, and the shipped data is what the reference gives."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from rmmc.backends.sigma.backend import emit_sigma
from rmmc.compiler.attack import moved, tactic
from rmmc.compiler.documents import read_path
from rmmc.compiler.pipeline import compile_document
from rmmc.compiler.sigma import read_sigma_rules
from rmmc.packaging import package

SIGMA = """
title: Stealthy thing
id: 0e0e5b8a-2f4b-4d3c-9a55-0d3b6a1e8c11
status: test
tags:
  - attack.stealth
  - attack.t1218.011
logsource: {product: windows, category: process_creation}
detection:
  selection: {Image|endswith: '\\rundll32.exe'}
  condition: selection
level: high
"""


@pytest.fixture(scope="module")
def stealth_rule():
    [(rule, _)] = read_sigma_rules(SIGMA)
    return rule


def test_v19_and_v18_names_are_tactics():
    assert tactic("attack.stealth".split(".")[1]).id == "TA0005"
    assert tactic("Stealth").name == "Stealth"
    assert tactic("DefenseEvasion").id == "TA0005" and tactic("DefenseEvasion").until == "v18"
    assert tactic("defense-impairment").id == "TA0112"
    assert tactic("Command and Control").id == tactic("CommandAndControl").id == "TA0011"
    assert tactic("PreAttack") is None and tactic("") is None
    assert moved("T1562.001") == ("T1685", "Disable or Modify Tools")
    assert moved("T1059") is None


def test_stealth_is_kept_in_sigma_tags(stealth_rule):
    assert stealth_rule.metadata.tactics == ("Stealth",)
    doc = yaml.safe_load(emit_sigma(stealth_rule).text)
    assert doc["tags"] == ["attack.stealth", "attack.t1218.011"]


def test_stealth_reaches_elastic_threat_with_its_technique(stealth_rule):
    _, text, notes = package(stealth_rule, "eql", "process where true")
    [threat] = json.loads(text)["threat"]
    assert threat["tactic"] == {"id": "TA0005", "name": "Stealth",
                                "reference": "https://attack.mitre.org/tactics/TA0005/"}
    assert threat["technique"][0]["subtechnique"][0]["id"] == "T1218.011"
    assert threat["technique"][0]["subtechnique"][0]["name"] == "Rundll32"
    assert [d.message for d in notes if "scheduled every" not in d.message] == []


def test_sentinel_takes_v18_names_with_a_note(stealth_rule):
    _, text, notes = package(stealth_rule, "kql", "DeviceProcessEvents")
    assert yaml.safe_load(text)["tactics"] == ["DefenseEvasion"]
    assert any("Stealth" in d.message and "v18" in d.message for d in notes)


def test_techniques_without_a_tactic_are_a_warning_not_a_refusal(stealth_rule):
    """A technique goes under the tactic ATT&CK files it under when the rule names none (a
    note); one rmmc's ATT&CK data does not know is left out of `threat` (a warning)."""
    rule = replace(stealth_rule, metadata=replace(stealth_rule.metadata, tactics=(),
                                                  techniques=("T1218.011", "T1001")))
    _, text, notes = package(rule, "esql", "FROM logs-*")
    [threat] = json.loads(text)["threat"]
    assert threat["tactic"]["id"] == "TA0005"
    assert [t["id"] for t in threat["technique"]] == ["T1218"]
    assert any(d.code == "note" and "T1218.011" in d.message and "added" in d.message for d in notes)
    [warning] = [d for d in notes if "T1001" in d.message]
    assert warning.code == "shape" and "no name" in warning.message


def test_several_tactics_say_where_the_techniques_went(stealth_rule):
    rule = replace(stealth_rule, metadata=replace(stealth_rule.metadata,
                                                  tactics=("Execution", "Stealth")))
    _, text, notes = package(rule, "eql", "process where true")
    threat = json.loads(text)["threat"]
    assert [t["tactic"]["id"] for t in threat] == ["TA0002", "TA0005"]
    # ATT&CK files T1218.011 under TA0005, not under the rule's first tactic
    assert "technique" not in threat[0] and threat[1]["technique"][0]["id"] == "T1218"


def test_moved_technique_is_noted():
    doc = read_path("rules/rmm_remotepc_netconn.txt").documents[0]
    rule = compile_document(doc).rule
    rule = replace(rule, metadata=replace(rule.metadata, techniques=("T1562.001",)))
    _, _, notes = package(rule, "eql", "network where true")
    assert any("T1685" in d.message for d in notes)


@pytest.mark.corpus
def test_sigmahq_stealth_tags_survive(shared_dir):
    """Every SigmaHQ Windows rule tagged attack.stealth keeps the tag in its Sigma output."""
    root = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    tagged = kept = 0
    for path in sorted(root.rglob("*.yml")):
        text = path.read_text(encoding="utf-8")
        if "attack.stealth" not in text:
            continue
        for rule, _ in read_sigma_rules(text, str(path)):
            if rule is None:
                continue
            tagged += 1
            result = emit_sigma(rule)
            if result.ok and "attack.stealth" in yaml.safe_load_all(result.text).__next__()["tags"]:
                kept += 1
            assert not any("stealth" in d.message.lower() for d in result.diagnostics)
    assert tagged > 700
    assert kept >= tagged - 30  # the few the Sigma backend refuses for other reasons


def test_technique_names_from_a_stix_bundle(tmp_path):
    """When the reference holds MITRE's STIX bundle, every current technique is named and filed
    under its tactics (kill-chain phases); revoked and deprecated ones are not."""
    from rmmc.environments.build import stix_techniques

    def pattern(tid, name, phases, **extra):
        return {"type": "attack-pattern", "name": name,
                "external_references": [{"source_name": "mitre-attack", "external_id": tid}],
                "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": p} for p in phases],
                **extra}

    bundle = tmp_path / "enterprise-attack.json"
    bundle.write_text(json.dumps({"type": "bundle", "objects": [
        pattern("T1219", "Remote Access Tools", ["command-and-control"]),
        pattern("T1053.005", "Scheduled Task", ["execution", "persistence", "privilege-escalation"]),
        pattern("T1000", "Revoked", ["execution"], revoked=True),
        pattern("T1001", "Deprecated", ["execution"], x_mitre_deprecated=True),
        {"type": "x-mitre-tactic", "name": "Execution"}]}))
    tactics = tmp_path / "tactics.json"
    tactics.write_text(json.dumps({"tactics": [
        {"shortname": "execution", "id": "TA0002", "name": "Execution"},
        {"shortname": "persistence", "id": "TA0003", "name": "Persistence"},
        {"shortname": "privilege-escalation", "id": "TA0004", "name": "Privilege Escalation"},
        {"shortname": "command-and-control", "id": "TA0011", "name": "Command and Control"}]}))
    assert stix_techniques(bundle, tactics) == {
        "T1219": {"name": "Remote Access Tools", "tactics": ["TA0011"]},
        "T1053.005": {"name": "Scheduled Task", "tactics": ["TA0002", "TA0003", "TA0004"]}}
    assert stix_techniques(tmp_path / "absent.json", tactics) == {}
