"""`rmmc explain`: the detection model as rmmc understood it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from rmmc.compiler.explain import explain
from rmmc.compiler.kql.lower import lower_text

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("rmmc", path=str(Path(sys.executable).parent))
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_explain_the_seed_rule():
    result = run("explain", "rules/rmm_remotepc_netconn.txt")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "  source: DeviceNetworkEvents (network events; Sigma logsource windows/network_connection)" in text
    assert "  lookback: 5d ending now" in text
    assert ("      InitiatingProcessVersionInfoProductName has the term any of "
            "('remotepc', 'viewer', 'remotedesktop') [case-insensitive]") in text
    assert "          InitiatingProcessAccountName equals 'support_user' [case-insensitive]" in text


def test_explain_json_is_the_model():
    result = run("explain", "rules/rmm_distantdesktop_netconn.txt", "--format", "json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    rule = entry["rule"]
    assert rule["node"] == "Rule" and rule["lookback"]["window"] == "5d"
    first = rule["condition"]["operands"][0]
    assert first["op"] == "term" and first["values"] == ["distantdesktop.com", "signalserver.xyz"]


def test_negation_and_flags_read_plainly():
    rule = lower_text("T | where not(x has_cs 'A') and y !in ('b', 'c') and isempty(z)", schema=None).rule
    assert explain(rule).splitlines()[-6:] == [
        "  condition:",
        "    all of:",
        "      none of:",
        "        x has the term 'A' [case-sensitive]",
        "      NOT y equals any of ('b', 'c') [case-sensitive]",
        "      z is empty",
    ]


def test_a_test_on_a_constant_reads_as_its_value():
    # found by make fuzz: a quoted column name after an extend is a string constant the filter tests
    text = "T | extend m = tostring(x) | where m has 'POST' and ('RemoteIP' startswith '62' or m endswith 'x')"
    lines = explain(lower_text(text, schema=None).rule).splitlines()
    assert "          'RemoteIP' starts with '62' [case-insensitive]" in lines, lines


def test_explain_reports_a_refused_rule():
    bad = REPO / "tests" / "_artifacts"
    bad.mkdir(exist_ok=True)
    path = bad / "explain_join.kql"
    path.write_text("DeviceProcessEvents | evaluate bag_unpack(AdditionalFields)", encoding="utf-8")
    result = run("explain", str(path))
    assert result.returncode == 1
    assert ":1:23: error: unsupported operator: evaluate" in result.stderr
