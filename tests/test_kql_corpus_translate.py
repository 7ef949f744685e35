"""The real hunting queries of ../shared/corpus/kql that read a Device* table, through every
target: nothing that fires differently is written unless lossy translations are allowed, and
to Sigma every threshold after an aggregation is a correlation condition or a refusal, never
silently dropped."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from rmmc.backends.base import EmitOptions
from rmmc.compiler import ir
from rmmc.compiler.documents import read_path
from rmmc.translation import translate_document

pytestmark = pytest.mark.corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.fixture(scope="module")
def device_documents(kql_corpus: Path):
    from exactness import device_files  # the files the README's exactness figures count

    files = device_files(kql_corpus)
    assert len(files) > 1000
    return [doc for path in files for doc in read_path(str(path)).documents]


@pytest.mark.parametrize("target", ["kql", "sigma", "splunk", "eql", "esql"])
def test_nothing_lossy_is_written_by_default(device_documents, target, terminal_report):
    verdicts = {"exact": 0, "lossy": 0, "refused": 0}
    for doc in device_documents:
        strict = translate_document(doc, target, EmitOptions())
        if strict.ok:
            assert not any(d.code == "lossy" for d in strict.diagnostics), (doc.path, strict.diagnostics)
        verdicts[strict.verdict] += 1
    assert verdicts["lossy"] == 0
    terminal_report(f"KQL corpus (Device*) to {target}: {verdicts['exact']} exact, "
                    f"{verdicts['refused']} refused (lossy ones are written only with --allow-lossy)")


def _threshold_after_summarize(rule: ir.Rule) -> bool:
    at = next((i for i, s in enumerate(rule.stages) if isinstance(s, ir.Summarize)), None)
    return at is not None and any(isinstance(s, ir.Filter) for s in rule.stages[at + 1:])


def test_every_threshold_to_sigma_is_a_correlation_condition_or_a_refusal(device_documents, terminal_report):
    from rmmc.compiler.pipeline import compile_document

    kept = refused = 0
    for doc in device_documents:
        compiled = compile_document(doc)
        if compiled.rule is None or not _threshold_after_summarize(compiled.rule):
            continue
        for allow in (False, True):
            result = translate_document(doc, "sigma", EmitOptions(allow_lossy=allow))
            if not result.ok:
                refused += not allow
                continue
            # the correlation is written to its own file (a companion of the rule's)
            texts = [result.text, *(text for _, text in result.companions)]
            correlation = [d for t in texts for d in yaml.safe_load_all(t) if d and "correlation" in d]
            condition = correlation[0]["correlation"]["condition"] if correlation else {"gte": 1}
            kept_threshold = condition != {"gte": 1}
            if not kept_threshold:  # written without its threshold: only when said and allowed
                assert allow and any(d.code == "lossy" and re.search(r"where|threshold", d.message)
                                     for d in result.diagnostics), (doc.path, result.text)
            elif not allow:
                kept += 1
    assert kept > 0
    terminal_report(f"KQL corpus (Device*) thresholds to Sigma: {kept} kept as the correlation's "
                    f"condition, {refused} refused, 0 written without it")
