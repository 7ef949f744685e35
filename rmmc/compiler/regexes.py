"""Facts about the model's regular expressions (RE2 syntax, which Python's own `re` parser
reads nearly alike) that several backends need to decide whether a target says a regex the
same way: whether a group always takes part in a match, whether it can match empty text."""

from __future__ import annotations


def parse(pattern: str):
    """Python's parse of a regex (RE2 syntax is nearly Python's), or None."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        return _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - a pattern Python cannot read: callers refuse
        return None


def group_always_set(pattern: str, group: int) -> bool:
    """Whether capture group `group` takes part in every match of `pattern` (it is inside no
    alternation and no optional repeat), so no engine's reading of an unset group matters."""
    from re import _constants as C  # type: ignore[attr-defined]

    tree = parse(pattern)
    if tree is None or group > tree.state.groups - 1:
        return False

    def visit(items, optional: bool) -> bool | None:
        for op, av in items:
            if op is C.SUBPATTERN:
                if av[0] == group:
                    return not optional
                found = visit(av[-1], optional)
            elif op is C.BRANCH:
                found = None
                for branch in av[1]:
                    found = visit(branch, True)
                    if found is not None:
                        break
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
                found = visit(av[2], optional or av[0] == 0)
            elif op in (C.ASSERT, C.ASSERT_NOT):
                found = visit(av[1], True)
            elif hasattr(C, "ATOMIC_GROUP") and op is C.ATOMIC_GROUP:
                found = visit(av, optional)
            else:
                continue
            if found is not None:
                return found
        return None

    return visit(tree, False) is True


def can_match_empty(pattern: str) -> bool:
    """Whether the regex may match an empty text somewhere (unknown patterns: yes)."""
    tree = parse(pattern)
    return tree is None or tree.getwidth()[0] == 0
