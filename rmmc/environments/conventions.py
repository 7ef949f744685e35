"""Platform facts the value conventions need, read from `data/conventions.yml`: the names of
the registry hives in each style, and the length of each digest a hash list holds."""

from __future__ import annotations

from functools import cache

from rmmc.resources import package_text

HIVE_STYLES = ("long", "short", "native")


@cache
def _data() -> dict:
    """The file's data, kept in the user's cache by its text and the Python version (PyYAML's
    pure-Python reader was 2% of a cold translation for these few lines, some 10 M instructions;
    libyaml's loader raises the batch's peak memory by its buffers)."""
    text = package_text("rmmc.environments", "data/conventions.yml")
    path = _cached_path(text)
    if path is not None:
        from _pickle import loads  # (pickle.py, its Python half, is not needed to read)

        from rmmc.user_cache import read_bytes

        kept = read_bytes(path)
        if kept is not None:
            try:
                data = loads(kept)
                if isinstance(data, dict):
                    return data
            except Exception:  # an unreadable entry: read the file again
                pass
    import yaml

    data = yaml.safe_load(text)
    if path is not None:
        import pickle

        from rmmc.user_cache import write_bytes

        write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    return data


def _cached_path(text: str) -> str | None:
    """Where the data of this text of the file is kept (None: no cache folder)."""
    import os
    import sys

    from rmmc.user_cache import cache_folder, digest

    folder = cache_folder()
    if folder is None:
        return None
    return os.path.join(folder, f"conventions-{digest(f'{sys.version}|{text}')}.pickle")


@cache
def hives(style: str) -> dict[str, str]:
    """hive id -> its name in `style` (hives the style has no name for are left out)."""
    return {hive: names[style] for hive, names in _data()["hives"].items() if style in names}


@cache
def digest_length(algorithm: str) -> int | None:
    return _data()["digests"].get(algorithm.upper())
