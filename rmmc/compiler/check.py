"""`rmmc check`: read rule files, parse every query, and collect located diagnostics.

Each file is handled on its own: a file that cannot be read, or a rule that does not parse,
becomes diagnostics in the report and the batch goes on.  Positions are in the original
file (the document readers map query positions back to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from rmmc.compiler.diagnostics import Diagnostic, Severity, has_error, refuse_lossy
from rmmc.compiler.documents import FileResult, RuleDocument, iter_rule_files, read_path


@dataclass(frozen=True)
class CheckedRule:
    document: RuleDocument
    diagnostics: tuple[Diagnostic, ...]  # in file coordinates, with path

    @property
    def ok(self) -> bool:
        return not has_error(self.diagnostics)


@dataclass(frozen=True)
class CheckedFile:
    path: str
    source_text: str | None
    rules: tuple[CheckedRule, ...]
    diagnostics: tuple[Diagnostic, ...]  # about the file itself

    def all_diagnostics(self) -> list[Diagnostic]:
        found = list(self.diagnostics)
        for rule in self.rules:
            found.extend(rule.diagnostics)
        # A warning about the file (say, "not valid YAML") travels with each of its rules:
        # report it once.
        unique = list(dict.fromkeys(found))
        return sorted(unique, key=_position)


@dataclass
class CheckReport:
    files: list[CheckedFile] = field(default_factory=list)

    @property
    def rule_count(self) -> int:
        return sum(len(f.rules) for f in self.files)

    def diagnostics(self) -> list[Diagnostic]:
        return [d for f in self.files for d in f.all_diagnostics()]

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics() if d.severity is severity)

    @property
    def ok(self) -> bool:
        return self.count(Severity.ERROR) == 0

    def summary(self) -> str:
        files, rules = len(self.files), self.rule_count
        errors, warnings = self.count(Severity.ERROR), self.count(Severity.WARNING)
        return (f"{files} file{'s' * (files != 1)}, {rules} rule{'s' * (rules != 1)}: "
                f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")


def _position(d: Diagnostic) -> tuple[int, int]:
    return (d.span.offset, 0) if d.span is not None else (-1, 0)


def check_document(document: RuleDocument, env=None, allow_lossy: bool = False) -> CheckedRule:
    """Read one rule as `translate` does up to the model: a KQL rule's query is parsed (its
    document warnings and parse errors, located in the file); a Sigma rule, already read
    with its file, gives the reader's diagnostics (the rules it refuses are errors here).
    With `env` (an `rmmc.environments.Environment`), a rule that reads into the model is also
    put into that environment, and what the environment says about it is reported (fields it
    does not have, conventions it cannot rewrite), with `translate`'s policy: what would make
    other alerts fire is an error unless `allow_lossy`."""
    from rmmc.compiler.documents.model import DocumentKind

    checked = _check_syntax(document)
    if env is None or not checked.ok:
        return checked
    from rmmc.compiler.pipeline import compile_document
    from rmmc.environments.adapt import adapt

    compiled = compile_document(document)
    if compiled.rule is None:
        return checked
    extra = [d if d.path else d.with_path(document.path) for d in adapt(compiled.rule, env).diagnostics]
    if not allow_lossy:
        extra = refuse_lossy(extra)
    return CheckedRule(document, tuple(dict.fromkeys((*checked.diagnostics, *extra))))


def _check_syntax(document: RuleDocument) -> CheckedRule:
    from rmmc.compiler.documents.model import DocumentKind

    if document.kind is DocumentKind.SIGMA:
        from rmmc.compiler.pipeline import compile_document

        return CheckedRule(document, compile_document(document).diagnostics)
    from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql

    found = list(document.warnings)
    try:
        query = parse_kql(document.query)
    except KqlSyntaxError as exc:
        found.extend(document.locate(d) for d in exc.diagnostics)
    except Exception as exc:  # a bug of ours must not stop the batch
        found.append(_internal_error(document, exc))
    else:
        found.extend(document.locate(d) for d in query.warnings)
    return CheckedRule(document, tuple(found))


def check_file(result: FileResult, env=None, allow_lossy: bool = False) -> CheckedFile:
    rules = tuple(check_document(doc, env, allow_lossy) for doc in result.documents)
    text = result.documents[0].source.text if result.documents else getattr(result, "text", None)
    return CheckedFile(result.path, text, rules, tuple(result.diagnostics))


def check_one(path: str, env=None, allow_lossy: bool = False) -> CheckedFile:
    """Check one rule file (`-` for stdin); never raises."""
    try:
        return check_file(read_path(path), env, allow_lossy)
    except Exception as exc:  # never a traceback, never a stopped batch
        return file_failed(path, f"{type(exc).__name__}: {exc}")


def file_failed(path: str, message: str) -> CheckedFile:
    """The report of a file whose check failed unexpectedly (a bug, a dead worker)."""
    return CheckedFile(path, None, (), (Diagnostic(
        Severity.ERROR, f"internal error while reading this file: {message}",
        None, "internal", path),))


def check_paths(paths: Iterable[str], jobs: int = 1, progress: bool = False, env=None,
                allow_lossy: bool = False) -> CheckReport:
    """Check every rule file under `paths` (files, directories, `-` for stdin), in order;
    with `jobs` > 1, large batches are checked on that many processes (`rmmc.parallel`),
    with the same report.  `env`: also put each rule into that environment (what would change
    the alerts there is an error unless `allow_lossy`)."""
    from functools import partial

    from rmmc.parallel import run_batch

    files = list(iter_rule_files(paths))
    work = partial(check_one, env=env, allow_lossy=allow_lossy) if env is not None else check_one
    return CheckReport(run_batch(work, files, jobs, file_failed, progress=progress,
                                 label="checking", prepare=_prepare))


def _prepare() -> None:
    """Build the KQL parser before workers fork, so each one inherits it."""
    from rmmc.compiler.kql.parser import _lark

    _lark()


def _internal_error(document: RuleDocument, exc: Exception) -> Diagnostic:
    return Diagnostic(Severity.ERROR,
                      f"internal error: {type(exc).__name__}: {exc} (please report this rule)",
                      document.query_span, "internal", document.path)

