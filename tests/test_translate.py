"""`rmmc translate` and `rmmc.translate`: whole rules through lowering and the backends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rmmc
from rmmc.output import safe_stem

REPO = Path(__file__).resolve().parents[1]
REMOTEPC = REPO / "rules" / "rmm_remotepc_netconn.txt"
# the two seed hunts (rules/ also holds the RMM pack, rules/rmm/, which `rmmc build` covers)
SEEDS = ("rules/rmm_distantdesktop_netconn.txt", "rules/rmm_remotepc_netconn.txt")


def rmmc_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("rmmc", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "rmmc.cli"]
    return subprocess.run(command + list(args), input=stdin, capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_library_translate_returns_text_and_diagnostics():
    result = rmmc.translate(REMOTEPC.read_text(encoding="utf-8"), to="kql")
    assert result.ok
    assert result.text.startswith("DeviceNetworkEvents\n| where Timestamp > ago(5d)\n")
    assert "RemoteUrl has 'remotepc.com'" in result.text
    assert all(d.severity.value != "error" for d in result.diagnostics)


def test_library_translate_reports_a_broken_rule():
    result = rmmc.translate("DeviceNetworkEvents | evaluate bag_unpack(AdditionalFields)", to="kql")
    assert not result.ok and result.text == ""
    (error,) = [d for d in result.diagnostics if d.is_error]
    assert error.message.startswith("unsupported operator: evaluate")
    assert (error.span.line, error.span.column) == (1, 23)


def test_translate_to_kql_on_stdout():
    result = rmmc_cli("translate", str(REMOTEPC), "--to", "kql")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "DeviceNetworkEvents"
    assert result.stderr.strip().splitlines()[-1] == "1 of 1 rule translated to kql: 1 exact, 0 lossy, 0 refused"


def test_translate_to_sigma_is_valid_yaml_stream():
    result = rmmc_cli("translate", *SEEDS, "--to", "sigma")
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    titles = [d["title"] for d in documents if "detection" in d]
    assert len(titles) == 2


def test_output_files_are_named_from_titles_and_never_overwritten(tmp_path):
    out = tmp_path / "out"
    first = rmmc_cli("translate", *SEEDS, "--to", "kql", "-o", str(out))
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Remote_Management_and_Monitoring_tool_-_DistantDesktop_-_Network_Connection.kql",
                     "Remote_Management_and_Monitoring_tool_-_RemotePC_-_Network_Connection.kql"]
    target = out / names[1]
    target.write_text("edited by hand\n", encoding="utf-8")
    second = rmmc_cli("translate", *SEEDS, "--to", "kql", "-o", str(out))
    assert second.returncode == 1
    assert "exists; not overwritten (use --force)" in second.stderr
    assert target.read_text(encoding="utf-8") == "edited by hand\n"
    forced = rmmc_cli("translate", *SEEDS, "--to", "kql", "-o", str(out), "--force")
    assert forced.returncode == 0
    assert target.read_text(encoding="utf-8").startswith("DeviceNetworkEvents")
    assert not [p for p in out.iterdir() if p.name.startswith(".rmmc-")]  # no temporary left


@pytest.mark.parametrize("title, stem", [
    ("../../etc/passwd", "etc_passwd"),
    ("a/b\\c", "a_b_c"),
    (".hidden", "hidden"),
    ("Résumé — RMM: tool*?", "Resume_RMM_tool"),
    ("", "rule_1"),
    ("...", "rule_1"),
])
def test_safe_file_names(title, stem):
    assert safe_stem(title, "rule_1") == stem


def test_one_bad_rule_does_not_stop_the_batch(tmp_path):
    (tmp_path / "a.kql").write_text("DeviceProcessEvents | where FileName =~ 'a.exe'", encoding="utf-8")
    (tmp_path / "b.kql").write_text("DeviceProcessEvents | where FileName has_any ('a',)", encoding="utf-8")
    (tmp_path / "c.kql").write_text("DeviceProcessEvents | invoke FileProfile(SHA1)", encoding="utf-8")
    (tmp_path / "d.kql").write_text("DeviceProcessEvents | where FileName =~ 'd.exe'", encoding="utf-8")
    out = tmp_path / "out"
    result = rmmc_cli("translate", str(tmp_path), "--to", "kql", "-o", str(out), "--format", "json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert [(Path(r["path"]).name, r["ok"]) for r in payload] == [
        ("a.kql", True), ("b.kql", False), ("c.kql", False), ("d.kql", True)]
    assert len(list(out.iterdir())) == 2
    errors = {Path(r["path"]).name: r["diagnostics"][0] for r in payload if not r["ok"]}
    assert (errors["b.kql"]["line"], errors["b.kql"]["column"]) == (1, 51)  # the ")" after the comma
    assert errors["c.kql"]["message"].startswith("unsupported operator: invoke")


def test_hostile_values_cannot_break_out(tmp_path):
    rule = tmp_path / "evil.kql"
    rule.write_text("DeviceProcessEvents | where FileName == 'a\\'; drop | x\\n---\\nevil: 1' "
                    "and ProcessCommandLine has @'C:\\x*?\"'", encoding="utf-8")
    kql = rmmc_cli("translate", str(rule), "--to", "kql")
    assert kql.returncode == 0, kql.stderr
    again = rmmc.lower_text(kql.stdout)
    original = rmmc.lower_text(rule.read_text(encoding="utf-8"))
    assert again.rule.condition == original.rule.condition


def test_backend_diagnostics_land_in_the_original_file(tmp_path):
    # A predicate's position (query coordinates in an indented YAML block scalar) and an
    # exclusion's (read straight from the hunt document) both come out in file coordinates.
    rule = tmp_path / "rule.yaml"
    rule.write_text("id: 1\nname: Lookaround\nquery: |\n  DeviceProcessEvents\n"
                    "  | where ProcessCommandLine matches regex '(?<=a)b'\n", encoding="utf-8")
    result = rmmc_cli("translate", str(rule), "--to", "kql")
    assert result.returncode == 1
    assert f"{rule}:5:11: error: kql: regex '(?<=a)b' on ProcessCommandLine uses lookaround" in result.stderr

    seed = rmmc_cli("translate", str(REMOTEPC), "--to", "kql")
    line = next(l for l in seed.stderr.splitlines() if "exclusion 'Scheduled System Maintenance" in l)
    # line 50 of the seed is `Filter/Exclusion: process.name == "schtasks.exe" || ...`
    assert line.startswith(f"{REMOTEPC}:50:19: note: kql: exclusion")


def test_files_without_rules_are_not_failures(tmp_path):
    (tmp_path / "summary.md").write_text("# Summary\n\nNo query here.\n", encoding="utf-8")
    (tmp_path / "rule.kql").write_text("DeviceProcessEvents | where FileName =~ 'a.exe'", encoding="utf-8")
    result = rmmc_cli("translate", str(tmp_path), "--to", "kql")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "1 of 1 rule translated to kql: 1 exact, 0 lossy, 0 refused"
    only_summary = tmp_path / "only"
    only_summary.mkdir()
    (only_summary / "summary.md").write_text("# Summary\n", encoding="utf-8")
    assert rmmc_cli("translate", str(only_summary), "--to", "kql").returncode == 2


def test_sigma_exclusions_are_written_as_a_filter_file_beside_the_rule(tmp_path):
    pytest.importorskip("sigma.collection", reason="pySigma is installed by make test")
    from sigma.collection import SigmaCollection

    out = tmp_path / "out"
    result = rmmc_cli("translate", *SEEDS, "--to", "sigma", "-o", str(out))
    assert result.returncode == 0, result.stderr
    stem = "Remote_Management_and_Monitoring_tool_-_RemotePC_-_Network_Connection"
    filters = out / f"{stem}.filters.yml"
    documents = list(yaml.safe_load_all(filters.read_text(encoding="utf-8")))
    assert len(documents) == 5 and all("filter" in d for d in documents)
    assert documents[0]["filter"]["rules"] == ["30d32feb-6ac7-4d97-8a99-d40f5dfa61b5"]
    # The DistantDesktop exclusions are prose: no filter file.
    assert not list(out.glob("*DistantDesktop*.filters.yml"))
    collection = SigmaCollection.from_yaml((out / f"{stem}.yml").read_text(encoding="utf-8") + "\n---\n"
                                           + filters.read_text(encoding="utf-8"))
    assert len(collection.rules) >= 1
    # With --apply-exclusions they are in the rule itself, and no filter file is written.
    applied = tmp_path / "applied"
    rmmc_cli("translate", *SEEDS, "--to", "sigma", "-o", str(applied), "--apply-exclusions")
    assert not list(applied.glob("*.filters.yml"))
    assert "not filter_" in (applied / f"{stem}.yml").read_text(encoding="utf-8")


def test_package_writes_ready_to_import_rules(tmp_path):
    out = tmp_path / "pkg"
    for target in ("kql", "splunk", "eql", "esql"):
        # Sysmon and Winlogbeat data lack some of the rule's Defender fields: written anyway
        result = rmmc_cli("translate", str(REMOTEPC), "--to", target, "--package", "-o", str(out),
                          "--allow-unknown-fields")
        assert result.returncode == 0, (target, result.stderr)
        assert target == "kql" or "--allow-unknown-fields" in result.stderr
    stem = "Remote_Management_and_Monitoring_tool_-_RemotePC_-_Network_Connection"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{stem}.yaml", f"{stem}.conf", f"{stem}.eql.ndjson", f"{stem}.esql.ndjson"])
    sentinel = yaml.safe_load((out / f"{stem}.yaml").read_text(encoding="utf-8"))
    # scheduled every 5m over 6m (interval + overlap), the query too, not the hunting 5d
    assert sentinel["queryPeriod"] == "6m" and sentinel["kind"] == "Scheduled"
    assert sentinel["query"].startswith("DeviceNetworkEvents\n| where Timestamp > ago(6m)")
    elastic = json.loads((out / f"{stem}.eql.ndjson").read_text(encoding="utf-8"))
    assert elastic["language"] == "eql" and elastic["from"] == "now-6m"
    assert elastic["index"] == ["winlogbeat-*", "logs-windows.*", "logs-system.security-*"]  # the environment's
    assert elastic["threat"][0]["tactic"]["id"] == "TA0011"
    stanza = (out / f"{stem}.conf").read_text(encoding="utf-8")
    assert stanza.startswith("[Remote Management and Monitoring tool - RemotePC - Network Connection]\n")
    assert "dispatch.earliest_time = -6m" in stanza and "earliest=-6m" in stanza


def test_schedule_option(tmp_path):
    """--schedule sets every package's run and window; a schedule no platform can run is a
    usage error."""
    result = rmmc_cli("translate", str(REMOTEPC), "--to", "kql", "--package", "--schedule", "1h+10m")
    assert result.returncode == 0, result.stderr
    body = yaml.safe_load(result.stdout)
    assert (body["queryFrequency"], body["queryPeriod"]) == ("1h", "70m")
    assert "ago(70m)" in body["query"]
    result = rmmc_cli("translate", str(REMOTEPC), "--to", "kql", "--schedule", "1h")
    assert result.returncode == 2 and "--package" in result.stderr
    for bad in ("7m", "1m", "5x", "20d"):
        result = rmmc_cli("translate", str(REMOTEPC), "--to", "kql", "--package", "--schedule", bad)
        assert result.returncode == 2 and "--schedule" in result.stderr, bad
