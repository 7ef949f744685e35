"""What reading one file gives: its rules and the file-level problems found."""

from __future__ import annotations

from dataclasses import dataclass

from rmmc.compiler.diagnostics import Diagnostic, has_error
from rmmc.compiler.documents.model import DocumentKind, RuleDocument
from rmmc.compiler.fast_replace import replace
from rmmc.compiler.slots_init import fast_init


@dataclass(frozen=True, slots=True)
class FileResult:
    """The rules read from one file (`documents`, in file order) and the file-level
    problems (`diagnostics`: unreadable, not UTF-8, binary, empty, no query).  Readers
    never raise; everything that went wrong is here or in a document's `warnings`."""

    path: str
    documents: tuple[RuleDocument, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    kind: DocumentKind | None = None

    @property
    def has_errors(self) -> bool:
        return has_error(self.all_diagnostics)

    @property
    def all_diagnostics(self) -> tuple[Diagnostic, ...]:
        """File-level diagnostics followed by every document's warnings."""
        return self.diagnostics + tuple(w for doc in self.documents for w in doc.warnings)

    def with_path(self, path: str) -> "FileResult":
        """The same result with `path` set on it, its documents and all diagnostics."""
        if self._about(path):
            return self  # set already (as every reader does): nothing to copy
        docs = tuple(replace(d, path=path, warnings=tuple(w.with_path(path) for w in d.warnings))
                     for d in self.documents)
        diags = tuple(d.with_path(path) for d in self.diagnostics)
        return replace(self, path=path, documents=docs, diagnostics=diags)

    def _about(self, path: str) -> bool:
        """Whether the result, its documents and all diagnostics say `path` already (loops, not
        generators: asked of every file read)."""
        if self.path != path:
            return False
        for diagnostic in self.diagnostics:
            if diagnostic.path != path:
                return False
        for document in self.documents:
            if document.path != path:
                return False
            for warning in document.warnings:
                if warning.path != path:
                    return False
        return True


fast_init(FileResult)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
