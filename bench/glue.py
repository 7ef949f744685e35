"""The per-file glue of `rmmc translate DIR --to splunk -j 1`, countable by callgrind.

    valgrind --tool=callgrind --callgrind-out-file=OUT python bench/glue.py [DIR] > /dev/null
    callgrind_annotate --inclusive=yes OUT | grep -E 'filterfalse_next|_operator_call|TOTALS'

Runs the `translate` command in this process twice: once over a few files (every module it
needs is imported then, outside the count), then over DIR (default: the SigmaHQ Windows
rules under ../shared) inside `itertools.filterfalse`, with the layers that are not glue
called through `operator.call`: the YAML composer, the Sigma reader, the environment's
adapter and the SPL writer with its backend check.  rmmc calls neither, so `filterfalse_next`
inclusive is the warm run and `_operator_call` inclusive those layers; the difference is the
glue: reading files, decoding, sniffing, documents, compiling's bookkeeping, the translation's
verdicts, the batch loop and the per-rule report (standard output included).  Compile the
bytecode first (`python -m compileall rmmc`).  Add `--toggle-collect=filterfalse_next
--toggle-collect=_operator_call` to collect the glue alone: `callgrind_annotate` then says
which functions it is made of.  Without valgrind it prints the warm run's CPU time.
"""

from __future__ import annotations

import argparse
import itertools
import operator
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS = (("rmmc.compiler.sigma.yaml_tree", "compose_stream"),
          ("rmmc.compiler.sigma", "read_sigma_text"),
          ("rmmc.environments.adapt", "adapt"),
          ("rmmc.backends.splunk.backend", "emit_splunk"),
          ("rmmc.backends", "_unhandled"))
"""The functions whose work is not glue (each module's own name for it)."""


def _through_call(function):
    """`function`, called through `operator.call` (nothing else: this wrapper's own cost is
    counted as glue, the same before and after a change)."""
    def call(*args, **kwargs):
        return operator.call(function, *args, **kwargs)
    return call


def _wrap_layers() -> None:
    """Every module-level binding of a layer function made to call it through `operator.call`."""
    for module_name, name in LAYERS:
        function = getattr(sys.modules[module_name], name)
        wrapped = _through_call(function)
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if not namespace or not str(getattr(module, "__name__", "")).startswith("rmmc"):
                continue
            for key, value in list(namespace.items()):
                if value is function:
                    setattr(module, key, wrapped)


def _translate(paths: list[str]) -> None:
    from rmmc.cli import main

    try:
        main(["translate", *paths, "--to", "splunk", "-j", "1"], standalone_mode=False)
    except SystemExit:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(ROOT / ".." / "shared" / "corpus" / "sigma" / "rules" / "windows"))
    args = parser.parse_args(argv)
    from rmmc.compiler.documents import iter_rule_files

    files = list(iter_rule_files([args.path]))
    _translate(files[::100])  # imports everything the run needs, outside the count
    _wrap_layers()
    started = time.process_time()
    for _ in itertools.filterfalse(lambda paths: _translate(paths), [[args.path]]):
        pass
    total = time.process_time() - started
    print(f"warm run {total:.2f} s CPU", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
