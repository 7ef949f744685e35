"""`rmmc.compiler.fast_replace.replace` against `dataclasses.replace`: the same copies, the same
refusals."""

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
