"""tests/spl_interp.py against Splunk's documentation: each case is an example of the Search
Manual ("Boolean expressions", "Difference between != and NOT") or of the eval functions
reference, with its documented answer, so the SPL property is held to Splunk, not to rmmc."""

from __future__ import annotations

import pytest

from spl_interp import selects, tokens


def keeps(spl: str, *events: dict) -> list[int]:
    return [i for i, e in enumerate(events) if selects(spl, e)]


def test_search_or_binds_tighter_than_and():
    # "A=1 AND B=2 OR C=3 ... is processed as A=1 AND ( B=2 OR C=3 )"
    events = ({"A": "1", "B": "2"}, {"A": "1", "C": "3"}, {"B": "2", "C": "3"}, {"A": "1"})
    assert keeps("search A=1 AND B=2 OR C=3", *events) == [0, 1]
    assert keeps("search A=1 B=2 OR C=3", *events) == [0, 1]
    assert keeps("search (A=1 AND B=2) OR C=3", *events) == [0, 1, 2]


def test_not_keeps_events_without_the_field():
    # "If you search using NOT Location="Calaveras Farms", every event is returned except the
    # events that contain the value ... This includes events that do not have a Location value."
    events = ({"Location": "Marin Meadows"}, {"Location": "Calaveras Farms"}, {})
    assert keeps('search NOT Location="Calaveras Farms"', *events) == [0, 2]
    assert keeps('search Location="Calaveras Farms"', *events) == [1]


def test_search_values_are_case_insensitive_globs():
    events = ({"status": "404"}, {"status": "418"}, {"status": "500"}, {"m": "GET"})
    assert keeps("search status=4*", *events) == [0, 1]
    assert keeps('search m="get"', *events) == [3]
    assert keeps('search m IN ("post", "g*")', *events) == [3]


def test_where_and_binds_tighter_than_or():
    # "The eval and where commands evaluate AND before OR"
    events = ({"a": 1}, {"b": 2}, {"b": 2, "c": 3})
    assert keeps("search *\n| where a==1 OR b==2 AND c==3", *events) == [0, 2]


def test_where_null_is_unknown_and_drops_the_event():
    events = ({"x": 1}, {})
    assert keeps("search *\n| where x!=2", *events) == [0]
    assert keeps("search *\n| where NOT x==2", *events) == [0]
    assert keeps("search *\n| where isnull(x) OR x!=2", *events) == [0, 1]
    assert keeps('search *\n| where coalesce(x, "none")=="none"', *events) == [1]


def test_match_is_an_unanchored_pcre_search():
    # eval match(): "returns TRUE if the regex finds a match against any substring"
    ip = r'match(ip, "^\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}$")'
    assert keeps(f"search *\n| where {ip}", {"ip": "10.1.2.3"}, {"ip": "x10.1.2.3"}, {"ip": "1.2.3"}) == [0]
    assert keeps('search *\n| where match(s, "b")', {"s": "abc"}, {"s": "xyz"}) == [0]
    # PCRE, not Python: \x{hh} is a code point, \z the very end, $ also before a final \n
    assert keeps('search *\n| where match(s, "a\\\\x{09}b")', {"s": "a\tb"}, {"s": "ax{09}b"}) == [0]
    assert keeps('search *\n| where match(s, "b\\\\z")', {"s": "ab"}, {"s": "ab\n"}) == [0]
    assert keeps('search *\n| where match(s, "b$")', {"s": "ab"}, {"s": "ab\n"}) == [0, 1]


def test_cidrmatch_and_lower():
    # cidrmatch("123.132.32.0/25", ip): "true if ip is in the subnet"
    events = ({"ip": "123.132.32.5"}, {"ip": "123.132.32.200"}, {"ip": "x"})
    assert keeps('search *\n| where cidrmatch("123.132.32.0/25", ip)', *events) == [0]
    assert keeps('search *\n| where lower(s)=="abc"', {"s": "ABC"}, {"s": "abd"}) == [0]


def test_strings_escape_quote_and_backslash_only():
    assert tokens('"a\\"b\\\\c"') == [("str", '"a\\"b\\\\c"')]
    assert keeps('search *\n| where s=="a\\"b\\\\c"', {"s": 'a"b\\c'}, {"s": "x"}) == [0]


def test_pcre_refuses_what_splunk_would():
    from pcre import PcreError

    with pytest.raises(PcreError):
        selects('search *\n| where match(s, "a(")', {"s": "a"})
