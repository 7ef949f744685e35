"""The SigmaHQ -> Splunk run's layers, each countable by callgrind in one process.

    valgrind --tool=callgrind --callgrind-out-file=OUT python bench/layers.py [DIR] [--env NAME]
    callgrind_annotate --inclusive=yes OUT | grep -E 'filterfalse_next|starmap_next|functools_reduce|TOTALS'

Reads and compiles every rule of DIR (default: the SigmaHQ Windows rules under ../shared)
inside `itertools.filterfalse`, adapts each to the environment (default: splunk-sysmon) inside
`itertools.starmap` and writes each adapted rule's SPL inside `functools.reduce`: rmmc calls
none of them, so the inclusive instruction count of `filterfalse_next` is the reading layer
(files, sniffing, YAML, the Sigma reader, compiling), that of `starmap_next` the adapting layer
and that of `functools_reduce` the writing layer (`emit_adapted`: the backend registry's check,
the SPL writer, prefilters, diagnostics), each in one pass as the CLI runs them.  Compile the bytecode first (`python -m compileall
rmmc`), or modules imported on first use are compiled inside a layer.
Without valgrind it prints each layer's CPU time.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(ROOT / ".." / "shared" / "corpus" / "sigma" / "rules" / "windows"))
    parser.add_argument("--env", default="splunk-sysmon")
    args = parser.parse_args(argv)

    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.documents import iter_rule_files, read_path
    from rmmc.compiler.pipeline import compile_document
    from rmmc.environments import environment_for
    from rmmc.translation import _adapt, emit_adapted

    files = list(iter_rule_files([args.path]))
    env = environment_for("splunk", args.env)
    started = time.process_time()
    compiled: list = []

    def read(path: str) -> bool:
        compiled.extend(compile_document(doc, "default") for doc in read_path(path).documents)
        return False

    for _ in itertools.filterfalse(read, files):
        pass
    read = time.process_time()
    adapted = list(itertools.starmap(_adapt, [(c.rule, "splunk", env, False) for c in compiled
                                              if c.rule is not None]))
    adapting = time.process_time()
    options = EmitOptions()
    written = functools.reduce(lambda n, a: n + bool(emit_adapted("splunk", a, options).text) if a.ok else n,
                               adapted, 0)
    writing = time.process_time()
    print(f"{len(compiled)} rules read in {read - started:.2f} s CPU, {len(adapted)} adapted in "
          f"{adapting - read:.2f} s, {written} written in {writing - adapting:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
