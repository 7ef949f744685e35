"""The Splunk SPL backend (rmmc.backends.splunk.backend).

Semantics are checked against the reference evaluator through `tests/spl_interp.py`, a small
interpreter of the SPL subset the backend emits that models Splunk where it differs from KQL:
missing fields are null (not ''), `search` gives OR precedence over AND, `f="..."` in search
is a case-insensitive wildcard match, eval is three-valued.  A wrongly parenthesized search,
a lost null guard or a bad escape makes the interpreter disagree with the evaluator.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmmc.backends.base import EmitOptions
from rmmc.backends.splunk.backend import emit_splunk, regex_literal, term_regex
from rmmc.compiler.evaluator import matches, term_match
from rmmc.compiler.ir import (Aggregate, And, Call, Const, EventKind, Extend, Field, Filter, InSubquery, Limit,
                              Literal, Lookback, Metadata, Not, Op, Or, Predicate, Rule, Sort, SortKey,
                              Source, Star, Summarize)
from tests.spl_interp import pcre_to_python, selects, tokens

TABLE = "DeviceNetworkEvents"


def seed(name: str) -> Rule:
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document

    return compile_document(read_path(f"rules/{name}").documents[0]).rule


def rule_of(condition, lookback=None, stages=(), table=TABLE) -> Rule:
    return Rule(Metadata(title="t"), Source(table, EventKind.NETWORK), condition, lookback, (), tuple(stages))


def P(field, op, *values, type="string", **kw) -> Predicate:
    return Predicate(Field(field, type), op, tuple(values), **kw)


# ------------------------------------------------------------------ golden outputs
#
# Checked by hand:
# * term regex: `has 'remotepc.com'` is `(^|[^0-9A-Za-z])remotepc\.com($|[^0-9A-Za-z])` under
#   (?i): boundaries on both ends because 'r' and 'm' are ASCII letters (evaluator's TERM); the
#   '.' is escaped; in the eval string the regex backslash is doubled (`\\.`), the SPL string
#   escape, so match() receives `\.`.  'Distant Software' keeps its space (literal in PCRE).
# * precedence: the three conditions are ANDed at the top of one `| where` (eval: AND binds
#   tighter than OR), the has_any group is parenthesized `( ... OR ... )`.
# * null handling: every field is read as coalesce(f, "") (KQL's missing string is '').
# * escaping: only `"`-quoted literals, no `|` outside them except the command separators.
# * output: fillnull "" before stats (stats drops null by-fields; KQL groups them as ''),
#   Timestamp -> _time, make_set -> values, count() -> count, group keys through the sigma
#   profile (DeviceName -> SourceHostname, RemoteUrl -> DestinationHostname).

REMOTEPC = r'''search earliest=-5d latest=now DestinationHostname="*remotepc.com*" InitiatingProcessVersionInfoCompanyName="*idrive*" InitiatingProcessVersionInfoProductName IN ("*remotepc*", "*viewer*", "*remotedesktop*")
| where match(coalesce(DestinationHostname, ""), "(?i)(^|[^0-9A-Za-z])remotepc\\.com($|[^0-9A-Za-z])") AND match(coalesce(InitiatingProcessVersionInfoCompanyName, ""), "(?i)(^|[^0-9A-Za-z])idrive($|[^0-9A-Za-z])") AND match(coalesce(InitiatingProcessVersionInfoProductName, ""), "(?i)(^|[^0-9A-Za-z])(?:remotepc|viewer|remotedesktop)($|[^0-9A-Za-z])")
| fillnull value="" DeviceId SourceHostname DestinationHostname
| stats min(_time) as FirstSeen max(_time) as LastSeen values(ReportId) as Report count as Count by DeviceId SourceHostname DestinationHostname
'''

DISTANTDESKTOP = r'''search earliest=-5d latest=now DestinationHostname IN ("*distantdesktop.com*", "*signalserver.xyz*") InitiatingProcessVersionInfoCompanyName="*distant software*" InitiatingProcessVersionInfoProductName="*distant desktop*"
| where match(coalesce(DestinationHostname, ""), "(?i)(^|[^0-9A-Za-z])(?:distantdesktop\\.com|signalserver\\.xyz)($|[^0-9A-Za-z])") AND match(coalesce(InitiatingProcessVersionInfoCompanyName, ""), "(?i)(^|[^0-9A-Za-z])Distant Software($|[^0-9A-Za-z])") AND match(coalesce(InitiatingProcessVersionInfoProductName, ""), "(?i)(^|[^0-9A-Za-z])Distant Desktop($|[^0-9A-Za-z])")
| fillnull value="" DeviceId SourceHostname DestinationHostname
| stats min(_time) as FirstSeen max(_time) as LastSeen values(ReportId) as Report count as Count by DeviceId SourceHostname DestinationHostname
'''


def test_golden_remotepc():
    t = emit_splunk(seed("rmm_remotepc_netconn.txt"))
    assert t.ok and t.target == "splunk"
    assert t.text == REMOTEPC
    assert not [d for d in t.diagnostics if d.code == "lossy"]
    assert any("no index or sourcetype" in d.message for d in t.diagnostics)
    assert sum("not applied" in d.message for d in t.diagnostics) == 5


def test_golden_distantdesktop():
    t = emit_splunk(seed("rmm_distantdesktop_netconn.txt"))
    assert t.ok and t.text == DISTANTDESKTOP


def test_seed_semantics_on_events():
    rule = seed("rmm_remotepc_netconn.txt")
    text = emit_splunk(rule, fields="defender").text
    events = [
        {"RemoteUrl": "https://www.remotepc.com/x", "InitiatingProcessVersionInfoCompanyName": "IDrive Inc.",
         "InitiatingProcessVersionInfoProductName": "RemotePC Viewer"},
        {"RemoteUrl": "notremotepc.com", "InitiatingProcessVersionInfoCompanyName": "IDrive",
         "InitiatingProcessVersionInfoProductName": "viewer"},
        {"RemoteUrl": "a_remotepc.com", "InitiatingProcessVersionInfoCompanyName": "idrive",
         "InitiatingProcessVersionInfoProductName": "x-remotedesktop"},
        {"RemoteUrl": "remotepc.community", "InitiatingProcessVersionInfoCompanyName": "idrive",
         "InitiatingProcessVersionInfoProductName": "viewer"},
        {"RemoteUrl": "remotepc.com"},
    ]
    assert [selects(text, e) for e in events] == [matches(rule, e) for e in events] == [True, False, True, False, False]


def test_field_profiles_and_exclusions():
    rule = seed("rmm_remotepc_netconn.txt")
    ecs = emit_splunk(rule, EmitOptions(apply_exclusions=True), fields="ecs")
    assert "coalesce('process.pe.company', \"\")" in ecs.text  # dotted names quoted in eval
    assert 'NOT process.name="schtasks.exe"' in ecs.text.splitlines()[0]
    assert "by host.id host.name destination.domain" in ecs.text
    assert [d.message for d in ecs.diagnostics if d.code == "lossy"] == [
        "splunk: field ReportId has no 'ecs' field mapping for table DeviceNetworkEvents: emitted as 'ReportId' "
        "(the test matches only if the data has that field)"]
    cim = emit_splunk(rule, fields="cim")
    warned = {m.group(1) for d in cim.diagnostics if (m := re.search(r"field (\w+) has no 'cim'", d.message))}
    assert warned == {"InitiatingProcessVersionInfoCompanyName", "InitiatingProcessVersionInfoProductName",
                      "DeviceId", "ReportId"}
    assert not emit_splunk(rule, fields="ocsf").ok


# ------------------------------------------------------------------ search / where forms


def test_search_form_precedence_and_negation():
    cond = And((Or((P("RemoteUrl", Op.CONTAINS, "a"), P("DeviceName", Op.STARTSWITH, "b"))),
                P("RemoteUrl", Op.EQUALS, "x", "y", negated=True)))
    text = emit_splunk(rule_of(cond), fields="defender").text
    assert text.splitlines()[0] == 'search (RemoteUrl="*a*" OR DeviceName="b*") NOT RemoteUrl IN ("x", "y")'
    # Splunk would read `A OR B C` as ... the explicit parentheses keep KQL's grouping
    assert selects(text, {"RemoteUrl": "zz", "DeviceName": "bb"})
    assert selects(text, {"DeviceName": "b"})  # missing RemoteUrl: '' != 'x' in KQL, NOT matches in search
    assert not selects(text, {"RemoteUrl": "X"})


def test_values_matching_empty_go_to_where():
    # KQL: RemoteUrl != '' is false on a missing field; search's NOT RemoteUrl="" would be true
    text = emit_splunk(rule_of(P("RemoteUrl", Op.EQUALS, "", negated=True)), fields="defender").text
    assert text == 'search *\n| where NOT lower(coalesce(RemoteUrl, ""))==""\n'
    assert not selects(text, {}) and selects(text, {"RemoteUrl": "a"})


def test_star_case_sensitive_and_control_chars_go_to_where():
    text = emit_splunk(rule_of(P("RemoteUrl", Op.CONTAINS, "a*b")), fields="defender").text
    # the index prefilter is the longest piece of the needle search can say ('a'): implied by the test
    assert text == 'search RemoteUrl="*a*"\n| where match(coalesce(RemoteUrl, ""), "(?i)a\\\\*b")\n'
    assert selects(text, {"RemoteUrl": "xA*B"}) and not selects(text, {"RemoteUrl": "axxb"})
    text = emit_splunk(rule_of(P("RemoteUrl", Op.EQUALS, "Ab", case_sensitive=True)), fields="defender").text
    # search is case-insensitive: its term is the case-folded twin, implied by the cased test
    assert text == 'search RemoteUrl="ab"\n| where coalesce(RemoteUrl, "")=="Ab"\n'
    text = emit_splunk(rule_of(P("RemoteUrl", Op.ENDSWITH, "a\nb")), fields="defender").text
    assert "\\\\x{0a}" in text and text.count("\n") == 2


def test_regex_dollar_is_the_very_end():
    # RE2 (the model) reads `$` as the very end of the text; PCRE also before a final line
    # break, so `^$` would select "\n": the backend writes PCRE's `\z` (hypothesis found it)
    rule = rule_of(P("RemoteUrl", Op.REGEX, "^$"))
    text = emit_splunk(rule, fields="defender").text
    assert text == 'search *\n| where match(coalesce(RemoteUrl, ""), "(?i)^\\\\z")\n'
    for event in ({"RemoteUrl": "\n"}, {"RemoteUrl": ""}, {}, {"RemoteUrl": "a"}):
        assert selects(text, event) == matches(rule, event), event
    multiline = emit_splunk(rule_of(P("RemoteUrl", Op.REGEX, "(?m)a$")), fields="defender").text
    assert '"(?i)(?m)a$"' in multiline  # multi-line mode: `$` is the end of a line in both


def test_numeric_null_handling():
    port = Field("RemotePort", "int")
    ne = Predicate(port, Op.EQUALS, (443,), negated=True)
    text = emit_splunk(rule_of(ne), fields="defender").text
    assert text == "search *\n| where (isnull(RemotePort) OR RemotePort!=443)\n"
    assert selects(text, {}) and not selects(text, {"RemotePort": 443})
    lt = Not(Predicate(port, Op.LT, (1024,)))
    text = emit_splunk(rule_of(lt), fields="defender").text
    assert text == "search *\n| where (isnotnull(RemotePort) AND RemotePort>=1024)\n"
    assert not selects(text, {})  # KQL: not(null < 1024) is unknown, not true


def test_lookback_units():
    def head(window):
        return emit_splunk(rule_of(Const(True), Lookback(window))).text.splitlines()[0]
    assert head(timedelta(days=5)) == "search earliest=-5d latest=now"
    assert head(timedelta(hours=36)) == "search earliest=-36h latest=now"
    assert head(timedelta(minutes=90)) == "search earliest=-90m latest=now"
    assert head(timedelta(seconds=61)) == "search earliest=-61s latest=now"
    t = emit_splunk(rule_of(Const(True), Lookback(timedelta(milliseconds=1500))))
    assert t.text.startswith("search earliest=-2s latest=now")
    assert any(d.code == "lossy" and "rounded up" in d.message for d in t.diagnostics)


def test_insubquery_widened_and_reported():
    sub = InSubquery(Field("RemoteIP"), "DeviceInfo | project PublicIP", "DeviceInfo")
    t = emit_splunk(rule_of(And((P("RemoteUrl", Op.CONTAINS, "x"), Not(sub)))), fields="defender")
    assert t.text == 'search RemoteUrl="*x*"\n'
    assert [d.code for d in t.diagnostics if "DeviceInfo | project" in d.message] == ["lossy"]


def test_constant_false_and_unexpressible_types():
    t = emit_splunk(rule_of(Const(False)))
    assert t.text == "search *\n| where false()\n"
    t = emit_splunk(rule_of(P("IsExcluded", Op.EQUALS, True, type="bool")), fields="defender")
    assert t.text == "search *\n" and any(d.code == "lossy" for d in t.diagnostics)


def test_stages_in_order():
    # every stage is written in the rule's order (no stage is dropped any more): the extend
    # before stats; arg_max(Timestamp, *) as eventstats max(_time) + where + dedup, the other
    # aggregates computed by eventstats over the whole group; the sort by a count (never null:
    # no null rank); take; the extend after it.  make_list's 100-value cap in list() only
    # changes what is shown here (nothing reads l later): a shape warning, not lossy.
    stages = (Extend((("x", Call("strlen", (Field("RemoteUrl"),), "long")),)),
              Summarize((("DeviceName", Field("DeviceName")),),
                        (Aggregate("n", "count"), Aggregate(None, "arg_max", (Field("Timestamp", "datetime"), Star())),
                         Aggregate("l", "make_list", (Field("RemoteUrl"),)))),
              Sort((SortKey(Field("n", "long")),)), Limit(10), Extend((("y", Literal(1, "long")),)))
    t = emit_splunk(rule_of(Const(True), stages=stages), fields="defender")
    assert t.text == ('search *\n| eval x=len(coalesce(RemoteUrl, ""))\n| fillnull value="" DeviceName\n'
                      '| eventstats count as n list(RemoteUrl) as l max(_time) as rmmc_t1 by DeviceName\n'
                      '| where _time==rmmc_t1\n| dedup DeviceName\n| fields - rmmc_t1\n'
                      '| sort 0 -num(n)\n| head 10\n| eval y=1\n')
    assert not [d for d in t.diagnostics if d.code == "lossy"]
    assert [d.code for d in t.diagnostics if "100 values" in d.message] == ["shape"]
    check_structure(t.text)
    # read by a later filter, the cap changes which rows are returned: lossy
    read = stages[:2] + (Filter(Predicate(Call("array_length", (Field("l", "dynamic"),), "long"), Op.GT, (3,))),)
    t = emit_splunk(rule_of(Const(True), stages=read), fields="defender")
    assert [d.code for d in t.diagnostics if "100 values" in d.message] == ["lossy"]
    assert t.text.endswith("| where if(isnull(l), 0, mvcount(l))>3\n")


def test_prefix():
    assert emit_splunk(rule_of(Const(True)), prefix="index=edr sourcetype=mde").text == \
        "search index=edr sourcetype=mde\n"
    bad = emit_splunk(rule_of(Const(True)), prefix="index=a | delete")
    assert not bad.ok and bad.text == ""


# ------------------------------------------------------------------ hostile values


HOSTILE = ['x" | delete', 'a\\', '\\"', 'x") OR (1=1', "'; drop", "a|b", "[inputlookup x]", "`macro`",
           "line\nbreak", "tab\tx", "\x00nul", "é*\\\"|"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("op", [Op.EQUALS, Op.CONTAINS, Op.TERM, Op.STARTSWITH])
def test_hostile_values_stay_one_string(value, op):
    for cs in (False, True):
        text = emit_splunk(rule_of(P("RemoteUrl", op, value, case_sensitive=cs)), fields="defender").text
        check_structure(text)
        assert text.count("\n|") == text.count("\n") - 1  # one line per command
        assert selects(text, {"RemoteUrl": f"<{value}>" if op is not Op.EQUALS else value}) is True \
            or op in (Op.STARTSWITH, Op.TERM)
        assert selects(text, {"RemoteUrl": value}) is matches(rule_of(P("RemoteUrl", op, value, case_sensitive=cs)),
                                                              {"RemoteUrl": value})


def check_structure(text: str) -> None:
    """Balanced quotes and parentheses; `|` only as command separators; no control characters."""
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text)
    lines = text.rstrip("\n").split("\n")
    assert lines[0].startswith("search ") and all(line.startswith("| ") for line in lines[1:])
    for line in lines:
        depth, i, quote = 0, 0, None
        body = line[2:] if line.startswith("| ") else line
        while i < len(body):
            ch = body[i]
            if quote:
                if ch == "\\" and quote == '"':
                    i += 2
                    continue
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                assert depth >= 0, line
            elif ch in "|`[":
                raise AssertionError(f"{ch!r} outside a string: {line}")
            i += 1
        assert quote is None and depth == 0, line
        tokens(body)


# ------------------------------------------------------------------ term regex


@given(st.text("aZ9._- é\n", max_size=8), st.text("aZ9._- é", min_size=1, max_size=4))
@settings(max_examples=300)
def test_term_regex_is_the_evaluator_term(haystack, needle):
    pattern = pcre_to_python(term_regex(needle))
    assert (re.search(pattern, haystack) is not None) == term_match(haystack, needle)
    assert re.fullmatch(pcre_to_python(regex_literal(needle)), needle)


# ------------------------------------------------------------------ random rules


ALPHABET = 'aB._ *"\\|\n'
STR_FIELDS = ("RemoteUrl", "DeviceName")
STR_OPS = [Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX]
texts = st.text(ALPHABET, max_size=3)


@st.composite
def predicates(draw):
    kind = draw(st.sampled_from(["string", "string", "string", "int", "special"]))
    negated = draw(st.booleans())
    if kind == "string":
        return Predicate(Field(draw(st.sampled_from(STR_FIELDS))), draw(st.sampled_from(STR_OPS)),
                         tuple(draw(st.lists(texts, min_size=1, max_size=3))), draw(st.booleans()),
                         draw(st.booleans()), negated)
    if kind == "int":
        op = draw(st.sampled_from([Op.EQUALS, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN]))
        count = 2 if op is Op.BETWEEN else (draw(st.integers(1, 2)) if op is Op.EQUALS else 1)
        values = tuple(draw(st.lists(st.integers(0, 3), min_size=count, max_size=count)))
        return Predicate(Field("RemotePort", "int"), op, values, negated=negated)
    op = draw(st.sampled_from([Op.EMPTY, Op.EXISTS, Op.REGEX]))
    field = draw(st.sampled_from([Field("RemoteUrl"), Field("RemotePort", "int")]))
    if op is Op.REGEX:
        return Predicate(Field("RemoteUrl"), op, (draw(st.sampled_from(["^a", "b$", "a.b", '"', "\\\\", "^$"])),),
                         case_sensitive=draw(st.booleans()), negated=negated)
    return Predicate(field, op, (), negated=negated)


conditions = st.recursive(
    st.one_of(predicates(), st.sampled_from([Const(True), Const(False)])),
    lambda inner: st.one_of(st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
                            st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
                            inner.map(Not)),
    max_leaves=8)

events = st.fixed_dictionaries({}, optional={
    "RemoteUrl": st.text(ALPHABET, max_size=5), "DeviceName": st.text(ALPHABET, max_size=5),
    "RemotePort": st.one_of(st.none(), st.integers(0, 3))})


@given(conditions, st.lists(events, min_size=1, max_size=6))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_rules_mean_what_the_evaluator_says(condition, sample):
    rule = rule_of(condition)
    t = emit_splunk(rule, fields="defender")
    assert t.ok
    assert not [d for d in t.diagnostics if d.code == "lossy"], t.diagnostics
    check_structure(t.text)
    for event in sample:
        assert selects(t.text, event) == matches(rule, event), (t.text, event)


@given(conditions)
@settings(max_examples=100, deadline=None)
def test_every_field_mapped_or_warned(condition):
    for profile in ("sigma", "cim", "ecs"):
        t = emit_splunk(rule_of(condition), fields=profile)
        check_structure(t.text)
        from rmmc.compiler.schema.profiles import load_profile
        from rmmc.compiler.ir import walk_predicates
        for p in walk_predicates(condition):
            if load_profile(profile).field(TABLE, p.field.name) is None and f"{p.field.name}" in t.text:
                assert any(f"field {p.field.name} has no '{profile}'" in d.message for d in t.diagnostics)


# ------------------------------------------------------------------ pySigma comparison


def test_pysigma_splunk_backend_differs():
    """pySigma-backend-splunk 2.1.0 on our Sigma output of the seed rule: it emits no base
    search, a rex/eval/search chain for the 3-value |re list, `| regex` for the others, and for
    the correlation `bin _time span=5d | stats count ... by _time ...`: fixed 5-day buckets
    instead of the rolling 5-day lookback, and no FirstSeen/LastSeen/Report.  Our output is
    REMOTEPC above (one where, earliest=-5d, the KQL summarize's outputs)."""
    sigma = pytest.importorskip("sigma.backends.splunk")
    from sigma.collection import SigmaCollection

    from rmmc.backends.sigma.backend import emit_sigma

    converted = sigma.SplunkBackend().convert(SigmaCollection.from_yaml(emit_sigma(seed("rmm_remotepc_netconn.txt")).text))
    text = "\n".join(converted)
    assert "| rex field=InitiatingProcessVersionInfoProductName" in text
    assert '| regex DestinationHostname="(?i)(^|[^0-9A-Za-z])remotepc' in text
    assert "| bin _time span=5d" in text and "FirstSeen" not in text
    assert emit_splunk(seed("rmm_remotepc_netconn.txt")).text == REMOTEPC


@st.composite
def search_predicates(draw):
    return Predicate(Field(draw(st.sampled_from(STR_FIELDS))),
                     draw(st.sampled_from([Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH])),
                     tuple(draw(st.lists(st.text('aB._"\\|', min_size=1, max_size=2), min_size=1, max_size=3))),
                     draw(st.booleans()), False, draw(st.booleans()))


search_trees = st.recursive(
    search_predicates(),
    lambda inner: st.one_of(st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
                            st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
                            inner.map(Not)),
    max_leaves=8)


@given(search_trees, st.lists(events, min_size=1, max_size=8))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_search_only_trees(condition, sample):
    """Trees `search` says alone: Splunk's OR-before-AND precedence and missing fields."""
    rule = rule_of(condition)
    t = emit_splunk(rule, fields="defender")
    assert "| where" not in t.text
    check_structure(t.text)
    for event in sample:
        assert selects(t.text, event) == matches(rule, event), (t.text, event)


def test_distinct_and_sentinel_time():
    distinct = Summarize((("DeviceName", Field("DeviceName")), ("RemoteUrl", Field("RemoteUrl"))))
    t = emit_splunk(rule_of(P("TimeGenerated", Op.GT, 5, type="int"), stages=(distinct,)), fields="defender")
    assert t.text == ('search *\n| where (isnotnull(_time) AND _time>5)\n| fillnull value="" DeviceName RemoteUrl\n'
                      '| stats count by DeviceName RemoteUrl\n| fields - count\n')
    check_structure(t.text)


# ------------------------------------------------------------------ CIDR (Op.CIDR)

CIDR_EVENTS = [{"RemoteIP": "10.1.2.3"}, {"RemoteIP": "11.0.0.1"}, {"RemoteIP": "fe80::1"},
               {"RemoteIP": "2001:db8::1"}, {"RemoteIP": "not an ip"}, {"RemoteIP": "10.1.2.x"},
               {"RemoteIP": ""}, {}]
CIDR_CONDITIONS = [
    P("RemoteIP", Op.CIDR, "10.0.0.0/8", "fe80::/10"),
    P("RemoteIP", Op.CIDR, "10.0.0.0/8", "fe80::/10", negated=True),
    P("RemoteIP", Op.CIDR, "10.0.0.0/8", "10.1.0.0/16", all_values=True),
    P("RemoteIP", Op.CIDR, "10.0.0.0/8", "10.1.0.0/16", all_values=True, negated=True),
    P("RemoteIP", Op.CIDR, "10.1.2.3/8"),  # host bits: the evaluator drops them
]


@pytest.mark.parametrize("condition", CIDR_CONDITIONS)
def test_cidr_selects_what_the_evaluator_selects(condition):
    r = rule_of(condition)
    t = emit_splunk(r, fields="defender")
    assert t.ok and "cidrmatch(" in t.text, t
    assert [selects(t.text, e) for e in CIDR_EVENTS] == [matches(r, e) for e in CIDR_EVENTS], t.text


def test_cidr_text_and_refusals():
    t = emit_splunk(rule_of(P("RemoteIP", Op.CIDR, "10.1.2.3/8", "fe80::/10")))
    assert '| where (cidrmatch("10.0.0.0/8", coalesce(DestinationIp, "")) OR ' \
           'cidrmatch("fe80::/10", coalesce(DestinationIp, "")))' in t.text
    bad = emit_splunk(rule_of(P("RemoteIP", Op.CIDR, "10.0.0.0/33")))
    assert not bad.ok and any("not an IP network" in d.message for d in bad.diagnostics)
    mapped = emit_splunk(rule_of(P("RemoteIP", Op.CIDR, "::ffff:0:0/96")))
    assert any(d.code == "lossy" and "::ffff:0:0/96" in d.message for d in mapped.diagnostics)
