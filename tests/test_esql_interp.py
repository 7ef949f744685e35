"""tests/esql_interp.py against Elastic's ES|QL documentation: each example below is a
documented query with its documented result (the file it comes from is named; all under
elasticsearch's docs/reference/query-languages/esql/), so the interpreter the ES|QL property
relies on is held to the language, not to rmmc's evaluator."""

from __future__ import annotations

import pytest

from esql_interp import Undocumented, run, tokens


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


# ------------------------------------------------------------------ commands after WHERE
# (commands/layout/*.md and their examples; functions/examples/*.md)

EMPLOYEES = [
    {"emp_no": 10001, "first_name": "Georgi", "last_name": "Facello", "languages": 2, "salary": 57305,
     "birth_date": "1953-09-02T00:00:00Z", "gender": "M"},
    {"emp_no": 10002, "first_name": "Bezalel", "last_name": "Simmel", "languages": 5, "salary": 56371,
     "birth_date": "1964-06-02T00:00:00Z", "gender": "F"},
    {"emp_no": 10003, "first_name": "Parto", "last_name": "Bamford", "languages": 4, "salary": 61805,
     "birth_date": "1959-12-03T00:00:00Z", "gender": "M"},
    {"emp_no": 10004, "first_name": "Chirstian", "last_name": "Koblick", "languages": 5, "salary": 36174,
     "birth_date": "1954-05-01T00:00:00Z", "gender": "M"},
    {"emp_no": 10005, "first_name": "Kyoichi", "last_name": "Maliniak", "languages": 1, "salary": 63528,
     "birth_date": "1955-01-21T00:00:00Z", "gender": "M"},
    {"emp_no": 10006, "first_name": None, "last_name": "Preusig", "languages": None, "salary": 60335,
     "birth_date": "1953-04-20T00:00:00Z", "gender": "F"},
]


def test_case_documented_example():
    got = run('FROM employees\n| EVAL type = CASE(\n    languages <= 1, "monolingual",\n    languages <= 2, "bilingual",\n'
              '     "polyglot")\n| KEEP emp_no, languages, type', EMPLOYEES[:5])
    assert [(r["emp_no"], r["type"]) for r in got] == [(10001, "bilingual"), (10002, "polyglot"), (10003, "polyglot"),
                                                      (10004, "polyglot"), (10005, "monolingual")]
    # an even number of arguments and no condition true: null; a null condition is not true
    assert one("ROW a = NULL\n| EVAL x = CASE(a > 1, 1), y = CASE(a > 1, 1, 2)") == [{"a": None, "x": None, "y": 2}]


def test_stats_where_and_functions_around_aggregations():
    # layout/stats-by.md: the rows of a group can be filtered per aggregation; an aggregation
    # may sit inside other functions (MV_SORT(VALUES(...)), ROUND(AVG(...)))
    got = run('FROM employees\n| EVAL Ks = salary / 1000 // thousands\n| STATS under_40K = COUNT(*) WHERE Ks < 40,\n'
              '        inbetween = COUNT(*) WHERE 40 <= Ks AND Ks < 60,\n        over_60K  = COUNT(*) WHERE 60 <= Ks,\n'
              '        total     = COUNT(*)', EMPLOYEES)
    assert got == [{"under_40K": 1, "inbetween": 2, "over_60K": 3, "total": 6}]
    got = run("FROM employees\n| STATS n = MV_COUNT(VALUES(gender)), c = COUNT(languages) BY gender", EMPLOYEES)
    assert sorted(got, key=lambda r: r["gender"]) == [{"n": 1, "c": 1, "gender": "F"}, {"n": 1, "c": 4, "gender": "M"}]
    assert list(got[0]) == ["n", "c", "gender"]  # the aggregations first, then the groups
    assert one("ROW x = 1\n| STATS v = VALUES(x) WHERE x > 5") == [{"v": None}]


def test_stats_by_an_expression_and_without_aggregations():
    got = run("FROM employees\n| STATS c = COUNT(*) BY b = languages % 2", EMPLOYEES)
    # languages 2, 5, 4, 5, 1 and a null: remainders 0, 1, 0, 1, 1 and a null group
    assert sorted(got, key=repr) == sorted([{"c": 2, "b": 0}, {"c": 3, "b": 1}, {"c": 1, "b": None}], key=repr)
    assert run("ROW a = NULL | STATS BY a", [{}]) == [{"a": None}]


def test_sort_nulls_and_defaults():
    # layout/sort.md: ascending by default; nulls are larger than any value (last ascending,
    # first descending) unless NULLS FIRST / NULLS LAST says otherwise
    rows = [{"x": 2}, {"x": None}, {"x": 1}]
    assert [r["x"] for r in run("FROM t | SORT x", rows)] == [1, 2, None]
    assert [r["x"] for r in run("FROM t | SORT x DESC", rows)] == [None, 2, 1]
    assert [r["x"] for r in run("FROM t | SORT x ASC NULLS FIRST", rows)] == [None, 1, 2]
    assert [r["x"] for r in run("FROM t | SORT x DESC NULLS LAST", rows)] == [2, 1, None]
    names = run("FROM employees\n| KEEP first_name, last_name\n| SORT first_name ASC NULLS FIRST", EMPLOYEES)
    assert names[0]["first_name"] is None and names[1]["first_name"] == "Bezalel"


def test_keep_precedence_drop_rename():
    row = {"first_name": "a", "last_name": "b", "first_namex": "c", "height": 1}
    assert list(run("FROM e | KEEP first_name, last_name, first_name*", [row])[0]) == \
        ["first_name", "last_name", "first_namex"]
    assert list(run("FROM e | KEEP *, first_name", [row])[0]) == ["last_name", "first_namex", "height", "first_name"]
    assert list(run("FROM e | KEEP h*, *", [row])[0]) == ["height", "first_name", "last_name", "first_namex"]
    assert run("FROM e | DROP first_name*", [row]) == [{"last_name": "b", "height": 1}]
    # an existing column of the new name is dropped; several renames are one after another
    assert run("FROM e | RENAME first_name AS last_name", [row]) == [{"first_namex": "c", "height": 1, "last_name": "a"}]
    assert run("FROM e | KEEP first_name | RENAME first_name AS x, x AS y", [row]) == [{"y": "a"}]


def test_eval_replaces_a_column_at_the_end():
    assert list(one("ROW a = 1, b = 2\n| EVAL a = b + 1, c = a")[0].items()) == [("b", 2), ("a", 3), ("c", 3)]


def test_string_functions_documented_examples():
    assert [r["ln_sub"] for r in run("FROM employees\n| KEEP last_name\n| EVAL ln_sub = SUBSTRING(last_name, 1, 3)",
                                     EMPLOYEES[:3])] == ["Fac", "Sim", "Bam"]
    assert [r["ln_sub"] for r in run("FROM employees\n| KEEP last_name\n| EVAL ln_sub = SUBSTRING(last_name, -3, 3)",
                                     EMPLOYEES[:3])] == ["llo", "mel", "ord"]
    assert [r["ln_sub"] for r in run("FROM employees\n| KEEP last_name\n| EVAL ln_sub = SUBSTRING(last_name, 2)",
                                     EMPLOYEES[:3])] == ["acello", "immel", "amford"]
    with pytest.raises(Undocumented):
        one('ROW a = "ab"\n| EVAL b = SUBSTRING(a, 2, 5)')
    assert one('ROW a = "hello"\n| EVAL a_ll = LOCATE(a, "ll")') == [{"a": "hello", "a_ll": 3}]
    assert one('ROW str = "Hello World"\n| EVAL str = REPLACE(str, "World", "Universe")\n| KEEP str') == [
        {"str": "Hello Universe"}]
    assert one('ROW a = "x", b = "y"\n| EVAL c = CONCAT(a, b, a), n = LENGTH(c)')[0] == {"a": "x", "b": "y", "c": "xyx", "n": 3}
    assert one('ROW m = "Some Text"\n| EVAL u = TO_UPPER(m)')[0]["u"] == "SOME TEXT"


def test_replace_reads_java_regexes():
    # Java: `$` also matches before a final line terminator, `\z` only at the end; `.` stops at
    # every line terminator; `$1` names a group; `\$` writes a dollar
    assert one('ROW s = "ab\\n"\n| EVAL x = REPLACE(s, "b$", "X"), y = REPLACE(s, "b\\\\z", "X")')[0] == \
        {"s": "ab\n", "x": "aX\n", "y": "ab\n"}
    assert one('ROW s = "a\\rb"\n| EVAL x = REPLACE(s, "a.b", "X")')[0]["x"] == "a\rb"
    assert one('ROW s = "k=v"\n| EVAL x = REPLACE(s, "(\\\\w)=(\\\\w)", "$2\\\\$$1")')[0]["x"] == "v$k"
    with pytest.raises(Undocumented):  # a group that took no part in the match
        one('ROW s = "a"\n| EVAL x = REPLACE(s, "a|(b)", "$1")')


def test_conversions_and_numbers():
    got = one("ROW long = 501379200000, n = 5\n| EVAL int = TO_INTEGER(long), i = TO_INTEGER(n), s = TO_STRING(n)")
    assert got == [{"long": 501379200000, "n": 5, "int": None, "i": 5, "s": "5"}]
    # "Division of two integer types will yield an integer result, rounding towards 0"
    assert one("ROW a = -7, b = 2\n| EVAL q = a / b, r = a % b, f = a / 2.0")[0] == {"a": -7, "b": 2, "q": -3, "r": -1, "f": -3.5}
    with pytest.raises(Undocumented):
        one("ROW a = 1, b = 0\n| EVAL q = a / b")
    assert one("ROW a = 1, b = 0\n| EVAL q = CASE(b == 0, null, a / b)")[0]["q"] is None  # only the value chosen


def test_date_trunc_documented_example():
    from datetime import datetime, timezone

    hired = datetime(1991, 6, 26, tzinfo=timezone.utc)
    got = run("FROM employees\n| KEEP hire_date\n| EVAL hour = DATE_TRUNC(1 hour, hire_date), day = DATE_TRUNC(1 day, hire_date)",
              [{"hire_date": datetime(1991, 6, 26, 13, 45, tzinfo=timezone.utc)}])
    assert got == [{"hire_date": datetime(1991, 6, 26, 13, 45, tzinfo=timezone.utc),
                    "hour": datetime(1991, 6, 26, 13, tzinfo=timezone.utc), "day": hired}]
    # "the closest interval since epoch, which starts at 0001-01-01T00:00:00Z": a Monday
    monday = run("FROM t | EVAL w = DATE_TRUNC(7 days, d)", [{"d": datetime(2024, 1, 4, tzinfo=timezone.utc)}])
    assert monday[0]["w"] == datetime(2024, 1, 1, tzinfo=timezone.utc)
