"""Data files shipped inside rmmc's packages (schemas, field profiles), read without
`importlib.resources` when they are plain files: importing it costs a cold start several
milliseconds (tempfile, shutil, zipfile), more than reading the file."""

from __future__ import annotations

import marshal
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any


def package_text(package: str, name: str) -> str:
    """The text of data file `name` in `package` (say `rmmc.compiler.schema`)."""
    module = sys.modules.get(package)
    folder = os.path.dirname(getattr(module, "__file__", None) or "")
    if folder:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                return handle.read()
        except OSError:  # installed without real files (a zip): ask importlib
            pass
    from importlib.resources import files

    return files(package).joinpath(name).read_text(encoding="utf-8")


def package_json(package: str, name: str) -> Any:
    """The decoded JSON data file `name` in `package`, kept in the user's cache as one `marshal`
    record (keyed as `package_json_members` keys its records): decoding the Defender schema's
    95 KB with `json` was 1% of a cold translation, reading its record a fraction of that.
    Without a cache, or when the record cannot be read, the file is decoded."""
    path, text = _kept_path(package, name, "whole")
    if path is not None:
        from rmmc.user_cache import read_bytes

        data = read_bytes(path)
        if data:
            try:
                return marshal.loads(data)
            except (EOFError, ValueError, TypeError):  # a damaged record: decoded again
                pass
    import json

    value = json.loads(text if text is not None else package_text(package, name))
    if path is not None:
        from rmmc.user_cache import write_bytes

        write_bytes(path, marshal.dumps(value))
    return value


def package_json_members(package: str, name: str, key: str) -> Mapping[str, Any]:
    """The object under `key` of JSON data file `name` in `package`, each of its members decoded
    when first read.  A run needs a few members of a large table (an environment's field sets
    out of the hundred in `fields.json`): decoding all of it was 3% of a cold translation.
    The members are kept in the user's cache, each as its own `marshal` record (`_kept_path`),
    so a warm run does not read the file at all; a changed file is split again.  Without a
    cache, the file is decoded whole."""
    from rmmc.user_cache import read_dict, write_bytes

    path, text = _kept_path(package, name, key)
    if path is not None:
        records = read_dict(path)
        if records is not None:
            return _Members(records)
    import json

    members = json.loads(text if text is not None else package_text(package, name))[key]
    if path is not None:
        write_bytes(path, marshal.dumps({k: marshal.dumps(v) for k, v in members.items()}))
    return members


def _kept_path(package: str, name: str, part: str) -> tuple[str | None, str | None]:
    """Where `part` of data file `name` in `package` is kept in the user's cache (None without
    a cache folder), keyed as Python keys a module's `.pyc` (`_file_stamp`: the file's path,
    size and modification time; reading and hashing 256 KB of text to find the entry was 2% of
    a cold translation), or by its text where the file is no plain one; and that text when it
    had to be read (else None)."""
    from rmmc.user_cache import cache_folder, digest

    folder = cache_folder()
    if folder is None:
        return None, None
    text = None
    stamp = _file_stamp(package, name)
    if stamp is None:
        stamp = text = package_text(package, name)
    stem = f"{package}.{name}.{part}".replace("/", ".")
    return os.path.join(folder, f"json-{stem}-{digest(stamp)}.marshal"), text


def _file_stamp(package: str, name: str) -> str | None:
    """What data file `name` in `package` is known by without reading it: its path, size and
    modification time in nanoseconds (what Python checks a `.pyc` against); None when it is
    not a plain file."""
    module = sys.modules.get(package)
    folder = os.path.dirname(getattr(module, "__file__", None) or "")
    if not folder:
        return None
    path = os.path.join(folder, name)
    try:
        facts = os.stat(path)
    except OSError:
        return None
    return f"{path}|{facts.st_size}|{facts.st_mtime_ns}"


class _Members(Mapping[str, Any]):
    """Member name -> value, each `marshal` record decoded once, when first read."""

    def __init__(self, records: dict[str, bytes]):
        self._records = records
        self._decoded: dict[str, Any] = {}

    def __getitem__(self, member: str) -> Any:
        try:
            return self._decoded[member]
        except KeyError:
            value = self._decoded[member] = marshal.loads(self._records[member])
            return value

    def __contains__(self, member: object) -> bool:
        return member in self._records  # without decoding it

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
