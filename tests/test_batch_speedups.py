"""Per-rule construction made cheaper, each against what it stands in for:
`rmmc.compiler.fast_replace.replace` against `dataclasses.replace` (the same copies, the same
refusals), the IR classes' slot-storing `__init__` against the one `dataclasses` writes, `widen`
keeping what it does not change against `widen` rebuilding every node."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field

import pytest

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span
from rmmc.compiler.fast_replace import replace


@dataclass(frozen=True)
class Derived:
    a: int
    b: str = "x"
    total: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.a * 2)


@dataclass
class WithInitVar:
    a: int
    scale: InitVar[int] = 1
    scaled: int = field(init=False, default=0)

    def __post_init__(self, scale: int) -> None:
        self.scaled = self.a * scale


def _same(obj, **changes):
    ours, theirs = replace(obj, **changes), dataclasses.replace(obj, **changes)
    assert type(ours) is type(theirs) and ours == theirs
    assert [getattr(ours, f.name) for f in dataclasses.fields(ours)] == \
        [getattr(theirs, f.name) for f in dataclasses.fields(theirs)]
    return ours


def test_copies_as_dataclasses_replace_does():
    span = Span(1, 2, 1, 2)
    diagnostic = Diagnostic(Severity.WARNING, "m", span, "c", None, subject="s")
    assert _same(diagnostic, path="p").subject == "s"
    predicate = ir.Predicate(ir.Field("A", "string"), ir.Op.EQUALS, ("x",), span=span)
    _same(predicate, values=("y", "z"))
    _same(predicate)
    assert _same(Derived(3), a=5).total == 10  # __post_init__ runs again
    assert _same(WithInitVar(2, 3), scale=4).scaled == 8


def test_refuses_what_dataclasses_replace_refuses():
    with pytest.raises(ValueError):
        replace(Derived(1), total=5)  # not an __init__ field
    with pytest.raises(TypeError):
        replace(Derived(1), nope=5)
    with pytest.raises(TypeError):
        replace(object())


def test_ir_nodes_get_the_slot_storing_init_with_the_same_parameters():
    """The IR's frozen slotted classes get `slots_init.fast_init`'s `__init__`: the same
    parameters and defaults as the one `dataclasses` writes, the same objects."""
    import inspect

    sped_up = [v for v in vars(ir).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
               and v.__module__ == ir.__name__ and v.__init__.__code__.co_name != "__init__"]
    assert {ir.Field, ir.Predicate, ir.And, ir.Or, ir.Not, ir.Const} <= set(sped_up)
    for cls in sped_up:
        fields = dataclasses.fields(cls)
        ordered = [f for f in fields if not f.kw_only] + [f for f in fields if f.kw_only]
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert [p.name for p in params] == [f.name for f in ordered]
        for p, f in zip(params, ordered):
            assert (p.kind is inspect.Parameter.KEYWORD_ONLY) == f.kw_only
            assert p.default is (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
    span = Span(1, 2, 3, 4)
    p = ir.Predicate(ir.Field("A"), ir.Op.CONTAINS, ("x",), span=span)
    assert (p.field, p.op, p.values, p.all_values, p.case_sensitive, p.negated, p.span) == \
        (ir.Field("A", "string"), ir.Op.CONTAINS, ("x",), False, False, False, span)
    assert p == ir.Predicate(ir.Field("A"), ir.Op.CONTAINS, ("x",)) and hash(p) == hash(p.negate().negate())
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.values = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        ir.Predicate(ir.Field("A"))  # type: ignore[call-arg]


def _rebuilding_widen(condition, inexpressible):
    """`widen` as it was: every And / Or / Not rebuilt."""
    replaced = []

    def visit(node, positive):
        if inexpressible(node):
            replaced.append(node)
            return ir.Const(positive)
        if isinstance(node, ir.Not):
            inner = visit(node.operand, not positive)
            return ir.Const(not inner.value) if isinstance(inner, ir.Const) else ir.Not(inner)
        if isinstance(node, ir.And):
            parts = [visit(o, positive) for o in node.operands]
            if any(p == ir.Const(False) for p in parts):
                return ir.Const(False)
            return ir.all_of(parts)
        if isinstance(node, ir.Or):
            parts = [visit(o, positive) for o in node.operands]
            if any(p == ir.Const(True) for p in parts):
                return ir.Const(True)
            kept = [p for p in parts if p != ir.Const(False)]
            if not kept:
                return ir.Const(False)
            return kept[0] if len(kept) == 1 else ir.Or(tuple(kept))
        return node

    return visit(condition, True), replaced


def test_widen_keeping_unchanged_subtrees_gives_what_rebuilding_gives():
    import random

    from rmmc.backends.widen import widen

    rng = random.Random(16)

    def tree(depth):
        pick = rng.random()
        if depth <= 0 or pick < 0.35:  # a leaf: a constant now and then, else a test
            if rng.random() < 0.1:
                return ir.Const(rng.random() < 0.5)
            return ir.Predicate(ir.Field(rng.choice("ABCD")), ir.Op.EQUALS, (rng.choice("xyz"),))
        operands = tuple(tree(depth - 1) for _ in range(rng.randint(1, 4)))
        if pick < 0.6:
            return ir.And(operands)
        return ir.Or(operands) if pick < 0.9 else ir.Not(operands[0])

    for i in range(3000):
        condition, bad = tree(4), rng.choice("ABCD")
        seen = random.Random(i)
        ours = widen(condition, lambda n: isinstance(n, ir.Predicate) and n.field.name == bad
                     and seen.random() < 0.7)
        seen = random.Random(i)
        theirs = _rebuilding_widen(condition, lambda n: isinstance(n, ir.Predicate) and n.field.name == bad
                                   and seen.random() < 0.7)
        assert ours == theirs and type(ours[0]) is type(theirs[0])


def test_fold_to_ascii_table_holds_every_character_folding_to_ascii():
    from rmmc.compiler.evaluator import _ASCII_FOLDS, fold_to_ascii
    from rmmc.compiler.functions import fold

    folding = {c: fold(chr(c)) for c in range(0x80, 0x110000) if fold(chr(c)).isascii()}
    assert folding == _ASCII_FOLDS == {0x212A: "k"}
    for text in ("abc", "\u212aQL", "caf\u00e9 \u212a \u0130", "\u212a" * 3):
        assert fold_to_ascii(text) == "".join(
            f if not ch.isascii() and (f := fold(ch)).isascii() else ch for ch in text)
