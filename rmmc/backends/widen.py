"""Widening: replace the parts of a condition a target cannot express by the constant that
makes the whole condition weaker, so the translation matches a superset of the events (never
fewer).  The replaced parts are returned so the backend reports each one as lossy."""

from __future__ import annotations

from typing import Callable

from rmmc.compiler.ir import And, Condition, Const, Not, Or, all_of


def widen(condition: Condition, inexpressible: Callable[[Condition], bool]) -> tuple[Condition, list[Condition]]:
    """`condition` with each inexpressible node replaced by True where it counts positively
    and by False under an odd number of `Not`s; and the nodes replaced."""
    replaced: list[Condition] = []

    def visit(node: Condition, positive: bool) -> Condition:
        if inexpressible(node):
            replaced.append(node)
            return Const(positive)
        if isinstance(node, Not):
            inner = visit(node.operand, not positive)
            return Const(not inner.value) if isinstance(inner, Const) else Not(inner)
        if isinstance(node, And):
            parts = [visit(o, positive) for o in node.operands]
            if any(p == Const(False) for p in parts):
                return Const(False)
            return all_of(parts)
        if isinstance(node, Or):
            parts = [visit(o, positive) for o in node.operands]
            if any(p == Const(True) for p in parts):
                return Const(True)
            kept = [p for p in parts if p != Const(False)]
            if not kept:
                return Const(False)
            return kept[0] if len(kept) == 1 else Or(tuple(kept))
        return node

    return visit(condition, True), replaced
