"""`rmmc diff`: five prepared edits of a real rule, each said as a change of detection with an
example event that the reference evaluator confirms."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import rmmc
from rmmc.cli import main
from rmmc.compiler.documents import read_text
from rmmc.compiler.evaluator import evaluate
from rmmc.compiler.pipeline import compile_document
from rmmc.compiler.rows import run
from rmmc.content.diff import diff_texts

REPO = Path(__file__).resolve().parent.parent
SEED = (REPO / "rules" / "rmm_remotepc_netconn.txt").read_text(encoding="utf-8")
PRODUCTS = "and InitiatingProcessVersionInfoProductName has_any (\n'remotepc',\n'viewer',\n'remotedesktop'\n)"
GROUPING = "RemoteUrl\nid:"  # the end of the query in the `KQL Query` section, before the metadata


def edit(text: str, old: str, new: str, count: int = -1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def both(old: str, new: str) -> str:
    """The edit made in the `KQL Query` section and in the YAML `query` (as a reviewer would)."""
    return edit(SEED, old, new)


def rule_of(text: str):
    compiled = compile_document(read_text(text, "rule.txt").documents[0])
    assert compiled.rule is not None, compiled.diagnostics
    return compiled.rule


def the_diff(new_text: str, old_text: str = SEED):
    [result] = diff_texts(old_text, new_text, "rule.txt")
    return result


def selects(text: str, event: dict) -> bool:
    return evaluate(rule_of(text).condition, event) is True


def test_widening_says_the_new_value_with_an_event_only_the_new_rule_selects():
    new = both("RemoteUrl has 'remotepc.com'", "RemoteUrl has_any ('remotepc.com', 'x.com')")
    result = the_diff(new)
    assert result.summary == "detection changed"
    [difference] = result.differences
    assert (difference.kind, difference.text) == ("gain", "now also selects events where RemoteUrl has 'x.com'")
    [event] = difference.examples
    assert selects(new, event) and not selects(SEED, event)
    assert evaluate(rule_of("T | where RemoteUrl has 'x.com'").condition, event) is True


def test_narrowing_says_what_is_no_longer_selected():
    new = both("and InitiatingProcessVersionInfoCompanyName has 'idrive'",
               "and InitiatingProcessVersionInfoCompanyName has 'idrive'\nand InitiatingProcessFileName =~ 'remotepc.exe'")
    result = the_diff(new)
    [difference] = result.differences
    assert difference.kind == "loss"
    assert difference.text == "no longer selects events where InitiatingProcessFileName !~ 'remotepc.exe'"
    [event] = difference.examples
    assert selects(SEED, event) and not selects(new, event)
    assert str(event.get("InitiatingProcessFileName", "")).lower() != "remotepc.exe"


def test_an_equivalent_rewrite_is_the_same_detection():
    new = both(PRODUCTS, "and (InitiatingProcessVersionInfoProductName has_any ('remotepc', 'viewer')\n"
                         "     or InitiatingProcessVersionInfoProductName has 'remotedesktop')")
    result = the_diff(new)
    assert result.status == "same" and not result.differences
    assert result.summary.startswith("same detection (no difference on ")
    # layout and comments only: the same model
    relaid = both("| where RemoteUrl has 'remotepc.com'", "// reviewed\n| where RemoteUrl   has   'remotepc.com'")
    assert the_diff(relaid).summary == "same detection (the same model: only text or metadata changed)"


def test_a_rewrite_that_only_looks_equivalent_is_caught():
    # `a and b and c or d` is `(a and b and c) or d` in KQL: the rewrite without brackets widens
    new = both(PRODUCTS, "and InitiatingProcessVersionInfoProductName has_any ('remotepc', 'viewer')\n"
                         "or InitiatingProcessVersionInfoProductName has 'remotedesktop'")
    result = the_diff(new)
    gains = [d for d in result.differences if d.kind == "gain"]
    assert gains and all(d.text.startswith("now also selects events where "
                                           "InitiatingProcessVersionInfoProductName has 'remotedesktop' and ")
                         for d in gains)
    for d in gains:
        assert selects(new, d.examples[0]) and not selects(SEED, d.examples[0])


def test_a_field_change_says_both_sides():
    new = both("InitiatingProcessVersionInfoCompanyName has 'idrive'",
               "InitiatingProcessVersionInfoFileDescription has 'idrive'")
    result = the_diff(new)
    texts = {d.kind: d for d in result.differences}
    assert set(texts) == {"gain", "loss"}
    assert texts["gain"].text == ("now also selects events where InitiatingProcessVersionInfoFileDescription has "
                                  "'idrive' and InitiatingProcessVersionInfoCompanyName !has 'idrive'")
    assert texts["loss"].text == ("no longer selects events where InitiatingProcessVersionInfoCompanyName has "
                                  "'idrive' and InitiatingProcessVersionInfoFileDescription !has 'idrive'")
    gain, loss = texts["gain"].examples[0], texts["loss"].examples[0]
    assert selects(new, gain) and not selects(SEED, gain)
    assert selects(SEED, loss) and not selects(new, loss)


def test_a_threshold_change_says_the_rows_now_returned_with_their_events():
    old = edit(SEED, GROUPING, "RemoteUrl\n| where Count > 5\nid:")
    old = edit(old, "RemoteUrl\n| Sentinel", "RemoteUrl\n| where Count > 5\n| Sentinel")
    new = old.replace("Count > 5", "Count > 3")
    result = the_diff(new, old)
    assert result.summary == "same detection; the query's alerts changed"
    assert result.query == ("- | where Count > 5", "+ | where Count > 3")
    texts = [d.text for d in result.differences]
    assert texts == ["now also returns the row where Count = 4 (from 4 events)",
                     "now also returns the row where Count = 5 (from 5 events)"]
    for difference, size in zip(result.differences, (4, 5)):
        group = list(difference.examples)
        assert len(group) == size
        assert run(rule_of(new), group) and not run(rule_of(old), group)
        assert [row["Count"] for row in run(rule_of(new), group)] == [size]


def test_added_removed_and_broken_rules():
    [added] = diff_texts(None, SEED, "new.txt")
    assert added.status == "added"
    [removed] = diff_texts(SEED, None, "old.txt")
    assert removed.status == "removed"
    [broken] = diff_texts(SEED, edit(SEED, "| where RemoteUrl", "| wher RemoteUrl", 1), "rule.txt")
    assert broken.status == "error" and broken.errors and broken.errors[0].startswith("new version: ")


def test_cli_on_two_files_and_two_git_revisions(tmp_path, monkeypatch):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text(SEED, encoding="utf-8")
    new.write_text(both("RemoteUrl has 'remotepc.com'", "RemoteUrl has_any ('remotepc.com', 'x.com')"),
                   encoding="utf-8")
    result = CliRunner().invoke(main, ["diff", str(old), str(new)])
    assert result.exit_code == 0
    assert "now also selects events where RemoteUrl has 'x.com'\n    e.g. {" in result.output
    assert CliRunner().invoke(main, ["diff", str(old), str(new), "--exit-code"]).exit_code == 1
    assert rmmc.diff(str(old), str(new)).text() == result.output  # the library returns what is printed

    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    (repo / "rules" / "remotepc.txt").write_text(SEED, encoding="utf-8")
    (repo / "rules" / "other.txt").write_text(SEED.replace("remotepc.com", "other.com"), encoding="utf-8")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    (repo / "rules" / "remotepc.txt").write_text(new.read_text(encoding="utf-8"), encoding="utf-8")
    subprocess.run(git + ["commit", "-qam", "two"], check=True)
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["diff", "HEAD~1", "HEAD", "--", "rules/"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rules/remotepc.txt: Remote Management and Monitoring tool - RemotePC")
    assert "now also selects events where RemoteUrl has 'x.com'" in result.output
    assert "1 file unchanged" in result.output
    bad = CliRunner().invoke(main, ["diff", "nope", "HEAD"])
    assert bad.exit_code == 2 and "neither a rule file or directory nor a git revision" in bad.output


def test_a_widening_and_a_narrowing_in_one_edit_are_said_apart():
    new = both("RemoteUrl has 'remotepc.com'", "RemoteUrl has_any ('remotepc.com', 'x.com')")
    new = edit(new, "and InitiatingProcessVersionInfoCompanyName has 'idrive'",
               "and InitiatingProcessVersionInfoCompanyName has 'idrive'\nand InitiatingProcessFileName =~ 'remotepc.exe'")
    result = the_diff(new)
    assert [(d.kind, d.text) for d in result.differences] == [
        ("gain", "now also selects events where RemoteUrl has 'x.com'"),
        ("loss", "no longer selects events where InitiatingProcessFileName !~ 'remotepc.exe'")]
    gain, loss = (d.examples[0] for d in result.differences)
    assert selects(new, gain) and not selects(SEED, gain)
    assert selects(SEED, loss) and not selects(new, loss)
