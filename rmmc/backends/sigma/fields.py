"""Defender column -> Sigma field, for one rule's table, with the diagnostics that says how.

A rule whose fields are Sigma names already (`Source.taxonomy == "sigma"`) keeps them, silently.
Otherwise the map is the schema's (`TableSchema.sigma_field`).  A column the table does not map keeps
its own name, with one note naming it; a column SigmaHQ has no field for (`non_taxonomy`) is
emitted under its Defender name, listed in one note; a bare-file-name column mapped to a
full-path Sigma field (`name_only`: ParentImage) gets a note.  Two columns landing on one Sigma field
would merge two different tests, so that is refused; so is a name holding `|` (a KQL column
`['a|contains']`), which Sigma would read as the field `a` with a modifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rmmc.backends.base import note, unsupported
from rmmc.compiler.diagnostics import Diagnostic, Span

TARGET = "sigma"


@dataclass
class FieldMapper:
    """Maps the columns of one table; collects its diagnostics in `diagnostics`."""

    table_name: str | None
    table: Any | None  # a rmmc.compiler.schema.TableSchema, or None when the table is unknown
    taxonomy: str | None = None  # "sigma": the rule's fields are Sigma names already (kept, silently)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _mapped: dict[str, str] = field(default_factory=dict)
    _owner: dict[str, str] = field(default_factory=dict)
    _non_taxonomy: list[str] = field(default_factory=list)

    def sigma(self, column: str, span: Span | None = None) -> str:
        """The Sigma field for a column (the column itself when there is no mapping)."""
        known = self._mapped.get(column)
        if known is not None:
            return known
        if self.taxonomy == "sigma":
            mapped: str | None = column
        else:
            mapped = self.table.sigma_field(column) if self.table is not None else None
        if mapped is None:
            mapped = column
            where = f"table {self.table_name}" if self.table is not None else (
                f"unknown table {self.table_name}" if self.table_name else "a rule without a table")
            self.diagnostics.append(note(
                TARGET, f"field {column} has no Sigma field mapping for {where}: emitted as '{column}'", span))
        elif self.taxonomy == "sigma":
            pass
        elif column in getattr(self.table, "non_taxonomy", ()):
            self._non_taxonomy.append(column)
        elif column in getattr(self.table, "name_only", ()):
            self.diagnostics.append(note(
                TARGET, f"{column} holds a bare file name, while Sigma's {mapped} holds a full path "
                        "in other log sources: the test is on the file name", span))
        if "|" in mapped or not mapped.strip():
            # pySigma splits a detection key at `|`: the rest would be read as modifiers.
            self.diagnostics.append(unsupported(
                TARGET, f"field name {mapped!r} cannot be a Sigma field: "
                        + ("Sigma reads what follows '|' as value modifiers" if "|" in mapped
                           else "an empty field is a keyword search"), span))
        owner = self._owner.get(mapped)
        if owner is not None and owner != column:
            self.diagnostics.append(unsupported(
                TARGET, f"fields {owner} and {column} both map to Sigma field '{mapped}'", span))
        self._owner[mapped] = column
        self._mapped[column] = mapped
        return mapped

    def finish(self) -> None:
        """Add the one note listing the non-taxonomy columns used."""
        if self._non_taxonomy:
            names = ", ".join(self._non_taxonomy)
            self.diagnostics.append(note(
                TARGET, f"no SigmaHQ taxonomy field for {names} in {self.table_name}: "
                        "emitted under the Defender column name"))
            self._non_taxonomy = []
