"""Constructs of real hunting queries that SPL now says exactly (issue 14): each runs rmmc's SPL
on `tests/spl_pipeline.py` and compares the rows with the reference evaluator's, boundary rows
included (`compare` from test_splunk_stages)."""

from __future__ import annotations

import pytest

import rmmc
from rmmc.backends.splunk.backend import emit_splunk
from rmmc.compiler.kql.lower import lower_text
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


@pytest.mark.parametrize("query", [
    # the corpus's forms: the text after the first '.', and before the first '/'
    "DeviceNetworkEvents | extend d = iff(RemoteUrl contains '.', substring(RemoteUrl, indexof(RemoteUrl, '.') + 1, "
    "strlen(RemoteUrl)), '') | project d",
    "DeviceNetworkEvents | extend i = indexof(RemoteUrl, '/') | extend u = substring(RemoteUrl, 0, i) | project u, i",
    # a start past either end, a negative or zero length, a null start or length
    "DeviceNetworkEvents | extend u = substring(RemoteUrl, RemotePort) | project u",
    "DeviceNetworkEvents | extend u = substring(RemoteUrl, RemotePort - 4, 2) | project u",
    "DeviceNetworkEvents | extend u = substring(RemoteUrl, 1, RemotePort - 3) | project u",
    "DeviceNetworkEvents | extend u = substring(RemoteUrl, indexof(RemoteUrl, '/') - 2) | project u",
])
def test_substring_with_computed_start_or_length(query):
    rule = rmmc.lower_text(query).rule
    urls = ["a.b/c", "abc", "", ".", "/", "a/", "x.y.z/w/v", "é.€/😀"]
    events = [{"RemoteUrl": u, "RemotePort": p, "Timestamp": T0}
              for u in urls for p in (None, 0, 1, 2, 3, 5, 9, 12)]
    compare(rule, events + [{"Timestamp": T0}])


def test_substring_with_a_computed_real_start_is_refused():
    t = emit_splunk(rmmc.lower_text("DeviceNetworkEvents | extend u = substring(RemoteUrl, RemotePort / 2.0)").rule,
                    fields="defender")
    assert not t.ok and any("substring()" in d.message and d.code == "unsupported" for d in t.diagnostics)


@pytest.mark.parametrize("query", [
    # m4nbat's command-line arguments: group 2 takes no part when the line ends at the .exe
    "DeviceNetworkEvents | extend a = extract(\"(['\\\"]?\\\\w+\\\\.exe['\\\"]?)(\\\\s+.+)?$\", 2, RemoteUrl) "
    "| where isempty(a)",
    "DeviceNetworkEvents | extend a = extract(\"(['\\\"]?\\\\w+\\\\.exe['\\\"]?)(\\\\s+.+)?$\", 2, RemoteUrl) | project a",
    "DeviceNetworkEvents | extend a = extract('x(a+)??(b*)', 1, RemoteUrl), b = extract('x(a+)??(b*)', 2, RemoteUrl) "
    "| project a, b",
    "DeviceNetworkEvents | extend a = extract('(?P<n>[0-9]+)?-', 1, RemoteUrl) | project a",
])
def test_extract_of_an_optional_group(query):
    rule = rmmc.lower_text(query).rule
    lines = ["cmd.exe", "cmd.exe /c whoami", "\"cmd.exe\" -x", "'a.exe'", "a.exe ", "a.exe  b", "x.exe\ny",
             "run a.exe and b.exe c", "", "none", "xaab", "xb", "x", "xaa", "12-", "-", "a-12-", "12"]
    compare(rule, [{"RemoteUrl": t, "Timestamp": T0} for t in lines] + [{"Timestamp": T0}])


def test_extract_of_a_group_inside_an_alternation_is_still_refused():
    t = emit_splunk(rmmc.lower_text("DeviceNetworkEvents | extend a = extract('(a|(b)?)c', 2, RemoteUrl)").rule,
                    fields="defender")
    assert not t.ok and any("may take no part" in d.message for d in t.diagnostics)


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl) by DeviceName | where set_has_element(S, 'a.com') "
    "| project DeviceName",
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl) by DeviceName | where not(set_has_element(S, 'a.com')) "
    "| project-away S",
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl) by DeviceName "
    "| where set_has_element(S, 'a.com') == false | project DeviceName",
    # benscha's risk score: a sum of iff(set_has_element(...)), the set itself only shown
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl), n = count() by DeviceName "
    "| extend r = iff(set_has_element(S, 'a.com'), 3, 0) + iff(set_has_element(S, 'A.COM'), 2, 0) "
    "+ iff(set_has_element(S, 'a.com\\n'), 1, 0) | project DeviceName, r, n | where r >= 2",
    "DeviceNetworkEvents | summarize S = make_set_if(RemoteUrl, RemotePort > 80) by DeviceName "
    "| extend r = iff(set_has_element(S, 'b.org'), 1, 0) | project-away S",
])
def test_set_has_element_of_a_collected_set(query):
    # (the set itself is left out of the rows: which values SPL shows is output shape, tested
    # below); the needle among several values, alone, in another case, as a prefix ('a.com' of
    # 'a.com.x'), with a regex character ('.'), next to a line break; groups whose values are
    # all missing (an empty set in KQL, no field in SPL)
    rule = rmmc.lower_text(query).rule
    rows = [("d1", "a.com", 80), ("d1", "b.org", 443), ("d2", "A.COM", 80), ("d3", "a.com.x", 443),
            ("d4", "axcom", 443), ("d5", None, 443), ("d6", "b.org", 80), ("d6", "a.com", 443),
            ("d7", "a.com\n", 90), ("d8", "x", 81), ("d8", "b.org", 81)]
    events = [{"DeviceName": d, "RemoteUrl": u, "RemotePort": p, "Timestamp": T0} for d, u, p in rows]
    compare(rule, events)


@pytest.mark.parametrize("query", [
    # numbers collected: '80' is no element of [80] in KQL, a value of the text SPL collects
    "DeviceNetworkEvents | summarize S = make_set(RemotePort) by DeviceName | where set_has_element(S, '80')",
    # list() keeps at most 100 values, a limit keeps an arbitrary few
    "DeviceNetworkEvents | summarize S = make_list(RemoteUrl) by DeviceName | where set_has_element(S, 'a')",
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl, 2) by DeviceName | where set_has_element(S, 'a')",
    # an empty needle: '' is left out of SPL's values
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl) by DeviceName | where set_has_element(S, '')",
])
def test_set_has_element_spl_cannot_decide_is_refused(query):
    t = emit_splunk(rmmc.lower_text(query).rule, fields="defender")
    assert not t.ok or any(d.code == "lossy" for d in t.diagnostics)
    assert not t.ok or "mvfind" not in t.text or any(d.code == "lossy" for d in t.diagnostics)


def test_a_set_read_only_by_set_has_element_is_shown_with_a_shape_note():
    t = emit_splunk(rmmc.lower_text("DeviceNetworkEvents | summarize S = make_set(RemoteUrl) by DeviceName "
                                    "| extend r = iff(set_has_element(S, 'a'), 1, 0)").rule, fields="defender")
    assert t.ok and "mvfind(S, " in t.text
    assert [d.code for d in t.diagnostics if "make_set" in d.message] == ["shape"]


# ------------------------------------------------------------------ a later filter's subquery


@pytest.mark.parametrize("kql", [
    # reprise99's devices with no inbound web connection: a filter after a distinct
    "DeviceProcessEvents | distinct DeviceId, FileName "
    "| where DeviceId !in (DeviceNetworkEvents | where RemoteUrl has 'x.com' | distinct DeviceId)",
    "DeviceProcessEvents | distinct DeviceId, FileName "
    "| where DeviceId in (DeviceNetworkEvents | where RemoteUrl has 'x.com' | distinct DeviceId)",
    # with other conjuncts, case-insensitive, on a computed column
    "DeviceProcessEvents | summarize n = count() by DeviceId "
    "| where n >= 1 and DeviceId in~ (DeviceNetworkEvents | where RemoteUrl has 'x.com' | distinct DeviceId)",
    "DeviceProcessEvents | extend D = toupper(DeviceId) "
    "| where D !in~ (DeviceNetworkEvents | where RemoteUrl has 'y.com' | distinct DeviceId) and FileName =~ 'a.exe' "
    "| project D, FileName",
])
def test_a_later_filters_subquery_is_a_semi_or_anti_join(kql):
    _two_tables_compare(kql)


@pytest.mark.parametrize("kql", [
    # reprise99's new whoami users: the recent rows with no match in the older ones
    "DeviceProcessEvents | where FileName in~ ('b.exe', 'c.exe') | distinct DeviceId "
    "| join kind=rightanti (DeviceNetworkEvents | where RemoteUrl has 'x.com' or RemoteUrl == 'z.org') on DeviceId",
    "DeviceProcessEvents | where FileName =~ 'a.exe' | distinct DeviceId "
    "| join kind=rightsemi (DeviceNetworkEvents | where RemoteUrl !has 'y.com') on DeviceId | project DeviceId, RemoteUrl",
    "DeviceProcessEvents | project DeviceId, F = FileName "
    "| join kind=rightanti (DeviceNetworkEvents | project DeviceId, U = RemoteUrl) on $left.F == $right.U "
    "| where DeviceId != 'd2'",
    "DeviceProcessEvents | where DeviceId startswith 'd' "
    "| join kind=rightanti (DeviceProcessEvents | where FileName endswith '.exe' "
    "| project DeviceId, FileName) on DeviceId, FileName",
])
def test_a_right_only_join_is_the_left_join_of_the_sides_swapped(kql):
    _two_tables_compare(kql)


def _two_tables_compare(kql: str) -> None:
    from datetime import timedelta

    from rmmc.backends import emit
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler import ir
    from rmmc.compiler.rows import run
    from rmmc.verify.whole import NOW
    from tests.row_sets import comparable, spl_time_as_timestamp
    from tests.spl_pipeline import run as spl_run
    from tests.test_multi_table_targets import _spl_events

    rule = rmmc.lower_text(kql).rule
    out = emit("splunk", rule, EmitOptions(), fields="defender")
    assert out.ok and not [d for d in out.diagnostics if d.code == "lossy"], out.diagnostics
    assert "| join type=" in out.text
    t = NOW - timedelta(hours=1)
    events = []
    for i, (device, name, url) in enumerate([
            ("d1", "a.exe", "x.com"), ("d1", "A.EXE", "y.com"), ("D1", "a.exe", "https://x.com/a"),
            ("d2", "b.exe", "z.org"), ("", "a.exe", "x.com"), ("d3", "c.exe", "y.com"), ("é", "a.exe", ""),
            ("d4", "x.com", "a.exe"), ("d5", "", "b.exe")]):
        events.append({ir.TABLE: "DeviceProcessEvents", "DeviceId": device, "FileName": name,
                       "Timestamp": t + timedelta(minutes=i)})
        events.append({ir.TABLE: "DeviceNetworkEvents", "DeviceId": device, "RemoteUrl": url,
                       "Timestamp": t + timedelta(minutes=2 * i)})
    events = [{k: v for k, v in e.items() if v not in (None, "")} for e in events]
    expected = run(rule, events, now=NOW)
    got = spl_run(out.text, _spl_events(events))
    joins = [i for i, s in enumerate(rule.stages) if isinstance(s, ir.Join)]
    after = rule.stages[joins[-1]:] if joins else rule.stages
    if not any(isinstance(s, (ir.Project, ir.Summarize)) for s in after):  # whole events
        keep = {k for row in got for k in row} - {"category"}
        expected = [{k: v for k, v in r.items() if ("_time" if k == "Timestamp" else k) in keep} for r in expected]
        got = [{k: v for k, v in r.items() if k != "category"} for r in got]
    assert comparable(got, spl_time_as_timestamp) == comparable(expected), out.text
    assert expected and len(expected) < len(events) / 2  # the join or subquery decides


def test_a_later_filters_subquery_inside_or_still_widens_or_refuses():
    t = emit_splunk(rmmc.lower_text("DeviceNetworkEvents | summarize n = count() by DeviceName "
                                    "| where DeviceName in ((DeviceInfo | project DeviceName)) or n > 2 "
                                    "| summarize m = count()").rule, fields="defender")
    assert not t.ok and any(d.code == "unsupported" and "DeviceInfo" in d.message for d in t.diagnostics)


# ------------------------------------------------------------------ ipv4_is_match

ADDRESSES = ["169.1.2.3", "170.1.2.3", "169.255.255.255", "168.255.255.255", " 169.1.2.3 ", "169.1.2.3/8",
             "169.1.2.3/4", "170.1.2.3/4", "176.0.0.1/4", "170.1.2.3/7", "170.1.2.3/6", "169.1.2.3/0",
             "1.1.1.1/0", "1.1.1.1/00", "169.1.2.3/32", "169.1.2.3/33", "169.1.2.3/ 8", "169.1.2.3/8 ",
             "169.1.2.3 /8", "169.1.2.3/", "169.1.2.3/+8", "169.1.2.3/1_6", "169.1.2.3/\u0668", "169.1.2.3/-0",
             "169.1.2.3/8/8", "169.01.2.3", "169.1.2", "", "x", "\u3000169.1.2.3", "169.1.2.3\n", "::1",
             "192.168.5.5", "192.169.0.1", "192.168.0.1/15", "192.170.0.1/15", "192.171.0.1/14", "10.9.9.9"]


@pytest.mark.parametrize("query", [
    # reprise99's SSH from outside 169/8; FalconFriday's private ranges
    "DeviceNetworkEvents | where not(ipv4_is_match(RemoteUrl, '169.0.0.0/8'))",
    "DeviceNetworkEvents | where ipv4_is_match(RemoteUrl, '169.0.0.0/8')",
    "DeviceNetworkEvents | where not(ipv4_is_match(RemoteUrl, '192.168.0.0/16') or ipv4_is_match(RemoteUrl, "
    "'172.16.0.0/12') or ipv4_is_match(RemoteUrl, '10.0.0.0/8'))",
    "DeviceNetworkEvents | where ipv4_is_match(RemoteUrl, '169.0.0.0/8') == false",
    "DeviceNetworkEvents | where ipv4_is_match(RemoteUrl, '192.168.1.1', 15)",
    "DeviceNetworkEvents | where ipv4_is_match(RemoteUrl, ' 169.1.1.1 ')",
    "DeviceNetworkEvents | extend m = iff(ipv4_is_match(RemoteUrl, '169.0.0.0/8'), 'in', 'out') | project m",
    "DeviceNetworkEvents | where ipv4_is_match(RemoteUrl, 'not an address') == false",
])
def test_ipv4_is_match_with_a_constant_network(query):
    # prefixes on x below, at and above the constant's, out of range, spaced, signed,
    # other scripts' digits (no prefix: null), leading zeros, and what is no address
    rule = rmmc.lower_text(query).rule
    compare(rule, [{"RemoteUrl": a, "Timestamp": T0} for a in ADDRESSES] + [{"Timestamp": T0}])


def test_ipv4_is_match_reads_a_prefix_of_decimal_digits_only():
    from rmmc.compiler.functions import FUNCTIONS

    match = FUNCTIONS["ipv4_is_match"].impl
    assert match("10.1.1.1/ 8", "10.2.2.2") is True and match("10.1.1.1/008", "10.2.2.2") is True
    assert match("10.1.1.1/+8", "10.2.2.2") is None and match("10.1.1.1/\u0668", "10.2.2.2") is None
    assert match("10.1.1.1/", "10.1.1.1") is True and match("10.1.1.1/33", "10.1.1.1") is None


# ------------------------------------------------------------------ grouping by a path's text


def test_summarize_by_the_text_of_a_path_groups_a_missing_member_as_empty():
    # Bert-JanP's inspected signatures: count() by tostring(SignatureName), SignatureName a path
    from datetime import timedelta

    from rmmc.backends.base import EmitOptions
    from rmmc.compiler import ir
    from rmmc.compiler.rows import run
    from rmmc.environments import load_environment
    from rmmc.environments.adapt import adapt
    from rmmc.translation import emit_adapted
    from rmmc.verify.whole import NOW
    from tests.row_sets import comparable
    from tests.test_splunk_tail import ENV, _spl_rows_flat

    kql = ("DeviceNetworkEvents | where ActionType == 'NetworkSignatureInspected' "
           "| extend SignatureName = parse_json(AdditionalFields).SignatureName "
           "| summarize count() by tostring(SignatureName)")
    bags = [{"SignatureName": "SSH"}, {"SignatureName": "SSH"}, {"SignatureName": "ssh"},
            {"SignatureName": ""}, {"Other": "x"}, None, {"SignatureName": "HTTP_Client"}]
    events = [{ir.TABLE: "DeviceNetworkEvents", "Timestamp": NOW - timedelta(minutes=i), "ActionType":
               "NetworkSignatureInspected", **({"AdditionalFields": bag} if bag is not None else {})}
              for i, bag in enumerate(bags)]
    rule = lower_text(kql).rule
    adapted = adapt(rule, load_environment(ENV))
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    events = [adapted.normalize(e) for e in events]
    expected = run(rule, events, now=NOW)
    assert sorted((r["SignatureName"], r["count_"]) for r in expected) == [("", 3), ("HTTP_Client", 1),
                                                                           ("SSH", 2), ("ssh", 1)]
    got = _spl_rows_flat(out.text, adapted, events)
    assert comparable(got) == comparable(expected), out.text


# ------------------------------------------------------------------ has on a set of integers


@pytest.mark.parametrize("query", [
    # reprise99's listening ports: make_set of an integer column, has_any of port numbers
    "DeviceNetworkEvents | summarize P = make_set(RemotePort), C = dcount(RemotePort) by DeviceName "
    "| where P has_any ('21', '22', '53') | project DeviceName, C",
    "DeviceNetworkEvents | summarize P = make_set(RemotePort) by DeviceName | where P has '21' | project DeviceName",
    "DeviceNetworkEvents | summarize P = make_set(RemotePort) by DeviceName | where P !has '0' | project DeviceName",
    "DeviceNetworkEvents | summarize P = make_set(RemotePort) by DeviceName | where P has_all ('21', '53') "
    "| project DeviceName",
    "DeviceNetworkEvents | summarize P = make_set(RemotePort) by DeviceName | where P has '021' | project DeviceName",
])
def test_has_on_a_set_of_integers(query):
    # an element's digits equal to the needle, containing it (210, 121), negative (-53: the
    # term is 53), zero, groups whose values are all missing (KQL's [], no field in SPL)
    rule = rmmc.lower_text(query).rule
    rows = [("a", 21), ("a", 80), ("b", 210), ("b", 121), ("c", -53), ("c", 22), ("d", 0), ("e", None),
            ("f", 53), ("f", 21), ("g", 2), ("g", 1)]
    compare(rule, [{"DeviceName": d, "RemotePort": p, "Timestamp": T0} for d, p in rows])


@pytest.mark.parametrize("query", [
    "DeviceNetworkEvents | summarize P = make_set(RemoteUrl) by DeviceName | where P has '21'",  # text elements
    "DeviceNetworkEvents | summarize P = make_list(RemotePort) by DeviceName | where P has '21'",  # at most 100
    "DeviceNetworkEvents | summarize P = make_set(RemotePort, 5) by DeviceName | where P has '21'",  # a few
    "DeviceNetworkEvents | summarize P = make_set(RemotePort) by DeviceName | extend P = split('21', ',', 0) "
    "| where P has '21'",  # made anew by a later stage
    "DeviceNetworkEvents | summarize P = make_set(RemotePort) by DeviceName | where P has 'x21'",
])
def test_has_on_a_set_spl_cannot_decide_is_not_written_exactly(query):
    t = emit_splunk(rmmc.lower_text(query).rule, fields="defender")
    assert not t.ok or any(d.code == "lossy" for d in t.diagnostics)
    assert "mvfind" not in t.text


@pytest.mark.parametrize("query", [
    # a set of integers made in a join's right side: "80" is no element of [80]
    "DeviceNetworkEvents | join kind=inner (DeviceNetworkEvents | summarize S = make_set(RemotePort) by DeviceName) "
    "on DeviceName | where set_has_element(S, '80')",
    # the set made anew by an extend before the test
    "DeviceNetworkEvents | summarize S = make_set(RemoteUrl) by DeviceName | extend S = split(DeviceName, '.', 0) "
    "| where set_has_element(S, 'a')",
])
def test_set_has_element_of_a_set_rmmc_did_not_see_collected_is_refused(query):
    t = emit_splunk(rmmc.lower_text(query).rule, fields="defender")
    assert not t.ok or any(d.code == "lossy" for d in t.diagnostics)
    assert "mvfind" not in t.text


# ------------------------------------------------------------------ mv-expand of a split


@pytest.mark.parametrize("query", [
    # m4nbat's base64 hunt: every word of the command line, kept when it looks like base64
    "DeviceNetworkEvents | extend S = split(RemoteUrl, ' ') | mvexpand S "
    "| where S matches regex '^[A-Za-z0-9+/]{3,}[=]{0,2}$' | extend B = tostring(S) | project B, DeviceName",
    # every element, empty ones included, with its position; a limit; a delimiter of two characters
    "DeviceNetworkEvents | mv-expand with_itemindex=i S = split(RemoteUrl, ' ') to typeof(string) | project S, i",
    "DeviceNetworkEvents | mv-expand S = split(RemoteUrl, ', ') to typeof(string) limit 2 | project S, DeviceName",
    "DeviceNetworkEvents | mv-expand S = split(RemoteUrl, '') to typeof(string) | project S",
    "DeviceNetworkEvents | mv-expand S = split(RemoteUrl, ' ') | summarize n = count() by T = tostring(S)",
    "DeviceNetworkEvents | mv-expand RemoteUrl = split(RemoteUrl, '.') to typeof(string) | where RemoteUrl != '' "
    "| project RemoteUrl, DeviceName",
])
def test_mv_expand_of_a_split(query):
    # no delimiter, several, adjacent (an empty element), at either end, a line break, a
    # missing text (KQL's split of '' is [''], one row), the two-character delimiter overlapping
    rule = rmmc.lower_text(query).rule
    texts = ["", "a", "abc def", "a  b", " a", "a ", "x y z w", "a, b, c", "a,, b", ", ,", "l1\nl2 l3",
             "QUJD QUJDRA== x", "é € 😀", "a.b.c", "..", "{1} {2}"]
    events = [{"RemoteUrl": t, "DeviceName": f"d{i}", "Timestamp": T0} for i, t in enumerate(texts)]
    compare(rule, events + [{"DeviceName": "none", "Timestamp": T0}])


def test_mv_expand_of_what_spl_cannot_split_is_refused():
    t = emit_splunk(rmmc.lower_text("DeviceNetworkEvents | mv-expand S = extract_all('a', RemoteUrl)").rule,
                    fields="defender")
    assert not t.ok and any("mv-expand" in d.message and d.code == "unsupported" for d in t.diagnostics)
