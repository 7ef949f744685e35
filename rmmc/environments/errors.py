"""The error an environment that cannot be used raises, apart from the loader that reads the
files: a built-in environment comes from the user's cache, and naming its error must not import
the YAML checker (its tables, difflib) on every `rmmc translate`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmmc.compiler.diagnostics import Diagnostic


class EnvironmentError(Exception):
    """An environment that cannot be used: its located diagnostics say why."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("; ".join(d.message for d in diagnostics))
