"""rmmc.verify.lucene against the examples of Elasticsearch's "Regular expression syntax" page
(docs/reference/query-languages/query-dsl/regexp-syntax.md), one test per documented operator.
Each example's "matches" and "does not match" are the page's own."""

from __future__ import annotations

import pytest

from rmmc.verify.lucene import lucene_fullmatch, lucene_regex


def matches(pattern: str, *values: str) -> bool:
    return all(lucene_fullmatch(pattern, v) for v in values)


def rejects(pattern: str, *values: str) -> bool:
    return not any(lucene_fullmatch(pattern, v) for v in values)


def test_reserved_characters_escaped_or_quoted_are_literal():
    assert matches("\\@", "@") and rejects("\\@", "a")
    assert matches("\\\\", "\\")
    assert matches('"john@smith.com"', "john@smith.com") and rejects('"john@smith.com"', "johnxsmith.com")
    # the page's note: the indexed `a\b` matches `a\\.*`
    assert matches("a\\\\.*", "a\\b")


def test_dot_is_any_character_a_line_break_too():
    assert matches("ab.", "aba", "abb", "abz", "ab\n") and rejects("ab.", "ab", "abcd")


def test_repeats():
    assert matches("abc?", "ab", "abc") and rejects("abc?", "abcc")
    assert matches("ab+", "ab", "abb", "abbb") and rejects("ab+", "a")
    assert matches("ab*", "a", "ab", "abb", "abbb") and rejects("ab*", "b")
    assert matches("a{2}", "aa") and rejects("a{2}", "a", "aaa")
    assert matches("a{2,4}", "aa", "aaa", "aaaa") and rejects("a{2,4}", "a", "aaaaa")
    assert matches("a{2,}", "aa", "aaaaaaa") and rejects("a{2,}", "a")


def test_alternation_and_groups():
    assert matches("abc|xyz", "abc", "xyz") and rejects("abc|xyz", "abcxyz", "ab")
    assert matches("abc(def)?", "abc", "abcdef") and rejects("abc(def)?", "abcd")
    assert matches("a()b", "ab")


def test_character_classes():
    assert matches("[abc]", "a", "b", "c") and rejects("[abc]", "d", "ab")
    assert matches("[a-c]", "a", "b", "c") and rejects("[a-c]", "d")
    assert matches("[-abc]", "-", "a") and rejects("[-abc]", "d")
    assert matches("[abc\\-]", "-", "c") and rejects("[abc\\-]", "d")
    assert matches("[^abc]", "d", "\n") and rejects("[^abc]", "a", "b")
    assert matches("[^a-c]", "d") and rejects("[^a-c]", "b")
    assert matches("[^-abc]", "d") and rejects("[^-abc]", "-")
    assert matches("[^abc\\-]", "d") and rejects("[^abc\\-]", "-")


def test_optional_operators_empty_and_anystring():
    assert matches("#|abc", "abc") and rejects("#|abc", "", "x")
    assert matches("@", "", "anything at all\n")


@pytest.mark.parametrize("pattern", ["a~bc", "aaa.+&.+bbb", "foo<1-100>", "@&~(abc.+)"])
def test_complement_intersection_interval_are_refused(pattern):
    with pytest.raises(ValueError):
        lucene_regex(pattern)


def test_no_anchors_the_whole_value_matches():
    """'Lucene's regular expression engine does not support anchor operators ... the regular
    expression must match the entire string': `^` and `$` are ordinary characters."""
    assert matches("^a$", "^a$") and rejects("^a$", "a")
    assert rejects("b", "abc")


def test_shorthand_classes_and_escaped_letters():
    assert matches("\\d\\d", "42") and rejects("\\d", "x")
    assert matches("\\w+", "a_1") and rejects("\\w", "-")
    assert matches("\\.", ".") and rejects("\\.", "x")


@pytest.mark.parametrize("pattern", ["(ab", "ab)", "[ab", "*a", "a{3,1}", "a\\"])
def test_what_lucene_rejects_is_refused(pattern):
    with pytest.raises(ValueError):
        lucene_regex(pattern)


def test_case_insensitive_flag():
    assert lucene_fullmatch("abc", "ABC", ignore_case=True) and not lucene_fullmatch("abc", "ABC")
