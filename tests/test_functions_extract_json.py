"""extract_json() / extractjson(): the element at a JSONPath as a string, and with
`typeof(T)` that string converted by to<T>() (Kusto's page: "Get a specified element out of a
JSON text using a path expression.  Optionally convert the extracted string to a specific
type"); what the page leaves open is an evaluation error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rmmc.backends.kql import emit_kql
from rmmc.compiler import functions as F
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.verify.whole import NOW

impl = F.FUNCTIONS["extract_json"].impl
DOC = '{"name": "John", "age": 30, "city": "New York", "a": {"b": ["x", "y"]}, "ok": true, "r": 1.5}'


@pytest.mark.parametrize("path, expected", [
    ("$.name", "John"),               # the documentation's example
    ("$.age", "30"),
    ("$['city']", "New York"),
    ('$["city"]', "New York"),
    ("$.a.b[1]", "y"),
    ("$.missing", ""),
    ("$.a.b[5]", ""),
    ("$.name.x", ""),
])
def test_the_element_at_a_path(path, expected):
    assert impl(path, DOC) == expected


def test_a_dynamic_source_is_read_as_its_json():
    assert impl("$.IsLocalLogon", {"IsLocalLogon": "yes"}) == "yes"


@pytest.mark.parametrize("path, source", [
    ("$.a", DOC), ("$.ok", DOC), ("$.r", DOC), ("$.name", "not json"), ("$..name", DOC), ("$.a[*]", DOC),
])
def test_what_the_documentation_leaves_open_is_an_error(path, source):
    with pytest.raises(F.EvaluationError):
        impl(path, source)


def test_a_typed_extract_is_the_conversion_of_the_string():
    lowered = lower_text("DeviceEvents | extend P = extractjson('$.Port', AdditionalFields, typeof(int)),"
                         " S = extract_json('$.Name', AdditionalFields, typeof(string)),"
                         " T = extract_json('$.When', AdditionalFields, typeof(datetime)) | project P, S, T")
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    columns = dict(lowered.rule.stages[0].columns)
    assert columns["P"].function == "toint" and columns["P"].args[0].function == "extract_json"
    assert columns["S"].function == "extract_json" and columns["T"].type == "datetime"
    events = [{"AdditionalFields": {"Port": "443", "Name": "n", "When": "2024-01-02T03:04:05Z"}, "Timestamp": NOW},
              {"AdditionalFields": {"Port": 80}, "Timestamp": NOW}]
    rows = run(lowered.rule, events, now=NOW)
    assert [(r["P"], r["S"], r["T"]) for r in rows] == [
        (443, "n", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)), (80, "", None)]
    assert "toint(extract_json('$.Port', AdditionalFields))" in emit_kql(lowered.rule).text


@pytest.mark.parametrize("query, cause", [
    ("DeviceEvents | extend P = extract_json('$..Port', AdditionalFields)", "JSONPath"),
    ("DeviceEvents | extend P = extract_json('$.Port', AdditionalFields, typeof(guid))", "typeof(guid)"),
    ("DeviceEvents | extend P = extract_json('$.Port', AdditionalFields, 'int')", "typeof"),
])
def test_forms_rmmc_does_not_lower_are_refused(query, cause):
    lowered = lower_text(query)
    assert not lowered.ok and cause in lowered.diagnostics[-1].message


def test_the_written_kql_is_valid_for_microsofts_parser(kusto_oracle_defender):
    lowered = lower_text("DeviceEvents | extend P = extractjson('$.Port', AdditionalFields, typeof(long))")
    text = emit_kql(lowered.rule).text
    assert kusto_oracle_defender.check(text).ok, text


def test_unicode_and_string_numbers_on_the_evaluator():
    # (duckdb-kql has no extract_json: the evaluator's rows are the reference here)
    query = ("DeviceProcessEvents | extend N = extract_json('$.name', ProcessCommandLine),"
             " A = tolong(extract_json('$.age', ProcessCommandLine)) | project DeviceId, N, A")
    events = [{ir.TABLE: "DeviceProcessEvents", "DeviceId": f"d{i}", "ProcessCommandLine": text,
               "Timestamp": NOW - timedelta(hours=1)}
              for i, text in enumerate([DOC, '{"name": "Ünï", "age": "41"}', '{"other": 1}', "{}"])]
    rule = lower_text(query).rule
    assert [(r["N"], r["A"]) for r in run(rule, events, now=NOW)] == [
        ("John", 30), ("Ünï", 41), ("", None), ("", None)]
