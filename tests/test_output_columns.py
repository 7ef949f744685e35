"""Output-only columns (rmmc/compiler/outputs.py) and their dropping at translation.

A column no filter, key, count or sort reads may be dropped by a target that cannot compute it
(a `shape` warning: the same alerts fire); a column that decides rows never is.  The SPL case
is run on the SPL pipeline (tests/spl_pipeline.py) against the reference evaluator's rows.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.outputs import definitions, drop
from rmmc.compiler.rows import run as reference_rows
from rmmc.translation import translate_text
from tests.spl_pipeline import NOW, run as spl_rows

NOW_DT = datetime.fromtimestamp(NOW, timezone.utc)


def droppable(query: str) -> dict[str, bool]:
    """Each definition's name (last one wins) -> whether it only feeds the output."""
    rule = lower_text(query).rule
    assert rule is not None, query
    return {d.name: d.droppable for d in definitions(rule)}


def test_a_column_only_shown_is_droppable_and_so_is_what_is_computed_from_it():
    got = droppable("DeviceNetworkEvents | where RemotePort == 3389\n"
                    "| extend Geo = geo_info_from_ip_address(RemoteIP)\n"
                    "| extend Country = tostring(Geo.country)\n"
                    "| project Timestamp, RemoteIP, Country")
    assert got == {"Geo": True, "Country": True, "Timestamp": True, "RemoteIP": True}


@pytest.mark.parametrize("use", [
    "| where Country == 'France'",                          # a filter
    "| summarize count() by Country",                       # a group key
    "| summarize n = dcount(Country) by DeviceName | where n > 2",  # a threshold on an aggregate
    "| sort by Country asc | take 3",                       # which rows a take keeps
    "| extend Other = strcat(Country, 'x') | where Other != ''",  # through another column
    "| project-rename Land = Country | where Land == 'France'",   # through a rename
    "| summarize arg_max(Timestamp, *) by DeviceName | where Country == 'France'",  # through *
])
def test_a_column_that_decides_rows_is_never_droppable(use):
    got = droppable("DeviceNetworkEvents\n| extend Geo = geo_info_from_ip_address(RemoteIP)\n"
                    f"| extend Country = tostring(Geo.country)\n{use}")
    assert got["Geo"] is False and got["Country"] is False


def test_an_aggregate_only_shown_is_droppable_but_not_a_group_key_or_arg_max():
    got = droppable("DeviceNetworkEvents | summarize Ports = make_set(RemotePort), n = count() "
                    "by DeviceName | where n > 3")
    assert got == {"DeviceName": False, "Ports": True, "n": False}
    got = droppable("DeviceNetworkEvents | summarize arg_max(Timestamp, RemoteUrl) by DeviceName")
    assert got == {"DeviceName": False, "Timestamp": False, "RemoteUrl": False}


def test_a_replaced_column_or_an_unknown_field_is_never_droppable():
    # dropping `extend FileName = tolower(FileName)` would show the old value under the name
    assert droppable("DeviceProcessEvents | extend FileName = tolower(FileName)")["FileName"] is False
    # a field the table does not have is a mistake in the rule, not a gap in the target
    assert droppable("DeviceProcessEvents | project Timestamp, NoSuchColumn")["NoSuchColumn"] is False


def test_dropping_a_column_drops_what_reads_it_and_keeps_a_project_non_empty():
    rule = lower_text("DeviceNetworkEvents | extend A = RemotePort * 2 | extend B = A + 1 "
                      "| project RemoteIP, B").rule
    defs = definitions(rule)
    smaller = drop(rule, defs, [0])  # A, hence B and the projected B
    assert [type(s).__name__ for s in smaller.stages] == ["Project"]
    assert [name for name, _ in smaller.stages[0].columns] == ["RemoteIP"]
    assert drop(rule, defs, range(len(defs))) is None  # the project would keep nothing


EVENTS = [
    {"Timestamp": datetime(2023, 11, 14, 21, 0, tzinfo=timezone.utc), "DeviceName": "pc1", "RemotePort": 3389,
     "RemoteUrl": "a.example", "AdditionalFields": 'S3VzdG8='},
    {"Timestamp": datetime(2023, 11, 14, 21, 5, tzinfo=timezone.utc), "DeviceName": "pc2", "RemotePort": 443,
     "RemoteUrl": "b.example", "AdditionalFields": 'QQ=='},
    {"Timestamp": datetime(2023, 11, 14, 21, 9, tzinfo=timezone.utc), "DeviceName": "pc3", "RemotePort": 3389,
     "RemoteUrl": "c.example", "AdditionalFields": ""},
]


def test_spl_drops_an_output_column_it_cannot_compute_and_returns_the_same_rows():
    """base64_decode_tostring() has no SPL form: the column only shown is dropped with a shape
    warning, and on the SPL pipeline the rows are the reference's rows without it."""
    query = ("DeviceNetworkEvents | where RemotePort == 3389\n"
             "| extend Decoded = base64_decode_tostring(AdditionalFields)\n"
             "| extend Size = strlen(Decoded)\n"
             "| project DeviceName, RemoteUrl, Size")
    (spl,) = translate_text(query, "splunk", fields="defender")
    assert spl.verdict == "exact", [d.message for d in spl.diagnostics]
    (warning,) = [d for d in spl.diagnostics if "output column" in d.message]
    assert warning.code == "shape" and "Decoded = base64_decode_tostring(AdditionalFields)" in warning.message
    assert "and with it Size" in warning.message and warning.span is not None
    expected = reference_rows(lower_text(query).rule, EVENTS, now=NOW_DT)
    assert [r["Size"] for r in expected] == [5, 0]  # the column the SPL lacks
    got = spl_rows(spl.text, [{k: v for k, v in e.items() if k != "Timestamp"} for e in EVENTS])
    assert sorted((r.get("DeviceName"), r.get("RemoteUrl")) for r in got) == \
        sorted((r["DeviceName"], r["RemoteUrl"]) for r in expected)
    assert all("Size" not in r and "Decoded" not in r for r in got)


@pytest.mark.parametrize("target", ["splunk", "esql"])
def test_a_column_that_decides_rows_is_still_refused(target):
    """The same column filtered on: dropping it would change what fires, so the rule is
    refused as before (never silently wrong)."""
    query = ("DeviceNetworkEvents | extend Geo = geo_info_from_ip_address(RemoteIP)\n"
             "| where tostring(Geo.country) == 'France' | project DeviceName")
    (result,) = translate_text(query, target)
    assert result.verdict == "refused"
    assert not [d for d in result.diagnostics if "output column" in d.message]


def test_kql_keeps_every_column():
    query = ("DeviceNetworkEvents | extend Geo = geo_info_from_ip_address(RemoteIP)\n"
             "| project DeviceName, Geo")
    (result,) = translate_text(query, "kql")
    assert result.verdict == "exact" and "geo_info_from_ip_address(RemoteIP)" in result.text
    assert not [d for d in result.diagnostics if "output column" in d.message]


def test_a_summarize_keeps_one_aggregate_at_least():
    rule = lower_text("DeviceNetworkEvents | summarize Devices = dcount(DeviceId), Ports = make_set(RemotePort) "
                      "by bin(Timestamp, 1d)").rule
    defs = definitions(rule)
    (devices,) = [i for i, d in enumerate(defs) if d.name == "Devices"]
    (ports,) = [i for i, d in enumerate(defs) if d.name == "Ports"]
    assert [a.name for a in drop(rule, defs, [devices]).stages[0].aggregates] == ["Ports"]
    assert drop(rule, defs, [devices, ports]) is None


def test_a_rule_still_refused_says_what_stops_it_once_output_columns_are_gone():
    query = ("DeviceNetworkEvents | extend Geo = geo_info_from_ip_address(RemoteIP)\n"
             "| where base64_decode_tostring(RemoteUrl) == 'x' | project DeviceName, Geo")
    (result,) = translate_text(query, "splunk", fields="defender")
    assert result.verdict == "refused"
    errors = [d.message for d in result.diagnostics if d.is_error]
    # the first refusal was the geolocation, which is only shown: the filter is what stops it
    assert errors and all("base64_decode_tostring" in m for m in errors), errors


def test_a_field_the_environment_lacks_is_dropped_when_only_shown_even_first():
    """Sysmon events carry no device id: projected first, it is left out with a warning (the
    environment does it since env-multi, else the output-only pass would); filtered on, the
    rule stays refused."""
    shown = ("DeviceProcessEvents | where FileName =~ 'netsh.exe' "
             "| project DeviceId, DeviceName, ProcessCommandLine")
    (result,) = translate_text(shown, "splunk")
    assert result.verdict == "exact", [d.message for d in result.diagnostics if d.is_error]
    warnings = [d for d in result.diagnostics if "DeviceId" in d.message]
    assert warnings and all(not d.is_error for d in warnings)
    assert any("Sysmon events carry no device id" in d.message for d in warnings)
    assert "DeviceId" not in result.text and "CommandLine" in result.text
    tested = "DeviceProcessEvents | where DeviceId == 'x' | project DeviceName"
    (refused,) = translate_text(tested, "splunk")
    assert refused.verdict == "refused"
