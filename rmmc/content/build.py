"""`rmmc build`: every rule of a rules tree to every target of each environment.

The tree written under the output directory is one directory per environment and target
(`dist/<env>/<target>/<rule file>`: packaged where the environment packages that target) and
`dist/manifest.json`, which records per rule its source path and content hash, and per target
the output path, its hash, the verdict (exact / lossy / refused) and the diagnostics.

- Deterministic: rules in path order, names planned for the whole tree by `rmmc.output`
  (exclusive creation, `Foo_2` on a clash), the manifest written with sorted keys and no
  time: the same inputs give the same bytes.
- Incremental: what a file gives for an environment is cached under a hash of its content,
  the environment and rmmc (`rmmc.content.cache`); a file is compiled only on a miss, and a
  file on disk is rewritten only when its bytes change.
- Parallel: the files to compile are spread over `jobs` processes (`rmmc.parallel`).
- Owned: the build overwrites or removes only files its previous manifest lists; any other
  file in the way is an error for that rule (unless `force`), never overwritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from rmmc.content.cache import DEFAULT_DIRECTORY, BuildCache, cache_key
from rmmc.content.environments import Environment, environments
from rmmc.content.records import (FileBuild, RuleResult, TargetResult, compile_file, file_failed,
                                  sha256_bytes, sha256_text)

MANIFEST = "manifest.json"
FORMAT = "rmmc-build/1"
VERDICTS = ("exact", "lossy", "refused")


@dataclass
class BuildResult:
    """What a build (or a check) did: the manifest it made, how many (file, environment) pairs
    were compiled or taken from the cache, what it wrote, and for a check its findings."""

    manifest: dict[str, Any]
    rules: list[RuleResult]
    compiled: int = 0
    cached: int = 0
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)  # files that could not be written
    findings: list[Any] | None = None  # `rmmc.content.check.Finding`s; None when not checking
    outdir: str | None = None

    @property
    def rule_errors(self) -> list[RuleResult]:
        """Rules that could not be read or compiled (for every target)."""
        return [r for r in self.rules if r.errors]

    @property
    def ok(self) -> bool:
        if self.findings is not None:
            return not self.findings
        return not self.problems and not self.rule_errors

    def to_json(self) -> dict[str, Any]:
        out = {"compiled": self.compiled, "cached": self.cached, "written": self.written,
               "removed": self.removed, "unchanged": self.unchanged, "problems": self.problems,
               "manifest": self.manifest}
        if self.findings is not None:
            out["findings"] = [f.to_json() for f in self.findings]
        return out


def build(rules_dir: str, outdir: str = "dist", envs: list[str] | tuple[str, ...] | None = None, *,
          jobs: int | None = None, check: bool = False, allow_lossy: bool = False,
          force: bool = False, cache_dir: str | None = DEFAULT_DIRECTORY,
          progress: bool = False, schedule: str | None = None) -> BuildResult:
    """Build `rules_dir` for `envs` (names; default every built-in environment) into `outdir`;
    with `check`, write nothing and compare with what `outdir` holds instead (`findings`);
    `schedule` (`INTERVAL[+OVERLAP]`) overrides the environments' package schedule."""
    from rmmc.compiler.documents import iter_rule_files
    from rmmc.parallel import default_jobs

    chosen = environments(envs, schedule)
    options = {"allow_lossy": allow_lossy}
    files = _rule_files(rules_dir, iter_rule_files)
    cache = BuildCache(cache_dir)
    builds, compiled, cached = _compile(files, chosen, options, cache,
                                        jobs or default_jobs(), progress)
    rules = _planned(_merge(files, builds, chosen), chosen, outdir)
    manifest = make_manifest(rules_dir, rules, chosen, options)
    result = BuildResult(manifest, rules, compiled, cached, outdir=outdir)
    if check:
        from rmmc.content.check import check_tree

        result.findings = check_tree(result, outdir)
        return result
    _write_tree(result, outdir, force)
    return result


# ------------------------------------------------------------------ compiling


def _rule_files(rules_dir: str, iter_rule_files) -> list[tuple[str, str]]:
    """(path, path relative to the rules directory, POSIX) for every rule file, sorted."""
    if os.path.isfile(rules_dir):
        return [(rules_dir, PurePosixPath(Path(rules_dir).name).as_posix())]
    if not os.path.isdir(rules_dir):
        raise FileNotFoundError(f"no rules directory {rules_dir}")
    found = [(p, Path(os.path.relpath(p, rules_dir)).as_posix()) for p in iter_rule_files([rules_dir])]
    return sorted(found, key=lambda pair: pair[1])


def _compile(files, chosen: list[Environment], options, cache: BuildCache, jobs: int,
             progress: bool) -> tuple[dict[tuple[str, str], tuple[RuleResult, ...]], int, int]:
    """Per (relative path, environment): the file's rules for that environment, from the cache
    or compiled (files needing the same environments compiled together, on `jobs` cores)."""
    from rmmc.parallel import run_batch

    out: dict[tuple[str, str], tuple[RuleResult, ...]] = {}
    keys: dict[tuple[str, str], str] = {}
    missing: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for path, relative in files:
        digest = _digest(path)
        needed = []
        for env in chosen:
            key = cache_key(relative, digest, env.fingerprint(), options)
            keys[relative, env.name] = key
            hit = cache.get(key) if digest else None
            if hit is not None:
                out[relative, env.name] = hit
            else:
                needed.append(env.name)
        if needed:
            missing.setdefault(tuple(needed), []).append((path, relative))
    compiled = 0
    by_name = {env.name: env for env in chosen}
    for names, group in missing.items():
        envs = tuple(by_name[n] for n in names)
        relative_of = dict(group)
        paths = [p for p, _ in group]
        work = partial(_compile_one, relative_of=relative_of, envs=envs,
                       allow_lossy=options["allow_lossy"])
        failed = partial(_failed_one, relative_of=relative_of, envs=envs)
        for built in run_batch(work, paths, jobs, failed, progress=progress and len(paths) > 1,
                               label="building", prepare=_prepare):
            for env in envs:
                rules = tuple(replace(r, targets=tuple(t for t in r.targets if t.env == env.name))
                              for r in built.rules)
                out[built.path, env.name] = rules
                if built.sha256:
                    cache.put(keys[built.path, env.name], rules)
                compiled += 1
    cached = len(out) - compiled
    return out, compiled, cached


def _digest(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return sha256_bytes(handle.read())
    except OSError:
        return ""


def _compile_one(path: str, relative_of: dict[str, str], envs: tuple, allow_lossy: bool) -> FileBuild:
    return compile_file(path, relative_of[path], envs, allow_lossy)


def _failed_one(path: str, message: str, relative_of: dict[str, str], envs: tuple) -> FileBuild:
    return file_failed(path, message, relative_of[path], envs)


def _prepare() -> None:
    from rmmc.cli import _prepare_translate

    _prepare_translate()


def _merge(files, builds, chosen: list[Environment]) -> list[RuleResult]:
    """One RuleResult per rule, in path and file order, holding every environment's targets."""
    rules: list[RuleResult] = []
    for _, relative in files:
        per_env = [builds[relative, env.name] for env in chosen]
        for number, first in enumerate(per_env[0]):
            targets = tuple(t for rules_of_env in per_env if number < len(rules_of_env)
                            for t in rules_of_env[number].targets)
            rules.append(replace(first, targets=targets))
    return rules


# ------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class _Planned:
    """What `rmmc.output` needs of a translation to name its files."""

    title: str | None
    target: str
    text: str
    suffix: str | None
    companions: tuple[tuple[str, str], ...]
    rule: int
    position: int
    document: Any = None

    @property
    def ok(self) -> bool:
        return bool(self.text)


def _planned(rules: list[RuleResult], chosen: list[Environment], outdir: str) -> list[RuleResult]:
    """The rules with each target's output path and hash, as the tree will hold them."""
    from rmmc.output import file_text, plan_files

    placed: dict[tuple[int, int], tuple[str, str, tuple[tuple[str, str], ...]]] = {}
    for env in chosen:
        for build_target in env.targets:
            items = [_Planned(r.title, t.target, t.text, t.suffix, t.companions, n, k)
                     for n, r in enumerate(rules) for k, t in enumerate(r.targets)
                     if t.env == env.name and t.target == build_target.target]
            directory = PurePosixPath(env.name, build_target.target)
            for item, files in plan_files(items, directory.as_posix()):
                paths = [(Path(p).as_posix(), sha256_text(file_text(text))) for p, text in files]
                placed[item.rule, item.position] = (paths[0][0], paths[0][1], tuple(paths[1:]))
    out = []
    for n, rule in enumerate(rules):
        targets = []
        for k, t in enumerate(rule.targets):
            if (n, k) in placed:
                output, digest, companions = placed[n, k]
                t = replace(t, output=output, sha256=digest, companion_files=companions)
            targets.append(t)
        out.append(replace(rule, targets=tuple(targets)))
    return out


def make_manifest(rules_dir: str, rules: list[RuleResult], chosen: list[Environment],
                  options: dict[str, Any]) -> dict[str, Any]:
    from rmmc import __version__

    summary: dict[str, dict[str, dict[str, int]]] = {}
    for env in chosen:
        summary[env.name] = {t.target: {v: 0 for v in VERDICTS} for t in env.targets}
    entries = []
    for rule in rules:
        targets = []
        for t in rule.targets:
            summary[t.env][t.target][t.verdict] += 1
            entry: dict[str, Any] = {"env": t.env, "target": t.target, "verdict": t.verdict,
                                     "output": t.output, "sha256": t.sha256,
                                     "errors": rule.errors + t.errors,
                                     "diagnostics": list(t.diagnostics)}
            if t.companion_files:
                entry["companions"] = [{"path": p, "sha256": h} for p, h in t.companion_files]
            targets.append(entry)
        entries.append({"path": rule.path, "index": rule.index, "id": rule.id, "title": rule.title,
                        "sha256": rule.source_sha256, "line": rule.query_line,
                        "diagnostics": list(rule.diagnostics), "targets": targets})
    return {"format": FORMAT, "rmmc": __version__,
            "rules_dir": Path(os.path.normpath(rules_dir)).as_posix(),
            "options": options, "environments": [env.to_json() for env in chosen],
            "rules": entries, "summary": {"rules": len(rules), "files": len({r.path for r in rules}),
                                          "targets": summary}}


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read_manifest(outdir: str) -> dict[str, Any] | None:
    """The manifest a previous build left in `outdir` (None: none, or not one rmmc wrote)."""
    try:
        data = json.loads((Path(outdir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def manifest_files(manifest: dict[str, Any] | None) -> set[str]:
    """Every file a manifest says its build wrote (relative paths)."""
    out: set[str] = set()
    for rule in (manifest or {}).get("rules", []):
        for t in rule.get("targets", []):
            if t.get("output"):
                out.add(t["output"])
            out.update(c["path"] for c in t.get("companions", []))
    return out


def expected_files(result: BuildResult) -> dict[str, tuple[str, RuleResult, TargetResult]]:
    """Every file the tree should hold: relative path -> (its sha256, rule, target)."""
    out = {}
    for rule in result.rules:
        for t in rule.targets:
            if t.output:
                out[t.output] = (t.sha256, rule, t)
            for path, digest in t.companion_files:
                out[path] = (digest, rule, t)
    return out


def _write_tree(result: BuildResult, outdir: str, force: bool) -> None:
    """Write what changed, remove what the previous build wrote and this one does not, then
    the manifest: a file is written only when its bytes differ from the file on disk."""
    from rmmc.output import file_text, write_files

    root = Path(outdir)
    previous = read_manifest(outdir)
    owned = manifest_files(previous)
    for rule in result.rules:
        for t in rule.targets:
            if not t.output:
                continue
            texts = [t.text] + [text for _, text in t.companions]
            paths = [t.output] + [p for p, _ in t.companion_files]
            files = [(root / p, file_text(text)) for p, text in zip(paths, texts)]
            if all(_same(path, text) for path, text in files):
                result.unchanged += len(files)
                continue
            for path, _ in files:
                path.parent.mkdir(parents=True, exist_ok=True)
            ours = force or all(p in owned or not (root / p).exists() for p in paths)
            problem = write_files(files, force=ours and any((root / p).exists() for p in paths))
            if problem is None:
                result.written.extend(paths)
            else:
                result.problems.append({"path": rule.path, "index": rule.index, "env": t.env,
                                        "target": t.target, "message": problem})
    for stale in sorted(owned - set(expected_files(result))):
        try:
            (root / stale).unlink()
            result.removed.append(stale)
        except FileNotFoundError:
            pass
        except OSError as exc:
            result.problems.append({"path": None, "index": None, "env": None, "target": None,
                                    "message": f"cannot remove {root / stale}: {exc.strerror or exc}"})
    _remove_empty_directories(root, {PurePosixPath(p).parent for p in owned})
    text = manifest_text(result.manifest)
    target = root / MANIFEST
    if not _same(target, text):
        root.mkdir(parents=True, exist_ok=True)
        problem = write_files([(target, text)], force=target.exists() and (previous is not None or force))
        if problem is None:
            result.written.append(MANIFEST)
        else:
            result.problems.append({"path": None, "index": None, "env": None, "target": None,
                                    "message": problem})


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _remove_empty_directories(root: Path, directories: set[PurePosixPath]) -> None:
    for directory in sorted(directories, key=lambda d: -len(d.parts)):
        while directory.parts:
            try:
                (root / directory).rmdir()  # only when empty
            except OSError:
                break
            directory = directory.parent


def summary_lines(result: BuildResult) -> list[str]:
    """The manifest summary, one line per environment and target, then what the run did."""
    lines = []
    targets = result.manifest["summary"]["targets"]
    width = max((len(f"{e}/{t}") for e in targets for t in targets[e]), default=10)
    for env, per_target in targets.items():
        for target, counts in per_target.items():
            lines.append(f"  {f'{env}/{target}':<{width}}  {counts['exact']:>4} exact  "
                         f"{counts['lossy']:>4} lossy  {counts['refused']:>4} refused")
    s = result.manifest["summary"]
    head = f"{s['rules']} rules in {s['files']} files"
    total = result.compiled + result.cached
    run = (f"{result.compiled} of {total} builds (file x environment) compiled, "
           f"{result.cached} from the cache" + (": nothing recompiled" if total and not result.compiled else ""))
    if result.findings is None:
        run += (f"; {len(result.written)} files written, {result.unchanged} unchanged"
                f"{f', {len(result.removed)} removed' if result.removed else ''}")
    return [f"{head}: {run}"] + lines
