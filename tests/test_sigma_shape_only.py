"""Stages that only shape the output, dropped in Sigma with a shape warning while the same
events alert (rmmc/backends/sigma/backend.py): a sort at the end of a union
(`without_final_sorts`) and a parse before shape-only stages (`_without_parse`); a sort or a
parse something later reads stays refused."""

from __future__ import annotations

import pytest

from rmmc import translate
from rmmc.compiler.kql.lower import lower_text

UNION = ("union (DeviceProcessEvents | where FileName =~ 'psexec.exe'), "
         "(DeviceNetworkEvents | where RemotePort == 5938)\n")


def test_a_final_sort_is_only_the_order() -> None:
    pytest.importorskip("sigma.backends.sqlite")
    from rmmc.verify.runner import verify_rule

    kql = UNION + "| sort by Timestamp desc | project Timestamp, DeviceName"
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    assert any("sort by Timestamp desc" in d.message and d.code == "shape" for d in result.diagnostics)
    _, verdicts = verify_rule(lower_text(kql).rule, ["sigma"])
    assert [v.status for v in verdicts] == ["agree"], verdicts
    assert "0 alerting" not in verdicts[0].detail


@pytest.mark.parametrize("tail", ["| sort by Timestamp desc | take 5", "| top 5 by Timestamp",
                                  "| sort by Timestamp desc | summarize count() by DeviceName"])
def test_a_sort_something_reads_stays_refused(tail: str) -> None:
    result = translate(UNION + tail, "sigma")
    assert not result.ok or result.rules[0].verdict != "exact"


PARSED = ("DeviceProcessEvents | where InitiatingProcessCommandLine contains 'add-mppreference' "
          "| parse InitiatingProcessCommandLine with * '-ExclusionPath' Exclusion ")


def test_a_parse_before_shape_only_stages_is_dropped() -> None:
    pytest.importorskip("sigma.backends.sqlite")
    from rmmc.verify.runner import verify_rule

    kql = PARSED + "| project Timestamp, DeviceName, Exclusion | sort by Timestamp"
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    assert any("parse" in d.message and d.code == "shape" for d in result.diagnostics)
    _, verdicts = verify_rule(lower_text(kql).rule, ["sigma"])
    assert [v.status for v in verdicts] == ["agree"], verdicts
    assert "0 alerting" not in verdicts[0].detail


@pytest.mark.parametrize("kql", [PARSED + "| where Exclusion has 'temp'",
                                 PARSED.replace("| parse ", "| parse-where ") + "| project Exclusion",
                                 PARSED + "| summarize count() by Exclusion | where count_ > 3"])
def test_a_parse_something_reads_stays_refused(kql: str) -> None:
    result = translate(kql, "sigma")
    assert not result.ok
