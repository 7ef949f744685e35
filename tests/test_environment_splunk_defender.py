"""The `splunk-defender` environment: Defender XDR's advanced hunting rows streamed into Splunk.

Each row keeps its table's column names and values; the table is told apart by the record's
`category` (`AdvancedHunting-<Table>`, Microsoft's streaming API).  So a Defender hunt says in
SPL what it says in KQL, and the SPL, run by `tests/spl_pipeline.py` over the same events as
this environment holds them, returns the rule's rows (the reference evaluator's).
"""

from __future__ import annotations

import pytest

import rmmc

from rmmc.backends.base import EmitOptions
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.environments import load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import emit_adapted
from rmmc.verify.multi import multi_events
from rmmc.verify.whole import NOW
from tests.row_sets import comparable, spl_rows, spl_time_as_timestamp

ENV = "splunk-defender"
MACRO = "`defender_xdr`"


def _adapted(kql: str):
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    adapted = adapt(lowered.rule, load_environment(ENV))
    assert adapted.ok, adapted.diagnostics
    return lowered.rule, adapted


def test_a_defender_hunt_keeps_its_names_and_selects_its_table_by_category():
    result = rmmc.translate("DeviceRegistryEvents | where InitiatingProcessFileName =~ 'AnyDesk.exe' "
                            "and RegistryKey startswith @'HKEY_LOCAL_MACHINE\\SOFTWARE'",
                            to="splunk", env=ENV)
    assert result.ok and result.counts["exact"] == 1, result.diagnostics
    first = result.text.splitlines()[0]
    assert first.startswith(f"search {MACRO} ")
    assert 'category="AdvancedHunting-DeviceRegistryEvents"' in first
    # Defender's own names and full hive names: nothing is renamed or rewritten
    assert "InitiatingProcessFileName" in result.text and "HKEY_LOCAL_MACHINE" in result.text
    assert "Image" not in result.text and "HKLM" not in result.text


def test_a_table_the_streaming_api_does_not_export_is_refused_with_the_reason():
    result = rmmc.translate("DeviceTvmSoftwareInventory | where SoftwareName has 'anydesk'", to="splunk", env=ENV)
    assert not result.ok
    assert any("no source for table DeviceTvmSoftwareInventory" in d.message for d in result.diagnostics)


UNION = """union DeviceProcessEvents, DeviceNetworkEvents
| where DeviceName startswith 'ws' and InitiatingProcessFileName =~ 'anydesk.exe'
| project Timestamp, DeviceName, ActionType, InitiatingProcessFileName"""

JOIN = """DeviceProcessEvents
| where FileName in~ ('AnyDesk.exe', 'TeamViewer.exe')
| project Timestamp, DeviceId, DeviceName, FileName
| join kind=inner (
    DeviceNetworkEvents
    | where RemoteUrl has_any ('anydesk.com', 'teamviewer.com')
    | project NetworkTime = Timestamp, DeviceId, RemoteUrl
) on DeviceId
| where NetworkTime > Timestamp and NetworkTime <= Timestamp + 5m
| project Timestamp, NetworkTime, DeviceId, DeviceName, FileName, RemoteUrl"""

COUNT = """DeviceNetworkEvents
| where InitiatingProcessVersionInfoCompanyName has_any ('AnyDesk Software', 'TeamViewer')
| summarize Devices = dcount(DeviceId) by InitiatingProcessVersionInfoCompanyName
| where Devices > 1"""


def _company_events() -> list[dict]:
    """Two devices running AnyDesk, one running TeamViewer, one other vendor: only AnyDesk's
    group passes `Devices > 1`."""
    rows = [("d1", "AnyDesk Software GmbH"), ("d2", "AnyDesk Software GmbH"), ("d2", "AnyDesk Software GmbH"),
            ("d3", "TeamViewer Germany GmbH"), ("d4", "Contoso")]
    return [{ir.TABLE: "DeviceNetworkEvents", "Timestamp": NOW.replace(minute=i), "DeviceId": device,
             "InitiatingProcessVersionInfoCompanyName": company} for i, (device, company) in enumerate(rows)]


@pytest.mark.parametrize("kql", [UNION, JOIN, COUNT], ids=["union", "join", "threshold"])
def test_the_spl_returns_the_rules_rows_on_events_as_splunk_holds_them(kql):
    rule, adapted = _adapted(kql)
    events = multi_events(rule) + (_company_events() if kql is COUNT else [])
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    assert "AdvancedHunting-" in out.text
    events = [adapted.normalize(e) for e in events]
    expected = run(rule, events, now=NOW)
    assert expected, "the events exercise the rule"
    got = spl_rows(out.text, adapted, events, (MACRO,))
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text
