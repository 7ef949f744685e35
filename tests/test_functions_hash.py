"""Kusto's hash(): xxhash64 (tests of the algorithm against its reference value and of what
Kusto hashes against the examples its documentation gives), and a refusal to compute what
the documentation leaves open."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rmmc.backends.kql import emit_kql
from rmmc.compiler import functions as F
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.compiler.xxhash64 import xxh64
from rmmc.verify.whole import NOW


def test_xxh64_gives_the_reference_digests():
    assert xxh64(b"") == 0xEF46DB3751D8E999  # the xxHash specification's empty-input value
    # every code path (under 4, 4-7, 8-31, 32 and more bytes) against digests of the C library
    assert xxh64(b"a") == 0xD24EC4F1A98C6E5B
    assert xxh64(b"abc") == 0x44BC2CF5AD770999
    assert xxh64(b"abcd") == 0xDE0327B0D25D92CC
    assert xxh64(b"Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1
    assert xxh64(bytes(range(100))) == 7692681977284421015


@pytest.mark.parametrize("args, expected", [
    (("World",), 1846988464401551951),       # Kusto's documentation, "String input"
    (("World", 100), 51),                    # "String input with mod"
    ((datetime(2015, 1, 1, tzinfo=timezone.utc),), 1380966698541616202),  # "Datetime input"
])
def test_hash_gives_kustos_documented_values(args, expected):
    assert F.FUNCTIONS["hash"].impl(*args) == expected


def test_a_power_of_two_modulo_is_defined_for_every_digest():
    big = next(s for s in (f"x{i}" for i in range(100)) if xxh64(s.encode()) >= 1 << 63)
    assert F.FUNCTIONS["hash"].impl(big, 4) == xxh64(big.encode()) % 4
    with pytest.raises(F.EvaluationError, match="not documented"):
        F.FUNCTIONS["hash"].impl(big)
    with pytest.raises(F.EvaluationError, match="power of"):
        F.FUNCTIONS["hash"].impl(big, 10)


@pytest.mark.parametrize("value", [5, 2.5, True, None, {"a": 1}])
def test_hash_of_a_value_whose_bytes_are_undocumented_is_an_error(value):
    with pytest.raises(F.EvaluationError):
        F.FUNCTIONS["hash"].impl(value, 4)


def test_a_hash_partition_lowers_runs_and_is_written_back():
    query = ("let PartitionCount = 4; DeviceProcessEvents | extend Partition = hash(DeviceId, PartitionCount)"
             " | where hash(DeviceId, 4) == 1 | project DeviceId, Partition")
    lowered = lower_text(query)
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    events = [{"DeviceId": f"device-{i}", "Timestamp": NOW} for i in range(40)]
    rows = run(lowered.rule, events, now=NOW)
    assert rows and all(r["Partition"] == 1 == xxh64(r["DeviceId"].encode()) % 4 for r in rows)
    written = emit_kql(lowered.rule)
    assert written.ok and "hash(DeviceId, 4) == 1" in written.text
