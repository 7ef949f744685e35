"""How rmmc writes values into Sigma: plain-string escaping, the term regex, timespans.

Plain values.  A Sigma plain value treats `*` and `?` as wildcards and `\\` as their escape,
so every literal `*`, `?` and `\\` is written escaped (`\\*`, `\\?`, `\\\\`) and pySigma reads
back exactly the literal string.  Regex values (`|re`) are passed through unescaped.

The term regex.  Sigma has no term match (KQL `has`), so rmmc writes it as ONE regex form,
always the same, so that a Sigma reader can recognise it and lift it back to a term match:

    <Field>|re|i: '(^|[^0-9A-Za-z])remotepc\\.com($|[^0-9A-Za-z])'

* the needle is escaped with `escape_regex` (a backslash before each of `\\.^$|?*+()[]{}`,
  every other character literal);
* the left boundary `(^|[^0-9A-Za-z])` is written only when the needle starts with an ASCII
  letter or digit (KQL's term characters) and the operator checks the start (`has`,
  `hasprefix`); the right boundary `($|[^0-9A-Za-z])` likewise at the end (`has`,
  `hassuffix`);
* case-insensitive matching is the `|i` modifier (`|re|i`), never an inline `(?i)`: every
  pySigma backend turns `|i` into its engine's own form (the sqlite backend prepends `(?i)`,
  the Elasticsearch backend sets `case_insensitive`), while an inline group is not portable;
  `|re` alone is the cased form.

Known limit of that form: under `|i` a regex engine folds case with Unicode simple case
folding, so `[^0-9A-Za-z]` does not match the few non-ASCII characters that fold to an ASCII
letter (KELVIN SIGN U+212A, LATIN SMALL LETTER LONG S U+017F, dotless i U+0131, dotted I
U+0130), which KQL treats as term separators.
"""

from __future__ import annotations

import re
from datetime import timedelta

from rmmc.compiler.evaluator import is_term_char
from rmmc.compiler.ir import Op
# the term regex's parts, shared with the Sigma reader, which lifts the form back to a term test
from rmmc.compiler.sigma.values import TERM_BOUNDARY_LEFT, TERM_BOUNDARY_RIGHT, escape_regex

_PLAIN_SPECIAL = frozenset("\\*?")


def escape_plain(value: str) -> str:
    """A literal string as a Sigma plain value: `\\`, `*` and `?` escaped with a backslash."""
    return "".join("\\" + ch if ch in _PLAIN_SPECIAL else ch for ch in value)


def term_boundaries(op: Op, needle: str) -> tuple[bool, bool]:
    """Which sides of the needle need a term boundary (left, right) for a TERM* operator."""
    left = op in (Op.TERM, Op.TERM_PREFIX) and bool(needle) and is_term_char(needle[0])
    right = op in (Op.TERM, Op.TERM_SUFFIX) and bool(needle) and is_term_char(needle[-1])
    return left, right


def term_regex(op: Op, needle: str) -> str:
    """The term regex (module docstring) for `needle` under a TERM* operator."""
    left, right = term_boundaries(op, needle)
    return ((TERM_BOUNDARY_LEFT if left else "") + escape_regex(needle)
            + (TERM_BOUNDARY_RIGHT if right else ""))


# ------------------------------------------------------------------ regex portability

_PORTABILITY_CHECKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<!\\)(?:\\\\)*\\Z"),
     "'\\Z' is not RE2 syntax (PCRE: end or before a final newline; Python: very end)"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[wWdDsSbB]"),
     "'\\w', '\\d', '\\s', '\\b' are ASCII-only in RE2 but Unicode-aware in Python and PCRE2 with UCP"),
    (re.compile(r"\[\[:"), "POSIX classes ('[[:alpha:]]') are RE2/PCRE syntax that Python reads differently"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[pP]"), "'\\p{..}' classes are not supported by every Sigma backend's engine"),
)


def regex_portability(pattern: str) -> list[str]:
    """Constructs of a KQL (RE2) regex that other engines read differently (cheap checks only)."""
    return [message for finder, message in _PORTABILITY_CHECKS if finder.search(pattern)]


# ------------------------------------------------------------------ timespans

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def sigma_timespan(window: timedelta) -> tuple[str, bool]:
    """A Sigma correlation timespan (`5d`, `90m`) for a window, and whether it is exact
    (a window that is not a whole number of seconds is rounded up to one)."""
    micro = window // timedelta(microseconds=1)
    seconds, rest = divmod(micro, 1_000_000)
    exact = rest == 0
    if rest:
        seconds += 1
    seconds = max(seconds, 1)
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}", exact and micro > 0
    raise AssertionError("unreachable: seconds divide by 1")
