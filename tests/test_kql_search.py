"""Kusto's `search` operator: read as its documentation defines it (search operator, "Search
predicate syntax"): `search in (T1, T2) P` is `union T1, T2 | where P` with a `$table`
column, a string literal standing as a condition is a term looked for in every column
(`has`, `hasprefix` for "x*", `hassuffix` for "*x", `contains` for "*x*"), `Col:"x"` looks in
one column, and kind=case_sensitive forces every string operator to match case.

Checked here: Microsoft's parser accepts the samples and gives the `$table` column; the
evaluator's rows on boundary events (case, empty strings, a column a table lacks, a term
inside a word, a dynamic column); the KQL rmmc writes for them runs on duckdb-kql to the same
rows; and what cannot be said exactly is a located refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rmmc.backends.kql import emit_kql
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.kql.parser import parse_kql
from rmmc.compiler.kql.printer import to_kql
from rmmc.compiler.rows import run
from rmmc.verify.whole import NOW

T = NOW - timedelta(hours=1)
FILE, NET, PROC = "DeviceFileEvents", "DeviceNetworkEvents", "DeviceProcessEvents"


def _file(i: int, **columns) -> dict:
    return {ir.TABLE: FILE, "ReportId": i, "Timestamp": T, "DeviceId": "d", **columns}


def _net(i: int, **columns) -> dict:
    return {ir.TABLE: NET, "ReportId": i, "Timestamp": T, "DeviceId": "d", **columns}


EVENTS = [
    _file(1, FileName="ntds.dit", ActionType="FileModified"),
    _file(2, FileName="NTDS.DIT", ActionType="FileCreated"),
    _file(3, FileName="myntds.dit", ActionType="FileModified"),  # 'ntds' inside a word
    _file(4, FolderPath=r"C:\Windows\NTDS\x.bin", ActionType="FileModified"),
    _file(5, FileName="", ActionType=""),
    _file(6, FileName="ntdsutil.exe", ActionType="FileModified"),
    _file(7, FileName="Ünïcode ntds", ActionType="FileModified"),
    _net(8, RemoteIP="10.0.0.1", RemoteUrl="ntds.example.com", ActionType="ConnectionSuccess"),
    _net(9, RemoteIP="10.0.0.2", RemoteUrl="", ActionType="ConnectionFailed"),
]


def _ids(query: str, events=EVENTS) -> list[tuple[str, int]]:
    lowered = lower_text(query)
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    return sorted((r.get("$table"), r["ReportId"]) for r in run(lowered.rule, events, now=NOW))


def _refusal(query: str) -> str:
    lowered = lower_text(query)
    errors = [d for d in lowered.diagnostics if d.is_error]
    assert errors and errors[0].span is not None, [d.message for d in lowered.diagnostics]
    return errors[0].message


SAMPLES = [
    f'search in ({FILE}) "ntds"',
    f'search in ({FILE}, {NET}) "ntds" and ActionType:"FileModified"',
    f'search kind=case_sensitive in ({FILE}) "NTDS"',
    f'search in ({FILE}) "ntds*" or "*dit" or "*utl*"',
    f'search in ({FILE}, {NET}) RemoteIP == "10.0.0.1" or FileName == "ntds.dit" | project $table, ReportId',
    f'search in ({FILE}) ("ntds" or "x") and not(ActionType:"filecreated") and Timestamp > ago(1d)',
    'search in (Device*Events) DeviceId == "d" | where ActionType startswith "File"',
]


@pytest.mark.parametrize("query", SAMPLES)
def test_microsoft_parser_accepts_the_samples_and_rmmc_prints_them_back(kusto_oracle_defender, query):
    result = kusto_oracle_defender.check(query)
    assert result.ok, result.diagnostics
    printed = to_kql(parse_kql(query))
    assert kusto_oracle_defender.check(printed).ok, printed
    assert to_kql(parse_kql(printed)) == printed


def test_the_search_result_has_kustos_table_column_first(kusto_oracle_defender):
    result = kusto_oracle_defender.check(f'search in ({FILE}, {NET}) "ntds"')
    assert result.result_type.startswith("($table:string, Timestamp:datetime")


def test_a_term_is_a_case_insensitive_term_match_in_any_column():
    assert _ids(f'search in ({FILE}) "ntds"') == [(FILE, 1), (FILE, 2), (FILE, 4), (FILE, 7)]


def test_a_term_looks_in_dynamic_columns_too():
    events = [_file(1, AdditionalFields={"Path": "x ntds y"}), _file(2, AdditionalFields={"Path": "ntdsx"})]
    assert _ids(f'search in ({FILE}) "ntds"', events) == [(FILE, 1)]


def test_case_sensitive_kind_makes_terms_and_operators_match_case():
    assert _ids(f'search kind=case_sensitive in ({FILE}) "NTDS"') == [(FILE, 2), (FILE, 4)]
    assert _ids(f'search kind=case_sensitive in ({FILE}) FileName contains "DIT"') == [(FILE, 2)]
    assert _ids(f'search kind=case_insensitive in ({FILE}) FileName contains "DIT"') == [
        (FILE, 1), (FILE, 2), (FILE, 3)]


def test_wildcard_terms_are_prefix_suffix_and_contains():
    assert _ids(f'search in ({FILE}) FileName:"ntds*"') == [(FILE, 1), (FILE, 2), (FILE, 6), (FILE, 7)]
    assert _ids(f'search in ({FILE}) FileName:"*ntds"') == [(FILE, 1), (FILE, 2), (FILE, 3), (FILE, 7)]
    assert _ids(f'search in ({FILE}) FileName:"*tdsu*"') == [(FILE, 6)]


def test_a_column_restriction_looks_in_that_column_only():
    assert _ids(f'search in ({FILE}, {NET}) ActionType:"filemodified"') == [
        (FILE, 1), (FILE, 3), (FILE, 4), (FILE, 6), (FILE, 7)]
    assert _ids(f'search in ({FILE}, {NET}) RemoteUrl:"ntds"') == [(NET, 8)]


def test_several_tables_are_a_union_named_in_table_column():
    assert _ids(f'search in ({FILE}, {NET}) "ntds" and ActionType:"ConnectionSuccess"') == [(NET, 8)]
    # a table without the column: its rows never equal a value
    assert _ids(f'search in ({FILE}, {NET}) RemoteIP == "10.0.0.1" or FileName == "ntds.dit"') == [
        (FILE, 1), (NET, 8)]


def test_search_star_keeps_every_row():
    assert len(_ids(f"search in ({FILE}) *")) == 7


def test_the_time_filter_in_the_predicate_is_the_lookback():
    lowered = lower_text(f'search in ({FILE}, {NET}) Timestamp > ago(2h) and DeviceId == "d"')
    assert lowered.ok
    assert all(b.lookback is not None or lowered.rule.lookback is not None for b in lowered.rule.union.branches)


@pytest.mark.parametrize("query", [
    f'search in ({FILE}) "ntds"',
    f'search kind=case_sensitive in ({FILE}, {NET}) "NTDS" or RemoteUrl:"*example*"',
    f'search in ({FILE}, {NET}) RemoteIP == "10.0.0.1" or FileName == "ntds.dit" | project $table, ReportId',
    f'search in ({FILE}) FileName:"ntds*" and not(ActionType:"filecreated")',
])
def test_the_written_kql_runs_on_duckdb_kql_to_the_evaluators_rows(query):
    pytest.importorskip("duckdb_kql")
    from rmmc.verify.whole import run_kql_rows, same_rows

    events = [e for e in EVENTS if "Ü" not in e.get("FileName", "")]  # duckdb-kql's terms are Unicode
    rule = lower_text(query).rule
    written = emit_kql(rule)
    assert written.ok, written.diagnostics
    assert "union withsource=$table" in written.text
    reference = run(rule, events, now=NOW)
    assert reference
    agree, why = same_rows(rule, reference, run_kql_rows(rule, written.text, events), events)
    assert agree, (written.text, why)


@pytest.mark.parametrize("query, cause", [
    ('search "ntds"', "name the tables"),
    (f'search in ({FILE}) "nt*ds"', "regular expression"),
    (f'search in ({FILE}) "2024"', "could occur in the datetime column"),
    (f'search in ({FILE}) "true"', "could occur in the bool column"),
    (f'search in ({FILE}, {NET}) "devicefileevents"', "would match the table name"),
    (f'search kind=case_sensitive in ({FILE}) FileName =~ "x"', "kind=case_sensitive"),
    (f'search kind=case_sensitive in ({FILE}) FileName in~ ("x")', "kind=case_sensitive"),
    (f'search kind=fuzzy in ({FILE}) "x"', "kind=fuzzy"),
    (f'let q = {NET} | project RemoteUrl; search kind=case_sensitive in ({FILE}) FileName in (q)', "a query inside"),
    (f'search kind=case_sensitive in ({FILE}) FileName in ({NET} | project RemoteUrl)', "a query inside"),
    ('search in (NoSuchTable) "ntds"', "columns are unknown"),
    (f'let t = {FILE} | take 1; search in (t) "ntds"', "a let is not a table"),
    (f'search in (({FILE} | take 1)) "ntds"', "name tables"),
    (f'search in ({FILE}) not("ntds")', "is not a condition"),
    (f'{FILE} | where FileName:"ntds"', "is search's syntax"),  # Microsoft's parser reads it anywhere
    (f'search in ({FILE}, {NET}) IPAddress == "x"', "no table of the union (or search) has a column 'IPAddress'"),  # Microsoft's parser: a bool expected
])
def test_what_cannot_be_said_exactly_is_a_located_refusal(query, cause):
    assert cause in _refusal(query)


def test_a_union_with_a_table_rmmc_does_not_know_may_read_any_column():
    # its columns are unknown: the column may be that table's (no refusal for it)
    lowered = lower_text(f'search in ({FILE}, NoSuchTable) IPAddress == "x"')
    assert not any("no table of the union" in d.message for d in lowered.diagnostics)
    lowered = lower_text(f'union {FILE}, NoSuchTable | where IPAddress == "x"')
    assert not any(d.is_error for d in lowered.diagnostics), [d.message for d in lowered.diagnostics]
