"""Field profiles: the name a Defender XDR column has in another naming, per table.

One JSON file per profile beside this module (``<name>.json``: ``tables`` maps table ->
column -> field, ``time_field`` names the event-time field, ``_notes`` says where the map
comes from and what it leaves out on purpose):

* ``sigma``: Sigma taxonomy / Sysmon names, generated from the schema's ``to_sigma`` maps
  (minus the bare-file-name columns the schema lists as ``name_only``);
* ``cim``: Splunk Common Information Model data-model fields;
* ``ecs``: Elastic Common Schema fields;
* ``defender``: identity (every column under its own name).

`Profile.field` answers None for a column the profile does not map; a backend then passes
the column through under its own name and warns, naming it.  A mapping exists only where the
target field means the same thing: a wrong field name would silently change the rule.

Time field (the column ``Timestamp``): ``_time`` for sigma and cim (the event time of a
Splunk event: Sigma has no time field and CIM datasets inherit ``_time``), ``@timestamp``
for ecs, ``Timestamp`` for defender.  `Profile.field(table, "Timestamp")` returns it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Mapping

__all__ = ["PROFILES", "Profile", "load_profile"]

PROFILES = ("sigma", "cim", "ecs", "defender")
TIME_COLUMN = "Timestamp"


@dataclass(frozen=True, eq=False)
class Profile:
    """One naming: table -> column -> field, and the event-time field."""

    name: str
    tables: Mapping[str, Mapping[str, str]]
    time_field_name: str

    def field(self, table: str | None, column: str) -> str | None:
        """The field for `column` of `table` in this naming, else None (unmapped).

        Without a table (or for an unknown table) only the time column and, for the
        identity profile, every column are known."""
        if column == TIME_COLUMN:
            return self.time_field(table)
        if self.name == "defender":
            return column
        if table is None:
            return None
        return self.tables.get(table, {}).get(column)

    def time_field(self, table: str | None = None) -> str:
        """The field holding the event time (the same for every table of a profile)."""
        return self.time_field_name

    def columns(self, table: str) -> Mapping[str, str]:
        """The whole column -> field map of one table (empty for an unknown table)."""
        return self.tables.get(table, MappingProxyType({}))


@cache
def load_profile(name: str) -> Profile:
    """Load (once) a profile shipped with rmmc; ValueError for an unknown name."""
    if name not in PROFILES:
        raise ValueError(f"unknown field profile {name!r}; choose one of {', '.join(PROFILES)}")
    raw = json.loads(files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    tables = MappingProxyType({t: MappingProxyType(dict(cols)) for t, cols in raw["tables"].items()})
    return Profile(name=name, tables=tables, time_field_name=raw["time_field"])
