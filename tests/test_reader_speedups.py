"""The Sigma reader's shortcuts, each against what it stands in for: `drop_implied`'s early
answer for predicates on distinct subjects, and its skipping of comparisons between predicates
on different subjects (`_may_imply`), against its full comparison (generated conjuncts,
and every SigmaHQ selection as the reader builds it), and the remembered tag meanings,
logsource routes (and sources), detection keys, fields, modified values and plain-scalar values against computing them afresh (every SigmaHQ rule
read with and without them, the whole rule and its diagnostics compared)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmmc.compiler import ir, prefilter
from rmmc.compiler.diagnostics import Span
from rmmc.compiler.sigma import predicates, reader, yaml_tree
from rmmc.compiler.sigma import values as values_mod

_FIELDS = [ir.Field("A", "string"), ir.Field("B", "string"), ir.Field("A", "long")]
_OPS = [ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.ENDSWITH, ir.Op.REGEX, ir.Op.TERM,
        ir.Op.EXISTS]
_TEXTS = st.one_of(st.sampled_from(["a", "A", "ab", "aB", "k", "\u212a", "x*", "\u0130", ""]),
                   st.text(alphabet=st.sampled_from(list("aAkK\u212a*?\\ .-_\u00e9\u0130\u00df1")), max_size=4))


@st.composite
def _predicates(draw):
    op = draw(st.sampled_from(_OPS))
    values = () if op is ir.Op.EXISTS else tuple(draw(st.lists(_TEXTS, min_size=1, max_size=3)))
    return ir.Predicate(draw(st.sampled_from(_FIELDS)), op, values, draw(st.booleans()) and len(values) > 1,
                        draw(st.booleans()), draw(st.booleans()))


def _full(conjuncts, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(prefilter, "_distinct_predicates", lambda c: False)
        patch.setattr(prefilter, "_may_imply", lambda other, own: True)
        patch.setattr(prefilter, "_needles_may_match", lambda other, own: True)
        return prefilter.drop_implied(conjuncts)


_CONJUNCTS = st.lists(st.one_of(_predicates(), _predicates(),
                                 st.builds(lambda a, b: ir.And((a, b)), _predicates(), _predicates())),
                       min_size=2, max_size=4)


@settings(max_examples=600, deadline=None)
@given(_CONJUNCTS)
def test_drop_implied_shortcut_drops_what_the_full_comparison_drops(conjuncts):
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert prefilter.drop_implied(conjuncts) == _full(conjuncts, monkeypatch)
        if prefilter._distinct_predicates(conjuncts):
            assert _full(conjuncts, monkeypatch) == conjuncts


_NESTED = st.recursive(_predicates(), lambda inner: st.one_of(
    st.builds(lambda a, b: ir.And((a, b)), inner, inner), st.builds(lambda a, b: ir.Or((a, b)), inner, inner),
    st.builds(ir.Not, inner)), max_leaves=4)


@settings(max_examples=1500, deadline=None)
@given(_predicates(), _NESTED)
def test_needles_may_match_whenever_the_supersets_are_equal(own, other):
    """`_needles_may_match` is a necessary condition: wherever `own` is its own superset and
    `other`'s superset equals it, it says they may match (predicates and And / Or / Not trees
    of them, needles with case twins, the Kelvin sign, wildcards and non-ASCII letters)."""
    if prefilter.is_own_superset(own) and prefilter.superset(other) == prefilter.superset(own):
        assert prefilter._needles_may_match(other, own)


def test_needles_may_match_on_a_grid():
    """Every pair of a grid (one subject; needles whole, cut by a wildcard, case twins, a
    regex; nested in Or / Not) against the supersets' comparison, with both answers seen."""
    field = ir.Field("A", "string")
    leaves = [ir.Predicate(field, op, values, all_values, cased, False)
              for op in (ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.TERM, ir.Op.REGEX)
              for values in (("ab",), ("AB",), ("xab*",), ("ab", "cd"), ("\u212aa",), ("ka", "KA"))
              for all_values in ((False, True) if len(values) > 1 else (False,)) for cased in (False, True)]
    grid = leaves + [ir.Or((p, q)) for p in leaves[::7] for q in leaves[::5]] + [ir.Not(p) for p in leaves]
    seen = set()
    for own in leaves:
        if not prefilter.is_own_superset(own):
            continue
        for other in grid:
            equal = prefilter.superset(other) == prefilter.superset(own)
            may = prefilter._needles_may_match(other, own)
            assert may or not equal, (own, other)
            seen.add((equal, may))
    assert seen >= {(True, True), (False, False)}


def test_metadata_is_built_in_its_field_order():
    """`_StreamReader.metadata` passes `ir.Metadata`'s fields by position, and the predicate
    builders of `predicates` `ir.Predicate`'s: in these orders."""
    import dataclasses

    assert [f.name for f in dataclasses.fields(ir.Predicate)] == [
        "field", "op", "values", "all_values", "case_sensitive", "negated", "span"]

    assert [f.name for f in dataclasses.fields(ir.Metadata)] == [
        "id", "title", "description", "author", "references", "tactics", "techniques", "level",
        "status", "date", "modified", "false_positives", "source_path", "source_span"]
    rules, _ = reader.read_sigma_text(
        "title: T\nid: X\nstatus: test\ndescription: D\nauthor: A\ndate: 2024-01-02\nmodified: 2024-02-03\n"
        "references: [r]\ntags: [attack.execution, attack.t1059]\nlevel: HIGH\nfalsepositives: [f]\n"
        "logsource: {category: process_creation, product: windows}\n"
        "detection: {s: {Image: a}, condition: s}\n", "p.yml")
    meta = rules[0].rule.metadata
    assert (meta.id, meta.title, meta.description, meta.author, meta.references, meta.tactics,
            meta.techniques, meta.level, meta.status, meta.date, meta.modified, meta.false_positives,
            meta.source_path) == ("X", "T", "D", "A", ("r",), ("Execution",), ("T1059",), "high", "test",
                                  "2024-01-02", "2024-02-03", ("f",), "p.yml")
    assert meta.source_span is not None


@pytest.mark.parametrize("value", [None, "a", 3, ["a", "b"], ["a", 3, None, 1.5, True], [], [["x"]], [{"k": 1}]])
def test_strs_and_texts_give_what_str_gives(value):
    """`_strs` (a rule's references) keeps texts as they are and `str`s the rest, as
    `tuple(map(str, ...))` did; `_texts` likewise with nulls left out."""
    items = reader._items(value)
    assert reader._strs(value) == tuple(map(str, items))
    assert all(type(x) is str for x in reader._strs(value))
    assert reader._texts(value) == tuple(str(x) for x in items if x is not None)


def test_no_condition_is_false():
    """The reader tells a part it could not read (None) from a condition by `all(parts)`:
    right only while no IR node can be false."""
    import dataclasses

    nodes = [v for v in vars(ir).values() if isinstance(v, type) and dataclasses.is_dataclass(v)]
    assert ir.Predicate in nodes and ir.And in nodes and ir.Const in nodes
    for node in nodes:
        assert not hasattr(node, "__bool__") and not hasattr(node, "__len__"), node
    assert all([ir.Const(False), ir.And(()), ir.Or(()), ir.Predicate(ir.Field("A"), ir.Op.EXISTS)])


def test_drop_implied_shortcut_on_every_pair_of_a_grid():
    """Every pair of predicates on one subject from a grid of operators, needles (whole,
    shortened by a wildcard or a backslash, a case twin, a term regex) and flags, against the
    full comparison: the pairs where one implies the other (some of each operator) are few
    among generated conjuncts."""
    field = ir.Field("A", "string")
    grid = [ir.Predicate(field, op, values, False, cased, negated)
            for op in _OPS if op is not ir.Op.EXISTS
            for values in (("ab",), ("AB",), ("x\\ab",), ("ab*",), ("ab", "cd"), ("(^|[^0-9A-Za-z])ab",))
            for cased in (False, True) for negated in (False, True)]
    dropped = 0
    with pytest.MonkeyPatch.context() as monkeypatch:
        for p in grid:
            for q in grid:
                kept = prefilter.drop_implied([p, q])
                assert kept == _full([p, q], monkeypatch)
                dropped += len(kept) < 2
    assert dropped > 20  # (the grid holds implied pairs of every plain operator)


def test_drop_implied_still_drops_on_a_shared_subject():
    """The shortcut leaves the case it is for alone: `X|contains` beside `X|re` reads back as
    the regex alone (the pair rmmc's Sigma backend writes for an index)."""
    field = ir.Field("A", "string")
    index = ir.Predicate(field, ir.Op.CONTAINS, ("abc",))
    exact = ir.Predicate(field, ir.Op.REGEX, ("abc",), case_sensitive=True)
    assert prefilter.drop_implied([index, exact]) == [exact]
    other = ir.Predicate(ir.Field("B", "string"), ir.Op.REGEX, ("abc",), case_sensitive=True)
    assert prefilter.drop_implied([index, other]) == [index, other]
    assert prefilter.drop_implied([index, other, exact]) == [other, exact]  # (other: no rival)


def _read_all(files: list[Path], monkeypatch, shortcuts: bool) -> list:
    with monkeypatch.context() as patch:
        if not shortcuts:
            patch.setattr(prefilter, "_distinct_predicates", lambda c: False)
            patch.setattr(prefilter, "_may_imply", lambda other, own: True)
            patch.setattr(prefilter, "_needles_may_match", lambda other, own: True)
            patch.setattr(reader, "_TAG_MEANINGS", _Forgetful())
            patch.setattr(reader, "_ROUTES", _Forgetful())
            patch.setattr(reader, "_KEYS", _Forgetful())
            patch.setattr(values_mod, "_MODIFIED", _Forgetful())
            patch.setattr(predicates, "_FIELDS", _Forgetful())
            patch.setattr(yaml_tree, "_resolved", _fresh_resolver())
            patch.setattr(reader, "plain_item", lambda *args: None)
        out = []
        for path in files:
            rules, problems = reader.read_sigma_text(path.read_text(encoding="utf-8"), str(path))
            out.append(([(r.rule, _spans(r.rule), r.diagnostics, r.title, r.metadata, r.kind)
                         for r in rules], problems))
        return out


def _spans(rule) -> list:
    """Every predicate's span in the rule's detection (`Predicate` equality leaves spans out)."""
    out = []

    def walk(c) -> None:
        if isinstance(c, ir.Predicate):
            out.append(c.span)
        for child in getattr(c, "operands", ()) or ((c.operand,) if isinstance(c, ir.Not) else ()):
            walk(child)

    if rule is not None:
        walk(rule.condition)
    return out


class _Forgetful(dict):
    """A cache that never holds anything."""

    def __setitem__(self, key, value) -> None:
        pass


def _fresh_resolver():
    """The plain-scalar resolver remembering nothing (`known` is emptied after each call)."""
    resolved = yaml_tree._resolve_plain()

    def forgetful(text):
        value = resolved(text)
        resolved.known.clear()
        return value

    forgetful.known = resolved.known
    return forgetful


def test_reader_shortcuts_read_every_sigmahq_rule_as_without_them(shared_dir: Path, monkeypatch):
    rules = shared_dir / "corpus" / "sigma" / "rules"
    if not rules.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    files = sorted(rules.rglob("*.yml"))
    assert len(files) > 2000
    reader._TAG_MEANINGS.clear()
    reader._ROUTES.clear()
    reader._KEYS.clear()
    values_mod._MODIFIED.clear()
    assert _read_all(files, monkeypatch, True) == _read_all(files, monkeypatch, False)


class _Raw:
    def __init__(self, value):
        self.value = value


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, 1, 4688, True, False, 1.5, "7", None])),
                min_size=1, max_size=4),
       st.sampled_from([None, "string", "long", "int", "real", "bool", "datetime", "dynamic"]),
       st.booleans())
def test_plain_numbers_read_as_modifiers_and_predicate_read_them(raws, column_type, link_all):
    """`plain_item` on whole numbers (no modifier) gives the one predicate the general path
    (`apply_modifiers`, `predicate`, `_link`) gives, or declines."""
    span = Span(3, 7, 1, 4)
    fast = predicates.plain_item([_Raw(r) for r in raws], (), "F", column_type, link_all, span)
    if any(type(r) is not int for r in raws):
        assert fast is None or all(type(r) is str for r in raws)
        return
    assert fast is not None
    per_value = [[predicates.predicate("F", column_type, v, span) for v in values_mod.apply_modifiers(r, [])]
                 for r in raws]
    slow = reader._link(per_value, link_all)
    assert fast == slow
    assert [type(v) for v in fast.values] == [type(v) for v in slow.values] and fast.span == slow.span


def test_remembered_keys_still_warn_and_refuse_at_each_item():
    """A key read before (`_KEYS`) still gives its field's warning at each item's own place,
    and a key that cannot be read is refused every time (never remembered)."""
    text = """title: t
logsource: {product: windows, category: process_creation}
detection:
  a:
    NoSuchField|contains: x
  b:
    NoSuchField|contains: y
  c:
    Image|bogus: z
  condition: a and b
"""
    def read():
        rules, problems = reader.read_sigma_text(text, "t.yml")
        return [(d.code, d.span) for d in rules[0].diagnostics], rules[0].rule

    reader._KEYS.clear()
    first, rule = read()
    again, rule_again = read()
    assert first == again and rule == rule_again
    assert [c for c, _ in first] == ["sigma-field", "sigma-field"]
    assert first[0][1].line == 5 and first[1][1].line == 7
    assert not any(key[1].startswith("Image|bogus") for key in reader._KEYS)
    bad = text.replace("condition: a and b", "condition: a and c")
    for _ in range(2):
        rules, _ = reader.read_sigma_text(bad, "t.yml")
        assert rules[0].rule is None
        assert [d.code for d in rules[0].diagnostics] == ["sigma-field", "sigma-modifier"]


_NAME_CHARS = st.sampled_from(list("ab_*.\n\\") + ["sel", "filter_"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(_NAME_CHARS, max_size=6).map("".join), st.lists(_NAME_CHARS, max_size=8).map("".join))
def test_selection_patterns_match_as_their_regex(pattern, name):
    """`names_for`'s string search gives each name the regex's answer (`*` stops at a line
    break, `.` and `\\` are themselves)."""
    from rmmc.compiler.sigma.condition import glob_matches, names_for, pattern_regex

    if "*" in pattern:
        assert glob_matches(pattern.split("*"), [name]) == ([name] if pattern_regex(pattern).match(name) else [])
    expected = [n for n in [name, "x", pattern] if "*" in pattern and pattern_regex(pattern).match(n)
                or "*" not in pattern and n == pattern]
    if pattern != "them":
        assert names_for(pattern, [name, "x", pattern]) == expected

