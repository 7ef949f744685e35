"""Reader for hunt documents (one rule per file).

Layout: a hypothesis paragraph, a `KQL Query` line, the query, Sentinel-style YAML metadata
(usually invalid YAML: block scalars left unindented), a Markdown table of Sentinel tables,
then false-positive scenarios (`Scenario:`, `Description:`, `Filter/Exclusion:` lines).
The query is taken from the `KQL Query` section; metadata from the YAML part.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import replace
from typing import Any, Sequence

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Severity, error, warning
from rmmc.compiler.documents.lines import Line, join_pairs, split_lines, trim_blank
from rmmc.compiler.documents.model import DocumentKind, FalsePositiveScenario, RuleDocument
from rmmc.compiler.documents.result import FileResult
from rmmc.compiler.documents.sentinel_yaml import (locate_query, normalise_metadata,
                                                   normalise_text, strict_load, title_of)
from rmmc.compiler.documents.tolerant_yaml import read_tolerant

MARKER = re.compile(r"(?:#{1,6}[ \t]*)?(?:\*\*)?KQL[ \t]+Query(?:\*\*)?[ \t]*:?[ \t]*",
                    re.I)
YAML_KEY = re.compile(r"[A-Za-z_][\w\-]*[ \t]*:(?:[ \t]|$)")
TABLE_SEPARATOR = re.compile(r"[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*")
LABEL = re.compile(r"[ \t]*(?:[-*+][ \t]+|\d+[.)][ \t]+)?(?:\*\*)?"
                   r"(scenario|description|filter/exclusion|exclusion|filter)"
                   r"(?:\*\*)?[ \t]*:(?:\*\*)?[ \t]*", re.I)
FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


_MARKER_SEARCH = re.compile(r"(?im)^\ufeff?(?:#{1,6}[ \t]*)?(?:\*\*)?KQL[ \t]+Query(?:\*\*)?"
                            r"[ \t]*:?[ \t]*\r?$")


def find_marker(lines: Sequence[Line], text: str) -> int | None:
    """Index of the `KQL Query` line, if any (one regex scan, then a bisection)."""
    found = _MARKER_SEARCH.search(text)
    if found is None:
        return None
    number = bisect.bisect_right([ln.start for ln in lines], found.start()) - 1
    return number if number >= 0 and MARKER.fullmatch(lines[number].text) else None


def read_hunt(text: str, path: str, source: LineIndex) -> FileResult:
    """One `RuleDocument` (kind HUNT) with hypothesis, metadata and scenarios."""
    lines = split_lines(text)
    marker = find_marker(lines, text)
    if marker is None:
        return FileResult(path, (), (error("no `KQL Query` line in hunt document",
                                           source.span(0), "doc-no-query"),), DocumentKind.HUNT)
    hypothesis = "\n".join(ln.text.strip() for ln in lines[:marker] if not ln.blank) or None
    scenarios_at = next((ln.number for ln in lines[marker + 1:]
                         if (m := LABEL.match(ln.text)) and m.group(1).lower() == "scenario"),
                        len(lines))
    table_at = next((ln.number for ln in lines[marker + 1:scenarios_at]
                     if "|" in ln.text and ln.number + 1 < scenarios_at
                     and TABLE_SEPARATOR.fullmatch(lines[ln.number + 1].text)), scenarios_at)
    fenced = _fenced_query(lines, marker + 1, table_at)
    after = fenced[1] if fenced is not None else marker + 1
    yaml_at = next((ln.number for ln in lines[after:table_at] if YAML_KEY.match(ln.text)),
                   table_at)
    query_lines = fenced[0] if fenced is not None else lines[marker + 1:yaml_at]

    warnings: list[Diagnostic] = []
    data: dict[str, Any] = {}
    locations = {}
    if yaml_at < table_at:
        region = lines[yaml_at:table_at]
        tolerant = read_tolerant(region, source)
        locations = tolerant.locations
        base = region[0].start
        strict, problem = strict_load(text[base:region[-1].end], source, "the metadata", base)
        if strict is not None and problem is None:
            data = strict
        else:
            if problem is not None:
                warnings.append(replace(problem, severity=Severity.NOTE))
            warnings.extend(tolerant.warnings)
            data = tolerant.data

    pairs = trim_blank([(ln.start, ln.text) for ln in query_lines])
    if pairs:
        query, starts = join_pairs(pairs)
        yaml_query = data.get("query")
        if isinstance(yaml_query, str) and normalise_text(yaml_query) != normalise_text(query):
            warnings.append(warning("the query under `KQL Query` differs from the YAML query:; "
                                    "using the `KQL Query` section", source.span(starts[0]),
                                    "hunt-query-mismatch"))
    elif isinstance(data.get("query"), (str, int, float)) and str(data["query"]).strip():
        query, starts, note = locate_query(data["query"], locations.get("query"), text, source)
        warnings.extend(n for n in (note,) if n is not None)
    else:
        return FileResult(path, (), (error("no query found in hunt document (the `KQL Query` "
                                           "section is empty)",
                                           source.span(lines[marker].start), "doc-no-query"),),
                          DocumentKind.HUNT)

    metadata = normalise_metadata(data)
    tables = _table(lines[table_at:scenarios_at])
    if tables:
        metadata["sentinelTables"] = tables
    doc = RuleDocument(path, DocumentKind.HUNT, query, starts, source,
                       title=title_of(metadata), metadata=metadata, hypothesis=hypothesis,
                       scenarios=_scenarios(lines[scenarios_at:], source),
                       warnings=tuple(warnings))
    return FileResult(path, (doc,), (), DocumentKind.HUNT)


def _fenced_query(lines: Sequence[Line], start: int, stop: int
                  ) -> tuple[Sequence[Line], int] | None:
    """A fenced query right after the marker: its lines and the index after the fence.
    None when the query is not fenced (it then runs up to the YAML part)."""
    first = next((ln.number for ln in lines[start:stop] if not ln.blank), None)
    if first is None:
        return None
    opening = FENCE.match(lines[first].text)
    if opening is None:
        return None
    fence = opening.group(1)
    for ln in lines[first + 1:stop]:
        closing = ln.text.strip()
        if closing.startswith(fence) and not closing.strip(fence[0]):
            return lines[first + 1:ln.number], ln.number + 1
    return lines[first + 1:stop], stop


def _cells(text: str) -> list[str]:
    body = text.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    return [cell.strip() for cell in body.split("|")]


def _table(lines: Sequence[Line]) -> list[dict[str, str]]:
    """The rows of the Markdown table (header cells as keys)."""
    if len(lines) < 2:
        return []
    header = _cells(lines[0].text)
    rows = []
    for line in lines[2:]:
        if line.blank:
            continue
        cells = _cells(line.text)
        rows.append({header[k] if k < len(header) else f"column{k + 1}": cell
                     for k, cell in enumerate(cells) if cell or k < len(header)})
    return rows


def _scenarios(lines: Sequence[Line], source: LineIndex) -> tuple[FalsePositiveScenario, ...]:
    """False-positive scenarios; each exclusion kept verbatim with its file span."""
    out: list[FalsePositiveScenario] = []
    current: dict[str, Any] | None = None
    last = ""

    def flush() -> None:
        if current is None:
            return
        excl = current.get("exclusion")
        span = None
        text = None
        if excl is not None and excl[1] > excl[0]:
            text = source.text[excl[0]:excl[1]]
            span = source.span(excl[0], excl[1])
        out.append(FalsePositiveScenario(current["title"].strip(),
                                         current.get("description"), text, span))

    for line in lines:
        match = LABEL.match(line.text)
        if match is None:
            if line.blank or current is None:
                continue
            if last == "exclusion" and current.get("exclusion"):
                begin, _ = current["exclusion"]
                current["exclusion"] = (begin, line.start + len(line.text.rstrip()))
            elif last == "description" and current.get("description"):
                current["description"] += "\n" + line.text.strip()
            elif last == "scenario":
                current["title"] += " " + line.text.strip()
            continue
        label = match.group(1).lower()
        value = line.text[match.end():].rstrip()
        if label == "scenario":
            flush()
            current, last = {"title": value}, "scenario"
            continue
        if current is None:
            current = {"title": ""}
        if label == "description":
            current["description"], last = (value.strip() or None), "description"
        else:
            begin = line.start + match.end()
            current["exclusion"], last = (begin, begin + len(value)), "exclusion"
    flush()
    return tuple(out)

