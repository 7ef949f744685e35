"""The hostile-input sweep the suite keeps running: a seeded mutation fuzz of a few hundred
corpus rules through check, translate (every target) and explain (`tests/fuzz.py`), in process.
`make fuzz` runs the long one (10,000 mutations, with the time and memory limits)."""

from __future__ import annotations

import os

import pytest

from fuzz import corpus_files, fuzz, mutate, replay

ROUNDS = int(os.environ.get("RMMC_FUZZ_ROUNDS", "300"))
SEED = 20240611
WATCHDOG = 300.0  # seconds per round: only so a hang fails the test instead of stopping the suite


@pytest.fixture(scope="module")
def files(shared_dir):
    found = corpus_files()
    if len(found) < 100:
        pytest.skip("the shared corpora are not present")
    return found


def test_mutations_are_seeded(files):
    import random

    text = files[0].read_text(encoding="utf-8", errors="replace")
    assert mutate(text, random.Random(7)) == mutate(text, random.Random(7))
    assert replay(files[0], 7) == mutate(text, random.Random(7))


def test_bounded_fuzz_finds_no_traceback_internal_error_or_hang(files, terminal_report):
    report = fuzz(ROUNDS, SEED, WATCHDOG, files)
    terminal_report("fuzz: " + report.summary(WATCHDOG))
    assert report.rounds == ROUNDS and report.rules > ROUNDS // 2
    assert not report.failures, "\n".join(
        f"{f.kind} in {f.source} (round seed {f.seed}; tests/fuzz.py replay): {f.detail}"
        for f in report.failures[:10])
