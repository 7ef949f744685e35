"""Reader for bare KQL files (.kql, .csl, .txt): the whole text is one query."""

from __future__ import annotations

from rmmc.compiler.diagnostics import LineIndex, error
from rmmc.compiler.documents.lines import join_pairs, line_pairs, trim_blank
from rmmc.compiler.documents.model import DocumentKind, RuleDocument
from rmmc.compiler.documents.result import FileResult


def read_plain(text: str, path: str, source: LineIndex) -> FileResult:
    """One `RuleDocument` (kind KQL); a BOM and blank edge lines are left out of the query,
    with the line starts still pointing into the original text."""
    pairs = trim_blank(line_pairs(text))
    if not pairs:
        return FileResult(path, (), (error("no query found (the file is blank)",
                                           source.span(0), "doc-no-query"),), DocumentKind.KQL)
    query, starts = join_pairs(pairs)
    doc = RuleDocument(path, DocumentKind.KQL, query, starts, source)
    return FileResult(path, (doc,), (), DocumentKind.KQL)
