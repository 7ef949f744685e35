"""KQL externaldata feeds in Sigma as placeholders (rmmc/backends/sigma/placeholders.py, fill.py).

The Sigma rule rmmc writes, converted by pySigma's SQLite backend with the pipeline
`rmmc placeholders` writes from the feed's text, must select the events the reference evaluator
selects with the KQL rule over the same feed text.  SQLite runs the query as `rmmc verify` does
(columns TEXT COLLATE NOCASE, `sigma_sqlite`).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

pytest.importorskip("sigma.backends.sqlite")

from sigma.backends.sqlite import sqliteBackend  # noqa: E402
from sigma.collection import SigmaCollection  # noqa: E402
from sigma.processing.pipeline import ProcessingPipeline  # noqa: E402

from rmmc import translate  # noqa: E402
from rmmc.backends.sigma.fill import (FillError, pipeline, pipeline_text, placeholder_values,  # noqa: E402
                                      placeholders_of, pysigma_pipeline)
from rmmc.compiler.kql.lower import lower_text  # noqa: E402
from rmmc.compiler.rows import run  # noqa: E402
from rmmc.verify.engines import sigma_sqlite  # noqa: E402

URI = "https://feeds.example/lists/bad-hosts.txt"
FEED = "# bad hosts, one a line\nEvil.com\na*b\nx?y\nc\\d\n#comment\nEvil.com\nlower.org\n"
LET = f'let Feed = externaldata(Host:string)["{URI}"] with (format="txt", ignoreFirstRecord=true);\n'
WHERE = '(Feed | where Host !startswith "#" | distinct Host)'
HOSTS = ["Evil.com", "evil.com", "EVIL.COM", "a*b", "aXb", "ab", "x?y", "xzy", "c\\d", "cd", "c\\\\d",
         "lower.org", "LOWER.ORG", "other", "", None, "#comment"]
EVENTS = [{"RemoteUrl": h, "DeviceName": f"d{i}"} for i, h in enumerate(HOSTS)]


def _kql(test: str) -> str:
    return LET + f"DeviceNetworkEvents\n| where {test}\n"


def _sigma(kql: str) -> str:
    result = translate(kql, "sigma")
    assert result.ok, [d.message for d in result.diagnostics]
    return result.text


def _expected(kql: str, feed: str = FEED, uri: str = URI) -> list[int]:
    rule = lower_text(kql).rule
    events = [{k: v for k, v in e.items() if v is not None} for e in EVENTS]
    return sorted(i for row in run(rule, events, external={uri: feed}) for i in row.sources)


def _selected(sigma_text: str, pipe) -> list[int]:
    """The events pySigma's SQLite query selects (Sigma names: RemoteUrl is DestinationHostname)."""
    queries = sqliteBackend(pipe).convert(SigmaCollection.from_yaml(sigma_text))
    assert len(queries) == 1
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "DestinationHostname" TEXT COLLATE NOCASE, '
                 '"SourceHostname" TEXT COLLATE NOCASE)')
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?)",
                     [(i, e["RemoteUrl"], e["DeviceName"]) for i, e in enumerate(EVENTS)])
    return sorted(r[0] for r in conn.execute(str(queries[0]).replace("SELECT *", 'SELECT "i"', 1)))


def _pipeline(sigma_text: str, feed: str = FEED):
    body, warnings = pipeline(list(yaml.safe_load_all(sigma_text)), {URI: feed})
    return body, warnings


@pytest.mark.parametrize("test", [f"RemoteUrl in {WHERE}", f"RemoteUrl in~ {WHERE}",
                                  f"RemoteUrl !in {WHERE}", f"RemoteUrl !in~ {WHERE}",
                                  f'not(RemoteUrl in {WHERE}) and DeviceName != "d0"'])
def test_pysigma_selects_what_the_evaluator_selects(test: str) -> None:
    kql = _kql(test)
    text = _sigma(kql)
    body, _ = _pipeline(text)
    expected = _expected(kql)
    assert expected and len(expected) < len(EVENTS)  # the test tells events apart
    assert _selected(text, pysigma_pipeline(body)) == expected


def test_case_insensitive_tests_are_exact_with_the_yaml_pipeline() -> None:
    kql = _kql(f"RemoteUrl in~ {WHERE}")
    text = _sigma(kql)
    body, warnings = _pipeline(text)
    assert warnings == []
    yaml_pipeline = ProcessingPipeline.from_yaml(pipeline_text(body))
    assert _selected(text, yaml_pipeline) == _expected(kql)
    assert [HOSTS[i] for i in _expected(kql)] == ["Evil.com", "evil.com", "EVIL.COM", "a*b", "x?y", "c\\d",
                                                  "lower.org", "LOWER.ORG"]


def test_pysigma_drops_cased_on_expanded_values() -> None:
    """pySigma's defect that `pysigma_pipeline` works around (and `pipeline` warns about): with
    its own value_placeholders, `|expand|cased` compares case-insensitively.  When pySigma fixes
    it this test fails: then the warning and the workaround can go."""
    kql = _kql(f"RemoteUrl in {WHERE}")
    text = _sigma(kql)
    body, warnings = _pipeline(text)
    assert len(warnings) == 1 and "|cased" in warnings[0]
    with_pysigma = _selected(text, ProcessingPipeline.from_yaml(pipeline_text(body)))
    expected = _expected(kql)
    assert [HOSTS[i] for i in expected] == ["Evil.com", "a*b", "x?y", "c\\d", "lower.org"]
    assert set(expected) < set(with_pysigma)
    assert {HOSTS[i] for i in set(with_pysigma) - set(expected)} == {"evil.com", "EVIL.COM", "LOWER.ORG"}


def test_the_rule_names_the_placeholder_and_keeps_what_it_stands_for() -> None:
    kql = _kql(f"RemoteUrl in {WHERE}")
    result = translate(kql, "sigma")
    doc = yaml.safe_load(result.text)
    selection = doc["detection"]["selection"]
    (key, value), = selection.items()
    assert key == "DestinationHostname|expand|cased"
    name = value.strip("%")
    assert name.startswith("rmmc_feeds_example_bad_hosts_txt_") and len(name.rsplit("_", 1)[1]) == 8
    spec = doc["rmmc_placeholders"][name]
    assert spec["uris"] == [URI] and spec["format"] == "txt" and spec["columns"] == ["Host:string"]
    assert spec["column"] == "Host" and "distinct Host" in spec["query"]
    rule = SigmaCollection.from_yaml(result.text).rules[0]
    assert rule.custom_attributes["rmmc_placeholders"][name]["uris"] == [URI]  # pySigma keeps it
    notes = [d for d in result.diagnostics if d.code == "note" and name in d.message]
    assert len(notes) == 1 and URI in notes[0].message and notes[0].span is not None
    assert result.rules[0].verdict == "exact"
    # the same subquery gets the same name; another subquery another
    assert name in translate(_kql(f"RemoteUrl !in~ {WHERE}"), "sigma").text
    assert name not in translate(_kql(f"RemoteUrl in (Feed | distinct Host)"), "sigma").text


def test_values_are_escaped_to_stay_literal() -> None:
    text = _sigma(_kql(f"RemoteUrl in {WHERE}"))
    body, _ = _pipeline(text)
    (values,) = body["vars"].values()
    assert values == ["Evil.com", "a\\*b", "x\\?y", "c\\\\d", "lower.org"]


def test_an_empty_value_or_an_empty_list_is_refused() -> None:
    csv_uri = "https://feeds.example/hosts.csv"
    kql = (f'let Hosts = externaldata(Host:string, Note:string)["{csv_uri}"] with (format="csv");\n'
           "DeviceNetworkEvents\n| where RemoteUrl in (Hosts | where Note != 'skip' | project Host)\n")
    specs = placeholders_of(yaml.safe_load_all(_sigma(kql)))
    (name, spec), = specs.items()
    assert placeholder_values(name, spec, {csv_uri: "a.com,x\n,skip\nb.com,y\n"}) == ["a.com", "b.com"]
    with pytest.raises(FillError, match="empty value"):  # KQL: '' matches an event missing the field
        placeholder_values(name, spec, {csv_uri: "a.com,x\n,y\n"})
    with pytest.raises(FillError, match="no value"):
        placeholder_values(name, spec, {csv_uri: "a.com,skip\n"})
    with pytest.raises(FillError, match="not given"):
        placeholder_values(name, spec, {})


def test_without_the_declaration_the_feed_test_is_refused_located(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parent.parent / "rmmc" / "environments" / "sigma.yml"
    lines = [line for line in source.read_text().splitlines() if not line.startswith("external:")]
    env = tmp_path / "sigma-no-feeds.yml"
    env.write_text("\n".join(lines).replace("name: sigma", "name: sigma-no-feeds", 1) + "\n")
    kql = _kql(f"RemoteUrl in {WHERE}")
    result = translate(kql, "sigma", env=str(env))
    assert not result.ok and result.text == ""
    errors = [d for d in result.diagnostics if d.is_error]
    assert any("external: placeholder" in d.message and d.span is not None and d.span.line == 3
               for d in errors), [d.message for d in errors]


def test_has_any_against_a_feed_stays_refused() -> None:
    result = translate(_kql(f"RemoteUrl has_any {WHERE}"), "sigma")
    assert not result.ok
    assert any(d.code == "lossy" and d.span is not None for d in result.diagnostics)


def test_the_command_fetches_from_a_server_and_writes_the_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "www" / "lists"
    root.mkdir(parents=True)
    (root / "bad-hosts.txt").write_text(FEED)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/lists/bad-hosts.txt"
        kql = _kql(f"RemoteUrl in~ {WHERE}").replace(URI, uri)
        rule = tmp_path / "rule.yml"
        rule.write_text(_sigma(kql))
        out = tmp_path / "pipeline.yml"
        done = subprocess.run([sys.executable, "-m", "rmmc.cli", "placeholders", str(rule), "--fetch",
                               "-o", str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        again = subprocess.run([sys.executable, "-m", "rmmc.cli", "placeholders", str(rule), "--fetch",
                                "-o", str(out)], capture_output=True, text=True)
        assert again.returncode == 1 and "--force" in again.stderr
    finally:
        server.shutdown()
        server.server_close()
    body = yaml.safe_load(out.read_text())
    assert list(body["vars"].values()) == [["Evil.com", "a\\*b", "x\\?y", "c\\\\d", "lower.org"]]
    assert _selected(rule.read_text(), ProcessingPipeline.from_yaml(out.read_text())) == _expected(kql, uri=uri)


@pytest.mark.parametrize("test", [f"RemoteUrl in {WHERE}", f"RemoteUrl !in~ {WHERE} and RemotePort == 443"])
def test_verify_fills_the_placeholders_from_generated_feed_rows(test: str) -> None:
    from rmmc.verify.multi import multi_events
    from rmmc.verify.runner import verify_rule

    rule = lower_text(_kql(test)).rule
    events = multi_events(rule)
    feed = [e for e in events if e.get("$table") == URI]
    tested = [e.get("RemoteUrl") for e in events if e.get("$table") == "DeviceNetworkEvents"]
    assert feed and any(v != v.lower() for v in tested if v)  # feed rows and case variants exist
    count, verdicts = verify_rule(rule, ["sigma"])
    assert [(v.status, v.engine) for v in verdicts] == [("agree", "pySigma sqlite")], verdicts


def test_verify_says_why_it_cannot_fill() -> None:
    from rmmc.verify.runner import verify_rule

    kql = _kql("RemoteUrl in (Feed | where Host matches regex '^[0-9]+$' | distinct Host)")
    _, verdicts = verify_rule(lower_text(kql).rule, ["sigma"])
    assert verdicts[0].status == "unchecked" and "placeholders cannot be filled" in verdicts[0].detail
