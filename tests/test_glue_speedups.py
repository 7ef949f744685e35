"""The per-file glue's shortcuts, each against what it stands in for: reading a regular file in
one `read` when fstat's size is right (every SigmaHQ file, and files that grew, shrank or are
too large), the blank-file test without stripping the text, and the report's batched
`click.echo` against one `click.echo` per text (bytes and the order of the two streams)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import click
import pytest

from rmmc import cli
from rmmc.compiler import documents


def _read(path: Path, size: int | None = None) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return documents._read_regular(fd, os.fstat(fd).st_size if size is None else size)
    finally:
        os.close(fd)


def test_one_read_gives_every_sigmahq_file_whole(shared_dir: Path) -> None:
    rules = shared_dir / "corpus" / "sigma" / "rules"
    if not rules.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    paths = sorted(rules.rglob("*.yml"))
    assert len(paths) > 1000
    for path in paths:
        assert _read(path) == path.read_bytes(), path


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 500])
def test_a_size_fstat_got_wrong_still_reads_the_whole_file(tmp_path: Path, size: int) -> None:
    """As if the file grew (size too small) or shrank (too large) between fstat and read."""
    path = tmp_path / "rule.kql"
    path.write_bytes(b"0123456789")
    assert _read(path, size) == b"0123456789"


def test_a_file_larger_than_the_limit_reads_one_byte_past_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(documents, "MAX_BYTES", 16)
    path = tmp_path / "big.kql"
    path.write_bytes(b"x" * 100)
    for size in (0, 10, 16, 17, 100, 200):
        assert _read(path, size) == b"x" * 17
    assert documents.read_path(path).diagnostics[0].code == "doc-too-large"


def test_blank_test_agrees_with_strip() -> None:
    """`not body or body.isspace()` is `not body.strip()` for every character."""
    for code in range(0x3100):
        for text in (chr(code), chr(code) * 3, " " + chr(code), chr(code) + "\n"):
            assert (not text or text.isspace()) == (not text.strip()), hex(code)
    for text in ("", "\ufeff", "\ufeff \n", "\ufeff\ufeff", " \t\r\n\x0b\x0c\x1c\u2028\u3000"):
        code = documents.read_text(text, "t.kql").diagnostics[0].code
        assert code == "doc-empty", repr(text)
    assert documents.read_text("\ufeff x", "t.kql").documents


class _Log(io.BytesIO):
    """A stream's bytes (not a terminal: click strips ANSI escapes), each write logged with the
    stream's name."""

    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log

    def write(self, data) -> int:
        self.log.append((self.name, bytes(data)))
        return super().write(data)


def _stream(name: str, log: list) -> io.TextIOWrapper:
    return io.TextIOWrapper(_Log(name, log), encoding="utf-8", write_through=True)


def _run(texts, batched: bool, monkeypatch) -> tuple[str, str, list]:
    """Each (text, err) written, batched or by one `click.echo` each: (stdout, stderr, the
    writes as (stream, bytes) with consecutive writes to one stream merged)."""
    log: list = []
    out, err = _stream("out", log), _stream("err", log)
    with monkeypatch.context() as patch:
        patch.setattr("sys.stdout", out)
        patch.setattr("sys.stderr", err)
        if batched:
            echo = cli.Echo()
            for text, to_err in texts:
                echo(text, err=to_err)
            echo.flush()
        else:
            for text, to_err in texts:
                click.echo(text, err=to_err)
    merged: list = []
    for name, text in log:
        if merged and merged[-1][0] == name:
            merged[-1] = (name, merged[-1][1] + text)
        else:
            merged.append((name, text))
    return out.buffer.getvalue(), err.buffer.getvalue(), merged


def test_batched_echo_writes_what_one_echo_per_text_writes(monkeypatch) -> None:
    texts = [("index=main | search a=1", False), ("", False), ("---", False),
             ("\x1b[31mred\x1b[0m text", False), ("\x1b[", False), ("1m", False),
             ("t.yml:1:1: error: \x1b[1mbold\x1b[0m\n    title: x\n    ^", True), ("", True),
             ("second", False), ("line\n", False), ("tail \x1b[2K", True),
             ("y" * (cli.Echo.LIMIT + 10), False), ("after the limit", False),
             ("é ✓ \u2028 \x00", False), ("summary", True)]
    assert _run(texts, True, monkeypatch) == _run(texts, False, monkeypatch)
    for cut in range(len(texts)):
        assert _run(texts[cut:], True, monkeypatch) == _run(texts[cut:], False, monkeypatch)


def test_the_translate_report_is_written_as_before(shared_dir: Path, monkeypatch) -> None:
    """The whole `translate` report of some SigmaHQ rules (outputs and diagnostics), batched
    and by one `click.echo` per text."""
    from rmmc.translation import translate_file

    folder = shared_dir / "corpus" / "sigma" / "rules" / "windows" / "builtin" / "security"
    if not folder.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    results = [r for path in sorted(folder.glob("*.yml"))[:60] for r in translate_file(str(path), "splunk")]
    assert any(r.text for r in results) and any(r.diagnostics for r in results)
    sources = {r.document.path: r.document.source for r in results if r.document is not None}

    def report(batched: bool):
        class OneEach(cli.Echo):
            def __call__(self, text: str, err: bool = False) -> None:
                click.echo(text, err=err)

        log: list = []
        with monkeypatch.context() as patch:
            patch.setattr("sys.stdout", _stream("out", log))
            patch.setattr("sys.stderr", _stream("err", log))
            if not batched:
                patch.setattr(cli, "Echo", OneEach)
            cli._report(results, sources, {}, None, "text")
        return b"".join(data for name, data in log if name == "out"), \
            b"".join(data for name, data in log if name == "err")

    assert report(True) == report(False)
