"""The test oracle itself: Microsoft's KQL parser (tests/oracle/kqlcheck.js) behind the
KustoOracle wrapper (tests/kusto_oracle.py). Everything here runs the real parser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import kusto_oracle as ko
from kusto_oracle import KustoOracle, OracleResult

pytestmark = pytest.mark.oracle


# -- verdicts on hand-picked queries -----------------------------------------------------------


def test_accepts_simple_filter(kusto_oracle: KustoOracle) -> None:
    res = kusto_oracle.check("DeviceNetworkEvents | where RemoteUrl has 'x'")
    assert isinstance(res, OracleResult)
    assert res.ok and res.syntax_ok
    assert res.diagnostics == ()
    assert res.error is None


def test_rejects_trailing_comma_in_has_any(kusto_oracle: KustoOracle) -> None:
    q = "T | where x has_any ('a','b',)"
    res = kusto_oracle.check(q)
    assert not res.ok and not res.syntax_ok
    # Worked out by hand: the missing list element sits right before ')', at offset 29,
    # i.e. line 1, column 30 (Kusto reports 1-based lines and columns).
    assert q[29] == ")"
    (d,) = res.errors
    assert d.message == "Missing expression"
    assert (d.line, d.col, d.start, d.end) == (1, 30, 29, 29)
    assert d.syntax


def test_rejects_two_operators_in_a_row(kusto_oracle: KustoOracle) -> None:
    res = kusto_oracle.check("T | where a has_all has_any ('x')")
    assert not res.ok and not res.syntax_ok
    assert any(d.text == "has_any" for d in res.errors)


def test_rejects_column_where_operator_expected(kusto_oracle: KustoOracle) -> None:
    q = "T\n| Sha1 in ('a')"
    res = kusto_oracle.check(q)
    assert not res.ok and not res.syntax_ok
    # By hand: 'T' is line 1; on line 2 "| Sha1", 'S' is column 3, offset 2 + 2 = 4.
    first = res.errors[0]
    assert first.message == "Query operator expected."
    assert (first.line, first.col) == (2, 3)
    assert (first.start, first.end) == (4, 8)
    assert q[first.start : first.end] == first.text == "Sha1"


def test_check_many_keeps_order_and_matches_check(kusto_oracle: KustoOracle) -> None:
    queries = [
        "DeviceNetworkEvents | where RemoteUrl has 'x'",
        "T | where x has_any ('a','b',)",
        "",  # Kusto accepts the empty query
        "T | where Name == 'caf\u00e9 \u2028 \U0001f600'",  # non-ASCII, a JS line separator, astral
        "T\r\n| where a == 1\r\n| take 5",
        "let x = 1;\nT | where a == x",
    ] * 50
    many = kusto_oracle.check_many(queries)
    assert len(many) == len(queries)
    singles = {q: kusto_oracle.check(q) for q in set(queries)}
    for q, r in zip(queries, many):
        assert r.ok == singles[q].ok
        assert r.diagnostics == singles[q].diagnostics
    assert [r.ok for r in many[:6]] == [True, False, True, True, True, True]
    assert kusto_oracle.check_many([]) == []


def test_large_query_does_not_deadlock(kusto_oracle: KustoOracle) -> None:
    # Far more than a pipe buffer (64 KiB) in one query and in one batch.
    big = "T | where " + " or ".join(f"A{i} == 'value-{i}'" for i in range(6_000))
    assert len(big) > 100_000
    assert kusto_oracle.check(big).ok
    rs = kusto_oracle.check_many([big, "T | where", big])
    assert [r.ok for r in rs] == [True, False, True]
    assert kusto_oracle.alive


def test_context_manager_closes_process() -> None:
    reason = ko.oracle_unavailable_reason()
    if reason:
        pytest.skip(f"Kusto oracle unavailable: {reason}")
    with KustoOracle() as oracle:
        assert oracle.accepts("print 1")
        proc = oracle._proc
    assert proc.returncode == 0
    assert not oracle.alive


def test_unavailable_reason_names_missing_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ko.shutil, "which", lambda name: None)
    assert ko.oracle_unavailable_reason() == "node not found on PATH"


def test_unavailable_reason_names_missing_node_modules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ko.shutil, "which", lambda name: "/usr/bin/node")
    monkeypatch.setattr(ko, "ORACLE_PACKAGE", tmp_path / "node_modules" / "@kusto" / "language-service-next")
    assert ko.oracle_unavailable_reason() == "tests/oracle/node_modules missing: run make test"


# -- the script's own command line ---------------------------------------------------------------


def test_script_jsonl_mode_and_exit_status(kusto_oracle: KustoOracle) -> None:
    lines = "\n".join(json.dumps({"id": i, "query": q}) for i, q in enumerate(["print 1", "T | where"]))
    p = subprocess.run(
        ["node", str(ko.ORACLE_SCRIPT), "--jsonl"], input=lines, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 1, p.stderr  # one query is not ok
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [(o["id"], o["ok"]) for o in out] == [(0, True), (1, False)]


def test_script_rejects_missing_schema_file(kusto_oracle: KustoOracle, tmp_path: Path) -> None:
    p = subprocess.run(
        ["node", str(ko.ORACLE_SCRIPT), "--schema", str(tmp_path / "nope.json")],
        input="print 1", capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 2
    assert "schema file not found" in p.stderr


def test_schema_option_enables_semantic_checks(kusto_oracle: KustoOracle, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"database": "db", "tables": {"Events": "(Name:string, Count:long)"}}))
    with KustoOracle(schema=schema) as sem:
        good = sem.check("Events | where Name has 'x' | summarize sum(Count) by Name")
        assert good.ok and good.semantic
        assert good.result_type == "(Name:string, sum_Count:long)"
        bad = sem.check("Events | where Nope has 'x'")
        assert bad.syntax_ok and not bad.ok
        assert any("Nope" in (d.text or "") for d in bad.errors)
    # Syntax-only mode accepts the unknown column.
    assert kusto_oracle.check("Events | where Nope has 'x'").ok


def test_defender_schema_semantic_mode(kusto_oracle_defender: KustoOracle) -> None:
    res = kusto_oracle_defender.check("DeviceNetworkEvents | where RemoteUrl has 'x' | project DeviceId")
    assert res.ok and res.semantic
    bad = kusto_oracle_defender.check("DeviceNetworkEvents | where NoSuchColumn has 'x'")
    assert bad.syntax_ok and not bad.ok


# -- the bundled rules -------------------------------------------------------------------------


def _rule_query(text: str) -> str:
    """The query block of a hunt document: the lines after 'KQL Query' up to the YAML 'id:'."""
    lines = text.splitlines()
    start = lines.index("KQL Query") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("id: "))
    return "\n".join(lines[start:end])


def test_bundled_rules_are_valid_kql(kusto_oracle: KustoOracle, repo_root: Path) -> None:
    rules = sorted((repo_root / "rules").glob("*.txt"))
    assert len(rules) >= 2
    for path in rules:
        res = kusto_oracle.check(_rule_query(path.read_text(encoding="utf-8")))
        assert res.ok, (path.name, res.errors)


def test_bundled_rules_are_valid_against_defender_schema(kusto_oracle_defender: KustoOracle, repo_root: Path) -> None:
    for path in sorted((repo_root / "rules").glob("*.txt")):
        res = kusto_oracle_defender.check(_rule_query(path.read_text(encoding="utf-8")))
        assert res.ok, (path.name, res.errors)


# -- the whole real-world corpus, once ---------------------------------------------------------


@pytest.mark.corpus
def test_corpus_accept_rate(kql_corpus_queries, kql_corpus_verdicts, terminal_report) -> None:
    results = kql_corpus_verdicts
    assert len(kql_corpus_queries) > 3000
    assert len(results) == len(kql_corpus_queries)
    crashed = [q.file for q, r in zip(kql_corpus_queries, results) if r.error]
    assert not crashed, crashed[:10]
    accepted = sum(r.syntax_ok for r in results)
    rejected = len(results) - accepted
    rate = accepted / len(results)
    line = (
        f"Kusto oracle on shared/corpus/kql: {len(results)} queries, {accepted} accepted, "
        f"{rejected} rejected ({rate:.2%} accepted)"
    )
    terminal_report(line)
    assert 0.95 <= rate <= 0.999, line
