"""`rmmc.cli_echo.stream_echo` against `click.echo`, which it stands in for in the report of
`rmmc translate` and `rmmc check`: the same bytes on each stream, to a pipe (ANSI styles
stripped) and to a terminal (kept), with the context's color forced on, off or left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys
    import click
    from rmmc.cli_echo import stream_echo

    TEXTS = ["plain", click.style("red", fg="red", bold=True), "a\\x1b[1mb\\x1b[0m c",
             "\\u00e9 \\u2713 lone \\x1b escape", "", "two\\nlines"]

    @click.command()
    @click.argument("how")
    @click.argument("color")
    def main(how, color):
        click.get_current_context().color = {"on": True, "off": False, "unset": None}[color]
        for err in (False, True, False):
            if how == "click":
                for text in TEXTS:
                    click.echo(text, err=err)
            else:
                echo = stream_echo(err=err)
                for text in TEXTS:
                    echo(text)

    main()
''')


def _run_piped(how: str, color: str) -> tuple[bytes, bytes]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, how, color], capture_output=True,
                          check=True)
    return done.stdout, done.stderr


def _run_on_terminal(how: str, color: str) -> bytes:
    """What a terminal shows (standard output and standard error both on it, in order)."""
    pty = pytest.importorskip("pty")
    main, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", SCRIPT, how, color],
                                   stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait() == 0
        return shown
    finally:
        os.close(main)
        if terminal != -1:
            os.close(terminal)


@pytest.mark.parametrize("color", ["unset", "on", "off"])
def test_same_as_click_echo_on_a_pipe(color):
    ours, theirs = _run_piped("ours", color), _run_piped("click", color)
    assert ours == theirs
    if color != "on":
        assert b"\x1b[" not in ours[0] and b"\x1b[" not in ours[1]  # stripped on a pipe
        assert b"lone \x1b escape" in ours[0]  # an escape that starts no style stays
    else:
        assert b"\x1b[31m" in ours[0]


@pytest.mark.parametrize("color", ["unset", "off"])
def test_same_as_click_echo_on_a_terminal(color):
    ours, theirs = _run_on_terminal("ours", color), _run_on_terminal("click", color)
    assert ours == theirs
    assert (b"\x1b[31m" in ours) == (color == "unset")  # kept on a terminal unless told off


def test_no_stream(monkeypatch):
    """Without a standard stream click.echo prints nothing; so does stream_echo."""
    from rmmc import cli_echo

    monkeypatch.setattr(cli_echo, "_default_text_stdout", lambda: None)
    cli_echo.stream_echo()("text")  # nothing to write to, nothing raised


def test_on_windows_click_echo_itself_prints(monkeypatch):
    """Where click may wrap the stream for ANSI styles (Windows), stream_echo is click.echo."""
    import click

    from rmmc import cli_echo

    monkeypatch.setattr(cli_echo, "WIN", True)
    echo = cli_echo.stream_echo(err=True)
    assert echo.func is click.echo and echo.keywords == {"err": True, "color": None}
