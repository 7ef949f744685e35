"""A join with an externaldata feed, in the `sigma` environment, as a feed test (placeholder).

rmmc/environments/feed_joins.py: `T | join kind=inner (<feed>) on $left.k == $right.c` and
`<feed> | join (T ...) on ...` alert on exactly the events of T whose key is among the feed's
values (case-sensitively, as join keys compare): pySigma's SQLite backend, with the pipeline
`rmmc placeholders` writes from the feed text, must select the events of T that some row of the
KQL rule (run by the reference evaluator over the same feed text) came from.
"""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("sigma.backends.sqlite")

from sigma.backends.sqlite import sqliteBackend  # noqa: E402
from sigma.collection import SigmaCollection  # noqa: E402

from rmmc import translate  # noqa: E402
from rmmc.backends.sigma.fill import pipeline, pysigma_pipeline  # noqa: E402
from rmmc.compiler import ir  # noqa: E402
from rmmc.compiler.kql.lower import lower_text  # noqa: E402
from rmmc.compiler.rows import run  # noqa: E402
from rmmc.verify.engines import sigma_sqlite  # noqa: E402

URI = "https://feeds.example/c2/hosts.csv"
FEED = "Host,Note\nevil.com,a\nEvil.com,b\nbad.org,c\nbad.org,d\nx*y,e\n"
LET = f'let C2 = externaldata(Host:string, Note:string)["{URI}"] with (format="csv", ignoreFirstRecord=true);\n'
HOSTS = ["evil.com", "EVIL.COM", "Evil.com", "bad.org", "BAD.ORG", "x*y", "xay", "other", "", None]
EVENTS = [{ir.TABLE: "DeviceNetworkEvents", "RemoteUrl": h, "RemotePort": 443 + i % 2, "DeviceName": f"d{i}"}
          for i, h in enumerate(HOSTS)]


def _expected(kql: str) -> list[int]:
    """The DeviceNetworkEvents events some row of the KQL rule came from."""
    rule = lower_text(kql).rule
    events = [{k: v for k, v in e.items() if v is not None} for e in EVENTS]
    rows = run(rule, events, external={URI: FEED})
    return sorted({i for row in rows for i in row.sources if i < len(EVENTS)})


def _translated(kql: str):
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    return result


def _selected(text: str) -> list[int]:
    body, _ = pipeline(list(yaml.safe_load_all(text)), {URI: FEED})
    queries = sqliteBackend(pysigma_pipeline(body)).convert(SigmaCollection.from_yaml(text))
    assert len(queries) == 1
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "DestinationHostname" TEXT COLLATE NOCASE, '
                 '"DestinationPort" INTEGER, "Computer" TEXT COLLATE NOCASE)')
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?)",
                     [(i, e["RemoteUrl"], e["RemotePort"], e["DeviceName"]) for i, e in enumerate(EVENTS)])
    return sorted(r[0] for r in conn.execute(str(queries[0]).replace("SELECT *", 'SELECT "i"', 1)))


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | join kind=inner C2 on $left.RemoteUrl == $right.Host",
    "DeviceNetworkEvents | where RemotePort == 443 | join kind=inner (C2 | where Note != 'a') on $left.RemoteUrl == $right.Host"
    " | project Timestamp, RemoteUrl, Note",
    "DeviceNetworkEvents | join kind=leftsemi C2 on $left.RemoteUrl == $right.Host | extend N = 1",
    "C2 | join (DeviceNetworkEvents | where RemotePort == 444) on $left.Host == $right.RemoteUrl",
    "C2 | where Note in ('b', 'c') | join kind=inner DeviceNetworkEvents on $left.Host == $right.RemoteUrl",
    "C2 | join kind=rightsemi DeviceNetworkEvents on $left.Host == $right.RemoteUrl | sort by RemoteUrl",
])
def test_pysigma_selects_the_events_the_join_keeps(query: str) -> None:
    kql = LET + query
    expected = _expected(kql)
    assert expected and len(expected) < len(EVENTS)  # the test tells events apart
    assert _selected(_translated(kql).text) == expected


def test_case_and_wildcards_stay_exact() -> None:
    kql = LET + "DeviceNetworkEvents | join kind=inner C2 on $left.RemoteUrl == $right.Host"
    assert [HOSTS[i] for i in _expected(kql)] == ["evil.com", "Evil.com", "bad.org", "x*y"]


def test_the_shape_changes_are_said() -> None:
    kql = LET + "DeviceNetworkEvents | join kind=inner C2 on $left.RemoteUrl == $right.Host | project RemoteUrl, Note"
    result = _translated(kql)
    shapes = [d.message for d in result.diagnostics if d.code == "shape"]
    assert any("RemoteUrl in (<feed>)" in m and "once each" in m for m in shapes), shapes
    assert any("project RemoteUrl, Note" in m for m in shapes), shapes


def test_a_leftouter_join_with_a_feed_only_adds_columns() -> None:
    kql = LET + ("DeviceNetworkEvents | where RemotePort == 443 "
                 "| join kind=leftouter C2 on $left.RemoteUrl == $right.Host")
    result = _translated(kql)
    doc = yaml.safe_load(result.text)
    assert "rmmc_placeholders" not in doc and doc["detection"]["selection"] == {"DestinationPort": 443}
    assert any("leftouter" in d.message for d in result.diagnostics if d.code == "shape")


@pytest.mark.parametrize("query", [
    # innerunique with the events on the left keeps one event per key: other alerts
    "DeviceNetworkEvents | join C2 on $left.RemoteUrl == $right.Host",
    # a filter after the join reads the feed's columns
    "DeviceNetworkEvents | join kind=inner C2 on $left.RemoteUrl == $right.Host | where Note == 'a'",
    # an anti join keeps the events without a match
    "DeviceNetworkEvents | join kind=leftanti C2 on $left.RemoteUrl == $right.Host",
    # a key the feed computes
    "DeviceNetworkEvents | join kind=inner (C2 | extend H = tolower(Host)) on $left.RemoteUrl == $right.H",
])
def test_other_joins_with_a_feed_stay_refused(query: str) -> None:
    assert not translate(LET + query, "sigma").ok


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | join kind=inner C2 on $left.RemoteUrl == $right.Host",
    "C2 | join (DeviceNetworkEvents) on $left.Host == $right.RemoteUrl | project RemoteUrl",
])
def test_verify_agrees(query: str) -> None:
    from rmmc.verify.runner import verify_rule

    _, verdicts = verify_rule(lower_text(LET + query).rule, ["sigma"])
    assert [(v.status, v.engine) for v in verdicts] == [("agree", "pySigma sqlite")], verdicts
    assert "0 alerting" not in verdicts[0].detail
