"""Reader for Sigma YAML files: one `RuleDocument` per rule the file defines.

The Sigma reader (`rmmc.compiler.sigma`) does the work once for the whole stream, since a
correlation or a filter document refers to rules beside it; each document carries its read
rule under `metadata["_sigma"]` for `compile_document`.  The document's query is the whole
file (line starts map one to one), so every span the reader gives is already in the file.
"""

from __future__ import annotations

from typing import Any

from rmmc.compiler.diagnostics import LineIndex
from rmmc.compiler.documents.model import DocumentKind, RuleDocument
from rmmc.compiler.documents.result import FileResult

SIGMA_KEY = "_sigma"

_reader: Any = None
"""`rmmc.compiler.sigma.reader` once a Sigma file is read (imported then: `rmmc check` of KQL
rules never needs it; an import statement run per file costs two raised AttributeErrors inside
the import machinery even when the module is loaded)."""


def read_sigma_document(text: str, path: str, source: LineIndex,
                        composed: list[Any] | None = None) -> FileResult:
    """`composed`: the file's YAML nodes when the kind was decided on them (`sniff.classify`)."""
    global _reader
    if _reader is None:
        from rmmc.compiler.sigma import reader as _reader
    rules, problems = _reader.read_sigma_text(text, path, source=source, composed=composed)
    documents = []  # a loop, not tuple() over a generator: run for every Sigma file
    for i, rule in enumerate(rules):
        documents.append(RuleDocument(path, DocumentKind.SIGMA, text, source.starts, source,
                                      index=i, title=rule.title,
                                      metadata={**rule.metadata, SIGMA_KEY: rule}))
    return FileResult(path, tuple(documents), tuple(problems), DocumentKind.SIGMA)
