"""A forgiving, linear reader for the YAML subset that rule files use.

Real rule files are often not valid YAML (block scalars left unindented, a key indented
under a list item, tabs).  This reader accepts them: mappings by indentation, block
scalars (`|`, `>`, chomping and indentation indicators, indented or not), plain and quoted
scalars, simple flow collections and block lists (`- item`, `- key: value`).  It never
raises, records where each top-level scalar sits in the file (so a query can be mapped back
line by line), and reports the lines it had to skip.  Every line is looked at a bounded
number of times, so a 10 MB input is read in linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, warning
from rmmc.compiler.documents.lines import Line, dedent_pairs, trim_blank

MAX_DEPTH = 40          # deeper nesting is kept as raw text
MAX_KEY_LENGTH = 1024   # as in YAML: longer "keys" are not implicit keys
_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")
_BLOCK_HEADER = re.compile(r"[|>](?:[1-9][+-]?|[+-][1-9]?)?[ \t]*(?:#.*)?")
_PROPERTIES = re.compile(r"(?:[!&][^ \t]*[ \t]*)*")   # tags and anchors, skipped
_FLOW_PLAIN = re.compile(r"(?:[^,\[\]{}:]|:(?![ \t,\]}]|$))*")
_IDENT_KEY = re.compile(r"[A-Za-z_][\w.\-]*[ \t]*:(?:[ \t]|$)")
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*)?\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "/": "/",
            " ": " ", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f", "v": "\v"}


@dataclass(frozen=True)
class ScalarLocation:
    """Where a scalar value sits in the file.

    `pairs` holds (file offset, text) for each line of the value as written (block
    indentation removed, blank edges trimmed); `exact` says the value is those lines joined
    by `\\n` (false for folded plain or escaped quoted scalars); `style` is `|`, `>`,
    `plain`, `quoted` or `flow`."""

    pairs: tuple[tuple[int, str], ...]
    start: int
    style: str
    exact: bool


@dataclass(frozen=True)
class TolerantResult:
    """The mapping read, the location of each top-level scalar, and what was skipped."""

    data: dict[str, Any]
    locations: dict[str, ScalarLocation] = field(default_factory=dict)
    warnings: tuple[Diagnostic, ...] = ()


def split_key(content: str) -> tuple[str, int] | None:
    """If `content` is `key: rest`, return (key, index of rest); else None.  Linear."""
    if not content:
        return None
    first = content[0]
    if first in "\"'":
        close = _closing_quote(content, 1, first)
        if close == -1:
            return None
        pos = close + 1
        while pos < len(content) and content[pos] in " \t":
            pos += 1
        if pos >= len(content) or content[pos] != ":":
            return None
        if pos + 1 < len(content) and content[pos + 1] not in " \t":
            return None
        key = _unquote(content[: close + 1])
    else:
        if first in _INDICATORS and not (first in "-?:" and len(content) > 1
                                         and content[1] not in " \t"):
            return None
        pos = content.find(":", 0, MAX_KEY_LENGTH + 1)
        while pos != -1 and pos + 1 < len(content) and content[pos + 1] not in " \t":
            pos = content.find(":", pos + 1, MAX_KEY_LENGTH + 1)
        if pos == -1:
            return None
        key = content[:pos].rstrip(" \t")
        if not key or " #" in key or "\t#" in key:
            return None
    rest = pos + 1
    while rest < len(content) and content[rest] in " \t":
        rest += 1
    return key, rest


def read_tolerant(lines: Sequence[Line], source: LineIndex) -> TolerantResult:
    """Read `lines` (a whole file or a region of one) as forgivingly as possible."""
    reader = _Reader(lines, source)
    data = reader.read_top()
    return TolerantResult(data, reader.locations, tuple(reader.warnings))


def _closing_quote(s: str, pos: int, quote: str) -> int:
    """Index of the quote closing a scalar opened before `pos`, or -1."""
    while True:
        pos = s.find(quote, pos)
        if pos == -1:
            return -1
        if quote == "'":
            if pos + 1 < len(s) and s[pos + 1] == "'":
                pos += 2
                continue
            return pos
        backslashes = 0
        k = pos - 1
        while k >= 0 and s[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            return pos
        pos += 1


def _unquote(raw: str) -> str:
    """The value of a quoted scalar written on one line (quotes included)."""
    quote, body = raw[0], raw[1:-1]
    if quote == "'":
        return body.replace("''", "'")
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 >= len(body):
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        width = {"x": 2, "u": 4, "U": 8}.get(nxt)
        if width and re.fullmatch(r"[0-9A-Fa-f]+", body[i + 2:i + 2 + width] or "x") \
                and len(body[i + 2:i + 2 + width]) == width:
            try:
                out.append(chr(int(body[i + 2:i + 2 + width], 16)))
            except (ValueError, OverflowError):
                out.append(body[i:i + 2 + width])
            else:
                if "\ud800" <= out[-1] <= "\udfff":  # half a pair: joined below, or kept as written
                    out[-1] = (out[-1], body[i:i + 2 + width])
            i += 2 + width
            continue
        out.append(_ESCAPES.get(nxt, "\\" + nxt))
        i += 2
    return _join_surrogates(out)


def _join_surrogates(parts: list) -> str:
    """The decoded pieces as text: a high and a low surrogate escape next to each other are
    the character they encode (forgiving: YAML wants `\\U0001F600`); a lone one stays the
    escape as written, since no text can hold it."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, tuple):
            nxt = parts[i + 1] if i + 1 < len(parts) else None
            if part[0] < "\udc00" and isinstance(nxt, tuple) and nxt[0] >= "\udc00":
                out.append((part[0] + nxt[0]).encode("utf-16-le", "surrogatepass").decode("utf-16-le"))
                i += 2
                continue
            out.append(part[1])
        else:
            out.append(part)
        i += 1
    return "".join(out)


def _strip_comment(value: str) -> str:
    """A plain scalar without its trailing ` # comment`."""
    if value.startswith("#"):
        return ""
    cut = len(value)
    for mark in (" #", "\t#"):
        pos = value.find(mark)
        if pos != -1:
            cut = min(cut, pos)
    return value[:cut].rstrip(" \t")


def resolve_plain(value: str) -> Any:
    """YAML's core-schema reading of a plain scalar (null, bool, int, float, else str)."""
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    if len(value) <= 40:
        if _INT.fullmatch(value):
            return int(value.replace("_", ""))
        if _FLOAT.fullmatch(value):
            try:
                return float(value.replace("_", ""))
            except ValueError:
                return value
    return value


class _FlowError(Exception):
    pass


def _parse_flow(text: str) -> Any:
    """A flow collection (`[a, 'b']`, `{k: v}`) written on one logical line."""
    value, pos = _flow_node(text, 0, 0)
    if text[pos:].strip(" \t"):
        raise _FlowError
    return value


def _flow_node(s: str, pos: int, depth: int) -> tuple[Any, int]:
    if depth > 20:
        raise _FlowError
    while pos < len(s) and s[pos] in " \t":
        pos += 1
    if pos >= len(s):
        raise _FlowError
    ch = s[pos]
    if ch in "[{":
        close = "]" if ch == "[" else "}"
        items: list[Any] = []
        mapping: dict[Any, Any] = {}
        pos += 1
        while True:
            while pos < len(s) and s[pos] in " \t":
                pos += 1
            if pos >= len(s):
                raise _FlowError
            if s[pos] == close:
                return (items if ch == "[" else mapping), pos + 1
            key, pos = _flow_node(s, pos, depth + 1)
            while pos < len(s) and s[pos] in " \t":
                pos += 1
            if ch == "{" or (pos < len(s) and s[pos] == ":"):
                value: Any = None
                if pos < len(s) and s[pos] == ":":
                    value, pos = _flow_node(s, pos + 1, depth + 1)
                    while pos < len(s) and s[pos] in " \t":
                        pos += 1
                if ch == "{":
                    try:
                        mapping[key] = value
                    except TypeError:
                        raise _FlowError from None
                else:
                    items.append({key: value} if _hashable(key) else value)
            else:
                items.append(key)
            if pos < len(s) and s[pos] == ",":
                pos += 1
            elif pos >= len(s) or s[pos] != close:
                raise _FlowError
    if ch in "\"'":
        close_at = _closing_quote(s, pos + 1, ch)
        if close_at == -1:
            raise _FlowError
        return _unquote(s[pos:close_at + 1]), close_at + 1
    start = pos
    pos = _FLOW_PLAIN.match(s, pos).end()
    return resolve_plain(s[start:pos].strip(" \t")), pos


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_dash(content: str) -> bool:
    return content == "-" or content.startswith(("- ", "-\t"))


class _Reader:
    """The recursive-descent reader; `i` is the index of the next unread line."""

    def __init__(self, lines: Sequence[Line], source: LineIndex) -> None:
        self.lines = lines
        self.source = source
        self.i = 0
        self.locations: dict[str, ScalarLocation] = {}
        self.warnings: list[Diagnostic] = []
        self._memo = (-1, -1)

    # -- helpers -------------------------------------------------------------------------

    def _warn(self, message: str, offset: int) -> None:
        if len(self.warnings) < 20:
            self.warnings.append(warning(message, self.source.span(offset), "yaml-tolerant"))
        elif len(self.warnings) == 20:
            self.warnings.append(warning("further YAML problems not shown",
                                         self.source.span(offset), "yaml-tolerant"))

    @staticmethod
    def _content(line: Line) -> str:
        return line.text.lstrip(" \t")

    def _ignorable(self, line: Line) -> bool:
        content = self._content(line)
        return not content.rstrip() or content.startswith("#")

    def _next_significant(self, j: int) -> int:
        """First line from j that is not blank or a comment (memoised: nested readers ask
        again from the same place, and a run of blank lines must be scanned once)."""
        if j == self._memo[0]:
            return self._memo[1]
        start = j
        while j < len(self.lines) and self._ignorable(self.lines[j]):
            j += 1
        self._memo = (start, j)
        return j

    # -- structure -----------------------------------------------------------------------

    def read_top(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        lines = self.lines
        while True:
            self.i = self._next_significant(self.i)
            if self.i >= len(lines):
                return data
            line = lines[self.i]
            content = self._content(line).rstrip()
            if content in ("---", "...") or content.startswith(("--- ", "%")):
                if data and content.startswith(("---", "...")):
                    return data          # only the first document is read
                self.i += 1
                continue
            if split_key(content) is None:
                what = "list item" if _is_dash(content) else "line"
                self._warn(f"YAML {what} outside any mapping ignored", line.start + line.indent)
                self.i += 1
                while self.i < len(lines) and (lines[self.i].blank
                                              or lines[self.i].indent > line.indent):
                    self.i += 1
                continue
            self._mapping_into(data, line.indent, -1, 0, top=True)

    def _node(self, col: int, parent_col: int, depth: int) -> Any:
        line = self.lines[self.i]
        if depth > MAX_DEPTH:
            start = self.i
            while self.i < len(self.lines) and (self.lines[self.i].blank
                                                or self.lines[self.i].indent >= col):
                self.i += 1
            self._warn("YAML nested too deeply; kept as text", line.start)
            return "\n".join(ln.text for ln in self.lines[start:self.i])
        if _is_dash(self._content(line)):
            return self._sequence(col, parent_col, depth)
        mapping: dict[str, Any] = {}
        self._mapping_into(mapping, col, parent_col, depth)
        return mapping

    def _mapping_into(self, target: dict[str, Any], col: int, parent_col: int, depth: int,
                      top: bool = False) -> None:
        lines = self.lines
        while True:
            self.i = self._next_significant(self.i)
            if self.i >= len(lines):
                return
            line = lines[self.i]
            if line.indent < col:
                return
            content = self._content(line)
            if line.indent > col:
                if top:
                    return
                self._warn("unexpected indentation; YAML line ignored", line.start + line.indent)
                self.i += 1
                continue
            if _is_dash(content) or content.rstrip() in ("---", "..."):
                return
            found = split_key(content)
            if found is None:
                self._warn("YAML line is not `key: value`; ignored", line.start + line.indent)
                self.i += 1
                continue
            key, rest_at = found
            self.i += 1
            value, location = self._value(content[rest_at:], line.start + line.indent + rest_at,
                                          col, depth)
            target[key] = value
            if top and location is not None:
                self.locations[key] = location

    def _sequence(self, col: int, parent_col: int, depth: int) -> list[Any]:
        items: list[Any] = []
        lines = self.lines
        while True:
            self.i = self._next_significant(self.i)
            if self.i >= len(lines):
                return items
            line = lines[self.i]
            content = self._content(line)
            if line.indent != col or not _is_dash(content):
                return items
            self.i += 1
            after = content[1:]
            rest = after.lstrip(" \t")
            item_col = col + 1 + (len(after) - len(rest))
            rest_offset = line.start + item_col
            found = split_key(rest) if rest and not _is_dash(rest) else None
            if found is None:
                value, _ = self._value(rest, rest_offset, col, depth)
                items.append(value)
                continue
            key, rest_at = found
            item: dict[str, Any] = {}
            item[key], _ = self._value(rest[rest_at:], rest_offset + rest_at, item_col, depth + 1)
            self._mapping_into(item, item_col, col, depth + 1)
            # Tolerance: a key written at the dash's column (or between it and the item's
            # keys) continues this item -- the corpus's mis-indented `dataTypes:`.
            while col > parent_col:
                j = self._next_significant(self.i)
                if j >= len(lines):
                    break
                nxt = lines[j]
                nxt_content = self._content(nxt)
                if not (col <= nxt.indent < item_col) or _is_dash(nxt_content):
                    break
                more = split_key(nxt_content)
                if more is None:
                    break
                self.i = j + 1
                k2, at2 = more
                item[k2], _ = self._value(nxt_content[at2:], nxt.start + nxt.indent + at2,
                                          nxt.indent, depth + 1)
                self._mapping_into(item, nxt.indent, col, depth + 1)
            items.append(item)

    # -- scalars -------------------------------------------------------------------------

    def _value(self, rest: str, offset: int, key_col: int, depth: int
               ) -> tuple[Any, ScalarLocation | None]:
        """The value after `key:` (or `- `) whose text starts at file `offset`."""
        props = _PROPERTIES.match(rest)
        if props and props.end():
            rest, offset = rest[props.end():], offset + props.end()
        stripped = rest.rstrip(" \t")
        if not stripped or stripped.startswith("#"):
            return self._nested(key_col, depth), None
        if stripped[0] in "|>" and _BLOCK_HEADER.fullmatch(stripped):
            return self._block(stripped, offset, key_col)
        if stripped[0] in "\"'":
            return self._quoted(stripped, offset, key_col)
        if stripped[0] in "[{":
            return self._flow(stripped, offset, key_col)
        return self._plain(stripped, offset, key_col)

    def _nested(self, key_col: int, depth: int) -> Any:
        j = self._next_significant(self.i)
        if j >= len(self.lines):
            return None
        line = self.lines[j]
        if line.indent > key_col:
            self.i = j
            return self._node(line.indent, key_col, depth + 1)
        if line.indent == key_col and _is_dash(self._content(line)):
            self.i = j
            return self._sequence(key_col, key_col, depth + 1)
        return None

    def _block(self, header: str, offset: int, key_col: int
               ) -> tuple[Any, ScalarLocation]:
        style = header[0]
        indicators = header[1:].split("#", 1)[0].strip()
        chomp = "-" if "-" in indicators else "+" if "+" in indicators else ""
        digits = [c for c in indicators if c.isdigit()]
        lines = self.lines
        first = self.i
        while first < len(lines) and lines[first].blank:
            first += 1
        if digits:
            content_indent, indented = key_col + int(digits[0]), True
        elif first < len(lines) and lines[first].indent > key_col:
            content_indent, indented = lines[first].indent, True
        else:
            content_indent = lines[first].indent if first < len(lines) else 0
            indented = False
        end = self.i
        while end < len(lines):
            line = lines[end]
            if not line.blank:
                if indented and line.indent < content_indent:
                    break
                if not indented and (line.indent < key_col or (
                        line.indent <= key_col and (
                            _IDENT_KEY.match(line.text, line.indent)
                            or (line.text.startswith(("---", "..."), line.indent)
                                and self._content(line).rstrip() in ("---", "..."))))):
                    break
            end += 1
        block = lines[self.i:end]
        self.i = end
        pairs = dedent_pairs(block, content_indent)
        texts = [t for _, t in pairs]
        while texts and not texts[-1].strip():
            texts.pop()
        trailing = len(pairs) - len(texts)
        if style == "|":
            value = "\n".join(texts)
        else:
            value = _fold(texts)
        if texts and chomp != "-":
            value += "\n" * (1 + (trailing if chomp == "+" else 0))
        kept = tuple(trim_blank(pairs))
        start = kept[0][0] if kept else offset
        return value, ScalarLocation(kept, start, style, True)

    def _quoted(self, text: str, offset: int, key_col: int
                ) -> tuple[Any, ScalarLocation]:
        quote = text[0]
        close = _closing_quote(text, 1, quote)
        if close != -1:
            raw = text[: close + 1]
            if text[close + 1:].strip() and not text[close + 1:].lstrip().startswith("#"):
                self._warn("text after a quoted YAML scalar ignored", offset + close + 1)
            value = _unquote(raw)
            exact = value == raw[1:-1]
            return value, ScalarLocation(((offset + 1, value if exact else raw[1:-1]),),
                                         offset + 1, "quoted", exact)
        parts = [text[1:]]
        lines = self.lines
        closed = False
        while self.i < len(lines):
            line = lines[self.i]
            content = self._content(line)
            if not line.blank and line.indent <= key_col and (
                    split_key(content) is not None or _is_dash(content)):
                break
            self.i += 1
            close = _closing_quote(content, 0, quote)
            if close != -1:
                parts.append(content[:close])
                closed = True
                break
            parts.append(content.rstrip())
        if not closed:
            self._warn("unterminated quoted YAML scalar; read to the next key", offset)
        folded = _fold(parts)
        value = _unquote(quote + folded + quote)
        exact = len(parts) == 1 and value == text[1:]
        return value, ScalarLocation(((offset + 1, text[1:]),), offset + 1, "quoted", exact)

    def _flow(self, text: str, offset: int, key_col: int) -> tuple[Any, ScalarLocation]:
        parts = [text]
        balance = _bracket_balance(text)
        lines = self.lines
        while balance > 0 and self.i < len(lines):
            line = lines[self.i]
            content = self._content(line)
            if not line.blank and line.indent <= key_col and split_key(content) is not None:
                break
            self.i += 1
            parts.append(content.rstrip())
            balance += _bracket_balance(content)
        joined = " ".join(parts)
        try:
            value = _parse_flow(_strip_comment(joined) if "#" in joined else joined)
        except (_FlowError, RecursionError):
            self._warn("YAML flow collection not understood; kept as text", offset)
            value = joined
        return value, ScalarLocation(((offset, text),), offset, "flow", False)

    def _plain(self, text: str, offset: int, key_col: int) -> tuple[Any, ScalarLocation]:
        value = _strip_comment(text)
        lines = self.lines
        parts = [value]
        j = self.i
        while j < len(lines):
            line = lines[j]
            if line.blank:
                j += 1
                continue
            content = self._content(line)
            if line.indent <= key_col or content.startswith("#"):
                break
            for k in range(self.i, j):
                parts.append("")
            parts.append(_strip_comment(content))
            j += 1
            self.i = j
        if len(parts) == 1:
            return resolve_plain(value), ScalarLocation(((offset, value),), offset, "plain", True)
        return _fold(parts), ScalarLocation(((offset, value),), offset, "plain", False)


def _bracket_balance(text: str) -> int:
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")


def _fold(lines: Sequence[str]) -> str:
    """YAML line folding: line breaks become spaces, an empty line a line break, and
    more-indented lines keep their breaks."""
    out: list[str] = []
    pending_break = False
    previous_literal = False
    for line in lines:
        if not line.strip():
            out.append("\n")
            pending_break = True
            continue
        literal = line[:1] in (" ", "\t")
        if out and not pending_break:
            out.append("\n" if (literal or previous_literal) else " ")
        out.append(line)
        pending_break = False
        previous_literal = literal
    return "".join(out)
