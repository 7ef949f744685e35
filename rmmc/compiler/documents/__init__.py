"""Rule-document readers: files in, `RuleDocument`s and diagnostics out.

`read_path` / `read_text` read one file (bare KQL, Sentinel YAML, Sigma YAML, hunt document
or Markdown, told apart by content) into a `FileResult`; `iter_rule_files` expands the paths
given on a command line into the rule files they hold.  Nothing here raises on bad input:
problems come back as diagnostics.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Span, error
from rmmc.compiler.documents.model import DocumentKind, FalsePositiveScenario, RuleDocument
from rmmc.compiler.documents.result import FileResult
from rmmc.compiler.documents.sigma_yaml import read_sigma_document
from rmmc.compiler.documents.sniff import classify, sniff

if TYPE_CHECKING:  # (only named in annotations: importing pathlib costs a cold start ~2%)
    from pathlib import Path

__all__ = ["DocumentKind", "FalsePositiveScenario", "FileResult", "RuleDocument",
           "RULE_EXTENSIONS", "iter_rule_files", "read_bytes", "read_path", "read_text",
           "sniff"]

_LONE_CR = re.compile(r"\r(?!\n)")
RULE_EXTENSIONS = frozenset({".kql", ".csl", ".txt", ".yaml", ".yml", ".md"})
SKIP_DIRS = frozenset({"node_modules", ".venv", "venv", "__pycache__", ".git"})
MAX_BYTES = 64 * 1024 * 1024
STDIN = "-"
STDIN_NAME = "<stdin>"
# O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then says what it is.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)

Reader = Callable[[str, str, LineIndex], FileResult]


def iter_rule_files(paths: Iterable[str]) -> Iterator[str]:
    """Each path as given, directories expanded recursively (sorted) into the rule files
    they hold; hidden entries, `node_modules`, virtualenvs and the environment file at the
    root of a rules tree (`rmmc.yml`, see `rmmc.environments`) are skipped.  `-` (stdin) and
    paths that do not exist are passed through, so the reader can report on them."""
    seen: set[str] = set()
    for given in paths:
        given = str(given)
        if given != STDIN and os.path.isdir(given):
            found: Iterable[str] = _walk(given)
        else:
            found = (given,)
        for path in found:
            if path not in seen:
                seen.add(path)
                yield path


def _walk(root: str) -> Iterator[str]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and d not in SKIP_DIRS)
        # `os.path.join(directory, name)` is `prefix + name`: the separator is decided once
        # per directory (join is three Python calls per file)
        prefix = os.path.join(directory, "")
        for name in sorted(filenames):
            if name == "rmmc.yml" and directory == root:
                continue  # the rules tree's environment, not a rule
            if not name.startswith(".") and _extension(name) in RULE_EXTENSIONS:
                yield prefix + name


def _extension(name: str) -> str:
    """`os.path.splitext(name)[1].lower()` for a file name that does not start with a dot
    (splitext is three Python calls per file)."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def read_path(path: str | Path, kind: DocumentKind | str | None = None) -> FileResult:
    """Read one file (`-` reads standard input) into its rules and diagnostics.  Only
    regular files are read: a FIFO, socket or device (say, in a folder being searched) is
    refused with a diagnostic rather than waited on."""
    name = str(path)
    if name == STDIN:
        try:
            data = sys.stdin.buffer.read(MAX_BYTES + 1)
        except (OSError, ValueError, AttributeError) as exc:
            return _failed(STDIN_NAME, f"cannot read standard input: {exc}", "doc-unreadable")
        return read_bytes(data, STDIN_NAME, kind)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return _failed(name, f"cannot read file: {reason}", "doc-unreadable")
    try:
        status = os.fstat(fd)
        mode = status.st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                return _failed(name, "cannot read file: Is a directory", "doc-unreadable")
            return _failed(name, f"not a regular file ({_not_regular(mode)}): not read",
                           "doc-not-regular")
        data = _read_regular(fd, status.st_size)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return _failed(name, f"cannot read file: {reason}", "doc-unreadable")
    finally:
        os.close(fd)
    return read_bytes(data, name, kind)


def _read_regular(fd: int, size: int) -> bytes:
    """A regular file's bytes (MAX_BYTES + 1 at most: enough to see that it is too large),
    `size` being what fstat said it holds.  Asking for MAX_BYTES + 1 at once allocates that
    much (64 MB) for every file; `size` plus one byte, to see the end, is enough unless the file
    grew.  One read that returns exactly `size` bytes is the whole file (had it grown, the read
    would have returned the byte more), so most files take one read, not a second one to see
    the end.  Read from the descriptor itself: a file object costs more system calls."""
    first = min(size + 1, MAX_BYTES + 1)
    data = os.read(fd, first)
    if len(data) == size:
        return data
    if len(data) < size:  # a short read (or the file shrank since fstat): read on to its end
        data += _read_upto(fd, first - len(data))
    if size < len(data) <= MAX_BYTES:  # it grew since fstat
        data += _read_upto(fd, MAX_BYTES + 1 - len(data))
    return data


def _read_upto(fd: int, size: int) -> bytes:
    """Up to `size` bytes from `fd`: fewer only at the end of the file."""
    data = os.read(fd, size)
    if not data or len(data) == size:
        return data
    chunks = [data]
    size -= len(data)
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _not_regular(mode: int) -> str:
    """What a file that is neither regular nor a directory is ("a FIFO" ...)."""
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a regular file"


def read_bytes(data: bytes, path: str = STDIN_NAME,
               kind: DocumentKind | str | None = None) -> FileResult:
    """Decode (UTF-8, BOM kept in the text so offsets stay true) and read."""
    if len(data) > MAX_BYTES:
        return _failed(path, f"file is larger than {MAX_BYTES // (1024 * 1024)} MB; not read",
                       "doc-too-large")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _failed(path, "file is UTF-16 encoded; only UTF-8 is supported", "doc-encoding",
                       Span(0, 2, 1, 1))
    nul = data.find(b"\x00")
    if nul != -1:
        return _failed(path, f"file looks binary (a NUL byte at byte offset {nul})",
                       "doc-binary", _prefix_span(data, nul))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _failed(path, f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte "
                       f"offset {exc.start})", "doc-encoding", _prefix_span(data, exc.start))
    return read_text(text, path, kind, encoded=data)


def read_text(text: str, path: str = STDIN_NAME,
              kind: DocumentKind | str | None = None, *,
              encoded: bytes | None = None) -> FileResult:
    """Read a decoded text; `kind` forces a reader, else the content decides.  A lone
    carriage return (old Mac line ends) is a line break in KQL, YAML and Markdown alike: it is
    read as `\\n`, which keeps every offset where it was.  `encoded`: the UTF-8 bytes `text`
    was decoded from, when the caller has them (the YAML composer reads bytes: it need not
    encode the text again)."""
    if "\r" in text:
        fixed = _LONE_CR.sub("\n", text)
        if fixed != text:
            text, encoded = fixed, None
    source = LineIndex(text)
    if "\x00" in text:
        return _failed(path, "file looks binary (it contains NUL characters)", "doc-binary",
                       source.span(text.index("\x00")))
    body = text.lstrip("\ufeff")
    if not body or body.isspace():  # `not body.strip()`, without copying the text
        return _failed(path, "file is empty" if not body else "file is blank",
                       "doc-empty", source.span(0))
    try:
        classified = classify(text, path, source, encoded) if kind is None else None
        chosen = DocumentKind(kind) if kind is not None else classified.kind
    except ValueError:
        return _failed(path, f"unknown document kind {kind!r}", "doc-kind")
    try:
        if classified is not None and classified.yaml_nodes is not None:
            result = read_sigma_document(text, path, source, classified.yaml_nodes)
        else:
            result = _reader(chosen)(text, path, source)
    except Exception as exc:  # a reader bug must not become a traceback for the user
        return _failed(path, f"internal error while reading the file as {chosen.value}: "
                       f"{type(exc).__name__}: {exc}", "doc-internal", kind=chosen)
    return result.with_path(path)


def _reader(kind: DocumentKind) -> Reader:
    if kind is DocumentKind.SENTINEL_YAML:
        from rmmc.compiler.documents.sentinel_yaml import read_sentinel_yaml
        return read_sentinel_yaml
    if kind is DocumentKind.HUNT:
        from rmmc.compiler.documents.hunt import read_hunt
        return read_hunt
    if kind is DocumentKind.SIGMA:
        return read_sigma_document
    if kind is DocumentKind.MARKDOWN:
        from rmmc.compiler.documents.markdown import read_markdown
        return read_markdown
    from rmmc.compiler.documents.plain import read_plain
    return read_plain


def _prefix_span(data: bytes, at: int) -> Span:
    """Where byte offset `at` falls, as character offset / line / column."""
    prefix = data[:at].decode("utf-8", errors="replace")
    line, column = LineIndex(prefix).position(len(prefix))
    return Span(len(prefix), len(prefix) + 1, line, column)


def _failed(path: str, message: str, code: str, span: Span | None = None,
            kind: DocumentKind | None = None) -> FileResult:
    diagnostic: Diagnostic = error(message, span, code).with_path(path)
    return FileResult(path, (), (diagnostic,), kind)
