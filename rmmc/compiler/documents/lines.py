"""Lines of a source text with their file offsets, shared by every reader.

Readers work line by line but must report true file offsets, so each `Line` keeps the
offset of its first character and its text without the line break (`\\n` or `\\r\\n`).
"""

from __future__ import annotations

from itertools import accumulate
from typing import Iterable, NamedTuple, Sequence

BOM = "\ufeff"


class Line(NamedTuple):
    """One line: 0-based `number`, file offset `start` of its first character, `text`
    without the line break (a leading BOM on line 0 is not part of the text), and its
    `indent` (count of leading spaces and tabs).  A NamedTuple rather than a dataclass
    because a 10 MB file has millions of lines and construction cost matters."""

    number: int
    start: int
    text: str
    indent: int = 0

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def blank(self) -> bool:
        return self.indent == len(self.text) or self.text.isspace()


def split_lines(text: str, start: int = 0, end: int | None = None) -> list[Line]:
    """The lines of `text[start:end]` (offsets stay file offsets); a BOM at offset 0 is
    skipped, a `\\r` before `\\n` is dropped from the line text.  Linear."""
    end = len(text) if end is None else end
    if start == 0 and text.startswith(BOM):
        start = 1
    if start >= end:
        return []
    parts = text[start:end].split("\n")
    tail = parts.pop()              # after the last line break ('' if the text ends in one)
    lines: list[Line] = []
    append = lines.append
    pos = start
    for number, part in enumerate(parts):
        body = part[:-1] if part.endswith("\r") else part
        append(Line(number, pos, body, len(body) - len(body.lstrip(" \t"))))
        pos += len(part) + 1
    if tail:
        append(Line(len(lines), pos, tail, len(tail) - len(tail.lstrip(" \t"))))
    return lines


def line_pairs(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, str]]:
    """`(line.start, line.text)` of each line `split_lines` gives, without making the
    `Line`s: a bare query file is read by the line (the offsets are the file's) and most of
    its lines need nothing else."""
    end = len(text) if end is None else end
    if start == 0 and text.startswith(BOM):
        start = 1
    if start >= end:
        return []
    chunk = text[start:end]
    parts = chunk.split("\n")
    tail = parts.pop()
    # each line's offset: the one before it, plus its length and its line break
    offsets = list(accumulate(map((1).__add__, map(len, parts)), initial=start))
    if "\r" in chunk:
        parts = [part[:-1] if part.endswith("\r") else part for part in parts]
    pairs = list(zip(offsets, parts))
    if tail:
        pairs.append((offsets[-1], tail))
    return pairs


def trim_blank(pairs: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """Drop leading and trailing whitespace-only lines of (offset, text) pairs."""
    lo, hi = 0, len(pairs)
    while lo < hi and (not pairs[lo][1] or pairs[lo][1].isspace()):
        lo += 1
    while hi > lo and (not pairs[hi - 1][1] or pairs[hi - 1][1].isspace()):
        hi -= 1
    return list(pairs[lo:hi])


def join_pairs(pairs: Iterable[tuple[int, str]]) -> tuple[str, tuple[int, ...]]:
    """Query text (lines joined by `\\n`) and the file offset of each line."""
    pairs = list(pairs)
    if not pairs:
        return "", ()
    starts, texts = zip(*pairs)
    return "\n".join(texts), starts


def dedent_pairs(lines: Sequence[Line], indent: int) -> list[tuple[int, str]]:
    """(offset, text) pairs with up to `indent` leading spaces/tabs removed per line."""
    out: list[tuple[int, str]] = []
    for ln in lines:
        cut = min(indent, ln.indent)
        out.append((ln.start + cut, ln.text[cut:]))
    return out
