"""The test command cosmic-ray runs for each mutant (in the temporary copy `mutate/run.py` made).

It finds the module the mutant changed (against `mutate-manifest.json`, the copy's pristine
hashes) and runs the tests that judge it: that backend's unit tests and the meaning properties
of its target (tests/test_properties.py) under the hypothesis profile "mutation" (the fixed
boundary examples plus 30 derandomized random ones, no shrinking: the same verdict every time).
Exit status 0: the mutant survived; anything else: killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ALL_PROPERTIES = "property_"
TESTS = {
    "rmmc/backends/esql/backend.py": (["tests/test_backend_esql.py"], "property_7"),
    "rmmc/backends/eql.py": (["tests/test_backend_eql.py"], "property_5"),
    "rmmc/backends/splunk/backend.py": (["tests/test_backend_splunk.py"], "property_6"),
    "rmmc/backends/kql.py": (["tests/test_backend_kql.py"], "property_1 or property_4"),
}
SIGMA = (["tests/test_backend_sigma.py"], "property_2 or property_3")
SHARED = (["tests/test_widen.py", "tests/test_translate.py", "tests/test_evaluator.py"], ALL_PROPERTIES)


def changed(root: Path) -> list[str]:
    manifest = json.loads((root / "mutate-manifest.json").read_text())
    return [path for path, digest in manifest.items()
            if hashlib.sha256((root / path).read_bytes()).hexdigest() != digest]


def selection(paths: list[str]) -> tuple[list[str], str]:
    files: list[str] = []
    properties: list[str] = []
    for path in paths:
        if path in TESTS:
            extra, props = TESTS[path]
        elif path.startswith("rmmc/backends/sigma"):
            extra, props = SIGMA
        else:
            extra, props = SHARED
        files += [f for f in extra if f not in files]
        properties.append(props)
    return files, " or ".join(properties)


def main() -> int:
    root = Path.cwd()
    paths = changed(root)
    files, properties = selection(paths or ["rmmc/compiler/evaluator.py"])
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_SEED")}
    env["HYPOTHESIS_PROFILE"] = "mutation"
    base = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    for command in (base + files, base + ["tests/test_properties.py", "-k", properties]):
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
