"""Hostile and broken input: the parser returns a tree or raises its own located error,
never anything else (no RecursionError, no Lark exception, no hang)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmmc.compiler.kql.parser import MAX_NESTING, KqlSyntaxError, parse_kql
from rmmc.compiler.kql.printer import to_kql

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus" / "kql"


def parse_or_error(text: str):
    """Parse `text`; a KqlSyntaxError is a fine answer, with a span inside the text."""
    try:
        tree = parse_kql(text)
    except KqlSyntaxError as exc:
        assert exc.diagnostics, "an error must carry a diagnostic"
        for d in exc.diagnostics:
            assert d.span is not None
            assert 0 <= d.span.offset <= len(text)
            assert d.span.line >= 1 and d.span.column >= 1
        return None
    # What parses must print and parse back to the same tree.
    assert parse_kql(to_kql(tree)) == tree
    return tree


def _corpus_sample(n: int, seed: int = 7) -> list[str]:
    if not (CORPUS / "index.jsonl").exists():
        return []
    files = [json.loads(line)["file"] for line in (CORPUS / "index.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    return [(CORPUS / f).read_text(encoding="utf-8") for f in rng.sample(files, min(n, len(files)))]


SAMPLE = _corpus_sample(60)
KQL_PIECES = ["|", "where", " has ", " has_any (", ")", "(", "'", '"', "@'", "h'", "```", ",", ";", "let ",
              "=", "==", " and ", " or ", "[", "]", "{", "}", "dynamic(", "datetime(", "\\", "//", "\n",
              "..", " between ", " in~ ", "!", "*", "summarize ", " by ", "project-away ", "evaluate ",
              "x", "T", "1", "5d", "\u00e9", "\u2028", "\x00"]


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.text(max_size=200))
def test_random_text(text):
    parse_or_error(text)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.lists(st.sampled_from(KQL_PIECES), max_size=60).map("".join))
def test_random_kql_shaped_text(text):
    parse_or_error(text)


@pytest.mark.skipif(not SAMPLE, reason="shared/corpus/kql not present")
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    index=st.integers(min_value=0, max_value=max(0, len(SAMPLE) - 1)),
    position=st.floats(min_value=0, max_value=1),
    action=st.sampled_from(["delete", "insert", "duplicate", "truncate"]),
    length=st.integers(min_value=1, max_value=12),
    piece=st.sampled_from(KQL_PIECES),
)
def test_mutated_corpus_queries(index, position, action, length, piece):
    text = SAMPLE[index]
    at = int(position * len(text))
    if action == "delete":
        text = text[:at] + text[at + length:]
    elif action == "insert":
        text = text[:at] + piece + text[at:]
    elif action == "duplicate":
        text = text[:at] + text[at:at + length] * 3 + text[at:]
    else:
        text = text[:at]
    parse_or_error(text)


def test_ten_thousand_deep_parentheses():
    text = "T | where " + "(" * 10_000 + "x" + ")" * 10_000
    with pytest.raises(KqlSyntaxError) as info:
        parse_kql(text)
    assert info.value.diagnostics[0].code == "too-deep"


def test_long_operator_chain_is_refused_cleanly():
    text = "T | extend y = " + " + ".join(["1"] * 10_000)
    with pytest.raises(KqlSyntaxError) as info:
        parse_kql(text)
    assert info.value.diagnostics[0].code == "too-deep"


def test_chain_just_under_the_limit_prints_and_compares():
    text = "T | extend y = " + " + ".join(["1"] * (MAX_NESTING - 20))
    tree = parse_kql(text)
    assert parse_kql(to_kql(tree)) == tree


def test_ten_megabyte_query_gives_a_result():
    values = ",".join(f"'host{i}.example.com'" for i in range(450_000))
    text = f"DeviceNetworkEvents | where RemoteUrl has_any ({values})"
    assert len(text) > 10_000_000
    tree = parse_kql(text)
    assert len(tree.body.operators[0].predicate.items) == 450_000


def test_ten_megabyte_garbage_gives_an_error():
    text = "T | where x == '" + "a" * 10_000_000
    with pytest.raises(KqlSyntaxError) as info:
        parse_kql(text)
    assert info.value.diagnostics[0].message.startswith("unterminated string literal")
