"""Reproducers of the hostile-input sweep (issue 11), one group per defect, each fixed at its
cause: what a document is (decided by parsing), how a KQL string literal reads (as Microsoft's
parser reads it), how YAML is bounded, how files are written, how values are escaped per
target, and what a rule file may be.  The bounded mutation fuzz is in tests/test_fuzz.py.

Most tests run in this process (the library or click's runner); the few about what reaches a
real terminal or a real file system run the installed `rmmc`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from rmmc.compiler.documents import DocumentKind, read_path, read_text
from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql

REPO = Path(__file__).resolve().parents[1]
ORACLE_DIR = REPO / "tests" / "oracle"

GOOD_KQL = "DeviceProcessEvents\n| where FileName =~ 'good.exe'\n"
SIGMA_RULE = """title: Good Sigma
id: 6f4c3c31-3a57-4a55-9a5b-0c9a1d1b1b01
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\\\\evil.exe'
    condition: selection
level: high
"""


def rmmc(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("rmmc", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "rmmc.cli"]
    return subprocess.run(command + list(args), input=stdin, capture_output=True, text=True,
                          encoding="utf-8", errors="backslashreplace", cwd=cwd or REPO, timeout=120)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert result.returncode in (0, 1), (result.returncode, result.stderr[-2000:])


def literal_of(query: str):
    """The first string literal's value in `T | where x == <literal>`."""
    tree = parse_kql(query)
    return tree.statements[0].expr.operators[0].predicate.right.value, tree.warnings


# ============================================================ 1, 12: a document's kind is parsed


def test_1_check_reads_a_sigma_rule_as_sigma(tmp_path):
    from rmmc.compiler.check import check_paths

    rule = tmp_path / "rule.yml"
    rule.write_text(SIGMA_RULE, encoding="utf-8")
    report = check_paths([str(rule)])
    assert report.rule_count == 1 and report.ok, [d.message for d in report.diagnostics()]


def test_1_check_reports_what_the_sigma_reader_refuses(tmp_path):
    from rmmc.compiler.check import check_paths

    rule = tmp_path / "keywords.yml"
    rule.write_text(SIGMA_RULE.replace("        Image|endswith: '\\\\evil.exe'\n",
                                       "        - mimikatz\n"), encoding="utf-8")
    report = check_paths([str(rule)])
    errors = [d for d in report.diagnostics() if d.is_error]
    assert len(errors) == 1 and "keyword (full-text) search" in errors[0].message
    assert (errors[0].span.line, errors[0].span.column) == (8, 9)


@pytest.mark.corpus
def test_1_check_errors_are_exactly_the_rules_translate_refuses(shared_dir, terminal_report):
    """`rmmc check sigma/rules/windows` and `rmmc translate` agree rule by rule.  (Translated
    with lossy translations allowed: check reads rules, it does not judge a target, and a
    Sigma regex ending in `$` is lossy in Sigma output, PCRE reading it otherwise than RE2.)"""
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.check import check_paths
    from rmmc.compiler.documents import iter_rule_files
    from rmmc.translation import translate_file

    windows = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    if not windows.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    files = list(iter_rule_files([str(windows)]))
    report = check_paths(files)
    checked_bad = {(r.document.path, r.document.index) for f in report.files for r in f.rules
                   if not r.ok}
    refused = {(t.document.path, t.document.index) for path in files
               for t in translate_file(path, "sigma", EmitOptions(allow_lossy=True)) if not t.ok}
    assert report.rule_count == len(files)
    assert checked_bad == refused
    # The reader's refusals: 12 keyword searches and 3 fieldref rules.
    assert len(refused) == 15
    terminal_report(f"check over SigmaHQ windows: {len(checked_bad)} rules with errors, the same "
                    f"{len(refused)} translate refuses")


@pytest.mark.parametrize("text", [
    "{title: Flow, logsource: {category: process_creation, product: windows}, "
    "detection: {sel: {Image: a.exe}, condition: sel}}\n",
    "title: Half flow\nlogsource: {category: process_creation, product: windows}\n"
    "detection: {sel: {Image: a.exe}, condition: sel}\n",
    '"title": Quoted keys\n"logsource": {"category": process_creation}\n'
    '"detection":\n  "sel": {"Image": a.exe}\n  "condition": sel\n',
])
def test_12_sigma_in_any_yaml_style_is_sigma(text):
    result = read_text(text, "rule.yml")
    assert result.kind is DocumentKind.SIGMA, result.diagnostics
    (document,) = result.documents
    from rmmc.compiler.pipeline import compile_document

    compiled = compile_document(document)
    assert compiled.ok, compiled.diagnostics
    assert compiled.rule.source.table == "DeviceProcessEvents"


def test_12_sentinel_yaml_valid_or_not_stays_sentinel():
    valid = "id: 1\nname: Valid\nquery: |\n  DeviceProcessEvents\n  | take 1\n"
    broken = "id: 1\nname: Broken\nrequiredDataConnectors:\n  - connectorId: X\n dataTypes:\n    - Y\nquery: |\n  T\n"
    assert read_text(valid, "a.yaml").kind is DocumentKind.SENTINEL_YAML
    assert read_text(broken, "b.yaml").kind is DocumentKind.SENTINEL_YAML
    assert read_text(broken, "b.yaml").documents[0].query == "T"
    assert read_text("{name: Flow, query: T}", "c.yaml").kind is DocumentKind.SENTINEL_YAML


def test_12_broken_sigma_is_still_read_as_sigma_and_located():
    result = read_text(SIGMA_RULE.replace("    condition: selection", "  condition: [selection"),
                       "rule.yml")
    assert result.kind is DocumentKind.SIGMA
    (problem,) = [d for d in result.all_diagnostics if d.is_error]
    assert problem.message.startswith("not valid YAML") and problem.span is not None


def test_12_kql_with_a_colon_is_still_kql():
    text = "DeviceProcessEvents\n| where ProcessCommandLine has 'a: b'\n"
    assert read_text(text, "q.kql").kind is DocumentKind.KQL
    assert read_text("T | where x == 'y'", "q.txt").kind is DocumentKind.KQL


# ============================================================ 2, 11: KQL string literals


def test_11_surrogate_pair_escapes_are_one_character():
    assert literal_of(r"T | where x == '\uD83D\uDE00'") == ("\U0001F600", ())
    # Kusto strings are UTF-16: halves in two adjacent literals pair too.
    assert literal_of(r"T | where x == '\uD83D' '\uDE00'")[0] == "\U0001F600"


@pytest.mark.parametrize("literal, value", [
    (r"'\U0001F600'", "U0001F600"),
    (r"'\U00110000'", "U00110000"),
    (r"'\U00000041'", "U00000041"),
])
def test_11_backslash_capital_u_is_not_an_escape(literal, value):
    got, warnings = literal_of(f"T | where x == {literal}")
    assert got == value
    (warning,) = warnings
    assert warning.message.startswith("Kusto reads \\U") and warning.span.column == 17


def test_11_octal_escape_reads_following_digits_as_kusto_does():
    got, (warning,) = literal_of(r"T | where x == '\18'")
    assert got == "\x10"  # 1 * 8 + 8
    assert "U+0010" in warning.message
    assert literal_of(r"T | where x == '\101\x41\u0041'") == ("AAA", ())


@pytest.mark.parametrize("literal", [r"'\uD800x'", r"'\uDE00'", r"'x\uDE00\uD83D'"])
def test_2_lone_surrogate_is_a_located_error(literal):
    with pytest.raises(KqlSyntaxError) as caught:
        parse_kql(f"T | where x has {literal}")
    (problem,) = caught.value.diagnostics
    assert "surrogate" in problem.message and problem.span.column == 17


@pytest.mark.oracle
def test_11_literal_values_match_microsofts_parser(kusto_oracle):
    """Each literal's value as rmmc reads it is the one Kusto.Language gives (a literal whose
    value holds a lone surrogate is refused by rmmc instead)."""
    literals = [
        r"'\uD83D\uDE00'", r"'\U0001F600'", r"'\U00110000'", r"'\x41\101\u0041'", r"'\18'",
        r"'\189'", r"'\777'", r"'\7777'", r"'\08'", r"'\0'", r"'\a\b\f\n\r\t\v'", r"'\'\"\\'",
        r'"\"\'"', r"'\uD800x'", r"'\uDE00\uD83D'", r"'\uD83D' '\uDE00'", r"h'\x41'",
        r"@'a\b'", "@'it''s'", "'a' @'\\b' \"c\"", "```a\\u0041\n```", r"'\u00411'",
        r"'\xFFx'", "'\\1\u0663'",
    ]
    node = shutil.which("node")
    done = subprocess.run([node, str(ORACLE_DIR / "kqlvalues.js")], cwd=ORACLE_DIR,
                          input="\n".join(json.dumps(x) for x in literals) + "\n",
                          capture_output=True, text=True, encoding="utf-8",
                          errors="surrogatepass", timeout=60)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["literal"] for a in answers] == literals
    for answer in answers:
        assert answer["ok"], answer
        expected = answer["value"]
        if any("\ud800" <= ch <= "\udfff" for ch in expected):
            with pytest.raises(KqlSyntaxError):
                literal_of(f"T | where x == {answer['literal']}")
        else:
            assert literal_of(f"T | where x == {answer['literal']}")[0] == expected, answer


def test_2_kql_carriage_return_ends_a_string_as_in_kusto():
    with pytest.raises(KqlSyntaxError):
        parse_kql("T | where x == 'a\rb'")


# ============================================================ 2: lone surrogates end to end

SURROGATE_KQL = "DeviceProcessEvents | where ProcessCommandLine has '\\uD800x'\n"
SURROGATE_SENTINEL = ('id: 1\nname: "x\\ud800"\nseverity: High\nquery: |\n  DeviceProcessEvents\n'
                      '  | where FileName == "a.exe"\n')


@pytest.fixture
def surrogate_folder(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a_bad.kql").write_text(SURROGATE_KQL, encoding="utf-8")
    (folder / "b_bad_name.yaml").write_text(SURROGATE_SENTINEL, encoding="utf-8")
    (folder / "c_good.kql").write_text(GOOD_KQL, encoding="utf-8")
    return folder


@pytest.mark.parametrize("args", [
    ["translate", "{folder}", "--to", "splunk"],
    ["translate", "{folder}", "--to", "esql"],
    ["translate", "{folder}", "--to", "kql", "--package"],
    ["translate", "{folder}", "--to", "sigma", "--format", "json"],
    ["check", "{folder}", "--format", "json"],
    ["check", "{folder}"],
    ["explain", "{folder}"],
    ["verify", "{folder}", "--to", "kql,sigma"],
])
def test_2_lone_surrogates_never_end_in_a_traceback(surrogate_folder, args):
    result = rmmc(*[a.format(folder=surrogate_folder) for a in args])
    no_traceback(result)
    output = result.stdout + result.stderr
    if args[0] != "explain":
        assert "U+D800 is half of a UTF-16 surrogate pair" in output
    if "json" in args and args[0] == "check":
        (problem,) = [d for d in json.loads(result.stdout)["diagnostics"] if d["severity"] == "error"]
        assert (problem["line"], problem["column"]) == (1, 52)
    elif args[0] != "verify":
        assert "a_bad.kql:1:52: error" in output or '"line": 1' in output


def test_2_a_folder_with_a_bad_file_still_writes_the_good_rules(surrogate_folder, tmp_path):
    out = tmp_path / "out"
    result = rmmc("translate", str(surrogate_folder), "--to", "sigma", "-o", str(out))
    no_traceback(result)
    assert result.returncode == 1
    assert "2 of 3 rules translated" in result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["rule_3.yml", "x_ud800.yml"]  # c_good.kql (untitled: rule_3) and b_bad_name


def test_2_sentinel_surrogate_escape_is_not_valid_yaml():
    result = read_text(SURROGATE_SENTINEL, "bad.yaml")
    (document,) = result.documents
    assert document.title == "x\\ud800"  # kept as written: no text can hold the character
    (warning,) = document.warnings
    assert "surrogate" in warning.message and warning.span.line == 2
    assert json.dumps(document.title).encode("utf-8")


def test_2_sigma_surrogate_escape_is_a_located_error():
    text = SIGMA_RULE.replace("'\\\\evil.exe'", '"\\ud800"')
    problems = [d for d in read_text(text, "rule.yml").all_diagnostics if d.is_error]
    assert problems and problems[0].span is not None


# ============================================================ 3 and minors: YAML, bounded


def _alias_bomb(levels: int = 8, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_3_sigma_alias_bomb_is_refused_at_its_place():
    text = ("title: bomb\nlogsource: {category: process_creation, product: windows}\n"
            + _alias_bomb() + "detection:\n  sel:\n    Image: *a8\n  condition: sel\n")
    assert len(text) < 700
    result = read_text(text, "bomb.yml")
    assert result.kind is DocumentKind.SIGMA
    (problem,) = result.diagnostics
    assert problem.is_error and "alias" in problem.message and problem.span.line >= 3


@pytest.mark.parametrize("used_by", ["description", "tactics", "name"])
def test_3_sentinel_alias_bomb_is_handled(used_by):
    text = ("id: 1\nname: bomb\n" + _alias_bomb() + f"{used_by}: *a8\n"
            "query: |\n  DeviceProcessEvents\n  | take 1\n")
    result = read_text(text, "bomb.yaml")
    assert result.kind is DocumentKind.SENTINEL_YAML
    (document,) = result.documents
    assert document.query == "DeviceProcessEvents\n| take 1"
    assert any("alias bomb" in w.message for w in document.warnings)
    from rmmc.translation import translate_document

    assert translate_document(document, "kql", package=True).ok


def test_minor_merge_keys_are_applied_as_pysigma_loads_them():
    from rmmc.compiler.diagnostics import LineIndex
    from rmmc.compiler.sigma.yaml_tree import load_stream, plain

    text = ("base: &base {Image: a.exe, User: x}\nother: &other {User: y, Product: p}\n"
            "sel:\n  <<: [*base, *other]\n  User: z\n  CommandLine: c\n"
            "nested:\n  <<: {<<: *base, Extra: e}\n")
    (document,), problems = load_stream(text, LineIndex(text))
    assert not problems
    assert plain(document.root) == yaml.safe_load(text)
    assert list(plain(document.root)["sel"]) == list(yaml.safe_load(text)["sel"])


def test_minor_merge_keys_reach_the_detection():
    text = SIGMA_RULE.replace(
        "detection:\n    selection:\n        Image|endswith: '\\\\evil.exe'\n",
        "x-common: &common\n    Image|endswith: '\\\\evil.exe'\ndetection:\n    selection:\n"
        "        <<: *common\n        CommandLine|contains: steal\n")
    (document,) = read_text(text, "rule.yml").documents
    from rmmc.compiler.evaluator import matches
    from rmmc.compiler.pipeline import compile_document

    rule = compile_document(document).rule
    assert matches(rule, {"FolderPath": "C:\\evil.exe", "ProcessCommandLine": "steal it"})
    assert not matches(rule, {"FolderPath": "C:\\other.exe", "ProcessCommandLine": "steal it"})


def test_minor_python_tags_are_warned_about():
    text = SIGMA_RULE.replace("level: high", "level: !!python/object:os.system high")
    (document,) = read_text(text, "rule.yml").documents
    from rmmc.compiler.pipeline import compile_document

    tags = [d for d in compile_document(document).diagnostics if d.code == "sigma-yaml-tag"]
    assert len(tags) == 1 and "python/object" in tags[0].message and tags[0].span.line == 10


@pytest.mark.parametrize("condition", ["not " * 1000 + "selection",
                                       "(" * 150 + "selection" + ")" * 150,
                                       "selection and (" * 300 + "selection" + ")" * 300])
def test_minor_deep_sigma_conditions_are_located_errors(condition):
    text = SIGMA_RULE.replace("condition: selection", "condition: " + condition)
    result = read_text(text, "deep.yml")
    from rmmc.compiler.pipeline import compile_document

    diagnostics = list(result.diagnostics) + [d for doc in result.documents
                                              for d in compile_document(doc).diagnostics]
    errors = [d for d in diagnostics if d.is_error]
    if condition.startswith("(" * 150):  # brackets alone nest nothing: read as `selection`
        assert not errors
        return
    (problem,) = errors
    assert "nested too deeply" in problem.message and problem.span.line == 9


def test_minor_deep_yaml_nesting_is_a_located_error():
    text = SIGMA_RULE.replace("level: high", "level: " + "[" * 500 + "]" * 500)
    (problem,) = [d for d in read_text(text, "deep.yml").all_diagnostics if d.is_error]
    assert "too deep" in problem.message and problem.span is not None


# ============================================================ 4, 5, 6 and minors: writing files


class _Translated:
    """What `write_translations` reads of a translation (`RuleTranslation` takes its title
    from a rule document)."""

    def __init__(self, title: str, companions: bool):
        self.title, self.target, self.ok, self.document, self.suffix = title, "sigma", True, None, None
        self.text = f"title: {title}\n"
        self.companions = ((".filters.yml", f"filter of {title}\n"),) if companions else ()


def _results(*titles: str, companions: bool = False):
    return [_Translated(t, companions) for t in titles]


def test_6_a_rule_cannot_land_on_another_rules_companion(tmp_path):
    from rmmc.output import write_translations

    for order in (("Foo", "Foo.filters"), ("Foo.filters", "Foo")):
        out = tmp_path / "-".join(order)
        results = _results(*order, companions=True)
        written = write_translations(results, str(out))
        assert all(problem is None for _, problem in written.values())
        texts = {p.name: p.read_text() for p in out.iterdir()}
        assert len(texts) == 4  # two rules, two filter files: nothing lost, nothing replaced
        assert sorted(texts.values()) == sorted(
            [f"title: {t}\n" for t in order] + [f"filter of {t}\n" for t in order])


def test_6_with_force_a_companion_is_not_silently_replaced(tmp_path):
    from rmmc.output import write_translations

    results = _results("Foo", "Foo.filters", companions=True)
    write_translations(results, str(tmp_path), force=True)
    assert (tmp_path / "Foo.filters.yml").read_text() == "filter of Foo\n"
    assert (tmp_path / "Foo.filters_2.yml").read_text() == "title: Foo.filters\n"


def test_5_two_writers_never_both_write_one_name(tmp_path):
    """Eight writers into one directory at once: each file is reported written once."""
    from rmmc.output import write_translations

    titles = [f"Rule {i}" for i in range(40)]
    barrier = threading.Barrier(8)
    reports: list[dict] = []

    def writer():
        results = _results(*titles)
        barrier.wait()
        written = write_translations(results, str(tmp_path))
        reports.append({path for path, problem in written.values() if problem is None})

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [path for report in reports for path in report]
    assert len(claimed) == len(set(claimed)) == len(titles)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rmmc-")]


def test_5_an_existing_file_is_never_overwritten(tmp_path):
    from rmmc.output import write_translations

    (tmp_path / "Foo.yml").write_text("mine\n")
    (result,) = _results("Foo")
    path, problem = write_translations([result], str(tmp_path))[id(result)]
    assert path is None and "exists; not overwritten" in problem.message
    assert (tmp_path / "Foo.yml").read_text() == "mine\n"


def test_5_a_symlink_in_the_way_is_not_followed(tmp_path):
    from rmmc.output import write_translations

    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "Foo.yml").symlink_to(victim)
    (result,) = _results("Foo")
    assert write_translations([result], str(out))[id(result)][1] is not None
    write_translations([result], str(out), force=True)
    assert victim.read_text() == "keep\n"  # --force replaces the link, never its target
    assert (out / "Foo.yml").read_text() == "title: Foo\n"


@pytest.mark.parametrize("setup", ["dangling", "file_parent", "directory_in_the_way", "read_only"])
def test_4_write_failures_are_errors_for_their_rules_and_the_batch_goes_on(tmp_path, setup):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.kql").write_text(GOOD_KQL, encoding="utf-8")
    (rules / "b.kql").write_text(GOOD_KQL.replace("good", "other"), encoding="utf-8")
    out = tmp_path / "out"
    args = ["--force"] if setup == "directory_in_the_way" else []
    if setup == "dangling":
        out.symlink_to(tmp_path / "nowhere")
    elif setup == "file_parent":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "sub"
    elif setup == "directory_in_the_way":
        (out / "rule_1.kql").mkdir(parents=True)  # a.kql has no title: its file is rule_1.kql
    elif setup == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        out.mkdir()
        out.chmod(0o555)
    result = rmmc("translate", str(rules), "--to", "kql", "-o", str(out), *args)
    no_traceback(result)
    assert result.returncode == 1
    if setup == "directory_in_the_way":  # one rule fails, the other is written
        assert "1 of 2 rules translated" in result.stderr
        assert (out / "rule_2.kql").is_file()
        assert f"a.kql: error: cannot write {out / 'rule_1.kql'}: Is a directory" in result.stderr
    else:
        assert "0 of 2 rules translated" in result.stderr
        assert result.stderr.count("error:") == 2


def test_minor_files_are_created_with_the_umask(tmp_path):
    from rmmc.output import write_translations

    old = os.umask(0o022)
    try:
        results = _results("Foo", companions=True)
        write_translations(results, str(tmp_path))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        assert modes == {"Foo.yml": 0o644, "Foo.filters.yml": 0o644}
        os.chmod(tmp_path / "Foo.yml", 0o644)
        write_translations(results, str(tmp_path), force=True)
        assert stat.S_IMODE((tmp_path / "Foo.yml").stat().st_mode) == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize("title, stem", [("CON", "CON_"), ("nul", "nul_"), ("Com1", "Com1_"),
                                         ("LPT9.filters", "LPT9_.filters"), ("aux.log", "aux_.log"),
                                         ("COM\u00b9", "COM1_"), ("CONSOLE", "CONSOLE")])
def test_minor_windows_device_names_are_not_written(title, stem):
    from rmmc.output import safe_stem

    assert safe_stem(title, "rule_1") == stem


# ============================================================ 7, 8, 9, 10, 14: escaping per target


def _translate(kql: str, to: str, fields: str | None = None):
    from rmmc.translation import translate_text

    (result,) = translate_text(kql, to, fields=fields)
    return result


def test_7_a_column_name_cannot_inject_a_sigma_modifier():
    result = _translate("DeviceProcessEvents | where ['ProcessCommandLine|contains'] == 'mimikatz'",
                        "sigma")
    assert not result.ok and "|contains" not in result.text
    (problem,) = [d for d in result.diagnostics if d.is_error]
    assert "modifier" in problem.message and problem.span.column == 29


def test_8_spl_escaped_control_character_in_a_regex_reads_as_that_character():
    from rmmc.backends.splunk.backend import regex_string

    assert regex_string("a\\\tb") == '"a\\\\x{09}b"'      # `\<TAB>`: the TAB itself
    assert regex_string("a\tb") == '"a\\\\x{09}b"'
    assert regex_string("a\\\\\tb") == '"a\\\\\\\\\\\\x{09}b"'  # `\\` then a TAB
    assert regex_string("[\\\x01-\\\x1f]") == '"[\\\\x{01}-\\\\x{1f}]"'


def test_8_spl_regex_from_a_sigma_rule_matches_the_tab():
    text = SIGMA_RULE.replace("Image|endswith: '\\\\evil.exe'", 'CommandLine|re: "a\\\\\\tb"')
    (document,) = read_text(text, "rule.yml").documents
    from rmmc.translation import translate_document

    spl = translate_document(document, "splunk").text
    pattern = spl.split('match(coalesce(CommandLine, ""), "', 1)[1].split('")', 1)[0]
    pattern = pattern.replace("\\\\", "\\")  # the SPL string's own escapes
    import pcre  # tests/pcre.py: the system's PCRE2, as Splunk's match() reads the pattern

    assert pcre.search(pattern, "a\tb") and not pcre.search(pattern, "a\\x{09}b")


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"])
def test_9_yaml_line_break_characters_survive_sigma_output(char):
    result = _translate(f"DeviceProcessEvents | where ProcessCommandLine == 'a\\u{ord(char):04x}b'",
                        "sigma")
    assert result.ok
    assert char not in result.text  # written as an escape, not raw
    detection = yaml.safe_load(result.text)["detection"]
    assert f"a{char}b" in json.dumps(detection, ensure_ascii=False)
    from rmmc.compiler.sigma import read_sigma_rules

    ((rule, _),) = read_sigma_rules(result.text)
    from rmmc.compiler.evaluator import matches

    assert matches(rule, {"ProcessCommandLine": f"a{char}b"})
    assert not matches(rule, {"ProcessCommandLine": "a b"})


def test_9_sentinel_package_keeps_line_break_characters():
    result = _translate("DeviceProcessEvents | where ProcessCommandLine == 'a\\u0085b'", "kql")
    from rmmc.packaging import package
    from rmmc.compiler.kql.lower import lower_text

    rule = lower_text("DeviceProcessEvents | where ProcessCommandLine == 'a\\u0085b'").rule
    _, text, _ = package(rule, "kql", result.text + "// a\x85b\n")
    # (the FileHash entity's algorithm column is added after the query, on its own line)
    assert "// a\x85b\n| extend FileHashAlgorithm = 'SHA256'\n" in yaml.safe_load(text)["query"]


@pytest.mark.parametrize("query", [
    "DeviceProcessEvents | where ProcessCommandLine has '\\u212a'",
    "DeviceProcessEvents | where ProcessCommandLine hasprefix '\\u212aa'",
    "DeviceProcessEvents | where ProcessCommandLine =~ 'x\\u212a'",
    "DeviceProcessEvents | where ProcessCommandLine contains 'a\\u212ab'",
])
@pytest.mark.parametrize("target", ["sigma", "eql", "splunk"])
def test_10_kelvin_sign_needles_are_written_as_the_evaluator_folds_them(query, target):
    result = _translate(query, target)
    assert result.ok
    assert "\u212a" not in result.text  # written as `k`, with the term edges the evaluator sees
    if target == "sigma" and " has " in query:
        assert "(^|[^0-9A-Za-z])k($|[^0-9A-Za-z])" in result.text


@pytest.mark.parametrize("query", [
    "DeviceProcessEvents | where ProcessCommandLine has '\\u212a'",
    "DeviceProcessEvents | where ProcessCommandLine =~ 'x\\u212a' or ProcessCommandLine hasprefix '\\u212aa'",
])
def test_10_verify_agrees_on_kelvin_sign(query):
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.verify import verify_rule

    rule = lower_text(query).rule
    # Not EQL: Elasticsearch matches a character's one other case, so a Kelvin sign *in the
    # value* is no 'k' there (tests/test_escaping.py, test_eql_case_folds_like_the_model).
    _, verdicts = verify_rule(rule, ["sigma", "kql"])
    assert {v.target: v.status for v in verdicts if v.status != "unchecked"} \
        and all(v.status in ("agree", "unchecked") for v in verdicts), verdicts


def test_14_spl_writes_output_names_with_spaces():
    """A column SPL cannot name as it is (a space, a quote) gets the nearest plain name, said
    once as a change of shape: the rule translates, and fires as it does."""
    result = _translate(
        "DeviceLogonEvents\n| where ActionType == 'LogonFailed'\n"
        "| summarize ['Failed Count'] = count() by RemoteIP\n"
        "| project-rename ['Actor IP Address'] = RemoteIP\n| sort by ['Failed Count'] desc", "splunk",
        fields="defender")  # the columns as they are: this is about SPL's names, not an environment
    assert result.ok, result.diagnostics
    assert '| stats count as Failed_Count by RemoteIP' in result.text
    assert '| rename RemoteIP as Actor_IP_Address' in result.text
    shapes = [d.message for d in result.diagnostics if d.code == "shape"]
    assert any("'Failed Count' is named Failed_Count" in m for m in shapes)
    quoted = _translate("DeviceLogonEvents | summarize ['say \"hi\"'] = count()", "splunk", fields="defender")
    assert quoted.ok and "as say__hi_" in quoted.text


def test_14_template_placeholders_are_located_errors():
    query = ("SecurityEvent\n| where TimeGenerated between (todatetime('{{StartTimeISO}}') .. "
             "todatetime('{{EndTimeISO}}'))\n| where EventID == 4625\n")
    result = _translate(query, "sigma")
    (problem,) = [d for d in result.diagnostics if d.is_error]
    assert "internal" not in problem.code and "template placeholder" in problem.message
    assert (problem.span.line, problem.span.column) == (2, 32)


@pytest.mark.parametrize("literal", ["int(abc)", "real(x1)", "datetime(not a date)"])
def test_14_unreadable_typed_literals_are_located_errors(literal):
    result = _translate(f"DeviceProcessEvents | where ProcessId == {literal}", "kql")
    (problem,) = [d for d in result.diagnostics if d.is_error]
    assert problem.code != "internal" and problem.span.column == 42


# ============================================================ 13 and minors: what a rule file is


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_13_a_fifo_is_skipped_with_a_diagnostic(tmp_path):
    (tmp_path / "good.kql").write_text(GOOD_KQL, encoding="utf-8")
    os.mkfifo(tmp_path / "x.kql")
    result = read_path(tmp_path / "x.kql")  # would block forever on open() without a writer
    (problem,) = result.diagnostics
    assert "not a regular file (a FIFO)" in problem.message
    for args in (["check", str(tmp_path)], ["translate", str(tmp_path), "--to", "kql"]):
        done = rmmc(*args)
        no_traceback(done)
        assert "x.kql: error: not a regular file (a FIFO)" in done.stdout + done.stderr


def test_minor_cr_only_line_ends_read_like_lf(repo_root):
    original = (repo_root / "rules" / "rmm_remotepc_netconn.txt").read_text(encoding="utf-8")
    mac = original.replace("\r\n", "\n").replace("\n", "\r")
    lf, cr = read_text(original, "a.txt"), read_text(mac, "b.txt")
    assert cr.kind is lf.kind is DocumentKind.HUNT
    assert [d.query for d in cr.documents] == [d.query for d in lf.documents]
    assert [len(d.scenarios) for d in cr.documents] == [len(d.scenarios) for d in lf.documents]
    assert not any(d.is_error for d in cr.all_diagnostics)
    kql = read_text("DeviceProcessEvents\r| where FileName == 'a'\r| bad bad", "c.kql")
    from rmmc.compiler.check import check_document

    (problem,) = [d for d in check_document(kql.documents[0]).diagnostics if d.is_error]
    assert problem.span.line == 3


@pytest.mark.parametrize("query", ["T | where and", "T | where or == 1", "T | where x.and == 1",
                                   "let and = 1; T", "T | extend or = 1"])
def test_minor_and_or_are_not_names(query):
    with pytest.raises(KqlSyntaxError):
        parse_kql(query)


def test_minor_and_or_still_work_as_operators_and_bracketed_names():
    parse_kql("T | where andx == 1 and orx == 2 or ['and'] == 3")
    parse_kql("T | evaluate foo(a and b)")


def test_minor_duckdb_kql_escape_gap_is_not_a_disagreement():
    pytest.importorskip("duckdb_kql")
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.verify import verify_rule

    rule = lower_text("DeviceProcessEvents | where ProcessCommandLine has 'a\\u0001b'").rule
    _, (verdict,) = verify_rule(rule, ["kql"])
    assert verdict.status == "unchecked" and "escapes" in verdict.detail
