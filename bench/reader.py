"""The Sigma reader's own work over the SigmaHQ rules, countable by callgrind apart from YAML.

    valgrind --tool=callgrind --callgrind-out-file=OUT python bench/reader.py [DIR]
    callgrind_annotate --inclusive=yes OUT | grep -E 'takewhile_next|dropwhile_next|TOTALS'

Reads every file of DIR (default: the SigmaHQ Windows rules under ../shared), one after the
other as the CLI does: composes its YAML (`yaml_tree.compose_stream`, the compiled composer
where built) inside `itertools.takewhile`, then reads the composed stream into rules
(`read_sigma_text`: the `Y` trees into the detection model, diagnostics included) inside
`itertools.dropwhile`.
rmmc calls neither, so `takewhile_next`'s inclusive count is the YAML layer and
`dropwhile_next`'s the reader's own.  `--profile` prints cProfile's top functions of the
reader instead; without valgrind it prints each part's CPU time.  Compile the bytecode first
(`python -m compileall rmmc`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(ROOT / ".." / "shared" / "corpus" / "sigma" / "rules" / "windows"))
    parser.add_argument("--profile", nargs="?", const="tottime", help="cProfile the reader (sorted by tottime or cumtime)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="read the files N times (warm caches after the first; for a sampling profiler)")
    args = parser.parse_args(argv)

    from rmmc.compiler.diagnostics import LineIndex
    from rmmc.compiler.schema import load_schema
    from rmmc.compiler.sigma import read_sigma_text
    from rmmc.compiler.sigma.yaml_tree import compose_stream

    load_schema()
    texts = [(str(p), p.read_text(encoding="utf-8")) for p in sorted(Path(args.path).rglob("*.yml"))]
    counts = [0, 0]
    times = [0.0, 0.0]

    def compose(item: tuple[str, str]) -> bool:
        path, text = item
        source = LineIndex(text)
        nodes, problems = compose_stream(text, source)
        composed.append((path, text, source, None if problems else nodes))
        return False

    def read(item: tuple) -> bool:
        path, text, source, nodes = item
        rules, _ = read_sigma_text(text, path, source=source, composed=nodes)
        counts[0] += len(rules)
        counts[1] += sum(r.rule is not None for r in rules)
        return True

    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
    for item in texts * args.repeat:  # one file at a time, as the CLI reads them
        composed: list = []
        started = time.process_time()
        for _ in itertools.takewhile(compose, [item]):
            pass
        composing = time.process_time()
        if args.profile:
            profile.enable()
        for _ in itertools.dropwhile(read, composed):
            pass
        if args.profile:
            profile.disable()
        times[0] += composing - started
        times[1] += time.process_time() - composing
    if args.profile:
        pstats.Stats(profile).sort_stats(args.profile).print_stats(45)
    print(f"{len(texts)} files composed in {times[0]:.2f} s CPU, {counts[0]} rules "
          f"({counts[1]} read) in {times[1]:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
