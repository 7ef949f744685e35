"""Filter/Exclusion expressions: parsed, mapped onto the rule's table, and meaning what they say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import LineIndex, RmmcError, Severity, Span
from rmmc.compiler.documents import FalsePositiveScenario, read_path, read_text
from rmmc.compiler.evaluator import evaluate, fold, matches
from rmmc.compiler.exclusions import (MAX_DEPTH, AndExpr, Comparison, Literal, Name, NotExpr,
                                      OrExpr, field_map, looks_like_expression, lower_exclusion,
                                      parse_exclusion, relocate)

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
SHARED = Path(__file__).resolve().parents[2] / "shared"
NET = "DeviceNetworkEvents"
PNAME = ir.Field("InitiatingProcessFileName")
UNAME = ir.Field("InitiatingProcessAccountName")


def scenario(text: str | None, title: str = "t",
             prefix: str = "Filter/Exclusion: ") -> tuple[FalsePositiveScenario, LineIndex]:
    """A scenario whose exclusion sits in a small file after `prefix`, with its file span."""
    source = LineIndex("Scenario: t\n" + prefix + (text or "") + "\n")
    if text is None:
        return FalsePositiveScenario(title), source
    start = source.text.index(prefix) + len(prefix)
    return FalsePositiveScenario(title, None, text, source.span(start, start + len(text))), source


def lower(text: str, table: str | None = NET):
    sc, source = scenario(text)
    exclusion, diagnostics = lower_exclusion(sc, table)
    return exclusion, diagnostics, source


def eq(field: ir.Field, value, negated: bool = False) -> ir.Predicate:
    return ir.Predicate(field, ir.Op.EQUALS, (value,), case_sensitive=False, negated=negated)


# ------------------------------------------------------------------ the two hunt documents


def test_remotepc_scenarios_are_expressions_over_the_initiating_process():
    doc = read_path(RULES / "rmm_remotepc_netconn.txt").documents[0]
    assert len(doc.scenarios) == 5
    lowered = [lower_exclusion(s, NET) for s in doc.scenarios]
    for (exclusion, diagnostics), sc in zip(lowered, doc.scenarios):
        assert diagnostics == []
        assert isinstance(exclusion.condition, ir.Or)
        assert {p.field.name for p in ir.walk_predicates(exclusion.condition)} <= {
            "InitiatingProcessFileName", "InitiatingProcessAccountName"}
        assert (exclusion.name, exclusion.text, exclusion.description) == (
            sc.title, sc.exclusion, sc.description)
        assert exclusion.span == sc.exclusion_span

    first = lowered[0][0].condition
    assert first == ir.Or((eq(PNAME, "schtasks.exe"), eq(PNAME, "taskhost.exe")))

    # the fifth, by hand: process.name == "RemotePCSupport.exe" || user.name == "support_user"
    exclusion, _ = lowered[4]
    assert exclusion.name == "User-Initiated Remote Support Session"
    assert exclusion.text == 'process.name == "RemotePCSupport.exe" || user.name == "support_user"'
    cond = exclusion.condition
    assert type(cond) is ir.Or and len(cond.operands) == 2
    left, right = cond.operands
    assert left == ir.Predicate(ir.Field("InitiatingProcessFileName", "string"), ir.Op.EQUALS,
                                ("RemotePCSupport.exe",), all_values=False,
                                case_sensitive=False, negated=False)
    assert right == ir.Predicate(ir.Field("InitiatingProcessAccountName", "string"), ir.Op.EQUALS,
                                 ("support_user",), all_values=False,
                                 case_sensitive=False, negated=False)
    # predicate spans are file coordinates: the comparison's text, at its line and column
    text = doc.source.text
    assert text[left.span.offset:left.span.end] == 'process.name == "RemotePCSupport.exe"'
    assert text[right.span.offset:right.span.end] == 'user.name == "support_user"'
    for p in (left, right):
        assert (p.span.line, p.span.column) == doc.source.position(p.span.offset)
    assert (left.span.line, left.span.column) == (62, 19)


def test_distantdesktop_scenarios_are_prose_kept_as_text():
    doc = read_path(RULES / "rmm_distantdesktop_netconn.txt").documents[0]
    assert len(doc.scenarios) == 5
    for sc in doc.scenarios:
        exclusion, diagnostics = lower_exclusion(sc, NET)
        assert exclusion.condition is None
        assert exclusion.text == sc.exclusion and exclusion.text.startswith("Exclude ")
        assert not looks_like_expression(sc.exclusion)
        assert len(diagnostics) == 1
        note = diagnostics[0]
        assert note.severity is Severity.NOTE and note.code == "exclusion-prose"
        assert note.message == "kept as text: not an expression"
        assert note.span == sc.exclusion_span


def test_shared_seeds_lower_without_errors():
    seeds = sorted((SHARED / "seeds").glob("*.txt"))
    if not seeds:
        pytest.skip("/work/shared/seeds not present")
    kinds = []
    for path in seeds:
        for doc in read_path(path).documents:
            results = [lower_exclusion(s, NET) for s in doc.scenarios]
            assert results and not any(d.is_error for _, ds in results for d in ds)
            kinds.append({e.condition is None for e, _ in results})
    assert {True} in kinds and {False} in kinds  # one all prose, one all expressions


def test_rule_with_the_exclusions_applied_lets_the_excluded_events_go():
    doc = read_path(RULES / "rmm_remotepc_netconn.txt").documents[0]
    exclusions = tuple(lower_exclusion(s, NET)[0] for s in doc.scenarios)
    rule = ir.Rule(ir.Metadata(), ir.Source(NET), ir.Const(True), exclusions=exclusions)
    kept = {"InitiatingProcessFileName": "remotepc.exe", "InitiatingProcessAccountName": "alice"}
    for event, excluded in [
        (kept, False),
        ({**kept, "InitiatingProcessFileName": "SchTasks.EXE"}, True),
        ({**kept, "InitiatingProcessFileName": "rdpclip.exe"}, True),
        ({**kept, "InitiatingProcessAccountName": "SUPPORT_USER"}, True),
        ({**kept, "InitiatingProcessFileName": "schtasks.exe.bak"}, False),
    ]:
        assert matches(rule, event)
        assert matches(rule, event, apply_exclusions=True) is not excluded


# ------------------------------------------------------------------ meaning


def test_or_selects_either_side_case_insensitively():
    exclusion, diagnostics, _ = lower('process.name == "schtasks.exe" || user.name == "support_user"')
    assert diagnostics == []
    cond = exclusion.condition
    events = [
        ({"InitiatingProcessFileName": "SCHTASKS.EXE", "InitiatingProcessAccountName": "bob"}, True),
        ({"InitiatingProcessFileName": "cmd.exe", "InitiatingProcessAccountName": "support_user"}, True),
        ({"InitiatingProcessFileName": "cmd.exe", "InitiatingProcessAccountName": "bob"}, False),
        ({"InitiatingProcessFileName": "schtasks.exe2"}, False),
        ({"FileName": "schtasks.exe"}, False),  # the created process is not the initiating one
        ({}, False),
    ]
    for event, expected in events:
        assert evaluate(cond, event) is expected, event


def test_not_equal_and_negation_and_conjunction():
    exclusion, diagnostics, _ = lower(
        'user.name != "system" && !(process.name == "a.exe" || destination.port == 443)')
    assert diagnostics == []
    cond = exclusion.condition
    assert cond == ir.And((eq(UNAME, "system", negated=True),
                           ir.Not(ir.Or((eq(PNAME, "a.exe"),
                                         eq(ir.Field("RemotePort", "int"), 443))))))
    base = {"InitiatingProcessAccountName": "bob", "InitiatingProcessFileName": "b.exe",
            "RemotePort": 80}
    assert evaluate(cond, base) is True
    assert evaluate(cond, {**base, "InitiatingProcessAccountName": "SYSTEM"}) is False
    assert evaluate(cond, {**base, "InitiatingProcessFileName": "A.EXE"}) is False
    assert evaluate(cond, {**base, "RemotePort": 443}) is False
    assert evaluate(cond, {**base, "RemotePort": None}) is True


def test_not_of_a_comparison_is_the_negated_predicate():
    exclusion, _, _ = lower('not process.name == "a.exe"')
    assert exclusion.condition == eq(PNAME, "a.exe", negated=True)


def test_the_table_decides_which_process_is_meant():
    sc, _ = scenario('process.name == "x.exe" && process.parent.name == "y.exe" && user.name == "u"')
    network, _ = lower_exclusion(sc, "DeviceNetworkEvents")
    process, _ = lower_exclusion(sc, "DeviceProcessEvents")
    assert [p.field.name for p in ir.walk_predicates(network.condition)] == [
        "InitiatingProcessFileName", "InitiatingProcessParentFileName", "InitiatingProcessAccountName"]
    assert [p.field.name for p in ir.walk_predicates(process.condition)] == [
        "FileName", "InitiatingProcessFileName", "AccountName"]


@pytest.mark.parametrize("table, name, column", [
    ("DeviceNetworkEvents", "process.executable", "InitiatingProcessFolderPath"),
    ("DeviceNetworkEvents", "process.command_line", "InitiatingProcessCommandLine"),
    ("DeviceNetworkEvents", "user.domain", "InitiatingProcessAccountDomain"),
    ("DeviceNetworkEvents", "destination.ip", "RemoteIP"),
    ("DeviceNetworkEvents", "destination.domain", "RemoteUrl"),
    ("DeviceNetworkEvents", "url.original", "RemoteUrl"),
    ("DeviceNetworkEvents", "source.ip", "LocalIP"),
    ("DeviceNetworkEvents", "host.name", "DeviceName"),
    ("DeviceProcessEvents", "process.executable", "FolderPath"),
    ("DeviceProcessEvents", "process.command_line", "ProcessCommandLine"),
    ("DeviceFileEvents", "file.name", "FileName"),
    ("DeviceFileEvents", "file.path", "FolderPath"),
    ("DeviceFileEvents", "process.name", "InitiatingProcessFileName"),
    ("DeviceRegistryEvents", "registry.value", "RegistryValueName"),
    ("DeviceImageLoadEvents", "dll.name", "FileName"),
    ("DeviceFileCertificateInfo", "file.hash.sha1", "SHA1"),
])
def test_field_map(table, name, column):
    assert field_map(table)[name].name == column


def test_field_map_columns_exist_with_their_types():
    schema_path = SHARED / "tools" / "defender_schema.json"
    if not schema_path.is_file():
        pytest.skip("shared Defender schema not present")
    tables = json.loads(schema_path.read_text(encoding="utf-8"))["tables"]
    data = json.loads((REPO / "rmmc" / "compiler" / "schema" / "exclusion_fields.json")
                      .read_text(encoding="utf-8"))
    for table in data["tables"]:
        columns = dict(re.findall(r"(\w+):(\w+)", tables[table]))
        for name, column in field_map(table).items():
            assert columns.get(column.name) == column.type, (table, name, column)


def test_field_map_agrees_with_the_project_schema():
    schema_module = pytest.importorskip("rmmc.compiler.schema")
    schema = schema_module.load_schema()
    data = json.loads((REPO / "rmmc" / "compiler" / "schema" / "exclusion_fields.json")
                      .read_text(encoding="utf-8"))
    for table in data["tables"]:
        known = schema.table(table)
        if known is None:
            continue
        for name, column in field_map(table).items():
            assert known.column_type(column.name) == column.type, (table, name, column)


def test_numbers_and_booleans_compare_by_value():
    exclusion, diagnostics, _ = lower("destination.port == 443 || source.port != 8080")
    assert diagnostics == []
    assert exclusion.condition == ir.Or((eq(ir.Field("RemotePort", "int"), 443),
                                         eq(ir.Field("LocalPort", "int"), 8080, negated=True)))
    sc, _ = scenario("file.code_signature.trusted == false")
    cert, diagnostics = lower_exclusion(sc, "DeviceFileCertificateInfo")
    assert diagnostics == []
    assert cert.condition == eq(ir.Field("IsTrusted", "bool"), False)
    assert evaluate(cert.condition, {"IsTrusted": False}) is True
    assert evaluate(cert.condition, {"IsTrusted": True}) is False


@pytest.mark.parametrize("text, column_text", [
    ('destination.port == "443"', '"443"'),
    ("process.name == 5", "5"),
    ("destination.port == 4.5", "4.5"),
    ("destination.port == true", "true"),
    ("destination.port == 99999999999", "99999999999"),
])
def test_a_value_of_the_wrong_type_is_an_error(text, column_text):
    exclusion, diagnostics, source = lower(text)
    assert exclusion.condition is None and exclusion.text == text
    assert [d.code for d in diagnostics] == ["exclusion-type"]
    d = diagnostics[0]
    assert d.severity is Severity.ERROR
    assert source.text[d.span.offset:d.span.end] == column_text


# ------------------------------------------------------------------ the grammar


def test_precedence_or_and_not():
    expr = parse_exclusion('a.b == 1 || c.d == "x" && !e.f == 2')
    assert expr == OrExpr((Comparison(Name("a.b"), Literal(1)),
                           AndExpr((Comparison(Name("c.d"), Literal("x")),
                                    NotExpr(Comparison(Name("e.f"), Literal(2)))))))
    assert parse_exclusion('(a == 1 || b == 2) and not c != "z"') == AndExpr((
        OrExpr((Comparison(Name("a"), Literal(1)), Comparison(Name("b"), Literal(2)))),
        NotExpr(Comparison(Name("c"), Literal("z"), negated=True))))
    assert parse_exclusion('a == 1 OR b == 2') == parse_exclusion('a == 1 || b == 2')


@pytest.mark.parametrize("source, value", [
    ('"plain"', "plain"),
    ("'single'", "single"),
    (r'"say \"hi\""', 'say "hi"'),
    (r"'it\'s'", "it's"),
    (r'"C:\\Windows\\x.exe"', "C:\\Windows\\x.exe"),
    (r'"C:\Windows\temp\new.exe"', "C:\\Windows\\temp\\new.exe"),  # other backslashes kept
    ('"a || b == c"', "a || b == c"),
    ('""', ""),
    ('"ünïcødé ✓"', "ünïcødé ✓"),
    ("-12", -12),
    ("3.25", 3.25),
    ("TRUE", True),
])
def test_literals(source, value):
    expr = parse_exclusion(f"x.y == {source}")
    assert expr.value.value == value and type(expr.value.value) is type(value)


def test_spans_of_the_tree_are_relative_to_the_text():
    text = 'a == "x" ||\n  (bc.d != 2)'
    expr = parse_exclusion(text)
    right = expr.operands[1]
    assert text[right.span.offset:right.span.end] == "bc.d != 2"
    assert (right.span.line, right.span.column) == (2, 4)
    assert (right.name.span.offset, right.value.span.offset) == (15, 23)


@pytest.mark.parametrize("text, expected", [
    ('process.name == "a"', True),
    ('(process.name == "a"', True),            # broken, but meant as an expression
    ('process.name = "a"', True),
    ('process.name: "a"', True),
    ("user.name == support_user", True),
    ('!process.name == "x"', True),
    ("Exclude connections initiated from known admin IP ranges.", False),
    ("Note: exclude backups", False),
    ("e.g. backups run nightly", False),
    ("Exclude where process.name == \"x\"", False),
    ("", False),
    ("   ", False),
])
def test_looks_like_expression(text, expected):
    assert looks_like_expression(text) is expected


@pytest.mark.parametrize("text, message, at", [
    ('process.name == "a" || (user.name == "b"', "expected `)`", len('process.name == "a" || (user.name == "b"')),
    ('process.name == "a")', "unmatched `)`", len('process.name == "a"')),
    ('process.name = "a"', "unexpected character '='", len("process.name ")),
    ("user.name == support_user", "quote text values", len("user.name == ")),
    ("destination.ip == 10.0.0.1", "quote values that are not plain numbers", len("destination.ip == ")),
    ('process.name == "abc', "unterminated string", len("process.name == ")),
    ('process.name == "a" ||', "unexpected end", len('process.name == "a" ||')),
    ('process.name == "a" user.name == "b"', "expected `&&`, `||` or the end", len('process.name == "a" ')),
])
def test_syntax_errors_are_located_in_the_file(text, message, at):
    exclusion, diagnostics, source = lower(text)
    assert exclusion.condition is None and exclusion.text == text
    assert len(diagnostics) == 1
    d = diagnostics[0]
    assert d.severity is Severity.ERROR and d.code == "exclusion-syntax"
    assert message in d.message
    start = source.text.index("Filter/Exclusion: ") + len("Filter/Exclusion: ")
    assert d.span.offset == start + at
    assert (d.span.line, d.span.column) == source.position(d.span.offset)
    with pytest.raises(RmmcError):
        parse_exclusion(text)


def test_errors_on_a_continuation_line_get_that_line():
    original = (RULES / "rmm_remotepc_netconn.txt").read_text(encoding="utf-8")
    last = 'Filter/Exclusion: process.name == "RemotePCSupport.exe" || user.name == "support_user"'
    assert last in original
    text = original.replace(last, 'Filter/Exclusion: process.name == "RemotePCSupport.exe" ||\n'
                                  '  user.name == support_user')
    doc = read_text(text, "x.txt").documents[0]
    sc = doc.scenarios[-1]
    assert "\n" in sc.exclusion
    _, diagnostics = lower_exclusion(sc, NET)
    (d,) = diagnostics
    assert d.span.offset == text.rindex("support_user")
    assert (d.span.line, d.span.column) == doc.source.position(d.span.offset) == (63, 16)


def test_relocate_on_the_first_and_later_lines():
    base = Span(100, 120, 7, 19)
    text = "abc\r\ndefgh\nij" + " " * 7
    assert relocate(Span(1, 2, 1, 2), text, base) == Span(101, 102, 7, 20)
    assert relocate(Span(6, 8, 2, 2), text, base) == Span(106, 108, 8, 2)
    assert relocate(Span(12, 13, 3, 2), text, base) == Span(112, 113, 9, 2)
    assert relocate(Span(1, 2, 1, 2), text, None) == Span(1, 2, 1, 2)
    assert relocate(Span(1, 2, 1, 2), "short", base) == base  # not a verbatim slice


# ------------------------------------------------------------------ unknown names and tables


def test_unknown_names_are_warned_once_each_and_leave_no_condition():
    text = 'proc.name == "a" || proc.name == "b" || user.name == "c" || Process.Name == "d"'
    exclusion, diagnostics, source = lower(text)
    assert exclusion.condition is None and exclusion.text == text
    assert [d.severity for d in diagnostics] == [Severity.WARNING, Severity.WARNING]
    assert [source.text[d.span.offset:d.span.end] for d in diagnostics] == ["proc.name", "Process.Name"]
    assert "did you mean `process.name`?" in diagnostics[0].message
    assert "did you mean `process.name`?" in diagnostics[1].message


def test_names_without_a_column_of_the_same_meaning_say_why():
    sc, _ = scenario(r'registry.key == "SOFTWARE\\Run"')
    _, diagnostics = lower_exclusion(sc, "DeviceRegistryEvents")
    assert "hive" in diagnostics[0].message and diagnostics[0].code == "exclusion-unknown-field"


@pytest.mark.parametrize("table", [None, "", "SecurityEvent"])
def test_a_table_without_a_field_map(table):
    exclusion, diagnostics, _ = lower('process.name == "a"', table)
    assert exclusion.condition is None
    assert [(d.severity, d.code) for d in diagnostics] == [(Severity.WARNING, "exclusion-table")]


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_exclusion_means_no_condition_and_nothing_to_say(text):
    sc = FalsePositiveScenario("t", "d", text, None)
    exclusion, diagnostics = lower_exclusion(sc, NET)
    assert (exclusion.condition, exclusion.text, diagnostics) == (None, text, [])


# ------------------------------------------------------------------ hostile input

HOSTILE = [
    "(((((", ")))))", "(a == 1", "a == 1))", '"""', "'", "\\", "\\\\\\", 'a == "\\"', "a == '\\'",
    'a == "x\\', "a == \"line\nbreak\"", "== ==", "!!!!", "&& ||", "not", "not not", "a", "a.",
    ".a == 1", "a..b == 1", "a == 1 ||| b == 2", "a === 1", "a == 0x10", "a == 1e5", "a == --1",
    "\x00", "\ufeffa == 1", "a == \u201csmart\u201d", "ü == 1", "\t\n\r", "a == 1;", "#",
    "(" * (MAX_DEPTH + 5) + "a == 1" + ")" * (MAX_DEPTH + 5), "!" * 5000 + "a == 1",
    "(" * 60000, "x" * 100_000, 'a == "' + "y" * 100_000 + '"',
    " || ".join(f'process.name == "p{i}.exe"' for i in range(3500)),
    'process.name == "a" ' * 5000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:30]) + f"/{len(t)}")
def test_hostile_input(text):
    try:
        parse_exclusion(text)
    except RmmcError as exc:
        assert exc.diagnostics and all(d.span is not None for d in exc.diagnostics)
    sc, source = scenario(text)
    exclusion, diagnostics = lower_exclusion(sc, NET)
    assert exclusion.text == text
    assert exclusion.condition is not None or diagnostics or not text.strip()
    for d in diagnostics:
        assert d.code != "exclusion-internal"
        assert sc.exclusion_span.offset <= d.span.offset <= d.span.end <= sc.exclusion_span.end
        assert (d.span.line, d.span.column) == source.position(d.span.offset)


def test_nesting_is_bounded_with_a_located_error():
    text = "(" * (MAX_DEPTH + 5) + "a == 1" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(RmmcError) as info:
        parse_exclusion(text)
    assert info.value.diagnostics[0].code == "exclusion-too-deep"
    assert parse_exclusion("(" * 20 + "a == 1" + ")" * 20) == Comparison(Name("a"), Literal(1))


def test_a_long_flat_expression_is_one_wide_or():
    text = " || ".join(f'process.name == "p{i}.exe"' for i in range(3500))
    assert len(text) > 100_000
    exclusion, diagnostics, _ = lower(text)
    assert diagnostics == [] and len(exclusion.condition.operands) == 3500


@given(st.text(alphabet=st.sampled_from(list('ab.=!|&()"\'\\ \n01-xyz:_')), max_size=60))
def test_any_text_parses_or_fails_with_an_rmmc_error(text):
    try:
        parse_exclusion(text)
    except RmmcError as exc:
        assert exc.diagnostics[0].span is not None
    sc, source = scenario(text)
    exclusion, diagnostics = lower_exclusion(sc, NET)
    assert exclusion.text == text
    assert all(d.code != "exclusion-internal" for d in diagnostics)


# ------------------------------------------------------------------ meaning, by construction

FIELDS = {"process.name": "InitiatingProcessFileName", "user.name": "InitiatingProcessAccountName",
          "destination.port": "RemotePort"}
NAMES = ["a.exe", "B.EXE", "c d"]

comparisons = st.one_of(
    st.tuples(st.sampled_from(["process.name", "user.name"]), st.sampled_from(["==", "!="]),
              st.sampled_from(NAMES)),
    st.tuples(st.just("destination.port"), st.sampled_from(["==", "!="]), st.sampled_from([80, 443])),
)
trees = st.recursive(
    comparisons,
    lambda inner: st.one_of(st.tuples(st.just("!"), inner),
                            st.tuples(st.sampled_from(["&&", "||", "and", "or"]), inner, inner)),
    max_leaves=8)
events = st.fixed_dictionaries({
    "InitiatingProcessFileName": st.sampled_from(NAMES + ["A.EXE", "b.exe", ""]),
    "InitiatingProcessAccountName": st.sampled_from(NAMES + ["C D"]),
    "RemotePort": st.sampled_from([80, 443, 8080]),
})


def render(tree) -> str:
    if len(tree) == 2:
        return f"!({render(tree[1])})"
    if tree[0] in ("&&", "||", "and", "or"):
        return f"({render(tree[1])} {tree[0]} {render(tree[2])})"
    name, op, value = tree
    return f"{name} {op} {json.dumps(value)}"


def meaning(tree, event) -> bool:
    """What the expression says, written out: ECS equality, Windows names without case."""
    if len(tree) == 2:
        return not meaning(tree[1], event)
    if tree[0] in ("&&", "and"):
        return meaning(tree[1], event) and meaning(tree[2], event)
    if tree[0] in ("||", "or"):
        return meaning(tree[1], event) or meaning(tree[2], event)
    name, op, value = tree
    actual = event[FIELDS[name]]
    same = fold(actual) == fold(value) if isinstance(value, str) else actual == value
    return same if op == "==" else not same


@given(trees, st.lists(events, min_size=1, max_size=5))
def test_the_condition_means_what_the_expression_says(tree, sample):
    exclusion, diagnostics, _ = lower(render(tree))
    assert diagnostics == []
    for event in sample:
        assert evaluate(exclusion.condition, event) is meaning(tree, event)
