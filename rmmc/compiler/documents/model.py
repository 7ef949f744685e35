"""The one model every rule-document reader produces.

A file holds one or more rules; each `RuleDocument` carries its query text as extracted
(dedented, LF line ends) plus the map back to the file, so that a diagnostic found in the
query can be reported at its line and column in the original file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Mapping

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Span
from rmmc.compiler.slots_init import fast_init


class DocumentKind(str, Enum):
    KQL = "kql"                      # a bare query (.kql, .csl, .txt)
    SENTINEL_YAML = "sentinel-yaml"  # Sentinel analytic / hunting rule YAML
    HUNT = "hunt"                    # hypothesis + KQL + YAML + table + false-positive scenarios
    MARKDOWN = "markdown"            # fenced query blocks, several rules per file
    SIGMA = "sigma"                  # Sigma YAML: rules, correlations, filters (one or more documents)


@dataclass(frozen=True, slots=True)
class FalsePositiveScenario:
    """One false-positive scenario of a hunt document, kept verbatim.

    `exclusion` is the `Filter/Exclusion:` text (an expression or free prose); its span is
    where that text sits in the file, so a later stage can locate errors inside it."""

    title: str
    description: str | None = None
    exclusion: str | None = None
    exclusion_span: Span | None = None


@dataclass(frozen=True, slots=True)
class RuleDocument:
    """One rule read from a file.

    `query_line_starts[i]` is the file offset of column 1 of line i+1 of `query`: the
    extracted query must be, line by line, a contiguous slice of the file starting there
    (readers guarantee it, or add a warning and map each line to the nearest place)."""

    path: str
    kind: DocumentKind
    query: str
    query_line_starts: tuple[int, ...]
    source: LineIndex
    index: int = 0
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    hypothesis: str | None = None
    scenarios: tuple[FalsePositiveScenario, ...] = ()
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def query_offset(self) -> int:
        """File offset of the query's first character."""
        return self.query_line_starts[0] if self.query_line_starts else 0

    @property
    def query_span(self) -> Span:
        """Where the whole query sits in the file."""
        return self.file_span(Span(0, len(self.query), 1, 1))

    def file_offset(self, query_offset: int) -> int:
        """File offset of a character of the query."""
        starts = self.query_line_starts
        if not starts:
            return query_offset
        line_no = self.query.count("\n", 0, max(0, query_offset))
        line_no = min(line_no, len(starts) - 1)
        line_begin = self.query.rfind("\n", 0, max(0, query_offset)) + 1
        return starts[line_no] + (query_offset - line_begin)

    def file_span(self, span: Span) -> Span:
        """Relocate a span of the query to the file."""
        start = self.file_offset(span.offset)
        end = self.file_offset(span.end) if span.end != span.offset else start
        line, column = self.source.position(start)
        return Span(start, end, line, column)

    def locate(self, diagnostic: Diagnostic) -> Diagnostic:
        """A query diagnostic, moved to file coordinates and tagged with this file's path."""
        span = self.file_span(diagnostic.span) if diagnostic.span is not None else None
        return replace(diagnostic, span=span, path=self.path)

    @property
    def label(self) -> str:
        """A short name for messages: the title, else path and index."""
        return self.title or (f"{self.path}#{self.index + 1}" if self.index else self.path)


fast_init(RuleDocument, FalsePositiveScenario)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
