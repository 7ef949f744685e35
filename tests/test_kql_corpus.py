"""rmmc's KQL front end against Microsoft's parser over 3,909 real hunting queries.

Where Microsoft's parser rejects a query, rmmc must reject it; of what it accepts, rmmc must
accept at least 99%.  Every disagreement is written to tests/_artifacts/ for reading.
The printer's round trip (`parse(print(tree)) == tree`) must hold on every query rmmc parses,
and Microsoft's parser must accept every printed query.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql
from rmmc.compiler.kql.printer import to_kql

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"

pytestmark = pytest.mark.corpus


def _parse_all(queries):
    trees, errors = {}, {}
    for q in queries:
        try:
            trees[q.file] = parse_kql(q.text)
        except KqlSyntaxError as exc:
            errors[q.file] = exc.diagnostics[0]
    return trees, errors


@pytest.fixture(scope="module")
def parsed(kql_corpus_queries):
    return _parse_all(kql_corpus_queries)


def test_agrees_with_microsoft_parser(kql_corpus_queries, kql_corpus_verdicts, parsed, terminal_report):
    trees, errors = parsed
    microsoft_accepts = [q for q, v in zip(kql_corpus_queries, kql_corpus_verdicts) if v.syntax_ok]
    false_rejects = [
        {"file": q.file, "line": errors[q.file].span.line, "column": errors[q.file].span.column,
         "rmmc": errors[q.file].message}
        for q in microsoft_accepts if q.file in errors
    ]
    false_accepts = [
        {"file": q.file, "microsoft": v.syntax_errors[0].message if v.syntax_errors else "",
         "line": v.syntax_errors[0].line if v.syntax_errors else None}
        for q, v in zip(kql_corpus_queries, kql_corpus_verdicts) if not v.syntax_ok and q.file in trees
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "kql_corpus_disagreements.json").write_text(
        json.dumps({"rmmc_rejects_microsoft_accepts": false_rejects,
                    "rmmc_accepts_microsoft_rejects": false_accepts}, indent=1),
        encoding="utf-8")
    rate = 1 - len(false_rejects) / len(microsoft_accepts)
    terminal_report(
        f"KQL corpus: Microsoft accepts {len(microsoft_accepts)} of {len(kql_corpus_queries)}; "
        f"rmmc accepts {rate:.2%} of those ({len(false_rejects)} not), and {len(false_accepts)} "
        f"that Microsoft rejects (see tests/_artifacts/kql_corpus_disagreements.json)")
    assert not false_accepts, false_accepts[:5]
    assert rate >= 0.99, false_rejects[:10]


def test_rejections_match_microsoft_positions(kql_corpus_queries, kql_corpus_verdicts, parsed):
    """Where both reject a query, rmmc's error is where Microsoft's is: the same offset, or
    only white space and comments apart (Microsoft reports "expected ;" just after the last good
    token, rmmc at the token that does not fit), or the start of the same unterminated string."""
    _, errors = parsed
    checked, apart = 0, []
    for q, v in zip(kql_corpus_queries, kql_corpus_verdicts):
        if v.syntax_ok or q.file not in errors or not v.syntax_errors:
            continue
        checked += 1
        ours, theirs = errors[q.file], v.syntax_errors[0]
        low, high = sorted((ours.span.offset, theirs.start))
        between = re.sub(r"//[^\n]*", "", q.text[low:high]).strip()
        unterminated = ours.message.startswith("unterminated string") and ours.span.line == theirs.line
        if between and not unterminated:
            apart.append((q.file, theirs.line, theirs.col, ours.span.line, ours.span.column))
    assert checked > 50
    assert len(apart) / checked <= 0.1, apart


def test_printer_round_trip_on_corpus(kql_corpus_queries, parsed):
    trees, _ = parsed
    failures = []
    for q in kql_corpus_queries:
        tree = trees.get(q.file)
        if tree is None:
            continue
        text = to_kql(tree)
        try:
            again = parse_kql(text)
        except KqlSyntaxError as exc:
            failures.append((q.file, exc.diagnostics[0].message))
            continue
        if again != tree:
            failures.append((q.file, "tree changed"))
    assert len(trees) > 3700
    assert not failures, failures[:10]


def test_microsoft_accepts_every_printed_query(kql_corpus_queries, parsed, kusto_oracle):
    trees, _ = parsed
    files = [q.file for q in kql_corpus_queries if q.file in trees]
    printed = [to_kql(trees[f]) for f in files]
    verdicts = kusto_oracle.check_many(printed)
    rejected = [(f, v.syntax_errors[0].message, text) for f, v, text in zip(files, verdicts, printed)
                if not v.syntax_ok]
    assert not rejected, rejected[:5]
