"""Diagnostics as text for people (`path:line:col: error: message`, the source line, a caret)
and as JSON for machines.  The only place diagnostics become text."""

from __future__ import annotations

from typing import Any

from rmmc.compiler.diagnostics import Diagnostic, LineIndex


def render_text(diagnostic: Diagnostic, source: LineIndex | None) -> str:
    """Compiler-style: location, severity, message; then the source line and a caret."""
    span = diagnostic.span
    where = diagnostic.path or "<input>"
    if span is not None:
        where += f":{span.line}:{span.column}"
    head = f"{where}: {diagnostic.severity.value}: {diagnostic.message}"
    if span is None or source is None:
        return head
    line = source.line_text(span.line)
    if not line.strip():
        return head
    shown = line if line.isprintable() else _printable(line)
    # Keep tabs under tabs so the caret lines up in any terminal.
    before = line[: span.column - 1]
    prefix = " " * len(before) if before.isprintable() else _under(before)
    width = max(1, min(span.end - span.offset, len(line) - (span.column - 1)))
    return f"{head}\n    {shown}\n    {prefix}^{'~' * (width - 1)}"


def _under(before: str) -> str:
    """What goes under `before` (the line up to the caret): a tab under a tab, else as many
    spaces as the character takes shown (under printable characters only, the usual line, that
    is as many spaces as there are characters: `render_text` does not call this then)."""
    return "".join("\t" if ch == "\t" else " " * len(_printable(ch)) for ch in before)


def _printable(line: str) -> str:
    """The source line with control characters made visible (never echo raw escapes)."""
    return "".join(ch if ch == "\t" or ch.isprintable() else _escape(ch) for ch in line)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def to_json(diagnostic: Diagnostic) -> dict[str, Any]:
    span = diagnostic.span
    return {
        "path": diagnostic.path,
        "line": span.line if span else None,
        "column": span.column if span else None,
        "offset": span.offset if span else None,
        "end": span.end if span else None,
        "severity": diagnostic.severity.value,
        "code": diagnostic.code,
        "message": diagnostic.message,
    }
