"""Every SigmaHQ Windows rule of the shared corpus through rmmc, to every target.

Each rule file is read (`read_path`), each document compiled once (`compile_document`, the
default Defender schema), put into each target's default environment (`rmmc.environments`)
and emitted there (`rmmc.translation.emit_adapted`, as `translate_document` does; lossy
translations count as written, as with --allow-lossy).  Translated rules are counted per target and failures grouped by
reason (the first error message with its variable parts — quoted values, field names,
numbers — stripped); the table is printed and written to tests/_artifacts/sigma_corpus.json.
No rule may crash: an exception or an internal-error diagnostic fails the test.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rmmc.backends import targets
from rmmc.environments import environment_for
from rmmc.environments.adapt import adapt
from rmmc.translation import emit_adapted
from rmmc.backends.base import EmitOptions
from rmmc.compiler.documents import read_path
from rmmc.compiler.pipeline import compile_document

pytestmark = pytest.mark.corpus

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
TARGETS = ("kql", "sigma", "splunk", "eql", "esql")

# Measured on the 2,407 rules: 2,392 compile (15 refused: 12 keyword searches, 3 |fieldref).
# Of those, in defender-xdr KQL refuses the logsources with no Defender table (windows/security,
# system, powershell ...), 1 LogonId 'null' (text on a long column), and the rules reading a
# Sigma field Defender has no column for (IMPHASH in Hashes, Signed ...); in splunk-sysmon SPL
# refuses the Windows logs the environment does not read (system, application ...) and fields
# the add-ons do not extract; EQL and ES|QL in elastic-winlogbeat refuse regexes their Lucene
# dialect cannot say exactly (groups/flags, $, \b, RE2 syntax).
MEASURED_RULES = 2407
MEASURED_COMPILED = 2392
MEASURED_TRANSLATED = {"kql": 1701, "sigma": 2392, "splunk": 2093, "eql": 2348, "esql": 2304}

_QUOTED = re.compile(r"'.*?'(?=[\s,:;)]|$)|\".*?\"(?=[\s,:;)]|$)")
_NAMED = re.compile(r"\b(on|field|column|of|in) [A-Z][\w.]*")
_NUMBER = re.compile(r"\b\d+\b")
_KEY = re.compile(r"\b[A-Za-z_][\w.]*((?:\|\w+)+)(?=:)")


def reason(message: str) -> str:
    """An error message with its variable parts stripped, to group failures."""
    text = _QUOTED.sub("<v>", message)
    text = _NAMED.sub(lambda m: f"{m.group(1)} <field>", text)
    text = _KEY.sub(lambda m: f"<field>{m.group(1)}", text)
    return _NUMBER.sub("<n>", text)[:160]


def _internal(diagnostics) -> list[str]:
    return [d.message for d in diagnostics
            if d.is_error and (d.code == "internal" or d.message.startswith("internal error"))]


@pytest.fixture(scope="module")
def corpus_results(shared_dir: Path) -> dict[str, Any]:
    root = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    if not root.is_dir():
        pytest.skip("shared/corpus/sigma/rules/windows not present")
    files = sorted(root.rglob("*.yml"))
    translated = Counter()
    failures: dict[str, Counter] = {t: Counter() for t in TARGETS}
    examples: dict[str, dict[str, str]] = {t: {} for t in TARGETS}
    crashes: list[dict[str, str]] = []
    compiled_ok = documents = 0
    for path in files:
        read = read_path(str(path))
        crashes += [{"file": path.name, "stage": "read", "error": m} for m in _internal(read.diagnostics)]
        if not read.documents:
            for t in TARGETS:
                failures[t]["read: " + reason(next((d.message for d in read.diagnostics if d.is_error),
                                                   "no document"))] += 1
        for document in read.documents:
            documents += 1
            try:
                compiled = compile_document(document)
            except Exception as exc:  # noqa: BLE001 - a crash is what this test looks for
                crashes.append({"file": path.name, "stage": "compile", "error": repr(exc)})
                continue
            crashes += [{"file": path.name, "stage": "compile", "error": m} for m in _internal(compiled.diagnostics)]
            if not compiled.ok:
                why = "compile: " + reason(next((d.message for d in compiled.diagnostics if d.is_error), "no rule"))
                for t in TARGETS:
                    failures[t][why] += 1
                    examples[t].setdefault(why, path.name)
                continue
            compiled_ok += 1
            for t in TARGETS:
                try:
                    adapted = adapt(compiled.rule, environment_for(t, None))
                    if not adapted.ok:
                        errors = [d.message for d in adapted.diagnostics if d.is_error]
                        why = reason(errors[0])
                        failures[t][why] += 1
                        examples[t].setdefault(why, path.name)
                        continue
                    result = emit_adapted(t, adapted, EmitOptions())
                except Exception as exc:  # noqa: BLE001
                    crashes.append({"file": path.name, "stage": t, "error": repr(exc)})
                    continue
                crashes += [{"file": path.name, "stage": t, "error": m} for m in _internal(result.diagnostics)]
                errors = [d.message for d in result.diagnostics if d.is_error]
                if result.text and not errors:
                    translated[t] += 1
                else:
                    why = reason(errors[0] if errors else "empty output")
                    failures[t][why] += 1
                    examples[t].setdefault(why, path.name)
    return {"files": len(files), "documents": documents, "compiled": compiled_ok,
            "translated": dict(translated), "failures": failures, "examples": examples, "crashes": crashes}


def test_every_rule_translates_or_is_refused_with_a_reason(corpus_results, terminal_report):
    r = corpus_results
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "sigma_corpus.json").write_text(json.dumps({
        "files": r["files"], "documents": r["documents"], "compiled": r["compiled"],
        "translated": r["translated"], "crashes": r["crashes"],
        "failures": {t: [{"reason": k, "rules": n, "example": r["examples"][t].get(k)}
                         for k, n in c.most_common()] for t, c in r["failures"].items()},
    }, indent=1, ensure_ascii=False), encoding="utf-8")
    terminal_report(
        f"Sigma corpus: {r['files']} rules, {r['compiled']} compile; translated: "
        + ", ".join(f"{t} {r['translated'].get(t, 0)}" for t in TARGETS)
        + " (tests/_artifacts/sigma_corpus.json)")
    for t in TARGETS:
        top = r["failures"][t].most_common(3)
        if top:
            terminal_report(f"  {t:6} failures: " + "; ".join(f"{n} x {k[:90]}" for k, n in top))
    assert set(TARGETS) <= set(targets())
    assert not r["crashes"], r["crashes"][:5]
    assert r["files"] >= MEASURED_RULES and r["compiled"] >= MEASURED_COMPILED
    for t in TARGETS:
        assert r["translated"].get(t, 0) >= MEASURED_TRANSLATED[t], (t, r["failures"][t].most_common(5))


def test_reason_strips_variable_parts():
    assert reason("kql: '0x3e7' is not a valid long (field LogonId)") == "kql: <v> is not a valid long (field <field>)"
    assert (reason("esql: regex on ProcessCommandLine: the pattern is RE2 syntax")
            == "esql: regex on <field>: the pattern is RE2 syntax")
