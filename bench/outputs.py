"""Render rmmc's outputs over the shared corpora, so two commits can be compared byte for byte.

    git archive COMMIT | tar -x -C /tmp/ref                  # a commit to compare with
    python bench/outputs.py render REFDIR --src /tmp/ref --label COMMIT
    python bench/outputs.py render OUTDIR [--src CHECKOUT]   # one run (any commit)
    python bench/outputs.py compare REFDIR NEWDIR            # exit 1 when they differ

`render` runs the `rmmc` CLI of the checkout `--src` (default: this one; e.g. an unpacked
`git archive <commit>`) as `python -m rmmc.cli` with that checkout first on `sys.path`, over
`../shared/corpus/{rmm,kql}` and the SigmaHQ Windows rules: `translate --to T --format json`
for every target (each rule's text and its diagnostics), `translate --to T` as text (standard
output and standard error), and `check` in both formats.  Each run's output is kept whole in
OUTDIR (`<corpus>.<job>.{stdout,stderr}`) with `manifest.json`: per job the exit status and
the SHA-256 of both streams, and per rule of the JSON jobs the SHA-256 of its entry, so
`compare` can name the rules that differ.  The reference is a run made at another commit, not
a checked-in expectation: outputs are allowed to change on main.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT / ".." / "shared").resolve()
CORPORA = {
    "rmm": SHARED / "corpus" / "rmm",
    "kql": SHARED / "corpus" / "kql",
    "sigma": SHARED / "corpus" / "sigma" / "rules" / "windows",
}
TARGETS = ("sigma", "kql", "splunk", "eql", "esql")


def _jobs() -> list[tuple[str, list[str]]]:
    """(name, rmmc arguments after the paths) for every job."""
    jobs = [("check.text", ["check"]), ("check.json", ["check", "--format", "json"])]
    for target in TARGETS:
        jobs.append((f"{target}.json", ["translate", "--to", target, "--format", "json"]))
        jobs.append((f"{target}.text", ["translate", "--to", target]))
    return jobs


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render(outdir: Path, src: Path, workers: int, label: str | None = None) -> int:
    outdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
    commit = label or subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                                     text=True).stdout.strip() or "(not a git checkout)"
    probe = subprocess.run([sys.executable, "-c", "import rmmc; print(rmmc.__file__)"],
                           env=env, cwd=src, capture_output=True, text=True)
    manifest: dict = {"src": str(src), "commit": commit, "rmmc": probe.stdout.strip(), "jobs": {}}
    if not probe.stdout.startswith(str(src)):
        print(f"rmmc imports from {probe.stdout.strip() or probe.stderr.strip()}, not {src}",
              file=sys.stderr)
        return 2
    for corpus, path in CORPORA.items():
        if not path.is_dir():
            print(f"{corpus}: {path} not found, skipped", file=sys.stderr)
            continue
        for name, args in _jobs():
            argv = [sys.executable, "-m", "rmmc.cli", args[0], str(path), *args[1:],
                    "-j", str(workers)]
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=src, capture_output=True)
            seconds = time.perf_counter() - started
            stem = f"{corpus}.{name}"
            (outdir / f"{stem}.stdout").write_bytes(done.stdout)
            (outdir / f"{stem}.stderr").write_bytes(done.stderr)
            entry = {"argv": argv[2:], "exit": done.returncode, "stdout": _sha(done.stdout),
                     "stderr": _sha(done.stderr), "seconds": round(seconds, 2)}
            if name.endswith(".json") and name != "check.json":
                try:
                    entry["rules"] = {f"{r['path']}#{r['index']}": _sha(
                        json.dumps(r, sort_keys=True, ensure_ascii=False).encode("utf-8"))
                        for r in json.loads(done.stdout)}
                except (ValueError, KeyError, TypeError) as exc:
                    entry["rules_error"] = f"{type(exc).__name__}: {exc}"
            manifest["jobs"][stem] = entry
            print(f"{stem:<22} exit {done.returncode}  {seconds:6.1f}s  "
                  f"{len(entry.get('rules', {})) or ''}", file=sys.stderr)
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return 0


def compare(ref: Path, new: Path, shown: int) -> int:
    a = json.loads((ref / "manifest.json").read_text(encoding="utf-8"))
    b = json.loads((new / "manifest.json").read_text(encoding="utf-8"))
    print(f"reference {a['commit']} ({ref})\nnew       {b['commit']} ({new})")
    differing = 0
    for stem in sorted(set(a["jobs"]) | set(b["jobs"])):
        x, y = a["jobs"].get(stem), b["jobs"].get(stem)
        if x is None or y is None:
            print(f"  {stem}: only in {'new' if x is None else 'reference'}")
            differing += 1
            continue
        same = all(x[k] == y[k] for k in ("exit", "stdout", "stderr"))
        rules = x.get("rules", {})
        print(f"  {stem:<22} {'identical' if same else 'DIFFERS'}"
              + (f"  ({len(rules)} rules)" if rules else "")
              + f"  {x['seconds']:.1f}s -> {y['seconds']:.1f}s")
        if same:
            continue
        differing += 1
        if x["exit"] != y["exit"]:
            print(f"    exit status {x['exit']} -> {y['exit']}")
        changed = sorted(k for k in set(rules) | set(y.get("rules", {}))
                         if rules.get(k) != y.get("rules", {}).get(k))
        if changed:
            print(f"    {len(changed)} rules differ, e.g. " + ", ".join(changed[:5]))
        for stream in ("stdout", "stderr"):
            if x[stream] != y[stream]:
                old = (ref / f"{stem}.{stream}").read_text(encoding="utf-8", errors="replace")
                cur = (new / f"{stem}.{stream}").read_text(encoding="utf-8", errors="replace")
                diff = list(difflib.unified_diff(old.splitlines(), cur.splitlines(),
                                                 f"ref/{stem}.{stream}", f"new/{stem}.{stream}",
                                                 lineterm="", n=1))
                for line in diff[:shown]:
                    print("    " + line)
                if len(diff) > shown:
                    print(f"    ... {len(diff) - shown} more diff lines")
    print(f"{differing} of {len(set(a['jobs']) | set(b['jobs']))} jobs differ")
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("render", help="render every target's output over the corpora")
    run.add_argument("outdir", type=Path)
    run.add_argument("--src", type=Path, default=ROOT, help="the rmmc checkout to run")
    run.add_argument("--label", help="what --src is, for the manifest (say `528ccad, git archive`)")
    run.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                     help="rmmc's -j (the output does not depend on it)")
    cmp = sub.add_parser("compare", help="compare two render runs")
    cmp.add_argument("reference", type=Path)
    cmp.add_argument("new", type=Path)
    cmp.add_argument("--lines", type=int, default=40, help="diff lines shown per stream")
    args = parser.parse_args(argv)
    if args.command == "render":
        return render(args.outdir, args.src.resolve(), args.jobs, args.label)
    return compare(args.reference, args.new, args.lines)


if __name__ == "__main__":
    sys.exit(main())
