"""Forms Microsoft's parser (Kusto.Language) accepts that rmmc once refused: a comment between
`externaldata` and its schema, bracket-quoted names and a trailing comma in a row schema, a
bare column in project-rename, `#` directive lines before the first statement, and
search's `Column:value` with any operands wherever an expression stands (Kusto.Language parses
`:` as a string operator, SearchExpression).

Each is checked against Microsoft's parser both ways (what rmmc now parses it accepts; the
neighbouring forms it rejects rmmc rejects too), then for its meaning: the schema forms lower
to the same rule as their plain spelling (the externaldata operator's documented syntax is
`externaldata (columnName:columnType [, ...]) [uri, ...] [with (...)]`; a column name in a
schema is an entity name, which KQL may bracket-quote); a bare project-rename column is refused
where it stands, as Kusto's semantic check does (KS110 "Column rename assignment expected"; the
operator's documented form is `NewColumnName = ExistingColumnName`); a directive is refused:
it is a client instruction (Kusto.Explorer's `#connect` ...), outside the query language;
`left:right` is refused unless it is search's documented `ColumnName:StringLiteral` inside
`search`.
"""

from __future__ import annotations

import pytest

from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql
from rmmc.compiler.kql.printer import to_kql

URI = '["https://feeds.example.org/a.csv"]'

ACCEPTED = [
    f"externaldata // the schema\n(a:string)\n{URI}",
    f"externaldata\n// the schema\n\n(a:string){URI} with (format='csv')",
    f"externaldata(['a']:string){URI}",
    f'externaldata(["Badness Index"]:string, b:long){URI}',
    f"externaldata(a:string,){URI}",
    f"externaldata(\n  a:string,\n  ['b']:long,\n){URI}",
    "datatable(a:string,)['x']",
    "datatable(['a b']:string)['x']",
    "let f = (T:(a:string,)) { T | where a == 'x' }; f(datatable(a:string)['x'])",
    "DeviceEvents | project-rename DeviceName",
    "DeviceEvents | project-rename N = DeviceName, ['ActionType']",
    "## a comment written with hashes\nDeviceEvents",
    "#connect cluster('help').database('Samples')\n#second\nDeviceEvents | take 1",
    "// a comment first\n  #directive\nDeviceEvents",
    "#only a directive",
    "https:Anomalies\n| where TimeGenerated > ago(1h)",
    "DeviceEvents | where a:b == 1 and c.d:-1",
    "DeviceEvents | where f(a:b + 1, (x):'y') and g in (a:b)",
    "DeviceEvents | extend x = a:b | project a:dynamic(1)",
    "search in (DeviceEvents) DeviceName:abc or FileName:'x'",
    "let f = (x:string, y:long = 1) { x }; DeviceEvents",
]

REJECTED = [
    f"externaldata(a:string,,){URI}",
    f"externaldata /* c */ (a:string){URI}",
    f"externaldata(a:string){URI} with (format='csv',)",
    "let f = (x:string,) { x }; f('a')",
    "DeviceEvents\n#after the query",
    "let x = 1;\n#between statements\nDeviceEvents",
    "DeviceEvents | where # x",
    "DeviceEvents | where a:b:c",
    "DeviceEvents | where a:'x' has 'y'",
    "DeviceEvents | where a:*",
    "let x = (a:b); DeviceEvents",
]


@pytest.mark.parametrize("query", ACCEPTED)
def test_microsoft_and_rmmc_both_accept(kusto_oracle, query):
    assert kusto_oracle.check(query).syntax_ok, query
    parsed = parse_kql(query)
    printed = to_kql(parsed)
    assert kusto_oracle.check(printed).syntax_ok, printed  # what rmmc writes back Microsoft reads
    assert parse_kql(printed) == parsed


@pytest.mark.parametrize("query", REJECTED)
def test_microsoft_and_rmmc_both_reject(kusto_oracle, query):
    assert not kusto_oracle.check(query).syntax_ok, query
    with pytest.raises(KqlSyntaxError):
        parse_kql(query)


def _rule(kql: str):
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    return lowered.rule


@pytest.mark.parametrize("variant", [
    "externaldata // what the feed holds\n(IP:string, Tag:string)",
    "externaldata(['IP']:string, [\"Tag\"]:string)",
    "externaldata(IP:string, Tag:string,)",
    "externaldata(\n    IP: string,\n    ['Tag']: string,\n)",
])
def test_the_schema_forms_mean_what_the_plain_schema_means(variant):
    tail = '["https://feeds.example.org/c2.csv"] with (format="csv");\nDeviceNetworkEvents | where RemoteIP in (Feed)'
    plain = _rule("let Feed = externaldata(IP:string, Tag:string)" + tail)
    assert _rule("let Feed = " + variant + tail) == plain


def test_a_bracket_quoted_column_keeps_its_name_in_the_external_table():
    table = _rule('externaldata(["Badness Index"]:string, TLD:string)["https://e.example/t.csv"]'
                  ' | where TLD != ""').source.external
    assert table.columns == (("Badness Index", "string"), ("TLD", "string"))
    assert "externaldata(['Badness Index']:string, TLD:string)" in to_kql(parse_kql(
        'externaldata(["Badness Index"]:string, TLD:string)["https://e.example/t.csv"]'))


def test_a_bare_project_rename_column_is_refused_where_it_stands(kusto_oracle_defender):
    query = "DeviceEvents\n| project-rename N = DeviceName, ActionType"
    semantic = kusto_oracle_defender.check(query)
    assert not semantic.ok and any("rename assignment expected" in d.message for d in semantic.diagnostics)
    lowered = lower_text(query)
    assert lowered.rule is None
    (error,) = [d for d in lowered.diagnostics if d.is_error]
    assert (error.span.line, error.span.column) == (2, 34)
    assert error.message == ("project-rename ActionType: a column rename assignment is expected "
                             "(NewName = ActionType)")


@pytest.mark.parametrize("query, line, column", [
    ("## RMM File Certificate Hunt Query\nDeviceProcessEvents | take 1", 1, 1),
    ("// first a comment\n   #connect cluster('x').database('y')\nDeviceProcessEvents", 2, 4),
])
def test_a_directive_is_refused_where_it_stands(query, line, column):
    lowered = lower_text(query)
    assert lowered.rule is None
    (error,) = [d for d in lowered.diagnostics if d.is_error]
    assert (error.span.line, error.span.column) == (line, column)
    assert "client directive" in error.message and "write // for a comment" in error.message


@pytest.mark.parametrize("query, line, column, message", [
    ("// a link pasted without its //\nhttps://example.org/post\n\nDeviceEvents\n| where ActionType == 'x'", 2, 1,
     "https:DeviceEvents is search's Column:value condition, written where the query's table should stand"),
    ("search in (DeviceEvents) DeviceName:abc", 1, 26,
     'DeviceName:abc: search documents Column:"term" only (a column name, then a string literal); '
     "what another form looks for is not documented"),
    ("search in (DeviceEvents) 1:'abc'", 1, 26,
     "1:'abc': search documents Column:\"term\" only (a column name, then a string literal); "
     "what another form looks for is not documented"),
    ("DeviceEvents | where DeviceName:abc", 1, 22,
     "DeviceName:abc is search's syntax; outside `search` its meaning is not documented "
     "(write DeviceName has ... for a term)"),
])
def test_column_value_other_than_searchs_documented_form_is_refused_where_it_stands(query, line, column, message):
    lowered = lower_text(query)
    assert lowered.rule is None
    (error,) = [d for d in lowered.diagnostics if d.is_error]
    assert ((error.span.line, error.span.column), error.message) == ((line, column), message)


def test_searchs_documented_column_term_still_looks_in_that_column():
    rule = _rule("search in (DeviceEvents) DeviceName:'abc'")
    plain = _rule("search in (DeviceEvents) DeviceName has 'abc'")
    assert rule == plain


def test_keywords_microsoft_refuses_as_bare_schema_names_rmmc_refuses_and_quotes(kusto_oracle):
    from rmmc.grammar.kql_words import SCHEMA_KEYWORDS

    words = sorted(SCHEMA_KEYWORDS)
    bare = [f"datatable(a:string, {w}:long)['x', 1]" for w in words]
    assert not any(v.syntax_ok for v in kusto_oracle.check_many(bare))
    for query in bare:
        with pytest.raises(KqlSyntaxError, match="is a keyword: a column so named is written"):
            parse_kql(query)
    quoted = [f"externaldata(['{w}']:string){URI}" for w in words]
    printed = [to_kql(parse_kql(q)) for q in quoted]
    assert all(f"(['{w}']:string)" in p for w, p in zip(words, printed))
    assert all(v.syntax_ok for v in kusto_oracle.check_many(printed))
    # keywords Microsoft's parser does take bare in a schema stay names
    others = [f"datatable({w}:string)['x']" for w in ("where", "has", "contains", "extend", "summarize", "in")]
    assert all(v.syntax_ok for v in kusto_oracle.check_many(others))
    for query in others:
        parse_kql(query)
