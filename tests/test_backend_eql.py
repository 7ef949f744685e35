"""The EQL backend: every query parses with the `eql` package (Elasticsearch syntax), its
matches agree with the reference evaluator where that package's semantics allow, goldens
for the seed rules (checked by hand), hostile values, and the diagnostics.

Where the `eql` package (1.0.x) differs from Elasticsearch, and so from what we emit for:

* it compares case-insensitively everywhere (`==`, `like`, `regex`, `in`): the agreement
  test draws only case-insensitive predicates; cased ones are checked on their text;
* it anchors regexes only at the start (`re.match`), where Lucene matches the whole value:
  regex tests (`has`, `matches regex`, and patterns holding `*` / `?`) are checked by
  running the emitted Lucene regex with `re.fullmatch` (DOTALL: Lucene's `.` matches any
  character) instead of through the package;
* its unescaping of `\\u{..}` is greedy, so a string with two such escapes fails to parse
  there: hostile values carry at most one character written as `\\u{..}`.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

eql = pytest.importorskip("eql")
from eql.parser import elasticsearch_syntax, ignore_missing_functions, parse_query, skip_optimizations  # noqa: E402

from rmmc.backends.base import EmitOptions  # noqa: E402
from rmmc.backends.eql import (emit_eql, field_name, re2_to_lucene,  # noqa: E402
                               term_regex, Refusal)
from rmmc.compiler.evaluator import evaluate, term_match  # noqa: E402
from rmmc.compiler.ir import (And, Const, EventKind, Field, InSubquery, Metadata, Not, Op, Or,  # noqa: E402
                              Predicate, Rule, Source)


class StandIn:
    """A stand-in field profile (the real ones are another module's; goldens stay fixed)."""

    MAP = {"RemoteUrl": "url.original", "InitiatingProcessFileName": "process.name",
           "InitiatingProcessVersionInfoCompanyName": "process.pe.company",
           "InitiatingProcessVersionInfoProductName": "process.pe.product",
           "InitiatingProcessAccountName": "user.name", "A": "a", "B": "b", "N": "n"}

    def field(self, table, column):
        return self.MAP.get(column)


PROFILE = StandIn()


def parse(text: str):
    # the package's optimizer is not Elasticsearch's and is wrong here: it folds
    # `n == 1 or n == 1 or n >= -1` into `n in (1, -1)` (rmmc.verify.eql_elastic skips it too)
    with elasticsearch_syntax, ignore_missing_functions, skip_optimizations:
        return parse_query(text)


def nest(event: dict) -> dict:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}`: the package reads dotted names as paths."""
    out: dict = {}
    for key, value in event.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def run(text: str, events: list[dict]) -> list[int]:
    """Indexes of the events the `eql` package's engine selects."""
    events = [nest(e) for e in events]
    query = parse(text)
    out: list[int] = []
    engine = eql.PythonEngine()
    engine.add_query(query)
    engine.add_output_hook(lambda result: out.extend(e.data["__i"] for e in result.events))
    category = text.split()[0] if text.split()[0] != "any" else "process"
    engine.stream_events([eql.Event(category, 0, {**e, "__i": i}) for i, e in enumerate(events)])
    return sorted(out)


def rule_of(condition, kind=EventKind.PROCESS, **kw) -> Rule:
    return Rule(Metadata(title="t"), Source("DeviceProcessEvents", kind), condition, **kw)


def emit(condition, **kw):
    """The exact test alone: the index prefilter (`eql.with_prefilter`, implied by the test) is
    left out here; the goldens below and tests/test_prefilter.py have it."""
    from unittest import mock

    with mock.patch("rmmc.backends.eql.with_prefilter", lambda c: c):
        return emit_eql(rule_of(condition), fields=PROFILE, **kw)


def seed(path: str) -> Rule:
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document

    return compile_document(read_path(path).documents[0]).rule


# ------------------------------------------------------------------ goldens (checked by hand)


REMOTEPC = (
    'network where url.original like~ "*remotepc.com*" and process.pe.company like~ "*idrive*"'
    ' and process.pe.product like~ ("*remotepc*", "*viewer*", "*remotedesktop*")'
    ' and url.original regex~ "(remotepc\\\\.com|.*[^0-9A-Za-z]remotepc\\\\.com)([^0-9A-Za-z].*)?"'
    ' and process.pe.company regex~ "(idrive|.*[^0-9A-Za-z]idrive)([^0-9A-Za-z].*)?"'
    ' and (process.pe.product regex~ "(remotepc|.*[^0-9A-Za-z]remotepc)([^0-9A-Za-z].*)?"'
    ' or process.pe.product regex~ "(viewer|.*[^0-9A-Za-z]viewer)([^0-9A-Za-z].*)?"'
    ' or process.pe.product regex~ "(remotedesktop|.*[^0-9A-Za-z]remotedesktop)([^0-9A-Za-z].*)?")'
)
DISTANT = (
    'network where url.original like~ ("*distantdesktop.com*", "*signalserver.xyz*")'
    ' and process.pe.company like~ "*distant software*" and process.pe.product like~ "*distant desktop*"'
    ' and (url.original regex~ "(distantdesktop\\\\.com|.*[^0-9A-Za-z]distantdesktop\\\\.com)([^0-9A-Za-z].*)?"'
    ' or url.original regex~ "(signalserver\\\\.xyz|.*[^0-9A-Za-z]signalserver\\\\.xyz)([^0-9A-Za-z].*)?")'
    ' and process.pe.company regex~ "(Distant Software|.*[^0-9A-Za-z]Distant Software)([^0-9A-Za-z].*)?"'
    ' and process.pe.product regex~ "(Distant Desktop|.*[^0-9A-Za-z]Distant Desktop)([^0-9A-Za-z].*)?"'
)


def test_golden_remotepc():
    t = emit_eql(seed("rules/rmm_remotepc_netconn.txt"), fields=PROFILE)
    assert t.ok and t.text == REMOTEPC
    parse(t.text)
    codes = [(d.code, d.message) for d in t.diagnostics]
    assert any(c == "shape" and "summarize" in m and "one row per group" in m for c, m in codes)
    assert any(c == "note" and "now-5d" in m for c, m in codes)
    notes = [m for c, m in codes if c == "note" and "exclusion" in m]
    assert len(notes) == 5
    assert 'and ((process.name == null or not process.name : "schtasks.exe") and ' in notes[0]


def test_golden_remotepc_with_exclusions():
    t = emit_eql(seed("rules/rmm_remotepc_netconn.txt"), EmitOptions(apply_exclusions=True), fields=PROFILE)
    assert t.ok
    assert t.text.startswith(REMOTEPC + ' and (process.name == null or not process.name : "schtasks.exe")')
    assert t.text.endswith(' and (user.name == null or not user.name : "support_user")')
    parse(t.text)
    # an excluded process no longer matches; one without a process name still does (KQL: '')
    base = {"url.original": "https://www.remotepc.com/x", "process.pe.company": "IDrive Inc.",
            "process.pe.product": "RemotePC Viewer"}
    assert run(t.text, [base, {**base, "process.name": "SCHTASKS.exe"}, {**base, "process.name": "x.exe"}]) == [0, 2]


def test_golden_distantdesktop():
    t = emit_eql(seed("rules/rmm_distantdesktop_netconn.txt"), fields=PROFILE)
    assert t.ok and t.text == DISTANT
    parse(t.text)
    t = emit_eql(seed("rules/rmm_distantdesktop_netconn.txt"), EmitOptions(apply_exclusions=True), fields=PROFILE)
    assert t.text == DISTANT  # no exclusion was understood: each is reported lossy
    assert sum(d.code == "lossy" and "not understood" in d.message for d in t.diagnostics) == 5


def test_seed_term_regexes_select_as_kql_has():
    rule = seed("rules/rmm_remotepc_netconn.txt")
    pattern = term_regex("remotepc.com")
    for url, hit in [("remotepc.com", True), ("https://www.remotepc.com/x", True), ("a_remotepc.com", True),
                     ("notremotepc.com", False), ("remotepc.community", False), ("REMOTEPC.COM:443", True),
                     ("remotepcxcom", False), ("", False)]:
        assert bool(re.fullmatch(pattern, url, re.I | re.S)) is hit, url
        assert term_match(url.lower(), "remotepc.com") is hit
    assert rule.condition is not None


def test_pysigma_elasticsearch_eql_comparison():
    """pySigma's EQL backend, given our Sigma for the seed rule, writes `(?i)`, `^` and `$`
    inside `regex~`: Lucene has none of them (and anchors the whole value), so that query
    matches nothing useful.  Ours writes the whole-value Lucene form."""
    from sigma.backends.elasticsearch import EqlBackend
    from sigma.collection import SigmaCollection

    from rmmc.backends.sigma.backend import emit_sigma

    sigma = emit_sigma(seed("rules/rmm_remotepc_netconn.txt")).text
    theirs = EqlBackend().convert(SigmaCollection.from_yaml(sigma))[0]
    assert 'regex~ "(?i)(^|[^0-9A-Za-z])remotepc\\\\.com($|[^0-9A-Za-z])"' in theirs
    ours = emit_eql(seed("rules/rmm_remotepc_netconn.txt"), fields=PROFILE).text
    assert "(?i)" not in ours and "^|" not in ours and "$|" not in ours
    assert ours == REMOTEPC


def test_real_ecs_profile_when_present():
    profiles = pytest.importorskip("rmmc.compiler.schema.profiles")
    t = emit_eql(seed("rules/rmm_remotepc_netconn.txt"))
    parse(t.text)
    assert t.text.startswith("network where ")
    assert profiles.load_profile("ecs").field("DeviceNetworkEvents", "InitiatingProcessFileName") == "process.name"


# ------------------------------------------------------------------ structure and diagnostics


def p(name="A", op=Op.EQUALS, values=("x",), **kw):
    return Predicate(Field(name, kw.pop("type", "string")), op, tuple(values), **kw)


@pytest.mark.parametrize("kind,category", [(EventKind.NETWORK, "network"), (EventKind.PROCESS, "process"),
                                           (EventKind.FILE, "file"), (EventKind.REGISTRY, "registry"),
                                           (EventKind.IMAGE_LOAD, "library"), (EventKind.UNKNOWN, "any")])
def test_categories(kind, category):
    t = emit_eql(rule_of(p(), kind), fields=PROFILE)
    assert t.text == f'{category} where a : "x"'
    parse(t.text)


@pytest.mark.parametrize("predicate,text", [
    (p(), 'a : "x"'),
    (p(case_sensitive=True), 'a == "x"'),
    (p(values=("x", "y")), 'a in~ ("x", "y")'),
    (p(values=("x", "y"), case_sensitive=True), 'a in ("x", "y")'),
    (p(values=("x*",)), 'a in~ ("x*")'),  # `:` would read the * as a wildcard
    (p(op=Op.CONTAINS), 'a like~ "*x*"'),
    (p(op=Op.STARTSWITH, case_sensitive=True), 'a like "x*"'),
    (p(op=Op.ENDSWITH, values=("x", "y")), 'a like~ ("*x", "*y")'),
    (p(op=Op.CONTAINS, values=("a*b?",)), 'a regex~ ".*a\\\\*b\\\\?.*"'),  # no escape for * ? in like
    (p(op=Op.CONTAINS, negated=True), 'a == null or not a like~ "*x*"'),
    (p(op=Op.TERM, values=("-x",)), 'a regex~ ".*-x([^0-9A-Za-z].*)?"'),  # no boundary before -
    (p(op=Op.TERM_PREFIX, values=("ab",)), 'a regex~ "(ab|.*[^0-9A-Za-z]ab).*"'),
    (p(op=Op.TERM_SUFFIX, values=("ab",), case_sensitive=True), 'a regex ".*ab([^0-9A-Za-z].*)?"'),
    (p(op=Op.REGEX, values=(r"\d+\.exe",)), 'a regex~ ".*([0-9]+\\\\.exe).*"'),
    (p(op=Op.EMPTY, values=()), 'a == null or a == ""'),
    (p(op=Op.EXISTS, values=(), negated=True), "a == null"),
    (p("N", Op.LT, (5,), type="long"), "n < 5"),
    (p("N", Op.LT, (5,), type="long", negated=True), "n >= 5"),
    (p("N", Op.BETWEEN, (1, 9), type="long", negated=True), "n < 1 or n > 9"),
    (p("N", Op.EQUALS, (5,), type="long", negated=True), "n == null or n != 5"),
])
def test_predicates(predicate, text):
    t = emit(predicate)
    assert t.ok and t.text == f"process where {text}", t.text
    parse(t.text)


def test_missing_field_reads_as_empty_string():
    """KQL: a missing string is '' so `A !contains "x"` holds; EQL: `not a like~ "*x*"` is
    not true on a missing field (null), hence the `a == null or` guard."""
    t = emit(p(op=Op.CONTAINS, negated=True))
    events = [{}, {"a": "x"}, {"a": "y"}, {"a": ""}]
    assert run(t.text, events) == [0, 2, 3]
    assert run('process where not a like~ "*x*"', events) == [2, 3]  # unguarded: loses event 0
    # '' passing a negated test is guarded the other way: `not (A == "")` is false on missing
    t = emit(p(values=("",), negated=True))
    assert t.text == 'process where a != null and not a : ""'
    assert run(t.text, events) == [1, 2]


def test_not_is_pushed_to_predicates():
    t = emit(Not(Or((p(), p("B", Op.CONTAINS, ("y",))))))
    assert t.text == 'process where (a == null or not a : "x") and (b == null or not b like~ "*y*")'


def test_unmapped_column_warns_and_passes_through():
    t = emit(p("Weird-Col"))
    assert t.text == 'process where `Weird-Col` : "x"'
    assert any(d.code == "lossy" and "Weird-Col" in d.message for d in t.diagnostics)
    parse(t.text)


def test_missing_profile_is_reported():
    t = emit_eql(rule_of(p()), fields="no-such-profile")
    assert t.text == 'process where A : "x"'
    assert any("no-such-profile" in d.message for d in t.diagnostics)


def test_subquery_is_widened():
    sub = InSubquery(Field("A"), "T | project x", "T")
    t = emit(And((p("B"), sub)))
    assert t.text == 'process where b : "x"'
    assert any(d.code == "lossy" and "T | project x" in d.message for d in t.diagnostics)
    t = emit(And((p("B"), Not(sub))))
    assert t.text == 'process where b : "x"'


def test_constants_and_unsupported():
    assert emit(Const(True)).text == "process where true"
    t = emit(p(op=Op.REGEX, values=(r"\bx",)))
    assert not t.ok and t.text == "" and any(d.code == "unsupported" for d in t.diagnostics)
    t = emit(p("N", Op.LT, ("2024-01-01",), type="datetime"))
    assert not t.ok


@pytest.mark.parametrize("pattern", [r"^a", r"a$", r"\bx", r"(?i)a", r"a(?=b)", r"a*?", r"a+?", r"\1",
                                     r"\pL", r"(a", r"a)", r"[[:alpha:]]", r"\Z", r"a{2}?"])
def test_regex_refusals(pattern):
    with pytest.raises(Refusal):
        re2_to_lucene(pattern)


@pytest.mark.parametrize("pattern,lucene", [
    (r"\d{2,}x", ".*([0-9]{2,}x).*"),
    (r"a.b", ".*(a[^\n]b).*"),
    (r"(?:ab|c)\w", ".*((ab|c)[0-9A-Za-z_]).*"),
    (r"[a-c\d\]]@", ".*([a-c0-9\\]]\\@).*"),
    (r'x"#<', '.*(x\\"\\#\\<).*'),
])
def test_regex_translations(pattern, lucene):
    assert re2_to_lucene(pattern) == lucene


@given(st.sampled_from([r"\d+", r"a.c", r"(?:ab|c)+d", r"[a-c]{2}", r"\s\S", r"x|y\.", r"[^a]b", r"\W"]),
       st.text(alphabet="abcdxy.1 \n_-", max_size=8))
def test_regex_search_agrees(pattern, value):
    lucene = re2_to_lucene(pattern)
    assert bool(re.fullmatch(lucene, value, re.S)) == bool(re.search(pattern, value))


# ------------------------------------------------------------------ literals and hostile values


HOSTILE = st.text(alphabet=st.sampled_from(list('ab"\\`*?()\n\r\t ') + ["\x00", "\x1b", "\u2028", "é"]),
                  max_size=12).filter(lambda v: sum(c in "\x00\x1b\u2028" for c in v) <= 1)


@given(HOSTILE)
def test_hostile_values_stay_literals(value):
    t = emit(p(values=(value,), case_sensitive=True))
    assert t.text.startswith("process where ")
    if value == "":  # '' also stands for a missing field
        assert t.text == 'process where a == null or a == ""'
        return
    query = parse(t.text).first.query
    assert query.right.value == value  # parsed back: one comparison, the same literal
    assert "\n" not in t.text and "\r" not in t.text


@given(st.text(alphabet=st.sampled_from(list('ab"\\`*?()\n\r\t .#@&<>~[]{}|+é')), max_size=12))
def test_hostile_regex_values_stay_literals(value):
    """(The term regex holds the value twice: no `\\u{..}` characters, see the docstring.)"""
    t = emit(p(op=Op.TERM, values=(value,)))
    call = parse(t.text).first.query
    if value == "":  # `has ''` holds on every string, '' included: a missing field too
        assert t.text == 'process where a == null or a regex~ ".*.*"'
        return
    assert call.arguments[1].value == term_regex(value)


def test_field_names():
    assert field_name("process.name") == "process.name"
    assert field_name("a b") == "`a b`"
    assert field_name("where") == "`where`"
    with pytest.raises(Refusal):
        field_name("a`b")


# ------------------------------------------------------------------ agreement with the evaluator


LIKE_VALUES = st.text(alphabet="aAb. -_1", max_size=3)
FIELDS = ["A", "B"]
EVENT_VALUE = st.one_of(st.none(), st.text(alphabet="aAb. -_1x", max_size=5))


def like_predicates():
    """Case-insensitive tests the package evaluates as Elasticsearch does (see the module
    docstring): equality, contains/startswith/endswith without * or ?, empty, exists."""
    ops = st.sampled_from([Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH])
    string = st.builds(lambda f, op, vs, all_, neg: Predicate(Field(f), op, tuple(vs), all_, False, neg),
                       st.sampled_from(FIELDS), ops, st.lists(LIKE_VALUES, min_size=1, max_size=3),
                       st.booleans(), st.booleans())
    special = st.builds(lambda f, op, neg: Predicate(Field(f), op, (), negated=neg),
                        st.sampled_from(FIELDS), st.sampled_from([Op.EMPTY, Op.EXISTS]), st.booleans())
    numeric = st.builds(lambda op, v, neg: Predicate(Field("N", "long"), op, (v,), negated=neg),
                        st.sampled_from([Op.LT, Op.GE, Op.EQUALS]), st.integers(-2, 2), st.booleans())
    return st.one_of(string, special, numeric)


CONDITIONS = st.recursive(like_predicates(),
                          lambda inner: st.one_of(st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
                                                  st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
                                                  st.builds(Not, inner)),
                          max_leaves=6)
EVENTS = st.lists(st.fixed_dictionaries({"A": EVENT_VALUE, "B": EVENT_VALUE,
                                         "N": st.one_of(st.none(), st.integers(-2, 2))}), min_size=1, max_size=6)


def as_eql_event(event: dict) -> dict:
    return {PROFILE.MAP[k]: v for k, v in event.items() if v is not None}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONDITIONS, EVENTS)
def test_matches_agree_with_evaluator(condition, events):
    t = emit(condition)
    assert t.ok, t.diagnostics
    expected = [i for i, e in enumerate(events)
                if evaluate(condition, {k: v for k, v in e.items() if v is not None}) is True]
    assert run(t.text, [as_eql_event(e) for e in events]) == expected, t.text


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.EQUALS]),
       st.text(alphabet="aAb.*?-1 \"\\", min_size=1, max_size=4),
       st.text(alphabet="aAb.*?-1x \"\\\n", max_size=8), st.booleans())
def test_regex_forms_agree_with_evaluator(op, needle, value, cased):
    """Tests written as a Lucene regex: the regex the package parsed, run whole-value."""
    predicate = Predicate(Field("A"), op, (needle,), case_sensitive=cased)
    t = emit(predicate)
    query = parse(t.text).first.query
    if getattr(query, "name", None) != "match":
        return  # written as a wildcard or equality: covered by the agreement test above
    pattern = query.arguments[1].value
    got = bool(re.fullmatch(pattern, value, re.S | (0 if cased else re.I)))
    assert got == evaluate(predicate, {"A": value}), (t.text, value)


# ------------------------------------------------------------------ CIDR (Op.CIDR)

CIDR_EVENTS = [{"ip": "10.1.2.3"}, {"ip": "11.0.0.1"}, {"ip": "fe80::1"}, {"ip": "2001:db8::1"}, {}]


def _ip(*networks, **kw) -> Predicate:
    return Predicate(Field("IP"), Op.CIDR, networks, **kw)


class _IpProfile(StandIn):
    MAP = {**StandIn.MAP, "IP": "ip"}


@pytest.mark.parametrize("condition", [
    _ip("10.0.0.0/8", "fe80::/10"),
    _ip("10.0.0.0/8", "fe80::/10", negated=True),
    _ip("10.0.0.0/8", "10.1.0.0/16", all_values=True),
    _ip("10.0.0.0/8", "10.1.0.0/16", all_values=True, negated=True),
    _ip("10.1.2.3/8"),
])
def test_cidr_runs_like_the_evaluator(condition):
    """The eql package's engine over addresses and a missing field.  (Its cidrMatch raises on
    a text that is no address, which Elasticsearch never hands it: an `ip` field holds none.)"""
    t = emit_eql(rule_of(condition), fields=_IpProfile())
    assert t.ok and "cidrMatch(ip, " in t.text, t
    expected = [i for i, e in enumerate(CIDR_EVENTS)
                if evaluate(condition, {"IP": e.get("ip")}) is True]
    assert run(t.text, CIDR_EVENTS) == expected, t.text


def test_cidr_text():
    t = emit_eql(rule_of(_ip("10.1.2.3/8", "fe80::/10", negated=True)), fields=_IpProfile())
    assert t.text == 'process where ip == null or not cidrMatch(ip, "10.0.0.0/8", "fe80::/10")'
    t = emit_eql(rule_of(_ip("::/0")), fields=_IpProfile())
    assert any(d.code == "lossy" and "::ffff:0:0/96" in d.message for d in t.diagnostics)
    assert not emit_eql(rule_of(_ip("nonsense")), fields=_IpProfile()).ok


# ------------------------------------------------------------------ Sigma wildcard values (Op.REGEX)


from rmmc.backends.base import Wildcard, wildcard_pattern  # noqa: E402
from rmmc.compiler.sigma.predicates import wildcard_regex  # noqa: E402
from rmmc.compiler.sigma.values import MULTI, SINGLE  # noqa: E402

ANY, ONE = Wildcard.ANY, Wildcard.ONE
APPDATA = r"(?s)^C:\\Users\\.*\\AppData\\x.\.exe$"  # what the Sigma reader writes for C:\Users\*\AppData\x?.exe


def wild(*values, **kw) -> Predicate:
    return Predicate(Field("A"), Op.REGEX, values, **kw)


@pytest.mark.parametrize("regex,pattern", [
    (APPDATA, ("C:\\Users\\", ANY, "\\AppData\\x", ONE, ".exe")),
    (r"(?s)^a.*b$", ("a", ANY, "b")),
    (r"(?s)^..*.$", (ONE, ANY, ONE)),
    (r"(?s)^.*.$", (ANY, ONE)),
    (r"(?s)^a\*b\?c\\d\$\^\|\(\)\[\]\{\}\+\..*$", ("a*b?c\\d$^|()[]{}+.", ANY)),
    ("(?s)^a\nb .*# -/$", ("a\nb ", ANY, "# -/")),
    (r"(?s)^$", ()),
    (r"(?s)^\\$", ("\\",)),
])
def test_wildcard_pattern_reads_the_form(regex, pattern):
    assert wildcard_pattern(regex) == pattern


@pytest.mark.parametrize("regex", [
    r"(?s)^a+$", r"^a.*$", r"(?s)a.*$", r"(?s)^a.*", r"(?si)^a.*$", r"(?i)^a.*$", r"(?s)^a\$",
    r"(?s)^a|b$", r"(?s)^(a).*$", r"(?s)^[ab].*$", r"(?s)^a.*?$", r"(?s)^a.+$", r"(?s)^a{2}.*$",
    r"(?s)^a\d.*$", r"(?s)^a\-.*$", r"(?s)^a\b.*$", r"(?s)^^a$", r"(?s)^a$$", r"(?s)^a.**$",
    r"(?s)^a?$", r"(?s)^a*$", "(?s)^a\\", "", "(?s)^", r".*(?s)^a$", r"(?s)^a$ ",
])
def test_wildcard_pattern_rejects_everything_else(regex):
    assert wildcard_pattern(regex) is None


@given(st.lists(st.one_of(st.text(alphabet='ab\\.*?$^()[]{}|+\n é', min_size=1, max_size=3),
                          st.sampled_from([MULTI, SINGLE])), max_size=6))
def test_wildcard_pattern_inverts_the_sigma_reader(parts):
    """Whatever the reader writes, read back: the same parts (adjacent literals joined)."""
    expected: list = []
    for part in parts:
        if isinstance(part, str) and expected and isinstance(expected[-1], str):
            expected[-1] += part
        else:
            expected.append(part if isinstance(part, str) else Wildcard(part.char))
    assert wildcard_pattern(wildcard_regex(parts)) == tuple(expected)


@pytest.mark.parametrize("predicate,text", [
    (wild(APPDATA), 'a like~ "C:\\\\Users\\\\*\\\\AppData\\\\x?.exe"'),
    (wild(APPDATA, case_sensitive=True), 'a like "C:\\\\Users\\\\*\\\\AppData\\\\x?.exe"'),
    (wild(r"(?s)^a.*b$", r"(?s)^c.d$"), 'a like~ ("a*b", "c?d")'),
    (wild(r"(?s)^a.*b$", r"(?s)^c.d$", all_values=True), 'a like~ "a*b" and a like~ "c?d"'),
    (wild(APPDATA, negated=True), 'a == null or not a like~ "C:\\\\Users\\\\*\\\\AppData\\\\x?.exe"'),
    (wild(r"(?s)^a.*b$", r"(?s)^c.d$", negated=True, case_sensitive=True),
     'a == null or not a like ("a*b", "c?d")'),
    (wild(r"(?s)^.*$"), 'a == null or a like~ "*"'),           # '' passes: so does a missing field
    (wild(r"(?s)^.*$", negated=True), 'a != null and not a like~ "*"'),
    # a literal * or ? has no escape in an EQL wildcard: the same pattern as a Lucene regex
    (wild(r"(?s)^a\*b.*c.$"), 'a regex~ "a\\\\*b.*c."'),
    (wild(r"(?s)^a\?.*$", r"(?s)^x.*y$"), 'a like~ "x*y" or a regex~ "a\\\\?.*"'),
    (wild("(?s)^a\x01.*$"), 'a regex~ "a\\u{01}.*"'),  # U+0001 is Elasticsearch's LIKE escape
    # any other regex: as before
    (wild(r"\d+\.exe"), 'a regex~ ".*([0-9]+\\\\.exe).*"'),
])
def test_wildcard_regex_text(predicate, text):
    t = emit(predicate)
    assert t.ok and t.text == f"process where {text}", t.text
    parse(t.text)


def test_non_wildcard_regexes_are_still_refused():
    for regex in (r"(?s)^a+$", r"^a.*$", r"(?s)^a.*?$"):
        t = emit(wild(regex))
        assert not t.ok and any(d.code == "unsupported" for d in t.diagnostics), regex


# Elasticsearch's reading of `like` and `regex` (the package's parser, Elastic's semantics), as
# `rmmc verify` uses it.
from rmmc.verify.eql_elastic import select as run_elastic  # noqa: E402


APPDATA_EVENTS = [
    {"a": "C:\\Users\\bob\\AppData\\x1.exe"},
    {"a": "c:\\users\\BOB\\appdata\\X1.EXE"},          # other case
    {"a": "C:\\Users\\b\no\nb\\AppData\\x1.exe"},      # line breaks inside the * run
    {"a": "C:\\Users\\bob\\AppData\\x\n.exe"},          # a line break as the ? character
    {},                                                  # missing field
    {"a": ""},
    {"a": "C:\\Users\\bob\\AppData\\x12.exe"},          # ? is exactly one character
    {"a": "C:\\Users\\bob\\AppData\\x.exe"},
    {"a": "C:\\Users\\*\\AppData\\x?.exe"},             # the pattern's own text
    {"a": "D:\\C:\\Users\\bob\\AppData\\x1.exe"},       # anchored at the start
    {"a": "C:\\Users\\bob\\AppData\\x1.exe.bak"},       # ... and at the end
    {"a": "C:/Users/bob/AppData/x1.exe"},
]


def _expected(predicate: Predicate, events: list[dict]) -> list[int]:
    return [i for i, e in enumerate(events) if evaluate(predicate, {"A": e["a"]} if "a" in e else {}) is True]


@pytest.mark.parametrize("predicate", [wild(APPDATA), wild(APPDATA, negated=True),
                                       wild(APPDATA, r"(?s)^.*\\bob\\.*$"),
                                       wild(APPDATA, r"(?s)^.*\\bob\\.*$", negated=True),
                                       wild(APPDATA, r"(?s)^.*\\bob\\.*$", all_values=True),
                                       wild(r"(?s)^.*$"), wild(r"(?s)^.*$", negated=True), wild(r"(?s)^.$")])
def test_wildcards_run_like_the_evaluator(predicate):
    t = emit(predicate)
    assert t.ok and " like~ " in t.text, t.text
    expected = _expected(predicate, APPDATA_EVENTS)
    assert run_elastic(t.text, APPDATA_EVENTS) == expected, t.text


def test_literal_wildcard_characters_run_like_the_evaluator():
    """Sigma `a\\*b?\\?*` (a literal * and ?): a Lucene regex, run whole-value as Elasticsearch does."""
    predicate = wild(r"(?s)^a\*b.\?.*$")
    t = emit(predicate)
    assert t.text == 'process where a regex~ "a\\\\*b.\\\\?.*"'
    pattern = parse(t.text).first.query.arguments[1].value
    for value in ["a*bx?", "A*BX?tail", "a*b\n?\nmore", "axbx?", "a*bx", "a*b?", "a*bxy?", "", "a*b??"]:
        assert bool(re.fullmatch(pattern, value, re.S | re.I)) == evaluate(predicate, {"A": value}), value


def test_a_final_line_break_reads_alike_in_the_evaluator_and_like():
    """`$` is RE2's (the very end: the evaluator rewrites it for Python's `re`, where `$` also
    matches before a final line break), so a value ending in a line break is not matched by
    `(?s)^...$`, as the wildcard (Sigma's meaning, Elasticsearch's `like`) does not match it."""
    predicate = wild(APPDATA)
    value = "C:\\Users\\bob\\AppData\\x1.exe\n"
    assert evaluate(predicate, {"A": value}) is False
    assert run_elastic(emit(predicate).text, [{"a": value}]) == []
    assert run_elastic(emit(predicate).text, [{"a": value[:-1]}]) == [0]


PATTERN_PARTS = st.lists(st.one_of(st.text(alphabet="aB\\.$ \n", min_size=1, max_size=2),
                                   st.sampled_from([MULTI, SINGLE])), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PATTERN_PARTS, st.lists(st.one_of(st.none(), st.text(alphabet="aAbB\\.$ \n", max_size=6)),
                               min_size=1, max_size=5), st.booleans())
def test_random_wildcards_agree_with_evaluator(parts, values, negated):
    predicate = wild(wildcard_regex(parts), negated=negated)
    events = [{} if v is None else {"a": v} for v in values]
    t = emit(predicate)
    assert t.ok and " like~ " in t.text, t.text
    assert run_elastic(t.text, events) == _expected(predicate, events), t.text
