"""The regular expressions modules compile when imported, compiled once and kept.

`re` compiles a pattern in Python code (parsing it, then writing the `_sre` engine's code), and
every module that compiles its patterns when it is imported does so again in each process:
PyYAML's resolver and reader, click, rmmc's own tables.  On the way to translating one Sigma
rule that was about a fifth of a cold `rmmc translate`.  `install()` (the `rmmc` command calls
it first) keeps, in the user's cache, what `re`'s compiler hands `_sre.compile` for each such
pattern (its engine code, flags and groups), so the next run makes the same pattern object in
one call.  An entry is kept only when the pattern it makes equals the one `re` compiled; the
file is per Python build (its version, `_sre.MAGIC`, `CODESIZE`).  Patterns compiled while no
module is being imported (a rule's own `|re` values, per rule) are compiled as always and not
kept: the file holds what start-up needs, not what the rules of one run needed.
"""

from __future__ import annotations

import sys
from typing import Any

MAX_KEPT = 2000
"""More entries than this (a module compiling patterns from data when imported) and the file
starts again from this run's."""

_path: str | None = None
_kept: dict[tuple[str, int], tuple] = {}  # (pattern, flags) -> _sre.compile's arguments (code as bytes)
_added = 0
_compile: Any = None  # re's own compiler
_DEBUG = 128  # re.DEBUG


def install() -> None:
    """Route `re`'s compiling through the cache (once per process); does nothing off CPython
    or without a writable cache folder."""
    global _path, _compile
    if _path is not None or sys.implementation.name != "cpython":
        return
    import _sre
    import os
    from re import _compiler

    from rmmc.user_cache import cache_folder, digest, read_dict

    folder = cache_folder()
    if folder is None:
        return
    _path = os.path.join(folder, f"regex-code-{digest(f'{sys.version}|{_sre.MAGIC}|{_sre.CODESIZE}')}.marshal")
    _kept.update(read_dict(_path) or {})
    _compile = _compiler.compile
    _compiler.compile = _cached_compile  # what `re._compile` calls on a miss of its own cache


def kept_this_run() -> int:
    """How many patterns this process compiled and added to the cache."""
    return _added


def _cached_compile(pattern: Any, flags: int = 0) -> Any:
    """`re`'s compiler, answered from the cache where it can be."""
    if not isinstance(pattern, (str, bytes)) or flags & _DEBUG:  # (re.DEBUG prints while compiling)
        return _compile(pattern, flags)
    flags = int(flags)
    args = _kept.get((pattern, flags))
    if args is not None:
        made = _made(args)
        if made is not None:
            return made
    compiled = _compile(pattern, flags)
    if _importing():
        _keep(pattern, flags, compiled)
    return compiled


def _made(args: tuple) -> Any:
    """The pattern object from a kept entry (None when it cannot be made: a damaged file)."""
    return made(args)


def made(args: tuple, intern: bool = False) -> Any:
    """The pattern object `_sre.compile` makes of `args` (as `engine_args` gives them), group
    names interned when `intern`; None when it cannot be made (a damaged cache file)."""
    try:
        import _sre
        from array import array

        code = array("I")
        code.frombytes(args[2])  # kept as bytes: loading a cache file stays a copy
        groupindex, indexgroup = dict(args[4]), args[5]
        if intern:
            groupindex = {sys.intern(name): index for name, index in groupindex.items()}
            indexgroup = tuple(name if name is None else sys.intern(name) for name in indexgroup)
        return _sre.compile(args[0], args[1], code.tolist(), args[3], groupindex, indexgroup)
    except Exception:
        return None


def engine_args(pattern: str | bytes, flags: int, compiled: Any) -> tuple | None:
    """What `re`'s compiler hands `_sre.compile` for `pattern` (its engine code packed as bytes,
    flags and groups), when making the pattern again from them gives `compiled`; else None
    (another Python's internals: nothing to keep)."""
    try:
        import _sre
        from array import array
        from re import _compiler, _parser

        parsed = _parser.parse(pattern, flags)
        code = _compiler._code(parsed, flags)
        groupindex = dict(parsed.state.groupdict)
        indexgroup = [None] * parsed.state.groups
        for name, index in groupindex.items():
            indexgroup[index] = name
        packed = array("I", code)
        if packed.itemsize != _sre.CODESIZE:
            return None
        args = (pattern, int(flags | parsed.state.flags), packed.tobytes(), parsed.state.groups - 1,
                groupindex, tuple(indexgroup))
    except Exception:
        return None
    return args if made(args) == compiled else None


def _importing() -> bool:
    """Whether a module (other than the script) is running its top level: the pattern is one
    every process that imports it compiles."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
            return True
        frame = frame.f_back
    return False


def _keep(pattern: str | bytes, flags: int, compiled: Any) -> None:
    """Remember what `re` gave `_sre.compile` for `pattern`, when making it again gives the
    same pattern object (else, another Python's internals: nothing is kept)."""
    global _added
    args = engine_args(pattern, flags, compiled)
    if args is None:
        return
    if len(_kept) >= MAX_KEPT:
        _kept.clear()
    _kept[(pattern, flags)] = args
    if not _added:
        import atexit

        atexit.register(_save)
    _added += 1


def _save() -> None:
    """Write the entries (this run's added to what another run may have written meanwhile)."""
    if not _added or _path is None:
        return
    import marshal

    from rmmc.user_cache import read_dict, write_bytes

    merged = read_dict(_path) or {}
    if len(merged) >= MAX_KEPT:
        merged = {}
    merged.update(_kept)
    write_bytes(_path, marshal.dumps(merged))
