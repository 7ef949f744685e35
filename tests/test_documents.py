"""Rule-document readers: seeds, the RMM corpus, synthetic and hostile inputs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmmc.compiler.diagnostics import Severity, Span
from rmmc.compiler.documents import (DocumentKind, FileResult, RuleDocument, iter_rule_files,
                                     read_bytes, read_path, read_text, sniff)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEEDS = SHARED / "seeds"
RMM = SHARED / "corpus" / "rmm"


@pytest.fixture(scope="module")
def rmm(rmm_corpus: Path) -> Path:
    """The RMM corpus (conftest's fixture skips when shared/ is absent)."""
    return rmm_corpus


@pytest.fixture(scope="module")
def seeds(shared_dir: Path) -> list[Path]:
    if not (shared_dir / "seeds").is_dir():
        pytest.skip("shared/seeds not present")
    return sorted((shared_dir / "seeds").glob("*.txt"))


def assert_maps(doc: RuleDocument) -> None:
    """Every query line is a slice of the file at its recorded start."""
    lines = doc.query.split("\n")
    assert len(doc.query_line_starts) == len(lines)
    for i, line in enumerate(lines):
        start = doc.query_line_starts[i]
        assert doc.source.text[start:start + len(line)] == line, (doc.path, i, line)


def approximate(doc: RuleDocument) -> bool:
    return any(w.code == "yaml-approximate" for w in doc.warnings)


def only(result: FileResult) -> RuleDocument:
    assert not result.diagnostics, result.diagnostics
    assert len(result.documents) == 1
    doc = result.documents[0]
    assert_maps(doc)
    return doc


def true_position(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


# -- hunt seeds ------------------------------------------------------------------------------

def test_seeds_read_as_hunt(seeds: list[Path]) -> None:
    assert len(seeds) == 2
    for path in seeds:
        result = read_path(path)
        assert result.kind is DocumentKind.HUNT
        doc = only(result)
        assert doc.kind is DocumentKind.HUNT and doc.path == str(path)
        assert doc.hypothesis and doc.hypothesis.startswith("The hypothesis is that an adversary")
        assert doc.query.startswith("let Time_start = now(-5d);")
        assert doc.query.endswith("RemoteUrl")
        meta = doc.metadata
        assert re.fullmatch(r"[0-9a-f-]{36}", meta["id"])
        assert doc.title == meta["name"]
        assert doc.title.startswith("Remote Management and Monitoring tool - ")
        assert meta["tactics"] == ["CommandAndControl"]
        assert meta["relevantTechniques"] == ["T1219"]
        assert meta["description"].startswith("Remote Monitoring and Management (RMM)")
        assert meta["requiredDataConnectors"] == [
            {"connectorId": "MicrosoftThreatProtection", "dataTypes": ["DeviceNetworkEvents"]}]
        assert "query" not in meta
        assert meta["sentinelTables"] == [{"Sentinel Table": "DeviceNetworkEvents",
                                           "Notes": "Ensure this data connector is enabled"}]
        assert len(doc.scenarios) == 5
        for scenario in doc.scenarios:
            assert scenario.title and scenario.exclusion and scenario.exclusion_span
            span = scenario.exclusion_span
            assert doc.source.text[span.offset:span.end] == scenario.exclusion
            assert (span.line, span.column) == true_position(doc.source.text, span.offset)
        assert all(w.severity is not Severity.ERROR for w in doc.warnings)
        # the query comes from the `KQL Query` section, i.e. right after that line
        marker = doc.source.text.index("KQL Query\n") + len("KQL Query\n")
        assert doc.query_line_starts[0] == marker


def test_seed_remotepc(seeds: list[Path]) -> None:
    doc = only(read_path(SEEDS / "000_a6ca6343ab42e337.txt"))
    assert doc.metadata["id"] == "30d32feb-6ac7-4d97-8a99-d40f5dfa61b5"
    first = doc.scenarios[0]
    assert first.title == "Scheduled System Maintenance via RemotePC"
    assert first.description.startswith("A system administrator uses RemotePC")
    assert first.exclusion == 'process.name == "schtasks.exe" || process.name == "taskhost.exe"'
    assert first.exclusion_span.column == len("Filter/Exclusion: ") + 1
    last = doc.scenarios[-1]
    assert last.exclusion == ('process.name == "RemotePCSupport.exe" '
                              '|| user.name == "support_user"')
    assert last.exclusion_span.end == len(doc.source.text)   # no trailing newline
    # `has` in `RemoteUrl has 'remotepc.com'` lands on its true line and column
    needle = "RemoteUrl has 'remotepc.com'"
    at = doc.query.index(needle) + len("RemoteUrl ")
    span = doc.file_span(Span(at, at + 3, 1, 1))
    expected = doc.source.text.index(needle) + len("RemoteUrl ")
    assert span.offset == expected and span.end == expected + 3
    assert (span.line, span.column) == (8, 19)
    assert doc.source.text[span.offset:span.end] == "has"


def test_seed_distantdesktop(seeds: list[Path]) -> None:
    doc = only(read_path(SEEDS / "003_f819effeae0fcc56.txt"))
    assert doc.metadata["id"] == "def063fd-a00f-4aec-9d46-e81fdf0bf1e9"
    assert "DistantDesktop" in doc.hypothesis
    assert all(s.description is None for s in doc.scenarios)
    assert doc.scenarios[0].exclusion == (
        "Exclude connections initiated from known admin IP ranges or during scheduled "
        "maintenance windows using a time-based filter.")


# -- the RMM corpus --------------------------------------------------------------------------

def test_corpus_yaml(rmm: Path) -> None:
    files = sorted(rmm.rglob("*.yaml"))
    assert len(files) == 168
    for path in files:
        result = read_path(path)
        assert result.kind is DocumentKind.SENTINEL_YAML
        doc = only(result)
        assert doc.kind is DocumentKind.SENTINEL_YAML
        assert doc.title and doc.title == doc.metadata["name"]
        assert doc.metadata["tactics"] == ["CommandAndControl"]
        assert doc.metadata["relevantTechniques"] == ["T1219"]
        assert doc.metadata["requiredDataConnectors"][0]["dataTypes"]
        assert len(doc.warnings) == 1, doc.warnings
        (warn,) = doc.warnings
        assert warn.severity is Severity.WARNING and warn.path == str(path)
        assert warn.message.startswith("file is not valid YAML (")
        assert warn.message.endswith("); read with the tolerant reader")
        data_types = next(i for i, line in enumerate(doc.source.text.splitlines(), 1)
                          if line.strip() == "dataTypes:")
        assert warn.span.line == data_types
        assert "\r" not in doc.query and not doc.query.endswith("\n")
        assert doc.query.split("\n")[0].strip()


def test_corpus_file_span(rmm: Path) -> None:
    doc = only(read_path(rmm / "RMM" / "ScreenMeet" / "rmm_ScreenMeet_netconn.yaml"))
    needle = "RemoteUrl has 'screenmeet.com'"
    at = doc.query.index(needle) + len("RemoteUrl ")
    span = doc.file_span(Span(at, at + 3, 1, 1))
    assert doc.source.text[span.offset:span.end] == "has"
    assert (span.line, span.column) == (18, 21)
    assert (span.line, span.column) == true_position(doc.source.text, span.offset)
    assert doc.source.text.count("\r\n") > 10   # CRLF preserved: offsets are file offsets


def test_corpus_all_tools(rmm: Path) -> None:
    doc = only(read_path(rmm / "Network Indicators" / "rmm__all_netconn.yaml"))
    assert doc.title == "Remote Management and Monitoring tool - All Tools - Network Connection"
    body = doc.query.split("datatable(URI:string,RMM_Tool:string)[\n", 1)[1].split("];", 1)[0]
    rows = [line for line in body.split("\n") if line.strip()]
    assert all(re.fullmatch(r"\s*'[^']*','[^']*',?", row) for row in rows)
    assert len(rows) == 186   # the brief said 170; the snapshot holds 186 rows
    assert rows[0].strip() == "'server.action1.com','action1',"
    assert rows[-1].strip() == "'zohostatic.in','ZohoAssist'"


def test_corpus_markdown(rmm: Path) -> None:
    queries = sorted(rmm.rglob("RMM_AHQ_*.md"))
    assert len(queries) == 77
    blank = 0
    for path in queries:
        result = read_path(path)
        assert result.kind is DocumentKind.MARKDOWN
        assert not result.all_diagnostics, result.all_diagnostics
        text = path.read_text(encoding="utf-8")
        if "Intentionally blank" in text:   # six tools have no query at all
            assert result.documents == ()
            blank += 1
            continue
        assert len(result.documents) >= 1
        h1 = text.splitlines()[0].lstrip("# ").strip()
        for index, doc in enumerate(result.documents):
            assert_maps(doc)
            assert doc.index == index and doc.kind is DocumentKind.MARKDOWN
            assert doc.title.startswith(h1 + " — ")
            assert "```" not in doc.query
    assert blank == 6
    for path in sorted(rmm.rglob("RMM_Summary_*.md")):
        result = read_path(path)
        assert result.documents == () and result.all_diagnostics == ()


def test_corpus_markdown_titles(rmm: Path) -> None:
    result = read_path(rmm / "RMM" / "ScreenMeet" / "RMM_AHQ_ScreenMeet.md")
    assert [d.title for d in result.documents] == [
        "Advanced Hunting Query for ScreenMeet — Create Process",
        "Advanced Hunting Query for ScreenMeet — File Signature",
        "Advanced Hunting Query for ScreenMeet — Network Connection"]
    net = result.documents[2]
    needle = "RemoteUrl has 'screenmeet.com'"
    at = net.query.index(needle) + len("RemoteUrl ")
    span = net.file_span(Span(at, at + 3, 1, 1))
    assert net.source.text[span.offset:span.end] == "has"
    assert (span.line, span.column) == true_position(net.source.text, span.offset)
    uri = only(read_path(rmm / "Network Indicators" / "RMM_AHQ_NetworkURI.md"))
    assert uri.title == "Advanced Hunting Query for all network indicators — NetworkConnection"
    assert "datatable(URI:string,RMM_Tool:string)" in uri.query


def test_iter_rule_files_on_corpus(rmm: Path) -> None:
    files = list(iter_rule_files([str(rmm)]))
    tools = [Path(p).parent.name for p in files if "/RMM/" in p]
    assert tools == sorted(tools)
    assert not any(p.endswith(("LICENSE", ".csv")) for p in files)
    assert sum(p.endswith(".yaml") for p in files) == 168
    assert list(iter_rule_files([str(rmm)])) == files   # deterministic


# -- Sentinel YAML, synthetic ----------------------------------------------------------------

VALID = """\
id: 0000
name: Valid rule
tactics:
  - Execution
  - Persistence
relevantTechniques: T1059, T1053
query: |
  DeviceProcessEvents
  | where FileName =~ "cmd.exe"

  | take 10
severity: High
"""


def test_strict_valid_yaml_has_no_warning() -> None:
    doc = only(read_text(VALID, "valid.yaml"))
    assert doc.kind is DocumentKind.SENTINEL_YAML and doc.warnings == ()
    assert doc.query == 'DeviceProcessEvents\n| where FileName =~ "cmd.exe"\n\n| take 10'
    assert doc.title == "Valid rule"
    assert doc.metadata["tactics"] == ["Execution", "Persistence"]
    assert doc.metadata["relevantTechniques"] == ["T1059", "T1053"]
    assert doc.metadata["severity"] == "High" and doc.metadata["id"] == 0
    assert doc.query_line_starts[0] == VALID.index("DeviceProcessEvents")


@pytest.mark.parametrize("header, expected", [
    ("|-", "A\n| take 1"), ("|+", "A\n| take 1"), ("|2", "A\n| take 1"), (">", "A\n| take 1")])
def test_block_scalar_styles(header: str, expected: str) -> None:
    text = f"name: n\nquery: {header}\n  A\n  | take 1\n\nversion: 1.0.0\n"
    doc = only(read_text(text, "s.yaml"))
    assert doc.query == expected and doc.warnings == ()
    assert doc.metadata["version"] == "1.0.0"


def test_crlf_and_bom_yaml() -> None:
    text = "\ufeffname: n\r\nquery: |\r\n    A\r\n    | where B\r\ntactics: X\r\n"
    doc = only(read_text(text, "crlf.yaml"))
    assert doc.query == "A\n| where B" and doc.warnings == ()
    assert doc.query_line_starts == (text.index("A"), text.index("| where"))
    assert doc.metadata["tactics"] == ["X"]


def test_single_line_queries_map_exactly() -> None:
    for text, query in [("query: DeviceEvents | take 1\n", "DeviceEvents | take 1"),
                        ("query: 'DeviceEvents | take 1'\n", "DeviceEvents | take 1"),
                        ('query: "A | where B == 1" # c\n', "A | where B == 1")]:
        doc = only(read_text(text, "q.yaml"))
        assert doc.query == query and doc.warnings == ()


def test_quoted_multiline_query_is_approximate() -> None:
    text = 'name: n\nquery: "DeviceEvents\n  | where A == \\"x\\""\n'
    result = read_text(text, "q.yaml")
    (doc,) = result.documents
    assert doc.query == 'DeviceEvents | where A == "x"'
    assert [w.code for w in doc.warnings] == ["yaml-approximate"]
    assert "approximate" in doc.warnings[0].message
    assert set(doc.query_line_starts) == {text.index('"DeviceEvents') + 1}


def test_unindented_blocks_are_tolerated() -> None:
    text = ("id: 1\ndescription: |\nsome words: here\nhttps://x.y/z\nquery: |\n"
            "DeviceEvents\n| where A: 1\n'x',\ntactics: Execution\n")
    doc = only(read_text(text, "u.yaml"))
    assert doc.query == "DeviceEvents\n| where A: 1\n'x',"
    assert doc.metadata["tactics"] == ["Execution"]
    assert doc.metadata["description"].startswith("some words: here\n")
    assert [w.code for w in doc.warnings] == ["yaml-invalid"]


def test_missing_query_is_an_error() -> None:
    result = read_text("id: 1\nname: no query here\n", "nq.yaml")
    assert result.documents == ()
    (diag,) = result.diagnostics
    assert diag.is_error and diag.message == "no query: key in Sentinel YAML"
    assert diag.path == "nq.yaml" and diag.span is not None


@pytest.mark.parametrize("text, message", [
    ("query: |\n", "query: in Sentinel YAML is empty"),
    ("name: x\nquery:\n", "query: in Sentinel YAML is empty"),
    ("query:\n  - a\n  - b\n", "query: in Sentinel YAML is a list, not text")])
def test_unusable_query_is_an_error(text: str, message: str) -> None:
    result = read_text(text, "e.yaml")
    assert result.documents == ()
    assert [d.message for d in result.diagnostics if d.is_error] == [message]


def test_numeric_query_maps() -> None:
    doc = only(read_text("query: 3.5\n", "n.yaml"))
    assert doc.query == "3.5" and doc.query_line_starts == (7,) and doc.warnings == ()


def test_invalid_yaml_warning_location() -> None:
    text = "name: a\nquery: |\n  T\n  | take 1\ntactics: [a, b\nx: y: z\n"
    result = read_text(text, "bad.yaml")
    (doc,) = result.documents
    assert doc.query == "T\n| take 1"
    first = doc.warnings[0]
    assert first.code == "yaml-invalid" and "not valid YAML (" in first.message
    assert first.span.line >= 5


# -- Markdown, plain, hunt: synthetic --------------------------------------------------------

MD = """\
# Rules
Intro.

## First
~~~~KQL
DeviceEvents
| take 1
~~~~

```python
print("not a query")
```

### Second
```
C:\\Program Files\\Thing
```

```kusto
let x = 1;
x
```
"""


def test_markdown_blocks() -> None:
    result = read_text(MD, "r.md")
    docs = result.documents
    assert [d.title for d in docs] == ["Rules — First", "Rules — Second"]
    assert [d.query for d in docs] == ["DeviceEvents\n| take 1", "let x = 1;\nx"]
    assert [d.index for d in docs] == [0, 1]
    for doc in docs:
        assert_maps(doc)
    assert result.diagnostics == ()


def test_markdown_unterminated_fence() -> None:
    text = "# T\n\n```kql\nDeviceEvents\n| take 1\n"
    (doc,) = read_text(text, "u.md").documents
    assert doc.query == "DeviceEvents\n| take 1"
    assert [w.code for w in doc.warnings] == ["md-unterminated"]
    assert doc.warnings[0].span.line == 3


def test_plain_kql_with_bom_and_blank_lines() -> None:
    text = "\ufeff\r\n\r\nDeviceEvents\r\n| take 1\r\n\r\n"
    doc = only(read_text(text, "q.kql"))
    assert doc.kind is DocumentKind.KQL
    assert doc.query == "DeviceEvents\n| take 1"
    assert doc.query_line_starts == (5, 19)
    assert doc.file_span(Span(0, 1, 1, 1)).line == 3


def test_hunt_with_fenced_query_and_multiline_exclusion() -> None:
    text = ("Hypothesis text.\n## KQL Query\n```kql\nA\n| take 1\n```\nid: 7\nname: N\n"
            "query: |\nA\n| take 1\n"
            "Scenario: one\nFilter/Exclusion: a == 1 or\n  b == 2\n")
    result = read_text(text, "h.txt")
    assert result.kind is DocumentKind.HUNT
    doc = only(result)
    assert doc.query == "A\n| take 1" and doc.title == "N" and doc.hypothesis == "Hypothesis text."
    (scenario,) = doc.scenarios
    assert scenario.exclusion == "a == 1 or\n  b == 2"
    assert text[scenario.exclusion_span.offset:scenario.exclusion_span.end] == scenario.exclusion


def test_sniff() -> None:
    assert sniff("DeviceEvents | take 1", "a.txt") is DocumentKind.KQL
    assert sniff("DeviceEvents | take 1", "a.yaml") is DocumentKind.SENTINEL_YAML
    assert sniff("name: x\nquery: |\n  T\n", "a.txt") is DocumentKind.SENTINEL_YAML
    assert sniff("# T\n```\nT\n```\n", "a.txt") is DocumentKind.MARKDOWN
    assert sniff("T\n| take 1\n```kql\n```\n", "a.kql") is DocumentKind.KQL
    assert sniff("# Summary\n- item\n", "a.txt") is DocumentKind.MARKDOWN
    assert sniff("Words.\nKQL Query\nT\nid: 1\n", "a.md") is DocumentKind.HUNT


# -- hostile inputs --------------------------------------------------------------------------

@pytest.mark.parametrize("data, code", [
    (b"", "doc-empty"), (b"  \n\t\n", "doc-empty"), (b"\xef\xbb\xbf", "doc-empty"),
    (b"\x00\x01\x02binary\xff", "doc-binary"), (b"ok\n\xc3\x28 bad", "doc-encoding"),
    (b"\xff\xfeq\x00", "doc-encoding")])
def test_hostile_bytes(data: bytes, code: str) -> None:
    for kind in (None, *DocumentKind):
        result = read_bytes(data, "x.yaml", kind)
        assert result.documents == ()
        (diag,) = result.diagnostics
        assert diag.is_error and diag.code == code and diag.path == "x.yaml"


def test_invalid_utf8_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.kql"
    path.write_bytes(b"DeviceEvents\n| where X == '\xe9'\n")
    (diag,) = read_path(path).diagnostics
    assert diag.code == "doc-encoding" and (diag.span.line, diag.span.column) == (2, 15)


@pytest.mark.parametrize("text", [
    "query: |\n\tDeviceEvents\n\t| take 1\n",
    "query: 'unterminated\nname: x\n",
    'query: "unterminated\n  more\n',
    "query: |\n",
    "query: [a, b\n",
    "query:\n  - a\n  - b\n",
    "query: {a: 1}\n",
    "- a\n- b\nquery: |\n  T\n",
    "name: !!python/object:os.system x\nquery: |\n  T\n",
    "a:\n" + "  " * 300 + "b: c\nquery: T\n",
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "query: T\n",
    ": : :\n? x\n---\n...\nquery: 1\n",
    "query: |\n  T\n" + "x" * 5000 + ":\n",
])
def test_hostile_yaml(text: str) -> None:
    for kind in DocumentKind:
        result = read_text(text, "h.yaml", kind)
        assert not any(d.code == "doc-internal" for d in result.all_diagnostics)
        for doc in result.documents:
            if not approximate(doc):
                assert_maps(doc)


def test_tab_query_is_read() -> None:
    doc = only(read_text("name: t\nquery: |\n\tDeviceEvents\n\t| take 1\n", "t.yaml"))
    assert doc.query == "DeviceEvents\n| take 1"
    assert doc.warnings[0].code == "yaml-invalid"


def test_large_inputs_are_linear() -> None:
    body = "".join(f"  | where A{i} has 'x{i}'\n" for i in range(400_000))
    big_yaml = "name: big\nquery: |\n  DeviceEvents\n" + body
    assert len(big_yaml) > 10_000_000
    junk = ("x: y: [z\n\t'\"|>-" * 800_000)[:10_000_000]
    started = time.perf_counter()
    doc = only(read_text(big_yaml, "big.yaml"))
    assert doc.query.count("\n") == 400_000
    assert any("larger than" in w.message for w in doc.warnings)
    for kind in DocumentKind:
        read_text(junk, "junk", kind)
        read_text("a" * 10_000_000, "one-line", kind)
    assert time.perf_counter() - started < 60


def test_unreadable_paths(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.kql", tmp_path):
        (diag,) = read_path(path).diagnostics
        assert diag.is_error and diag.code == "doc-unreadable" and diag.path == str(path)


def test_iter_rule_files(tmp_path: Path) -> None:
    for rel in ["b/z.kql", "b/a.md", "a.yml", "c.yaml", "d.csl", "e.txt", "LICENSE", "f.csv",
                ".hidden/x.kql", "node_modules/m.kql", ".venv/v.kql", "sub/deep/q.KQL"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("T")
    root = str(tmp_path)
    found = [str(Path(p).relative_to(tmp_path)) for p in iter_rule_files([root])]
    assert found == ["a.yml", "c.yaml", "d.csl", "e.txt", "b/a.md", "b/z.kql",
                     "sub/deep/q.KQL"]
    assert list(iter_rule_files(["-", root + "/LICENSE", "-"])) == ["-", root + "/LICENSE"]


# -- property: any text, any kind, only returns ---------------------------------------------

FRAGMENTS = ["query: |", "query: >-", "query:", "  ", "\t", "- ", "- a: b", "dataTypes:",
             "KQL Query", "Scenario: s", "Filter/Exclusion: x", "| T | N |", "|---|---|",
             "```kql", "```", "~~~", "# H", "'", '"', "[", "{", "}", "]", ": ", "#", "\r",
             "\ufeff", "let x = 1;", "| where A == 1", "name: n", "---", "&a ", "!t ", "|2-"]

texts = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=60)
      .map(lambda parts: "".join(p + ("\n" if i % 3 == 0 else "") for i, p in enumerate(parts))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, kind=st.sampled_from([None, *DocumentKind]))
def test_read_text_only_returns(text: str, kind: DocumentKind | None) -> None:
    result = read_text(text, "fuzz.txt", kind)
    assert isinstance(result, FileResult)
    assert not any(d.code == "doc-internal" for d in result.all_diagnostics), \
        result.all_diagnostics
    for doc in result.documents:
        assert doc.query.strip()
        if not approximate(doc):
            assert_maps(doc)
        for diag in doc.warnings:
            assert diag.path == "fuzz.txt"


def test_sniff_guards_never_hide_a_match(kql_corpus: Path, rmm: Path) -> None:
    """`classify` searches each line-start expression only where a word it needs is in the
    text; wherever an expression matches, its guard must hold (the Kelvin sign, which
    IGNORECASE matches for `k`, included), so the guarded and unguarded reads agree."""
    import importlib

    sniff_module = importlib.import_module("rmmc.compiler.documents.sniff")
    guards = {
        sniff_module._HUNT_MARKER: lambda t: "kql" in t.lower(),
        sniff_module._QUERY_KEY: lambda t: "query" in t,
        sniff_module._SIGMA_BODY: sniff_module._might_be_sigma,
        sniff_module._FENCE: lambda t: "```" in t or "~~~" in t,
        sniff_module._HEADING: lambda t: "#" in t,
    }
    texts = ["## \u212aql query\nScenario: x", "**kQl Query**:\r\n- Scenario: y", "'query': T",
             "filter:\n", "   ~~~kql", "###### x", "correlation :  # c\r\n"]
    for folder in (kql_corpus, rmm):
        texts += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.rglob("*"))
                  if p.is_file() and p.suffix in {".kql", ".txt", ".md", ".yaml", ".yml"}]
    matched = 0
    for text in texts:
        for expression, guard in guards.items():
            if expression.search(text):
                matched += 1
                assert guard(text), (expression.pattern, text[:80])
    assert matched > len(guards)


@given(st.text(alphabet="ab \t\r\n\ufeff", max_size=40), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 45)))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_line_pairs_are_split_lines_offsets_and_texts(text: str, start: int, end: int | None) -> None:
    from rmmc.compiler.documents.lines import join_pairs, line_pairs, split_lines

    pairs = line_pairs(text, start, end)
    assert pairs == [(line.start, line.text) for line in split_lines(text, start, end)]
    query, starts = join_pairs(pairs)
    assert query == "\n".join(t for _, t in pairs) and starts == tuple(s for s, _ in pairs)
