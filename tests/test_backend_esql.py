"""The ES|QL backend: IR -> ES|QL text.

1. Golden text for the two seed rules, checked by hand (see the comment there).
2. Semantics of the emitted Lucene regexes: the subset rmmc emits is translated to a Python
   `fullmatch` regex (Lucene regexes are anchored) and compared with the reference evaluator.
3. Hypothesis: random conditions with hostile values give balanced text in which every
   value sits in exactly one string literal and nothing leaks out of a literal.
4. Null handling, aggregates, identifiers, time spans and diagnostics, one by one.

The field profiles are another engineer's module: a tiny stand-in profile is used here.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rmmc.backends.esql.backend as esql
from rmmc.backends.base import EmitOptions
from rmmc.backends.esql.backend import (emit_esql, ident, lucene_escape, pattern_regex, string_lit,
                                term_regex, time_span)
from rmmc.compiler.evaluator import fold, term_match
from rmmc.compiler.ir import (Aggregate, And, Const, EventKind, Field, InSubquery, Limit, Lookback,
                              Metadata, Not, Op, Or, Predicate, Rule, Sort, SortKey, Source, Star,
                              Summarize)

TABLE = "DeviceNetworkEvents"


class StandInProfile:
    """ECS names for the columns the tests use (the real profile lives elsewhere)."""

    MAP = {"Timestamp": "@timestamp", "RemoteUrl": "url.original", "DeviceId": "host.id",
           "DeviceName": "host.name", "ReportId": "event.id", "RemotePort": "destination.port",
           "InitiatingProcessFileName": "process.name",
           "InitiatingProcessVersionInfoCompanyName": "process.pe.company",
           "InitiatingProcessVersionInfoProductName": "process.pe.product",
           "InitiatingProcessId": "process.pid", "Odd": "odd field`x"}

    def field(self, table: str, column: str) -> str | None:
        return self.MAP.get(column) if table == TABLE else None


@pytest.fixture(autouse=True)
def stand_in_profile(monkeypatch):
    monkeypatch.setattr(esql, "_load_profile", lambda name: StandInProfile())


def rule_of(condition, stages=(), lookback=None, exclusions=()):
    return Rule(Metadata(), Source(TABLE, EventKind.NETWORK), condition, lookback, exclusions, tuple(stages))


def seed(path):
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document

    return compile_document(read_path(path).documents[0]).rule


# ------------------------------------------------------------------ 1. golden

# Checked by hand against the KQL source of each rule and the ES|QL grammar
# (elastic/elasticsearch EsqlBaseLexer.g4: STRING, QUOTED_IDENTIFIER) and Lucene's regexp
# syntax: `where Timestamp between (now(-5d)..now())` -> `@timestamp > NOW() - 5 days`;
# each `has 'v'` -> TO_LOWER(COALESCE(field, "")) RLIKE "(v|.*[^0-9a-z]v)([^0-9a-z].*)?"
# (v lower-cased, '.' escaped as `\.`, written `\\.` inside the ES|QL string; both ends of
# every value are letters, so both boundaries are present); has_any -> OR of those; the
# summarize -> STATS with make_set -> VALUES and count() -> COUNT(*), grouped by the ECS
# names of DeviceId, DeviceName, RemoteUrl, each string key read through COALESCE (a missing
# key is '' in KQL, its own null group in STATS), ReportId a long (VALUES skips its nulls, as
# make_set); then KEEP puts the keys first, as KQL shows them (STATS puts the aggregates
# first), and LIMIT 10000 (ES|QL returns 1,000 rows without a LIMIT).  Every parenthesis was
# counted by hand.
REMOTEPC = r'''FROM logs-*
| WHERE @timestamp > NOW() - 5 days
| WHERE (TO_LOWER(url.original) LIKE "*remotepc.com*") AND (TO_LOWER(process.pe.company) LIKE "*idrive*") AND (TO_LOWER(process.pe.product) LIKE "*remotepc*" OR TO_LOWER(process.pe.product) LIKE "*viewer*" OR TO_LOWER(process.pe.product) LIKE "*remotedesktop*")
| WHERE (TO_LOWER(COALESCE(url.original, "")) RLIKE "(remotepc\\.com|.*[^0-9a-z]remotepc\\.com)([^0-9a-z].*)?") AND (TO_LOWER(COALESCE(process.pe.company, "")) RLIKE "(idrive|.*[^0-9a-z]idrive)([^0-9a-z].*)?") AND (TO_LOWER(COALESCE(process.pe.product, "")) RLIKE "(remotepc|.*[^0-9a-z]remotepc)([^0-9a-z].*)?" OR TO_LOWER(COALESCE(process.pe.product, "")) RLIKE "(viewer|.*[^0-9a-z]viewer)([^0-9a-z].*)?" OR TO_LOWER(COALESCE(process.pe.product, "")) RLIKE "(remotedesktop|.*[^0-9a-z]remotedesktop)([^0-9a-z].*)?")
| STATS FirstSeen = MIN(@timestamp), LastSeen = MAX(@timestamp), Report = VALUES(event.id), Count = COUNT(*) BY host.id = COALESCE(host.id, ""), host.name = COALESCE(host.name, ""), url.original = COALESCE(url.original, "")
| KEEP host.id, host.name, url.original, FirstSeen, LastSeen, Report, Count
| LIMIT 10000'''

# Same shape; 'Distant Software' / 'Distant Desktop' keep their inner space (a literal in
# Lucene) and are lower-cased; has_any over two URLs -> two RLIKEs joined by OR.
DISTANT = r'''FROM logs-*
| WHERE @timestamp > NOW() - 5 days
| WHERE (TO_LOWER(url.original) LIKE "*distantdesktop.com*" OR TO_LOWER(url.original) LIKE "*signalserver.xyz*") AND (TO_LOWER(process.pe.company) LIKE "*distant software*") AND (TO_LOWER(process.pe.product) LIKE "*distant desktop*")
| WHERE (TO_LOWER(COALESCE(url.original, "")) RLIKE "(distantdesktop\\.com|.*[^0-9a-z]distantdesktop\\.com)([^0-9a-z].*)?" OR TO_LOWER(COALESCE(url.original, "")) RLIKE "(signalserver\\.xyz|.*[^0-9a-z]signalserver\\.xyz)([^0-9a-z].*)?") AND (TO_LOWER(COALESCE(process.pe.company, "")) RLIKE "(distant software|.*[^0-9a-z]distant software)([^0-9a-z].*)?") AND (TO_LOWER(COALESCE(process.pe.product, "")) RLIKE "(distant desktop|.*[^0-9a-z]distant desktop)([^0-9a-z].*)?")
| STATS FirstSeen = MIN(@timestamp), LastSeen = MAX(@timestamp), Report = VALUES(event.id), Count = COUNT(*) BY host.id = COALESCE(host.id, ""), host.name = COALESCE(host.name, ""), url.original = COALESCE(url.original, "")
| KEEP host.id, host.name, url.original, FirstSeen, LastSeen, Report, Count
| LIMIT 10000'''


def test_golden_remotepc():
    t = emit_esql(seed("rules/rmm_remotepc_netconn.txt"))
    assert t.ok and t.target == "esql"
    assert t.text == REMOTEPC
    assert not any(d.code == "lossy" for d in t.diagnostics)
    # the five understood exclusions are not applied: one note each, with their ES|QL
    excluded = [d for d in t.diagnostics if "not applied" in d.message]
    assert len(excluded) == 5
    assert 'NOT ((TO_LOWER(COALESCE(process.name, "")) == "schtasks.exe")' in excluded[0].message


def test_golden_distantdesktop():
    t = emit_esql(seed("rules/rmm_distantdesktop_netconn.txt"))
    assert t.ok and t.text == DISTANT


def test_exclusions_applied():
    t = emit_esql(seed("rules/rmm_remotepc_netconn.txt"), EmitOptions(apply_exclusions=True))
    assert t.ok
    where = t.text.splitlines()[3]  # [2] is the index prefilter (no NOT: exclusions have none)
    assert "NOT" not in t.text.splitlines()[2]
    assert where.count("AND (NOT (") == 5
    assert '"windowsupdate.exe"' in where  # lower-cased for TO_LOWER
    assert any("InitiatingProcessAccountName" in d.message and d.code == "unmapped-field"
               for d in t.diagnostics)


# ------------------------------------------------------------------ 2. regex semantics


def lucene_to_python(pattern: str) -> re.Pattern[str]:
    """The subset of Lucene regex rmmc emits, as a Python regex for `fullmatch`."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "[":
            end = pattern.index("]", i)
            body = pattern[i:end + 1]
            assert body in ("[^0-9a-z]", "[^0-9a-zA-Z]"), body
            out.append(body)
            i = end + 1
            continue
        out.append(ch if ch in "().|*?" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def lucene_match(pattern: str, text: str) -> bool:
    return lucene_to_python(pattern).fullmatch(text) is not None


@pytest.mark.parametrize("value", ["https://www.remotepc.com/x", "notremotepc.com",
                                   "remotepc.community", "REMOTEPC.COM", "a_remotepc.com",
                                   "remotepc.com", "", "remotepc.co", "x.remotepc.com.y"])
def test_term_regex_boundaries(value):
    pattern = term_regex("remotepc.com")
    assert pattern == r"(remotepc\.com|.*[^0-9a-z]remotepc\.com)([^0-9a-z].*)?"
    assert lucene_match(pattern, value.lower()) == term_match(fold(value), "remotepc.com")


ALPHABET = "aZ0.-_ *?\\\"(|)[]é\n"


@given(st.text(ALPHABET, max_size=12), st.text(ALPHABET, max_size=4), st.booleans(),
       st.sampled_from([Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX, Op.CONTAINS, Op.STARTSWITH,
                        Op.ENDSWITH]))
@settings(max_examples=400)
def test_pattern_regexes_agree_with_evaluator(haystack, needle, cased, op):
    from rmmc.compiler.evaluator import evaluate_predicate

    p = Predicate(Field("F"), op, (needle,), case_sensitive=cased)
    expected = evaluate_predicate(p, {"F": haystack})
    subject = haystack if cased else haystack.lower()  # what TO_LOWER gives here
    n = needle if cased else fold(needle)
    assert lucene_match(pattern_regex(op, n, cased), subject) == expected


def test_lucene_escape_never_escapes_letters():
    assert lucene_escape("a.b*c?d\\e\"f@g#h~i<j>k&l") == r'a\.b\*c\?d\\e\"f\@g\#h\~i\<j\>k\&l'
    assert lucene_escape("dé 9") == "dé 9"


# ------------------------------------------------------------------ 3. hostile values

TOKEN = re.compile(r'''"(?:\\[tnr"\\]|[^\r\n"\\])*"|`(?:[^`]|``)*`|[A-Za-z_@][A-Za-z0-9_.@]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|==|!=|<=|>=|[-<>(),*=|+.]|\s+''')
_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}


def tokenize(text: str) -> list[str]:
    """ES|QL tokens; fails on any character outside a literal that no token explains."""
    pos, tokens = 0, []
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m, f"stray text at {pos}: {text[pos:pos + 30]!r}"
        if not m.group().isspace():
            tokens.append(m.group())
        pos = m.end()
    return tokens


def literal_value(token: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPE[m.group(1)], token[1:-1])


HOSTILE = st.text(st.sampled_from(list('ab"\\*?.()[]{}|`\'\n\r\t é🙂İ$^+#@~<>&') + ["\u0000"]),
                  max_size=8)
STRING_FIELDS = [Field("RemoteUrl"), Field("InitiatingProcessFileName"), Field("Odd"),
                 Field("Unmapped Col")]
COUNTER = iter(range(10 ** 9))


@st.composite
def predicates(draw):
    op = draw(st.sampled_from([Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM,
                               Op.TERM_PREFIX, Op.TERM_SUFFIX, Op.EMPTY, Op.EXISTS, Op.GT,
                               Op.BETWEEN]))
    negated = draw(st.booleans())
    if op in (Op.GT, Op.BETWEEN):
        values = tuple(draw(st.integers(-10 ** 6, 10 ** 6)) for _ in range(2 if op is Op.BETWEEN else 1))
        return Predicate(Field("RemotePort", "int"), op, values, negated=negated)
    if op in (Op.EMPTY, Op.EXISTS):
        return Predicate(draw(st.sampled_from(STRING_FIELDS)), op, negated=negated)
    # a unique marker makes every value distinct, so each must appear in exactly one literal
    values = tuple(draw(HOSTILE) + f"#{next(COUNTER)}" for _ in range(draw(st.integers(1, 3))))
    return Predicate(draw(st.sampled_from(STRING_FIELDS)), op, values,
                     all_values=draw(st.booleans()), case_sensitive=draw(st.booleans()),
                     negated=negated)


def conditions():
    return st.recursive(predicates() | st.sampled_from([Const(True), Const(False)]),
                        lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=4).map(lambda x: And(tuple(x))),
                                                st.lists(inner, min_size=1, max_size=4).map(lambda x: Or(tuple(x))),
                                                inner.map(Not)),
                        max_leaves=12)


def expected_literals(p: Predicate) -> list[str]:
    out = []
    for v in p.values:
        n = v if p.case_sensitive else fold(v)
        out.append(n if p.op is Op.EQUALS else pattern_regex(p.op, n, p.case_sensitive))
    return out


@given(conditions())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_hostile_values_stay_in_their_literals(condition):
    from rmmc.backends.widen import widen
    from rmmc.compiler.ir import walk_predicates

    from unittest import mock

    from rmmc.compiler.ir import Const

    with mock.patch("rmmc.backends.esql.backend.superset", lambda c: Const(True)):  # the exact tests only
        t = emit_esql(rule_of(condition))
    condition = widen(condition, lambda node: False)[0]  # the backend folds constants so
    assert t.ok, t.diagnostics
    tokens = tokenize(t.text)
    depth = 0
    for tok in tokens:
        depth += tok == "("
        depth -= tok == ")"
        assert depth >= 0
    assert depth == 0
    literals = [literal_value(tok) for tok in tokens if tok.startswith('"')]
    expected = [lit for p in walk_predicates(condition) if p.values and p.field.type == "string"
                for lit in expected_literals(p)]
    # every value is exactly one literal, and the only other literal is "" (COALESCE)
    assert sorted(x for x in literals if x) == sorted(expected)
    for lit in expected:
        assert literals.count(lit) == 1
    # every column is mapped or warned about by name
    names = {p.field.name for p in walk_predicates(condition)}
    for name in names - set(StandInProfile.MAP):
        assert any(d.code == "unmapped-field" and name in d.message for d in t.diagnostics)
    assert all(name not in t.text for name in names & set(StandInProfile.MAP) - {"Odd"})


# ------------------------------------------------------------------ 4. one by one


def where(condition) -> str:
    """The exact WHERE alone: the index prefilter (implied by it; tests/test_prefilter.py) is
    left out here."""
    from unittest import mock

    with mock.patch("rmmc.backends.esql.backend.superset", lambda *a, **k: Const(True)):
        t = emit_esql(rule_of(condition))
    assert t.ok, t.diagnostics
    assert t.text.endswith("\n| LIMIT 10000")  # ES|QL's default is 1,000 rows
    return t.text.split("\n| WHERE ", 1)[1].split("\n| LIMIT ", 1)[0]


def test_string_nulls_are_empty_strings():
    p = Predicate(Field("RemoteUrl"), Op.EQUALS, ("a",), case_sensitive=True, negated=True)
    assert where(p) == 'NOT (COALESCE(url.original, "") == "a")'
    assert where(Predicate(Field("RemoteUrl"), Op.EMPTY)) == 'COALESCE(url.original, "") == ""'
    assert where(Predicate(Field("RemoteUrl"), Op.EXISTS)) == "url.original IS NOT NULL"


def test_typed_equality_is_two_valued():
    port = Field("RemotePort", "int")
    assert where(Predicate(port, Op.EQUALS, (443, 80))) == \
        "destination.port IS NOT NULL AND (destination.port IN (443, 80))"
    assert where(Predicate(port, Op.EQUALS, (443,), negated=True)) == \
        "NOT (destination.port IS NOT NULL AND (destination.port == 443))"
    # comparisons stay three-valued, as in the IR
    assert where(Predicate(port, Op.GT, (-5,), negated=True)) == "NOT (destination.port > (-5))"
    assert where(Predicate(port, Op.BETWEEN, (1, 9))) == "destination.port >= 1 AND destination.port <= 9"


def test_identifiers():
    assert ident("process.name") == "process.name"
    assert ident("@timestamp") == "@timestamp"
    assert ident("odd field`x") == "`odd field``x`"
    assert ident("by") == "`by`"
    assert ident("1.field") == "`1.field`"
    assert where(Predicate(Field("Odd"), Op.EQUALS, ("v",), case_sensitive=True)) == \
        'COALESCE(`odd field``x`, "") == "v"'
    # with the index prefilter (case-insensitive, implied by the cased test) before it
    assert emit_esql(rule_of(Predicate(Field("Odd"), Op.EQUALS, ("v",), case_sensitive=True))).text \
        .split("\n")[1:3] == ['| WHERE TO_LOWER(`odd field``x`) == "v"', '| WHERE COALESCE(`odd field``x`, "") == "v"']


def test_string_literals():
    assert string_lit('a"b\\c\nd\te\r') == r'"a\"b\\c\nd\te\r"'
    assert string_lit("é🙂") == '"é🙂"'


def test_time_spans():
    assert time_span(timedelta(days=5)) == ("5 days", False)
    assert time_span(timedelta(days=1)) == ("1 day", False)
    assert time_span(timedelta(minutes=90)) == ("90 minutes", False)
    assert time_span(timedelta(milliseconds=1500)) == ("1500 milliseconds", False)
    assert time_span(timedelta(microseconds=1500)) == ("2 milliseconds", True)
    t = emit_esql(rule_of(Const(True), lookback=Lookback(timedelta(microseconds=1500))))
    assert any(d.code == "lossy" and "rounded up" in d.message for d in t.diagnostics)


def test_subquery_is_widened_and_reported():
    sub = InSubquery(Field("DeviceId"), "DeviceInfo | project DeviceId", "DeviceInfo")
    url = Predicate(Field("RemoteUrl"), Op.CONTAINS, ("x",), case_sensitive=True)
    t = emit_esql(rule_of(And((url, sub))))
    assert t.ok and t.text.endswith('| WHERE COALESCE(url.original, "") RLIKE ".*x.*"\n| LIMIT 10000')
    assert [d.code for d in t.diagnostics if "DeviceInfo" in d.message] == ["lossy"]
    t = emit_esql(rule_of(And((url, Not(sub)))))  # under NOT: false, so NOT(...) is true
    assert t.text.endswith('| WHERE COALESCE(url.original, "") RLIKE ".*x.*"\n| LIMIT 10000')


def test_aggregates():
    # N = dcount(url), read by the later sort: counted exactly (MV_COUNT of VALUES, not the
    # approximate COUNT_DISTINCT) and a note says so; L = make_list: VALUES drops duplicates,
    # only shown (shape); S = sum(port); the string key and the counted url through COALESCE
    url, port = Field("RemoteUrl"), Field("RemotePort", "int")
    stages = (Summarize((("DeviceId", Field("DeviceId")),), (
        Aggregate("N", "dcount", (url,)), Aggregate("L", "make_list", (url,)), Aggregate("S", "sum", (port,)))),
        Sort((SortKey(Field("N", "long")),)), Limit(10))
    t = emit_esql(rule_of(Const(True), stages))
    assert t.ok
    assert t.text == ('FROM logs-*\n| STATS N = COALESCE(MV_COUNT(VALUES(COALESCE(url.original, ""))), 0), '
                      'L = VALUES(COALESCE(url.original, "")), S = SUM(destination.port) BY host.id = '
                      'COALESCE(host.id, "")\n| KEEP host.id, N, L, S\n| SORT N DESC NULLS LAST\n| LIMIT 10')
    assert not [d for d in t.diagnostics if d.code == "lossy"]
    assert [d.code for d in t.diagnostics if "VALUES" in d.message] == ["note", "shape"]
    # only shown: the approximate COUNT_DISTINCT, said as shape
    shown = emit_esql(rule_of(Const(True), stages[:1]))
    assert "N = COUNT_DISTINCT(COALESCE(url.original, \"\"))" in shown.text
    assert any(d.code == "shape" and "approximate" in d.message for d in shown.diagnostics)
    # arg_max(Timestamp, *) has no ES|QL form: refused, never dropped
    extreme = Summarize((("DeviceId", Field("DeviceId")),),
                        (Aggregate(None, "arg_max", (Field("Timestamp", "datetime"), Star())),))
    t = emit_esql(rule_of(Const(True), (extreme,)))
    assert not t.ok and t.text == "" and [d.code for d in t.diagnostics if d.is_error] == ["unsupported"]


def test_regex_and_bad_types_are_refused():
    t = emit_esql(rule_of(Predicate(Field("RemoteUrl"), Op.REGEX, ("a+",))))
    assert not t.ok and t.text == "" and t.diagnostics[-1].code == "unsupported"
    t = emit_esql(rule_of(Predicate(Field("RemotePort", "int"), Op.CONTAINS, ("4",))))
    assert not t.ok


def test_dotted_i_value_is_lossy():
    t = emit_esql(rule_of(Predicate(Field("RemoteUrl"), Op.EQUALS, ("İx",))))
    assert any(d.code == "lossy" and "U+0130" in d.message for d in t.diagnostics)


def test_missing_profile_module_passes_names_through(monkeypatch):
    monkeypatch.setattr(esql, "_load_profile", lambda name: None)
    t = emit_esql(rule_of(Predicate(Field("RemoteUrl"), Op.EQUALS, ("a",), case_sensitive=True)))
    assert t.ok and 'COALESCE(RemoteUrl, "") == "a"' in t.text
    assert any(d.code == "unmapped-field" for d in t.diagnostics)


# ------------------------------------------------------------------ CIDR (Op.CIDR)
# No ES|QL engine runs here: the text is checked against Elastic's documentation (CIDR_MATCH
# takes an `ip` and CIDR blocks, any of them; TO_IP gives null for a text that is no address;
# COALESCE keeps NOT exact on those nulls).


def test_cidr_text():
    ip = Field("RemoteIP")
    assert where(Predicate(ip, Op.CIDR, ("10.1.2.3/8", "fe80::/10"))) == \
        'COALESCE(CIDR_MATCH(TO_IP(RemoteIP), "10.0.0.0/8", "fe80::/10"), false)'
    assert where(Predicate(ip, Op.CIDR, ("10.0.0.0/8",), negated=True)) == \
        'NOT COALESCE(CIDR_MATCH(TO_IP(RemoteIP), "10.0.0.0/8"), false)'
    assert where(Predicate(ip, Op.CIDR, ("10.0.0.0/8", "10.1.0.0/16"), all_values=True, negated=True)) == \
        'NOT (COALESCE(CIDR_MATCH(TO_IP(RemoteIP), "10.0.0.0/8"), false) AND ' \
        'COALESCE(CIDR_MATCH(TO_IP(RemoteIP), "10.1.0.0/16"), false))'
    mapped = emit_esql(rule_of(Predicate(ip, Op.CIDR, ("::ffff:0:0/96",))))
    assert any(d.code == "lossy" and "::ffff:0:0/96" in d.message for d in mapped.diagnostics)
    assert not emit_esql(rule_of(Predicate(ip, Op.CIDR, ("10.0.0.0/33",)))).ok
    assert not emit_esql(rule_of(Predicate(Field("RemotePort", "int"), Op.CIDR, ("10.0.0.0/8",)))).ok


# ------------------------------------------------------------------ Sigma wildcard values (Op.REGEX)

from rmmc.backends.esql.backend import like_escape  # noqa: E402
from rmmc.compiler.sigma.predicates import wildcard_regex  # noqa: E402
from rmmc.compiler.sigma.values import MULTI, SINGLE  # noqa: E402

APPDATA = r"(?s)^C:\\Users\\.*\\AppData\\x.\.exe$"  # what the Sigma reader writes for C:\Users\*\AppData\x?.exe
URL = Field("RemoteUrl")


def wild(*values, **kw) -> Predicate:
    return Predicate(URL, Op.REGEX, values, **kw)


def test_like_escape():
    assert like_escape("a*b?c\\d.e%_") == "a\\*b\\?c\\\\d.e%_"


# Checked by hand: the value C:\Users\*\AppData\x?.exe lower-cased, each literal backslash
# escaped for LIKE (\\) and that doubled again in the ES|QL string literal (\\\\); the
# wildcards * and ? stay as they are.  A literal * (Sigma \*) is \* in LIKE, \\* in the string.
@pytest.mark.parametrize("predicate,text", [
    (wild(APPDATA), 'TO_LOWER(COALESCE(url.original, "")) LIKE "c:\\\\\\\\users\\\\\\\\*\\\\\\\\appdata\\\\\\\\x?.exe"'),
    (wild(APPDATA, case_sensitive=True),
     'COALESCE(url.original, "") LIKE "C:\\\\\\\\Users\\\\\\\\*\\\\\\\\AppData\\\\\\\\x?.exe"'),
    (wild(r"(?s)^A.*b$", r"(?s)^c.D$"),
     'TO_LOWER(COALESCE(url.original, "")) LIKE "a*b" OR TO_LOWER(COALESCE(url.original, "")) LIKE "c?d"'),
    (wild(r"(?s)^a.*b$", r"(?s)^c.d$", all_values=True, case_sensitive=True),
     'COALESCE(url.original, "") LIKE "a*b" AND COALESCE(url.original, "") LIKE "c?d"'),
    (wild(r"(?s)^a.*b$", negated=True, case_sensitive=True), 'NOT (COALESCE(url.original, "") LIKE "a*b")'),
    (wild(r"(?s)^a.*b$", r"(?s)^c.d$", negated=True, case_sensitive=True),
     'NOT (COALESCE(url.original, "") LIKE "a*b" OR COALESCE(url.original, "") LIKE "c?d")'),
    (wild(r"(?s)^a\*b\?.*\\$", case_sensitive=True), 'COALESCE(url.original, "") LIKE "a\\\\*b\\\\?*\\\\\\\\"'),
    (wild("(?s)^a\n\".*$", case_sensitive=True), 'COALESCE(url.original, "") LIKE "a\\n\\"*"'),
])
def test_wildcard_regex_text(predicate, text):
    assert where(predicate) == text


def test_non_wildcard_regexes_are_still_refused():
    for regex in (r"(?s)^a+$", r"^a.*$", r"(?s)^a.*?$", r"(?i)^a.*$"):
        t = emit_esql(rule_of(wild(regex)))
        assert not t.ok and t.diagnostics[-1].code == "unsupported", regex
    t = emit_esql(rule_of(wild(APPDATA, "a+")))  # one value without a LIKE form: refused
    assert not t.ok


def test_dotted_i_in_a_wildcard_value_is_lossy():
    t = emit_esql(rule_of(wild(r"(?s)^İ.*$")))
    assert any(d.code == "lossy" and "U+0130" in d.message for d in t.diagnostics)


def like_to_python(pattern: str) -> re.Pattern[str]:
    """An ES|QL LIKE pattern as Elasticsearch reads it (Lucene's wildcard automaton: `*` any
    run, `?` one character, a line break included; `\\` escapes the next character), as a
    Python regex for `fullmatch`."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            assert pattern[i + 1] in "*?\\", pattern  # ES|QL refuses any other escape
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def like_select(text: str, value: str | None) -> bool:
    """Whether the emitted one-predicate WHERE (LIKE tests joined by one OR / AND, maybe
    negated) selects a row whose field is `value` (None: missing, read as '')."""
    subject = "" if value is None else value
    negated = text.startswith("NOT (")
    body = text[5:-1] if negated else text
    lowered = body.startswith("TO_LOWER(")
    literals = [literal_value(m.group(0)) for m in re.finditer(r'"(?:\\.|[^"\\])*"(?=$| (?:OR|AND) )', body)]
    hits = [like_to_python(x).fullmatch(subject.lower() if lowered else subject) is not None
            for x in literals]
    got = all(hits) if " AND " in body else any(hits)
    return got != negated


ESQL_VALUES = ["C:\\Users\\bob\\AppData\\x1.exe", "c:\\users\\BOB\\appdata\\X1.EXE",
               "C:\\Users\\b\no\nb\\AppData\\x1.exe", "C:\\Users\\bob\\AppData\\x\n.exe", None, "",
               "C:\\Users\\bob\\AppData\\x12.exe", "C:\\Users\\*\\AppData\\x?.exe",
               "D:\\C:\\Users\\bob\\AppData\\x1.exe", "C:\\Users\\bob\\AppData\\x1.exe.bak"]


@pytest.mark.parametrize("predicate", [wild(APPDATA), wild(APPDATA, negated=True),
                                       wild(APPDATA, case_sensitive=True),
                                       wild(APPDATA, r"(?s)^.*\\bob\\.*$", all_values=True),
                                       wild(r"(?s)^a\*b.\?.*$"), wild(r"(?s)^.*$", negated=True)])
def test_wildcards_select_like_the_evaluator(predicate):
    from rmmc.compiler.evaluator import evaluate_predicate

    text = where(predicate)
    for value in ESQL_VALUES + ["a*bx?", "A*B\n?tail", "axbx?", "a*b?"]:
        event = {} if value is None else {"RemoteUrl": value}
        assert like_select(text, value) == evaluate_predicate(predicate, event), (text, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(alphabet="aB\\*?.$ \n\"", min_size=1, max_size=2),
                          st.sampled_from([MULTI, SINGLE])), min_size=1, max_size=5),
       st.one_of(st.none(), st.text(alphabet="aAbB\\*?.$ \n\"", max_size=6)), st.booleans(), st.booleans())
def test_random_wildcards_agree_with_evaluator(parts, value, cased, negated):
    """(A value ending in a line break is left out: the evaluator's `$` also matches before
    it, a wildcard does not; see `rmmc.backends.base.wildcard_pattern`.)"""
    from rmmc.compiler.evaluator import evaluate_predicate

    if value is not None and value.endswith("\n"):
        return
    predicate = wild(wildcard_regex(parts), case_sensitive=cased, negated=negated)
    event = {} if value is None else {"RemoteUrl": value}
    assert like_select(where(predicate), value) == evaluate_predicate(predicate, event)
