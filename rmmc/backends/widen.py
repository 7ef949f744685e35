"""Widening: replace the parts of a condition a target cannot express by the constant that
makes the whole condition weaker, so the translation matches a superset of the events (never
fewer).  The replaced parts are returned so the backend reports each one as lossy."""

from __future__ import annotations

from typing import Callable

from rmmc.compiler.ir import And, Condition, Const, Not, Or, all_of


def widen(condition: Condition, inexpressible: Callable[[Condition], bool]) -> tuple[Condition, list[Condition]]:
    """`condition` with each inexpressible node replaced by True where it counts positively
    and by False under an odd number of `Not`s; and the nodes replaced.  A subtree with
    nothing to replace comes back as it was when rebuilding it would give an equal one (most
    rules: nothing is replaced, and the tree is not copied)."""
    replaced: list[Condition] = []

    def visit(node: Condition, positive: bool) -> Condition:
        if inexpressible(node):
            replaced.append(node)
            return Const(positive)
        if isinstance(node, Not):
            inner = visit(node.operand, not positive)
            if isinstance(inner, Const):
                return Const(not inner.value)
            return node if inner is node.operand else Not(inner)
        if isinstance(node, And):
            parts = [visit(o, positive) for o in node.operands]
            if any(isinstance(p, Const) and p == _FALSE for p in parts):
                return Const(False)
            if _same(parts, node.operands, And, _TRUE):  # what all_of would build again
                return node
            return all_of(parts)
        if isinstance(node, Or):
            parts = [visit(o, positive) for o in node.operands]
            if any(isinstance(p, Const) and p == _TRUE for p in parts):
                return Const(True)
            kept = [p for p in parts if not (isinstance(p, Const) and p == _FALSE)]
            if not kept:
                return Const(False)
            if len(kept) > 1 and _same(kept, node.operands, None, None):
                return node
            return kept[0] if len(kept) == 1 else Or(tuple(kept))
        return node

    return visit(condition, True), replaced


_TRUE, _FALSE = Const(True), Const(False)


def _same(parts: list[Condition], operands: tuple[Condition, ...], flattened: type | None,
          dropped: Condition | None) -> bool:
    """Whether `parts` are the node's own operands, at least two, none of which the rebuilding
    would flatten (a nested `flattened`) or drop (`dropped`): then it would build an equal node."""
    if len(parts) != len(operands) or len(parts) < 2:
        return False
    for part, operand in zip(parts, operands):
        if part is not operand or (flattened is not None and isinstance(part, flattened)) \
                or (dropped is not None and isinstance(part, Const) and part == dropped):
            return False
    return True
