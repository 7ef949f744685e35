"""Constructs of real hunting queries that SPL now says exactly (issue 14): each runs rmmc's SPL
on `tests/spl_pipeline.py` and compares the rows with the reference evaluator's, boundary rows
included (`compare` from test_splunk_stages)."""

from __future__ import annotations

import pytest

import rmmc
from rmmc.backends.splunk.backend import emit_splunk
from tests.test_splunk_stages import T0, compare

TEXTS = ["", "a", "abcdefg", "abcdefgh", "é", "ééé", "aé", "€", "€€", "€ab", "😀", "😀ab", "a😀b",
         "日本語", "\u0080\u07ff\u0800\uffff\U00010000", "line\nbreak", "  ", "\u3000"]


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | where string_size(RemoteUrl) < 8",
    "DeviceNetworkEvents | where string_size(RemoteUrl) == 4",
    "DeviceNetworkEvents | extend n = string_size(RemoteUrl), m = strlen(RemoteUrl) | project n, m, RemoteUrl",
    "DeviceNetworkEvents | extend x = extract(@'.*\\.(.*)$', 1, RemoteUrl) "
    "| where isnotempty(x) and string_size(x) < 4",
])
def test_string_size_counts_utf8_bytes(query):
    # 1, 2, 3 and 4-byte characters, each at the edges of its range (U+0080, U+07FF, U+0800,
    # U+FFFF, U+10000), the empty text and a missing field ('' in KQL)
    rule = rmmc.lower_text(query).rule
    events = [{"RemoteUrl": t, "Timestamp": T0} for t in TEXTS + [x + ".ab€" for x in TEXTS]]
    compare(rule, events + [{"Timestamp": T0}])


def test_string_size_is_written_without_lossy_diagnostics():
    t = emit_splunk(rmmc.lower_text("DeviceNetworkEvents | where string_size(RemoteUrl) < 8").rule,
                    fields="defender")
    assert t.ok and not [d for d in t.diagnostics if d.code in ("lossy", "unsupported")]
    assert "len(replace(" in t.text
