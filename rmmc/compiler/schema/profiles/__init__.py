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

Rules whose fields are Sigma taxonomy names already (`Source.taxonomy == "sigma"`: a Sigma rule
whose logsource has no Defender table) go through `field_for_sigma`: the ``sigma`` profile keeps
the name; another profile maps it when the Defender columns whose Sigma name it is (the
schema's ``to_sigma``, name-only and non-taxonomy columns left out) map to one and the same
field in every table of the profile that maps them; else None (unmapped, as above).
`rule_field` chooses between the two for a backend.

Time field (the column ``Timestamp``): ``_time`` for sigma and cim (the event time of a
Splunk event: Sigma has no time field and CIM datasets inherit ``_time``), ``@timestamp``
for ecs, ``Timestamp`` for defender.  `Profile.field(table, "Timestamp")` returns it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Mapping

from rmmc.resources import package_json

__all__ = ["PROFILES", "Profile", "field_for_sigma", "identity", "load_profile", "rule_field"]

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
    raw = package_json(__package__, f"{name}.json")
    tables = MappingProxyType({t: MappingProxyType(dict(cols)) for t, cols in raw["tables"].items()})
    return Profile(name=name, tables=tables, time_field_name=raw["time_field"])


@cache
def identity(time_field: str) -> Profile:
    """Every column under its own name and `time_field` for the event time: the naming of a
    rule an environment has already put into its target's names (`rmmc.environments`)."""
    return Profile(name="defender", tables=MappingProxyType({}), time_field_name=time_field)


@cache
def _sigma_targets(profile_name: str) -> Mapping[str, frozenset[str]]:
    """Sigma field -> the fields of this profile its Defender columns map to (all tables)."""
    from rmmc.compiler.schema import load_schema

    profile = load_profile(profile_name)
    schema = load_schema()
    targets: dict[str, set[str]] = {}
    for table_name in profile.tables if profile.name != "defender" else schema.tables:
        table = schema.table(table_name)
        if table is None:
            continue
        for column, sigma in table.to_sigma.items():
            if column in table.non_taxonomy or column in table.name_only:
                continue
            mapped = profile.field(table_name, column)
            if mapped is not None:
                targets.setdefault(sigma, set()).add(mapped)
    return MappingProxyType({k: frozenset(v) for k, v in targets.items()})


def field_for_sigma(profile: Profile, sigma_field: str) -> str | None:
    """The field of `profile` for a Sigma taxonomy field name, or None (unmapped).

    The ``sigma`` profile keeps the name.  Another profile maps it when every table of the
    profile that maps a Defender column whose Sigma name is `sigma_field` maps it to the same
    field; when they disagree (or none does) the answer is None."""
    if sigma_field == TIME_COLUMN:
        return profile.time_field()
    if profile.name == "sigma":
        return sigma_field
    targets = _sigma_targets(profile.name).get(sigma_field, frozenset())
    return next(iter(targets)) if len(targets) == 1 else None


def rule_field(profile, table: str | None, column: str, taxonomy: str | None = None) -> str | None:
    """The field a backend writes for a rule's column: `profile.field(table, column)`, or, when
    the rule's fields are Sigma names (`taxonomy == "sigma"`), `field_for_sigma`.  `profile`
    may be any object with `.field(table, column)` (a Sigma name then passes through it as is)."""
    if taxonomy == "sigma" and isinstance(profile, Profile):
        return field_for_sigma(profile, column)
    return profile.field(table, column)
