"""`mv-expand todynamic(x)` / `mv-expand parse_json(x)` without a name: Microsoft's parser gives
the expanded column x's name (in x's place: `datatable(IPAddresses:string, X:long)[...] |
mv-expand todynamic(IPAddresses)` is `(IPAddresses:dynamic, X:long)`), and `todynamic(A.b)`
A_b, as for the bare forms."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rmmc.backends.kql import emit_kql
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.verify.whole import NOW

PROC = "DeviceProcessEvents"
EVENTS = [{ir.TABLE: PROC, "DeviceId": d, "ProcessCommandLine": c, "Timestamp": NOW - timedelta(hours=1)}
          for d, c in (("d1", '["a", "exe"]'), ("d2", '["b", "tar", "gz"]'))]


@pytest.mark.parametrize("function", ["todynamic", "parse_json"])
def test_the_expanded_column_keeps_the_name_inside_the_conversion(function):
    query = f"{PROC} | mv-expand {function}(ProcessCommandLine) | project DeviceId, A = tostring(ProcessCommandLine)"
    lowered = lower_text(query)
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    expand = next(s for s in lowered.rule.stages if isinstance(s, ir.MvExpand))
    assert [name for name, _, _ in expand.columns] == ["ProcessCommandLine"]
    rows = run(lowered.rule, EVENTS, now=NOW)
    assert sorted((r["DeviceId"], r["A"]) for r in rows) == [
        ("d1", "a"), ("d1", "exe"), ("d2", "b"), ("d2", "gz"), ("d2", "tar")]
    duckdb_kql = pytest.importorskip("duckdb_kql")  # noqa: F841
    from rmmc.verify.whole import run_kql_rows, same_rows

    written = emit_kql(lowered.rule)
    assert written.ok
    agree, why = same_rows(lowered.rule, rows, run_kql_rows(lowered.rule, written.text, EVENTS), EVENTS)
    assert agree, (written.text, why)


def test_a_member_inside_the_conversion_is_named_with_an_underscore():
    lowered = lower_text(f"{PROC} | extend B = parse_json('{{\"c\": [1, 2]}}') | mv-expand todynamic(B.c)")
    assert lowered.ok, [d.message for d in lowered.diagnostics]
    expand = next(s for s in lowered.rule.stages if isinstance(s, ir.MvExpand))
    assert [name for name, _, _ in expand.columns] == ["B_c"]
