"""Widening only ever adds matches: checked against the reference evaluator."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rmmc.backends.widen import widen
from rmmc.compiler.evaluator import evaluate
from rmmc.compiler.ir import And, Const, Field, InSubquery, Not, Op, Or, Predicate

A = Predicate(Field("a"), Op.EQUALS, ("1",))
B = Predicate(Field("b"), Op.EQUALS, ("1",))
SUB = InSubquery(Field("h"), "T | distinct h", "T")


def is_sub(node):
    return isinstance(node, InSubquery)


def test_positive_and_negative_places():
    assert widen(And((A, SUB)), is_sub) == (A, [SUB])
    assert widen(And((A, Not(SUB))), is_sub) == (A, [SUB])
    assert widen(Or((A, SUB)), is_sub) == (Const(True), [SUB])
    # not(a and s) holds whenever s fails: the only weaker condition without s is "true".
    assert widen(Not(And((A, SUB))), is_sub) == (Const(True), [SUB])
    assert widen(Not(Or((A, SUB))), is_sub) == (Not(A), [SUB])


conditions = st.recursive(
    st.sampled_from([A, B, SUB]),
    lambda inner: st.one_of(st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
                            st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
                            st.builds(Not, inner)),
    max_leaves=8)
events = st.fixed_dictionaries({"a": st.sampled_from(["1", "0"]), "b": st.sampled_from(["1", "0"]),
                                "h": st.sampled_from(["x", "y"])})


@given(conditions, events, st.sets(st.sampled_from(["x", "y"])))
def test_widened_condition_matches_a_superset(condition, event, sub_values):
    widened, _ = widen(condition, is_sub)
    original = evaluate(condition, event, {SUB.query: sub_values}) is True
    if original:
        assert evaluate(widened, event) is True
