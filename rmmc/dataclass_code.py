"""The code Python's `dataclasses` generates for rmmc's own classes, compiled once and kept.

`@dataclass` writes each class's `__init__`, `__eq__`, `__hash__`, `__repr__` and (frozen)
`__setattr__` / `__delattr__` as source text and compiles it when the class is defined: on
Python 3.11 that compiling was a quarter of a cold `rmmc translate` (about 80 classes on the
way to translating one Sigma rule).  `install()` (the command line calls it first) keeps what
that text compiles to in the user's cache, one file per module as `.pyc` files are, so a cold
start only runs it.  The text is the key: a changed class generates other text and is compiled
again, and a module's file is rewritten with what its classes use now, so nothing stale piles
up; only a module that is imported has its file read.  Only classes defined in rmmc's modules go
through the cache, everything else is compiled as always.  Nothing changes but the time: the
same text compiles to the same code.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

_EXEC = builtins.exec

_folder: str | None = None
_kept: dict[str, dict[str, list]] = {}  # module -> text -> [code, uses left] from its file (read when first needed)
_read: dict[str, dict[tuple[int, int], int]] = {}  # module -> (hash, length) of each text read -> uses
_new: dict[str, dict[str, list]] = {}   # module -> text -> [code, uses] compiled this run
_changed: set[str] = set()              # modules one of whose classes was compiled this run
_compiled = 0


def install() -> None:
    """Route the compiling of rmmc's dataclasses through the cache (once per process); does
    nothing off CPython or without a writable cache folder."""
    global _folder
    import dataclasses

    if sys.implementation.name != "cpython" or dataclasses.__dict__.get("exec") is _cached_exec:
        return
    from rmmc.user_cache import cache_folder, digest

    folder = cache_folder()
    if folder is None:
        return
    import os

    build = digest(f"dataclass-code|{sys.version}|{dataclasses.__file__}")
    _folder = os.path.join(folder, f"dataclass-code-{build}")
    try:
        os.makedirs(_folder, exist_ok=True)
    except OSError:
        _folder = None
        return
    dataclasses.exec = _cached_exec  # `exec` in dataclasses' module now finds this first
    import atexit

    atexit.register(_save)


def run(source: str, namespace: dict[str, Any]) -> None:
    """Execute code rmmc generates for its classes (`source`, in `namespace`, whose `__name__`
    is the module the classes are in) through the same cache, once `install()` has run."""
    if _folder is not None:
        _cached_exec(source, namespace)
    else:
        _EXEC(source, namespace)


def compiled_this_run() -> int:
    """How many generated functions this process compiled (0 when every one was kept)."""
    return _compiled


def _path(module: str) -> str:
    import os

    return os.path.join(_folder or "", f"{module}.marshal")


def _entries(module: str) -> dict[str, list]:
    """Module `module`'s file: each text with its code and how many of its classes generate it
    (a text held until its last use, then dropped)."""
    entries = _kept.get(module)
    if entries is None:
        from rmmc.user_cache import read_dict

        try:
            entries = {k: list(v) for k, v in (read_dict(_path(module)) or {}).items()}
        except TypeError:  # a damaged entry: compiled again
            entries = {}
        _kept[module] = entries
    return entries


def _cached_exec(source: Any, globals: Any = None, locals: Any = None) -> Any:
    module = globals.get("__name__") if isinstance(globals, dict) else None
    if isinstance(source, str) and isinstance(module, str) and module.startswith("rmmc"):
        entries = _entries(module)
        entry = entries.get(source)
        if entry is not None:
            code = entry[0]
            entry[1] -= 1
            if entry[1] <= 0:
                del entries[source]
            read = _read.setdefault(module, {})
            key = (hash(source), len(source))
            read[key] = read.get(key, 0) + 1
        else:
            new = _new.setdefault(module, {})
            made = new.get(source)
            if made is None:
                global _compiled
                made = new[source] = [compile(source, "<string>", "exec"), 0]
                _changed.add(module)
                _compiled += 1
            made[1] += 1
            code = made[0]
        return _EXEC(code, globals, locals)
    return _EXEC(source, globals, locals)


def _save() -> None:
    if _folder is None:
        return
    import marshal

    from rmmc.user_cache import write_bytes

    for module in _changed:  # what this run's classes used: read from the file again, and new
        _kept.pop(module, None)
        read = _read.get(module, {})
        entries = {}
        for source, (code, _) in _entries(module).items():
            uses = read.get((hash(source), len(source)))
            if uses:
                entries[source] = (code, uses)
        for source, (code, uses) in _new[module].items():
            old = entries.get(source)
            entries[source] = (code, uses + (old[1] if old else 0))
        write_bytes(_path(module), marshal.dumps(entries))
