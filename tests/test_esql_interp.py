"""tests/esql_interp.py against Elastic's ES|QL documentation: each example below is a
documented query with its documented result (the file it comes from is named; all under
elasticsearch's docs/reference/query-languages/esql/), so the interpreter the ES|QL property
relies on is held to the language, not to rmmc's evaluator."""

from __future__ import annotations

import pytest

from esql_interp import run, tokens


def one(query: str) -> list[dict]:
    return run(query, [])


# ------------------------------------------------------------------ operators/…/like.md, rlike.md


def test_like_escaped_star_and_triple_quotes():
    assert one('ROW message = "foo * bar"\n| WHERE message LIKE "foo \\\\* bar"') == [{"message": "foo * bar"}]
    assert one('ROW message = "foo * bar"\n| WHERE message LIKE """foo \\* bar"""') == [{"message": "foo * bar"}]
    assert one('ROW message = "foo x bar"\n| WHERE message LIKE "foo \\\\* bar"') == []


def test_like_list_of_patterns_and_wildcards():
    assert one('ROW message = "foobar"\n| WHERE message like ("foo*", "bar?")') == [{"message": "foobar"}]
    # `?` is exactly one character, `*` any run; the whole value must match (layout/like.md)
    assert one('ROW m = "bar"\n| WHERE m LIKE "bar?"') == []
    assert one('ROW m = "xbar"\n| WHERE m LIKE "bar*"') == []
    assert one('ROW m = "a\\nb"\n| WHERE m LIKE "a?b"') != []


def test_rlike_escapes_triple_quotes_and_lists():
    assert one('ROW message = "foo ( bar"\n| WHERE message RLIKE "foo \\\\( bar"') == [{"message": "foo ( bar"}]
    assert one('ROW message = "foo ( bar"\n| WHERE message RLIKE """foo \\( bar"""') == [{"message": "foo ( bar"}]
    assert one('ROW message = "foobar"\n| WHERE message RLIKE ("foo.*", "bar.")') == [{"message": "foobar"}]
    assert one('ROW message = "xfoobar"\n| WHERE message RLIKE "foo.*"') == []  # whole value


def test_like_and_rlike_are_case_sensitive():
    assert one('ROW m = "Foo"\n| WHERE m LIKE "foo"') == []
    assert one('ROW m = "Foo"\n| WHERE m RLIKE "foo"') == []


# ------------------------------------------------------------------ esql-null-values.md


def test_comparisons_with_null_are_null():
    assert one("ROW x = NULL\n| EVAL eq_null = x == NULL, neq_null = x != NULL, is_null = x IS NULL") == [
        {"x": None, "eq_null": None, "neq_null": None, "is_null": True}]
    assert one("ROW x = NULL\n| WHERE x == NULL") == []
    assert one("ROW x = NULL\n| WHERE x IS NULL") == [{"x": None}]


def test_where_drops_null_and_not_null_is_null():
    rows = [{"process.name": "svchost.exe"}, {"process.name": "cmd.exe"}, {}]
    names = lambda q: [r.get("process.name") for r in run(q, rows)]  # noqa: E731
    assert names('FROM logs\n| WHERE process.name != "svchost.exe"') == ["cmd.exe"]
    assert names('FROM logs\n| WHERE process.name != "svchost.exe" OR process.name IS NULL') == ["cmd.exe", None]
    assert names('FROM logs\n| WHERE NOT process.name == "svchost.exe"') == ["cmd.exe"]


@pytest.mark.parametrize("left,right,and_,or_", [
    ("true", "true", True, True), ("true", "false", False, True), ("true", "null", None, True),
    ("false", "false", False, False), ("false", "null", False, None), ("null", "true", None, True),
    ("null", "false", False, None), ("null", "null", None, None)])
def test_three_valued_and_or(left, right, and_, or_):
    row = one(f"ROW a = {left}, b = {right}\n| EVAL x = a AND b, y = a OR b, n = NOT a")[0]
    assert (row["x"], row["y"]) == (and_, or_)
    assert row["n"] == (None if row["a"] is None else not row["a"])


def test_count_rows_and_values():
    assert one("ROW x = NULL\n| STATS rows = COUNT(*), values = COUNT(x), nulls = COUNT(NULL)") == [
        {"rows": 1, "values": 0, "nulls": 0}]


def test_grouping_by_null_makes_a_null_group():
    rows = [{"d": "a"}, {"d": None}, {}, {"d": "a"}]
    got = sorted(run("FROM t | STATS c = COUNT(*) BY d", rows), key=lambda r: r["d"] is None)
    assert got == [{"c": 2, "d": "a"}, {"c": 2, "d": None}]


# ------------------------------------------------------------------ IN, functions


def test_in_documented_example_and_null():
    assert one("ROW a = 1, b = 4, c = 3\n| WHERE c-a IN (3, b / 2, a)") == [{"a": 1, "b": 4, "c": 3}]
    assert one("ROW a = NULL\n| EVAL x = a IN (1, 2)")[0]["x"] is None
    assert one("ROW a = 3\n| EVAL x = a IN (1, NULL)")[0]["x"] is None
    assert one("ROW a = 1\n| EVAL x = a IN (1, NULL)")[0]["x"] is True


def test_to_lower_coalesce_to_ip_cidr_match():
    assert one('ROW message = "Some Text"\n| EVAL message_lower = TO_LOWER(message)') == [
        {"message": "Some Text", "message_lower": "some text"}]
    assert one('ROW a=null, b="b"\n| EVAL COALESCE(a, b)') == [{"a": None, "b": "b", "COALESCE(a, b)": "b"}]
    got = one('ROW str1 = "1.1.1.1", str2 = "foo"\n| EVAL ip1 = TO_IP(str1), ip2 = TO_IP(str2)\n'
              '| WHERE CIDR_MATCH(ip1, "1.0.0.0/8")')
    assert len(got) == 1 and got[0]["ip2"] is None and str(got[0]["ip1"]) == "1.1.1.1"
    hosts = [{"ip1": "127.0.0.2", "host": "beta"}, {"ip1": "127.0.0.3", "host": "gamma"},
             {"ip1": "127.0.0.1", "host": "alpha"}]
    got = run('FROM hosts\n| WHERE CIDR_MATCH(TO_IP(ip1), "127.0.0.2/32", "127.0.0.3/32")\n| KEEP host', hosts)
    assert got == [{"host": "beta"}, {"host": "gamma"}]


def test_to_lower_is_javas_full_mapping():
    assert one('ROW m = "İ"\n| EVAL l = TO_LOWER(m)')[0]["l"] == "i\u0307"


# ------------------------------------------------------------------ lexing (lexer/Expression.g4)


def test_string_escapes_are_exactly_the_five():
    assert tokens('"a\\tb\\n\\r\\"\\\\"')[0].value == 'a\tb\n\r"\\'
    for bad in ('"a\\x"', '"a\\u0041"', '"a\nb"', '"unclosed'):
        with pytest.raises(SyntaxError):
            tokens(bad)


def test_triple_quoted_strings_have_no_escapes():
    assert tokens('"""a\\b"""')[0].value == "a\\b"
    assert tokens('"""a"""""')[0].value == 'a""'  # up to two quotes after the closing three


def test_identifiers_plain_and_backquoted():
    assert [t.value for t in tokens("process.pe.company")] == ["process", ".", "pe", ".", "company"]
    assert tokens("`odd field``x`")[0].value == "odd field`x"
    assert run("FROM t | WHERE `odd field``x` == 1", [{"odd field`x": 1}, {}]) == [{"odd field`x": 1}]
    with pytest.raises(SyntaxError):
        tokens("a $ b")


def test_keywords_are_case_insensitive():
    assert run('from t | where A == "x" and not b is null', [{"A": "x", "b": 1}, {"A": "x"}]) == [{"A": "x", "b": 1}]
