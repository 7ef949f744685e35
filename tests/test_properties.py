"""The seven properties: every translation of a rule means what the rule means.

Rules and events come from tests/strategies.py (hostile needles, every operator, nested and /
or / not, case flags; events on the needles' boundaries).  The reference is always
`rmmc.compiler.evaluator`:

1. `parse_kql(emit_kql(r))`, lowered back to the IR, evaluates like `r`;
2. `read_sigma_rules(emit_sigma(r))` evaluates like `r` (exact mode);
3. `r`'s Sigma, converted by pySigma's sqlite backend and run on a real SQLite database, selects
   the evaluator's events;
4. `r`'s KQL, run by duckdb-kql (missing strings loaded as ''), selects them too, and
   `summarize count() by X` gives the evaluator's groups and counts;
5. `r`'s EQL, parsed by the `eql` package and run with Elasticsearch's documented semantics
   (`rmmc.verify.eql_elastic`), selects them, cased tests included;
6. `r`'s SPL, run by tests/spl_interp.py (Splunk's documented search and eval semantics, PCRE2),
   selects them;
7. `r`'s ES|QL, run by tests/esql_interp.py (ES|QL's documented semantics, Lucene regexes),
   selects them.

Before the random cases each property runs the fixed boundary cases of tests/boundaries.py.

A translation the backend refused (an `unsupported` error) is skipped with `assume`, and only
then; a translation it flagged as approximate (`lossy`) may differ from the evaluator, but only
on events where the part each lossy diagnostic names (`Diagnostic.subject`: a predicate, a
field, a stage) decides the verdict (`judge`).  `hypothesis.event` records each skip, so
`pytest --hypothesis-show-statistics` shows how often they happen.

The example budget is the profile's (tests/conftest.py): "ci" / "dev" for the suite, "long"
for `make verify-long`.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from rmmc.backends.base import EmitOptions, Translation
from rmmc.backends.eql import emit_eql
from rmmc.backends.kql import emit_kql
from rmmc.backends.sigma.backend import emit_sigma
from rmmc.compiler import evaluator
from rmmc.compiler.ir import Aggregate, Field, Metadata, Op, Rule, Source, Summarize, walk_predicates
from rmmc.compiler.kql.parser import parse_kql
from rmmc.compiler.kql.lower import lower_query
from rmmc.compiler.schema import load_schema

from boundaries import boundary_examples
from strategies import ENGINE, FULL, Alphabet, cases, table_of

Events = list[dict[str, Any]]

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def rule_metadata() -> Metadata:
    return Metadata(title="Property rule", description="A fixed rule.")


def has_op(rule: Rule, op: Op) -> bool:
    return any(p.op is op for p in walk_predicates(rule.condition))


def refused(t: Translation) -> bool:
    """Whether the backend refused the rule: then, and only then, the example is skipped."""
    errors = [d for d in t.diagnostics if d.is_error]
    for d in errors:
        event(f"{t.target}: refused: {_shape(d.message)}")
    return bool(errors) or not t.text


def _shape(message: str) -> str:
    """A message without its values (for hypothesis' statistics)."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", message)
    return re.sub(r"\b[A-Z][a-z]+[A-Z]\w*\b", "<column>", message)[:100]


def _forced(condition: Any, event: dict[str, Any], forced: list[tuple[Any, bool | None]]) -> bool | None:
    """The condition's three-valued verdict on the event with every occurrence of each forced
    node (a predicate or subquery) read as the value given with it."""
    from rmmc.compiler.ir import And, Not, Or

    for node, value in forced:
        if condition == node:
            return value
    if isinstance(condition, And):
        results = [_forced(c, event, forced) for c in condition.operands]
        return False if False in results else (None if None in results else True)
    if isinstance(condition, Or):
        results = [_forced(c, event, forced) for c in condition.operands]
        return True if True in results else (None if None in results else False)
    if isinstance(condition, Not):
        inner = _forced(condition.operand, event, forced)
        return None if inner is None else not inner
    return evaluator.evaluate(condition, event)


_JOINT_NODES = 6
"""Up to this many nodes named lossy are forced in every combination (3^6 verdicts); more are
forced one at a time (the others read as they are) and all alike."""


def _lossy_nodes(subject: Any, rule: Rule) -> list[Any]:
    """The condition's nodes a lossy diagnostic's subject names: a `Field` stands for every test
    of it; a stage ("output", "lookback", ...) or no subject names none."""
    from rmmc.compiler.ir import Field, walk

    if isinstance(subject, Field):
        return [n for n in walk(rule.condition) if getattr(n, "field", None) is not None
                and n.field.name == subject.name]
    if subject is not None and not isinstance(subject, str):
        # a backend sees NOT pushed into predicates (`push_not`): the negated predicate it names
        # is the rule's Not(p), decided exactly when p is
        return [subject, subject.negate()] if hasattr(subject, "negate") else [subject]
    return []


def decides(subjects: list[Any], rule: Rule, event: dict[str, Any]) -> bool:
    """Whether the parts lossy diagnostics name (their `Diagnostic.subject`s) decide the rule's
    verdict on the event: reading those nodes as true, false or unknown, together (two lossy
    tests may change the verdict only jointly, as `not(isempty(a) and isempty(b))` does when
    both fields are present and empty), changes whether the rule matches."""
    nodes: list[Any] = []
    for subject in subjects:
        nodes.extend(n for n in _lossy_nodes(subject, rule) if n not in nodes)
    if not nodes:
        return False
    values = (True, False, None)
    if len(nodes) <= _JOINT_NODES:
        choices = (list(zip(nodes, choice)) for choice in itertools.product(values, repeat=len(nodes)))
    else:
        choices = itertools.chain(([(node, v)] for node in nodes for v in values),
                                  ([(node, v) for node in nodes] for v in values))
    verdicts = set()
    for forced in choices:
        verdicts.add(_forced(rule.condition, event, forced) is True)
        if len(verdicts) > 1:
            return True
    return False


def judge(t: Translation, rule: Rule, events: Events, got: list[int], expected: list[int]) -> None:
    """`got` must be `expected`, except on events where a part of the rule the backend reported
    lossy (a diagnostic whose subject is that part) decides the verdict."""
    if got == expected:
        return
    lossy = [d for d in t.diagnostics if d.code == "lossy"]
    differing = sorted(set(got) ^ set(expected))
    subjects = [d.subject for d in lossy]
    unexplained = [i for i in differing if not decides(subjects, rule, events[i])]
    if not unexplained:
        for d in lossy:
            event(f"{t.target}: differs where reported lossy: {_shape(d.message)}")
        return
    raise AssertionError(f"{t.target} selects {got}, the evaluator {expected}\n"
                         f"rule: {rule.condition}\ntext:\n{t.text}\n"
                         f"differing events no lossy diagnostic explains: {[events[i] for i in unexplained]}\n"
                         f"lossy: {[d.message for d in lossy]}")


def test_lossy_parts_explain_a_difference_they_make_only_together():
    """`not(isempty(a) and isempty(b))` (KQL's reading of "not (a and b both missing)") differs
    from the model only on an event where both fields are present and empty: each lossy test
    alone cannot flip the And, both together do, so the judge must force them jointly (found by
    HYPOTHESIS_SEED=956808076 on property 1)."""
    from rmmc.compiler.ir import And, Not, Predicate

    a, b = (Predicate(Field(name, "string"), Op.EXISTS, (), negated=True) for name in ("FileName", "AccountName"))
    rule = Rule(metadata=Metadata(title="t"), source=Source(table="DeviceProcessEvents"),
                condition=Not(And((a, b))))
    both_empty = {"FileName": "", "AccountName": ""}
    assert evaluator.evaluate(rule.condition, both_empty) is True
    assert not decides([a], rule, both_empty) and not decides([b], rule, both_empty)
    assert decides([a, b], rule, both_empty)
    assert not decides([], rule, both_empty)


# ------------------------------------------------------------------ 1. KQL round trip


@SETTINGS
@given(cases(alphabet=FULL))
# rmmc cannot lower the `coalesce(ipv4_is_in_range(...), false)` its KQL backend writes for
# CIDR (a gap of the round trip, not of the translation: property 4 runs it on duckdb-kql)
@boundary_examples(FULL, keep=lambda rule: not has_op(rule, Op.CIDR))
def test_property_1_kql_round_trip(case):
    rule, events = case
    t = emit_kql(rule)
    assume(not refused(t))
    note(t.text)
    lowered = lower_query(parse_kql(t.text))
    assert lowered.rule is not None, [d.message for d in lowered.diagnostics]
    back = lowered.rule
    assert back.source.table == rule.source.table
    note(f"lowered back: {back.condition}")
    judge(t, rule, events, evaluator.select(back, events), evaluator.select(rule, events))


# ------------------------------------------------------------------ 2. Sigma round trip


@SETTINGS
@given(cases(alphabet=FULL, cidr=True))
@boundary_examples(FULL)
def test_property_2_sigma_round_trip(case):
    sigma_reader = pytest.importorskip("rmmc.compiler.sigma", reason="Sigma reader not present")
    read_sigma_rules = getattr(sigma_reader, "read_sigma_rules", None)
    if read_sigma_rules is None:
        pytest.skip("Sigma reader not present")
    rule, events = case
    t = emit_sigma(rule, EmitOptions())
    assume(not refused(t))
    note(t.text)
    events, _ = in_sigma_convention(rule, events)
    read = read_sigma_rules(t.text, "<property>")
    assert read, t.text
    back, diagnostics = read[0]
    assert back is not None, (t.text, [d.message for d in diagnostics])
    assert not any(d.is_error for d in diagnostics), [d.message for d in diagnostics]
    assert back.source.table == rule.source.table, (back.source, rule.source)
    note(f"read back: {back.condition}")
    judge(t, rule, events, evaluator.select(back, events), evaluator.select(rule, events))


# ------------------------------------------------------------------ 3. pySigma's sqlite backend


def _regexp(pattern: str, value: Any) -> int | None:
    if value is None:
        return None
    return 1 if re.search(pattern, str(value)) else 0


_SQL_TYPES = {"string": "TEXT COLLATE NOCASE", "int": "INTEGER", "long": "INTEGER",
              "real": "REAL", "bool": "INTEGER"}


def in_sigma_convention(rule: Rule, events: Events) -> tuple[Events, Events]:
    """(the events put into the domain of the `sigma` environment's value conventions, the same
    events as Sigma holds them: Sigma's names, Sysmon's conventions).  The Sigma backend writes
    the rule in that environment (`rmmc.backends.sigma.backend.in_sigma`); its rewrites are exact over
    that domain (a file name is the end of its path, a user is DOMAIN\\name ...)."""
    from rmmc.environments import default_environment
    from rmmc.environments.adapt import adapt

    adapted = adapt(rule, default_environment("sigma"), allow_unknown_fields=True)
    normalized = [adapted.normalize(e) for e in events]
    return normalized, [adapted.target_event(e) for e in normalized]


def sqlite_select(table: str, sigma_text: str, events: Events) -> list[int]:
    """The first document of `sigma_text`, converted by pySigma's sqlite backend and run over
    `events`, which are keyed by Sigma field already (`in_sigma_convention`)."""
    import yaml
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    schema = load_schema().table(table)
    base = next(iter(yaml.safe_load_all(sigma_text)))
    text = yaml.safe_dump(base, sort_keys=False, allow_unicode=True)
    queries = sqliteBackend().convert(SigmaCollection.from_yaml(text))
    assert len(queries) == 1 and queries[0].startswith("SELECT * FROM logs WHERE "), queries
    columns = {(schema.sigma_field(c) or c): _SQL_TYPES[k] for c, k in schema.columns.items()
               if k in _SQL_TYPES}
    for e in events:
        for name, value in e.items():
            columns.setdefault(name, "INTEGER" if isinstance(value, int) else "TEXT COLLATE NOCASE")
    conn = sqlite3.connect(":memory:")
    try:
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        # SQLite folds ASCII letters only; Sigma's case-insensitive matching folds every letter:
        # verify's adapters, tested against SQLite's own answers on ASCII (tests/test_verify.py).
        from rmmc.verify.engines import sqlite_like, sqlite_nocase

        conn.create_collation("NOCASE", sqlite_nocase)
        conn.create_function("like", 2, sqlite_like, deterministic=True)
        conn.create_function("like", 3, sqlite_like, deterministic=True)
        spec = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        conn.execute(f"CREATE TABLE logs (rmmc_idx INTEGER, {spec})")
        names = list(columns)
        rows = []
        for i, e in enumerate(events):
            rows.append([i, *(e.get(n) for n in names)])
        conn.executemany(f"INSERT INTO logs VALUES ({', '.join('?' * (len(names) + 1))})", rows)
        query = queries[0].replace("SELECT *", "SELECT rmmc_idx", 1)
        return sorted(r[0] for r in conn.execute(query))
    finally:
        conn.close()


# The engine alphabet and cased non-ASCII letters (SQLite with verify's case adapters).
SQLITE_ALPHABET = Alphabet("sqlite", ENGINE.chars + "éÉßİǅ日")


@SETTINGS
@given(cases(alphabet=SQLITE_ALPHABET))
@boundary_examples(SQLITE_ALPHABET, keep=lambda rule: not has_op(rule, Op.CIDR))
def test_property_3_pysigma_sqlite(case):
    pytest.importorskip("sigma.backends.sqlite")
    rule, events = case
    events, shaped = in_sigma_convention(rule, events)
    expected = evaluator.select(rule, events)
    t = emit_sigma(rule)
    errors = [d.message for d in t.diagnostics if d.is_error]
    # A condition Sigma cannot hold because it is constant must really be constant.
    if any("matches no event" in m for m in errors):
        assert expected == [], errors
    if any("matches every event" in m for m in errors):
        assert expected == list(range(len(events))), errors
    assume(not refused(t))
    note(t.text)
    judge(t, rule, events, sqlite_select(rule.source.table, t.text, shaped), expected)


# ------------------------------------------------------------------ 4. duckdb-kql

_DUCK_TYPES = {"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT"}


_DUCK: dict[str, Any] = {}


@contextmanager
def duck_table(rule: Rule, events: Events) -> Iterator[Any]:
    """A connection holding the rule's table over the events (only the generated columns,
    with EventId and Timestamp): a missing string is '', as in Defender.  One connection
    serves every example (connecting costs as much as a query)."""
    duckdb_kql = pytest.importorskip("duckdb_kql")
    table = table_of(rule)
    columns = {"EventId": "long", "Timestamp": "datetime"}
    columns.update({c: "string" for c in table.strings})
    columns.update({c: load_schema().table(table.name).column_type(c) for c in table.numbers})
    types = {**_DUCK_TYPES, "datetime": "TIMESTAMP"}
    if "con" not in _DUCK:
        _DUCK["con"] = duckdb_kql.connect()
    con = _DUCK["con"]
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table.name} ("
                    + ", ".join(f'"{n}" {types[k]}' for n, k in columns.items()) + ")")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = []
        for i, e in enumerate(events):
            row = []
            for name, kind in columns.items():
                value = {"EventId": i, "Timestamp": now}.get(name, e.get(name))
                row.append("" if kind == "string" and value is None else value)
            rows.append(row)
        con.executemany(f"INSERT INTO {table.name} VALUES ({', '.join('?' * len(columns))})", rows)
        yield duckdb_kql, con
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table.name}")


def duck_rows(duckdb_kql: Any, con: Any, text: str) -> tuple[list[str], list[tuple]]:
    relation = duckdb_kql.query(con, text)
    return list(relation.columns), relation.fetchall()


@SETTINGS
@given(cases(alphabet=ENGINE), st.integers(0, 9))
@boundary_examples(ENGINE, keep=lambda rule: not has_op(rule, Op.CIDR), extra=(0,))
def test_property_4_duckdb_kql(case, group):
    rule, events = case
    t = emit_kql(rule)
    assume(not refused(t))
    note(t.text)
    expected = evaluator.select(rule, events)
    with duck_table(rule, events) as (duckdb_kql, con):
        columns, rows = duck_rows(duckdb_kql, con, t.text)
        got = sorted(row[columns.index("EventId")] for row in rows)
        judge(t, rule, events, got, expected)

        # the same rule summarized: count() by one string column
        strings = table_of(rule).strings
        by = strings[group % len(strings)]
        summarized = Rule(rule.metadata, rule.source, rule.condition, stages=(
            Summarize(((by, Field(by)),), (Aggregate("Count", "count"),)),))
        ts = emit_kql(summarized)
        assert not refused(ts), ts.diagnostics
        if got != expected:  # reported lossy above: the groups differ too
            return
        columns, rows = duck_rows(duckdb_kql, con, ts.text)
        assert columns == [by, "Count"], (ts.text, columns)
        groups = sorted((row[0], row[1]) for row in rows)
        reference = sorted((r[by], r["Count"]) for r in evaluator.run(summarized, events))
        assert groups == reference, (ts.text, groups, reference)


# ------------------------------------------------------------------ 5. EQL (the eql package's parser)


def eql_select(rule: Rule, text: str, events: Events, null_reading: str = "three-valued") -> list[int]:
    """The events `text` selects: parsed by the `eql` package, evaluated with Elasticsearch's
    documented semantics (`rmmc.verify.eql_elastic`), fields named by the `ecs` profile."""
    pytest.importorskip("eql")
    from rmmc.compiler.schema.profiles import load_profile
    from rmmc.verify.eql_elastic import select

    profile = load_profile("ecs")
    table = rule.source.table
    flat = [{(profile.field(table, k) or k): v for k, v in e.items() if v is not None} for e in events]
    return select(text, flat, null_reading)


# The package unescapes `\u{..}` greedily (`"\u{A0}}"` fails to parse there, not in
# Elasticsearch), and rmmc writes every non-printable character that way: the property's
# alphabet has none (tab and line feed are written `\t` and `\n`).  Nor 'ß', 'İ', 'ǅ': a known
# defect, tests/test_escaping.py::test_eql_case_folds_like_the_model (xfail).
EQL_ALPHABET = Alphabet("eql", "".join(ch for ch in FULL.chars
                                       if (ch.isprintable() or ch in "\t\n") and ch not in "ßİǅ"))


# Cased and case-insensitive rules alike: `==`, `like`, `regex`, `in` are case-sensitive in
# Elasticsearch, `:`, `like~`, `regex~`, `in~` not.  The translation must select the same events
# whether a test on a missing field reads as null (three-valued) or as false.
@SETTINGS
@given(cases(alphabet=EQL_ALPHABET, cidr=True))
@boundary_examples(EQL_ALPHABET)
def test_property_5_eql(case):
    pytest.importorskip("eql")
    rule, events = case
    t = emit_eql(rule)
    assume(not refused(t))
    note(t.text)
    expected = evaluator.select(rule, events)
    from rmmc.verify.eql_elastic import MixedFieldTypes

    try:
        got = eql_select(rule, t.text, events)
    except MixedFieldTypes:  # one field as ip and as text: no Elasticsearch mapping has both
        event("eql: a field tested as ip and as text")
        assume(False)
    judge(t, rule, events, got, expected)
    judge(t, rule, events, eql_select(rule, t.text, events, null_reading="false"), expected)


# ------------------------------------------------------------------ 6. Splunk SPL (tests/spl_interp.py)


def spl_select(rule: Rule, text: str, events: Events) -> list[int]:
    """The events `text` keeps, run by tests/spl_interp.py (Splunk's documented search and
    eval semantics; regexes on PCRE2), fields named by the `sigma` profile as the backend
    names them."""
    from spl_interp import selects
    from rmmc.compiler.schema.profiles import load_profile

    profile = load_profile("sigma")
    table = rule.source.table
    out = []
    for i, e in enumerate(events):
        fields = {(profile.field(table, k) or k): v for k, v in e.items() if v is not None}
        if selects(text, fields):
            out.append(i)
    return out


@SETTINGS
@given(cases(alphabet=FULL, cidr=True))
@boundary_examples(FULL)
def test_property_6_splunk(case):
    from rmmc.backends.splunk.backend import emit_splunk

    rule, events = case
    t = emit_splunk(rule)
    assume(not refused(t))
    note(t.text)
    judge(t, rule, events, spl_select(rule, t.text, events), evaluator.select(rule, events))


# ------------------------------------------------------------------ 7. ES|QL (tests/esql_interp.py)

ESQL_INDEX = "_rmmc_i"


def esql_select(rule: Rule, text: str, events: Events) -> list[int]:
    """The events `text` keeps, run by tests/esql_interp.py (ES|QL's documented semantics,
    RLIKE on Lucene regexes), fields named by the `ecs` profile as the backend names them."""
    from esql_interp import run
    from rmmc.compiler.schema.profiles import load_profile

    profile = load_profile("ecs")
    table = rule.source.table
    rows = [{**{(profile.field(table, k) or k): v for k, v in e.items() if v is not None}, ESQL_INDEX: i}
            for i, e in enumerate(events)]
    return sorted(r[ESQL_INDEX] for r in run(text, rows))


# Without 'İ': a known defect, test_esql_to_lower_of_a_dotted_capital_i_joins_terms (xfail).
ESQL_ALPHABET = Alphabet("esql", FULL.chars.replace("İ", ""))


@SETTINGS
@given(cases(alphabet=ESQL_ALPHABET, cidr=True))
@boundary_examples(ESQL_ALPHABET)
def test_property_7_esql(case):
    from rmmc.backends.esql.backend import emit_esql

    rule, events = case
    t = emit_esql(rule)
    assume(not refused(t))
    note(t.text)
    judge(t, rule, events, esql_select(rule, t.text, events), evaluator.select(rule, events))


@pytest.mark.xfail(strict=True, reason="defect: Elasticsearch's ip type reads an IPv4-mapped IPv6 "
                   "value as the IPv4 address, so CIDR_MATCH puts '::ffff:10.1.2.3' inside 10.0.0.0/8; "
                   "the model never does, and the ES|QL backend flags only IPv6 networks that overlap "
                   "::ffff:0:0/96, not IPv4 networks")
def test_esql_cidr_reads_an_ipv4_mapped_value_as_ipv4():
    from rmmc.backends.esql.backend import emit_esql
    from rmmc.compiler.ir import Predicate
    from strategies import TABLE_BY_NAME

    table = TABLE_BY_NAME["DeviceNetworkEvents"]
    rule = Rule(rule_metadata(), Source(table.name, table.kind),
                Predicate(table.field("RemoteIP"), Op.CIDR, ("10.0.0.0/8",), negated=True))
    events = [{"RemoteIP": "::ffff:10.1.2.3"}, {"RemoteIP": "10.1.2.3"}]
    t = emit_esql(rule)
    judge(t, rule, events, esql_select(rule, t.text, events), evaluator.select(rule, events))


@pytest.mark.xfail(strict=True, reason="defect: ES|QL's TO_LOWER turns 'İ' into 'i' + U+0307, so "
                   "in 'aİ' the term 'a' is followed by the letter 'i' and `has 'a'` no longer "
                   "matches; the backend only notes it (a value holding U+0130 is lossy, text "
                   "holding it is not)")
def test_esql_to_lower_of_a_dotted_capital_i_joins_terms():
    from rmmc.backends.esql.backend import emit_esql
    from rmmc.compiler.ir import Predicate
    from strategies import TABLE_BY_NAME

    table = TABLE_BY_NAME["DeviceProcessEvents"]
    rule = Rule(rule_metadata(), Source(table.name, table.kind),
                Predicate(table.field("FileName"), Op.TERM, ("a",)))
    events = [{"FileName": "aİ"}, {"FileName": "a"}]
    t = emit_esql(rule)
    judge(t, rule, events, esql_select(rule, t.text, events), evaluator.select(rule, events))
