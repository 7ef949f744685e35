"""The index prefilter (`rmmc.compiler.prefilter`) is a proven superset: `prefilter AND exact ==
exact`, in the model and on each engine.

1. Model: on generated rules and events (hostile needles, case and non-ASCII variants on the
   needles' boundaries, tests/strategies.py), every event the evaluator selects satisfies the
   superset, and the superset is only positive case-insensitive plain tests with writable,
   non-empty needles.
2. Engines: each backend's output with the prefilter selects exactly the events its output
   without it selects, run by the engine interpreters of tests/test_properties.py (SPL:
   tests/spl_interp.py; ES|QL: tests/esql_interp.py; EQL: the `eql` package with Elasticsearch's
   semantics; Sigma: pySigma's sqlite backend), so the prefilter never drops an event the exact
   test keeps.  (test_properties checks the whole output against the evaluator as before.)

Run long: `HYPOTHESIS_PROFILE=long pytest tests/test_prefilter.py`.
"""

from __future__ import annotations

from unittest import mock

from hypothesis import assume, given, note

from boundaries import boundary_examples
from strategies import FULL, cases
from test_properties import (EQL_ALPHABET, ESQL_ALPHABET, SETTINGS, SQLITE_ALPHABET, eql_select, esql_select,
                             has_op, in_sigma_convention, refused, spl_select, sqlite_select)

from rmmc.compiler import evaluator
from rmmc.compiler.ir import And, Const, Field, Op, Or, Predicate
from rmmc.compiler.prefilter import is_own_superset, printable_ascii, superset


def _plain(condition) -> bool:
    if isinstance(condition, (And, Or)):
        return all(_plain(c) for c in condition.operands)
    return (isinstance(condition, Predicate) and isinstance(condition.field, Field)
            and condition.op in (Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH)
            and not condition.negated and not condition.case_sensitive and bool(condition.values)
            and all(v and all(printable_ascii(ch) for ch in v) for v in condition.values))


# ------------------------------------------------------------------ 1. the model


@SETTINGS
@given(cases(alphabet=FULL, cidr=True))
@boundary_examples(FULL)
def test_superset_holds_in_the_model(case):
    rule, events = case
    pre = superset(rule.condition)
    note(f"superset: {pre}")
    assert pre == Const(True) or _plain(pre), pre
    for e in events:
        if evaluator.evaluate(rule.condition, e) is True:
            assert evaluator.evaluate(pre, e) is True, (rule.condition, pre, e)
    if is_own_superset(rule.condition):  # then the superset means the same
        for e in events:
            assert evaluator.evaluate(pre, e) == evaluator.evaluate(rule.condition, e), (pre, e)


def test_superset_examples():
    url = Field("RemoteUrl")
    has = Predicate(url, Op.TERM, ("RemotePC.com",))
    assert superset(has) == Predicate(url, Op.CONTAINS, ("remotepc.com",))
    # a negation, a regex: no index test; an OR with a branch without one: none for the OR
    assert superset(has.negate()) == Const(True)
    assert superset(Or((has, Predicate(url, Op.REGEX, ("a.b",))))) == Const(True)
    # a needle with a wildcard or a control character: its longest writable piece
    assert superset(Predicate(url, Op.EQUALS, ("ab*cde",), case_sensitive=True)) == \
        Predicate(url, Op.CONTAINS, ("cde",))
    # has_all: each value; has_any: one test over the values
    assert superset(Predicate(url, Op.TERM, ("a", "b"), all_values=True)) == \
        And((Predicate(url, Op.CONTAINS, ("a",)), Predicate(url, Op.CONTAINS, ("b",))))
    assert superset(Predicate(url, Op.TERM, ("a", "b"))) == Predicate(url, Op.CONTAINS, ("a", "b"))
    # KELVIN SIGN reads as k (the evaluator folds it so)
    assert superset(Predicate(url, Op.TERM, ("\u212aey",))) == Predicate(url, Op.CONTAINS, ("key",))
    # NOT over an OR is an AND of negations: still none; NOT over NOT: the test itself
    from rmmc.compiler.ir import Not
    assert superset(Not(Not(has))) == superset(has)


# ------------------------------------------------------------------ 2. the engines


def _without(target: str):
    """The backend with its index prefilter switched off (the exact test alone)."""
    if target == "eql":
        return mock.patch("rmmc.backends.eql.with_prefilter", lambda c: c)
    if target == "sigma":
        return mock.patch("rmmc.backends.sigma.detection.index_values", lambda *a, **k: None)
    module = {"splunk": "rmmc.backends.splunk.backend", "esql": "rmmc.backends.esql.backend"}[target]
    return mock.patch(f"{module}.superset", lambda *a, **k: Const(True))


@SETTINGS
@given(cases(alphabet=FULL, cidr=True))
@boundary_examples(FULL)
def test_splunk_prefilter_and_exact_is_exact(case):
    from rmmc.backends.splunk.backend import emit_splunk

    rule, events = case
    t = emit_splunk(rule)
    assume(not refused(t))
    with _without("splunk"):
        exact = emit_splunk(rule)
    note(t.text)
    assert spl_select(rule, t.text, events) == spl_select(rule, exact.text, events), (t.text, exact.text)


@SETTINGS
@given(cases(alphabet=ESQL_ALPHABET, cidr=True))
@boundary_examples(ESQL_ALPHABET)
def test_esql_prefilter_and_exact_is_exact(case):
    from rmmc.backends.esql.backend import emit_esql

    rule, events = case
    t = emit_esql(rule)
    assume(not refused(t))
    with _without("esql"):
        exact = emit_esql(rule)
    note(t.text)
    assert esql_select(rule, t.text, events) == esql_select(rule, exact.text, events), (t.text, exact.text)


@SETTINGS
@given(cases(alphabet=EQL_ALPHABET, cidr=True))
@boundary_examples(EQL_ALPHABET)
def test_eql_prefilter_and_exact_is_exact(case):
    from rmmc.backends.eql import emit_eql
    from rmmc.verify.eql_elastic import MixedFieldTypes

    rule, events = case
    t = emit_eql(rule)
    assume(not refused(t))
    with _without("eql"):
        exact = emit_eql(rule)
    note(t.text)
    try:
        for reading in ("three-valued", "false"):
            assert eql_select(rule, t.text, events, reading) == eql_select(rule, exact.text, events, reading), \
                (t.text, exact.text)
    except MixedFieldTypes:
        assume(False)


@SETTINGS
@given(cases(alphabet=SQLITE_ALPHABET))
@boundary_examples(SQLITE_ALPHABET, keep=lambda rule: not has_op(rule, Op.CIDR))
def test_sigma_contains_beside_term_regex_is_exact(case):
    """pySigma's sqlite backend runs the Sigma output with and without the `|contains` written
    beside each term regex: the same events."""
    import pytest

    pytest.importorskip("sigma.backends.sqlite")
    from rmmc.backends.sigma.backend import emit_sigma

    rule, events = case
    events, shaped = in_sigma_convention(rule, events)
    t = emit_sigma(rule)
    assume(not refused(t))
    with _without("sigma"):
        exact = emit_sigma(rule)
    note(t.text)
    assert sqlite_select(rule.source.table, t.text, shaped) == \
        sqlite_select(rule.source.table, exact.text, shaped), (t.text, exact.text)


def test_sigma_writes_contains_beside_each_term_regex():
    from rmmc.backends.sigma.backend import emit_sigma
    from rmmc.compiler.ir import Metadata, Rule, Source
    import yaml

    url = Field("RemoteUrl")
    rule = Rule(Metadata(title="t"), Source(table="DeviceNetworkEvents"),
                And((Predicate(url, Op.TERM, ("RemotePC.com", "b")),
                     Predicate(Field("InitiatingProcessFileName"), Op.TERM, ("x", "Y"), all_values=True))))
    detection = next(yaml.safe_load_all(emit_sigma(rule).text))["detection"]
    first = detection["selection_1"]  # has_any: one selection, contains beside the term regexes
    assert first["DestinationHostname|contains"] == ["remotepc.com", "b"]
    assert len(first["DestinationHostname|re|i"]) == 2
    assert first["InitiatingProcessFileName|contains|all"] == ["x", "y"]  # has_all: every value
    assert detection["condition"] == "selection_1 and selection_2"


def test_regex_superset_is_its_literal_run():
    image = Field("FolderPath")
    basename = Predicate(image, Op.REGEX, (r"(?s)\\(?:[^\\]*[^0-9A-Za-z])?[jJ][uU][mM][pP](?:[^0-9A-Za-z][^\\]*)?$",),
                         case_sensitive=True)
    assert superset(basename) == Predicate(image, Op.CONTAINS, ("jump",))
    assert superset(Predicate(image, Op.REGEX, ("(?i)jump",), case_sensitive=True)) == Const(True)
    assert superset(Predicate(image, Op.REGEX, ("jump",))) == Const(True)  # case-insensitive regex
    assert superset(Predicate(image, Op.REGEX, ("a|b",), case_sensitive=True)) == Const(True)


def test_a_conjunct_the_other_implies_is_dropped_when_read_back():
    from rmmc.compiler.prefilter import drop_implied

    url = Field("RemoteUrl")
    has = Predicate(url, Op.TERM, ("RemotePC.com",))
    contains = Predicate(url, Op.CONTAINS, ("remotepc.com",))
    assert drop_implied([contains, has]) == [has]
    assert drop_implied([contains]) == [contains]
    other = Predicate(url, Op.CONTAINS, ("remotepc",))  # weaker, but not the superset: kept
    assert drop_implied([other, has]) == [other, has]
    assert drop_implied([contains, contains]) == [contains, contains]  # neither implies through a superset
