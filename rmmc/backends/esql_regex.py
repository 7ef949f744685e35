"""Model (RE2) regular expressions as the Java regexes ES|QL's `REPLACE` reads.

ES|QL's `REPLACE(string, regex, newString)` compiles `regex` with `java.util.regex.Pattern`
and writes each match's replacement with `Matcher.appendReplacement` (elasticsearch:
x-pack/plugin/esql/.../scalar/string/Replace.java).  A model regex has RE2's meaning (KQL's
engine); `java_regex` writes it so Java reads the same, construct by construct, and refuses
what it cannot say for sure:

* a literal character is itself (ASCII letters, digits, space, non-ASCII), an ASCII
  punctuation character gets a backslash (always a literal in Java), a control character is
  `\\x{hh}`;
* `.` is `[^\\n]` (RE2's dot stops only at a line feed; Java's also at `\\r`, U+0085, U+2028,
  U+2029), or `[\\s\\S]` after a leading `(?s)`;
* `^` stays (the start of the text in both, without multi-line mode); `$` becomes `\\z` (RE2's
  `$` is the very end, Java's also matches before a final line terminator); `\\A` and `\\z`
  stay;
* `\\d \\w \\s` (and `\\D \\W \\S`) are RE2's ASCII classes written out: `[0-9]`,
  `[0-9A-Za-z_]`, `[\\t\\n\\f\\r ]` (Java's `\\s` also holds U+000B);
* `\\t \\n \\r \\f \\v \\a`, `\\xhh` and `\\x{h...}` are the characters they name;
* character classes have every ASCII punctuation character escaped (Java gives `&&` and a
  nested `[` a meaning there);
* groups `(...)`, `(?:...)`, `(?P<name>...)` (a plain group: same number), alternation,
  repeats `* + ? {n} {n,} {n,m}` and their lazy forms are the same in both.

Refused (`Refusal`): flags other than one leading `(?s)` (`(?i)`'s Unicode folding differs
between the two at the edges), `\\b` / `\\B` (Java's word boundary is not RE2's ASCII one),
`\\p{..}`, `\\Q..\\E`, `\\C`, back-references and other escapes, POSIX classes, and anything
unbalanced.
"""

from __future__ import annotations

import re

from rmmc.backends.esql_text import Refusal

_CLASS_SHORTHANDS = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_CHAR_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX = re.compile(r"x([0-9A-Fa-f]{2})|x\{([0-9A-Fa-f]{1,6})\}")


def java_char(ch: str, in_class: bool = False) -> str:
    """One character as a Java regex literal (inside a class too)."""
    code = ord(ch)
    if code < 32 or code == 127:
        return "\\x{%02x}" % code
    if code < 128 and not ch.isalnum() and ch != " ":
        return "\\" + ch
    if in_class and ch == " ":
        return " "
    return ch


def java_literal(text: str) -> str:
    """`text` as a Java regex matching exactly that text."""
    return "".join(java_char(ch) for ch in text)


def java_replacement(text: str) -> str:
    """`text` as a Java replacement string that writes exactly that text (`\\` and `$` are
    the two characters `appendReplacement` reads: each escaped with a backslash)."""
    return "".join("\\" + ch if ch in "\\$" else ch for ch in text)


class _Translator:
    def __init__(self, pattern: str):
        self.pattern, self.i, self.out = pattern, 0, []
        self.dotall = False
        self.groups = 0
        self.depth = 0

    def refuse(self, what: str) -> Refusal:
        return Refusal(f"the regex {self.pattern!r} uses {what}, which rmmc does not write for "
                       "ES|QL's REPLACE (a Java regex) with the same meaning")

    def peek(self, offset: int = 0) -> str | None:
        j = self.i + offset
        return self.pattern[j] if j < len(self.pattern) else None

    def escape(self, in_class: bool) -> str:
        """The escape at `self.i` (after its backslash): a class body (`0-9` ...) for a
        shorthand inside a class, a whole atom outside, or one character (as `java_char`)."""
        nxt = self.peek()
        if nxt is None:
            raise self.refuse("a trailing backslash")
        if nxt in _CLASS_SHORTHANDS:
            self.i += 1
            return _CLASS_SHORTHANDS[nxt] if in_class else f"[{_CLASS_SHORTHANDS[nxt]}]"
        if nxt.lower() in _CLASS_SHORTHANDS and nxt.isupper():
            if in_class:
                raise self.refuse(f"\\{nxt} inside a character class")
            self.i += 1
            return f"[^{_CLASS_SHORTHANDS[nxt.lower()]}]"
        if nxt in _CHAR_ESCAPES:
            self.i += 1
            return java_char(_CHAR_ESCAPES[nxt], in_class)
        if nxt == "x":
            m = _HEX.match(self.pattern, self.i)
            if m is None:
                raise self.refuse("a malformed \\x escape")
            self.i = m.end()
            code = int(m.group(1) or m.group(2), 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise self.refuse("a \\x escape that is no character")
            return java_char(chr(code), in_class)
        if not in_class and nxt in "Az":
            self.i += 1
            return "\\" + nxt
        if nxt.isascii() and not nxt.isalnum():
            self.i += 1
            return java_char(nxt, in_class)
        raise self.refuse(f"\\{nxt}")

    def char_class(self) -> str:
        """`[...]` from just after the `[`."""
        parts = ["["]
        if self.peek() == "^":
            parts.append("^")
            self.i += 1
        first = True
        while True:
            ch = self.peek()
            if ch is None:
                raise self.refuse("an unclosed character class")
            if ch == "]" and not first:
                self.i += 1
                break
            first = False
            start, single = self.class_member()
            if single and self.peek() == "-" and self.peek(1) not in (None, "]"):
                self.i += 1
                end, end_single = self.class_member()
                if not end_single:
                    raise self.refuse("a range ending in a character class")
                parts.append(f"{start}-{end}")
            else:
                parts.append(start)
        return "".join(parts) + "]"

    def class_member(self) -> tuple[str, bool]:
        """One member of a class at `self.i`: its Java text and whether it is one character
        (which may start or end a range)."""
        ch = self.peek()
        if ch == "[" and self.peek(1) == ":":
            raise self.refuse("a POSIX character class")
        self.i += 1
        if ch == "\\":
            shorthand = self.peek() in _CLASS_SHORTHANDS
            return self.escape(True), not shorthand
        return java_char(ch, True), True

    def group_open(self) -> str:
        if self.peek() != "?":
            self.groups += 1
            return "("
        if self.pattern.startswith("?:", self.i):
            self.i += 2
            return "(?:"
        m = re.match(r"\?P?<([A-Za-z_][A-Za-z0-9_]*)>", self.pattern[self.i:])
        if m:
            self.i += m.end()
            self.groups += 1
            return "("
        raise self.refuse("a group or flag of the form (?...)")

    def repeat_suffix(self) -> None:
        if self.peek() == "+":
            raise self.refuse("a possessive repeat")
        if self.peek() == "?":
            self.out.append("?")
            self.i += 1

    def translate(self) -> str:
        if self.pattern.startswith("(?s)"):
            self.dotall = True
            self.i = 4
        n = len(self.pattern)
        while self.i < n:
            ch = self.pattern[self.i]
            self.i += 1
            if ch == "\\":
                self.out.append(self.escape(False))
            elif ch == "[":
                self.out.append(self.char_class())
            elif ch == "(":
                self.depth += 1
                self.out.append(self.group_open())
            elif ch == ")":
                self.depth -= 1
                if self.depth < 0:
                    raise self.refuse("an unbalanced parenthesis")
                self.out.append(")")
            elif ch in "*+?":
                if not self.out or self.out[-1] in ("(", "(?:", "|"):
                    raise self.refuse("a repeat of nothing")
                self.out.append(ch)
                self.repeat_suffix()
            elif ch == "{":
                m = re.match(r"\{(\d+)(,(\d*))?\}", self.pattern[self.i - 1:])
                if m is None:
                    self.out.append("\\{")  # RE2 reads a brace that starts no repeat literally
                    continue
                if not self.out or self.out[-1] in ("(", "(?:", "|"):
                    raise self.refuse("a repeat of nothing")
                low, high = int(m.group(1)), m.group(3)
                if low > 1000 or (high and int(high) > 1000) or (high and int(high) < low):
                    raise self.refuse("a repeat count RE2 refuses")
                self.out.append(m.group(0))
                self.i += m.end() - 1
                self.repeat_suffix()
            elif ch == ".":
                self.out.append("[\\s\\S]" if self.dotall else "[^\\n]")
            elif ch == "$":
                self.out.append("\\z")
            elif ch in "^|":
                self.out.append(ch)
            else:
                self.out.append(java_char(ch))
        if self.depth != 0:
            raise self.refuse("an unbalanced parenthesis")
        return "".join(self.out)


def java_regex(pattern: str) -> tuple[str, int]:
    """A model (RE2) regex as a Java regex with the same meaning, and its number of capture
    groups; `Refusal` for what is not written (see the module docstring)."""
    translator = _Translator(pattern)
    return translator.translate(), translator.groups
