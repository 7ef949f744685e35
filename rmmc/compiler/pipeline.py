"""From a rule document to the detection model, with every diagnostic located in the file.

`compile_document` parses the query, lowers it, takes the rule's metadata from the
document (Sentinel YAML keys, hunt-document scenarios) and lowers the false-positive
scenarios into exclusions.  Nothing here raises on bad input: problems are diagnostics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, Severity, has_error
from rmmc.compiler.documents.model import DocumentKind, RuleDocument
from rmmc.compiler.documents.sigma_yaml import SIGMA_KEY
from rmmc.compiler.slots_init import fast_init

_URL = re.compile(r"https?://[^\s'\"<>)\]]+")
_LEVELS = {"informational": "informational", "info": "informational", "low": "low",
           "medium": "medium", "high": "high", "critical": "critical"}


@dataclass(frozen=True, slots=True)
class Compiled:
    """A document read and lowered: its rule (None when it has errors) and what was said about
    it."""

    document: RuleDocument
    rule: ir.Rule | None  # its spans are in the file's coordinates
    diagnostics: tuple[Diagnostic, ...]  # file coordinates, with the document's path

    @property
    def ok(self) -> bool:
        return self.rule is not None and not has_error(self.diagnostics)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if v is not None and str(v).strip())
    text = str(value).strip()
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


def metadata_of(document: RuleDocument) -> ir.Metadata:
    """The rule's metadata from its document (Sentinel YAML names, or Sigma-like ones)."""
    meta: Mapping[str, Any] = document.metadata or {}
    description = meta.get("description")
    description = str(description).strip() if description is not None else None
    references = list(_strings(meta.get("references")))
    for url in _URL.findall(description or ""):
        if url not in references:
            references.append(url.rstrip(".,"))
    severity = str(meta.get("severity") or meta.get("level") or "").strip().lower()
    tactics = _strings(meta.get("tactics"))
    techniques = _strings(meta.get("relevantTechniques") or meta.get("techniques"))
    return ir.Metadata(
        id=str(meta["id"]).strip() if meta.get("id") else None,
        title=document.title or (str(meta["name"]).strip() if meta.get("name") else None),
        description=description,
        author=str(meta["author"]).strip() if meta.get("author") else None,
        references=tuple(references),
        tactics=tactics,
        techniques=techniques,
        level=_LEVELS.get(severity),
        status=str(meta["status"]).strip() if meta.get("status") else None,
        date=str(meta["date"]).strip() if meta.get("date") else None,
        modified=str(meta["modified"]).strip() if meta.get("modified") else None,
        false_positives=tuple(s.title for s in document.scenarios),
        source_path=document.path,
        source_span=document.query_span,
    )


def compile_document(document: RuleDocument, schema: Any = "default") -> Compiled:
    """Parse, lower and attach metadata and exclusions; diagnostics in file coordinates."""
    found: list[Diagnostic] = list(document.warnings)
    if document.kind is DocumentKind.SIGMA:
        return _compile_sigma(document, found)
    from rmmc.compiler.kql.lower import lower_text  # KQL only: a Sigma rule never loads the KQL tree
    try:
        lowered = lower_text(document.query, metadata_of(document), schema)
    except Exception as exc:  # a bug of ours must not stop a batch
        found.append(Diagnostic(Severity.ERROR, f"internal error: {type(exc).__name__}: {exc}",
                                document.query_span, "internal", document.path))
        return Compiled(document, None, tuple(found))
    found.extend(document.locate(d) for d in lowered.diagnostics)
    rule = lowered.rule
    if rule is not None:
        # From here on every span of the rule is in the file's coordinates, like the
        # exclusions' (which are read from the file directly).
        rule = replace(rule, condition=ir.map_spans(rule.condition, document.file_span))
    if rule is not None and document.scenarios:
        exclusions, notes = _exclusions(document, rule)
        rule = replace(rule, exclusions=exclusions)
        found.extend(notes)
    if has_error(found):
        rule = None
    return Compiled(document, rule, tuple(found))


def _compile_sigma(document: RuleDocument, found: list[Diagnostic]) -> Compiled:
    """A Sigma rule was read with its file (spans in file coordinates already)."""
    read = document.metadata.get(SIGMA_KEY)
    if read is None:
        found.append(Diagnostic(Severity.ERROR, "internal error: a Sigma document without its rule",
                                None, "internal", document.path))
        return Compiled(document, None, tuple(found))
    found.extend(read.diagnostics)
    rule = read.rule if not has_error(found) else None
    return Compiled(document, rule, tuple(found))


def _exclusions(document: RuleDocument, rule: ir.Rule) -> tuple[tuple[ir.Exclusion, ...], list[Diagnostic]]:
    try:
        from rmmc.compiler.exclusions import lower_exclusion
    except ImportError:  # pragma: no cover - the module ships with rmmc
        return tuple(ir.Exclusion(s.title, s.exclusion, s.description, None, s.exclusion_span)
                     for s in document.scenarios), []
    exclusions, notes = [], []
    for scenario in document.scenarios:
        exclusion, diagnostics = lower_exclusion(scenario, rule.source.table)
        exclusions.append(exclusion)
        notes.extend(d if d.path else d.with_path(document.path) for d in diagnostics)
    return tuple(exclusions), notes


fast_init(Compiled)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
