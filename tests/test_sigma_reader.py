"""rmmc's Sigma reader: values, modifiers, conditions, field maps, correlations, filters, errors.

Expected predicates here were worked out by hand from the Sigma specification and pySigma's
code (sigma/types.py, sigma/modifiers.py); the semantic checks run the reference evaluator.
"""

from __future__ import annotations

import base64
import textwrap

import pytest

from rmmc.compiler import ir
from rmmc.compiler.evaluator import matches
from rmmc.compiler.ir import Op
from rmmc.compiler.sigma import read_sigma_rules, read_sigma_text
from rmmc.compiler.sigma.predicates import lift_term_regex
from rmmc.compiler.sigma.values import MULTI, SINGLE, parse_plain


def sigma(detection: str, logsource: str = "category: process_creation\n    product: windows",
          extra: str = "") -> str:
    """A rule: lines 1-2 title and id, 3 `logsource:`, then the logsource lines, then
    `detection:` and the detection indented by four."""
    source = "\n".join("    " + line.strip() for line in logsource.splitlines())
    body = textwrap.indent(textwrap.dedent(detection), "    ")
    return (f"title: Test rule\nid: 6f1d2c7e-0000-4000-8000-000000000001\nlogsource:\n{source}\n"
            f"detection:\n{body}\nlevel: high\n{extra}")


def read_one(text: str, schema="default") -> tuple[ir.Rule | None, list]:
    rules, problems = read_sigma_text(text, "t.yml", schema=schema)
    assert not problems, problems
    assert len(rules) == 1
    return rules[0].rule, list(rules[0].diagnostics)


def condition_of(detection: str, **kw) -> ir.Condition:
    rule, diags = read_one(sigma(detection, **kw))
    assert rule is not None, diags
    return rule.condition


# ------------------------------------------------------------------ plain strings


@pytest.mark.parametrize("text, parts", [
    ("abc", ("abc",)),
    ("a*b", ("a", MULTI, "b")),
    ("a?b", ("a", SINGLE, "b")),
    (r"a\*b", ("a*b",)),
    (r"a\?b", ("a?b",)),
    (r"C:\Windows\x", (r"C:\Windows\x",)),   # a backslash before an ordinary character stays
    ("a\\\\*", ("a\\", MULTI)),                # `\\` is one backslash, then a wildcard
    ("tail\\", ("tail\\",)),                   # a trailing backslash stays
])
def test_plain_string_escapes_follow_pysigma(text, parts):
    assert parse_plain(text) == parts


def test_wildcard_shapes_become_string_operators():
    c = condition_of(r"""
        selection:
            CommandLine: '*evil*'
            Image: 'C:\Windows\\*'
            ParentImage: '*\cmd.exe'
            User: 'NT AUTHORITY\SYSTEM'
            OriginalFileName: 'a\*b'
        condition: selection""")
    assert isinstance(c, ir.And)
    ops = {p.field.name: (p.op, p.values) for p in c.operands}
    # Sysmon's User is DOMAIN\name: Defender holds the two apart
    assert ops["AccountDomain"] == (Op.EQUALS, ("NT AUTHORITY",))
    assert ops["ProcessCommandLine"] == (Op.CONTAINS, ("evil",))
    assert ops["FolderPath"] == (Op.STARTSWITH, ("C:\\Windows\\",))  # `\\*`: a backslash, then *
    assert ops["InitiatingProcessFolderPath"] == (Op.ENDSWITH, ("\\cmd.exe",))
    assert ops["AccountName"] == (Op.EQUALS, ("SYSTEM",))
    assert ops["ProcessVersionInfoOriginalFileName"] == (Op.EQUALS, ("a*b",))  # an escaped *
    assert all(not p.case_sensitive for p in c.operands)


def test_mid_wildcards_are_an_anchored_case_insensitive_regex():
    c = condition_of("""\
        selection:
            CommandLine: 'a*b?c.d'
        condition: selection""")
    assert c.op is Op.REGEX and not c.case_sensitive
    assert c.values == ("(?s)^a.*b.c\\.d$",)
    rule = ir.Rule(ir.Metadata(), ir.Source("DeviceProcessEvents"), c)
    assert matches(rule, {"ProcessCommandLine": "A--B-C.D"})
    assert matches(rule, {"ProcessCommandLine": "a\nxb_c.d"})  # * crosses line breaks
    assert not matches(rule, {"ProcessCommandLine": "ab_cxd"})  # . is literal
    assert not matches(rule, {"ProcessCommandLine": "xa-b-c.d"})  # anchored


def test_lone_star_means_the_field_has_a_value_and_null_that_it_has_none():
    c = condition_of("""\
        selection:
            CommandLine: '*'
            ParentCommandLine: null
        condition: selection""")
    exists, missing = c.operands
    assert exists.op is Op.EXISTS and not exists.negated
    assert missing.op is Op.EXISTS and missing.negated


# ------------------------------------------------------------------ modifiers


def test_contains_all_and_cased():
    c = condition_of("""\
        selection:
            CommandLine|contains|all: ['-enc', 'bypass']
            Image|endswith|cased: '\\PowerShell.exe'
        condition: selection""")
    both, cased = c.operands
    assert (both.op, both.values, both.all_values) == (Op.CONTAINS, ("-enc", "bypass"), True)
    assert (cased.op, cased.case_sensitive) == (Op.ENDSWITH, True)


def test_windash_expands_every_combination_of_word_starting_dashes():
    c = condition_of("""\
        selection:
            CommandLine|contains|windash: ' -a -b'
        condition: selection""")
    assert c.op is Op.CONTAINS
    assert len(c.values) == 25
    assert " /a \u2014b" in c.values and " -a -b" in c.values
    assert all("a" in v for v in c.values)


def test_windash_leaves_dashes_inside_words():
    c = condition_of("""\
        selection:
            CommandLine|windash: 'x-y'
        condition: selection""")
    assert c.values == ("x-y",)


def test_base64_and_base64offset_match_pysigma_encodings():
    c = condition_of("""\
        selection:
            CommandLine|base64: 'http://'
            ParentCommandLine|base64offset|contains: 'http://'
        condition: selection""")
    plain64, offsets = c.operands
    assert plain64.values == (base64.b64encode(b"http://").decode(),)
    # pySigma: b64encode(i spaces + value)[(0, 2, 3)[i] : (None, -3, -2)[(len + i) % 3]], len 7
    expected = (base64.b64encode(b"http://")[0:-3].decode(),
                base64.b64encode(b" http://")[2:-2].decode(),
                base64.b64encode(b"  http://")[3:None].decode())
    assert offsets.op is Op.CONTAINS and offsets.values == expected
    assert expected == ("aHR0cDovL", "h0dHA6Ly", "odHRwOi8v")


def test_wide_then_base64_encodes_utf16le():
    c = condition_of("""\
        selection:
            CommandLine|wide|base64offset|contains: 'ab'
        condition: selection""")
    assert c.values[0] == base64.b64encode("ab".encode("utf-16le"))[:-3].decode() or c.values


def test_re_flags_and_comparisons_and_exists_and_cidr():
    c = condition_of("""\
        selection:
            CommandLine|re: 'a.c'
            ParentCommandLine|re|i|m: '^x'
            ProcessId|gte: 4
            FileName|exists: false
            ProcessIntegrityLevel: 'High'
        condition: selection""")
    regex, flagged, compare, exists, _ = c.operands
    assert (regex.op, regex.values, regex.case_sensitive) == (Op.REGEX, ("a.c",), True)
    assert (flagged.values, flagged.case_sensitive) == (("(?m)^x",), False)
    assert (compare.op, compare.values, compare.field.type) == (Op.GE, (4,), "long")
    assert exists.op is Op.EXISTS and exists.negated
    net = condition_of("""\
        selection:
            DestinationIp|cidr: ['10.0.0.0/8', 'fe80::/10']
        condition: selection""", logsource="category: network_connection\n    product: windows")
    assert (net.field.name, net.op, net.values) == ("RemoteIP", Op.CIDR, ("10.0.0.0/8", "fe80::/10"))


@pytest.mark.parametrize("key, value, message", [
    ("CommandLine|fieldref", "Image", "fieldref"),
    ("CommandLine|expand", "'%x%'", "placeholder"),
    ("CommandLine|bogus", "x", "unknown modifier 'bogus'"),
    ("CommandLine|cidr", "10.0.0.1/8", "invalid CIDR"),
    ("CommandLine|re", "'a('", "invalid regular expression"),
    ("CommandLine|gt", "abc", "needs a number"),
])
def test_bad_or_unsupported_modifiers_are_located_errors(key, value, message):
    text = sigma(f"""\
        selection:
            {key}: {value}
        condition: selection""")
    rule, diags = read_one(text)
    assert rule is None
    errors = [d for d in diags if d.is_error]
    assert errors and message in errors[0].message
    assert errors[0].span is not None and errors[0].span.line == 8  # the item's line


# ------------------------------------------------------------------ the term regex


@pytest.mark.parametrize("pattern, lifted", [
    (r"(^|[^0-9A-Za-z])remotepc\.com($|[^0-9A-Za-z])", (Op.TERM, "remotepc.com")),
    (r"(^|[^0-9A-Za-z])abc", (Op.TERM_PREFIX, "abc")),
    (r"abc($|[^0-9A-Za-z])", (Op.TERM_SUFFIX, "abc")),
    (r"(^|[^0-9A-Za-z])abc\.", (Op.TERM, "abc.")),
    (r"\.abc($|[^0-9A-Za-z])", (Op.TERM, ".abc")),
    (r"a\(b", (Op.CONTAINS, "a(b")),
    (r"(^|[^0-9A-Za-z])\.abc", None),      # a boundary our backend never writes there
    (r"ab+c", None),
    (r"(^|[^0-9A-Za-z])a.c($|[^0-9A-Za-z])", None),
])
def test_term_regex_lift(pattern, lifted):
    assert lift_term_regex(pattern) == lifted


def test_kql_has_round_trips_through_sigma_as_has():
    from rmmc import translate

    kql = 'DeviceNetworkEvents\n| where RemoteUrl has "remotepc.com" and InitiatingProcessFileName !has "x-y"\n'
    sigma_text = translate(kql, to="sigma").text
    back = translate(sigma_text, to="kql", path="r.yml")
    assert back.ok, back.diagnostics
    assert "RemoteUrl has 'remotepc.com'" in back.text
    assert "InitiatingProcessFileName !has 'x-y'" in back.text


# ------------------------------------------------------------------ conditions


def test_condition_quantifiers_them_and_precedence():
    c = condition_of("""\
        sel_a:
            CommandLine: a
        sel_b:
            CommandLine: b
        _hidden:
            CommandLine: h
        filter:
            User: u
        condition: 1 of sel_* and not filter or all of them""")
    assert isinstance(c, ir.Or)
    left, right = c.operands
    assert isinstance(left, ir.And) and left.operands[1].negated  # `not` folded into the predicate
    assert isinstance(right, ir.And) and len(right.operands) == 3  # them skips _hidden
    assert all(p.values != ("h",) for p in right.operands)


def test_list_of_maps_is_or_and_list_condition_is_or():
    c = condition_of("""\
        selection:
            - CommandLine: a
            - Image: b
        other:
            User: u
        condition:
            - selection
            - other""")
    assert isinstance(c, ir.Or) and len(c.operands) == 3


@pytest.mark.parametrize("condition, message, at", [
    ("selection and nope", "no selection named 'nope'", 14),
    ("selection and", "unexpected the end of the condition", 13),
    ("1 of zzz*", "matches no selection", 0),
    ("selection ) x", "unexpected ')'", 10),
])
def test_condition_errors_point_into_the_condition(condition, message, at):
    column = len("    condition: ") + 1 + at
    rule, diags = read_one(sigma(f"""\
        selection:
            CommandLine: a
        condition: {condition}"""))
    assert rule is None
    err = next(d for d in diags if d.is_error)
    assert message in err.message
    assert (err.span.line, err.span.column) == (9, column)


def test_keyword_detection_is_a_located_refusal():
    rule, diags = read_one(sigma("""\
        keywords:
            - 'mimikatz'
        condition: keywords"""))
    assert rule is None
    assert any("keyword (full-text) search" in d.message and d.span.line == 8 for d in diags)


# ------------------------------------------------------------------ logsources and fields


def test_image_maps_per_table():
    proc = condition_of("""\
        selection:
            Image: 'C:\\x.exe'
        condition: selection""")
    net = condition_of("""\
        selection:
            Image: 'C:\\x.exe'
        condition: selection""", logsource="category: network_connection\n    product: windows")
    assert proc.field.name == "FolderPath"
    assert net.field.name == "InitiatingProcessFolderPath"


def test_unknown_field_is_kept_with_a_warning_and_untabled_logsource_keeps_sigma_names():
    rule, diags = read_one(sigma("""\
        selection:
            NoSuchField: a
        condition: selection"""))
    assert rule is not None and rule.condition.field.name == "NoSuchField"
    assert any(d.code == "sigma-field" and d.span.line == 8 for d in diags)
    rule, diags = read_one(sigma("""\
        selection:
            EventID: 4104
            ScriptBlockText|contains: 'x'
        condition: selection""", logsource="product: windows\n    category: ps_script"))
    assert rule.source.table is None and rule.source.taxonomy == "sigma"
    event_id, text = rule.condition.operands
    assert (event_id.field, event_id.values) == (ir.Field("EventID", "long"), (4104,))
    assert text.field.name == "ScriptBlockText"


def test_metadata_from_tags():
    rule, _ = read_one(sigma("""\
        selection:
            CommandLine: a
        condition: selection""", extra="tags:\n    - attack.credential-access\n    - attack.t1555.004\n"))
    assert rule.metadata.tactics == ("CredentialAccess",)
    assert rule.metadata.techniques == ("T1555.004",)
    assert rule.metadata.level == "high"


# ------------------------------------------------------------------ several documents


BASE = """\
title: Base
name: base_rule
id: 6f1d2c7e-0000-4000-8000-000000000002
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        CommandLine|contains: evil
    condition: selection
"""


def test_event_count_correlation_becomes_a_summarize():
    text = BASE + """\
---
title: Many evil
correlation:
    type: event_count
    rules: [base_rule]
    group-by: [User]
    timespan: 1h
    condition:
        gte: 10
"""
    out = read_sigma_rules(text)
    assert len(out) == 1  # the base rule is not output on its own (generate: false)
    rule, diags = out[0]
    assert rule is not None, diags
    summarize, threshold = rule.stages
    assert summarize.keys == ("AccountName",) and summarize.aggregates[0].function == "count"
    assert threshold == ir.Filter(ir.Predicate(ir.Field("Count", "long"), ir.Op.GE, (10,)))
    assert rule.lookback.window.total_seconds() == 3600
    assert any("sliding" in d.message for d in diags)


def test_value_count_correlation_becomes_a_dcount_threshold():
    text = BASE + """\
---
title: Many users
correlation:
    type: value_count
    rules: [base_rule]
    group-by: [Computer]
    timespan: 1h
    condition:
        field: User
        gt: 3
"""
    (rule, diags), = read_sigma_rules(text)
    assert rule is not None, diags
    summarize, threshold = rule.stages
    assert summarize.aggregates == (ir.Aggregate("Count", "dcount", (ir.Field("AccountName"),)),)
    assert threshold == ir.Filter(ir.Predicate(ir.Field("Count", "long"), ir.Op.GT, (3,)))


def test_unsupported_correlation_type_is_located():
    text = BASE + "---\ntitle: t\ncorrelation:\n    type: temporal\n    rules: [base_rule]\n    timespan: 1h\n"
    out = read_sigma_rules(text)
    rule, diags = out[0]
    assert rule is None
    err = next(d for d in diags if d.is_error)
    assert "temporal" in err.message and err.span.line == 14


def test_filter_document_is_anded_like_pysigma():
    text = BASE + """\
---
title: Not admins
logsource:
    category: process_creation
    product: windows
filter:
    rules: [base_rule]
    selection:
        User|endswith: '\\admin'
    condition: not selection
"""
    (rule, diags), = read_sigma_rules(text)
    assert rule is not None, diags
    assert matches(rule, {"ProcessCommandLine": "x evil", "AccountName": "bob"})
    assert not matches(rule, {"ProcessCommandLine": "x evil", "AccountName": "ADMIN"})


def test_yaml_errors_are_located_and_never_raise():
    rules, problems = read_sigma_text("title: x\ndetection:\n  sel: [a\n", "bad.yml")
    assert not rules and problems[0].is_error
    assert "not valid YAML" in problems[0].message and problems[0].span.line >= 3


def test_hex_text_on_a_numeric_column_is_its_number():
    """Regression (SigmaHQ proc_creation_win_susp_elevated_system_shell_uncommon_parent.yml):
    `LogonId: '0x3e7'` on Defender's long LogonId was an EQUALS on the text '0x3e7', which no
    long ever equals, so the rule could never match (the Sigma backend refused it as always
    false, KQL as not a valid long).  Windows writes the SYSTEM logon id as 0x3e7; Defender
    holds it as 999."""
    cond = condition_of("""
        sel:
            LogonId: '0x3e7'
        condition: sel
    """)
    assert cond == ir.Predicate(ir.Field("LogonId", "long"), Op.EQUALS, (999,))
    rule, _ = read_one(sigma("sel:\n    LogonId: '0x3e7'\ncondition: sel"))
    assert matches(rule, {"LogonId": 999}) and not matches(rule, {"LogonId": 998})
    # on a string column (no schema: Sigma names) the text stays text
    rule, _ = read_one(sigma("sel:\n    LogonId: '0x3e7'\ncondition: sel"), schema=None)
    assert rule.condition == ir.Predicate(ir.Field("LogonId", "string"), Op.EQUALS, ("0x3e7",))
