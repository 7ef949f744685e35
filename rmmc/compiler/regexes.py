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


def ends_at_dollar_after_no_line_break(pattern: str) -> bool:
    """Whether the pattern's only `$` ends every match (it is the last item of the top-level
    sequence, or of groups that end it, outside any alternation) right after an item whose last
    character cannot be a line break (a literal other than `\\n`, a class without it, or a
    repeat of at least one of those).  RE2's `$` (the very end of the text) then matches
    exactly where PCRE's and Python's `$` (also before a final line break) do on a text that
    does not end with a line break, and nowhere on one that does: the regex there, and the
    text not ending with `\\n`, say RE2's test."""
    from re import _constants as C  # type: ignore[attr-defined]

    if pattern.count("$") != 1:
        return False
    tree = parse(pattern)
    if tree is None:
        return False

    def no_line_break(op, av) -> bool:
        if op is C.LITERAL:
            return av != 10
        if op is C.NOT_LITERAL:  # `[^\n]`
            return av == 10
        if op is C.IN:
            if av and av[0][0] is C.NEGATE:
                return any((o is C.LITERAL and a == 10) or (o is C.CATEGORY and a is C.CATEGORY_SPACE)
                           or (o is C.RANGE and a[0] <= 10 <= a[1]) for o, a in av[1:])
            return all((o is C.LITERAL and a != 10) or (o is C.RANGE and not a[0] <= 10 <= a[1])
                       or (o is C.CATEGORY and a in (C.CATEGORY_NOT_SPACE, C.CATEGORY_DIGIT, C.CATEGORY_WORD))
                       for o, a in av)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            low, _, items = av
            return low >= 1 and len(items) == 1 and no_line_break(*items[0])
        return False

    def last(items) -> bool:
        items = list(items)
        if not items:
            return False
        op, av = items[-1]
        if op is C.AT and av is C.AT_END:
            return len(items) >= 2 and no_line_break(*items[-2])
        if op is C.SUBPATTERN:
            return last(av[-1])
        return False

    return last(tree.data)
