"""How many real hunting queries each target translates exactly, lossily, or refuses.

Over the files of `../shared/corpus/kql` that read a Defender `Device*` table, run
`rmmc translate FILES --to TARGET --format json` (the CLI itself, as a user would) and count
each rule once:

* exact: written, with no error and no `lossy` diagnostic;
* lossy: written with a `lossy` diagnostic (only with `--allow-lossy` when what fires changes);
* refused: not written (an error: the construct cannot be said, or it would change what fires).

    python bench/exactness.py [--targets kql,splunk,sigma,eql,esql] [--json out/exactness.json]
    python bench/exactness.py --causes 15     # also the most frequent first refusal causes
    python bench/exactness.py --targets splunk --env splunk-defender   # in another environment
    python bench/exactness.py --targets splunk --env splunk-defender --contrast splunk-sysmon
        # the rules exact in the first environment that the second refuses, by first cause:
        # what the second environment's data lacks, not what the translation cannot say

Prints a Markdown table (the README's "Whole queries" table comes from it).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "kql"
DEVICE_TABLE = re.compile(r"\bDevice[A-Z][A-Za-z]*(Events|Info|Tvm[A-Za-z]*)\b")
TARGETS = ("kql", "splunk", "sigma", "eql", "esql")


def device_files(corpus: Path = CORPUS) -> list[Path]:
    """The corpus files whose text names a Device* table."""
    files = []
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.suffix in (".kql", ".csl", ".txt", ".md", ".yaml", ".yml"):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if DEVICE_TABLE.search(text):
                files.append(path)
    return files


def _cause(message: str) -> str:
    """A refusal message with its values blanked, so equal causes count together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "<v>", message)
    text = re.sub(r"\b\d+\b", "<n>", text)
    return text[:110]


def translations(target: str, files: list[Path], extra: list[str]) -> list[dict]:
    """`rmmc translate FILES --to TARGET --format json`: one result per rule."""
    command = [sys.executable, "-m", "rmmc.cli", "translate", *map(str, files), "--to", target,
               "--format", "json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"{target}: rmmc did not print JSON (status {done.returncode}):\n{done.stderr[-2000:]}")


def verdict(result: dict) -> str:
    """exact / lossy / refused, as the module docstring defines them."""
    diagnostics = result.get("diagnostics", [])
    if not result.get("ok") or any(d.get("severity") == "error" for d in diagnostics):
        return "refused"
    return "lossy" if any(d.get("code") == "lossy" for d in diagnostics) else "exact"


def first_error(result: dict) -> dict:
    return next((d for d in result.get("diagnostics", []) if d.get("severity") == "error"), {})


def measure(target: str, files: list[Path], extra: list[str]) -> dict:
    results = translations(target, files, extra)
    counts = collections.Counter()
    causes = collections.Counter()
    for r in results:
        counts[verdict(r)] += 1
        error = first_error(r)
        if error:
            causes[_cause(error.get("message", ""))] += 1
    total = sum(counts.values())
    return {"target": target, "rules": total, **{k: counts[k] for k in ("exact", "lossy", "refused")},
            "causes": causes.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--causes", type=int, default=0, help="print the N most frequent refusal causes")
    parser.add_argument("--allow-lossy", action="store_true", help="pass --allow-lossy to rmmc")
    parser.add_argument("--env", default=None,
                        help="pass --env to rmmc (an environment every target given serves)")
    parser.add_argument("--contrast", default=None, metavar="ENV",
                        help="also list why ENV refuses the rules exact in --env (one target)")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        raise SystemExit(f"skipped: {CORPUS} is absent")
    files = device_files()
    extra = ["--allow-lossy"] if args.allow_lossy else []
    if args.env:
        extra += ["--env", args.env]
    rows = [measure(t, files, extra) for t in args.targets.split(",")]
    where = f", in {args.env}" if args.env else ", each target in its default environment"
    print(f"{len(files)} files of ../shared/corpus/kql read a Device* table{where}\n")
    print("| target | rules | exact | lossy | refused |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        n = row["rules"] or 1
        print(f"| {row['target']} | {row['rules']} | {row['exact']} ({row['exact'] / n:.0%}) "
              f"| {row['lossy']} ({row['lossy'] / n:.0%}) | {row['refused']} ({row['refused'] / n:.0%}) |")
    if args.causes:
        for row in rows:
            print(f"\n{row['target']}: first refusal causes")
            for cause, count in row["causes"][:args.causes]:
                print(f"  {count:5d}  {cause}")
    if args.contrast:
        contrast(args.targets.split(",")[0], files, extra, args.env, args.contrast)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(rows, indent=2))


def contrast(target: str, files: list[Path], extra: list[str], env: str | None, other: str) -> None:
    """The rules exact in `env` that `other` does not write exactly, by the first error's code
    and cause: the same translation in two environments, so what differs is the environment."""
    base = translations(target, files, extra)
    rest = [a for a in extra if a not in ("--env", env)]
    there = translations(target, files, [*rest, "--env", other])
    codes, causes = collections.Counter(), collections.Counter()
    for here, elsewhere in zip(base, there):
        if verdict(here) == "exact" and verdict(elsewhere) != "exact":
            error = first_error(elsewhere)
            codes[error.get("code", "-")] += 1
            causes[_cause(error.get("message", ""))] += 1
    print(f"\n{target}: {sum(codes.values())} rules exact in {env or 'the default environment'} "
          f"and not in {other}; first error codes {dict(codes.most_common())}")
    for cause, count in causes.most_common():
        print(f"  {count:5d}  {cause}")


if __name__ == "__main__":
    main()
