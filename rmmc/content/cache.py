"""The build cache: what one rule file gave for one environment, stored under a content hash.

The key is the SHA-256 of everything the result depends on: the file's bytes and its path in
the rules tree, the environment (its fingerprint), the build options, rmmc's version and a
hash of rmmc's own code (so a development checkout whose version did not move still never
reuses a result an older compiler made).  An entry is one JSON file, written to a temporary
name and renamed into place, so a reader sees a whole entry or none; an entry that cannot be
read is a miss.  Nothing else is trusted: a hit is a file named by the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from rmmc.content.records import RuleResult, TargetResult, sha256_bytes, sha256_text

DEFAULT_DIRECTORY = ".rmmc_cache"
FORMAT = 1


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of rmmc's installed code and data (every .py, .lark and .json of the package)."""
    import rmmc

    root = Path(rmmc.__file__).parent
    digest = []
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".lark", ".json") and "__pycache__" not in path.parts:
            try:
                digest.append(f"{path.relative_to(root).as_posix()}:{sha256_bytes(path.read_bytes())}")
            except OSError:
                continue
    return sha256_text("\n".join(digest))


def cache_key(relative: str, source_sha256: str, env_fingerprint: str, options: dict[str, Any]) -> str:
    from rmmc import __version__

    data = json.dumps({"format": FORMAT, "rmmc": __version__, "code": code_fingerprint(),
                       "path": relative, "source": source_sha256, "environment": env_fingerprint,
                       "options": options}, sort_keys=True)
    return sha256_text(data)


class BuildCache:
    """Entries under `directory` (None: no cache; every lookup misses, nothing is stored)."""

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = Path(directory) if directory is not None else None

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[RuleResult, ...] | None:
        if self.directory is None:
            return None
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            return tuple(_rule(r) for r in data["rules"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, rules: tuple[RuleResult, ...]) -> None:
        """Store an entry; a cache that cannot be written only costs the next run time."""
        if self.directory is None:
            return
        path = self._path(key)
        data = json.dumps({"rules": [asdict(r) for r in rules]}, sort_keys=True, ensure_ascii=False)
        temporary = path.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(data, encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            try:
                temporary.unlink()
            except OSError:
                pass


def _rule(data: dict[str, Any]) -> RuleResult:
    targets = tuple(TargetResult(**{**t, "companions": tuple(tuple(c) for c in t["companions"]),
                                    "diagnostics": tuple(t["diagnostics"]),
                                    "companion_files": tuple(tuple(c) for c in t["companion_files"])})
                    for t in data["targets"])
    return RuleResult(**{**data, "diagnostics": tuple(data["diagnostics"]), "targets": targets})
