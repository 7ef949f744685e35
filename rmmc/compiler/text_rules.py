"""Three of the evaluator's text rules, in a module of their own: which characters make terms,
the one non-ASCII character that folds to ASCII, and RE2's `$` for Python's `re`.

They are the reference evaluator's (`rmmc.compiler.evaluator` re-exports them and its module
docstring says what they mean), kept here so that a backend or reader that writes them into its
output (Splunk's SPL, Sigma's reader) does not import the whole evaluator at start-up: a
translation never evaluates a rule.
"""

from __future__ import annotations

import re


def fold_to_ascii(text: str) -> str:
    """`text` with each non-ASCII character whose fold is an ASCII one replaced by it (KELVIN
    SIGN U+212A is `k`; it is the only one).  Case-insensitively the two texts are equal, so
    a backend writes a case-insensitive needle this way: its term edges are then the ones the
    evaluator sees (`has 'K'` is `has 'k'`), whatever the target's own case folding."""
    if text.isascii():
        return text
    return text.translate(_ASCII_FOLDS)


_ASCII_FOLDS = str.maketrans({"\u212a": "k"})
"""Every non-ASCII character whose `fold` is ASCII, to it (tests/test_batch_speedups.py checks
every code point): one `str.translate` instead of a fold per character."""


def is_term_char(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


_LEADING_FLAGS = re.compile(r"\(\?([a-zA-Z]+)\)")


def re2_dollar(pattern: str, end: str = "\\Z") -> str:
    """The pattern with RE2's `$` for Python's `re`: outside multi-line mode RE2 reads `$` as
    the very end of the text, Python also before a final line break, so each unescaped `$`
    outside a character class becomes `\\Z` (Python's very end; `end` names another engine's,
    e.g. PCRE's `\\z`).  A pattern that turns on multi-line mode in its leading flags (`(?m)`,
    `(?sm)` ...) keeps its `$`, which both read as the end of a line."""
    if "$" not in pattern:
        return pattern
    at = 0
    while (m := _LEADING_FLAGS.match(pattern, at)) is not None:
        if "m" in m.group(1):
            return pattern
        at = m.end()
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if pattern.startswith("^", i):  # `[^]...]`: a leading `]` is a literal
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append("]")
                i += 1
            continue
        elif ch == "$":
            out.append(end)
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)
