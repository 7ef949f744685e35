"""The two sides of `rmmc diff`: two rule files, two rules directories, or a rules tree at two
git revisions (`rmmc diff HEAD~1 HEAD -- rules/`).

Each side is a mapping from a rule file's name to its text: the path relative to the directory
(or, for git, to the current directory), or '' when two single files are compared.  For git
revisions only the files whose blobs differ are read (`git ls-tree`, then one `git cat-file
--batch` for all of them).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


class SourceError(ValueError):
    """A side that is neither a rule path nor a git revision, or git that failed."""


@dataclass(frozen=True)
class Sides:
    old: dict[str, str]  # name -> text, only the files that differ (and added / removed ones)
    new: dict[str, str]
    unchanged: int  # files with the same text on both sides


def read_sides(old: str, new: str, paths: tuple[str, ...] = ()) -> Sides:
    if os.path.exists(old) and os.path.exists(new) and not paths:
        return _paths(old, new)
    return _git(old, new, paths or (".",))


def _paths(old: str, new: str) -> Sides:
    if os.path.isfile(old) and os.path.isfile(new):
        a, b = _read(old), _read(new)
        return Sides({"": a}, {"": b}, 0) if a != b else Sides({}, {}, 1)
    if os.path.isdir(old) and os.path.isdir(new):
        a, b = _tree(old), _tree(new)
        return _split(a, b)
    raise SourceError("compare two files or two directories (or give two git revisions)")


def _tree(root: str) -> dict[str, str]:
    from rmmc.compiler.documents import iter_rule_files

    return {Path(os.path.relpath(p, root)).as_posix(): _read(p) for p in iter_rule_files([root])}


def _read(path: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _split(a: dict[str, str], b: dict[str, str]) -> Sides:
    same = {k for k in a.keys() & b.keys() if a[k] == b[k]}
    return Sides({k: v for k, v in a.items() if k not in same},
                 {k: v for k, v in b.items() if k not in same}, len(same))


def _git_run(args: list[str], data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", *args], input=data, capture_output=True, check=False)
    except OSError as exc:
        raise SourceError(f"cannot run git: {exc.strerror or exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"git {' '.join(args[:2])}: {message[-1] if message else 'failed'}")
    return done.stdout


def _git(old: str, new: str, paths: tuple[str, ...]) -> Sides:
    from rmmc.compiler.documents import RULE_EXTENSIONS

    for revision in (old, new):
        try:
            _git_run(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"])
        except SourceError:
            raise SourceError(f"{revision!r} is neither a rule file or directory nor a git "
                              "revision") from None
    top = _git_run(["rev-parse", "--show-toplevel"]).decode().strip()
    listings = []
    for revision in (old, new):
        entries: dict[str, str] = {}
        raw = _git_run(["ls-tree", "-r", "-z", "--full-name", revision, "--", *paths])
        for record in raw.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            kind, oid = meta.split()[1:3]
            path = name.decode("utf-8", "surrogateescape")
            if kind == b"blob" and os.path.splitext(path)[1].lower() in RULE_EXTENSIONS:
                entries[path] = oid.decode()
        listings.append(entries)
    before, after = listings
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    wanted = sorted({before[p] for p in changed if p in before} | {after[p] for p in changed if p in after})
    blobs = _blobs(wanted)
    here = os.getcwd()

    def name(path: str) -> str:
        return Path(os.path.relpath(os.path.join(top, path), here)).as_posix()

    unchanged = len(before.keys() & after.keys()) - len([p for p in changed if p in before and p in after])
    return Sides({name(p): blobs[before[p]] for p in changed if p in before},
                 {name(p): blobs[after[p]] for p in changed if p in after}, unchanged)


def _blobs(oids: list[str]) -> dict[str, str]:
    """The texts of these blobs, read with one `git cat-file --batch`."""
    if not oids:
        return {}
    out = _git_run(["cat-file", "--batch"], ("\n".join(oids) + "\n").encode())
    texts, position = {}, 0
    for oid in oids:
        header_end = out.index(b"\n", position)
        size = int(out[position:header_end].split()[2])
        start = header_end + 1
        texts[oid] = out[start:start + size].decode("utf-8", errors="replace")
        position = start + size + 1
    return texts
