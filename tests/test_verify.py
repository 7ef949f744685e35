"""`rmmc verify`: events around a rule's values, each translation run on its engine, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from rmmc.backends.base import EmitOptions, Translation
from rmmc.compiler.ir import Field, Metadata, Op, Predicate, Rule, Source
from rmmc.verify import verify_paths, verify_rule
from rmmc.verify.lucene import lucene_fullmatch
from rmmc.verify.events import boundary_events

ROOT = Path(__file__).resolve().parent.parent
URL = Field("RemoteUrl")


def net_rule(*predicates) -> Rule:
    from rmmc.compiler.ir import all_of

    return Rule(Metadata(title="t"), Source("DeviceNetworkEvents"), all_of(list(predicates)))


def by_target(verdicts):
    return {v.target: v for v in verdicts}


def test_boundary_events_sit_on_the_term_boundaries():
    events = boundary_events(net_rule(Predicate(URL, Op.TERM, ("remotepc.com",))))
    urls = {e.get("RemoteUrl", None) for e in events}
    for wanted in ("remotepc.com", "REMOTEPC.COM", "xremotepc.comx", "a remotepc.com b",
                   "remotepc.comx", "xremotepc.com", "", None):
        assert wanted in urls, wanted
    assert events == boundary_events(net_rule(Predicate(URL, Op.TERM, ("remotepc.com",))))  # deterministic


def test_seed_rules_agree_on_every_engine_that_runs_here():
    pytest.importorskip("duckdb_kql")
    pytest.importorskip("sigma.backends.sqlite")
    pytest.importorskip("eql")
    seeds = [str(ROOT / "rules" / name) for name in ("rmm_distantdesktop_netconn.txt", "rmm_remotepc_netconn.txt")]
    verdicts = list(verify_paths(seeds, ["kql", "sigma", "eql", "splunk"]))
    assert len(verdicts) == 2
    for v in verdicts:
        got = by_target(v.targets)
        assert got["kql"].status == "agree" and got["kql"].engine == "duckdb-kql", got["kql"]
        assert got["sigma"].status == "agree" and got["sigma"].engine == "pySigma sqlite", got["sigma"]
        assert got["eql"].status == "agree", got["eql"]
        assert got["splunk"].status == "unchecked"
        assert v.events > 50


def test_a_wrong_translation_is_caught_with_a_counterexample(monkeypatch):
    import rmmc.translation as translation

    pytest.importorskip("duckdb_kql")
    rule = net_rule(Predicate(URL, Op.TERM, ("remotepc.com",)))
    wrong = "DeviceNetworkEvents\n| where RemoteUrl contains 'remotepc.com'"  # has widened, unflagged
    monkeypatch.setattr(translation, "emit_adapted", lambda target, adapted, options: Translation(target, wrong))
    _, verdicts = verify_rule(rule, ["kql"])
    (v,) = verdicts
    assert v.status == "disagree" and v.failed
    assert v.expected is False and "remotepc.com" in v.counterexample["RemoteUrl"]
    assert v.counterexample["RemoteUrl"].lower() != "remotepc.com"


def test_flagged_widening_is_approximate_not_a_failure():
    pytest.importorskip("sigma.backends.sqlite")
    rule = net_rule(Predicate(URL, Op.TERM, ("remotepc.com",)))
    _, verdicts = verify_rule(rule, ["sigma"], EmitOptions(loose=True))
    (v,) = verdicts
    assert v.status == "approximate" and not v.failed
    assert "as flagged" in v.detail


def test_refused_and_unchecked():
    rule = net_rule(Predicate(URL, Op.REGEX, ("(?=x)a",)))  # RE2 has no lookahead
    _, verdicts = verify_rule(rule, ["kql", "esql"])
    got = by_target(verdicts)
    assert got["kql"].status == "refused" and "RE2" in got["kql"].detail
    assert got["esql"].status in ("refused", "unchecked")


def test_eql_regexes_match_the_whole_value_on_the_package():
    """Elasticsearch matches a Lucene regex against the whole value (the package alone would
    take a prefix match), and `.` crosses a line break."""
    pytest.importorskip("eql")
    from rmmc.verify.engines import run_eql_engine

    rule = net_rule(Predicate(URL, Op.REGEX, ("b.c",)))
    events = [{"RemoteUrl": v} for v in ("b.c", "bxc", "b.cd", "ab.c", "b\nc")]
    assert run_eql_engine(rule, 'network where RemoteUrl regex~ "b.c"', events) == [0, 1, 4]
    assert run_eql_engine(rule, 'network where RemoteUrl regex~ ("d", "b\\\\.c")', events) == [0]


def test_cli_verify_exit_status_and_json(tmp_path):
    from rmmc.cli import main

    pytest.importorskip("duckdb_kql")
    rule = tmp_path / "r.kql"
    rule.write_text('DeviceNetworkEvents\n| where RemoteUrl has "remotepc.com" and RemotePort > 440\n')
    result = CliRunner().invoke(main, ["verify", str(rule), "--to", "kql,splunk", "--format", "json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    statuses = {t["target"]: t["status"] for t in payload["rules"][0]["targets"]}
    assert statuses == {"kql": "agree", "splunk": "unchecked"}
    broken = tmp_path / "b.kql"
    broken.write_text("DeviceNetworkEvents | where (")
    result = CliRunner().invoke(main, ["verify", str(broken), "--to", "kql"])
    assert result.exit_code == 1 and "error" in result.output
    result = CliRunner().invoke(main, ["verify", str(rule), "--to", "nope"])
    assert result.exit_code == 2


def test_library_surface_reads_sigma_and_verifies():
    import rmmc

    text = ("title: t\nlogsource: {category: process_creation, product: windows}\n"
            "detection:\n  sel: {CommandLine|contains: evil}\n  condition: sel\n")
    (rule, diagnostics), = rmmc.read_sigma_rules(text)
    assert rule is not None and not diagnostics
    count, verdicts = rmmc.verify_rule(rule, ["sigma"])
    assert count > 5 and verdicts[0].status in ("agree", "unchecked")
    assert "ProcessCommandLine contains 'evil'" in rmmc.translate(text, to="kql").text


def test_eql_regex_carets_and_dollars_are_lucene_literals():
    assert lucene_fullmatch(".*(^[^\n]*^).*", "x^ab^y") and not lucene_fullmatch(".*(^[^\n]*^).*", "ab")
    assert lucene_fullmatch('a\\^b\\"$', 'a^b"$')
    with pytest.raises(ValueError):
        lucene_fullmatch("a~b", "adb")  # a Lucene operator rmmc never writes unescaped


def test_engines_that_cannot_check_a_rule_say_so_and_never_guess():
    pytest.importorskip("eql")
    pytest.importorskip("sigma.backends.sqlite")
    cased = net_rule(Predicate(URL, Op.CONTAINS, ("RemotePC",), case_sensitive=True))
    _, verdicts = verify_rule(cased, ["eql"])  # cased tests run as Elasticsearch runs them
    assert verdicts[0].status == "agree" and verdicts[0].engine == "eql package", verdicts[0]
    network = net_rule(Predicate(Field("RemoteIP"), Op.CIDR, ("10.0.0.0/8",)))
    _, verdicts = verify_rule(network, ["sigma"])  # never rmmc's read-back in the engine's place
    assert verdicts[0].status == "unchecked" and verdicts[0].detail.startswith("engine error:"), verdicts[0]
    assert verdicts[0].engine == "pySigma sqlite"


ASCII = st.text(alphabet="aAbBzZ09 _%\\\n-", max_size=6)


@settings(max_examples=300, deadline=None)
@given(ASCII, ASCII)
def test_sqlite_adapters_answer_as_sqlite_does_on_ascii(a, b):
    """The adapters replace SQLite's ASCII-only case folding; on ASCII text they must give
    exactly what SQLite's own NOCASE collation and LIKE give."""
    from rmmc.verify.engines import sqlite_like, sqlite_nocase

    conn = sqlite3.connect(":memory:")
    try:
        builtin_order = conn.execute("SELECT CASE WHEN ? < ? COLLATE NOCASE THEN -1 WHEN ? = ? COLLATE NOCASE "
                                     "THEN 0 ELSE 1 END", (a, b, a, b)).fetchone()[0]
        assert sqlite_nocase(a, b) == builtin_order
        assert sqlite_like(b, a) == conn.execute("SELECT ? LIKE ?", (a, b)).fetchone()[0]
        assert sqlite_like(b, a, "\\") == conn.execute("SELECT ? LIKE ? ESCAPE '\\'", (a, b)).fetchone()[0]
    finally:
        conn.close()


def test_sqlite_adapters_fold_every_letter():
    pytest.importorskip("sigma.backends.sqlite")
    from rmmc.verify.engines import sqlite_like, unicode_fold

    assert sqlite_like("%arrêté%", "Service ARRÊTÉ") == 1
    assert sqlite_like("a\\_b", "a_b", "\\") == 1 and sqlite_like("a\\_b", "axb", "\\") == 0
    assert sqlite_like("a%", "a\nb") == 1
    assert unicode_fold("ẞİ") == "ßİ"  # one character for one
    rule = net_rule(Predicate(URL, Op.EQUALS, ("ARRÊTÉ",)))
    _, verdicts = verify_rule(rule, ["sigma"])
    assert verdicts[0].status == "agree" and verdicts[0].engine == "pySigma sqlite"


def test_rules_with_sigma_field_names_are_checked_under_those_names():
    pytest.importorskip("eql")
    rule = Rule(Metadata(title="t"), Source(None, taxonomy="sigma", product="windows", category="driver_load"),
                Predicate(Field("ImageLoaded"), Op.ENDSWITH, ("\\evil.sys",)))
    _, verdicts = verify_rule(rule, ["eql"])
    assert verdicts[0].status == "agree", verdicts[0]


def test_an_engine_that_fails_leaves_the_target_unchecked_not_the_rule_failed():
    pytest.importorskip("duckdb_kql")
    network = net_rule(Predicate(Field("RemoteIP"), Op.CIDR, ("10.0.0.0/8",)))
    _, verdicts = verify_rule(network, ["kql"])  # duckdb-kql has no ipv4_is_in_range
    assert verdicts[0].status == "unchecked" and verdicts[0].engine == "duckdb-kql", verdicts[0]
    assert verdicts[0].detail.startswith("engine error: duckdb-kql cannot run it")
