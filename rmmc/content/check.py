"""`rmmc build --check`: a fresh build (in memory) against the `dist/` on disk and its manifest.

What a CI job runs on every pull request.  Each finding names the rule (file, index, title)
and, where it is about one, the environment and target:

- `regression`: a translation got worse than the manifest records (exact -> lossy or refused,
  lossy -> refused);
- `errors`: a rule or a translation has more errors than the manifest records (a new rule
  with errors counts from zero);
- `stale`: the tree is not what the build would write: a translation, a rule or the manifest
  changed, a file is missing or was edited by hand, a rule was removed but its files remain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rmmc.content.build import (MANIFEST, BuildResult, expected_files, manifest_files,
                                manifest_text, read_manifest)
from rmmc.content.records import RuleResult, TargetResult, sha256_bytes

RANK = {"exact": 0, "lossy": 1, "refused": 2}


@dataclass(frozen=True)
class Finding:
    kind: str  # regression | errors | stale
    message: str
    path: str | None = None  # the rule file, relative to the rules directory
    index: int | None = None
    title: str | None = None
    env: str | None = None
    target: str | None = None
    line: int | None = None  # where to annotate the rule file
    column: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        where = self.path or "dist"
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        scope = f" [{self.env}/{self.target}]" if self.target else ""
        return f"{where}: {self.kind}{scope}: {self.message}"


def check_tree(result: BuildResult, outdir: str) -> list[Finding]:
    """Everything that differs between the build `result` and what `outdir` holds."""
    old = read_manifest(outdir)
    if old is None:
        return [Finding("stale", f"{Path(outdir) / MANIFEST} is missing or not written by rmmc "
                                 "build: run `rmmc build`")]
    findings: list[Finding] = []
    old_rules = {(r["path"], r["index"]): r for r in old.get("rules", [])}
    on_disk = _disk_state(outdir, result, old)
    for rule in result.rules:
        previous = old_rules.pop(rule.key, None)
        findings += _rule_findings(rule, previous, on_disk)
    for (path, index), gone in sorted(old_rules.items()):
        findings.append(Finding("stale", "this rule is no longer in the rules tree but dist/ still "
                                         "holds its translations", path, index, gone.get("title")))
    expected = expected_files(result)
    for extra in sorted(manifest_files(old) - set(expected)):
        if not any(f.path is not None for f in findings):  # said already by a rule's finding
            findings.append(Finding("stale", f"{extra} is no longer produced by the build"))
    if not findings and on_disk.get(MANIFEST) != sha256_bytes(manifest_text(result.manifest).encode("utf-8")):
        findings.append(Finding("stale", "manifest.json differs from what the build writes "
                                         "(rmmc version, options or environments changed)"))
    return findings


def _disk_state(outdir: str, result: BuildResult, old: dict[str, Any]) -> dict[str, str | None]:
    """sha256 of every file the build or the previous manifest names (None: absent)."""
    root = Path(outdir)
    out: dict[str, str | None] = {}
    for relative in set(expected_files(result)) | manifest_files(old) | {MANIFEST}:
        try:
            out[relative] = sha256_bytes((root / relative).read_bytes())
        except OSError:
            out[relative] = None
    return out


def _rule_findings(rule: RuleResult, previous: dict[str, Any] | None,
                   on_disk: dict[str, str | None]) -> list[Finding]:
    line = rule.query_line
    base = dict(path=rule.path, index=rule.index, title=rule.title)
    if previous is None:
        out = [Finding("stale", "a new rule: dist/ holds no translation of it", line=line, column=1,
                       **base)]
        if rule.errors:
            out.append(Finding("errors", f"a new rule with {rule.errors} error(s): "
                               + _first_error(rule.diagnostics), **base, **_at(rule.diagnostics, line)))
        return out
    out = []
    old_rule_errors = sum(1 for d in previous.get("diagnostics", []) if d.get("severity") == "error")
    if rule.errors > old_rule_errors:
        out.append(Finding("errors", f"errors grew from {old_rule_errors} to {rule.errors}: "
                           + _first_error(rule.diagnostics), **base, **_at(rule.diagnostics, line)))
    old_targets = {(t["env"], t["target"]): t for t in previous.get("targets", [])}
    stale_targets = 0
    for t in rule.targets:
        before = old_targets.get((t.env, t.target))
        scope = dict(env=t.env, target=t.target)
        if before is None:
            out.append(Finding("stale", "not built for this target yet", **base, **scope,
                               line=line, column=1))
            stale_targets += 1
            continue
        reason = _first_error(t.diagnostics) or _first_error(rule.diagnostics)
        if RANK[t.verdict] > RANK.get(before.get("verdict"), 0):
            out.append(Finding("regression", f"was {before.get('verdict')}, now {t.verdict}"
                               + (f": {reason}" if reason else ""), **base, **scope,
                               **_at(t.diagnostics + rule.diagnostics, line)))
        old_target_errors = int(before.get("errors", 0)) - old_rule_errors
        if t.errors > max(old_target_errors, 0):
            out.append(Finding("errors", f"errors grew from {max(old_target_errors, 0)} to "
                               f"{t.errors}: {_first_error(t.diagnostics)}", **base, **scope,
                               **_at(t.diagnostics, line)))
        why = _stale(t, before, on_disk)
        if why:
            out.append(Finding("stale", why, **base, **scope, line=line, column=1))
            stale_targets += 1
    if not stale_targets and previous.get("sha256") != rule.source_sha256:
        out.append(Finding("stale", "the rule changed since dist/ was built (its translations "
                                    "did not): the manifest records the old source", **base,
                           line=line, column=1))
    return out


def _stale(t: TargetResult, before: dict[str, Any], on_disk: dict[str, str | None]) -> str | None:
    if (before.get("output"), before.get("sha256")) != (t.output, t.sha256):
        if t.output is None:
            return "dist/ holds a translation that the build no longer writes"
        return "dist/ holds an older translation" if before.get("output") else "dist/ holds no translation"
    companions = [(c["path"], c["sha256"]) for c in before.get("companions", [])]
    if companions != list(t.companion_files):
        return "dist/ holds older companion files"
    for path, digest in [(t.output, t.sha256), *t.companion_files]:
        if path is not None and on_disk.get(path) != digest:
            return f"{path} is missing" if on_disk.get(path) is None else f"{path} was changed by hand"
    return None


def _first_error(diagnostics) -> str:
    return next((d["message"] for d in diagnostics if d.get("severity") == "error"), "")


def _at(diagnostics, line: int | None) -> dict[str, int | None]:
    """The position of the first located error (else the query's first line)."""
    for d in diagnostics:
        if d.get("severity") == "error" and d.get("line"):
            return {"line": d["line"], "column": d.get("column") or 1}
    return {"line": line, "column": 1 if line else None}
