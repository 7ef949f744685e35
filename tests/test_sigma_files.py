"""Sigma for the Sigma ecosystem: a rule's correlation goes to its own file, so a backend
without correlations still converts the rule; both files load together in pySigma; no field
depends on the day of the run, so two runs write the same bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sigma.backends.kusto")
from sigma.backends.kusto import KustoBackend  # noqa: E402
from sigma.collection import SigmaCollection  # noqa: E402
from sigma.correlations import SigmaCorrelationRule  # noqa: E402
from sigma.pipelines.microsoftxdr import microsoft_xdr_pipeline  # noqa: E402

import yaml  # noqa: E402

from rmmc.translation import translate_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _write(source: Path, out: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "rmmc", "translate", str(source), "--to", "sigma",
                           "-o", str(out), "-j", "1"], capture_output=True, cwd=ROOT, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a rule refused (reported), not a crash
    assert b"Traceback" not in done.stderr


def test_correlation_is_a_companion_file_and_the_stream_keeps_both():
    text = (ROOT / "rules" / "rmm_remotepc_netconn.txt").read_text(encoding="utf-8")
    [result] = translate_text(text, "sigma")
    assert result.ok
    [rule] = yaml.safe_load_all(result.text)
    assert "correlation" not in rule and rule["name"]
    [(suffix, companion)] = [c for c in result.companions if c[0] == ".correlation.yml"]
    [correlation] = yaml.safe_load_all(companion)
    assert correlation["correlation"]["rules"] == [rule["name"]]
    # standard output (one stream) still carries both, in order
    assert list(yaml.safe_load_all(result.stream)) == [rule, correlation]
    collection = SigmaCollection.from_yaml(result.text + "---\n" + companion)
    [corr] = [r for r in collection.rules if isinstance(r, SigmaCorrelationRule)]
    collection.resolve_rule_references()
    assert corr.rules[0].rule is not None


@pytest.mark.corpus
def test_rmm_sigma_outputs_convert_to_kusto_and_are_byte_identical(shared_dir, tmp_path):
    rmm = shared_dir / "corpus" / "rmm"
    first, second = tmp_path / "one", tmp_path / "two"
    _write(rmm, first)
    _write(rmm, second)
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(p.name for p in second.iterdir())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    rules = [first / n for n in files if not n.endswith((".correlation.yml", ".filters.yml"))]
    plain, with_table = 0, 0
    for path in rules:
        text = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        assert "date" not in doc or doc["date"]  # only the source's own date
        table = doc["logsource"].get("service")
        # `sigma convert -t kusto -p microsoft_xdr`; a Defender table without a Sigma logsource
        # (DeviceFileCertificateInfo) needs the pipeline's documented query_table option.
        pipeline = microsoft_xdr_pipeline(query_table=table) if table else microsoft_xdr_pipeline()
        [query] = KustoBackend(pipeline).convert(SigmaCollection.from_yaml(text))
        assert query.strip()
        plain += table is None
        with_table += table is not None
        companion = path.with_name(path.stem + ".correlation.yml")
        if companion.exists():
            both = SigmaCollection.from_yaml(text + "---\n" + companion.read_text(encoding="utf-8"))
            both.resolve_rule_references()
            assert any(isinstance(r, SigmaCorrelationRule) for r in both.rules)
    assert plain >= 240 and plain + with_table == len(rules) >= 355
