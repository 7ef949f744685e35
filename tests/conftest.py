"""Shared fixtures for rmmc's test suite.

- ``repo_root``: the project checkout.
- ``shared_dir``: the shared test data that sits beside the checkout (``<repo>/../shared``);
  tests that need it skip when it is absent. Its files are read in place, never copied.
- ``kql_corpus`` / ``rmm_corpus``: folders of the real-world KQL and RMM corpora in it.
- ``kusto_oracle``: one persistent Microsoft KQL parser process for the whole session
  (see tests/kusto_oracle.py); skips with the reason when node or the npm package is missing.
- ``kusto_oracle_defender``: the same in semantic mode against the shared Defender schema.
- ``terminal_report``: call it with a line to have that line printed in pytest's closing summary
  (shown even when output is captured).

Hypothesis runs under the "ci" profile when the CI environment variable is set, "dev"
otherwise; HYPOTHESIS_PROFILE overrides both ("long": 5000 examples per property, for `make
verify-long`).  Every run draws fresh random examples from a seed printed in the header and
the closing summary (after the fixed `@example`s, which always run): `HYPOTHESIS_SEED=N`
(or `--hypothesis-seed=N`) replays a run.

Under CI=true a test that skips because an oracle or the shared data is missing (an engine
package, node and Microsoft's parser, ../shared) FAILS instead, naming what is missing: CI
must not lose a check without saying so (`.ci/run` installs node and npm when absent).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DIR = REPO_ROOT.parent / "shared"

if str(TESTS_DIR) not in sys.path:  # make tests/kusto_oracle.py importable from any rootdir
    sys.path.insert(0, str(TESTS_DIR))

from kusto_oracle import KustoOracle, OracleResult, oracle_unavailable_reason  # noqa: E402

try:
    from hypothesis import HealthCheck, Phase, settings
except ImportError:  # the suite still collects without the test extras
    settings = None  # type: ignore[assignment]
else:
    settings.register_profile(
        "ci",
        deadline=None,
        max_examples=200,
        print_blob=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("dev", deadline=None, max_examples=100)
    # tests/test_mutations_caught.py: only the fixed @examples, no random ones, no shrinking.
    settings.register_profile("explicit", deadline=None, phases=[Phase.explicit], print_blob=False)
    # mutate/test_mutant.py (make mutate): the fixed examples and 30 derandomized random ones,
    # no shrinking, so a mutant gets the same verdict every time.
    settings.register_profile("mutation", deadline=None, max_examples=30, derandomize=True, database=None,
                              phases=[Phase.explicit, Phase.generate], print_blob=False,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    # `make verify-long`: the properties (tests/test_properties.py) with a large budget.
    settings.register_profile(
        "long",
        deadline=None,
        max_examples=5000,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# -- markers and the closing summary ------------------------------------------------------------

_REPORT_LINES: list[str] = []


_SEED: list[int] = []


def _hypothesis_seed(config: pytest.Config) -> int | None:
    """The seed of this run's random examples: --hypothesis-seed, HYPOTHESIS_SEED, or a fresh
    one; forced on every property so that the printed number replays the run."""
    if settings is None:
        return None
    from hypothesis import core

    given = config.getoption("--hypothesis-seed", default=None) or os.environ.get("HYPOTHESIS_SEED")
    seed = int(given) if given not in (None, "") else random.SystemRandom().randrange(2 ** 32)
    core.global_force_seed = seed
    return seed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oracle: needs Microsoft's KQL parser (node + tests/oracle/node_modules)")
    config.addinivalue_line("markers", "corpus: runs over a whole shared corpus (slower; prints a summary)")
    seed = _hypothesis_seed(config)
    if seed is not None:
        _SEED.append(seed)


def pytest_report_header(config: pytest.Config) -> str | None:
    if _SEED:
        return f"hypothesis seed: {_SEED[0]} (replay with HYPOTHESIS_SEED={_SEED[0]})"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if _REPORT_LINES:
        terminalreporter.section("rmmc corpus summary")
        for line in _REPORT_LINES:
            terminalreporter.write_line(line)
    if _SEED:
        terminalreporter.write_line(f"hypothesis seed: {_SEED[0]} (replay with HYPOTHESIS_SEED={_SEED[0]})")


# -- CI cannot lose its oracles ------------------------------------------------------------------

# Skip reasons that mean "an oracle or the shared data is missing" (fixtures below, importorskip).
_MISSING = re.compile(r"not present|could not import|unavailable|not installed|not found on PATH|missing",
                      re.IGNORECASE)
_WHAT = (("node", "Microsoft's KQL parser (tests/oracle: node and npm; .ci/run installs them)"),
         ("kusto oracle", "Microsoft's KQL parser (tests/oracle: node and npm; .ci/run installs them)"),
         ("shared", "the shared test data (../shared beside the checkout)"),
         ("eql", "Elastic's eql package (make test installs it)"),
         ("duckdb", "duckdb-kql (make test installs it)"),
         ("sigma", "pySigma and its backends (make test installs them)"))


def missing_oracle(reason: str) -> str | None:
    """What a skip reason says is missing, in words, or None when the skip is no lost oracle."""
    if not _MISSING.search(reason):
        return None
    lowered = reason.lower()
    return next((what for key, what in _WHAT if key in lowered), reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001
    outcome = yield
    report = outcome.get_result()
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    what = missing_oracle(reason)
    if what is not None:
        report.outcome = "failed"
        report.longrepr = (f"CI=true: this check lost its oracle: {what} is missing ({reason}). "
                           "CI must run every oracle; install it (make test, .ci/run) instead of skipping.")


@pytest.fixture(scope="session")
def terminal_report() -> Callable[[str], None]:
    """``terminal_report("...")`` prints the line in the closing summary of the run."""
    return _REPORT_LINES.append


# -- paths --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip("shared/ not present")
    return SHARED_DIR


@pytest.fixture(scope="session")
def corpus_texts(shared_dir: Path) -> list[tuple[Path, str]]:
    """Every file of the shared corpora that reads as UTF-8 text, with its text, in path order
    (for comparing a fast path with the code it replaces on real inputs)."""
    texts = []
    for path in sorted((shared_dir / "corpus").rglob("*")):
        if not path.is_file():
            continue
        try:
            texts.append((path, path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return texts


@pytest.fixture(scope="session")
def kql_corpus(shared_dir: Path) -> Path:
    path = shared_dir / "corpus" / "kql"
    if not (path / "index.jsonl").is_file():
        pytest.skip("shared/corpus/kql not present")
    return path


@pytest.fixture(scope="session")
def rmm_corpus(shared_dir: Path) -> Path:
    path = shared_dir / "corpus" / "rmm"
    if not path.is_dir():
        pytest.skip("shared/corpus/rmm not present")
    return path


# -- the Microsoft parser oracle -----------------------------------------------------------------


@pytest.fixture(scope="session")
def kusto_oracle() -> Iterator[KustoOracle]:
    reason = oracle_unavailable_reason()
    if reason is not None:
        pytest.skip(f"Kusto oracle unavailable: {reason}")
    oracle = KustoOracle()
    try:
        yield oracle
    finally:
        oracle.close()


@pytest.fixture(scope="session")
def kusto_oracle_defender(shared_dir: Path) -> Iterator[KustoOracle]:
    reason = oracle_unavailable_reason()
    if reason is not None:
        pytest.skip(f"Kusto oracle unavailable: {reason}")
    schema = shared_dir / "tools" / "defender_schema.json"
    if not schema.is_file():
        pytest.skip("shared/tools/defender_schema.json not present")
    oracle = KustoOracle(schema=schema)
    try:
        yield oracle
    finally:
        oracle.close()


# -- the real-world KQL corpus, read once and judged once by Microsoft's parser --------------


@dataclass(frozen=True)
class CorpusQuery:
    file: str  # relative to shared/corpus/kql, e.g. "reprise99+Sentinel-Queries/0055.kql"
    text: str


@pytest.fixture(scope="session")
def kql_corpus_queries(kql_corpus: Path) -> list[CorpusQuery]:
    index = (kql_corpus / "index.jsonl").read_text(encoding="utf-8").splitlines()
    files = [json.loads(line)["file"] for line in index if line.strip()]
    return [CorpusQuery(f, (kql_corpus / f).read_text(encoding="utf-8")) for f in files]


@pytest.fixture(scope="session")
def kql_corpus_verdicts(kusto_oracle: KustoOracle, kql_corpus_queries: list[CorpusQuery]) -> list[OracleResult]:
    """Microsoft's parser on every corpus query (syntax only), in corpus order."""
    return kusto_oracle.check_many(q.text for q in kql_corpus_queries)


# -- the playground (`rmmc web`) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def playground_server():
    """One real `rmmc web` server on a free loopback port for the session (see
    tests/playground_server.py); skips when the web extra is not installed."""
    from playground_server import PlaygroundServer, web_unavailable_reason

    reason = web_unavailable_reason()
    if reason is not None:
        pytest.skip(f"rmmc web unavailable: {reason}")
    server = PlaygroundServer().start()
    try:
        yield server
    finally:
        server.stop()
