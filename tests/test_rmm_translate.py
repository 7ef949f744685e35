"""Every valid rule of the real RMM corpus translates to every target (lossily where a target
cannot say it all, only when that is allowed; reading fields the target environment lacks, only
when that is allowed); the broken ones fail with their located errors and the rest of the batch
is still written; and nothing that fires differently, or reads a field the environment does
not have, is ever written unless --allow-lossy / --allow-unknown-fields asked for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.compiler.documents import iter_rule_files, read_path
from rmmc.translation import translate_document

pytestmark = pytest.mark.corpus

# The rules Microsoft's parser rejects (syntax), by file and the line of their error.
BROKEN = {
    "RMM/DWService/rmm_DWService_createproc.yaml": 25,
    "RMM/DWService/RMM_AHQ_DWService.md": 17,
    "RMM/JumpCloud/RMM_AHQ_JumpCloud.md": 18,
    "RMM/Level/rmm_Level_createproc.yaml": 19,
    "RMM/MSP360_CloudBerry/rmm_MSP360_CloudBerry_netconn.yaml": 24,
    "RMM/ZohoAssist/rmm_ZohoAssist_netconn.yaml": 37,
}


@pytest.fixture(scope="module")
def documents(rmm_corpus: Path):
    return [doc for path in iter_rule_files([str(rmm_corpus)]) for doc in read_path(path).documents]


@pytest.mark.parametrize("target", ["kql", "sigma", "splunk", "eql", "esql"])
def test_every_valid_rule_translates(documents, rmm_corpus, target, terminal_report):
    failed, broken_seen, verdicts = [], {}, {"exact": 0, "lossy": 0, "refused": 0}
    unknown = sourceless = 0
    for doc in documents:
        relative = str(Path(doc.path).relative_to(rmm_corpus))
        plain = translate_document(doc, target, EmitOptions())
        if not plain.ok and any(d.code == "environment" and d.is_error for d in plain.diagnostics):
            unknown += 1  # reads a field the default environment lacks: refused, with which
            assert all("allow-unknown-fields" in d.message or "has no source" in d.message
                       for d in plain.diagnostics if d.code == "environment" and d.is_error)
        strict = translate_document(doc, target, EmitOptions(), allow_unknown_fields=True)
        result = translate_document(doc, target, EmitOptions(allow_lossy=True), allow_unknown_fields=True)
        errors = [d for d in result.diagnostics if d.is_error]
        if relative in BROKEN and any(d.code == "syntax" for d in errors):
            broken_seen.setdefault(relative, errors[0].span.line)
            continue
        if any(d.code == "environment" and "has no source" in d.message for d in errors):
            sourceless += 1  # e.g. DeviceFileCertificateInfo: Sysmon has no such events
            continue
        if not result.ok:
            failed.append((relative, doc.index, [d.message for d in errors][:2]))
        # The policy: by default a translation is written only when it fires exactly as the rule.
        lossy = any(d.code == "lossy" for d in result.diagnostics)
        if result.ok:
            assert strict.ok != lossy, (relative, [d.message for d in strict.diagnostics if d.is_error][:2])
        assert not (strict.ok and any(d.code == "lossy" for d in strict.diagnostics))
        verdicts[strict.verdict if strict.ok else ("lossy" if lossy else "refused")] += 1
    assert broken_seen == BROKEN
    assert not failed, failed
    terminal_report(f"RMM corpus to {target}: {verdicts['exact']} exact, {verdicts['lossy']} lossy "
                    f"(written only with --allow-lossy), {verdicts['refused']} refused, with "
                    f"--allow-unknown-fields; {unknown} read a field the default environment lacks, "
                    f"{sourceless} a table it has no source for")
    if target in ("kql", "sigma"):
        assert sourceless == 0


def test_kql_output_passes_microsofts_semantic_check(documents, kusto_oracle_defender):
    texts = []
    for doc in documents:
        result = translate_document(doc, "kql", EmitOptions())
        if result.ok:
            texts.append((doc.path, result.text))
    verdicts = kusto_oracle_defender.check_many(text for _, text in texts)
    rejected = [(path, [e.message for e in v.errors][:2]) for (path, _), v in zip(texts, verdicts)
                if not v.ok]
    # Rules that group by a column the table does not have (the netconn rules use AccountUpn)
    # are refused by the defender-xdr environment, with a did-you-mean: every query written
    # passes Microsoft's parser with the Defender schema.
    assert len(texts) > 220
    assert not rejected, rejected[:5]


def test_every_eql_output_parses_with_elastics_eql_package(documents):
    eql = pytest.importorskip("eql", reason="the eql package is installed by make test")
    parsed = 0
    for doc in documents:
        result = translate_document(doc, "eql", EmitOptions(allow_lossy=True), allow_unknown_fields=True)
        if not result.ok:
            continue
        with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
            eql.parse_query(result.text)
        parsed += 1
    assert parsed == 359 - 113  # the 113 certificate rules: Winlogbeat has no such events
