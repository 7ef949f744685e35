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

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from rmmc.compiler.diagnostics import Span

TARGETS = ("kql", "sigma", "splunk", "elastic")
"""What an environment serves; `elastic` serves both EQL and ES|QL."""
TIME_COLUMNS = frozenset({"Timestamp", "TimeGenerated"})
EXTERNAL_KINDS = {"lookup": "splunk", "placeholder": "sigma"}
"""How an environment holds external tables (`external:`), and the target that reads it so:
`lookup`: each URI's rows as a CSV lookup file on the Splunk search head (`rmmc lookups fetch`
writes them), read with `inputlookup`; `placeholder`: a feed test as a Sigma placeholder
(`Field|expand: '%name%'`) that a processing pipeline fills (`rmmc placeholders` writes it).
KQL runs `externaldata` itself and needs no declaration."""


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
    """Where one logsource's events are in an environment, and how their fields are named and
    held."""

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
class Schedule:
    """How a packaged rule runs: every `interval`, each run looking back `interval + overlap`
    (the overlap catches events indexed late).  Not the hunting query's own lookback: a rule
    re-scanning 5 days every 5 minutes alerts on each event hundreds of times."""

    interval: timedelta = timedelta(minutes=5)
    overlap: timedelta = timedelta(minutes=1)

    @property
    def window(self) -> timedelta:
        return self.interval + self.overlap

    def __str__(self) -> str:
        return f"{duration_text(self.interval)}+{duration_text(self.overlap)}"


_DURATION = re.compile(r"\s*(\d{1,6})\s*([smhd])\s*\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta | None:
    """`5m`, `1h`, `2d`, `30s` as a timedelta, else None."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)]) if match else None


def duration_text(delta: timedelta) -> str:
    """The largest unit that divides the duration: `5m`, `90m`, `2d`, `0s`."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_schedule(text: str) -> "Schedule | str":
    """`INTERVAL[+OVERLAP]` (`5m`, `5m+1m`, `1h+10m`; no overlap given: 1m) as a Schedule, or
    the reason it is not one (a message)."""
    head, plus, tail = str(text).partition("+")
    interval = parse_duration(head)
    overlap = parse_duration(tail) if plus else Schedule().overlap
    if interval is None or overlap is None:
        return (f"schedule {text!r} is not INTERVAL[+OVERLAP] with durations like 5m, 1h, 1d "
                "(e.g. 5m+1m)")
    schedule = Schedule(interval, overlap)
    problem = schedule_problem(schedule)
    return problem if problem else schedule


def schedule_problem(schedule: Schedule) -> str | None:
    """Why the platforms cannot run this schedule, else None: Sentinel runs a scheduled rule
    every 5 minutes to 14 days over at most 14 days; Splunk's cron must repeat evenly (minutes
    dividing an hour, hours dividing a day, or daily)."""
    interval = int(schedule.interval.total_seconds())
    if not 300 <= interval <= 14 * 86400:
        return f"schedule interval {duration_text(schedule.interval)}: between 5m and 14d"
    if schedule.window > timedelta(days=14):
        return f"schedule {schedule}: interval + overlap at most 14d (Sentinel's longest period)"
    if cron(schedule.interval) is None:
        return (f"schedule interval {duration_text(schedule.interval)} cannot be a cron schedule: "
                "minutes dividing an hour (5m 10m 15m 20m 30m), hours dividing a day, or 1d")
    return None


def cron(interval: timedelta) -> str | None:
    """The cron schedule running every `interval`, when cron can say it evenly."""
    seconds = int(interval.total_seconds())
    minutes, hours = seconds // 60, seconds // 3600
    if seconds % 60 == 0 and minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    if seconds % 3600 == 0 and hours < 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if seconds == 86400:
        return "0 0 * * *"
    return None


_UNSEEN = object()
_SOURCES_FOR: dict[int, tuple[Any, dict[tuple, Any]]] = {}
"""Per environment (by identity, the environment kept beside its entry): logsource -> source."""


@dataclass(frozen=True)
class Environment:
    """Where and how a platform holds the events rules read (a built-in or user YAML file)."""

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
    schedule: Schedule | None = None  # how its packaged rules run (None: Schedule())
    external: str | None = None  # how external tables (KQL externaldata) reach it: EXTERNAL_KINDS

    def serves(self, target: str) -> bool:
        return target == self.target or (self.target == "elastic" and target in ("eql", "esql"))

    def source_for(self, source: Any) -> SourceMap | None:
        """The first source that takes a rule with this `ir.Source`, else None (remembered per
        environment and logsource: a batch asks once per rule, with a handful of logsources)."""
        key = (source.table, source.kind, source.product, source.category, source.service)
        entry = _SOURCES_FOR.get(id(self))
        if entry is None or entry[0] is not self:
            entry = _SOURCES_FOR[id(self)] = (self, {})
        found = entry[1].get(key, _UNSEEN)
        if found is _UNSEEN:
            found = entry[1][key] = next((s for s in self.sources if s.match.fits(source)), None)
        return found
