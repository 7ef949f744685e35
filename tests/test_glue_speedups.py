"""The per-file glue's shortcuts, each against what it stands in for: reading a regular file in
one `read` when fstat's size is right (every SigmaHQ file, and files that grew, shrank or are
too large) and the blank-file test without stripping the text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
