"""The field sets an environment's names are checked against.

Most come from `data/fields.json`, generated from the platforms' reference data by
`rmmc.environments.build` (ECS, Elastic's non-ECS fields, the Splunk add-ons' fields, CIM
data models, Log Analytics tables).  Three depend on the rule's Defender table and come from
rmmc's Defender schema (`rmmc/compiler/schema/defender_xdr.json`):

* `defender`: the table's Defender XDR columns;
* `defender:sentinel`: the same plus the columns only Sentinel's copy has (TimeGenerated ...);
* `sigma`: the Sigma fields pySigma's `microsoft_xdr` pipeline takes for the table (the
  taxonomy fields that map onto it, and its Defender columns, which the pipeline passes on);
* `log_analytics`: the rule's table as Log Analytics holds it (`data/log_analytics.json`).

A set may hold a name that stands for everything under it (`winlog`, typed `object`), and an
environment may `declare` more names or `prefix.*` patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Iterable, Mapping

from rmmc.resources import package_json, package_json_members

TABLE_SETS = ("defender", "defender:sentinel", "sigma", "log_analytics")


@cache
def _data() -> dict:
    """`fields.json` whole (through the user's cache: a cold start does without `json`)."""
    return package_json("rmmc.environments", "data/fields.json")


@cache
def _sets() -> Mapping[str, dict]:
    """`fields.json`'s sets, each decoded when first read (a run reads a few of them)."""
    return package_json_members("rmmc.environments", "data/fields.json", "sets")


@cache
def _log_analytics() -> Mapping[str, dict]:
    return package_json_members("rmmc.environments", "data/log_analytics.json", "tables")


@cache
def set_names() -> frozenset[str]:
    """Every field set an environment may name but the Log Analytics tables (`is_set`)."""
    return frozenset(_sets()) | frozenset(TABLE_SETS)


def is_set(name: str) -> bool:
    """Whether an environment may name this field set (a Log Analytics table's only when one
    is named: their file is large)."""
    if name.startswith("log_analytics:"):
        return name.split(":", 1)[1] in _log_analytics()
    return name in set_names()


def splunk_source(name: str) -> Mapping[str, str] | None:
    """The Splunk data source's `name`, `source` and `sourcetype` (`sysmon_eventid_1`)."""
    return _data()["splunk_sources"].get(name)


def field_set(name: str, table: str | None = None) -> Mapping[str, str]:
    """The fields of one set, name -> type (a table set needs the rule's table)."""
    if name.startswith("log_analytics:"):
        return _log_analytics().get(name.split(":", 1)[1], {})
    if name == "log_analytics":
        return _log_analytics().get(table, {}) if table else {}
    if name not in TABLE_SETS:
        return _sets().get(name, {})
    from rmmc.compiler.schema import load_schema

    schema = load_schema().table(table) if table else None
    if schema is None:
        return {}
    if name == "defender":
        return dict(schema.columns)
    if name == "defender:sentinel":
        return {**schema.columns, **schema.sentinel_columns}
    return {**{f: "string" for f in schema.from_sigma}, **{f: "string" for f in schema.to_sigma.values()},
            **{c: t for c, t in schema.columns.items() if c not in schema.pysigma_rejects}}


@dataclass(frozen=True)
class FieldSchema:
    """The names one source may write: its sets, its declared names and patterns, and, for
    members of a dynamic column (`EventData.Image`), the member sets."""

    names: frozenset[str]
    objects: tuple[str, ...]       # a name standing for every field under it (`winlog`)
    patterns: tuple[str, ...]      # declared `prefix.*`
    members: frozenset[str]
    dynamic: tuple[str, ...]
    checked: bool                  # False: the source names no set (nothing to check against)

    def knows(self, name: str) -> bool:
        if not self.checked or name in self.names:
            return True
        for column in self.dynamic:
            if name.startswith(column + "."):
                member = name[len(column) + 1:]
                return column in self.names and (not self.members or member in self.members)
        return any(name.startswith(p) for p in self.patterns) or any(
            name.startswith(o + ".") for o in self.objects)

    def suggest(self, name: str) -> str | None:
        """A known name close to `name` (case first, then spelling; the last dotted part of
        ECS-like names counts too), else None.  Remembered per schema and name: a rule set
        misses the same names again and again, and each guess scans the whole pool."""
        return _suggest(self, name)


@lru_cache(maxsize=4096)
def _suggest(schema: FieldSchema, name: str) -> str | None:
    """`FieldSchema.suggest` (the schema is frozen, so the answer is a function of it and the name)."""
    _, lowered, by_length, squashed, squashed_by_length = _pools(schema)
    if name.lower() in lowered and lowered[name.lower()] != name:
        return lowered[name.lower()]
    close = _close_match(name, by_length, 0.75)
    if close is not None:
        return close
    key = name.lower().replace("_", "").replace(".", "")
    close = _close_match(key, squashed_by_length, 0.8)
    return squashed[close] if close is not None else None


_LAST_POOLS: list[Any] = [None, None]  # [schema, its pools]: `_pools` of the schema asked last


def _pools(schema: FieldSchema) -> tuple[list[str], dict[str, str], dict, dict[str, str], dict]:
    """A schema's names as `_suggest` searches them: sorted, by lower case, by length; squashed
    (no case, `_` or `.`) and those by length.  Only the last schema's are kept: `_suggest`
    keeps its answers, and every schema's pools would stay in memory for the whole run, but a
    batch misses names of one schema in a row (the SigmaHQ run: 53 misses, 9 schemas, 8
    changes of schema), so the last one's spare most of the building."""
    if _LAST_POOLS[0] is schema:
        return _LAST_POOLS[1]
    pools = _build_pools(schema)
    _LAST_POOLS[:] = [schema, pools]
    return pools


def _build_pools(schema: FieldSchema) -> tuple[list[str], dict[str, str], dict, dict[str, str], dict]:
    pool = sorted(schema.names | {f"{c}.{m}" for c in schema.dynamic for m in schema.members})
    lowered = {n.lower(): n for n in pool}
    squashed = {n.lower().replace("_", "").replace(".", ""): n for n in pool}
    return pool, lowered, _by_length(pool), squashed, _by_length(squashed)


def _by_length(names: Iterable[str]) -> dict[int, tuple[list[str], bytes | None]]:
    """Names by length, each length's names with them joined by NULs as ASCII bytes (None
    when one is not ASCII or holds a NUL): `_close_match` counts their characters at once."""
    out: dict[int, list[str]] = {}
    for n in names:
        out.setdefault(len(n), []).append(n)
    return {length: (group, b"\0".join(n.encode("ascii") for n in group)
                     if all(n.isascii() and "\0" not in n for n in group) else None)
            for length, group in out.items()}


def _close_match(word: str, by_length: dict[int, tuple[list[str], bytes | None]], cutoff: float) -> str | None:
    """`difflib.get_close_matches(word, names, n=1, cutoff=cutoff)`, asked only of the names
    whose length and characters let them reach `cutoff`: difflib's own first tests
    (`real_quick_ratio`, 2 * min(la, lb) / (la + lb), and `quick_ratio`) drop the others, and
    the answer (the largest (ratio, name)) does not depend on the order of the names, so it is
    the same answer."""
    size = len(word)
    if not size:
        candidates = [n for names, _ in by_length.values() for n in names]
    else:
        # difflib's second test (`quick_ratio`) counts the characters the two names share, at
        # most the characters of the name that occur in `word` at all: those `translate` does
        # not delete.  A name whose bound misses the cutoff misses `quick_ratio` too (the same
        # sum, same float operations, on a larger count), so difflib would drop it as well.
        # ASCII names are counted a length at a time: the word's bytes deleted from the names
        # joined by NULs (a character beyond ASCII is bytes >= 0x80, which no ASCII name has),
        # then split at the NULs, which the word has none of.
        deleted = word.encode("utf-8", "surrogatepass") if "\0" not in word else None
        absent = None
        candidates = []
        for length, (names, joined) in by_length.items():
            total = length + size
            if 2.0 * min(length, size) / total < cutoff:
                continue
            if joined is not None and deleted is not None:
                rests = joined.translate(None, deleted).split(b"\0")
                candidates += [n for n, rest in zip(names, rests) if 2.0 * (length - len(rest)) / total >= cutoff]
            else:
                absent = absent or str.maketrans("", "", word)
                candidates += [n for n in names if 2.0 * (length - len(n.translate(absent))) / total >= cutoff]
    import difflib  # only for a "did you mean" (difflib brings heapq: not at start-up)

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def schema_for(sets: Iterable[str], declare: Iterable[str], members: Iterable[str],
               dynamic: Iterable[str], table: str | None) -> FieldSchema:
    """The names one source may write (built once per source and table)."""
    return _schema_for(tuple(sets), tuple(declare), tuple(members), tuple(dynamic), table)


@cache
def _schema_for(sets: tuple[str, ...], declare: tuple[str, ...], members: tuple[str, ...],
                dynamic: tuple[str, ...], table: str | None) -> FieldSchema:
    names: dict[str, str] = {}
    for name in sets:
        names.update(field_set(name, table))
    objects = tuple(n for n, kind in names.items() if kind == "object")
    patterns = tuple(d[:-1] for d in declare if d.endswith("*"))
    names.update({d: "declared" for d in declare if not d.endswith("*")})
    member_names: set[str] = set()
    for name in members:
        member_names.update(field_set(name, table))
    return FieldSchema(frozenset(names), objects, patterns, frozenset(member_names), tuple(dynamic),
                       checked=bool(sets))
