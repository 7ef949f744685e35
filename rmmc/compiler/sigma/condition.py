"""Sigma detection conditions: parsed with `rmmc/grammar/sigma_condition.lark` into a small
tree, then resolved against a rule's selection names.

`1 of x*` is any of the selections whose names match the pattern (`*` only), `all of x*`
all of them; `them` is every selection whose name does not start with `_` (pySigma's rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Union


class ConditionError(Exception):
    """A condition that does not parse or names no selection; `column` is 0-based in the
    condition text."""

    def __init__(self, message: str, column: int = 0):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Ref:
    """A selection named in a condition (at `column`)."""

    name: str
    column: int


@dataclass(frozen=True)
class Quantified:
    """`1 of` / `all of` the selections a pattern (or `them`) names."""

    quantity: str  # "1" (any) or "all"
    pattern: str   # a name pattern, or "them"
    column: int


@dataclass(frozen=True)
class CAnd:
    """Every item holds."""

    items: tuple["CExpr", ...]


@dataclass(frozen=True)
class COr:
    """Any item holds."""

    items: tuple["CExpr", ...]


@dataclass(frozen=True)
class CNot:
    """The item does not hold."""

    item: "CExpr"


CExpr = Union[Ref, Quantified, CAnd, COr, CNot]

MAX_DEPTH = 100
"""Conditions nested deeper than this (`not not not ...`, brackets inside brackets) are refused
with a located error: real rules nest less than 10 deep, and every later stage recurses."""


@lru_cache(maxsize=1)
def _parser():
    """Through `rmmc.grammar`'s cache of analysed grammars: building the tables of even this
    small grammar was the largest single cost of translating one Sigma rule cold."""
    from rmmc.grammar import load_parser

    return load_parser("sigma_condition.lark", parser="lalr", lexer="contextual",
                       propagate_positions=False)


@lru_cache(maxsize=1)
def _automaton():
    """The same parser as plain data (`rmmc.grammar.lalr_data`): a condition that parses is
    parsed without importing Lark, a fifth of a cold translation of a Sigma rule."""
    from rmmc.grammar import load_automaton

    return load_automaton("sigma_condition.lark", parser="lalr", lexer="contextual",
                          propagate_positions=False)


@lru_cache(maxsize=4096)
def parse_condition(text: str) -> CExpr:
    """The condition's tree; ConditionError with the column of the problem otherwise."""
    automaton = _automaton()
    tree = automaton.run(text) if automaton is not None else None
    if tree is None:  # Lark itself: its tree, or its error, as always
        tree = _parse_with_lark(text)
    _check_depth(tree)
    return _build(tree)


def _parse_with_lark(text: str):
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    try:
        return _parser().parse(text)
    except UnexpectedToken as exc:
        found = "the end of the condition" if exc.token.type == "$END" else repr(str(exc.token))
        column = len(text) if exc.token.type == "$END" else (exc.column or 1) - 1
        raise ConditionError(f"condition: unexpected {found}", column) from None
    except UnexpectedCharacters as exc:
        raise ConditionError(f"condition: unexpected character {text[exc.pos_in_stream]!r}",
                             exc.pos_in_stream) from None
    except UnexpectedInput as exc:  # pragma: no cover - the two above cover LALR
        raise ConditionError(f"condition: {exc}", 0) from None


def _check_depth(tree) -> None:
    """ConditionError at the first node nested deeper than MAX_DEPTH (without recursing).
    Nodes are Lark's `Tree` / `Token` or `lalr_data`'s `Node` / `Leaf`: a node has children,
    a token is a string."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            continue
        if depth > MAX_DEPTH:
            first = node
            while not isinstance(first, str) and first.children:
                first = first.children[0]
            column = getattr(first, "start_pos", None) or 0
            raise ConditionError(f"condition: nested too deeply (more than {MAX_DEPTH} levels)",
                                 column)
        stack.extend((child, depth + 1) for child in node.children)


def _build(tree) -> CExpr:
    if isinstance(tree, str):  # a token
        return Ref(str(tree), tree.start_pos or 0)
    kind = tree.data
    if kind == "reference":
        token = tree.children[0]
        return Ref(str(token), token.start_pos or 0)
    if kind == "negation":
        return CNot(_build(tree.children[0]))
    if kind == "and_expr":
        return CAnd(tuple(_build(c) for c in tree.children))
    if kind == "or_expr":
        return COr(tuple(_build(c) for c in tree.children))
    if kind == "quantifier":
        quantity, target = tree.children
        q = str(quantity).lower()
        return Quantified("all" if q == "all" else "1", str(target).lower() if target.type == "THEM"
                          else str(target), quantity.start_pos or 0)
    raise ConditionError(f"condition: unexpected {kind}")  # pragma: no cover


def names_for(pattern: str, names: list[str]) -> list[str]:
    """The selection names a `1 of` / `all of` pattern stands for (in rule order)."""
    if pattern == "them":
        return [n for n in names if not n.startswith("_")]
    if "*" not in pattern:
        return [n for n in names if n == pattern]
    return glob_matches(pattern.split("*"), names)


def glob_matches(pieces: list[str], names: list[str]) -> list[str]:
    """The names that match the pattern `"*".join(pieces)` as `pattern_regex` reads it (`*`
    any run of characters but a line break, everything else itself), found by string searches:
    the SigmaHQ rules write a few hundred patterns (`selection_*`, `filter_main_*` ...), and
    compiling each into a regex was most of resolving their conditions.  (One call per
    pattern, not per name.)"""
    first, last = pieces[0], pieces[-1]
    middle = pieces[1:-1]
    out = []
    for name in names:
        if "\n" in name:  # (`*` stops at a line break: the regex decides)
            if pattern_regex("*".join(pieces)).match(name) is not None:
                out.append(name)
            continue
        position, end = len(first), len(name) - len(last)
        if end < position or not name.startswith(first) or not name.endswith(last):
            continue
        for piece in middle:  # each as early as it occurs leaves the most room for the rest
            found = name.find(piece, position, end)
            if found < 0:
                break
            position = found + len(piece)
        else:
            out.append(name)
    return out


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regex a name pattern stands for (`*` is `.*`, anchored at both ends)."""
    return re.compile("".join(".*" if ch == "*" else re.escape(ch) for ch in pattern) + r"\Z")


__all__ = ["CAnd", "CExpr", "CNot", "COr", "ConditionError", "Quantified", "Ref", "names_for",
           "parse_condition"]
