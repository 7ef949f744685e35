"""Every `lossy` diagnostic a backend makes says what it is about (`Diagnostic.subject`), so a
property accepts a difference only on events where that part decides (tests/test_properties.py,
`judge`).  Checked on the source: each call of `lossy(...)` / `self.lossy(...)` in
rmmc/backends passes a subject (keyword, or the fourth positional argument)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BACKENDS = Path(__file__).resolve().parent.parent / "rmmc" / "backends"


def lossy_calls():
    for path in sorted(BACKENDS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "lossy":
                yield str(path.relative_to(BACKENDS)), node


CALLS = list(lossy_calls())


def test_there_are_lossy_calls_to_check():
    assert len(CALLS) > 20  # the scan finds the backends' calls (29 when written)


@pytest.mark.parametrize("where,call", [(f"{f}:{c.lineno}", c) for f, c in CALLS], ids=lambda x: x if isinstance(x, str) else "")
def test_every_lossy_call_names_its_subject(where, call):
    method = isinstance(call.func, ast.Attribute)  # self.lossy(message, span, subject)
    positional = 3 if method else 4
    assert any(k.arg == "subject" for k in call.keywords) or len(call.args) >= positional, \
        f"{where}: lossy(...) without a subject"
