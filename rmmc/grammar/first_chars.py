"""Which characters a terminal's regular expression can start a match with.

A lexer state of Lark's tries its terminals as one alternation, in a fixed order, and takes
the first that matches.  Any terminal that cannot start with the character at hand can be
left out of that alternation without changing what it finds, so the fast loop
(`rmmc.grammar.lalr_driver`) matches, per state and per first character, an alternation of
only the terminals that can start with it: the same terminal, the same text, fewer
alternatives tried.  The analysis below reads the expression as `re` parses it and answers
conservatively: anything it does not follow (flags, back-references, a class it cannot
enumerate) counts as "any character".  Only ASCII characters are told apart; for any other
character the caller uses the whole alternation.
"""

from __future__ import annotations

import re
from functools import lru_cache

ANY = None  # "any character may start a match"
ASCII = [chr(c) for c in range(128)]


@lru_cache(maxsize=None)
def _category(name: str) -> frozenset[str]:
    """The ASCII characters of `\\d`, `\\w`, `\\s` and their negations (as `re` has them for
    str patterns), by asking `re` itself."""
    escapes = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_WORD": r"\w",
               "CATEGORY_NOT_WORD": r"\W", "CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S",
               "CATEGORY_LINEBREAK": r"\n", "CATEGORY_NOT_LINEBREAK": r"[^\n]"}
    if name not in escapes:
        return frozenset(ASCII)
    pattern = re.compile(escapes[name])
    return frozenset(c for c in ASCII if pattern.fullmatch(c))


def _in_set(items) -> frozenset[str] | None:
    """The ASCII characters a character class (`IN`) takes."""
    from re._constants import CATEGORY, LITERAL, NEGATE, RANGE

    chosen: set[str] = set()
    negate = False
    for op, arg in items:
        if op is NEGATE:
            negate = True
        elif op is LITERAL:
            if arg < 128:
                chosen.add(chr(arg))
        elif op is RANGE:
            low, high = arg
            chosen.update(chr(c) for c in range(low, min(high, 127) + 1))
        elif op is CATEGORY:
            chosen.update(_category(getattr(arg, "name", str(arg))))
        else:
            return ANY
    return frozenset(c for c in ASCII if c not in chosen) if negate else frozenset(chosen)


def _sequence(items) -> tuple[frozenset[str] | None, bool]:
    """(first characters, can match empty) of a sequence of `re` parser items."""
    found: set[str] = set()
    for op, arg in items:
        first, empty = _item(op, arg)
        if first is ANY:
            return ANY, False
        found |= first
        if not empty:
            return frozenset(found), False
    return frozenset(found), True


def _item(op, arg) -> tuple[frozenset[str] | None, bool]:
    from re import _constants as c

    if op is c.LITERAL:
        return (frozenset({chr(arg)}) if arg < 128 else frozenset()), False
    if op is c.IN:
        return _in_set(arg), False
    if op is c.BRANCH:
        found: set[str] = set()
        empty = False
        for branch in arg[1]:
            first, branch_empty = _sequence(branch.data)
            if first is ANY:
                return ANY, False
            found |= first
            empty = empty or branch_empty
        return frozenset(found), empty
    if op is c.SUBPATTERN:
        group, add_flags, del_flags, pattern = arg
        if add_flags or del_flags:
            return ANY, False
        return _sequence(pattern.data)
    if op is c.ATOMIC_GROUP:
        return _sequence(arg.data)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        low, high, pattern = arg
        if high == 0:
            return frozenset(), True
        first, empty = _sequence(pattern.data)
        return first, empty or low == 0
    if op in (c.ASSERT, c.ASSERT_NOT, c.AT):  # zero-width: leaving it out only widens
        return frozenset(), True
    return ANY, False  # NOT_LITERAL, ANY, GROUPREF, ...: any character


@lru_cache(maxsize=None)  # a terminal stands in many lexer states
def first_chars(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """The ASCII characters a match of `pattern` can start with (a superset), or None
    (`ANY`) when any character may, or the analysis cannot tell."""
    from re import _parser

    if flags & ~(re.UNICODE | re.MULTILINE | re.DOTALL | re.VERBOSE):
        return ANY  # IGNORECASE and the like: not followed
    try:
        parsed = _parser.parse(pattern, flags)
    except Exception:
        return ANY
    if parsed.state.flags & ~(re.UNICODE | re.MULTILINE | re.DOTALL | re.VERBOSE):
        return ANY  # inline flags such as (?i) for the whole pattern
    first, empty = _sequence(parsed.data)
    return ANY if empty else first
