"""A rule's metadata as Sigma header fields (title, id, status, tags, level, date, logsource...).

Conventions (each reported as a diagnostic where it applies):

* id: the rule's id when it is a UUID; otherwise a uuid5 of it (or of the title when there is
  none) in rmmc's namespace, so the same rule always gets the same id.
* date / modified: metadata.date / metadata.modified when they read as dates, else left out
  (never the day of translation: the same rule gives the same file byte for byte every run).
* tags: tactic `CommandAndControl` (or `Command and Control`) -> `attack.command-and-control`,
  technique `T1059.001` -> `attack.t1059.001`, tactics read from ATT&CK data
  (`rmmc.compiler.attack`: v19 names such as `stealth` and v18's `defense-evasion` alike, each
  written as the rule names it); names that are not ATT&CK tactics or technique ids are
  dropped with a note.
* level: informational/low/medium/high/critical (Sentinel severities map directly; `info` ->
  informational); default medium.
* logsource: the IR source's product/category/service when lowering set them, else the
  schema table's logsource; a table without one is written `product: windows` (Defender for
  Endpoint device tables are Windows telemetry to SigmaHQ's pipelines) plus `service: <Table>`
  naming the Defender table, so the table is not lost (pySigma's microsoft_xdr pipeline reaches
  such tables only through its query_table option); a note says so.  A table outside the
  schema keeps only `service: <Table>`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rmmc.backends.base import note
from rmmc.backends.sigma.fields import TARGET
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule

RMMC_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "rmmc.sigma")
SIGMA_LEVELS = ("informational", "low", "medium", "high", "critical")
SIGMA_STATUSES = ("stable", "test", "experimental", "deprecated", "unsupported")
_TECHNIQUE = re.compile(r"^[Tt](\d{4})(?:\.(\d{3}))?$")
_URL = re.compile(r"https?://[^\s<>\"'`)\]]+")


@dataclass
class MetaBuilder:
    rule: Rule
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def title(self) -> str:
        m = self.rule.metadata
        if m.title and m.title.strip():
            return m.title.strip()
        if m.source_path:
            return re.split(r"[\\/]", m.source_path)[-1]
        return "Untitled rmmc rule"

    def rule_id(self) -> str:
        raw = self.rule.metadata.id
        if raw:
            try:
                return str(uuid.UUID(str(raw).strip()))
            except ValueError:
                derived = str(uuid.uuid5(RMMC_NAMESPACE, str(raw)))
                self.diagnostics.append(note(
                    TARGET, f"rule id {raw!r} is not a UUID: Sigma id {derived} is derived from it"))
                return derived
        return str(uuid.uuid5(RMMC_NAMESPACE, self.title))

    def derived_id(self, what: str) -> str:
        """A stable id for a companion document (correlation, filter) of this rule."""
        return str(uuid.uuid5(RMMC_NAMESPACE, f"{self.rule_id()}:{what}"))

    def status(self) -> str:
        given = (self.rule.metadata.status or "").strip().lower()
        if given in SIGMA_STATUSES:
            return given
        if given:
            self.diagnostics.append(note(TARGET, f"status {self.rule.metadata.status!r} is not a "
                                                 "Sigma status: experimental"))
        return "experimental"

    def description(self) -> str:
        m = self.rule.metadata
        if m.description and m.description.strip():
            return m.description.strip()
        where = f" {m.source_path}" if m.source_path else ""
        return f"Translated by rmmc from the KQL rule{where}."

    def references(self) -> list[str]:
        m = self.rule.metadata
        found = [u.rstrip(".,;:") for u in _URL.findall(m.description or "")]
        out: list[str] = []
        for ref in (*m.references, *found):
            if ref and ref not in out:
                out.append(ref)
        return out

    def date(self) -> date | None:
        """The rule's own date, or None (left out)."""
        return self._date("date", self.rule.metadata.date)

    def modified(self) -> date | None:
        """The rule's own last-modified date, or None (left out)."""
        return self._date("modified", self.rule.metadata.modified)

    def _date(self, what: str, raw: str | None) -> date | None:
        raw = (raw or "").strip()
        if not raw:
            return None
        parsed = _parse_date(raw)
        if parsed is None:
            self.diagnostics.append(note(TARGET, f"{what} {raw!r} is not a date: left out"))
        return parsed

    def tags(self) -> list[str]:
        m = self.rule.metadata
        out: list[str] = []
        for tactic in m.tactics:
            tag = tactic_tag(tactic)
            if tag is None:
                self.diagnostics.append(note(TARGET, f"tactic {tactic!r} is not an ATT&CK tactic: no tag"))
            elif tag not in out:
                out.append(tag)
        for technique in m.techniques:
            match = _TECHNIQUE.match(technique.strip())
            if match is None:
                self.diagnostics.append(note(TARGET, f"technique {technique!r} is not an ATT&CK "
                                                     "technique id: no tag"))
                continue
            tag = f"attack.t{match.group(1)}" + (f".{match.group(2)}" if match.group(2) else "")
            if tag not in out:
                out.append(tag)
        return out

    def level(self) -> str:
        raw = (self.rule.metadata.level or "").strip().lower()
        if raw in ("info", "informational"):
            return "informational"
        if raw in SIGMA_LEVELS:
            return raw
        if raw:
            self.diagnostics.append(note(TARGET, f"level {self.rule.metadata.level!r} is not a "
                                                 "Sigma level: medium"))
        return "medium"

    def logsource(self, table_schema: Any | None) -> dict[str, str]:
        src = self.rule.source
        given = {k: v for k, v in (("product", src.product), ("category", src.category),
                                   ("service", src.service)) if v}
        if given:
            return _ordered(given)
        schema_logsource = getattr(table_schema, "logsource", None)
        if schema_logsource:
            return _ordered(dict(schema_logsource))
        if src.table is None:
            self.diagnostics.append(note(TARGET, "the rule names no table: logsource product: windows"))
            return {"product": "windows"}
        if table_schema is not None:
            self.diagnostics.append(note(
                TARGET, f"{src.table} has no SigmaHQ logsource: written as product: windows, "
                        f"service: {src.table} (pySigma's microsoft_xdr pipeline needs "
                        f"query_table={src.table} for it)"))
            return {"product": "windows", "service": src.table}
        self.diagnostics.append(note(
            TARGET, f"{src.table} is not a known Defender table: logsource service: {src.table}"))
        return {"service": src.table}


def _ordered(logsource: dict[str, str]) -> dict[str, str]:
    return {k: str(logsource[k]) for k in ("category", "product", "service") if logsource.get(k)}


def _parse_date(raw: str) -> date | None:
    text = raw.replace("/", "-")
    for candidate in (text, text[:10]):
        try:
            return date.fromisoformat(candidate)
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def tactic_tag(tactic: str) -> str | None:
    """`CommandAndControl` / `Command and Control` / `command-and-control` ->
    `attack.command-and-control`; `Stealth` -> `attack.stealth` (ATT&CK v19) and
    `DefenseEvasion` -> `attack.defense-evasion` (v18); None for a name that is not an ATT&CK
    tactic (Enterprise, from data, or ICS)."""
    from rmmc.compiler.attack import ICS_TACTICS, tactic as find

    found = find(tactic)
    if found is not None:
        return f"attack.{found.shortname}"
    kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", tactic.strip())
    kebab = re.sub(r"[\s_\-]+", "-", kebab).lower().strip("-")
    return f"attack.{kebab}" if kebab in ICS_TACTICS else None
