"""Done-when of issue 13 for SPL: every query for the seeds, the RMM pack (rules/rmm) and the
shared RMM corpus starts with the environment's search (splunk-sysmon: the `sysmon` macro) and
carries at least one indexed `field=value` term per OR-branch of the detection, read by parsing
the base search (`rmmc.backends.cost.spl_base_search`, checked on hand-written searches first).

Rules the environment cannot hold (a field Sysmon has not) are translated with
allow_unknown_fields, as a user would to see the query; lossy ones with allow_lossy.  A lossy
translation whose whole detection was dropped (a subquery over a table Sysmon has no source for,
widened) has nothing to index: it is left out here, and refused without --allow-lossy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.backends.cost import Macro, Node, Term, covered, spl_base_search
from rmmc.environments import load_environment
from rmmc.translation import translate_file

REPO = Path(__file__).resolve().parent.parent


def test_parse_and_cover_hand_written_searches():
    tree = spl_base_search('search `sysmon` earliest=-5d latest=now a="*x*" b IN ("*y*", "z")\n| where x')
    assert tree == Node("and", (Macro("`sysmon`"), Term("earliest", ("-5d",)), Term("latest", ("now",)),
                                Term("a", ("*x*",)), Term("b", ("*y*", "z"))))
    assert covered(tree)
    # OR binds tighter than AND: (a OR b) c -- each branch of the OR needs a term of its own
    assert covered(spl_base_search('search a="x" OR b="y" c="z"'))
    assert covered(spl_base_search('search (a="x" OR NOT b="y") c="z"'))  # c covers every branch
    assert not covered(spl_base_search('search a="x" OR NOT b="y"'))      # a NOT is no index term
    assert not covered(spl_base_search("search `sysmon` earliest=-5d latest=now"))
    assert not covered(spl_base_search('search a="*"'))                    # a bare wildcard reads all
    assert not covered(spl_base_search('search (a="x" OR (`m` earliest=-1d))'))
    with pytest.raises(ValueError):
        spl_base_search("| tstats count")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".yaml", ".md")
                  and p.name != "README.md")


def _check(paths: list[Path]) -> tuple[int, list[tuple[str, str]]]:
    search = load_environment("splunk-sysmon").place.search
    written, bad = 0, []
    for path in paths:
        for r in translate_file(str(path), "splunk", EmitOptions(allow_lossy=True), allow_unknown_fields=True):
            if not r.text:
                continue
            for query in r.text.strip().split("\n\n"):
                written += 1
                first = query.split("\n", 1)[0]
                widened = r.verdict == "lossy" and first == f"search {search} earliest=-5d latest=now"
                if not first.startswith(f"search {search} "):
                    bad.append((str(path), f"does not start with the environment's search: {first[:120]}"))
                elif not widened and not covered(spl_base_search(query)):
                    bad.append((str(path), f"an OR-branch without an index term: {first[:200]}"))
    return written, bad


def test_seeds_and_rmm_pack_have_an_index_term_per_branch():
    paths = sorted((REPO / "rules").glob("*.txt")) + _files(REPO / "rules" / "rmm")
    written, bad = _check(paths)
    assert written > 100, written
    assert not bad, bad[:5]


@pytest.mark.corpus
def test_shared_rmm_corpus_has_an_index_term_per_branch(rmm_corpus):
    written, bad = _check(_files(rmm_corpus))
    assert written > 100, written
    assert not bad, (len(bad), bad[:5])
