"""The reference data rmmc ships is what the platforms' own data gives: re-derived here from
../shared/reference (and the installed pysigma-backend-kusto) by the same generator,
`rmmc.environments.build`, and compared byte for byte with the shipped files."""

from __future__ import annotations

import pytest

from rmmc.environments.build import OUTPUTS, build


def test_shipped_data_is_what_the_reference_gives(shared_dir):
    reference = shared_dir / "reference"
    if not reference.is_dir():
        pytest.skip("shared/reference not present")
    pytest.importorskip("sigma.pipelines.azuremonitor.tables", reason="pysigma-backend-kusto lists the "
                        "Log Analytics tables")
    texts = build(reference)
    assert set(texts) == set(OUTPUTS)
    for name, text in texts.items():
        shipped = OUTPUTS[name].read_text(encoding="utf-8")
        assert shipped == text, f"{OUTPUTS[name]} differs from what the reference gives: run " \
                                "python -m rmmc.environments.build"


def test_the_data_holds_what_the_environments_name():
    """Spot checks against the reference's own words: ECS has registry.path, the Sysmon add-on
    extracts TargetObject for EventID 13 and no SHA1 field for EventID 1, Log Analytics'
    WindowsEvent holds EventData as dynamic, ATT&CK v19 has Stealth."""
    from rmmc.compiler.attack import tactic
    from rmmc.environments.fieldsets import field_set

    assert field_set("ecs")["registry.path"] == "keyword"
    assert "TargetObject" in field_set("splunk:sysmon_eventid_13")
    assert "SHA1" not in field_set("splunk:sysmon_eventid_1") and "Hashes" in field_set("splunk:sysmon_eventid_1")
    assert field_set("log_analytics:WindowsEvent")["EventData"] == "dynamic"
    assert "Processes.process_name" in field_set("cim:Endpoint.Processes")
    assert field_set("elastic:winlogbeat-*")["winlog"] == "object"
    assert tactic("stealth").id == "TA0005"
