"""rmmc.verify.eql_elastic against Elastic's EQL documentation: each case is an example of the
EQL syntax reference (docs/reference/query-languages/eql/eql-syntax.md) or function reference
(eql-function-ref.md) with its documented answer."""

from __future__ import annotations

import pytest

pytest.importorskip("eql")

from rmmc.verify.eql_elastic import other_case, parse, select, selects  # noqa: E402


def picks(condition: str, *values: str, field: str = "my_field") -> list[str]:
    """The values (each one event's `field`) the query `any where <condition>` selects."""
    events = [{field: v} for v in values]
    return [values[i] for i in select(f"any where {condition}", events)]


def test_double_equals_is_case_sensitive_and_expands_no_wildcard():
    # "process_name == "cmd.exe" is not equivalent to process_name == "Cmd.exe""
    assert picks('process.name == "cmd.exe"', "cmd.exe", "Cmd.exe", field="process.name") == ["cmd.exe"]
    # "== ... interprets * as a literal asterisk, not a wildcard"
    assert picks('process.name == "cmd*.exe"', "cmd*.exe", "cmd1.exe", field="process.name") == ["cmd*.exe"]
    assert picks('my_field != "a"', "a", "A", "b") == ["A", "b"]


def test_colon_wildcards_star():
    assert picks('my_field : "doc*"', "doc", "docs", "document", "DOS") == ["doc", "docs", "document"]
    assert picks('my_field : "*doc"', "adoc", "asciidoc", "docs") == ["adoc", "asciidoc"]
    assert picks('my_field : "d*c"', "doc", "disc", "dock") == ["doc", "disc"]


def test_colon_wildcards_question_mark():
    assert picks('my_field : "doc?"', "docs", "doc", "document", "DOS") == ["docs"]
    assert picks('my_field : "?doc"', "adoc", "asciidoc") == ["adoc"]
    assert picks('my_field : "d?c"', "doc", "disc") == ["doc"]


def test_colon_is_case_insensitive():
    assert picks('my_field : "doc*"', "DOCUMENT", "Docs") == ["DOCUMENT", "Docs"]


def test_like_is_case_sensitive_and_like_tilde_is_not():
    assert picks('my_field like "DOC*"', "DOC", "DOCS", "DOCs", "DOCUMENT", "DOS", "doc") == [
        "DOC", "DOCS", "DOCs", "DOCUMENT"]
    assert picks('my_field like "D*C"', "DOC", "DISC", "DisC", "doc") == ["DOC", "DISC", "DisC"]
    assert picks('my_field like "DOC?"', "DOCS", "DOCs", "DOC", "DOCUMENT", "DOS") == ["DOCS", "DOCs"]
    assert picks('my_field like~ "value*"', "VALUE1", "value", "Valu") == ["VALUE1", "value"]
    assert picks('my_field like "VALUE*"', "VALUE1", "value") == ["VALUE1"]


def test_regex_and_regex_tilde():
    assert picks('my_field regex "VALUE[^Z].?"', "VALUEA", "VALUEAB", "VALUEZ", "valuea") == ["VALUEA", "VALUEAB"]
    assert picks('my_field regex~ "value[^z].?"', "VALUEA", "valueab", "valuez") == ["VALUEA", "valueab"]


def test_lookup_operators():
    values = ("Value-1", "value-1", "VALUE2", "VAL3", "val3", "other")
    assert picks('my_field in ("Value-1", "VALUE2", "VAL3")', *values) == ["Value-1", "VALUE2", "VAL3"]
    assert picks('my_field in~ ("value-1", "value2", "val3")', *values) == [
        "Value-1", "value-1", "VALUE2", "VAL3", "val3"]
    assert picks('my_field not in ("Value-1", "VALUE2", "VAL3")', *values) == ["value-1", "val3", "other"]
    assert picks('my_field not in~ ("value-1", "value2", "val3")', *values) == ["other"]
    assert picks('my_field : ("value-1", "value2", "val3")', *values) == [
        "Value-1", "value-1", "VALUE2", "VAL3", "val3"]
    assert picks('my_field like ("Value-*", "VALUE2", "VAL?")', *values) == ["Value-1", "VALUE2", "VAL3"]
    assert picks('my_field like~ ("value-*", "value2", "val?")', *values) == [
        "Value-1", "value-1", "VALUE2", "VAL3", "val3"]
    assert picks('my_field regex ("[vV]alue-[0-9]", "VALUE[^2].?", "VAL3")', *values) == [
        "Value-1", "value-1", "VAL3"]
    assert picks('my_field regex~ ("value-[0-9]", "value[^2].?", "val3")', *values) == [
        "Value-1", "value-1", "VAL3", "val3"]


def test_wildcards_in_lookup_lists():
    assert picks('my_field : ("doc*", "f*o", "ba?", "qux")', "DOCS", "foo", "bar", "QUX", "baxx") == [
        "DOCS", "foo", "bar", "QUX"]


def test_in_compares_whole_values_wildcards_are_literal():
    assert picks('my_field in~ ("a*")', "a*", "A*", "ab") == ["a*", "A*"]


def test_null_checks_and_missing_fields():
    events = [{"user.id": "x"}, {}]
    assert select('network where user.id != null', events) == [0]
    assert select('network where user.id == null', events) == [1]
    # a test on a missing field is not true, and neither is its negation (three-valued)
    assert select('network where not user.id : "x"', events) == []
    assert select('network where not user.id : "x"', events, null_reading="false") == [1]


def test_cidr_match_examples():
    event = {"source.address": "192.168.152.12"}
    assert select('any where cidrMatch(source.address, "192.168.0.0/16")', [event]) == [0]
    assert select('any where cidrMatch(source.address, "192.168.0.0/16", "10.0.0.0/8")', [event]) == [0]
    assert select('any where cidrMatch(source.address, "10.0.0.0/8")', [event]) == []
    assert select('any where cidrMatch(source.address, "10.0.0.0/8", "10.128.0.0/9")', [event]) == []
    # null handling: cidrMatch(null, ...) is null, so neither it nor its negation is true
    assert select('any where not cidrMatch(source.address, "10.0.0.0/8")', [{}]) == []


def test_strings_escapes_and_raw_strings():
    assert picks('my_field == "example \\r of \\" escaped \\n characters"',
                 'example \r of " escaped \n characters', "x") == ['example \r of " escaped \n characters']
    assert picks('my_field == "\\u{200f}"', "\u200f", "x") == ["\u200f"]
    assert picks('my_field == """Raw string with a literal double quote " and blackslash \\ included"""',
                 'Raw string with a literal double quote " and blackslash \\ included', "x") == [
        'Raw string with a literal double quote " and blackslash \\ included']


def test_backquoted_field_names():
    assert select('any where `my-field` == "a"', [{"my-field": "a"}, {"my-field": "b"}]) == [0]


def test_other_case_is_one_character_and_java_like():
    assert (other_case("a"), other_case("A"), other_case("é"), other_case("ß")) == ("A", "a", "É", "ß")
    assert other_case("\u0130") == "i"  # Character.toLowerCase(0x130)
    assert other_case("ǅ") == "ǆ"  # title case: its lower case


def test_parse_refuses_what_the_package_rejects():
    with pytest.raises(Exception):
        parse("any where my_field = 'a'")  # `=` and single quotes are not Elasticsearch EQL
    assert selects(parse("any where true"), {})


def test_a_field_tested_as_ip_and_as_text_has_no_one_meaning():
    from rmmc.verify.eql_elastic import MixedFieldTypes

    with pytest.raises(MixedFieldTypes):
        select('any where not ip like~ "*-*" and not cidrMatch(ip, "10.0.0.0/8")', [{"ip": "-"}])
    # an ip field alone holds no text that is no address: "-" reads as missing
    assert select('any where ip == null or not cidrMatch(ip, "10.0.0.0/8")', [{"ip": "-"}]) == [0]
