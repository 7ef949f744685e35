"""What every backend shares: its options, its result, and how it reports what it cannot say.

A backend turns an IR `Rule` into target text.  Where the target cannot express a node
exactly it says so with a diagnostic, never silently:

* `lossy` (warning): translated with a flagged approximation (the message says exactly
  what changes: which events would now match or no longer match);
* `unsupported` (error): not translated; the rule's output is refused or incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass

from rmmc.compiler.diagnostics import Diagnostic, Severity, Span


@dataclass(frozen=True)
class EmitOptions:
    loose: bool = False             # Sigma: `has` as |contains (a reported widening) instead of |re
    apply_exclusions: bool = False  # AND the understood exclusions into the detection


@dataclass(frozen=True)
class Translation:
    """A backend's answer: the text (empty when it could not translate) and its diagnostics."""

    target: str
    text: str
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.text) and not any(d.is_error for d in self.diagnostics)


def lossy(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.WARNING, f"{target}: {message}", span, "lossy")


def unsupported(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, f"{target}: {message}", span, "unsupported")


def note(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.NOTE, f"{target}: {message}", span, "note")
