"""`make mutate`: a bounded mutation-testing run over rmmc/backends/ and the reference evaluator.

Mutation testing measures the suite: each mutant is a small change to the code (an operator
swapped, a constant changed, a condition negated ...) that the tests should notice.  The tool
is cosmic-ray (from PyPI).  This script:

1. copies rmmc/, tests/, mutate/ and pyproject.toml to a temporary folder (the working tree
   is never mutated);
2. lets cosmic-ray list every mutant of rmmc/backends/ and rmmc/compiler/evaluator.py;
3. keeps a random sample of them (`--sample`, seeded by `--seed`) and marks the rest skipped;
4. runs them (`cosmic-ray exec`, test command mutate/test_mutant.py: the mutated module's own
   tests and its target's meaning properties) until done or until `--budget` seconds pass;
5. prints the score (killed / (killed + survived)) and every survivor with its diff, and writes
   both to `--out` (JSON).

    make mutate                                   # defaults below
    make mutate MUTATE_ARGS='--sample 40 --budget 900'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = ["rmmc/backends", "rmmc/compiler/evaluator.py"]


def copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "_artifacts", ".hypothesis")
    for name in ("rmmc", "tests", "mutate"):
        shutil.copytree(REPO / name, target / name, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    files = [p for m in MODULES for p in ((target / m).rglob("*.py") if (target / m).is_dir() else [target / m])]
    manifest = {str(p.relative_to(target)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    (target / "mutate-manifest.json").write_text(json.dumps(manifest, indent=1))


def config(target: Path, timeout: float) -> Path:
    path = target / "cosmic-ray.toml"
    modules = ", ".join(json.dumps(m) for m in MODULES)
    path.write_text(f"""[cosmic-ray]
module-path = [{modules}]
timeout = {timeout}
excluded-modules = []
test-command = "{sys.executable} mutate/test_mutant.py"

[cosmic-ray.distributor]
name = "local"
""")
    return path


def sample(session: Path, size: int, seed: int) -> tuple[int, int]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        ids = sorted(item.job_id for item in db.pending_work_items)
        keep = set(random.Random(seed).sample(ids, min(size, len(ids))))
        skipped = [i for i in ids if i not in keep]
        db.set_multiple_results(skipped, WorkResult(output="not in the sample",
                                                    worker_outcome=WorkerOutcome.SKIPPED))
        return len(ids), len(keep)


def report(session: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed, survivors, incompetent = 0, [], 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome is WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome is not WorkerOutcome.NORMAL:
                incompetent += 1
            elif result.test_outcome is TestOutcome.SURVIVED:
                m = item.mutations[0]
                survivors.append({"module": str(m.module_path), "line": m.start_pos[0],
                                  "operator": m.operator_name, "occurrence": m.occurrence,
                                  "diff": result.diff})
            elif result.test_outcome is TestOutcome.INCOMPETENT:
                incompetent += 1
            else:
                killed += 1
        pending = sum(1 for _ in db.pending_work_items)
    run = killed + len(survivors)
    return {"killed": killed, "survived": len(survivors), "incompetent": incompetent,
            "not_run": pending, "score": round(killed / run, 4) if run else None,
            "survivors": sorted(survivors, key=lambda s: (s["module"], s["line"]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=120, help="mutants to run (default 120)")
    parser.add_argument("--seed", type=int, default=18, help="which sample (default 18)")
    parser.add_argument("--budget", type=float, default=3600, help="seconds for the whole run (default 3600)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutant (default 300)")
    parser.add_argument("--out", default=str(REPO / "out" / "mutation.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rmmc-mutate-"))
    try:
        copy_tree(work)
        cfg = config(work, args.timeout)
        session = work / "session.sqlite"
        cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
        subprocess.run(cosmic + ["init", str(cfg), str(session)], cwd=work, check=True)
        total, kept = sample(session, args.sample, args.seed)
        print(f"mutate: {total} mutants of {', '.join(MODULES)}; running a sample of {kept} "
              f"(seed {args.seed}), budget {args.budget:.0f} s", flush=True)
        start = time.monotonic()
        proc = subprocess.Popen(cosmic + ["exec", str(cfg), str(session)], cwd=work, start_new_session=True)
        try:
            proc.wait(timeout=args.budget)
        except subprocess.TimeoutExpired:
            import os
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            print(f"mutate: budget of {args.budget:.0f} s spent: reporting the mutants run so far")
        result = report(session)
        result.update(total_mutants=total, sample=kept, seed=args.seed,
                      seconds=round(time.monotonic() - start))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        for s in result["survivors"]:
            print(f"survived: {s['module']}:{s['line']} {s['operator']}\n{s['diff']}")
        score = "n/a" if result["score"] is None else f"{result['score']:.1%}"
        print(f"mutate: {result['killed']} killed, {result['survived']} survived, "
              f"{result['incompetent']} incompetent, {result['not_run']} not run: score {score} "
              f"({result['seconds']} s; details in {out})")
        return 0
    finally:
        if args.keep:
            print(f"mutate: the copy is kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
