"""KQL's case-insensitive term test (`has`) of one needle as a PCRE, exact by construction.

`term_pcre(needle)` matches a text exactly when the reference evaluator's
`term_match(fold(text), fold(needle))` holds (`rmmc.compiler.evaluator`: a term's edges are
checked only where the needle's end is a term character; `fold` lowers each character one for
one).  It depends on no case folding of the regex engine: the pattern sets no `(?i)`; each
needle character is written as every character whose fold is the needle character's fold (`k`
as `k`, `K` and KELVIN SIGN), and a term edge is a look-around that refuses every character
whose fold is a term character (the ASCII letters and digits, and KELVIN SIGN).  Characters
are written the same way in PCRE's UTF mode and in its byte mode (a non-ASCII character as
itself, alternatives as `(?:a|b)`, never inside a `[...]` class), every ASCII character but a
letter, digit or space backslash-escaped (always literal in PCRE), control characters as
`\\x{hh}`.

Splunk translations of `has_any` against an external table read these patterns from the
feed's lookup (`rmmc lookups fetch` computes them here, so no feed value is escaped at search
time); the knowledge of what a term is stays in the evaluator, used from here.
"""

from __future__ import annotations

import sys
from functools import lru_cache

from rmmc.compiler.evaluator import is_term_char
from rmmc.compiler.functions import fold


@lru_cache(maxsize=1)
def _unfolds() -> dict[str, tuple[str, ...]]:
    """Each folded character -> the other characters that fold to it (computed once, over every
    code point: the definition of `fold` is the only source)."""
    found: dict[str, list[str]] = {}
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        ch = chr(code)
        folded = fold(ch)
        if folded != ch:
            found.setdefault(folded, []).append(ch)
    return {k: tuple(v) for k, v in found.items()}


def same_fold(folded: str) -> tuple[str, ...]:
    """Every character whose fold is `folded` (a character already folded), itself first when
    it is its own fold."""
    own = (folded,) if fold(folded) == folded else ()
    return own + tuple(ch for ch in _unfolds().get(folded, ()) if ch != folded)


@lru_cache(maxsize=1)
def _term_edge_chars() -> tuple[str, ...]:
    """The non-ASCII characters that read as term characters once folded (KELVIN SIGN)."""
    return tuple(ch for folded, chars in _unfolds().items() if len(folded) == 1 and is_term_char(folded)
                 for ch in chars if not ch.isascii())


def _char(ch: str) -> str:
    code = ord(ch)
    if code < 32 or code == 127:
        return "\\x{%02x}" % code
    if code < 128 and not (ch.isalnum() or ch == " "):
        return "\\" + ch
    return ch


def _position(folded: str) -> str:
    """One needle character (folded) as the characters of the text it stands for."""
    chars = same_fold(folded)
    if not chars:
        return "(?!)"  # no character folds to it: the needle never occurs
    if len(chars) == 1:
        return _char(chars[0])
    if all(c.isascii() and c.isalpha() for c in chars):
        return "[" + "".join(chars) + "]"
    return "(?:" + "|".join(_char(c) for c in chars) + ")"


def term_pcre(needle: str) -> str:
    """The case-insensitive KQL term test of `needle` as a PCRE (see the module docstring),
    never empty (an empty needle is in every text: `(?:)`)."""
    folded = fold(needle)
    edge = "".join(f"(?<!{_char(c)})" for c in _term_edge_chars())
    head = f"(?<![0-9A-Za-z]){edge}" if folded and is_term_char(folded[0]) else ""
    tail = "(?![0-9A-Za-z])" + edge.replace("(?<!", "(?!") if folded and is_term_char(folded[-1]) else ""
    return "(?:" + head + "".join(_position(c) for c in folded) + tail + ")"
