"""Sigma -> model -> Sigma -> model keeps the meaning, on every SigmaHQ Windows rule.

Each rule is read (default Defender schema), written back as Sigma by rmmc's backend, read
again, and both models are run by the reference evaluator on the boundary events `rmmc verify`
generates for the rule.  Exact mode: a translation with a lossy diagnostic would be an
approximation, and none is expected here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.backends.sigma.backend import emit_sigma
from rmmc.compiler.documents import read_path
from rmmc.compiler.evaluator import matches
from rmmc.compiler.pipeline import compile_document
from rmmc.compiler.sigma import read_sigma_rules
from rmmc.verify.engines import condition_only
from rmmc.verify.events import boundary_events

pytestmark = pytest.mark.corpus


def test_every_sigmahq_rule_round_trips_through_sigma(shared_dir: Path, terminal_report) -> None:
    root = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    checked, lossy, failures = 0, 0, []
    for path in sorted(root.rglob("*.yml")):
        for document in read_path(str(path)).documents:
            compiled = compile_document(document)
            if compiled.rule is None:
                continue
            rule = condition_only(compiled.rule)
            out = emit_sigma(rule, EmitOptions())
            assert out.ok, (path.name, [d.message for d in out.diagnostics if d.is_error])
            if any(d.code == "lossy" for d in out.diagnostics):
                lossy += 1
                continue
            (back, diagnostics), = read_sigma_rules(out.text)
            assert back is not None, (path.name, [d.message for d in diagnostics])
            events = boundary_events(rule, sample=10)
            differ = [e for e in events if matches(rule, e) != matches(back, e)]
            if differ:
                failures.append((path.name, differ[0]))
            checked += 1
    terminal_report(f"Sigma round trip: {checked} SigmaHQ rules read, written and read back "
                    f"evaluate alike on their boundary events; {lossy} skipped as lossy; "
                    f"{len(failures)} differ")
    assert not failures, failures[:5]
    assert checked >= 2300 and lossy <= 30
