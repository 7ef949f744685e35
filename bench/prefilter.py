"""How much of each query an engine can answer from its index (issue 13).

Over the seeds (rules/*.txt), the RMM pack (rules/rmm) and, when present, the all-tools rule of
the shared corpus, translated as a user would see them (default environment of each target,
--allow-lossy --allow-unknown-fields), count per target:

* splunk: queries; those whose base search has an indexed term in every OR-branch
  (`rmmc.backends.cost.covered`); `match()` calls per query (total, max);
* esql: queries with RLIKE; of those, queries with no index WHERE before (RLIKE alone);
* eql: queries with regex~; of those, queries with no `:` / `like~` / `in~` test besides;
* sigma: documents with `|re`; of those, ones with no `|contains` beside.

    python bench/prefilter.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALL_TOOLS = REPO.parent / "shared" / "corpus" / "rmm" / "Network Indicators" / "rmm__all_netconn.yaml"


def files() -> dict[str, list[Path]]:
    pack = sorted(REPO.glob("rules/*.txt")) + sorted(p for p in (REPO / "rules" / "rmm").rglob("*.txt"))
    out = {"seeds+pack": pack}
    if ALL_TOOLS.is_file():
        out["all-tools rule"] = [ALL_TOOLS]
    return out


def queries(paths: list[Path], to: str) -> list[str]:
    from rmmc.backends.base import EmitOptions
    from rmmc.translation import translate_file

    out = []
    for path in paths:
        for r in translate_file(str(path), to, EmitOptions(allow_lossy=True), allow_unknown_fields=True):
            if r.text:
                out += [q for q in r.text.strip().split("\n\n") if q.strip()] if to != "sigma" else [r.text]
    return out


def measure(paths: list[Path]) -> dict[str, dict[str, int]]:
    from rmmc.backends.cost import covered, spl_base_search

    spl = queries(paths, "splunk")
    matches = [q.count("match(") for q in spl]
    def is_covered(q: str) -> bool:
        try:
            return covered(spl_base_search(q))
        except ValueError:
            return False
    esql = [q for q in queries(paths, "esql") if " RLIKE " in q]
    def esql_indexed(q: str) -> bool:
        return any(line.startswith("| WHERE ") and "COALESCE" not in line and "RLIKE" not in line
                   and "NOW()" not in line for line in q.split("\n"))
    eql = [q for q in queries(paths, "eql") if re.search(r" regex~? ", q)]
    sigma = [q for q in queries(paths, "sigma") if "|re" in q]
    return {
        "splunk": {"queries": len(spl), "every OR-branch indexed": sum(map(is_covered, spl)),
                   "match() total": sum(matches), "match() max per query": max(matches, default=0)},
        "esql": {"queries with RLIKE": len(esql), "RLIKE without index WHERE": sum(not esql_indexed(q) for q in esql),
                 "RLIKE total": sum(q.count(" RLIKE ") for q in esql)},
        "eql": {"queries with regex~": len(eql),
                "regex~ without index test": sum(not re.search(r" (?::|like~|in~) ", q) for q in eql)},
        "sigma": {"documents with |re": len(sigma), "|re without |contains": sum("|contains" not in q for q in sigma)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {name: measure(paths) for name, paths in files().items()}
    for name, per_target in results.items():
        print(f"## {name}")
        for target, counts in per_target.items():
            print(f"  {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
