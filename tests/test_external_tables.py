"""External tables (KQL `externaldata`): the model, the reference evaluator's rows, KQL written
back, and SPL over CSV lookups returning the evaluator's rows in the SPL interpreter."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

import rmmc
from rmmc.backends.base import EmitOptions
from rmmc.backends.splunk.lookups import lookup_file
from rmmc.compiler import ir
from rmmc.compiler.external import detect_format, lookup_text, records, rows_of_text
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.environments import load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import emit_adapted
from tests.row_sets import comparable, spl_rows, spl_time_as_timestamp

ENV = "splunk-defender"
MACRO = "`defender_xdr`"
FEED_URI = "https://feeds.example.org/c2/ips.csv"
FEED = (f'let Feed = externaldata(IP: string, Tag: string)[@"{FEED_URI}"] '
        'with (format="csv", ignoreFirstRecord=true);\n')
# a header, a quoted field holding the separator and a doubled quote, an IP in upper case (a
# host name), an empty tag, an empty IP (KQL's '': it matches an event without RemoteIP), a
# blank line, CRLF line ends
FEED_TEXT = ('IP,Tag\r\n10.0.0.1,c2\r\nEVIL.example,"c2, ""beacon"""\r\n\r\n10.0.0.3,test\r\n'
             '10.0.0.4,\r\n,c2 orphan\r\n')
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def _table(kql: str) -> ir.ExternalTable:
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    return lowered.rule.source.external


# ------------------------------------------------------------------ the model


def test_externaldata_lowers_to_an_external_table_with_its_columns_format_and_first_record():
    table = _table('externaldata(IP: string, Seen: datetime, Hits: long)["https://a.example/x.tsv", '
                   '"https://b.example/y"] with (format="csv", ignoreFirstRecord=true) | where IP != ""')
    assert table.uris == ("https://a.example/x.tsv", "https://b.example/y")
    assert table.columns == (("IP", "string"), ("Seen", "datetime"), ("Hits", "long"))
    assert (table.format, table.ignore_first_record, table.format_given) == ("csv", True, True)
    assert table.span is not None and table.span.line == 1


def test_without_a_format_kusto_detects_it_from_the_extension_defaulting_to_csv():
    assert _table('externaldata(x: string)["https://e.example/list.txt?sv=1"]').format == "txt"
    assert _table('externaldata(x: string)["https://e.example/list.txt"]').format_given is False
    assert _table('externaldata(x: string)["https://e.example/list"] with (format=txt)').format == "txt"
    assert detect_format("https://e.example/downloads/") == "csv"
    assert detect_format("https://e.example/a.TSV") == "tsv"


def test_an_unknown_property_or_format_is_a_located_error():
    lowered = lower_text('externaldata(x: string)["https://e.example/a"] with (format="parquet")')
    assert lowered.rule is None
    error = next(d for d in lowered.diagnostics if d.is_error)
    assert "parquet" in error.message and error.span is not None and error.span.column > 40
    lowered = lower_text('externaldata(x: string)["https://e.example/a"] with (ingestionMapping="m")')
    assert any("ingestionMapping" in d.message for d in lowered.diagnostics if d.is_error)


def test_formats_read_as_kusto_documents_them():
    assert records(FEED_TEXT, "csv") == [["IP", "Tag"], ["10.0.0.1", "c2"], ["EVIL.example", 'c2, "beacon"'],
                                          ["10.0.0.3", "test"], ["10.0.0.4", ""], ["", "c2 orphan"]]
    assert records("a\r\n\nb;c\n", "txt") == [["a"], ["b;c"]]
    assert records('a\t"b\tc"\n', "tsv") == [["a", "b\tc"]]
    assert records("x\ny", "raw") == [["x\ny"]]
    table = ir.ExternalTable(("u",), (("n", "long"), ("s", "string"), ("t", "string")), "csv")
    # a value that does not read as the column's type is null; a missing string is ''
    assert rows_of_text(table, "12,a\nzz,b,c\n") == [{"n": 12, "s": "a", "t": ""}, {"n": None, "s": "b", "t": "c"}]
    txt = dataclasses.replace(table, format="txt", columns=(("s", "string"), ("n", "long")), ignore_first_record=True)
    assert rows_of_text(txt, "header\nline one\n") == [{"s": "line one", "n": None}]


def test_the_evaluator_reads_a_feed_from_its_stored_text_or_from_events_tagged_with_its_uri():
    lowered = lower_text(FEED + "DeviceNetworkEvents | where RemoteIP in (Feed)")
    rule = lowered.rule
    events = [{"RemoteIP": ip} for ip in ("10.0.0.1", "10.0.0.2", "evil.example", "EVIL.example")]
    got = run(rule, events, external={FEED_URI: FEED_TEXT})
    assert [r["RemoteIP"] for r in got] == ["10.0.0.1", "EVIL.example"]
    tagged = [{ir.TABLE: "DeviceNetworkEvents", **e} for e in events] + [{ir.TABLE: FEED_URI, "IP": "10.0.0.2"}]
    assert [r["RemoteIP"] for r in run(rule, tagged)] == ["10.0.0.2"]


def test_kql_writes_the_externaldata_back():
    kql = FEED + "DeviceNetworkEvents | where RemoteIP in ((Feed | where Tag != 'test' | distinct IP))"
    result = rmmc.translate(kql, to="kql")
    assert result.ok and result.counts["exact"] == 1, result.diagnostics
    assert (f"externaldata(IP:string, Tag:string)['{FEED_URI}'] with (format='csv', ignoreFirstRecord=true)"
            in result.text)
    again = rmmc.translate(result.text, to="kql")  # and it reads back as the same
    assert again.ok and again.text == result.text
    secret = rmmc.translate('let F = externaldata(x:string)[h@"https://a.example/f.txt?sig=s3cret"];\n'
                            "DeviceProcessEvents | where FileName in (F)", to="kql")
    assert "[h'https://a.example/f.txt?sig=s3cret']" in secret.text  # still a hidden string



@pytest.mark.parametrize("target,env", [("splunk", "splunk-defender"), ("sigma", "sigma")])
def test_a_feeds_access_token_stays_out_of_names_and_of_notes_when_written_hidden(target, env):
    """A feed URI's query often carries a SAS signature: no lookup or placeholder name holds
    it, and a note (printed to logs) shows an h'...' URI only by its scheme and host."""
    uri = "https://acct.blob.example.net/iocs/feed.txt?sv=2024&sig=s3cretToken"
    for hidden in (False, True):
        kql = (f'let F = externaldata(x:string)[{"h" if hidden else ""}@"{uri}"] with (format="txt");\n'
               "DeviceNetworkEvents | where RemoteIP in (F)")
        result = rmmc.translate(kql, to=target, env=env)
        assert result.ok, result.diagnostics
        body = result.text.split("rmmc_placeholders:")[0]  # Sigma keeps the subquery itself below
        assert "acct_blob_example_net_feed_txt_" in body and "s3cret" not in body.lower(), body
        notes = " ".join(d.message for d in result.diagnostics if d.severity.value == "note")
        assert "acct.blob.example.net" in notes
        assert ("s3cret" in notes) is (not hidden), notes


# ------------------------------------------------------------------ SPL over lookups


def _spl(kql: str, env=None):
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    environment = env or load_environment(ENV)
    adapted = adapt(lowered.rule, environment)
    assert adapted.ok, adapted.diagnostics
    return lowered.rule, adapted, emit_adapted("splunk", adapted, EmitOptions())


def _events() -> list[dict]:
    ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "evil.example", "EVIL.example", "", None]
    out = []
    for i, ip in enumerate(ips):
        event = {ir.TABLE: "DeviceNetworkEvents", "Timestamp": NOW.replace(minute=i), "DeviceName": f"d{i}"}
        if ip is not None:
            event["RemoteIP"] = ip
        out.append(event)
    return out


FORMS = {
    "in": "DeviceNetworkEvents | where RemoteIP in (Feed) | project Timestamp, DeviceName, RemoteIP",
    "not in": "DeviceNetworkEvents | where RemoteIP !in (Feed) | project Timestamp, DeviceName, RemoteIP",
    "in~": "DeviceNetworkEvents | where RemoteIP in~ (Feed) | project Timestamp, DeviceName, RemoteIP",
    "not in~": "DeviceNetworkEvents | where RemoteIP !in~ (Feed) | project Timestamp, DeviceName, RemoteIP",
    "feed where distinct": ("DeviceNetworkEvents | where RemoteIP in ((Feed | where Tag !has 'test' and "
                            "isnotempty(Tag) | distinct IP)) | project Timestamp, DeviceName, RemoteIP"),
    "feed extend project": ("DeviceNetworkEvents | where DeviceName startswith 'd' and tolower(RemoteIP) in "
                            "((Feed | extend Low = tolower(IP) | project Low)) | project DeviceName, RemoteIP"),
    "inside or / not": ("DeviceNetworkEvents | where DeviceName startswith 'd' and (RemoteIP in (Feed) or "
                        "not(DeviceName in~ ((Feed | where Tag has 'c2' | project Tag)))) | project DeviceName, RemoteIP"),
    "let list": ("let Bad = Feed | where Tag has 'c2' | project IP;\nDeviceNetworkEvents | where RemoteIP in "
                 "(Bad) | summarize Hits = count() by DeviceName"),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_the_spl_over_the_lookup_returns_the_rules_rows(form):
    rule, adapted, out = _spl(FEED + FORMS[form])
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    assert f"inputlookup append=true strict=true {lookup_file(FEED_URI)}" in out.text
    assert not any(line.startswith(("| join", "| append ", "| lookup")) for line in out.text.splitlines())  # no subsearch
    events = [adapted.normalize(e) for e in _events()]
    expected = run(rule, events, now=NOW, external={FEED_URI: FEED_TEXT})
    assert expected, "the events exercise the rule"
    table = next(n.rule.source.external for n in ir.walk(rule.condition) if isinstance(n, ir.InSubquery))
    lookups = {lookup_file(FEED_URI): lookup_text(rows_of_text(table, FEED_TEXT), table.columns)}
    got = spl_rows(out.text, adapted, events, (MACRO,), lookups)
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text


JOINS = {
    "inner carrying a column": ("DeviceNetworkEvents | join kind=inner Feed on $left.RemoteIP == $right.IP "
                                "| project Timestamp, DeviceName, RemoteIP, Tag"),
    "innerunique": "DeviceNetworkEvents | join Feed on $left.RemoteIP == $right.IP | project DeviceName, IP, Tag",
    "leftouter": ("DeviceNetworkEvents | join kind=leftouter Feed on $left.RemoteIP == $right.IP "
                  "| project Timestamp, DeviceName, RemoteIP, Tag"),
    "lookup": "DeviceNetworkEvents | lookup Feed on $left.RemoteIP == $right.IP | project DeviceName, RemoteIP, Tag",
    "leftsemi": "DeviceNetworkEvents | join kind=leftsemi Feed on $left.RemoteIP == $right.IP | project DeviceName, RemoteIP",
    "leftanti": "DeviceNetworkEvents | join kind=leftanti Feed on $left.RemoteIP == $right.IP | project DeviceName",
    "feed with where": ("DeviceNetworkEvents | join kind=inner (Feed | where Tag has 'c2') on "
                        "$left.RemoteIP == $right.IP | summarize Tags = make_set(Tag) by DeviceName"),
    "feed made distinct": ("DeviceNetworkEvents | join kind=inner (Feed | distinct IP, Tag) on "
                           "$left.RemoteIP == $right.IP | project DeviceName, Tag"),
}
# the same IP twice (a join pairs the event with both rows), once more in another case
JOIN_FEED = FEED_TEXT + "10.0.0.1,c2 again\r\n10.0.0.1,c2 again\r\n10.0.0.3,c2 too\r\n"


@pytest.mark.parametrize("form", list(JOINS))
def test_a_join_against_the_feed_returns_the_rules_rows(form):
    rule, adapted, out = _spl(FEED + JOINS[form])
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    assert not any(line.startswith(("| join", "| append ", "| lookup")) for line in out.text.splitlines())
    events = [adapted.normalize(e) for e in _events()]
    events.append({**events[0], "DeviceName": "d0-again"})  # two events on one key (innerunique)
    expected = run(rule, events, now=NOW, external={FEED_URI: JOIN_FEED})
    assert expected, "the events exercise the rule"
    table = next(s.right.source.external for s in rule.stages if isinstance(s, ir.Join))
    lookups = {lookup_file(FEED_URI): lookup_text(rows_of_text(table, JOIN_FEED), table.columns)}
    got = spl_rows(out.text, adapted, events, (MACRO,), lookups)
    if JOINS[form].startswith("DeviceNetworkEvents | join Feed"):  # innerunique: which left row is kept
        got, expected = [{k: v for k, v in r.items() if k != "DeviceName"} for r in got], \
            [{k: v for k, v in r.items() if k != "DeviceName"} for r in expected]
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text


# (the events' side names the columns it gives: `Adapted.target_event`, which shapes the test
# events, carries the columns a side reads, and a join key alone is not read by its side)
NET = "(DeviceNetworkEvents | project Timestamp, DeviceName, RemoteIP)"
FEED_FIRST = {
    "inner": ("Feed | join kind=inner (DeviceNetworkEvents | where DeviceName startswith 'd' | project Timestamp, "
              "DeviceName, RemoteIP) on $left.IP == $right.RemoteIP | project Timestamp, DeviceName, RemoteIP, Tag"),
    "innerunique": f"Feed | join {NET} on $left.IP == $right.RemoteIP | project DeviceName, RemoteIP, Tag",
    "rightsemi": f"Feed | join kind=rightsemi {NET} on $left.IP == $right.RemoteIP | project DeviceName",
    "rightanti": f"Feed | join kind=rightanti {NET} on $left.IP == $right.RemoteIP | project DeviceName",
    "names taken by the feed": (
        "let F2 = Feed | project RemoteIP = IP, DeviceName = Tag;\n"
        f"F2 | where DeviceName has 'c2' | join kind=inner {NET} on RemoteIP "
        "| project RemoteIP, RemoteIP1, DeviceName, DeviceName1"),
}


@pytest.mark.parametrize("form", list(FEED_FIRST))
def test_a_feed_joined_with_events_is_read_from_the_events_side(form):
    rule, adapted, out = _spl(FEED + FEED_FIRST[form])
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    assert out.text.startswith("search `defender_xdr`")
    events = [adapted.normalize(e) for e in _events()]
    expected = run(rule, events, now=NOW, external={FEED_URI: JOIN_FEED})
    assert expected, "the events exercise the rule"
    table = rule.source.external
    lookups = {lookup_file(FEED_URI): lookup_text(rows_of_text(table, JOIN_FEED), table.columns)}
    got = spl_rows(out.text, adapted, events, (MACRO,), lookups)
    if form == "innerunique":  # which feed row of a key KQL keeps is not said: compare the rest
        got = [{k: v for k, v in r.items() if k != "Tag"} for r in got]
        expected = [{k: v for k, v in r.items() if k != "Tag"} for r in expected]
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text


def test_a_join_that_keeps_the_feeds_rows_is_refused_at_the_join():
    _, _, out = _spl(FEED + "DeviceNetworkEvents | join kind=rightouter Feed on $left.RemoteIP == $right.IP")
    assert not out.ok
    error = next(d for d in out.diagnostics if d.is_error)
    assert "rightouter" in error.message and error.span is not None and error.span.line == 2


def test_case_matters_for_in_and_not_for_in_tilde():
    rule, adapted, out = _spl(FEED + FORMS["in"])
    events = [adapted.normalize(e) for e in _events()]
    hits = {r["RemoteIP"] for r in run(rule, events, external={FEED_URI: FEED_TEXT})}
    assert hits == {"10.0.0.1", "10.0.0.3", "10.0.0.4", "EVIL.example", ""}  # not "evil.example"
    rule, adapted, out = _spl(FEED + FORMS["in~"])
    hits = {r["RemoteIP"] for r in run(rule, events, external={FEED_URI: FEED_TEXT})}
    assert {"evil.example", "EVIL.example"} <= hits


def test_each_lookup_read_is_a_note_naming_the_file_and_the_uri_it_must_hold():
    _, _, out = _spl(FEED + FORMS["in"])
    notes = [d for d in out.diagnostics if d.severity.value == "note" and lookup_file(FEED_URI) in d.message]
    assert len(notes) == 1 and FEED_URI in notes[0].message
    assert notes[0].span is not None and notes[0].span.line == 1  # at the externaldata
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics)


def test_lookup_file_names_are_stable_readable_and_distinct():
    name = lookup_file(FEED_URI)
    assert name.startswith("rmmc_ext_feeds_example_org_ips_csv_") and name.endswith(".csv")
    assert name == lookup_file(FEED_URI)
    assert lookup_file(FEED_URI + "?v=2") != name
    assert all(c.isalnum() or c in "_." for c in lookup_file("https://x.example/a b/../ünï?q=<script>"))


def test_an_environment_that_declares_no_lookups_refuses_with_a_located_hint():
    env = dataclasses.replace(load_environment(ENV), external=None)
    _, _, out = _spl(FEED + FORMS["in"], env)
    assert not out.ok
    error = next(d for d in out.diagnostics if d.is_error)
    assert "external: lookup" in error.message and error.span is not None and error.span.line == 1


# ------------------------------------------------------------------ has_any against a feed

HAS_URI = "https://feeds.example.org/iocs/osint.csv"
HAS_FEED = (f'let Osint = externaldata(Type: string, Value: string)[@"{HAS_URI}"] '
            'with (format="csv", ignoreFirstRecord=true);\n')
# values at a term's edges: dots inside, another case, a short term, a value starting with a
# non-term character, KELVIN SIGN (folds to k), non-ASCII, regex and CSV metacharacters, a
# backslash, a line break; an empty value (in every text) and a url kept apart by the filters
HAS_TEXT = ('Type,Value\r\ndomain,remotepc.com\r\ndomain,EVIL\r\ndomain,ab\r\ndomain,.exe\r\n'
            'domain,k\u212ax\r\ndomain,h\u00e9llo\r\ndomain,"a+b(c, ""q"""\r\ndomain,back\\slash\r\n'
            'domain,"two\nlines"\r\nurl,zzz\r\nempty,\r\n')
HAS_URLS = ["https://www.remotepc.com/x", "notremotepc.com", "remotepc.community", "a_remotepc.com",
            "the evil one", "evilness", "ab", "abc", "x-ab-y", "run.exe", "run.exec", "a.exe1",
            "\u212aX", "kk\u212ax", "\u212a\u212aX", "H\u00c9LLO world", "h\u00e9llox", 'A+B(C, "Q"', "back\\slash", "backslash",
            "TWO\nLINES!", "two lines", "zzz", "", None]
HAS_FORMS = {
    "has_any": ("DeviceNetworkEvents | where RemoteUrl has_any ((Osint | where Type == 'domain' | project Value)) "
                "| project Timestamp, DeviceName, RemoteUrl"),
    "not has_any": ("DeviceNetworkEvents | where not(RemoteUrl has_any ((Osint | where Type == 'domain' "
                    "| project Value))) | project DeviceName, RemoteUrl"),
    "a let, as the corpus writes it": ("let Domains = Osint | where Type == \"domain\" | project Value;\n"
                                       "DeviceNetworkEvents | where RemoteUrl has_any (Domains) | project DeviceName, RemoteUrl"),
    "inside or": ("DeviceNetworkEvents | where DeviceName startswith 'd' and (RemoteUrl has_any ((Osint | where "
                  "Type == 'domain' | project Value)) or DeviceName == 'd21') | project DeviceName, RemoteUrl"),
    "tolower of the feed column": ("DeviceNetworkEvents | where RemoteUrl has_any ((Osint | where Type != 'empty' "
                                   "| extend L = tolower(Value) | project L)) | project DeviceName, RemoteUrl"),
    "an empty value is in every text": ("DeviceNetworkEvents | where RemoteUrl has_any ((Osint | where Type == "
                                        "'empty' | project Value)) | project DeviceName, RemoteUrl"),
    "distinct": ("DeviceNetworkEvents | where RemoteUrl has_any ((Osint | where Type == 'url' | distinct Value)) "
                 "| summarize n = count() by RemoteUrl"),
}


def _has_events() -> list[dict]:
    out = []
    for i, url in enumerate(HAS_URLS):
        event = {ir.TABLE: "DeviceNetworkEvents", "Timestamp": NOW.replace(minute=i), "DeviceName": f"d{i}"}
        if url is not None:
            event["RemoteUrl"] = url
        out.append(event)
    return out


def _has_lookups(rule: ir.Rule, text: str = HAS_TEXT) -> dict[str, str]:
    from rmmc.backends.splunk.lookups import term_lookup

    table = next(t for t in [n.rule.source.external for n in ir.walk(rule.condition)
                             if isinstance(n, ir.InSubquery)] if t is not None)
    rows, columns = term_lookup(rows_of_text(table, text), table.columns)
    return {lookup_file(HAS_URI, terms=True): lookup_text(rows, columns)}


@pytest.mark.parametrize("form", list(HAS_FORMS))
def test_has_any_against_a_feed_returns_the_rules_rows(form):
    """`has_any (feed)`: each feed value's term pattern, computed when the lookup is written,
    tested against each event in the main search (the SPL interpreter runs it)."""
    rule, adapted, out = _spl(HAS_FEED + HAS_FORMS[form])
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    assert f"inputlookup append=true strict=true {lookup_file(HAS_URI, terms=True)}" in out.text
    assert not any(line.startswith(("| join", "| append ", "| lookup")) for line in out.text.splitlines())
    events = [adapted.normalize(e) for e in _has_events()]
    expected = run(rule, events, now=NOW, external={HAS_URI: HAS_TEXT})
    assert expected and len(expected) < len(events) or form.startswith(("an empty", "not")), expected
    got = spl_rows(out.text, adapted, events, (MACRO,), _has_lookups(rule))
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text


def test_has_any_finds_every_term_edge_the_evaluator_does():
    rule, _, _ = _spl(HAS_FEED + HAS_FORMS["has_any"])
    events = _has_events()
    hits = {r["RemoteUrl"] for r in run(rule, events, now=NOW, external={HAS_URI: HAS_TEXT})}
    assert hits == {"https://www.remotepc.com/x", "a_remotepc.com", "the evil one", "ab", "x-ab-y", "run.exe",
                    "\u212a\u212aX", "H\u00c9LLO world", 'A+B(C, "Q"', "back\\slash", "TWO\nLINES!"}


def test_has_any_notes_the_terms_lookup_only_rmmc_lookups_fetch_writes():
    _, _, out = _spl(HAS_FEED + HAS_FORMS["has_any"])
    notes = [d.message for d in out.diagnostics if lookup_file(HAS_URI, terms=True) in d.message]
    assert len(notes) == 1 and "rmmc lookups fetch" in notes[0] and HAS_URI in notes[0]


def test_has_any_against_a_computed_feed_value_is_refused_at_its_place():
    _, _, out = _spl(FEED + "DeviceNetworkEvents | where RemoteUrl has_any ((Feed | extend X = strcat(IP, '.') "
                            "| project X))")
    assert not out.ok
    error = next(d for d in out.diagnostics if d.is_error)
    assert "has_any" in error.message and error.span is not None and error.span.line == 2


def test_a_typed_feed_column_is_refused_in_spl():
    kql = ('let F = externaldata(Port: long)["https://e.example/ports.txt"];\n'
           "DeviceNetworkEvents | where RemotePort in (F)")
    lowered = lower_text(kql)
    if lowered.rule is None:
        pytest.skip("a long column against a subquery is not lowered")
    adapted = adapt(lowered.rule, load_environment(ENV))
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert not out.ok


def test_a_kql_environment_without_the_key_still_writes_externaldata_and_a_splunk_one_may_declare_it():
    from rmmc.environments.loader import read_environment as load_environment_text

    assert load_environment("defender-xdr").external is None
    assert all(load_environment(n).external == "lookup" for n in ("splunk-defender", "splunk-sysmon", "splunk-cim"))
    with pytest.raises(Exception) as caught:
        load_environment_text("name: x\ntarget: kql\ntime_field: Timestamp\nexternal: lookup\n"
                              "sources:\n  - match: {table: '*'}\n", "x.yml")
    assert "external" in str(caught.value)


# ------------------------------------------------------------------ packages and `rmmc lookups fetch`


@pytest.fixture()
def feed_server(tmp_path):
    """A loopback HTTP server over a folder of feed files (csv, txt)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    (root / "ips.csv").write_bytes(FEED_TEXT.encode("utf-8"))
    (root / "hashes.txt").write_bytes(b"# sha1 list\nAAA\r\n\nbbb\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_package_lists_its_lookups_and_fetch_writes_them_as_kusto_reads_the_feeds(feed_server, tmp_path):
    from click.testing import CliRunner

    from rmmc.cli import main
    from tests.spl_pipeline import read_lookup

    csv_uri, txt_uri, dead_uri = f"{feed_server}/ips.csv", f"{feed_server}/hashes.txt", f"{feed_server}/gone.txt"
    rule = tmp_path / "hunt.kql"
    rule.write_text(
        f'let Ips = externaldata(IP: string, Tag: string)[@"{csv_uri}"] with (format="csv", ignoreFirstRecord=true);\n'
        f'let Sha = externaldata(SHA1: string)[@"{txt_uri}"] with (format="txt", ignoreFirstRecord=true);\n'
        f'let Dead = externaldata(X: string)[@"{dead_uri}"] with (format="txt");\n'
        "DeviceNetworkEvents | where RemoteIP in (Ips) and InitiatingProcessSHA1 in~ (Sha) "
        "and RemoteUrl !in (Dead)\n", encoding="utf-8")
    out = tmp_path / "pkg"
    runner = CliRunner()
    done = runner.invoke(main, ["translate", str(rule), "--to", "splunk", "--env", ENV, "--package", "-o", str(out)])
    assert done.exit_code == 0, done.output
    manifest = next(out.glob("*.lookups.json"))
    transforms = next(out.glob("*.transforms.conf")).read_text()
    entries = json.loads(manifest.read_text())["lookups"]
    assert [e["uri"] for e in entries] == [csv_uri, txt_uri, dead_uri]
    assert entries[0]["columns"] == [{"name": "IP", "type": "string"}, {"name": "Tag", "type": "string"}]
    assert entries[0]["format"] == "csv" and entries[0]["ignoreFirstRecord"] is True
    for e in entries:
        assert f"[{e['file'][:-4]}]\n" in transforms and f"filename = {e['file']}\n" in transforms
    assert "case_sensitive_match = true" in transforms

    lookups = tmp_path / "lookups"
    done = runner.invoke(main, ["lookups", "fetch", str(manifest), "--out", str(lookups)])
    assert done.exit_code == 1  # the dead URI
    assert dead_uri in done.output and "2 lookups written, 1 failed" in done.output
    ips = read_lookup((lookups / lookup_file(csv_uri)).read_text(encoding="utf-8"))
    assert ips == [{"IP": "10.0.0.1", "Tag": "c2"}, {"IP": "EVIL.example", "Tag": 'c2, "beacon"'},
                   {"IP": "10.0.0.3", "Tag": "test"}, {"IP": "10.0.0.4"}, {"Tag": "c2 orphan"}]
    assert (lookups / lookup_file(txt_uri)).read_text() == "SHA1\nAAA\nbbb\n"  # header line skipped, CR dropped
    assert not (lookups / lookup_file(dead_uri)).exists()

    (lookups / lookup_file(txt_uri)).write_text("mine\n")
    done = runner.invoke(main, ["lookups", "fetch", str(manifest), "--out", str(lookups)])
    assert done.exit_code == 1 and "--force" in done.output
    assert (lookups / lookup_file(txt_uri)).read_text() == "mine\n"  # never overwritten
    done = runner.invoke(main, ["lookups", "fetch", str(manifest), "--out", str(lookups), "--force"])
    assert (lookups / lookup_file(txt_uri)).read_text() == "SHA1\nAAA\nbbb\n"


def test_a_manifest_cannot_name_a_file_or_a_scheme_of_its_own(tmp_path):
    from rmmc.lookups import fetch_lookups

    manifest = tmp_path / "m.lookups.json"
    manifest.write_text(json.dumps({"lookups": [
        {"file": "../../evil.csv", "uri": "https://e.example/a.csv", "format": "csv",
         "columns": [{"name": "a", "type": "string"}]},
        {"file": lookup_file("file:///etc/passwd"), "uri": "file:///etc/passwd", "format": "txt",
         "columns": [{"name": "a", "type": "string"}]}]}))
    written, errors = fetch_lookups([manifest], tmp_path / "out", fetch=lambda uri: pytest.fail("fetched"))
    assert written == [] and len(errors) == 2
    assert "rmmc_ext_" in errors[0] and "http or https" in errors[1]


@pytest.mark.oracle
def test_microsoft_parser_accepts_the_kql_written_for_feeds(kusto_oracle_defender):
    texts = []
    for kql in [*FORMS.values(), *JOINS.values()]:
        result = rmmc.translate(FEED + kql, to="kql")
        assert result.ok, result.diagnostics
        texts.append(result.text)
    for text, checked in zip(texts, kusto_oracle_defender.check_many(texts)):
        assert checked.ok, (text, checked)


def test_a_feed_joined_with_a_table_puts_the_tables_side_into_the_environment():
    kql = (FEED + "Feed | join kind=inner (DeviceNetworkEvents | where Timestamp > ago(1d)) on "
           "$left.IP == $right.RemoteIP | project Timestamp, DeviceName, Tag")
    result = rmmc.translate(kql, to="kql", env="sentinel")
    assert result.ok, result.diagnostics
    assert "where TimeGenerated > ago(1d)" in result.text and "project TimeGenerated," in result.text
    assert "Timestamp" not in result.text


def test_a_term_pattern_matches_in_pcre2_exactly_where_the_evaluator_finds_the_term():
    """`compiler.terms.term_pcre` run by PCRE2 itself (Splunk's engine) against the evaluator's
    `term_match` over generated needles and texts: case (KELVIN SIGN, dotted I, sharp s, long s),
    term edges, regex metacharacters, control characters."""
    import random

    from rmmc.compiler.evaluator import term_match
    from rmmc.compiler.functions import fold
    from rmmc.compiler.terms import term_pcre
    from tests import pcre

    if pcre.available() is not None:
        pytest.skip(pcre.available())
    alphabet = ["a", "A", "b", "k", "K", "\u212a", ".", "-", "_", " ", "\u0130", "i", "\u00e9", "\u00c9", "1",
                "\n", "\u00df", "\u1e9e", "\u017f", "s", "\x00", "\\", "(", "[", "$", "^", "\u4e2d"]
    generator = random.Random(14)
    for _ in range(4000):
        needle = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 3)))
        text = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 8)))
        want = term_match(fold(text), fold(needle))
        assert pcre.search(term_pcre(needle), text) is want, (needle, text, term_pcre(needle))


def test_a_has_any_package_lists_the_terms_lookup_and_fetch_writes_the_patterns(feed_server, tmp_path):
    """The whole way: `--package` lists the feed's terms lookup, `rmmc lookups fetch` writes it
    (fetching the URI once), and the SPL over the written file returns the evaluator's rows."""
    from click.testing import CliRunner

    from rmmc.cli import main
    from rmmc.compiler.terms import term_pcre
    from tests.spl_pipeline import read_lookup

    csv_uri = f"{feed_server}/ips.csv"
    kql = (f'let Ips = externaldata(IP: string, Tag: string)[@"{csv_uri}"] with (format="csv", ignoreFirstRecord=true);\n'
           "DeviceNetworkEvents | where RemoteIP has_any ((Ips | where Tag has 'c2' and isnotempty(IP) | project IP)) "
           "| project DeviceName, RemoteIP\n")
    rule_file = tmp_path / "hunt.kql"
    rule_file.write_text(kql, encoding="utf-8")
    out = tmp_path / "pkg"
    runner = CliRunner()
    done = runner.invoke(main, ["translate", str(rule_file), "--to", "splunk", "--env", ENV, "--package", "-o", str(out)])
    assert done.exit_code == 0, done.output
    entries = json.loads(next(out.glob("*.lookups.json")).read_text())["lookups"]
    assert [(e["file"], e.get("terms", False)) for e in entries] == [
        (lookup_file(csv_uri), False), (lookup_file(csv_uri, terms=True), True)]
    assert f"filename = {lookup_file(csv_uri, terms=True)}\n" in next(out.glob("*.transforms.conf")).read_text()

    fetched: list[str] = []
    from rmmc.lookups import fetch_lookups, fetch_uri

    lookups = tmp_path / "lookups"
    written, errors = fetch_lookups([next(out.glob("*.lookups.json"))], lookups,
                                    fetch=lambda uri: fetched.append(uri) or fetch_uri(uri))
    assert errors == [] and fetched == [csv_uri] and len(written) == 2
    text = (lookups / lookup_file(csv_uri, terms=True)).read_text(encoding="utf-8")
    rows = read_lookup(text)
    assert text.splitlines()[0] == "IP,Tag,rmmc_term_IP,rmmc_term_Tag"
    assert rows[1] == {"IP": "EVIL.example", "Tag": 'c2, "beacon"', "rmmc_term_IP": term_pcre("EVIL.example"),
                       "rmmc_term_Tag": term_pcre('c2, "beacon"')}
    assert rows[3] == {"IP": "10.0.0.4", "rmmc_term_IP": term_pcre("10.0.0.4"), "rmmc_term_Tag": "(?:)"}

    rule, adapted, spl = _spl(kql)
    assert spl.ok, spl.diagnostics
    events = [adapted.normalize(e) for e in _events()]
    events.append(adapted.normalize({ir.TABLE: "DeviceNetworkEvents", "Timestamp": NOW, "DeviceName": "dx",
                                     "RemoteIP": "via evil.EXAMPLE:443"}))
    expected = run(rule, events, now=NOW, external={csv_uri: FEED_TEXT})
    assert {r["DeviceName"] for r in expected} == {"d0", "d4", "d5", "dx"}
    got = spl_rows(spl.text, adapted, events, (MACRO,), {lookup_file(csv_uri, terms=True): text})
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), spl.text


UNION_FORM = (
    "union (DeviceNetworkEvents | where RemoteUrl has_any ((Osint | where Type == 'domain' | project Value))),\n"
    "(DeviceFileEvents | where FileName in~ ((Osint | where Type == 'url' | project Value)) or FileName endswith '.crx'"
    " or SHA256 has_any ((Osint | where Type == 'domain' | project Value))),\n"
    "(DeviceProcessEvents | where FileName == 'x.exe')\n"
    "| project DeviceName, RemoteUrl, FileName")


def test_feed_tests_in_a_unions_branches_are_flags_each_branch_tests_after_the_search():
    """A union whose branches test feeds (as the corpus's OSINT scans do): each test is a flag
    set on every event, then each branch's own test, selected by its source (was widened, lossy)."""
    rule, adapted, out = _spl(HAS_FEED + UNION_FORM)
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    events = [adapted.normalize(e) for e in _has_events()]
    for i, (name, sha) in enumerate([("ZZZ", ""), ("zzz.txt", ""), ("a.crx", ""), ("other", "x remotepc.com"),
                                     ("x.exe", ""), ("", "ab")]):
        events.append(adapted.normalize({ir.TABLE: "DeviceFileEvents", "Timestamp": NOW, "DeviceName": f"f{i}",
                                         "FileName": name, "SHA256": sha}))
    for i, name in enumerate(["x.exe", "y.exe", "X.EXE"]):
        events.append(adapted.normalize({ir.TABLE: "DeviceProcessEvents", "Timestamp": NOW, "DeviceName": f"p{i}",
                                         "FileName": name}))
    expected = run(rule, events, now=NOW, external={HAS_URI: HAS_TEXT})
    assert {"f0", "f2", "f3", "f5", "p0", "d0"} <= {r["DeviceName"] for r in expected}
    assert not {"f1", "f4", "p1", "p2", "d1"} & {r["DeviceName"] for r in expected}
    lookups = _has_lookups(rule.union.branches[0])
    lookups[lookup_file(HAS_URI)] = lookup_text(rows_of_text(rule.union.branches[0].condition.rule.source.external,
                                                             HAS_TEXT), (("Type", "string"), ("Value", "string")))
    got = spl_rows(out.text, adapted, events, (MACRO,), lookups)
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text


def test_a_feed_column_named_as_a_term_column_is_refused():
    kql = ('let F = externaldata(x: string, rmmc_term_x: string)["https://e.example/f.csv"];\n'
           "DeviceNetworkEvents | where RemoteUrl has_any ((F | project x))")
    _, _, out = _spl(kql)
    assert not out.ok
    error = next(d for d in out.diagnostics if d.is_error)
    assert "rmmc_term_x" in error.message and error.span is not None and error.span.line == 2
