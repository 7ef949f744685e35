"""RE2 regexes in ES|QL's two dialects (rmmc/backends/esql/regex.py), held to the evaluator.

For random patterns of the RE2 syntax the backend writes (literals and punctuation, `.`,
classes, shorthand classes, groups, alternation, greedy and lazy repeats, anchors, a leading
`(?s)`) and random texts, the Java regex `java_regex` writes, read by tests/java_regex.py
(`java.util.regex` as documented), finds a match exactly where the evaluator's regex does, and
the Lucene regex `lucene_regex` writes, read by rmmc.verify.lucene (Elasticsearch's Lucene
syntax), matches the whole text exactly there.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from java_regex import compile_java
from rmmc.backends.esql.regex import java_literal, java_regex, lucene_regex
from rmmc.backends.esql.text import Refusal
from rmmc.compiler.evaluator import compiled_regex
from rmmc.verify.lucene import lucene_fullmatch

CHARS = "ab.$\n\r1 _-]^\\"
atoms = st.sampled_from(["a", "b", "1", " ", "_", "\\.", "\\$", "\\\\", "\\]", "-", ".", "[ab]", "[^a]", "[a-c]",
                         "[.$]", "[-a]", "[a-]", "\\d", "\\w", "\\s", "\\D", "\\S", "[\\d_]", "\\n", "\\x2e", "é"])


@st.composite
def patterns(draw, depth: int = 0):
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = "|".join(draw(st.lists(patterns(depth + 1), min_size=1, max_size=2)))
            atom = draw(st.sampled_from(["({})", "(?:{})"])).format(inner)
        else:
            atom = draw(atoms)
        repeat = draw(st.sampled_from(["", "", "*", "+", "?", "{2}", "{0,2}", "*?", "+?", "??"]))
        parts.append(atom + repeat)
    return "".join(parts)


@st.composite
def whole_patterns(draw):
    body = draw(patterns())
    if draw(st.booleans()):
        body = body + "|" + draw(patterns())
        return body
    return (draw(st.sampled_from(["", "(?s)"])) + draw(st.sampled_from(["", "^"])) + body
            + draw(st.sampled_from(["", "$"])))


texts = st.text(CHARS, max_size=7)


@given(whole_patterns(), st.lists(texts, min_size=1, max_size=6))
@settings(max_examples=500, deadline=None)
def test_java_and_lucene_forms_match_where_re2_does(pattern, samples):
    expected = compiled_regex(pattern)
    java, groups = java_regex(pattern)
    assert groups == expected.groups
    compiled = compile_java(java)
    try:
        lucene = lucene_regex(pattern)
    except Refusal:
        lucene = None  # an anchor beside a top-level alternative
        assert "|" in pattern and ("^" in pattern or "$" in pattern)
    for text in samples:
        found = expected.search(text) is not None
        assert (compiled.search(text) is not None) == found, (pattern, java, text)
        if lucene is not None:
            assert lucene_fullmatch(lucene, text) == found, (pattern, lucene, text)


@pytest.mark.parametrize("pattern", ["(?i)a", "a\\b", "\\p{L}", "(?=a)", "a*+", "\\1", "[[:alpha:]]", "(a", "a)",
                                     "*a", "\\Qa\\E", "[\\D]"])
def test_what_is_not_written_is_refused(pattern):
    with pytest.raises(Refusal):
        java_regex(pattern)


def test_named_groups_are_plain_groups():
    java, groups = java_regex("(?P<k>a)(b)")
    assert (java, groups) == ("(a)(b)", 2)  # the same numbers: $2 is still b
    assert compile_java(java).fullmatch("ab").group(2) == "b"


def test_anchors_inside_lucene_patterns_are_refused():
    for pattern in ("a^b", "a$b", "(^a)", "^a|b"):
        with pytest.raises(Refusal):
            lucene_regex(pattern)
    assert lucene_regex("^ab$") == "ab" and lucene_regex("(?s)^a.$") == "a." and lucene_regex("a") == ".*(a).*"


def test_java_literals_escape_every_punctuation_character():
    text = "a.b*c$d\\e[f]g{h}(i)|^&&-\n\x00é"
    assert compile_java(java_literal(text)).fullmatch(text)
    assert re.fullmatch(r"(?:[A-Za-z0-9 é]|\\[^A-Za-z0-9]|\\x\{[0-9a-f]{2}\})*", java_literal(text))
