"""The user's cache directory for what rmmc derives from its own files and keeps between runs
(parse tables, built-in environments, generated code): `$XDG_CACHE_HOME/rmmc`, else
`~/.cache/rmmc`.  Everything kept there is keyed by what it was derived from, and rebuilt when
it cannot be read: a cache never changes an output, it only spares a cold start the work."""

from __future__ import annotations

import os


_MADE: dict[str, str] = {}  # base folder -> its rmmc folder, made and writable in this process


def cache_folder() -> str | None:
    """The folder (created if need be), or None when there is no writable one.  Checked once
    per process and base folder (a translation's caches ask eleven times; making and checking
    it each time was 0.5% of a cold start); a folder removed meanwhile only makes the caches
    miss (what they keep is written and read with every failure ignored)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = _MADE.get(base)
    if folder is not None:
        return folder
    folder = os.path.join(base, "rmmc")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    _MADE[base] = folder
    return folder


def digest(text: str) -> str:
    """A 16-hex-digit key for what an entry is derived from (BLAKE2b of `text`).  It comes
    from CPython's built-in `_blake2` where there: `import hashlib` loads OpenSSL, which cost
    a cold `rmmc translate` 2% of its instructions for three short keys."""
    try:
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - another Python
        from hashlib import blake2b
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def read_dict(path: str) -> dict | None:
    """The dict kept in `path` as a `marshal` record; None when there is none, or it is damaged
    or not a dict (the caller derives it again)."""
    data = read_bytes(path)
    if not data:
        return None
    import marshal

    try:
        loaded = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return loaded if isinstance(loaded, dict) else None


def write_bytes(path: str, data: bytes) -> None:
    """Write atomically (a temporary file renamed), so that a concurrent run never reads half a
    file; a failure to write is ignored (the next run derives it again)."""
    import tempfile  # only when writing: importing it costs a cold start milliseconds

    try:
        handle = tempfile.NamedTemporaryFile(dir=os.path.dirname(path), delete=False, suffix=".tmp")
        try:
            with handle:
                handle.write(data)
            os.replace(handle.name, path)
        except BaseException:
            os.unlink(handle.name)
            raise
    except Exception:
        pass
