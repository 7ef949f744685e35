"""The code Python's `dataclasses` generates for rmmc's own classes, compiled once and kept.

`@dataclass` writes each class's `__init__`, `__eq__`, `__hash__`, `__repr__` and (frozen)
`__setattr__` / `__delattr__` as source text and compiles it when the class is defined: on
Python 3.11 that compiling was a seventh of a cold `rmmc translate` (about 80 classes on the
way to translating one Sigma rule).  `install()` (the command line calls it first) keeps what
that text compiles to in the user's cache, as `.pyc` files keep a module's, so a cold start
only runs it.  The text is the key: a changed class generates other text and is compiled
again; only classes defined in rmmc's modules go through the cache, everything else is
compiled as always.  Nothing changes but the time: the same text compiles to the same code.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

_EXEC = builtins.exec
_MAX_ENTRIES = 2000  # more means old classes piled up: keep only the ones this run used

_codes: dict[str, Any] = {}
_used: set[str] = set()
_compiled = 0
_path: str | None = None


def install() -> None:
    """Route the compiling of rmmc's dataclasses through the cache (once per process); does
    nothing off CPython or without a writable cache folder."""
    global _path
    import dataclasses

    if sys.implementation.name != "cpython" or dataclasses.__dict__.get("exec") is _cached_exec:
        return
    from rmmc.user_cache import cache_folder, read_bytes

    folder = cache_folder()
    if folder is None:
        return
    import hashlib
    import marshal
    import os

    build = hashlib.sha256(f"dataclass-code|{sys.version}|{dataclasses.__file__}".encode()).hexdigest()[:16]
    _path = os.path.join(folder, f"dataclass-code-{build}.marshal")
    data = read_bytes(_path)
    if data:
        try:
            loaded = marshal.loads(data)
            if isinstance(loaded, dict):
                _codes.update(loaded)
        except (EOFError, ValueError, TypeError):
            pass
    dataclasses.exec = _cached_exec  # `exec` in dataclasses' module now finds this first
    import atexit

    atexit.register(_save)


def compiled_this_run() -> int:
    """How many generated functions this process compiled (0 when every one was cached)."""
    return _compiled


def _cached_exec(source: Any, globals: Any = None, locals: Any = None) -> Any:
    if isinstance(source, str) and isinstance(globals, dict) and \
            str(globals.get("__name__", "")).startswith("rmmc"):
        code = _codes.get(source)
        if code is None:
            global _compiled
            code = _codes[source] = compile(source, "<string>", "exec")
            _compiled += 1
        _used.add(source)
        return _EXEC(code, globals, locals)
    return _EXEC(source, globals, locals)


def _save() -> None:
    if not _compiled or _path is None:
        return
    import marshal

    from rmmc.user_cache import write_bytes

    keep = _codes if len(_codes) <= _MAX_ENTRIES else {k: _codes[k] for k in _used}
    write_bytes(_path, marshal.dumps(keep))
