"""`rmmc check` end to end: the installed console script, run as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def rmmc(*args: str, stdin: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    exe = shutil.which("rmmc", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "rmmc.cli"]
    return subprocess.run(command + list(args), input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_bundled_rules_are_clean():
    from rmmc.compiler.documents import iter_rule_files

    result = rmmc("check", "rules/")
    assert result.returncode == 0, result.stdout + result.stderr
    n = len(list(iter_rule_files([str(REPO / "rules")])))  # the seeds and the RMM pack (rules/rmm)
    assert n > 150 and result.stdout.splitlines()[-1] == f"{n} files, {n} rules: 0 errors, 0 warnings"
    assert "error:" not in result.stdout


def test_error_line_column_source_and_caret(tmp_path):
    rule = tmp_path / "broken.kql"
    rule.write_text("DeviceProcessEvents\n| where FileName has_any ('a.exe',\n    'b.exe',)\n",
                    encoding="utf-8")
    result = rmmc("check", str(rule))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (f"{rule}:3:13: error: expected an expression after ',', found ')' "
                        "(KQL does not allow a trailing comma here)")
    assert lines[1] == "        'b.exe',)"
    assert lines[2] == "                ^"
    assert lines[-1] == "1 file, 1 rule: 1 error, 0 warnings"


def test_positions_are_in_the_original_yaml_file(tmp_path):
    rule = tmp_path / "rule.yaml"
    rule.write_bytes(
        b"id: 1\r\nname: Broken\r\nquery: |\r\n  DeviceProcessEvents\r\n"
        b"  | where Timestamp > ago(1d)\r\n  | Sha1 in ('x')\r\n")
    result = rmmc("check", str(rule))
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{rule}:6:5: error: expected a query operator")


def test_stdin_and_json(tmp_path):
    result = rmmc("check", "-", "--format", "json", stdin="T | where x has_all has_any ('a')")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    (diagnostic,) = payload["diagnostics"]
    assert diagnostic["path"] == "<stdin>"
    assert (diagnostic["line"], diagnostic["column"]) == (1, 21)
    assert diagnostic["message"] == "expected '(' after has_all, found 'has_any'"
    assert payload["summary"] == {"files": 1, "rules": 1, "errors": 1, "warnings": 0}


def test_one_bad_rule_does_not_stop_the_batch(tmp_path):
    (tmp_path / "a_good.kql").write_text("T | where x has 'a'", encoding="utf-8")
    (tmp_path / "b_bad.kql").write_text("T | where x has", encoding="utf-8")
    (tmp_path / "c_binary.kql").write_bytes(b"\x00\x01\x02")
    (tmp_path / "d_good.kql").write_text("T | take 1", encoding="utf-8")
    result = rmmc("check", str(tmp_path), "--format", "json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert [Path(f["path"]).name for f in payload["files"]] == ["a_good.kql", "b_bad.kql", "c_binary.kql", "d_good.kql"]
    assert payload["summary"]["errors"] == 2
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path):
    assert rmmc("check").returncode == 2
    assert rmmc("check", "--format", "xml", "rules/").returncode == 2
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert rmmc("check", str(empty)).returncode == 2


def test_quiet_shows_errors_only(rmm_corpus):
    result = rmmc("check", "-q", str(rmm_corpus))
    assert result.returncode == 1
    reported = [line for line in result.stdout.splitlines() if ": error: " in line or ": warning: " in line]
    assert reported and all(": error: " in line for line in reported)


@pytest.mark.parametrize("hostile, status", [
    ("T | where x == '\x1b[31mred\x1b[0m", 1),   # unterminated, with terminal escapes
    ("T | where \x07 == 1", 1),                  # a bell where a name should be
    ("T | where x == 'a' and \u202e y", 1),       # a right-to-left override
])
def test_hostile_bytes_are_not_echoed_raw(hostile, status):
    result = rmmc("check", "-", stdin=hostile)
    assert result.returncode == status
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in result.stdout
