"""A union's `withsource` column (and `search`'s `$table`) only shown: a target that cannot
write it drops it with a `shape` warning (the same alerts fire), and one that reads it still
refuses.  SPL cannot name `$table` in `eval`; the SPL, run on the SPL pipeline over the events
as `splunk-defender` holds them, returns the reference evaluator's rows without that column."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.outputs import without_union_label
from rmmc.compiler.rows import run
from rmmc.environments import load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import translate_text
from rmmc.verify.whole import NOW
from tests.row_sets import comparable, spl_rows, spl_time_as_timestamp

ENV, MACRO = "splunk-defender", "`defender_xdr`"
QUERY = ("search in (DeviceProcessEvents, DeviceNetworkEvents) DeviceName startswith 'ws' "
         "and InitiatingProcessFileName =~ 'anydesk.exe'\n"
         "| project-reorder $table\n| project Timestamp, $table, DeviceName, ActionType")
EVENTS = [
    {ir.TABLE: table, "Timestamp": NOW - timedelta(minutes=i), "DeviceName": device,
     "InitiatingProcessFileName": process, "ActionType": action}
    for i, (table, device, process, action) in enumerate([
        ("DeviceProcessEvents", "ws1", "AnyDesk.exe", "ProcessCreated"),
        ("DeviceProcessEvents", "srv1", "AnyDesk.exe", "ProcessCreated"),
        ("DeviceNetworkEvents", "ws2", "anydesk.exe", "ConnectionSuccess"),
        ("DeviceNetworkEvents", "ws3", "chrome.exe", "ConnectionSuccess"),
    ])]


def test_spl_drops_the_table_column_only_shown_and_returns_the_same_rows():
    (spl,) = translate_text(QUERY, "splunk", env=ENV)
    assert spl.verdict == "exact", [d.message for d in spl.diagnostics]
    (warning,) = [d for d in spl.diagnostics if "output column $table" in d.message]
    assert warning.code == "shape" and "no name SPL's eval can set" in warning.message
    rule = lower_text(QUERY).rule
    expected = run(rule, EVENTS, now=NOW)
    assert sorted(r["$table"] for r in expected) == ["DeviceNetworkEvents", "DeviceProcessEvents"]
    adapted = adapt(without_union_label(rule), load_environment(ENV))
    events = [adapted.normalize(e) for e in EVENTS]
    got = spl_rows(spl.text, adapted, events, (MACRO,))
    assert comparable(got, spl_time_as_timestamp) == comparable(
        [{k: v for k, v in r.items() if k != "$table"} for r in expected]), spl.text


@pytest.mark.parametrize("use", [
    "| where $table == 'DeviceProcessEvents'",
    "| summarize count() by $table",
    "| sort by $table asc | take 1",
    "| extend T = strcat($table, 'x')",
    "| project $table",
])
def test_a_table_column_that_decides_rows_or_is_all_the_output_is_kept(use):
    rule = lower_text(f"search in (DeviceProcessEvents, DeviceNetworkEvents) DeviceName == 'x' {use}").rule
    assert without_union_label(rule) is None
    (spl,) = translate_text(f"search in (DeviceProcessEvents, DeviceNetworkEvents) DeviceName == 'x' {use}",
                            "splunk", env=ENV)
    assert spl.verdict == "refused"


def test_kql_keeps_the_table_column():
    (kql,) = translate_text(QUERY, "kql")
    assert kql.verdict == "exact" and "withsource=$table" in kql.text
    assert not [d for d in kql.diagnostics if "output column" in d.message]
