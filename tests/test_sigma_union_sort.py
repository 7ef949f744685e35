"""A sort at the end of a union (only the output's order) in Sigma: dropped with a shape
warning, the collection alerting on the same events (rmmc/backends/sigma/backend.py
`without_final_sorts`); a sort something later reads the order of stays refused."""

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
