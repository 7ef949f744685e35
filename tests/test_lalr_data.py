"""The Sigma condition parser run from plain data (`rmmc/grammar/lalr_data.py`) against Lark
itself, on the same grammar file: the same tree for every condition Lark parses, and None (so
the caller asks Lark, whose error is reported) for every one it rejects."""

from __future__ import annotations

import marshal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rmmc.compiler.sigma import condition as cond
from rmmc.grammar import load_automaton, load_parser
from rmmc.grammar.lalr_data import Automaton, Leaf, Node, export

OPTIONS = {"parser": "lalr", "lexer": "contextual", "propagate_positions": False}
SIGMA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "sigma" / "rules"


@pytest.fixture(scope="module")
def lark_parser():
    return load_parser("sigma_condition.lark", **OPTIONS)


@pytest.fixture(scope="module")
def automaton(lark_parser):
    data = export(lark_parser)
    assert data is not None
    return Automaton(marshal.loads(marshal.dumps(data)))  # as the cache keeps it


def _shape(tree):
    """A tree as nested tuples, Lark's or the automaton's alike."""
    if isinstance(tree, str):
        return ("token", tree.type, str(tree), tree.start_pos)
    return (tree.data, tuple(_shape(c) for c in tree.children))


def _lark(lark_parser, text):
    from lark.exceptions import LarkError

    try:
        return lark_parser.parse(text)
    except LarkError:
        return None


def _agree(lark_parser, automaton, text) -> bool:
    """True when the automaton built a tree (the fast path was taken)."""
    expected = _lark(lark_parser, text)
    got = automaton.run(text)
    if expected is None:
        assert got is None, (text, got)
        return False
    assert got is not None, f"the automaton gave up on a condition Lark parses: {text!r}"
    assert _shape(got) == _shape(expected), text
    return True


HAND = ["selection", "selection and not filter", "1 of selection_* and not 1 of filter_*",
        "all of them", "(a or b) and not (c or d)", "not not a", "ALL OF them", "any of sel*",
        "a and b or c and d", "1 of them and not filter_main_*", "  sel  ", "a-b.c and x_*_y",
        "and", "them",  # names, where the contextual lexer expects no keyword
        # rejected by Lark: the automaton must give up on each
        "", "a and", "(a", "a)", "1 of", "not", "a b", "a & b", "1 of (a)"]


def test_hand_written_conditions_parse_alike(lark_parser, automaton):
    taken = [text for text in HAND if _agree(lark_parser, automaton, text)]
    assert len(taken) == 14  # every valid one on the fast path


def test_every_sigmahq_condition_parses_alike(lark_parser, automaton):
    if not SIGMA.is_dir():
        pytest.skip("../shared/corpus/sigma is absent")
    conditions = set()
    for path in SIGMA.rglob("*.yml"):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        for doc in docs:
            found = (doc or {}).get("detection", {}) if isinstance(doc, dict) else {}
            value = found.get("condition") if isinstance(found, dict) else None
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    conditions.add(item)
    assert len(conditions) > 200  # distinct condition texts
    taken = sum(_agree(lark_parser, automaton, text) for text in sorted(conditions))
    assert taken == len(conditions)  # SigmaHQ's conditions all parse, all on the fast path


WORDS = st.sampled_from(["and", "or", "not", "1", "all", "any", "of", "them", "(", ")", "sel",
                         "filter_*", "a-b", "x.y", "AND", "Not", " ", "  ", "\t", "|", "1of", "x1"])


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=12).map(" ".join))
def test_generated_conditions_parse_alike(lark_parser, automaton, text):
    _agree(lark_parser, automaton, text)


def test_parse_condition_gives_the_same_model_and_errors_either_way(monkeypatch):
    texts = ["sel and not 1 of filter_*", "all of them or (a and b)"]
    fast = [cond.parse_condition.__wrapped__(t) for t in texts]
    monkeypatch.setattr(cond, "_automaton", lambda: None)
    assert [cond.parse_condition.__wrapped__(t) for t in texts] == fast
    for bad in ("a and", "a & b"):
        with pytest.raises(cond.ConditionError) as lark_error:
            cond.parse_condition.__wrapped__(bad)
        monkeypatch.undo()
        with pytest.raises(cond.ConditionError) as fast_error:
            cond.parse_condition.__wrapped__(bad)
        assert (str(fast_error.value), fast_error.value.column) == (str(lark_error.value), lark_error.value.column)
        monkeypatch.setattr(cond, "_automaton", lambda: None)


def test_depth_limit_holds_on_the_fast_path():
    deep = "not " * (cond.MAX_DEPTH + 5) + "sel"
    with pytest.raises(cond.ConditionError, match="nested too deeply"):
        cond.parse_condition.__wrapped__(deep)


def test_the_automaton_is_kept_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = load_automaton("sigma_condition.lark", **OPTIONS)
    (kept,) = (tmp_path / "rmmc").glob("sigma_condition-lalr-*.marshal")
    again = load_automaton("sigma_condition.lark", **OPTIONS)
    assert again.data == built.data
    kept.write_bytes(b"damaged")
    assert load_automaton("sigma_condition.lark", **OPTIONS).data == built.data  # rebuilt


def test_leaves_and_nodes_read_like_larks():
    leaf = Leaf("sel", "IDENT", 4)
    assert leaf == "sel" and leaf.type == "IDENT" and leaf.start_pos == 4
    assert Node("negation", [leaf]).children == ["sel"]
