"""The pieces the fast KQL parse is made of, each against what it stands in for: the
first-character analysis against `re` itself, the slot-storing `__init__` against the one
`dataclasses` writes, the per-character lexer dispatch against Lark's whole alternation."""

from __future__ import annotations

import dataclasses
import inspect
import random
import re

import pytest

from rmmc.compiler.kql import ast as A
from rmmc.compiler.kql import parser as kql_parser
from rmmc.compiler.diagnostics import Span
from rmmc.grammar.first_chars import first_chars

PIECES = ["a", "Z", "_", "$", "0", "9", " ", "\t", "\n", "'", '"', "@", "h", "H", "`", "~", "*", "-",
          "+", "!", "=", "<", ">", "(", ")", "[", "]", "{", "}", "/", ".", ",", ";", ":", "#", "%",
          "\\", "|", "é", "in", "has", "true", "True", "mv-expand", "1d", "0x1F", "```", "~~~",
          "datetime(", "//", "and", "or", "kind", "hint.x", "print", "range x from"]


def _samples(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6))) for _ in range(count)]


def test_first_chars_is_a_superset_for_every_kql_terminal():
    """Whatever a terminal matches starts with one of the characters `first_chars` gives."""
    parser, _, _ = kql_parser._lark()
    samples = _samples(4000, 16)
    for terminal in parser.terminals:
        regexp = terminal.pattern.to_regexp()
        first = first_chars(regexp)
        compiled = re.compile(regexp)
        for text in samples:
            found = compiled.match(text)
            if found is not None and found.end() > 0 and first is not None and text[0] < "\x80":
                assert text[0] in first, (terminal.name, text)


@pytest.mark.parametrize("pattern, expected", [
    (r"abc", {"a"}), (r"[hH]?'x'", {"h", "H", "'"}), (r"\d+", set("0123456789")),
    (r"(?!and)[a-c]\w*", {"a", "b", "c"}), (r"a|b|(c|d)", {"a", "b", "c", "d"}),
    (r"(?i:a)", None), (r"x?", None), (r".", None), (r"[^a]", None),
])
def test_first_chars_cases(pattern, expected):
    found = first_chars(pattern)
    if expected is None:
        assert found is None or len(found) == 128  # "any character"
    else:
        assert found == frozenset(expected)


def test_fast_init_matches_the_dataclass_init():
    """Every syntax-tree class and `Span`: the same parameters, the same objects."""
    for cls in [Span, *(v for v in vars(A).values() if isinstance(v, type) and dataclasses.is_dataclass(v))]:
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
        fields = [f for f in dataclasses.fields(cls)]
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert [p.name for p in params] == ([f.name for f in fields if not f.kw_only]
                                            + [f.name for f in fields if f.kw_only])
        for p, f in zip(params, [f for f in fields if not f.kw_only] + [f for f in fields if f.kw_only]):
            assert (p.kind is inspect.Parameter.KEYWORD_ONLY) == f.kw_only
            assert p.default is (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
    span = Span(1, 2, 3, 4)
    node = A.SortKey(A.Name("x", span=span), "asc", span=span)
    assert (node.expr, node.direction, node.nulls, node.span) == (A.Name("x"), "asc", None, span)
    assert dataclasses.replace(node, nulls="first").nulls == "first"
    assert node == A.SortKey(A.Name("x"), "asc") and hash(node) == hash(A.SortKey(A.Name("x"), "asc"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.direction = "desc"  # type: ignore[misc]
    with pytest.raises(TypeError):
        A.Name()  # type: ignore[call-arg]


def test_dispatch_finds_what_the_whole_alternation_finds():
    """Per lexer state and first character, the narrowed alternation gives the same
    terminal and the same text as the state's whole one, on every sample."""
    parser, _, _ = kql_parser._lark()
    driver = kql_parser._driver()
    samples = _samples(1500, 61)
    states = sorted(driver.lexers)[::7]
    for state in states:
        dispatch = driver._scanner(state)[0]
        whole = dispatch.whole if hasattr(dispatch, "whole") else None
        if whole is None:
            continue
        for text in samples:
            a, b = dispatch[text[0]](text, 0, len(text)), whole(text, 0, len(text))
            assert (a and (a.lastgroup, a.group())) == (b and (b.lastgroup, b.group())), (state, text)
