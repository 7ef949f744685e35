"""Types the KQL reader must get right before it can compare: a column the query computed on a
table rmmc does not know keeps its computed type (`x = tolong(...)` is long whatever the table),
and a whole-number column compared with a fractional constant compares as Kusto does it, as
reals (Kusto's numerical operators are defined "between pairs of these types": int, long,
real), which for a whole number is a comparison with the rounded bound."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rmmc.backends.kql import emit_kql
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.verify.whole import NOW

NET = "DeviceNetworkEvents"
PORTS = [-10, -9, -8, 0, 7, 8, 9, 10, None]
EVENTS = [{ir.TABLE: NET, "ReportId": i, "Timestamp": NOW - timedelta(hours=1), "RemotePort": p}
          for i, p in enumerate(PORTS)]


def _ports(query: str) -> list:
    lowered = lower_text(query)
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    return sorted(r["RemotePort"] for r in run(lowered.rule, EVENTS, now=NOW))


@pytest.mark.parametrize("query, expected", [
    (f"{NET} | where RemotePort < 8.4", [-10, -9, -8, 0, 7, 8]),
    (f"{NET} | where RemotePort <= 8.4", [-10, -9, -8, 0, 7, 8]),
    (f"{NET} | where RemotePort > 8.4", [9, 10]),
    (f"{NET} | where RemotePort >= 8.4", [9, 10]),
    (f"{NET} | where RemotePort < -8.4", [-10, -9]),
    (f"{NET} | where RemotePort >= -8.4", [-8, 0, 7, 8, 9, 10]),
    (f"{NET} | where 8.4 > RemotePort", [-10, -9, -8, 0, 7, 8]),
    (f"{NET} | where RemotePort > 8.0", [9, 10]),
])
def test_a_whole_number_column_against_a_fraction_compares_as_reals(query, expected):
    assert _ports(query) == expected


@pytest.mark.parametrize("query", [
    f"{NET} | where RemotePort < 8.4", f"{NET} | where RemotePort >= -8.4", f"{NET} | where RemotePort > 8.5",
])
def test_duckdb_kql_runs_the_query_and_its_translation_to_the_evaluators_rows(query):
    pytest.importorskip("duckdb_kql")
    from rmmc.verify.whole import run_kql_rows, same_rows

    rule = lower_text(query).rule
    written = emit_kql(rule)
    assert written.ok
    reference = run(rule, EVENTS, now=NOW)
    for text in (query, written.text):
        agree, why = same_rows(rule, reference, run_kql_rows(rule, text, EVENTS), EVENTS)
        assert agree, (text, why)


def test_a_column_computed_on_an_unknown_table_keeps_its_type():
    lowered = lower_text("UnknownTable | extend V = tolong(substring(Version, 3)) | where V < 8.4")
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    test = lowered.rule.stages[-1].condition
    assert test.field == ir.Field("V", "long") and test.values == (9,)


def test_a_renamed_or_dropped_computed_column_follows_the_rename():
    lowered = lower_text("UnknownTable | extend V = tolong(X) | project-rename W = V | where W > 2")
    assert lowered.ok and lowered.rule.stages[-1].condition.field == ir.Field("W", "long")
    lowered = lower_text("UnknownTable | extend V = tolong(X) | project-away V | where V > 2")
    assert not lowered.ok  # V is gone: a located error, as for a known table


def test_a_string_column_against_a_number_stays_refused():
    # Microsoft's parser: "The operator '>' is not defined for the operand types string and long."
    lowered = lower_text("DeviceRegistryEvents | where RegistryValueData > 1")
    assert not lowered.ok
