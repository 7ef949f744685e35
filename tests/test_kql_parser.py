"""The KQL front end: what the grammar accepts, the trees it builds, the errors it reports."""

from __future__ import annotations

import pytest

from rmmc.compiler.kql import ast as A
from rmmc.compiler.kql.parser import KqlSyntaxError, decode_string, parse_kql


def body(text: str) -> A.Expr:
    return parse_kql(text).body


def where(text: str) -> A.Expr:
    """The predicate of `T | where <text>`."""
    pipeline = body(f"T | where {text}")
    assert isinstance(pipeline, A.Pipeline)
    return pipeline.operators[0].predicate


def error_of(text: str):
    with pytest.raises(KqlSyntaxError) as info:
        parse_kql(text)
    (diagnostic,) = info.value.diagnostics
    return diagnostic


# ------------------------------------------------------------------ structure


def test_seed_query_structure():
    query = parse_kql(
        "let Time_start = now(-5d);\n"
        "let Time_end = now();\n"
        "//\n"
        "DeviceNetworkEvents\n"
        "| where Timestamp between (Time_start..Time_end)\n"
        "| where RemoteUrl has 'remotepc.com'\n"
        "and InitiatingProcessVersionInfoProductName has_any (\n'remotepc',\n'viewer'\n)\n"
        "| summarize FirstSeen=min(Timestamp), Count=count() by DeviceId, RemoteUrl"
    )
    let_start, let_end, main = query.statements
    assert let_start == A.Let("Time_start", A.Call(A.Name("now"), (A.Unary("-", A.TimespanLit("5d")),)))
    assert let_end == A.Let("Time_end", A.Call(A.Name("now"), ()))
    pipeline = main.expr
    assert pipeline.source == A.Name("DeviceNetworkEvents")
    between, has_where, summarize = pipeline.operators
    assert between.predicate == A.Between(A.Name("Timestamp"), A.Name("Time_start"), A.Name("Time_end"))
    assert has_where.predicate == A.Logical("and", (
        A.Binary("has", A.Name("RemoteUrl"), A.StringLit("remotepc.com")),
        A.ListOp("has_any", A.Name("InitiatingProcessVersionInfoProductName"),
                 (A.StringLit("remotepc"), A.StringLit("viewer"))),
    ))
    assert summarize == A.Summarize(
        (),
        (A.Assignment(("FirstSeen",), A.Call(A.Name("min"), (A.Name("Timestamp"),))),
         A.Assignment(("Count",), A.Call(A.Name("count"), ()))),
        (A.Name("DeviceId"), A.Name("RemoteUrl")),
    )


@pytest.mark.parametrize("text, expected", [
    # `and` binds tighter than `or`, chains are flat.
    ("a or b and c or d", A.Logical("or", (A.Name("a"), A.Logical("and", (A.Name("b"), A.Name("c"))), A.Name("d")))),
    # == binds looser than has (measured on Microsoft's parser: both orders are accepted).
    ("x == 'a' has 'b'", A.Binary("==", A.Name("x"), A.Binary("has", A.StringLit("a"), A.StringLit("b")))),
    ("x has 'a' == 'b'", A.Binary("==", A.Binary("has", A.Name("x"), A.StringLit("a")), A.StringLit("b"))),
    # relational binds tighter than the string operators, arithmetic tighter still.
    ("x < 1 has 'a'", A.Binary("has", A.Binary("<", A.Name("x"), A.NumberLit("1")), A.StringLit("a"))),
    ("a + b * c > 2", A.Binary(">", A.Binary("+", A.Name("a"), A.Binary("*", A.Name("b"), A.Name("c"))), A.NumberLit("2"))),
    ("a - b - c", A.Binary("-", A.Binary("-", A.Name("a"), A.Name("b")), A.Name("c"))),
    # in / between sit at the equality level: `x has 'a' in (true)` is (x has 'a') in (true).
    ("x has 'a' in (true)", A.ListOp("in", A.Binary("has", A.Name("x"), A.StringLit("a")), (A.BoolLit(True),))),
    ("x !between (1 .. 2)", A.Between(A.Name("x"), A.NumberLit("1"), A.NumberLit("2"), negated=True)),
    ("x in~ ('a', 'b')", A.ListOp("in~", A.Name("x"), (A.StringLit("a"), A.StringLit("b")))),
    ("x !in ('a')", A.ListOp("!in", A.Name("x"), (A.StringLit("a"),))),
    ("x has_all ('a')", A.ListOp("has_all", A.Name("x"), (A.StringLit("a"),))),
    ("x matches regex '[a-z]+'", A.Binary("matches regex", A.Name("x"), A.StringLit("[a-z]+"))),
    ("x !hasprefix_cs 'a'", A.Binary("!hasprefix_cs", A.Name("x"), A.StringLit("a"))),
    ("not(x =~ 'a')", A.Call(A.Name("not"), (A.Binary("=~", A.Name("x"), A.StringLit("a")),))),
    ("(a or b) and c", A.Logical("and", (A.Paren(A.Logical("or", (A.Name("a"), A.Name("b")))), A.Name("c")))),
    ("x.y[0]['k'] == 1", A.Binary("==", A.Index(A.Index(A.Member(A.Name("x"), "y"), A.NumberLit("0")), A.StringLit("k")), A.NumberLit("1"))),
    ("['my col'] == -1", A.Binary("==", A.Name("my col"), A.Unary("-", A.NumberLit("1")))),
    ("x in (T | project y)", A.ListOp("in", A.Name("x"), (A.Pipeline(A.Name("T"), (A.Project((A.Name("y"),)),)),))),
    ("* contains 'x'", A.Binary("contains", A.Star(), A.StringLit("x"))),
    ("IsBillable = true", A.Binary("=", A.Name("IsBillable"), A.BoolLit(True))),
])
def test_expression_trees(text, expected):
    assert where(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("5d", A.TimespanLit("5d")), ("1.5h", A.TimespanLit("1.5h")), ("100ms", A.TimespanLit("100ms")),
    ("30m", A.TimespanLit("30m")), ("10s", A.TimespanLit("10s")), ("2microseconds", A.TimespanLit("2microseconds")),
    ("42", A.NumberLit("42")), ("1.5e-3", A.NumberLit("1.5e-3")), ("0x1F", A.NumberLit("0x1F")),
    ("true", A.BoolLit(True)), ("FALSE", A.BoolLit(False)), ("null", A.NullLit()),
    ("datetime(2024-01-01 10:00)", A.TypedLit("datetime", "2024-01-01 10:00")),
    ("int(null)", A.TypedLit("int", "null")),
    ("dynamic(['a', 1, {'k': true}])", A.DynamicLit(A.DynArray((A.StringLit("a"), A.NumberLit("1"), A.DynObject((("k", A.BoolLit(True)),)))))),
    ("dynamic(null)", A.DynamicLit(A.NullLit())),
])
def test_literals(text, expected):
    assert where(f"x == {text}").right == expected


@pytest.mark.parametrize("token, value, obfuscated", [
    (r"'a\'b\\c\n\t\u0041\x41'", "a'b\\c\n\tAA", False),
    (r'"say \"hi\""', 'say "hi"', False),
    (r"@'C:\Windows\'", "C:\\Windows\\", False),
    ("@'it''s'", "it's", False),
    ('@"a""b"', 'a"b', False),
    ("h'secret'", "secret", True),
    ("H@'C:\\x'", "C:\\x", True),
    ("```line1\nline2```", "line1\nline2", False),
    ("~~~a'b~~~", "a'b", False),
])
def test_string_literal_forms(token, value, obfuscated):
    assert decode_string(token) == (value, obfuscated)
    assert where(f"x == {token}").right == A.StringLit(value, obfuscated)


def test_adjacent_strings_concatenate():
    assert where("x == 'a' \"b\" @'c'").right == A.StringLit("abc")


def test_operators_of_the_subset():
    pipeline = body(
        "T | extend a = 1, (b, c) = f(x) | project-away a, Init* | project-rename n = o"
        " | project-reorder a asc | project-keep b* | distinct * | sort by a desc nulls last"
        " | top 5 by b | take 10 | count | as X | mv-expand kind=array y to typeof(string) limit 3"
        " | parse kind=regex x with * 'k=' v:long ';' * | lookup kind=leftouter (U) on k"
        " | join kind=inner hint.remote=auto (V | where z) on $left.a == $right.b, c"
        " | union withsource=Src isfuzzy=true W, X*"
    )
    kinds = [type(op).__name__ for op in pipeline.operators]
    assert kinds == ["Extend", "ProjectAway", "ProjectRename", "ProjectReorder", "ProjectKeep",
                     "Distinct", "Sort", "Top", "Take", "Count", "As", "MvExpand", "Parse",
                     "Lookup", "Join", "Union"]
    extend, away, rename = pipeline.operators[:3]
    assert extend.items[1] == A.Assignment(("b", "c"), A.Call(A.Name("f"), (A.Name("x"),)))
    assert away.columns == (A.Name("a"), A.NamePattern("Init*"))
    assert rename.renames == (("n", "o"),)
    join = pipeline.operators[14]
    assert [p.name for p in join.params] == ["kind", "hint.remote"]
    assert join.on[0] == A.Binary("==", A.Member(A.Name("$left"), "a"), A.Member(A.Name("$right"), "b"))
    parse = pipeline.operators[12]
    assert parse.pattern == (A.Star(), A.StringLit("k="), A.ParseColumn("v", "long"), A.StringLit(";"), A.Star())


def test_operators_outside_the_subset_keep_name_and_raw_text():
    pipeline = body("T | evaluate bag_unpack(x) | make-series n=count() on Timestamp step 1h by y | render timechart with (title='a|b')")
    evaluate, series, render = pipeline.operators
    assert evaluate == A.GenericOperator("evaluate", "bag_unpack(x)")
    assert series == A.GenericOperator("make-series", "n=count() on Timestamp step 1h by y")
    assert render == A.GenericOperator("render", "timechart with (title='a|b')")
    assert body("print x = 1") == A.GenericSource("print", "x = 1")


def test_let_forms():
    query = parse_kql(
        "let s = 'a'; let l = dynamic(['x']); let t = datatable(U:string, N:long)['u', 1, 'v', 2,];"
        " let f = (a:string, b:int = 5) { T | where c == a }; let v = view () { T };"
        " let m = materialize(T | take 1); f('x')"
    )
    lets = {s.name: s.value for s in query.statements if isinstance(s, A.Let)}
    assert lets["t"] == A.Datatable(
        (A.ColumnDecl("U", "string"), A.ColumnDecl("N", "long")),
        (A.StringLit("u"), A.NumberLit("1"), A.StringLit("v"), A.NumberLit("2")),
    )
    assert lets["f"].params == (A.FunctionParam("a", "string"), A.FunctionParam("b", "int", A.NumberLit("5")))
    assert lets["v"].view is True
    assert query.body == A.Call(A.Name("f"), (A.StringLit("x"),))


def test_spans_are_line_column_and_offset():
    text = "T\n| where Name has 'x'"
    predicate = where("Name has 'x'")
    assert predicate.span.column == 11  # in "T | where Name has 'x'"
    pipeline = body(text)
    binary = pipeline.operators[0].predicate
    assert (binary.span.line, binary.span.column, binary.span.offset) == (2, 9, 10)
    assert text[binary.span.offset:binary.span.end] == "Name has 'x'"
    assert text[binary.right.span.offset:binary.right.span.end] == "'x'"


def test_spans_do_not_take_part_in_equality():
    assert parse_kql("T|where x==1") == parse_kql("T\n| where  x == 1 // note")


# ------------------------------------------------------------------ errors


def test_pipe_followed_by_no_operator():
    # rmm_DWService_createproc.yaml: `| Sha1 in (rmmInitialFileSet)`
    d = error_of("DeviceProcessEvents\n| where Timestamp > ago(1d)\n| Sha1 in (rmmInitialFileSet)")
    assert (d.span.line, d.span.column) == (3, 3)
    assert d.message.startswith("expected a query operator (where, extend, summarize, project, ...) after '|', found 'Sha1'")


def test_has_all_has_any():
    # rmm_Level_createproc.yaml: `and FolderPath has_all has_any (`
    d = error_of("T\n| where FileName startswith 'level'\n    and FolderPath has_all has_any (\n 'a')")
    assert (d.span.line, d.span.column) == (3, 28)
    assert d.message == "expected '(' after has_all, found 'has_any'"


def test_trailing_comma_in_has_any_list():
    d = error_of("T\n| where RemoteUrl has_any (\n    'a.com',\n    'b.com',\n)")
    assert (d.span.line, d.span.column) == (5, 1)
    assert d.message == "expected an expression after ',', found ')' (KQL does not allow a trailing comma here)"


@pytest.mark.parametrize("text, line, column, message", [
    ("T | where", 1, 10, "unexpected end of query: expected an expression after where"),
    ("T | where x == 'abc", 1, 16, "unterminated string literal (a string cannot span lines; use ``` for that)"),
    ("T | where x == 'a\\qb'", 1, 18, "invalid escape sequence '\\q' in string literal"),
    ("T | WHERE x", 1, 5, "expected a query operator (where, extend, summarize, project, ...) after '|', found 'WHERE'"),
    ("let x = 1 T", 1, 11, "expected an operator, ';', '|' or the end of the query after 1, found 'T'"),
    ("T | where x has 'a' has 'b'", 1, 21, None),
])
def test_error_messages_and_positions(text, line, column, message):
    d = error_of(text)
    assert (d.span.line, d.span.column) == (line, column)
    if message is not None:
        assert d.message == message


def test_nesting_limit_is_a_located_error():
    text = "T | where " + "(" * 300 + "x" + ")" * 300
    d = error_of(text)
    assert d.code == "too-deep"
    assert d.span.offset == len("T | where ") + 200  # the 201st "("


def test_a_corrupt_grammar_cache_is_rebuilt(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code = "from rmmc.compiler.kql.parser import parse_kql; print(parse_kql('T | take 1').body)"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    (cache,) = (tmp_path / "rmmc").glob("kql-grammar-*")  # beside it: the lexers' regexes
    cache.write_bytes(b"not a cache")
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert first.returncode == second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert cache.read_bytes() != b"not a cache"  # rebuilt, so the next start is fast again
