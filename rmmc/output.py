"""Writing translations to files: one file per rule, named from its title.

Names are sanitised (ASCII letters, digits, `.`, `_`, `-`; no path separators, no leading
dots, so no traversal), made unique within a run, never overwrite an existing file unless
forced, and are written atomically (a temporary file in the same directory, then rename).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

from rmmc.backends import EXTENSIONS
from rmmc.compiler.diagnostics import Diagnostic, Severity

MAX_STEM = 100


def safe_stem(title: str | None, fallback: str) -> str:
    """A file-name stem from a rule title: ASCII, no separators, no leading dots."""
    text = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)[:MAX_STEM].strip("._-")
    return stem or fallback


def output_names(results: Iterable) -> dict[int, tuple[str, str]]:
    """Per successful result (by id): the file name `write_translations` gives it and its
    extension.  Names come from titles, unique within the batch (case-insensitively)."""
    used: set[str] = set()
    names: dict[int, tuple[str, str]] = {}
    for number, result in enumerate(results, start=1):
        if not result.ok:
            continue
        extension = getattr(result, "suffix", None) or EXTENSIONS.get(result.target, ".txt")
        stem = safe_stem(result.title, f"rule_{number}")
        name, n = stem + extension, 2
        while name.lower() in used:
            name, n = f"{stem}_{n}{extension}", n + 1
        used.add(name.lower())
        names[id(result)] = (name, extension)
    return names


def file_text(text: str) -> str:
    """What is written for a translation's text: it always ends with a line break."""
    return text if text.endswith("\n") else text + "\n"


def write_translations(results: Iterable, outdir: str, force: bool = False) -> dict[int, tuple[str | None, Diagnostic | None]]:
    """Write each successful translation; returns, per result (by id), the path written or
    the diagnostic saying why it was not."""
    directory = Path(outdir)
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    outcome: dict[int, tuple[str | None, Diagnostic | None]] = {}
    results = list(results)
    names = output_names(results)
    for result in results:
        if not result.ok:
            continue
        name, extension = names[id(result)]
        target = (directory / name)
        if target.resolve().parent != root:  # belt and braces: never outside outdir
            outcome[id(result)] = (None, _problem(result, f"refused to write outside {outdir}: {name}"))
            continue
        if target.exists() and not force:
            outcome[id(result)] = (None, _problem(result, f"{target} exists; not overwritten (use --force)"))
            continue
        companions = [(directory / (name[: -len(extension)] + suffix), text)
                      for suffix, text in getattr(result, "companions", ())]
        clash = next((c for c, _ in companions if c.exists() and not force), None)
        if clash is not None:
            outcome[id(result)] = (None, _problem(result, f"{clash} exists; not overwritten (use --force)"))
            continue
        _atomic_write(target, file_text(result.text))
        for companion, text in companions:
            _atomic_write(companion, file_text(text))
        outcome[id(result)] = (str(target), None)
    return outcome


def _problem(result, message: str) -> Diagnostic:
    path = result.document.path if result.document is not None else None
    return Diagnostic(Severity.ERROR, message, None, "output", path)


def _atomic_write(target: Path, text: str) -> None:
    import tempfile  # only when writing: keeps a cold start to stdout light

    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent,
                                         prefix=".rmmc-", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(text)
        os.replace(handle.name, target)
    except BaseException:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        raise
