"""`rmmc check` over the real RMM rule corpus, judged by Microsoft's parser.

Every YAML rule and Markdown query is read; exactly the queries Microsoft's parser rejects
get errors, each on the line Microsoft reports (mapped into the original file); every YAML
file gets its not-valid-YAML warning; nothing crashes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmmc.compiler.check import check_paths

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def report(rmm_corpus: Path):
    return check_paths([str(rmm_corpus)])


def test_reads_every_yaml_rule_and_markdown_file(report, rmm_corpus):
    yaml_files = sorted(str(p) for p in rmm_corpus.rglob("*.yaml"))
    md_files = sorted(str(p) for p in rmm_corpus.rglob("*.md"))
    assert len(yaml_files) == 168
    checked = {f.path: f for f in report.files}
    for path in yaml_files:
        assert len(checked[path].rules) == 1, path
    # Query files with fenced blocks give their queries; a few are "Intentionally blank".
    ahq = [p for p in md_files if Path(p).name.startswith("RMM_AHQ_")]
    with_blocks = [p for p in ahq if "```" in Path(p).read_text(encoding="utf-8")]
    assert len(with_blocks) > 60
    assert all(len(checked[p].rules) >= 1 for p in with_blocks)
    assert all(not checked[p].rules and not checked[p].diagnostics for p in ahq if p not in with_blocks)
    internal = [d for d in report.diagnostics() if d.code.startswith("internal") or "internal" in d.code]
    assert not internal, internal[:3]


def test_every_yaml_file_is_warned_not_valid_yaml(report):
    for checked in report.files:
        if not checked.path.endswith(".yaml"):
            continue
        warnings = [d for d in checked.all_diagnostics() if "not valid YAML" in d.message]
        assert len(warnings) == 1, (checked.path, warnings)
        line = checked.source_text.splitlines()[warnings[0].span.line - 1]
        assert "dataTypes:" in line or warnings[0].span.line >= 1


def test_errors_are_exactly_microsofts_rejections(report, kusto_oracle):
    rules = [(f, r) for f in report.files for r in f.rules]
    verdicts = kusto_oracle.check_many(r.document.query for _, r in rules)
    mismatched, located = [], 0
    for (checked, rule), verdict in zip(rules, verdicts):
        ours = [d for d in rule.diagnostics if d.is_error]
        if bool(ours) == verdict.syntax_ok:
            mismatched.append((checked.path, rule.document.index, verdict.syntax_ok, [d.message for d in ours]))
            continue
        if ours:
            theirs = verdict.syntax_errors[0]
            # Microsoft's line is in query coordinates: map it into the file the same way.
            from rmmc.compiler.diagnostics import Span

            # Both positions in the file: the same place, or only white space and comments
            # apart (Microsoft reports a missing token just after the last good one).
            offset = _offset(rule.document.query, theirs.line, theirs.col)
            expected = rule.document.file_span(Span(offset, offset, theirs.line, theirs.col))
            low, high = sorted((ours[0].span.offset, expected.offset))
            between = re.sub(r"//[^\n]*", "", checked.source_text[low:high]).strip()
            assert not between, (checked.path, ours[0], theirs)
            located += 1
    assert not mismatched, mismatched
    assert located >= 5  # the broken RMM rules: Sha1 pipe, has_all has_any, trailing commas ...


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + column - 1


@pytest.mark.parametrize("relative, line, column, fragment", [
    ("RMM/DWService/rmm_DWService_createproc.yaml", 25, 5, "expected a query operator (where, extend, summarize, project, ...) after '|', found 'Sha1'"),
    ("RMM/Level/rmm_Level_createproc.yaml", 19, 30, "expected '(' after has_all, found 'has_any'"),
    ("RMM/ZohoAssist/rmm_ZohoAssist_netconn.yaml", 37, 7, "KQL does not allow a trailing comma here"),
    ("RMM/MSP360_CloudBerry/rmm_MSP360_CloudBerry_netconn.yaml", 24, 7, "KQL does not allow a trailing comma here"),
])
def test_known_broken_rules_are_located_exactly(report, rmm_corpus, relative, line, column, fragment):
    checked = {f.path: f for f in report.files}[str(rmm_corpus / relative)]
    (error,) = [d for d in checked.all_diagnostics() if d.is_error]
    assert (error.span.line, error.span.column) == (line, column)
    assert fragment in error.message
