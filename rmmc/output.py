"""Writing translations to files: the one place rmmc writes files.

Each rule becomes one file named from its title, with its companion files beside it (a Sigma
rule's `<rule>.filters.yml`).  Names are sanitised (ASCII letters, digits, `.`, `_`, `-`; no
path separators, no leading dots, so no traversal; no Windows device names such as `CON` or
`nul`) and planned for the whole run before anything is written, case-insensitively and with
the companions, so a rule titled `Foo.filters` cannot land on rule `Foo`'s filter file.

Without `--force` each final name is reserved with an exclusive create (`O_CREAT | O_EXCL`)
before it is written, so an existing file is never overwritten, even by another rmmc writing
into the same directory at the same time: one of them gets the name, the other says it exists.
The text goes to a temporary file in the same directory, which then replaces the reservation
in one rename.  Files are created as any program creates them (0666 less the umask).  A file
that cannot be written is an error for its rule only (read-only directory, a directory in the
way, a path that is not a directory): the batch goes on; without `--force` a rule's files are
all written or none of them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from rmmc.backends import EXTENSIONS
from rmmc.compiler.diagnostics import Diagnostic, Severity

MAX_STEM = 100
MODE = 0o666  # less the umask, as the kernel applies it
# Device names Windows will not open as files, whatever the extension (`CON.yml`, `nul.txt`).
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
                             | {f"{d}{n}" for d in ("COM", "LPT") for n in range(10)})


def safe_stem(title: str | None, fallback: str) -> str:
    """A file-name stem from a rule title: ASCII, no separators, no leading dots, no Windows
    device name (`CON` becomes `CON_`)."""
    text = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)[:MAX_STEM].strip("._-")
    stem = stem or fallback
    head, dot, tail = stem.partition(".")
    if head.upper() in WINDOWS_RESERVED:
        stem = head + "_" + dot + tail
    return stem


@dataclass(frozen=True)
class _Planned:
    """One rule's files: the rule first, then its companions (final paths, texts)."""

    result: object
    files: tuple[tuple[Path, str], ...]


def write_translations(results: Iterable, outdir: str, force: bool = False) -> dict[int, tuple[str | None, Diagnostic | None]]:
    """Write each successful translation; returns, per result (by id), the path written or
    the diagnostic saying why it was not."""
    results = list(results)
    outcome: dict[int, tuple[str | None, Diagnostic | None]] = {}
    directory = Path(outdir)
    problem = _make_directory(directory)
    for plan in _plan(results, directory):
        if problem is not None:
            outcome[id(plan.result)] = (None, _problem(plan.result, problem))
            continue
        failure = _write_rule(plan.files, force)
        outcome[id(plan.result)] = ((str(plan.files[0][0]), None) if failure is None
                                    else (None, _problem(plan.result, failure)))
    return outcome


def _make_directory(directory: Path) -> str | None:
    """Why the output directory cannot be used, or None once it exists."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the output directory {directory}: {_reason(exc)}"
    if not directory.is_dir():
        return f"the output path {directory} is not a directory"
    return None


def _plan(results: list, directory: Path) -> list[_Planned]:
    """Every successful result's files, named for the whole run before anything is written:
    no two files share a name (compared without case, as Windows and macOS compare), a
    rule's companions included; a clash numbers the later rule's stem (`Foo_2`)."""
    used: set[str] = set()
    plans = []
    for number, result in enumerate(results, start=1):
        if not result.ok:
            continue
        extension = getattr(result, "suffix", None) or EXTENSIONS.get(result.target, ".txt")
        companions = tuple(getattr(result, "companions", ()))
        base = safe_stem(result.title, f"rule_{number}")
        stem, n = base, 2
        while any(name.lower() in used for name in _names(stem, extension, companions)):
            stem, n = f"{base}_{n}", n + 1
        names = _names(stem, extension, companions)
        used.update(name.lower() for name in names)
        texts = [result.text] + [text for _, text in companions]
        plans.append(_Planned(result, tuple((directory / name, file_text(text))
                                            for name, text in zip(names, texts))))
    return plans


def plan_files(results: Iterable, outdir: str | Path) -> list[tuple[object, tuple[tuple[Path, str], ...]]]:
    """Each successful result with its files (path, text), named as `write_translations`
    names them, nothing written: `rmmc build` compares them with what is on disk first."""
    return [(plan.result, plan.files) for plan in _plan(list(results), Path(outdir))]


def write_files(files: Iterable[tuple[Path, str]], force: bool = False) -> str | None:
    """Write one rule's planned files, all or none (each name reserved by an exclusive create
    unless `force`); why not, or None."""
    return _write_rule(tuple(files), force)


def output_names(results: Iterable) -> dict[int, tuple[str, str]]:
    """Per successful result (by id): the file name `write_translations` gives it and its
    extension (the playground's downloads are named the same)."""
    out: dict[int, tuple[str, str]] = {}
    for plan in _plan(list(results), Path(".")):
        result = plan.result
        extension = getattr(result, "suffix", None) or EXTENSIONS.get(result.target, ".txt")
        out[id(result)] = (plan.files[0][0].name, extension)
    return out


def file_text(text: str) -> str:
    """What is written for a translation's text: it always ends with a line break."""
    return text if text.endswith("\n") else text + "\n"


def _names(stem: str, extension: str, companions: tuple) -> list[str]:
    return [stem + extension] + [stem + suffix for suffix, _ in companions]


def _write_rule(files: tuple[tuple[Path, str], ...], force: bool) -> str | None:
    """Write one rule's files, all or none; why not, or None."""
    reserved: list[Path] = []
    if not force:
        for target, _ in files:
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, MODE))
            except FileExistsError:
                _remove(reserved)
                return f"{target} exists; not overwritten (use --force)"
            except OSError as exc:
                _remove(reserved)
                return f"cannot write {target}: {_reason(exc)}"
            reserved.append(target)
    for target, text in files:
        try:
            _replace_with(target, text.encode("utf-8"))
        except (OSError, UnicodeError) as exc:
            _remove(reserved)
            return f"cannot write {target}: {_reason(exc)}"
    return None


def _replace_with(target: Path, data: bytes) -> None:
    """Write `data` to a new temporary file beside `target`, then rename it onto `target` (a
    reader sees the old file or the whole new one, never part of it).  The temporary file is
    written through the descriptor its exclusive create gave (no second open, no buffered
    file object: a run writes thousands of small files, and their system calls were a sixth
    of its CPU time)."""
    descriptor, temporary = _temporary_beside(target)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
        finally:
            os.close(descriptor)
        os.replace(temporary, target)
    except BaseException:
        _remove([temporary])
        raise


def _temporary_beside(target: Path) -> tuple[int, str]:
    """A new temporary file beside `target`, created exclusively: (its open descriptor, its path)."""
    import secrets  # only when writing: keeps a cold start to stdout light

    directory = os.path.dirname(target)
    for _ in range(100):
        candidate = os.path.join(directory, f".rmmc-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(candidate, _NEW_FILE, MODE), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _problem(result, message: str) -> Diagnostic:
    path = result.document.path if result.document is not None else None
    return Diagnostic(Severity.ERROR, message, None, "output", path)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # an exclusive create never follows a link anyway
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0)
