"""Diagnostics: located, severity-tagged messages that travel as values.

Every stage (document readers, the KQL parser, lowering, backends) reports problems as
`Diagnostic` values carrying a `Span`.  Only the CLI turns them into text.  A stage that
cannot go on raises `RmmcError`, which simply carries its diagnostics.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from enum import Enum
from itertools import accumulate
from typing import Any, Callable, Iterable



@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source text: 0-based offsets (end exclusive), 1-based line and column."""

    offset: int
    end: int
    line: int
    column: int

    @staticmethod
    def point(offset: int, line: int, column: int) -> "Span":
        return Span(offset, offset, line, column)




class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


_ERROR = Severity.ERROR


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about one place.  `span` is relative to the text it was found in
    (a query, or a whole file once a document has relocated it); `path` names the file.
    `subject` says what a backend's `lossy` diagnostic is about, so that a check can accept a
    difference only where that part decides: the IR node of the rule's condition whose test
    changed (a `Predicate` or `InSubquery`), a `Field` (every test of it), or the name of a
    stage outside the condition ("output", "lookback", "exclusions"); None when not said."""

    severity: Severity
    message: str
    span: Span | None = None
    code: str = ""
    path: str | None = None
    subject: Any = field(default=None, compare=False, repr=False)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def with_path(self, path: str | None) -> "Diagnostic":
        """The same diagnostic about `path` (made directly: `replace` would look up the fields
        `__init__` takes and read each by name, for every diagnostic of a batch)."""
        return self.__class__(self.severity, self.message, self.span, self.code, path, self.subject)


def has_error(diagnostics: Iterable[Diagnostic]) -> bool:
    """Whether any of `diagnostics` is an error: `any(d.is_error for d in diagnostics)` as a
    loop, asked several times per rule.  A generator `any` stops in the middle (at a refused
    rule's first error) is closed by raising GeneratorExit into it, an exception and a
    traceback each time."""
    for d in diagnostics:
        if d.severity is _ERROR:
            return True
    return False


def error(message: str, span: Span | None = None, code: str = "error") -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, span, code)


def warning(message: str, span: Span | None = None, code: str = "warning") -> Diagnostic:
    return Diagnostic(Severity.WARNING, message, span, code)


class RmmcError(Exception):
    """Raised when a stage cannot produce a result; carries the diagnostics that say why."""

    def __init__(self, diagnostics: Diagnostic | list[Diagnostic] | tuple[Diagnostic, ...]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))


@dataclass(frozen=True, slots=True, init=False)
class LineIndex:
    """Maps offsets of a text to 1-based (line, column) and back.  `\\r\\n` counts as one
    line break; the `\\r` belongs to the line it ends.  Every file read gets one: slotted, with
    its fields stored through their slots (a frozen dataclass's `__init__` and `__post_init__`
    set each by name, on an instance dictionary)."""

    text: str
    starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __init__(self, text: str) -> None:
        _set_text(self, text)
        _set_starts(self, line_starts(text))

    def position(self, offset: int) -> tuple[int, int]:
        """1-based line and column of `offset` (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        return line + 1, offset - self.starts[line] + 1

    def span(self, offset: int, end: int | None = None) -> Span:
        line, column = self.position(offset)
        return Span(offset, offset if end is None else end, line, column)

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its line break."""
        if line < 1 or line > len(self.starts):
            return ""
        start = self.starts[line - 1]
        stop = self.starts[line] if line < len(self.starts) else len(self.text)
        return self.text[start:stop].rstrip("\r\n")

    def offset_of(self, line: int, column: int) -> int:
        return self.starts[line - 1] + column - 1


def line_starts_python(text: str) -> tuple[int, ...]:
    """0, then one past each `\\n` of `text`: where each line starts.  Each line starts one past
    the previous line's end: a running sum over the lines' lengths, all of it in C (a `find`
    loop costs a Python step per line of every file).  The reference for the compiled
    `_line_starts.starts` (`line_starts`), and what runs where it is not built."""
    lines = text.split("\n")
    lines.pop()  # the text after the last line break starts a line; nothing starts after it
    return tuple(accumulate(map((1).__add__, map(len, lines)), initial=0))


def _compiled_line_starts() -> Callable[[str], tuple[int, ...]]:
    """`_line_starts.starts` where it is built (every file read gets a LineIndex: in Python its
    starts were a few percent of a batch translation), else `line_starts_python`, which
    `RMMC_PURE_PYTHON=1` also chooses."""
    if os.environ.get("RMMC_PURE_PYTHON", "") not in ("", "0"):
        return line_starts_python
    try:
        from rmmc.compiler._line_starts import starts
    except ImportError:  # not built (no C compiler): the same starts, in Python
        return line_starts_python
    return starts


line_starts = _compiled_line_starts()


_set_text, _set_starts = LineIndex.text.__set__, LineIndex.starts.__set__  # type: ignore[attr-defined]


LOSSY_CODES = frozenset({"lossy", "loose"})
"""Diagnostic codes of a translation whose alerts differ from the rule's."""

LOSSY_HINT = " (refused: the alerts would differ; --allow-lossy writes it anyway)"


def refuse_lossy(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> list[Diagnostic]:
    """The diagnostics with every `lossy` warning made an error: the policy when lossy
    translations are not allowed."""
    return [Diagnostic(Severity.ERROR, d.message + LOSSY_HINT, d.span, d.code, d.path)
            if d.code == "lossy" and d.severity is Severity.WARNING else d for d in diagnostics]


def _speed_up() -> None:
    """Spans are made by the thousand while parsing, diagnostics by the thousand per batch:
    store their fields through their slots (`rmmc.compiler.slots_init`)."""
    from rmmc.compiler.slots_init import fast_init

    fast_init(Span, Diagnostic)


_speed_up()
