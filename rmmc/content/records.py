"""What building one rule file gives: plain, picklable, JSON-able records.

`compile_file` is the unit of work of `rmmc build` (run in this process or in a worker, see
`rmmc.parallel`): it reads one file, compiles each rule once and translates it to every target
of the environments asked for.  Its results are what the build cache stores, so they hold only
plain data: texts, verdicts, and diagnostics as JSON with file positions (line and column,
start and end) but no path, the file being the rule's own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, has_error

Json = dict[str, Any]


@dataclass(frozen=True)
class TargetResult:
    """One rule translated for one target of one environment.  `text` is the main file's text
    ('' when refused); `output` / `sha256` / `companion_files` are where the build put it (paths
    relative to the output directory), filled once the tree is planned."""

    env: str
    target: str
    verdict: str
    text: str = ""
    suffix: str | None = None
    companions: tuple[tuple[str, str], ...] = ()
    diagnostics: tuple[Json, ...] = ()
    output: str | None = None
    sha256: str | None = None
    companion_files: tuple[tuple[str, str], ...] = ()  # (path, sha256)

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d["severity"] == "error")


@dataclass(frozen=True)
class RuleResult:
    """One rule of a rules tree: where it is (`path` relative to the rules directory, its
    `index` in the file), its source hash, what reading and compiling it said, and its targets."""

    path: str
    index: int
    title: str | None
    id: str | None
    source_sha256: str
    diagnostics: tuple[Json, ...] = ()
    targets: tuple[TargetResult, ...] = ()
    query_line: int | None = None  # where the query starts in the file (for annotations)

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d["severity"] == "error")

    @property
    def key(self) -> tuple[str, int]:
        return (self.path, self.index)


@dataclass(frozen=True)
class FileBuild:
    """Every rule of one file for the environments asked (`targets` of each rule holds them
    all, in environment then target order)."""

    path: str
    sha256: str
    rules: tuple[RuleResult, ...] = field(default=())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def diagnostic_json(d: Diagnostic, source: LineIndex | None, own_path: str | None) -> Json:
    """A diagnostic as JSON: severity, code, message and, when it has a span, its start and end
    as 1-based lines and columns of the file (the end computed from the file's text)."""
    out: Json = {"severity": d.severity.value, "code": d.code, "message": d.message}
    if d.span is not None:
        out["line"], out["column"] = d.span.line, d.span.column
        if source is not None:
            end_line, end_column = source.position(max(d.span.end, d.span.offset))
            out["end_line"], out["end_column"] = end_line, end_column
    if d.path and d.path != own_path:
        out["path"] = d.path
    return out


def compile_file(path: str, relative: str, envs: tuple, allow_lossy: bool = False) -> FileBuild:
    """Read `path`, compile each rule once and translate it for every target of `envs`
    (`Environment` values).  Never raises for bad input: problems are diagnostics."""
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document
    from rmmc.translation import translate_compiled

    try:
        with open(path, "rb") as handle:
            digest = sha256_bytes(handle.read())
    except OSError:
        digest = ""
    options = EmitOptions(allow_lossy=allow_lossy)
    read = read_path(path)
    rules = []
    for document in read.documents:
        compiled = compile_document(document)
        own = compiled.diagnostics
        targets = []
        for env in envs:
            for target in env.targets:
                result = translate_compiled(compiled, options=options, **target.arguments())
                found = result.diagnostics[len(own):]
                targets.append(TargetResult(
                    env.name, target.target, result.verdict, result.text, result.suffix,
                    tuple(result.companions),
                    tuple(diagnostic_json(d, document.source, document.path) for d in found)))
        rules.append(RuleResult(
            relative, document.index, document.title, _rule_id(document), digest,
            tuple(diagnostic_json(d, document.source, document.path) for d in own),
            tuple(targets), document.query_span.line if document.query else None))
    file_level = tuple(diagnostic_json(d, None, path) for d in read.diagnostics)
    if not read.documents and has_error(read.diagnostics):
        rules.append(failed_rule(relative, digest, envs, file_level))
    elif rules and file_level:  # said of the file, not of one rule: told with its first rule
        rules[0] = replace(rules[0], diagnostics=file_level + rules[0].diagnostics)
    return FileBuild(relative, digest, tuple(rules))


def failed_rule(relative: str, digest: str, envs: tuple, diagnostics: tuple[Json, ...]) -> RuleResult:
    """A file none of whose rules could be read: one entry, refused for every target."""
    targets = tuple(TargetResult(env.name, t.target, "refused") for env in envs for t in env.targets)
    return RuleResult(relative, 0, None, None, digest, diagnostics, targets)


def file_failed(path: str, message: str, relative: str, envs: tuple) -> FileBuild:
    """A file whose build failed unexpectedly (a bug, a dead worker)."""
    diagnostic = {"severity": "error", "code": "internal",
                  "message": f"internal error while building this file: {message}"}
    return FileBuild(relative, "", (failed_rule(relative, "", envs, (diagnostic,)),))


def _rule_id(document) -> str | None:
    value = (document.metadata or {}).get("id")
    return str(value).strip() if value not in (None, "") else None
