"""Model (RE2) regular expressions in the two regex dialects ES|QL reads.

* Java's, for `REPLACE(string, regex, newString)`: it compiles `regex` with
  `java.util.regex.Pattern` and writes each match's replacement with
  `Matcher.appendReplacement` (elasticsearch: x-pack/plugin/esql/.../scalar/string/Replace.java);
* Lucene's, for `RLIKE`: a pattern that must match the whole value (rmmc.verify.lucene
  documents what Elasticsearch reads).

A model regex has RE2's meaning (KQL's engine).  `java_regex` and `lucene_regex` write it so
the target reads the same, construct by construct, and refuse what they cannot say for sure:

* a literal character is itself (ASCII letters, digits, space, non-ASCII), an ASCII
  punctuation character gets a backslash (always a literal in both), a control character is
  `\\x{hh}` in Java (itself in Lucene, which has no such escape);
* `.` is `[^\\n]` (RE2's dot stops only at a line feed; Java's also at `\\r`, U+0085, U+2028,
  U+2029; Lucene's at nothing), or any character after a leading `(?s)`: `[\\s\\S]` in Java,
  `.` in Lucene;
* Java: `^` stays (the start of the text in both, without multi-line mode) and `$` becomes
  `\\z` (RE2's `$` is the very end, Java's also matches before a final line terminator); `\\A`
  and `\\z` stay.  Lucene matches the whole value: the pattern is `.*(R).*`, without the
  `.*` on a side where R is anchored (`^` / `\\A` first, `$` / `\\z` last, with no `|` outside
  a group); an anchor anywhere else is refused;
* `\\d \\w \\s` (and `\\D \\W \\S`) are RE2's ASCII classes written out: `[0-9]`,
  `[0-9A-Za-z_]`, `[\\t\\n\\f\\r ]` (Java's `\\s` also holds U+000B);
* `\\t \\n \\r \\f \\v \\a`, `\\xhh` and `\\x{h...}` are the characters they name;
* character classes have every ASCII punctuation character escaped (Java gives `&&` and a
  nested `[` a meaning there);
* groups `(...)`, `(?:...)`, `(?P<name>...)` (a plain group: the same number in Java),
  alternation (an empty alternative is `()` in Lucene), repeats `* + ? {n} {n,} {n,m}`; a
  lazy repeat stays lazy in Java and is the plain repeat in Lucene (a whole-value match
  does not depend on it).

Refused (`Refusal`): flags other than one leading `(?s)` (`(?i)`'s Unicode folding differs
between engines at the edges), `\\b` / `\\B` (Java's word boundary is not RE2's ASCII one),
`\\p{..}`, `\\Q..\\E`, `\\C`, back-references and other escapes, POSIX classes, and anything
unbalanced.
"""

from __future__ import annotations

import re

from rmmc.backends.esql.text import Refusal

_CLASS_SHORTHANDS = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_LUCENE_SHORTHANDS = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\t\n\f\r "}
_CHAR_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX = re.compile(r"x([0-9A-Fa-f]{2})|x\{([0-9A-Fa-f]{1,6})\}")


def java_char(ch: str, in_class: bool = False) -> str:
    """One character as a Java regex literal (inside a class too)."""
    code = ord(ch)
    if code < 32 or code == 127:
        return "\\x{%02x}" % code
    if code < 128 and not ch.isalnum() and ch != " ":
        return "\\" + ch
    return ch


def lucene_char(ch: str, in_class: bool = False) -> str:
    """One character as a Lucene regex literal (inside a class too)."""
    if ch < "\x7f" and ch > " " and not ch.isalnum():
        return "\\" + ch
    return ch


def java_literal(text: str) -> str:
    """`text` as a Java regex matching exactly that text."""
    return "".join(java_char(ch) for ch in text)


def java_replacement(text: str) -> str:
    """`text` as a Java replacement string that writes exactly that text (`\\` and `$` are
    the two characters `appendReplacement` reads: each escaped with a backslash)."""
    return "".join("\\" + ch if ch in "\\$" else ch for ch in text)


class _Translator:
    def __init__(self, pattern: str, lucene: bool):
        self.pattern, self.i, self.out = pattern, 0, []
        self.lucene = lucene
        self.char = lucene_char if lucene else java_char
        self.shorthands = _LUCENE_SHORTHANDS if lucene else _CLASS_SHORTHANDS
        self.dotall = False
        self.groups = 0
        self.depth = 0
        self.anchored_start = self.anchored_end = False
        self.branch_start = [0]  # where the current alternative began in `out`, per group depth
        self.top_level_bar = False

    def refuse(self, what: str) -> Refusal:
        target = "ES|QL's RLIKE (a Lucene regex)" if self.lucene else "ES|QL's REPLACE (a Java regex)"
        return Refusal(f"the regex {self.pattern!r} uses {what}, which rmmc does not write for {target} "
                       "with the same meaning")

    def peek(self, offset: int = 0) -> str | None:
        j = self.i + offset
        return self.pattern[j] if j < len(self.pattern) else None

    def escape(self, in_class: bool) -> str:
        """The escape at `self.i` (after its backslash): a class body (`0-9` ...) for a
        shorthand inside a class, a whole atom outside, or one character."""
        nxt = self.peek()
        if nxt is None:
            raise self.refuse("a trailing backslash")
        if nxt in self.shorthands:
            self.i += 1
            return self.shorthands[nxt] if in_class else f"[{self.shorthands[nxt]}]"
        if nxt.lower() in self.shorthands and nxt.isupper():
            if in_class:
                raise self.refuse(f"\\{nxt} inside a character class")
            self.i += 1
            return f"[^{self.shorthands[nxt.lower()]}]"
        if nxt in _CHAR_ESCAPES:
            self.i += 1
            return self.char(_CHAR_ESCAPES[nxt], in_class)
        if nxt == "x":
            m = _HEX.match(self.pattern, self.i)
            if m is None:
                raise self.refuse("a malformed \\x escape")
            self.i = m.end()
            code = int(m.group(1) or m.group(2), 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise self.refuse("a \\x escape that is no character")
            return self.char(chr(code), in_class)
        if not in_class and nxt in "Az":
            self.i += 1
            return self.anchor("^" if nxt == "A" else "$")
        if nxt.isascii() and not nxt.isalnum():
            self.i += 1
            return self.char(nxt, in_class)
        raise self.refuse(f"\\{nxt}")

    def anchor(self, which: str) -> str:
        """`^` / `$` (and `\\A` / `\\z`): Java's forms; in Lucene only at the pattern's ends."""
        if not self.lucene:
            return "^" if which == "^" else "\\z"
        if which == "^" and self.depth == 0 and not self.out:
            self.anchored_start = True
            return ""
        if which == "$" and self.depth == 0 and self.i == len(self.pattern):
            self.anchored_end = True
            return ""
        raise self.refuse(f"the anchor {which} inside the pattern")

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
        """One member of a class at `self.i`: its text and whether it is one character
        (which may start or end a range)."""
        ch = self.peek()
        if ch == "[" and self.peek(1) == ":":
            raise self.refuse("a POSIX character class")
        self.i += 1
        if ch == "\\":
            shorthand = self.peek() in self.shorthands
            return self.escape(True), not shorthand
        return self.char(ch, True), True

    def group_open(self) -> str:
        if self.peek() != "?":
            self.groups += 1
            return "("
        if self.pattern.startswith("?:", self.i):
            self.i += 2
            return "(" if self.lucene else "(?:"
        m = re.match(r"\?P?<([A-Za-z_][A-Za-z0-9_]*)>", self.pattern[self.i:])
        if m:
            self.i += m.end()
            self.groups += 1
            return "("
        raise self.refuse("a group or flag of the form (?...)")

    def close_branch(self) -> None:
        """An empty alternative is `()` in Lucene (its parser wants an expression)."""
        if self.lucene and len(self.out) == self.branch_start[-1]:
            self.out.append("()")

    def repeat_suffix(self) -> None:
        if self.peek() == "+":
            raise self.refuse("a possessive repeat")
        if self.peek() == "?":
            self.i += 1
            if not self.lucene:
                self.out.append("?")

    def repeatable(self) -> bool:
        return bool(self.out) and self.out[-1] not in ("(", "(?:", "|", "") and \
            len(self.out) > self.branch_start[-1]

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
                self.branch_start.append(len(self.out))
            elif ch == ")":
                self.depth -= 1
                if self.depth < 0:
                    raise self.refuse("an unbalanced parenthesis")
                self.close_branch()
                self.branch_start.pop()
                self.out.append(")")
            elif ch == "|":
                self.close_branch()
                self.out.append("|")
                self.branch_start[-1] = len(self.out)
                if self.depth == 0:
                    self.top_level_bar = True
            elif ch in "*+?":
                if not self.repeatable():
                    raise self.refuse("a repeat of nothing")
                self.out.append(ch)
                self.repeat_suffix()
            elif ch == "{":
                m = re.match(r"\{(\d+)(,(\d*))?\}", self.pattern[self.i - 1:])
                if m is None:
                    self.out.append("\\{")  # RE2 reads a brace that starts no repeat literally
                    continue
                if not self.repeatable():
                    raise self.refuse("a repeat of nothing")
                low, high = int(m.group(1)), m.group(3)
                if low > 1000 or (high and int(high) > 1000) or (high and int(high) < low):
                    raise self.refuse("a repeat count RE2 refuses")
                self.out.append(m.group(0))
                self.i += m.end() - 1
                self.repeat_suffix()
            elif ch == ".":
                if self.lucene:  # Lucene has no \n escape: the line feed itself
                    self.out.append("." if self.dotall else "[^\n]")
                else:
                    self.out.append("[\\s\\S]" if self.dotall else "[^\\n]")
            elif ch in "^$":
                self.out.append(self.anchor(ch))
            else:
                self.out.append(self.char(ch))
        if self.depth != 0:
            raise self.refuse("an unbalanced parenthesis")
        self.close_branch()
        body = "".join(self.out) or "()"
        if not self.lucene:
            return body
        if (self.anchored_start or self.anchored_end) and self.top_level_bar:
            raise self.refuse("an anchor beside an alternative")
        head = "" if self.anchored_start else ".*"
        tail = "" if self.anchored_end else ".*"
        if not head and not tail:
            return body if not self.top_level_bar else f"({body})"
        return f"{head}({body}){tail}"


def java_regex(pattern: str) -> tuple[str, int]:
    """A model (RE2) regex as a Java regex with the same meaning, and its number of capture
    groups; `Refusal` for what is not written (see the module docstring)."""
    translator = _Translator(pattern, lucene=False)
    return translator.translate(), translator.groups


def lucene_regex(pattern: str) -> str:
    """A model (RE2) regex, an unanchored search, as the Lucene regex matching the whole of
    exactly the values where it finds a match; `Refusal` for what is not written."""
    return _Translator(pattern, lucene=True).translate()
