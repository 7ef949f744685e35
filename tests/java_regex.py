"""Java regular expressions (`java.util.regex`) as Python's `re` reads them the same (tests only).

ES|QL's `REPLACE` compiles its regex with `java.util.regex.Pattern` and writes each match with
`Matcher.appendReplacement` (elasticsearch: x-pack/plugin/esql/.../string/Replace.java).
Written from the `Pattern` and `Matcher` Javadoc (Java SE 17), not from rmmc's backend, for
the constructs a query may hold here; anything else raises `SyntaxError` (a construct this
module does not model), so a test cannot pass by reading a pattern wrongly:

* characters: a literal; `\\\\` followed by a non-alphabetic character is that character
  ("Backslashes may be used prior to a non-alphabetic character regardless of whether that
  character is part of an unescaped construct"); `\\t \\n \\r \\f \\a \\e`; `\\xhh`,
  `\\x{h...h}`, `\\uhhhh`; any other backslash before a letter or digit is an error or a
  construct not modelled (back-references, `\\p`, `\\Q`, `\\b` ...);
* `.` any character except a line terminator (`\\n`, `\\r`, U+0085, U+2028, U+2029: no
  UNIX_LINES, no DOTALL); `^` the beginning of the input and `$` its end "but for the final
  terminator, if any" (no MULTILINE); `\\A`, `\\z` (the end), `\\Z` (the end but for the final
  terminator);
* predefined classes: `\\d` `[0-9]`, `\\w` `[a-zA-Z_0-9]`, `\\s` `[ \\t\\n\\x0B\\f\\r]`, and the
  upper-case complements (no UNICODE_CHARACTER_CLASS);
* classes `[...]` / `[^...]` with ranges and escapes (a complement such as `\\S` inside one adds
  its characters: `[\\s\\S]` is any character); a nested class (union) or `&&`
  (intersection) is not modelled;
* groups `(...)`, `(?:...)`, `(?<name>...)`; alternation; greedy and reluctant quantifiers
  `* + ? {n} {n,} {n,m}` (possessive ones are not modelled).

`replace_all(text, pattern, replacement)` is `REPLACE`: every match, left to right, written
as `appendReplacement` reads the replacement (`$g` names group g: "The first number after the
$ is always treated as part of the group reference. Subsequent numbers are incorporated into g
if they would form a legal group reference"; `${name}`; a backslash makes the next character
literal).  A group that took no part in the match, and an empty match given a non-empty
replacement, raise `Undocumented` (the Javadoc does not say what is written).
"""

from __future__ import annotations

import re

TERMINATORS = "\n\r\u0085\u2028\u2029"
_END_BUT_TERMINATOR = "(?=(?:\r\n|[\n\r\u0085\u2028\u2029])?\\Z)"
_PREDEFINED = {"d": "0-9", "w": "a-zA-Z_0-9", "s": " \\t\\n\\x0b\\f\\r"}
_CHARS = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "a": "\x07", "e": "\x1b"}


class Undocumented(AssertionError):
    """The query relies on behaviour the documentation does not give."""


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int, bool]:
    """The escape at `pattern[i]` (the backslash): its Python text, the next index, and
    whether it is one character (which may bound a range)."""
    if i + 1 >= len(pattern):
        raise SyntaxError("a trailing backslash")
    nxt = pattern[i + 1]
    if nxt in _PREDEFINED or (nxt.lower() in _PREDEFINED and nxt.isupper()):
        body = _PREDEFINED[nxt.lower()]
        if in_class:  # a complement inside a class is the union with it (`_class`)
            return ("^" + body if nxt.isupper() else body), i + 2, False
        return (f"[^{body}]" if nxt.isupper() else f"[{body}]"), i + 2, False
    if nxt in _CHARS:
        return re.escape(_CHARS[nxt]), i + 2, True
    if nxt == "x":
        m = re.compile(r"x\{([0-9A-Fa-f]+)\}|x([0-9A-Fa-f]{2})").match(pattern, i + 1)
        if not m:
            raise SyntaxError("a malformed \\x escape")
        return re.escape(chr(int(m.group(1) or m.group(2), 16))), m.end(), True
    if nxt == "u":
        m = re.compile(r"u([0-9A-Fa-f]{4})").match(pattern, i + 1)
        if not m:
            raise SyntaxError("a malformed \\u escape")
        return re.escape(chr(int(m.group(1), 16))), m.end(), True
    if not in_class and nxt == "A":
        return "\\A", i + 2, False
    if not in_class and nxt == "z":
        return "\\Z", i + 2, False
    if not in_class and nxt == "Z":
        return _END_BUT_TERMINATOR, i + 2, False
    if nxt.isalnum():
        raise SyntaxError(f"\\{nxt} is not modelled")
    return re.escape(nxt), i + 2, True


def _class(pattern: str, i: int) -> tuple[str, int]:
    """`[...]` from its `[` at i: the Python class and the index after it."""
    out = ["["]
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    members = 0
    complements: list[str] = []  # `\S` ... inside the class: a union with `[^...]`
    while True:
        if i >= len(pattern):
            raise SyntaxError("an unclosed class")
        ch = pattern[i]
        if ch == "]":
            if members == 0:
                raise SyntaxError("an empty class is not modelled")
            if not complements:
                return "".join(out) + "]", i + 1
            if out[-1] == "^":
                raise SyntaxError("a negated class holding a complement is not modelled")
            parts = (["".join(out) + "]"] if len(out) > 1 else []) + [f"[{c}]" for c in complements]
            return "(?:" + "|".join(parts) + ")", i + 1
        if ch == "[" or pattern.startswith("&&", i):
            raise SyntaxError("a class union or intersection is not modelled")
        if ch == "\\":
            text, i, single = _escape(pattern, i, True)
            if text.startswith("^"):
                complements.append(text)
                members += 1
                continue
        else:
            text, i, single = re.escape(ch), i + 1, True
        if single and i + 1 < len(pattern) and pattern[i] == "-" and pattern[i + 1] != "]":
            if pattern[i + 1] == "\\":
                end, i, end_single = _escape(pattern, i + 1, True)
            else:
                end, i, end_single = re.escape(pattern[i + 1]), i + 2, True
            if not end_single:
                raise SyntaxError("a range ending in a class")
            text = f"{text}-{end}"
        out.append(text)
        members += 1


def to_python(pattern: str) -> str:
    """A Java regex as a Python regex matching the same (see the module docstring)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            text, i, _ = _escape(pattern, i, False)
            out.append(text)
            continue
        if ch == "[":
            text, i = _class(pattern, i)
            out.append(text)
            continue
        if ch == "(":
            if pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
                continue
            m = re.compile(r"\(\?<([a-zA-Z][a-zA-Z0-9]*)>").match(pattern, i)
            if m:
                out.append(f"(?P<{m.group(1)}>")
                i = m.end()
                continue
            if pattern.startswith("(?", i):
                raise SyntaxError("a special construct (?...) is not modelled")
            out.append("(")
            i += 1
            continue
        if ch in "*+?" or (ch == "{" and re.compile(r"\{\d+(,\d*)?\}").match(pattern, i)):
            if ch == "{":
                m = re.compile(r"\{\d+(,\d*)?\}").match(pattern, i)
                out.append(m.group(0))
                i = m.end()
            else:
                out.append(ch)
                i += 1
            if i < len(pattern) and pattern[i] == "+":
                raise SyntaxError("a possessive quantifier is not modelled")
            if i < len(pattern) and pattern[i] == "?":
                out.append("?")
                i += 1
            continue
        if ch == "{":
            raise SyntaxError("a brace that starts no quantifier")
        if ch == ".":
            out.append("[^" + re.escape(TERMINATORS) + "]")
        elif ch == "$":
            out.append(_END_BUT_TERMINATOR)
        elif ch in "^|)":
            out.append(ch)
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def compile_java(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(to_python(pattern))
    except re.error as exc:  # Java would refuse it too (unbalanced ...)
        raise SyntaxError(f"invalid Java regex {pattern!r}: {exc}") from None


def _expand(replacement: str, match: re.Match[str]) -> str:
    out, i, groups = [], 0, match.re.groups
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\":
            if i + 1 >= len(replacement):
                raise SyntaxError("character to be escaped is missing")
            out.append(replacement[i + 1])
            i += 2
        elif ch == "$":
            if i + 1 < len(replacement) and replacement[i + 1] == "{":
                end = replacement.index("}", i)
                value = match.group(replacement[i + 2:end])
                i = end + 1
            else:
                if i + 1 >= len(replacement) or not replacement[i + 1].isdigit():
                    raise SyntaxError("illegal group reference")
                number, i = int(replacement[i + 1]), i + 2
                while i < len(replacement) and replacement[i].isdigit() and number * 10 + int(replacement[i]) <= groups:
                    number, i = number * 10 + int(replacement[i]), i + 1
                if number > groups:
                    raise SyntaxError(f"no group {number}")
                value = match.group(number)
            if value is None:
                raise Undocumented("a group that took no part in the match, in a replacement")
            out.append(value)
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def replace_all(text: str, pattern: str, replacement: str) -> str:
    """ES|QL's `REPLACE`: every match of the Java regex replaced (see the module docstring)."""
    compiled = compile_java(pattern)

    def one(match: re.Match[str]) -> str:
        written = _expand(replacement, match)
        if match.start() == match.end() and written:
            raise Undocumented("an empty match given a non-empty replacement")
        return written

    return compiled.sub(one, text)
