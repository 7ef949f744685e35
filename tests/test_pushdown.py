"""rmmc.compiler.pushdown: filters moved into the detection mean the same rule."""

from __future__ import annotations

import rmmc
from rmmc.compiler import ir
from rmmc.compiler.pushdown import push_filters


def test_a_subquery_on_a_computed_column_moves_as_a_subquery_on_its_expression():
    # iff(x in (subquery), ...) of a computed x: the subquery tests the expression that computed
    # x (a subquery's subject may be any expression), so the whole filter moves into the
    # detection; no backend may answer it with an internal error (it once escaped as one)
    from rmmc.backends import emit
    from rmmc.backends.base import EmitOptions

    rule = rmmc.lower_text("""DeviceNetworkEvents
        | extend L = tolower(DeviceName)
        | extend Flag = iff(L in ((DeviceInfo | project DeviceName)), 1, 0)
        | where Flag == 1 and RemotePort == 445""").rule
    pushed = push_filters(rule)
    assert [type(s).__name__ for s in pushed.stages] == ["Extend", "Extend"]
    subjects = [n.field for n in _walk_all(pushed.condition) if isinstance(n, ir.InSubquery)]
    assert subjects == [ir.Call("tolower", (ir.Field("DeviceName"),))]
    assert ir.Predicate(ir.Field("RemotePort", "int"), ir.Op.EQUALS, (445,), case_sensitive=True) \
        in pushed.condition.operands
    for target in ("kql", "sigma", "splunk", "eql", "esql"):
        out = emit(target, rule, EmitOptions())
        assert not any(d.code == "internal" for d in out.diagnostics), target


def _walk_all(node):
    """Every condition node, conditions inside expressions (`iff(c, ...)`) too."""
    stack = [node]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, (ir.And, ir.Or)):
            stack.extend(item.operands)
        elif isinstance(item, ir.Not):
            stack.append(item.operand)
        elif isinstance(item, ir.Predicate):
            stack.append(item.field)
        elif isinstance(item, ir.Call):
            stack.extend(item.args)
        elif isinstance(item, ir.Boolean):
            stack.append(item.condition)


def test_without_columns_decides_tests_on_absent_columns():
    """A union branch whose table lacks a column reads it as KQL does (a string as ''): tests
    on it alone are decided; an unknown verdict is false outside a `not` and undecidable
    under one; a test that also reads other columns is undecidable."""
    from rmmc.compiler import ir
    from rmmc.compiler.rewrite import without_columns

    name, port, other = ir.Field("FileName"), ir.Field("RemotePort", "int"), ir.Field("DeviceName")
    absent = frozenset({"FileName", "RemotePort"})
    equals = ir.Predicate(name, ir.Op.EQUALS, ("x",))
    assert without_columns(equals, absent) == ir.Const(False)
    assert without_columns(ir.Predicate(name, ir.Op.EQUALS, ("x",), negated=True), absent) == ir.Const(True)
    assert without_columns(ir.Predicate(name, ir.Op.EQUALS, ("",)), absent) == ir.Const(True)  # '' == ''
    kept = ir.Predicate(other, ir.Op.EQUALS, ("ws1",))
    assert without_columns(ir.Or((equals, kept)), absent) == kept
    high = ir.Predicate(port, ir.Op.GT, (1000,))  # null > 1000: unknown
    assert without_columns(high, absent) == ir.Const(False)
    assert without_columns(ir.Not(high), absent) is None
    assert without_columns(ir.Compare(port, ">", ir.Field("LocalPort", "int")), absent) is None
