"""Defender XDR table schemas and their Sigma field maps.

The data lives in ``defender_xdr.json`` beside this module (its ``_notes`` say where every
part comes from and which conventions it follows); this module only loads it and answers
questions about it: column types, "did you mean" for unknown columns, which Sigma logsource
a table stands for, and column <-> Sigma field for pySigma's ``microsoft_xdr`` pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

from rmmc.resources import package_json

__all__ = ["KQL_TYPES", "Schema", "TableSchema", "load_schema"]

DATA_FILE = "defender_xdr.json"
KQL_TYPES = frozenset({"string", "int", "long", "real", "bool", "datetime", "dynamic", "guid", "timespan"})
_EMPTY: Mapping[str, str] = MappingProxyType({})
# The prefix Defender puts on the acting process's copy of a column (AccountUpn -> InitiatingProcessAccountUpn).
_INITIATING = ("InitiatingProcess", "Initiating")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, eq=False)
class TableSchema:
    """One Defender XDR table: its columns and how they map to Sigma fields."""

    name: str
    event_kind: str
    logsource: Mapping[str, str] | None
    columns: Mapping[str, str]
    to_sigma: Mapping[str, str]
    from_sigma: Mapping[str, str]
    non_taxonomy: frozenset[str]
    logsources: tuple[Mapping[str, Any], ...] = ()
    sentinel_columns: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    name_only: frozenset[str] = frozenset()
    basename_of: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    pysigma_rejects: frozenset[str] = frozenset()
    renames: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    _by_lower: Mapping[str, str] = field(default_factory=lambda: _EMPTY, init=False, repr=False)

    def __post_init__(self) -> None:
        lower: dict[str, str] = {}
        for name in (*self.sentinel_columns, *self.columns):  # Defender columns win on a clash
            lower[name.lower()] = name
        object.__setattr__(self, "_by_lower", MappingProxyType(lower))

    def column_type(self, column: str) -> str | None:
        """KQL type of a Defender column (or of a Sentinel-only column), else None."""
        return self.columns.get(column) or self.sentinel_columns.get(column)

    def has_column(self, column: str) -> bool:
        """True for a documented Defender XDR column; case-sensitive, Sentinel-only columns excluded."""
        return column in self.columns

    def has_sentinel_column(self, column: str) -> bool:
        """True for a column only the Microsoft Sentinel copy of the table has (TimeGenerated, ...)."""
        return column in self.sentinel_columns

    def suggest(self, column: str) -> str | None:
        """'Did you mean' for a name that is not a Defender column here; None when it is one or nothing fits.

        Tries, in order: the same name in another case, a known rename (global renames, then the
        InitiatingProcess prefix), a close spelling (difflib, cutoff 0.75).
        """
        if column in self.columns:
            return None
        same = self._by_lower.get(column.lower())
        if same is not None and same != column:
            return same
        renamed = self.renames.get(column)
        if renamed in self.columns:
            return renamed
        for prefix in _INITIATING:
            hit = self._by_lower.get((prefix + column).lower())
            if hit in self.columns:
                return hit
        import difflib

        close = difflib.get_close_matches(column.lower(), [c.lower() for c in self.columns], n=1, cutoff=0.75)
        return self._by_lower[close[0]] if close else None

    def sigma_field(self, column: str) -> str | None:
        """The Sigma field rmmc emits for a column (may be the column name itself, see non_taxonomy)."""
        return self.to_sigma.get(column)

    def column_for_sigma(self, field: str) -> str | None:
        """The column pySigma's microsoft_xdr pipeline lands a Sigma field on, for this table."""
        return self.from_sigma.get(field)

    def is_taxonomy_field(self, column: str) -> bool:
        """True when the column is emitted under a SigmaHQ taxonomy field name."""
        return column in self.to_sigma and column not in self.non_taxonomy


def _matches(entry: Mapping[str, Any], product: str | None, category: str | None,
             service: str | None, event_ids: frozenset[int] | None) -> bool:
    if product is not None and entry.get("product") != product:
        return False
    if category is not None:
        return entry.get("category") == category
    if service is None or "category" in entry or entry.get("service") != service:
        return False
    wanted = entry.get("event_ids")
    return not wanted or bool(event_ids and event_ids.intersection(wanted))


@dataclass(frozen=True, eq=False)
class Schema:
    """All known tables, by their case-sensitive KQL name."""

    tables: Mapping[str, TableSchema]

    def table(self, name: str) -> TableSchema | None:
        """The table of that exact name, else None."""
        return self.tables.get(name)

    def suggest_table(self, name: str) -> str | None:
        """'Did you mean' for a table name: other case first, then a close spelling."""
        if name in self.tables:
            return None
        by_lower = {t.lower(): t for t in self.tables}
        if name.lower() in by_lower:
            return by_lower[name.lower()]
        import difflib

        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
        return by_lower[close[0]] if close else None

    def table_for_logsource(self, product: str | None, category: str | None, service: str | None = None,
                            event_ids: Iterable[int] | None = None) -> TableSchema | None:
        """The table pySigma's microsoft_xdr pipeline routes a Sigma logsource to, else None.

        A category decides alone (product, when given, must match). Without a category, a
        service matches only tables whose entry needs no EventID or shares one with event_ids
        (DeviceLogonEvents: windows/security with a logon EventID).
        """
        ids = frozenset(event_ids) if event_ids is not None else None
        for table in self.tables.values():
            if any(_matches(entry, product, category, service, ids) for entry in table.logsources):
                return table
        return None


def _table(name: str, raw: Mapping[str, Any], renames: Mapping[str, str]) -> TableSchema:
    logsource = raw.get("logsource")
    return TableSchema(
        name=name,
        event_kind=raw["event_kind"],
        logsource=_frozen(logsource) if logsource is not None else None,
        columns=_frozen(raw["columns"]),
        to_sigma=_frozen(raw["to_sigma"]),
        from_sigma=_frozen(raw["from_sigma"]),
        non_taxonomy=frozenset(raw.get("non_taxonomy_columns", ())),
        logsources=tuple(_frozen(entry) for entry in raw.get("logsources", ())),
        sentinel_columns=_frozen(raw.get("sentinel_columns")),
        name_only=frozenset(raw.get("name_only_columns", ())),
        basename_of=_frozen(raw.get("basename_columns")),
        pysigma_rejects=frozenset(raw.get("pysigma_rejects", ())),
        renames=_frozen(renames),
    )


@cache
def load_schema() -> Schema:
    """Load (once) the Defender XDR schema shipped with rmmc."""
    raw = package_json(__package__, DATA_FILE)
    renames = raw.get("renames", {})
    tables = {name: _table(name, body, renames) for name, body in raw["tables"].items()}
    return Schema(tables=MappingProxyType(tables))
