"""What an environment is, as values: where a target's data lives and how it names and writes it.

An environment (one YAML file, read and checked by `rmmc.environments.loader`) serves one
target language and lists *sources* in order; a rule takes the first source whose `match`
fits it.  A source says:

* where the events are (`place`: a Splunk search prefix or data model, an Elastic index
  pattern, a KQL table) and which tests every event of it passes (`filter`, e.g. Sysmon's
  `EventCode: 1` for process creations), added to the rule's detection;
* the name and form of each of the rule's columns there (`fields`, then the `names` of an
  existing field profile, then the `others` template): a plain name, or a value convention
  (`rmmc.environments.forms`: registry hives, `DOMAIN\\name` users, `Hashes` lists, file
  name vs full path, an enumerated vocabulary);
* the field sets its names are checked against (`schema`, from the generated reference data,
  plus what it `declare`s).

A rule's columns are Defender XDR columns when it has a table (a KQL rule, or a Sigma rule
whose logsource has a Defender table), Sigma taxonomy names otherwise: a source that matches
on `table` / `kind` takes the first kind, one that matches on `product` / `category` /
`service` the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rmmc.compiler.diagnostics import Span

TARGETS = ("kql", "sigma", "splunk", "elastic")
"""What an environment serves; `elastic` serves both EQL and ES|QL."""
TIME_COLUMNS = frozenset({"Timestamp", "TimeGenerated"})


@dataclass(frozen=True)
class Match:
    """Which rules a source takes: every key given must hold (a value list: any of them;
    `table: '*'` any table)."""

    table: tuple[str, ...] | None = None
    kind: tuple[str, ...] | None = None
    product: tuple[str, ...] | None = None
    category: tuple[str, ...] | None = None
    service: tuple[str, ...] | None = None

    @property
    def by_table(self) -> bool:
        """Whether it matches rules by their Defender table (columns are Defender columns)."""
        return self.table is not None or self.kind is not None

    def fits(self, source: Any) -> bool:
        if self.by_table:
            if source.table is None:
                return False
            if self.table is not None and "*" not in self.table and source.table not in self.table:
                return False
            kind = getattr(source.kind, "value", source.kind)
            return self.kind is None or kind in self.kind
        if source.table is not None:
            return False
        for key in ("product", "category", "service"):
            wanted = getattr(self, key)
            if wanted is not None and getattr(source, key) not in wanted:
                return False
        return True

    def describe(self) -> str:
        parts = [f"{k}: {'|'.join(v)}" for k in ("table", "kind", "product", "category", "service")
                 if (v := getattr(self, k)) is not None]
        return ", ".join(parts) or "every rule"


@dataclass(frozen=True)
class Placement:
    """Where a source's events live, per target: `search` (SPL text after `search`, e.g. a
    macro), `datamodel` (`Endpoint.Processes`, read with `| datamodel`), `index` (an Elastic
    index pattern), `table` (a KQL table)."""

    search: str | None = None
    datamodel: str | None = None
    index: str | None = None
    table: str | None = None

    def merged(self, other: "Placement") -> "Placement":
        return Placement(**{k: getattr(other, k) or getattr(self, k)
                            for k in ("search", "datamodel", "index", "table")})


@dataclass(frozen=True)
class FieldSpec:
    """How one column of the rule is held in the environment: `field` is the environment's
    name (None: it has none, `absent` says why); `form` names a value convention
    (`rmmc.environments.forms`) and `options` its settings."""

    column: str
    field: str | None
    form: str = "rename"
    options: Mapping[str, Any] = field(default_factory=dict)
    absent: str | None = None
    span: Span | None = None


@dataclass(frozen=True)
class SourceMap:
    match: Match
    place: Placement = Placement()
    filter: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    names: str | None = None
    others: str | None = None
    schema: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    declare: tuple[str, ...] = ()
    dynamic: tuple[str, ...] = ()
    time_field: str | None = None  # the source's own, when not the environment's
    span: Span | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    target: str
    time_field: str
    sources: tuple[SourceMap, ...]
    place: Placement = Placement()
    assumes: tuple[str, ...] = ()
    unknown_fields: str = "error"
    path: str | None = None
    builtin: bool = False

    def serves(self, target: str) -> bool:
        return target == self.target or (self.target == "elastic" and target in ("eql", "esql"))

    def source_for(self, source: Any) -> SourceMap | None:
        """The first source that takes a rule with this `ir.Source`, else None."""
        return next((s for s in self.sources if s.match.fits(source)), None)
