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


_NEGATED = r"\[\^(?:\\[^\sA-Za-z0-9]|[0-9A-Za-z]-[0-9A-Za-z]|[^\\\]\s-])+\]"  # a negated class that
# names no line break (escaped punctuation, literals, ranges between letters or digits)
_EVERY = r"\[\\s\\S\]|\[\\S\\s\]|\[\\w\\W\]|\[\\W\\w\]|\[\\d\\D\]|\[\\D\\d\]"
_NAMES_NEWLINE = r"\[(?!\^)(?:[^\]\\]|\\.)*?\\n(?:[^\]\\]|\\.)*\]"  # a class naming `\n` (whitespace)
_LINE_BREAK = f"(?:{_NEGATED}|{_EVERY}|{_NAMES_NEWLINE})"  # one character class that matches a line break
_ABSORBS = _LINE_BREAK + r"\*\??"
_ENDS = r"\)*(?:\|.*)?"  # what may follow: closing groups, then the end or another branch
_SAME_DOLLARS = [
    # `...[^\\]*$`: a match before a final line break can take it too
    (f"{_ABSORBS}\\Z", _ENDS),
    # `...(?:[^0-9A-Za-z][^\\]*)?$`: the group can also be that line break
    (f"\\(\\?:{_LINE_BREAK}{_ABSORBS}\\)\\?\\Z", _ENDS),
    # `($|[^0-9A-Za-z])` at the end: the class matches that line break
    (r"\((?:\?:)?\Z", f"\\|{_LINE_BREAK}\\){_ENDS}"),
]


def dollar_is_the_end(pattern: str) -> bool:
    """Whether each `$` of the pattern means what RE2's does (the very end of the text) in
    PCRE and Python too, where `$` also matches before a final line break: true when every
    unescaped `$` outside a class ends its branch right after a starred class that matches a
    line break (`[^\\\\]*$`, `[\\s\\S]*$`), or an optional group that starts with one and
    ends so (`(?:[^0-9A-Za-z][^\\\\]*)?$`), or is `($|C)` with such a class C.  A match
    before a final line break is then also one that takes the line break and ends at the very
    end, so the same texts match.  (rmmc's basename and term regexes end so.)"""
    import re

    if "$" not in pattern:
        return True
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern.startswith("[^]", i) or pattern.startswith("[]", i):
                i += 2 if pattern[i + 1] == "]" else 3  # a leading ']' is a literal
                continue
        elif ch == "$":
            if not any(re.search(before, pattern[:i]) and re.fullmatch(after, pattern[i + 1:], re.S)
                       for before, after in _SAME_DOLLARS):
                return False
        i += 1
    return True
