"""Lucene regular expressions, read as Elasticsearch reads them, for Python's `re`.

Elasticsearch matches EQL `regex` / `regex~` and ES|QL `RLIKE` with Lucene's `RegExp` (all
optional operators on: `RegExp.ALL`), whose syntax is documented in "Regular expression syntax"
(elasticsearch: docs/reference/query-languages/query-dsl/regexp-syntax.md):

* a pattern matches the WHOLE value (no anchors: `^` and `$` are ordinary characters);
* `.` any character (a line break too), `?` `+` `*` `{n}` `{n,}` `{n,m}` repeats, `|` the
  longest alternative, `( )` groups (`()` the empty string), `[...]` / `[^...]` classes with
  ranges (`-` first or escaped is literal);
* `\\` followed by a character is that character, except the shorthand classes `\\d \\D \\s \\S
  \\w \\W` (Lucene 9+, ASCII); `"..."` is a literal string;
* optional operators: `#` (the empty language), `@` (any string), `~` (complement), `&`
  (intersection), `<n-m>` (a numeric interval).

`lucene_regex` turns such a pattern into an equivalent Python regex for `re.fullmatch` with
`re.DOTALL`.  Complement, intersection and intervals have no Python form: ValueError (rmmc's
backends escape `~ & < >` everywhere, so a pattern holding one unescaped is a bug anyway), as
for any pattern Lucene itself would reject (unbalanced, a repeat of nothing, a bad class).
"""

from __future__ import annotations

import re

_SHORTHAND = {"d": "[0-9]", "D": "[^0-9]", "s": "[ \\t\\n\\r\\f\\v]", "S": "[^ \\t\\n\\r\\f\\v]",
              "w": "[0-9A-Za-z_]", "W": "[^0-9A-Za-z_]"}
_CLASS_SHORTHAND = {"d": "0-9", "s": " \\t\\n\\r\\f\\v", "w": "0-9A-Za-z_"}
_UNSUPPORTED = {"~": "complement (~)", "&": "intersection (&)", "<": "numeric interval (<n-m>)"}


_JAVA_SIMPLE_LOWER = {"\u0130": "i"}  # Character.toLowerCase(0x130); Python's lower() gives two


def other_case(ch: str) -> str:
    """Java's one-character other case, as Lucene's CASE_INSENSITIVE flag and Elasticsearch's
    case-insensitive automata use it: the upper case of a lower-case letter, else the lower
    case (the character itself when that mapping is not one character)."""
    if ch.islower():
        up = ch.upper()
        return up if len(up) == 1 else ch
    low = _JAVA_SIMPLE_LOWER.get(ch, ch.lower())
    return low if len(low) == 1 else ch


def literal(ch: str, ignore_case: bool = False) -> str:
    """One character as a Python regex: itself, or `[cC]` with its other case."""
    if not ignore_case or other_case(ch) == ch:
        return re.escape(ch)
    return "[" + re.escape(ch) + re.escape(other_case(ch)) + "]"


class _Reader:
    def __init__(self, pattern: str, ignore_case: bool = False):
        self.text, self.i, self.ignore_case = pattern, 0, ignore_case

    def peek(self) -> str | None:
        return self.text[self.i] if self.i < len(self.text) else None

    def fail(self, message: str) -> ValueError:
        return ValueError(f"Lucene regex {self.text!r} at {self.i}: {message}")

    # unionexp ::= interexp ( '|' interexp )*
    def union(self) -> str:
        parts = [self.concat()]
        while self.peek() == "|":
            self.i += 1
            parts.append(self.concat())
        return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"

    # concatexp ::= repeatexp*   (ends at '|', ')' or the end)
    def concat(self) -> str:
        out = []
        while (ch := self.peek()) is not None and ch not in "|)":
            if ch in _UNSUPPORTED:
                raise self.fail(f"{_UNSUPPORTED[ch]} has no Python form")
            out.append(self.repeat())
        return "".join(out)

    # repeatexp ::= simple ( '?' | '*' | '+' | '{n}' | '{n,}' | '{n,m}' )*
    def repeat(self) -> str:
        atom = self.simple()
        while (ch := self.peek()) is not None and ch in "?*+{":
            if ch == "{":
                m = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.text, self.i)
                if m is None:
                    raise self.fail("a '{' that starts no repeat")
                low, high = int(m.group(1)), m.group(3)
                if high and int(high) < low:
                    raise self.fail("a repeat whose maximum is below its minimum")
                self.i = m.end()
                atom = f"(?:{atom}){m.group(0)}"
            else:
                self.i += 1
                atom = f"(?:{atom}){ch}"
        return atom

    def simple(self) -> str:
        ch = self.peek()
        if ch in "?*+{":
            raise self.fail(f"a repeat ({ch}) of nothing")
        self.i += 1
        if ch == ".":
            return "."
        if ch == "#":
            return "(?!)"
        if ch == "@":
            return ".*"
        if ch == "(":
            if self.peek() == ")":
                self.i += 1
                return ""
            inner = self.union()
            if self.peek() != ")":
                raise self.fail("an unclosed group")
            self.i += 1
            return f"(?:{inner})"
        if ch == "[":
            return self.char_class()
        if ch == '"':
            end = self.text.find('"', self.i)
            if end == -1:
                raise self.fail("an unclosed quoted string")
            text, self.i = self.text[self.i:end], end + 1
            return "".join(literal(c, self.ignore_case) for c in text)
        if ch == "\\":
            return self.escape(_SHORTHAND, lambda c: literal(c, self.ignore_case))
        if ch == "]":
            raise self.fail("an unopened ']'")
        return literal(ch, self.ignore_case)

    def escape(self, shorthand: dict[str, str], literal) -> str:
        nxt = self.peek()
        if nxt is None:
            raise self.fail("a trailing backslash")
        self.i += 1
        return shorthand.get(nxt) or literal(nxt)

    def char_class(self) -> str:
        out = ["["]
        if self.peek() == "^":
            out.append("^")
            self.i += 1
        items = 0
        while (ch := self.peek()) != "]":
            if ch is None:
                raise self.fail("an unclosed character class")
            start = self.class_char()
            if self.peek() == "-" and self.text[self.i + 1:self.i + 2] not in ("", "]"):
                self.i += 1
                out.append(f"{start}-{self.class_char()}")
            else:
                out.append(start)
            items += 1
        self.i += 1
        if items == 0:
            raise self.fail("an empty character class")
        return "".join(out) + "]"

    def class_char(self) -> str:
        ch = self.peek()
        self.i += 1
        if ch == "\\":
            return self.escape(_CLASS_SHORTHAND, _class_literal)
        return _class_literal(ch)


def _class_literal(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[" else ch


def lucene_regex(pattern: str, ignore_case: bool = False) -> str:
    """The Python regex (for `re.fullmatch(..., re.DOTALL)`) that matches exactly the values
    the Lucene regex `pattern` matches; ValueError for what Lucene rejects or what Python
    cannot say (complement, intersection, numeric intervals).  `ignore_case`: Lucene's
    CASE_INSENSITIVE match flag: each literal character also matches its `other_case`; classes
    and ranges stay as written (the limitation the regexp-syntax page documents)."""
    reader = _Reader(pattern, ignore_case)
    out = reader.union()
    if reader.peek() is not None:
        raise reader.fail("an unopened ')'")
    return out


def lucene_fullmatch(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """Whether the Lucene regex matches the whole value (`ignore_case`: see `lucene_regex`)."""
    return re.fullmatch(lucene_regex(pattern, ignore_case), value, re.DOTALL) is not None
