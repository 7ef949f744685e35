"""Wrong translations the meaning properties must catch (issue 18's "done when").

Each case copies rmmc/ and tests/ into a temporary folder (never touching the working tree),
applies one small mutation a reviewer could make by mistake, and runs the property that judges
that target's meaning with only its fixed boundary examples (hypothesis profile "explicit": the
same cases every run, a few seconds).  The unmutated copy must pass and every mutant must fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

MUTATIONS = {
    # ES|QL: `<` written `<=`
    "esql-lt-as-le": ("rmmc/backends/esql/backend.py", 'symbol = {Op.LT: "<", Op.LE',
                      'symbol = {Op.LT: "<=", Op.LE', "test_property_7_esql"),
    # EQL: the case-insensitive `:` written as the case-sensitive `==`
    "eql-colon-as-double-equals": ("rmmc/backends/eql.py", 'f"{f} : {string_literal(v)}"',
                                   'f"{f} == {string_literal(v)}"', "test_property_5_eql"),
    # Splunk: `<` written `<=`
    "splunk-lt-as-le": ("rmmc/backends/splunk/backend.py", 'text = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}[op]',
                        'text = {Op.LT: "<=", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}[op]',
                        "test_property_6_splunk"),
}


@pytest.fixture(scope="module")
def copy_factory(tmp_path_factory):
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "_artifacts", ".hypothesis")

    def make(name: str) -> Path:
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(REPO / "rmmc", root / "rmmc", ignore=ignore)
        shutil.copytree(REPO / "tests", root / "tests", ignore=ignore)
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
        return root
    return make


def run_properties(root: Path, tests: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_SEED")}
    env["HYPOTHESIS_PROFILE"] = "explicit"
    selector = " or ".join(tests)
    return subprocess.run([sys.executable, "-c", "import rmmc, sys; print('RMMC', rmmc.__file__); "
                           "import pytest; sys.exit(pytest.main(sys.argv[1:]))",
                           "tests/test_properties.py", "-q", "-x", "-p", "no:cacheprovider", "-k", selector],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_the_unmutated_copy_passes(copy_factory):
    root = copy_factory("unmutated")
    result = run_properties(root, [m[3] for m in MUTATIONS.values()])
    assert f"RMMC {root / 'rmmc' / '__init__.py'}" in result.stdout, result.stdout[-2000:]
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_mutation_fails_a_meaning_property(copy_factory, name):
    path, old, new, test = MUTATIONS[name]
    root = copy_factory(name)
    source = (root / path).read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{path} no longer holds the mutated text {old!r}: update MUTATIONS"
    (root / path).write_text(source.replace(old, new), encoding="utf-8")
    result = run_properties(root, [test])
    assert f"RMMC {root / 'rmmc' / '__init__.py'}" in result.stdout, result.stdout[-2000:]
    assert result.returncode == 1 and "AssertionError" in result.stdout, \
        f"{name} was not caught by {test}:\n{result.stdout[-3000:]}"
