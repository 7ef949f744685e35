"""Peer measurement, run with bench/.venv/bin/python (pySigma lives only there).

Converts every Sigma rule under a directory one by one with pySigma (the library behind
sigma-cli), catching each rule's failure, and prints one JSON line of figures.
usage: sigma_peer.py RULES_DIR BACKEND PIPELINE [LIMIT]
"""

import json
import os
import sys
import time


def main() -> None:
    root, backend_name, pipeline_name = sys.argv[1:4]
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    from sigma.collection import SigmaCollection
    from sigma.plugins import InstalledSigmaPlugins

    plugins = InstalledSigmaPlugins.autodiscover()
    paths = sorted(os.path.join(d, n) for d, _, names in os.walk(root)
                   for n in names if n.endswith((".yml", ".yaml")))
    if limit:
        paths = paths[:limit]
    texts = []
    for p in paths:
        with open(p, encoding="utf-8") as handle:
            texts.append(handle.read())
    ok = failed = 0
    reasons: dict[str, int] = {}
    start = time.perf_counter()
    # One backend for the whole directory, as `sigma convert DIR` does.
    backend = plugins.backends[backend_name](processing_pipeline=plugins.pipelines[pipeline_name]())
    for text in texts:
        try:
            result = backend.convert(SigmaCollection.from_yaml(text))
            ok += 1 if result else 0
            failed += 0 if result else 1
        except Exception as exc:  # one bad rule must not stop the run
            failed += 1
            reasons[type(exc).__name__] = reasons.get(type(exc).__name__, 0) + 1
    seconds = time.perf_counter() - start
    print(json.dumps({"rules": len(texts), "converted": ok, "failed": failed,
                      "seconds": seconds, "rules_per_s": len(texts) / seconds if seconds else None,
                      "failure_kinds": reasons}))


if __name__ == "__main__":
    main()
