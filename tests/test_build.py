"""`rmmc build`: the rules tree to every environment, deterministic, incremental, checked."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmmc.cli import main
from rmmc.content.build import MANIFEST, build
from rmmc.content.environments import UnknownEnvironment, builtin_names, environment, environments

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "rules" / "rmm"
SMALL = ("AnyDesk", "DWService", "TeamViewer")  # 9 rules: a subquery, non-ASCII, every kind


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def small_pack(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    for tool in SMALL:
        shutil.copytree(PACK / tool, rules / tool)
    return rules


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_whole_pack_builds_for_every_environment_and_a_second_run_changes_nothing(tmp_path):
    out, cache = tmp_path / "dist", tmp_path / "cache"
    first = build(str(REPO / "rules"), str(out), cache_dir=str(cache))
    assert first.ok, (first.problems, [r.path for r in first.rule_errors])
    rules = first.manifest["summary"]["rules"]
    assert rules >= 199  # the pack's 197 and the two seeds
    assert first.compiled == rules * len(builtin_names()) and first.cached == 0
    files = tree(out)
    for env in environments(None):
        for target in env.targets:
            assert any(p.startswith(f"{env.name}/{target.target}/") for p in files) or \
                first.manifest["summary"]["targets"][env.name][target.target]["exact"] == 0
    # every output the manifest names is on disk with that hash, and every rule's source hash is its file's
    manifest = json.loads(files[MANIFEST])
    for rule in manifest["rules"]:
        source = REPO / "rules" / rule["path"]
        assert rule["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        for t in rule["targets"]:
            assert (t["output"] is None) == (t["verdict"] == "refused")
            if t["output"]:
                assert hashlib.sha256(files[t["output"]]).hexdigest() == t["sha256"]
    assert set(files) == {MANIFEST} | {t["output"] for r in manifest["rules"] for t in r["targets"] if t["output"]} \
        | {c["path"] for r in manifest["rules"] for t in r["targets"] for c in t.get("companions", [])}

    second = build(str(REPO / "rules"), str(out), cache_dir=str(cache))
    assert (second.compiled, second.cached, second.written, second.removed) == (0, first.compiled, [], [])
    assert tree(out) == files


def test_fresh_builds_are_byte_identical_serial_or_parallel(tmp_path):
    rules = small_pack(tmp_path)
    build(str(rules), str(tmp_path / "a"), cache_dir=None, jobs=1)
    build(str(rules), str(tmp_path / "b"), cache_dir=str(tmp_path / "cache"), jobs=2)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b and len(a) > 30


def test_the_cli_says_a_second_run_recompiled_nothing(tmp_path):
    rules = small_pack(tmp_path)
    args = ["build", str(rules), "-o", str(tmp_path / "dist"), "--cache-dir", str(tmp_path / "c")]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    assert "72 of 72 builds (file x environment) compiled, 0 from the cache" in first.output
    second = run_cli(*args)
    assert second.exit_code == 0
    assert "nothing recompiled" in second.output and "0 files written" in second.output
    assert "defender-xdr/kql" in second.output  # the manifest summary


def test_only_the_edited_rule_is_recompiled(tmp_path):
    rules = small_pack(tmp_path)
    out, cache = tmp_path / "dist", tmp_path / "cache"
    build(str(rules), str(out), cache_dir=str(cache))
    edited = rules / "AnyDesk" / "rmm_AnyDesk_netconn.txt"
    edited.write_text(edited.read_text(encoding="utf-8").replace("'api.playanext.com'", "'api.playanext.com', 'x.com'"),
                      encoding="utf-8")
    again = build(str(rules), str(out), cache_dir=str(cache))
    assert again.compiled == len(builtin_names())  # one file, every environment
    assert all(p.startswith(tuple(builtin_names())) and "AnyDesk" in p for p in again.written if p != MANIFEST)
    assert MANIFEST in again.written


def test_check_reports_exactly_the_edited_rule_and_target(tmp_path):
    rules = small_pack(tmp_path)
    out, cache = tmp_path / "dist", tmp_path / "cache"
    build(str(rules), str(out), cache_dir=str(cache))
    clean = run_cli("build", str(rules), "-o", str(out), "--cache-dir", str(cache), "--check")
    assert clean.exit_code == 0 and "is up to date" in clean.output

    edited = rules / "AnyDesk" / "rmm_AnyDesk_netconn.txt"
    text = edited.read_text(encoding="utf-8")
    # a filter on the summarize's output no Sigma correlation can hold: only sigma/sigma becomes
    # refused (KQL keeps it; the other environments refused the rule already: Sysmon has no DeviceId)
    changed = text.replace("InitiatingProcessAccountUpn, RemoteUrl\n",
                           "InitiatingProcessAccountUpn, RemoteUrl\n| where LastSeen - FirstSeen > 1h\n", 1)
    assert changed != text
    edited.write_text(changed, encoding="utf-8")
    result = build(str(rules), str(out), cache_dir=str(cache), check=True)
    assert not result.ok
    assert {(f.path, f.index) for f in result.findings} == {("AnyDesk/rmm_AnyDesk_netconn.txt", 0)}
    regressions = [(f.env, f.target) for f in result.findings if f.kind == "regression"]
    assert regressions == [("sigma", "sigma")]
    assert "was exact, now refused" in next(f.message for f in result.findings if f.kind == "regression")
    # the check wrote nothing: the manifest on disk still records the old source
    on_disk = {r["path"]: r["sha256"] for r in json.loads((out / MANIFEST).read_text())["rules"]}
    assert on_disk["AnyDesk/rmm_AnyDesk_netconn.txt"] != hashlib.sha256(changed.encode()).hexdigest()
    cli = run_cli("build", str(rules), "-o", str(out), "--cache-dir", str(cache), "--check")
    assert cli.exit_code == 1
    assert "regression [sigma/sigma]: was exact, now refused" in cli.output


def test_check_finds_errors_that_grew_hand_edits_and_removed_rules(tmp_path):
    rules = small_pack(tmp_path)
    out, cache = tmp_path / "dist", tmp_path / "cache"
    build(str(rules), str(out), cache_dir=str(cache))
    manifest = json.loads((out / MANIFEST).read_text())
    some_output = next(t["output"] for r in manifest["rules"] for t in r["targets"]
                       if t["output"] and r["path"] == "DWService/rmm_DWService_netconn.txt")
    (out / some_output).write_text("edited by hand\n")
    (rules / "TeamViewer" / "rmm_TeamViewer_filesig.txt").unlink()
    broken = rules / "AnyDesk" / "rmm_AnyDesk_createproc.txt"
    broken.write_text(broken.read_text(encoding="utf-8").replace("| where Timestamp", "| wher Timestamp", 1),
                      encoding="utf-8")
    findings = build(str(rules), str(out), cache_dir=str(cache), check=True).findings
    kinds = {(f.kind, f.path) for f in findings}
    assert ("errors", "AnyDesk/rmm_AnyDesk_createproc.txt") in kinds
    assert ("regression", "AnyDesk/rmm_AnyDesk_createproc.txt") in kinds
    assert ("stale", "TeamViewer/rmm_TeamViewer_filesig.txt") in kinds
    assert any(f.kind == "stale" and "changed by hand" in f.message
               and f.path == "DWService/rmm_DWService_netconn.txt" for f in findings)
    error = next(f for f in findings if f.kind == "errors")
    assert error.line is not None and error.target is None  # located in the rule file


def test_a_build_removes_what_it_no_longer_writes_and_never_overwrites_foreign_files(tmp_path):
    rules = small_pack(tmp_path)
    out, cache = tmp_path / "dist", tmp_path / "cache"
    first = build(str(rules), str(out), ["defender-xdr"], cache_dir=str(cache))
    gone = [t.output for r in first.rules if r.path.startswith("TeamViewer") for t in r.targets if t.output]
    shutil.rmtree(rules / "TeamViewer")
    second = build(str(rules), str(out), ["defender-xdr"], cache_dir=str(cache))
    assert sorted(second.removed) == sorted(gone) and not any((out / p).exists() for p in gone)

    foreign = tmp_path / "foreign"
    planned = next(t.output for r in second.rules for t in r.targets if t.output)
    (foreign / planned).parent.mkdir(parents=True)
    (foreign / planned).write_text("mine\n")
    refused = build(str(rules), str(foreign), ["defender-xdr"], cache_dir=str(cache))
    assert not refused.ok and any("not overwritten" in p["message"] for p in refused.problems)
    assert (foreign / planned).read_text() == "mine\n"
    forced = build(str(rules), str(foreign), ["defender-xdr"], cache_dir=str(cache), force=True)
    assert forced.ok and (foreign / planned).read_text() != "mine\n"


def test_environments_adapter():
    assert builtin_names() == ["defender-xdr", "sentinel", "sigma", "splunk-sysmon", "splunk-cim",
                               "splunk-defender", "elastic-endpoint", "elastic-winlogbeat"]
    assert environment("splunk-cim").targets[0].arguments() == {"to": "splunk", "env": "splunk-cim", "package": True}
    assert [t.target for t in environment("elastic-winlogbeat").targets] == ["eql", "esql"]
    assert not environment("sigma").targets[0].package and environment("sentinel").targets[0].package
    assert environment("defender-xdr").fingerprint() != environment("sentinel").fingerprint()
    with pytest.raises(UnknownEnvironment, match="built in: defender-xdr"):
        environment("qradar")
    result = run_cli("build", str(PACK), "--env", "qradar")
    assert result.exit_code == 2 and "unknown environment 'qradar'" in result.output


def test_library_build_returns_what_the_cli_prints(tmp_path):
    import rmmc

    rules = small_pack(tmp_path)
    result = rmmc.build(str(rules), str(tmp_path / "dist"), ["sentinel"], cache_dir=None)
    assert result.manifest["summary"]["targets"] == {"sentinel": {"kql": {"exact": 9, "lossy": 0, "refused": 0}}}
    cli = run_cli("build", str(rules), "-o", str(tmp_path / "dist"), "--env", "sentinel", "--no-cache",
                  "--report", "json")
    assert json.loads(cli.output[cli.output.index("{"):])["manifest"] == result.manifest
