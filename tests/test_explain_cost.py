"""`rmmc explain --cost` and the query readers behind it (rmmc/backends/cost.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rmmc.backends.cost import cost
from rmmc.cli import main


def test_readers_per_target():
    spl = cost("splunk", 'search `sysmon` earliest=-5d latest=now a="*x*"\n| where match(a, "x") AND lower(b)=="y"\n')
    assert spl.index == ["`sysmon`", "a=*x*"] and spl.every_branch_indexed
    assert spl.scan == ["match() regex", "lower() comparison"]
    bare = cost("splunk", "search earliest=-5d latest=now\n| where match(a, \"x\")\n")
    assert bare.index == [] and not bare.every_branch_indexed
    esql = cost("esql", 'FROM logs-*\n| WHERE @timestamp > NOW() - 5 days\n| WHERE TO_LOWER(a) LIKE "*x*"\n'
                        '| WHERE TO_LOWER(COALESCE(a, "")) RLIKE ".*x.*"')
    assert esql.index == ["a"] and esql.scan == ["RLIKE regex"]
    eql = cost("eql", 'process where a like~ "*x*" and a regex~ ".*x.*"')
    assert eql.index == ["a"] and len(eql.scan) == 1
    kql = cost("kql", "T | where a has 'x' and b contains 'y'")
    assert kql.index == ["a"] and kql.scan == ["contains"]


def test_explain_cost_says_what_each_engine_indexes():
    result = CliRunner().invoke(main, ["explain", "--cost", "rules/rmm_remotepc_netconn.txt"])
    assert result.exit_code == 0, result.output
    text = result.output[result.output.index("cost ("):]
    splunk = text[text.index("  splunk:"):text.index("  esql:")]
    assert 'DestinationHostname=*remotepc.com*' in splunk and "every OR-branch has an index term: yes" in splunk
    assert "3 match() regex" in splunk  # has, has, has_any of 3 as one alternation
    assert "5 RLIKE regex" in text[text.index("  esql:"):]
    result = CliRunner().invoke(main, ["explain", "--cost", "--format", "json", "rules/rmm_remotepc_netconn.txt"])
    costs = json.loads(result.stdout)[0]["cost"]
    assert set(costs) == {"kql", "splunk", "esql", "eql", "sigma"}
    assert costs["sigma"]["index"] and costs["sigma"]["per_event"] == ["|re regex"] * 3
