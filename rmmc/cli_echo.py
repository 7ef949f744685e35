"""`click.echo` for the many texts a command prints to one stream, deciding once what click
decides on every call.

A batch translation prints thousands of texts (each diagnostic, each query).  For every one
`click.echo` looks up its wrapper of the standard stream, asks the stream whether it is a
terminal (a system call) and the current context for its color setting, then runs its ANSI
expression over the text when the stream is not a terminal.  None of that changes while a
command prints its report: `stream_echo` asks it once, with click's own functions, and then
writes each text as `click.echo` would (the text and a line break, ANSI styles stripped where
click strips them, the stream flushed after each text so standard output and standard error
keep their order on a terminal).  `tests/test_cli_echo.py` compares both on a pipe and a
terminal.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import click

try:  # click's own decisions (8.1 and later); a click without them: click.echo per text
    from click._compat import (WIN, _default_text_stderr, _default_text_stdout,
                               should_strip_ansi, strip_ansi)
    from click.globals import resolve_color_default
except ImportError:  # pragma: no cover - another click
    WIN = True

_ESCAPE = "\x1b"
"""What every ANSI style click strips starts with (`click._compat._ansi_re`): a text without
it has nothing to strip."""


def stream_echo(err: bool = False, color: bool | None = None) -> Callable[[str], None]:
    """A function printing a text and a line break to standard output (standard error with
    `err`) as `click.echo(text, err=err, color=color)` does, for as long as the stream and the
    context's color setting stay what they are now (a command's report).  On Windows click may
    also wrap the stream for ANSI styles: click.echo itself prints there."""
    if WIN:
        return partial(click.echo, err=err, color=color)
    stream = _default_text_stderr() if err else _default_text_stdout()
    if stream is None:  # no standard stream to write to (click.echo prints nothing then)
        return _nowhere
    strip = should_strip_ansi(stream, resolve_color_default(color))
    write, flush = stream.write, stream.flush

    def echo(text: str) -> None:
        out = text + "\n"
        if strip and _ESCAPE in out:
            out = strip_ansi(out)
        write(out)
        flush()

    return echo


def _nowhere(text: str) -> None:
    """Prints nothing: there is no stream."""
