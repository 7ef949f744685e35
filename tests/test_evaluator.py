"""The reference evaluator pins down what every IR operator means (KQL's rules)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmmc.compiler.evaluator import evaluate, fold, term_match
from rmmc.compiler.ir import And, Const, Field, Not, Op, Or, Predicate

URL = Field("RemoteUrl")
PORT = Field("RemotePort", "int")
TIME = Field("Timestamp", "datetime")


def holds(p, **event):
    return evaluate(p, event)


@pytest.mark.parametrize("value, expected", [
    ("https://www.remotepc.com/x", True),
    ("REMOTEPC.COM", True),
    ("a_remotepc.com", True),
    ("remotepc.com", True),
    ("x remotepc.com:443", True),
    ("notremotepc.com", False),
    ("remotepc.community", False),
    ("remotepc.co", False),
    ("", False),
])
def test_has_is_a_whole_term_match(value, expected):
    assert holds(Predicate(URL, Op.TERM, ("remotepc.com",)), RemoteUrl=value) is expected


def test_has_with_terms_inside_a_longer_word():
    product = Field("InitiatingProcessVersionInfoProductName")
    for needle in ("remotepc", "viewer"):
        assert holds(Predicate(product, Op.TERM, (needle,)),
                     InitiatingProcessVersionInfoProductName="RemotePCViewer") is False
    assert holds(Predicate(product, Op.TERM, ("viewer",)),
                 InitiatingProcessVersionInfoProductName="RemotePC Viewer") is True


def test_term_boundaries_only_where_the_value_has_term_characters():
    # '.com' starts with a non-term character: no boundary is required before it.
    assert term_match("remotepc.com", ".com")
    assert not term_match("remotepc.community", ".com")
    assert term_match("a-b", "-")
    assert term_match("x", "")


def test_hasprefix_and_hassuffix_check_one_side():
    assert holds(Predicate(URL, Op.TERM_PREFIX, ("remote",)), RemoteUrl="www.remotepc.com")
    assert not holds(Predicate(URL, Op.TERM_PREFIX, ("motepc",)), RemoteUrl="www.remotepc.com")
    assert holds(Predicate(URL, Op.TERM_SUFFIX, ("motepc",)), RemoteUrl="www.remotepc.com")
    assert not holds(Predicate(URL, Op.TERM_SUFFIX, ("remote",)), RemoteUrl="www.remotepc.com")


def test_case_rules():
    ci = Predicate(URL, Op.EQUALS, ("AbC",))
    cs = Predicate(URL, Op.EQUALS, ("AbC",), case_sensitive=True)
    assert holds(ci, RemoteUrl="abc") and not holds(cs, RemoteUrl="abc") and holds(cs, RemoteUrl="AbC")
    assert holds(Predicate(URL, Op.TERM, ("Remote",), case_sensitive=True), RemoteUrl="a Remote b")
    assert not holds(Predicate(URL, Op.TERM, ("Remote",), case_sensitive=True), RemoteUrl="a remote b")
    # One for one: 'ß' does not expand to 'ss', and 'İ' (whose lower case is two characters)
    # stays as it is.
    assert fold("STRASSE ß") == "strasse ß"
    assert fold("İx") == "İx"


def test_strings_are_never_null():
    assert holds(Predicate(URL, Op.EQUALS, ("",)), RemoteUrl=None) is True
    assert holds(Predicate(URL, Op.EMPTY), ) is True
    assert holds(Predicate(URL, Op.EMPTY, negated=True), RemoteUrl="x") is True
    assert holds(Predicate(URL, Op.CONTAINS, ("x",), negated=True)) is True


def test_in_and_not_in():
    p_in = Predicate(URL, Op.EQUALS, ("a", "b"), case_sensitive=True)
    assert holds(p_in, RemoteUrl="b") and not holds(p_in, RemoteUrl="B")
    p_in_ci = Predicate(URL, Op.EQUALS, ("a", "b"))
    assert holds(p_in_ci, RemoteUrl="B")
    not_in = p_in.negate()
    assert not holds(not_in, RemoteUrl="a") and holds(not_in, RemoteUrl="c")


def test_has_any_and_has_all():
    any_ = Predicate(URL, Op.TERM, ("alpha", "beta"))
    all_ = Predicate(URL, Op.TERM, ("alpha", "beta"), all_values=True)
    assert holds(any_, RemoteUrl="x.beta.y") and not holds(all_, RemoteUrl="x.beta.y")
    assert holds(all_, RemoteUrl="beta/alpha")


def test_nulls_in_typed_fields():
    eq = Predicate(PORT, Op.EQUALS, (443,))
    assert holds(eq) is False
    assert holds(eq.negate()) is True                       # != with null is true
    gt = Predicate(PORT, Op.GT, (100,))
    assert holds(gt) is None                                # unknown
    assert holds(Not(gt)) is None                           # not(unknown) is unknown
    assert holds(Or((gt, Const(True)))) is True
    assert holds(And((gt, Const(False)))) is False
    assert holds(gt, RemotePort="443") is True              # typed on read


def test_between_is_inclusive():
    p = Predicate(PORT, Op.BETWEEN, (1, 10))
    assert holds(p, RemotePort=1) and holds(p, RemotePort=10) and not holds(p, RemotePort=11)
    t = Predicate(TIME, Op.BETWEEN, (datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc)))
    assert holds(t, Timestamp="2024-01-02T00:00:00Z")
    assert not holds(t, Timestamp="2024-01-02T00:00:01Z")


def test_regex_is_an_unanchored_case_sensitive_search():
    p = Predicate(URL, Op.REGEX, (r"remote\w+\.com",), case_sensitive=True)
    assert holds(p, RemoteUrl="https://remotepc.com/") and not holds(p, RemoteUrl="REMOTEPC.COM")
    assert holds(Predicate(URL, Op.REGEX, (r"remote\w+\.com",)), RemoteUrl="REMOTEPC.COM")


def test_exists():
    p = Predicate(URL, Op.EXISTS)
    assert holds(p, RemoteUrl="") and not holds(p) and holds(p.negate())


@given(st.text(max_size=30), st.text(max_size=8))
def test_term_match_implies_contains(haystack, needle):
    if term_match(fold(haystack), fold(needle)):
        assert fold(needle) in fold(haystack)


@given(st.text(alphabet="abc.-_ ", max_size=20), st.text(alphabet="abc", min_size=1, max_size=4))
def test_term_match_is_a_token_match_for_alphanumeric_needles(haystack, needle):
    # For a needle of term characters only, `has` means: some maximal run of term characters
    # in the haystack, or a part of one bounded by the needle's own ends, equals the needle.
    import re
    runs = re.findall(r"[0-9A-Za-z]+", haystack)
    assert term_match(haystack, needle) == (needle in runs)


def test_cidr_with_all_values_needs_every_network():
    from rmmc.compiler.evaluator import evaluate_predicate
    from rmmc.compiler.ir import Field, Op, Predicate

    both = Predicate(Field("RemoteIP"), Op.CIDR, ("10.0.0.0/8", "10.1.0.0/16"), all_values=True)
    assert evaluate_predicate(both, {"RemoteIP": "10.1.2.3"}) is True
    assert evaluate_predicate(both, {"RemoteIP": "10.2.0.1"}) is False  # in the first only
    assert evaluate_predicate(Predicate(Field("RemoteIP"), Op.CIDR, ("10.0.0.0/8", "10.1.0.0/16")),
                              {"RemoteIP": "10.2.0.1"}) is True
