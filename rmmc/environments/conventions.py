"""Platform facts the value conventions need, read from `data/conventions.yml`: the names of
the registry hives in each style, and the length of each digest a hash list holds."""

from __future__ import annotations

from functools import cache

from rmmc.resources import package_text

HIVE_STYLES = ("long", "short", "native")


@cache
def _data() -> dict:
    import yaml

    return yaml.safe_load(package_text("rmmc.environments", "data/conventions.yml"))


@cache
def hives(style: str) -> dict[str, str]:
    """hive id -> its name in `style` (hives the style has no name for are left out)."""
    return {hive: names[style] for hive, names in _data()["hives"].items() if style in names}


@cache
def digest_length(algorithm: str) -> int | None:
    return _data()["digests"].get(algorithm.upper())
