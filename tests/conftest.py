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

Hypothesis runs under the "ci" profile when the CI environment variable is set (deterministic,
bounded), "dev" otherwise; HYPOTHESIS_PROFILE overrides both ("long": 5000 examples per property,
for `make verify-long`).
"""

from __future__ import annotations

import json
import os
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
    from hypothesis import HealthCheck, settings
except ImportError:  # the suite still collects without the test extras
    settings = None  # type: ignore[assignment]
else:
    settings.register_profile(
        "ci",
        deadline=None,
        max_examples=200,
        derandomize=True,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("dev", deadline=None, max_examples=100)
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oracle: needs Microsoft's KQL parser (node + tests/oracle/node_modules)")
    config.addinivalue_line("markers", "corpus: runs over a whole shared corpus (slower; prints a summary)")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if _REPORT_LINES:
        terminalreporter.section("rmmc corpus summary")
        for line in _REPORT_LINES:
            terminalreporter.write_line(line)


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
