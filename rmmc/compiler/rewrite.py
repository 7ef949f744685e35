"""Exact rewrites of tests on expressions into tests on raw fields.

A rule written in KQL may test a computed value (`tolower(x) == 'a'`, `split(url, '/')[0]
endswith 'x.com'`).  Languages without expressions (Sigma, EQL) can still say such a test
when it equals a test on the field itself.  `simplify(condition)` rewrites each predicate
whose subject is an expression into one on the field wherever the two select exactly the same
events under the reference evaluator, and leaves it alone otherwise:

* `tostring(x)` of a string is `x`;
* `tolower(x) <op> v` case-insensitively is `x <op> v`; case-sensitively it is the same test
  for each value that `tolower` leaves unchanged, and can never hold for one it would change
  (folding is idempotent, so a folded text holds no character that folding changes);
* `isempty(tolower(x))` / `isempty(tostring(x))` is `isempty(x)`;
* a string test (equality, contains, startswith, endswith, a cased or not) on one segment of
  a split (`split(x, 'c')[i]`, one delimiter character), on what is left after
  `trim_start` / `trim_end` of a finite set of literal texts none of which begins (ends)
  another, or on `substring(x, k)`, is a regular expression on `x`, built from the evaluator's
  own folding (each letter as the class of every character that folds to it) so that no
  engine's idea of case changes its meaning; a trim also needs "x does not start with any of
  them", a `startswith` test of its own.

Anything else is left as it is: the backend then says it, or refuses it.
"""

from __future__ import annotations

import re

from dataclasses import replace
from functools import lru_cache
from typing import Any, Callable

from rmmc.compiler import ir
from rmmc.compiler.functions import STRING_TYPES, fold

_STRING_TESTS = frozenset({ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.ENDSWITH,
                           ir.Op.TERM, ir.Op.TERM_PREFIX, ir.Op.TERM_SUFFIX})
_REGEX_TESTS = frozenset({ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.ENDSWITH})


def simplify(condition: ir.Condition) -> ir.Condition:
    """The condition with every predicate on an expression rewritten onto a field where exact."""
    if isinstance(condition, ir.Predicate):
        return simplify_predicate(condition)
    if isinstance(condition, ir.And):
        parts = [simplify(o) for o in condition.operands]
        return condition if ir.unchanged_operands(parts, condition.operands, ir.And) else ir.all_of(parts)
    if isinstance(condition, ir.Or):
        parts = [simplify(o) for o in condition.operands]
        return condition if ir.unchanged_operands(parts, condition.operands, ir.Or) else ir.any_of(parts)
    if isinstance(condition, ir.Not):
        inner = simplify(condition.operand)
        if inner is condition.operand and not isinstance(inner, ir.Const):
            return condition  # what `ir.Not(inner)` would build again
        return ir.Const(not inner.value) if isinstance(inner, ir.Const) else ir.Not(inner)
    return condition


def without_columns(condition: ir.Condition, names: frozenset[str],
                    negated: bool = False) -> ir.Condition | None:
    """The condition as it reads on rows that lack the columns `names` (a union's branch whose
    table has none of them: KQL gives null there, a string ''): each test reading only such
    columns is decided by the evaluator on a row without them.  A test it cannot decide that
    way is None: one that also reads other columns, or whose verdict is unknown (a comparison
    with null) under a `not`, where unknown is not false.  Outside any `not`, unknown filters
    a row out as false does, so it reads as false."""
    if isinstance(condition, (ir.And, ir.Or)):
        parts = [without_columns(o, names, negated) for o in condition.operands]
        if any(p is None for p in parts):
            return None
        return (ir.all_of if isinstance(condition, ir.And) else ir.any_of)(parts)  # type: ignore[arg-type]
    if isinstance(condition, ir.Not):
        inner = without_columns(condition.operand, names, not negated)
        if inner is None:
            return None
        return ir.Const(not inner.value) if isinstance(inner, ir.Const) else ir.Not(inner)
    if isinstance(condition, ir.Const):
        return condition
    read = {f.name for f in ir.expr_fields(condition)}
    if not read & names:
        return condition
    if not read <= names:
        return None
    from rmmc.compiler.evaluator import evaluate

    verdict = evaluate(condition, {})
    if verdict is None:
        return None if negated else ir.Const(False)
    return ir.Const(bool(verdict))


def _is_string(expr: Any) -> bool:
    return getattr(expr, "type", None) in STRING_TYPES


def _call(expr: Any, *names: str) -> bool:
    return isinstance(expr, ir.Call) and expr.function in names


def simplify_predicate(p: ir.Predicate) -> ir.Condition:
    subject = p.field
    if isinstance(subject, ir.Field) or not isinstance(subject, ir.Call):
        return p
    # tostring(x) of a string x is x
    if _call(subject, "tostring") and _is_string(subject.args[0]):
        return simplify_predicate(replace(p, field=subject.args[0]))
    if p.op is ir.Op.EMPTY and _call(subject, "tolower", "toupper") and _is_string(subject.args[0]):
        return simplify_predicate(replace(p, field=subject.args[0]))
    if _call(subject, "tolower") and _is_string(subject.args[0]) and p.op in _STRING_TESTS:
        return _lowered(p, subject.args[0])
    rewritten = _as_regex(p)
    return rewritten if rewritten is not None else p


def _lowered(p: ir.Predicate, inner: ir.Expr) -> ir.Condition:
    """`tolower(inner) <op> values` as a test on `inner`."""
    if not p.case_sensitive:
        return simplify_predicate(replace(p, field=inner))
    values = tuple(v for v in p.values if isinstance(v, str) and fold(v) == v)
    if len(values) != len(p.values):
        if p.all_values or not values:  # a value folding changes can never be matched
            return ir.Const(p.negated)
    return simplify_predicate(replace(p, field=inner, values=values, case_sensitive=False))


# ------------------------------------------------------------------ tests as regexes


@lru_cache(maxsize=None)
def _folds_to() -> dict[str, str]:
    """For each character that some other character folds to, the class of all of them
    (`k` -> `kK\\u212a`): what a case-insensitive match of that character accepts."""
    classes: dict[str, list[str]] = {}
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        ch = chr(code)
        folded = fold(ch)
        if folded != ch:
            classes.setdefault(folded, [folded]).append(ch)
    return {k: "".join(v) for k, v in classes.items()}


def literal_regex(text: str, case_sensitive: bool, exclude: str = "") -> str:
    """A regex matching exactly `text` (case-insensitively as the evaluator folds when not
    cased); each character class leaves out the characters of `exclude`."""
    out = []
    for ch in text:
        if case_sensitive:
            out.append(re.escape(ch))
            continue
        members = _folds_to().get(fold(ch), fold(ch))
        members = "".join(m for m in members if m not in exclude) or members
        out.append(re.escape(members) if len(members) == 1 else
                   "[" + "".join(_class_char(m) for m in members) + "]")
    return "".join(out)


def _class_char(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[" else ch


def _any(exclude: str) -> str:
    return "[^" + "".join(_class_char(c) for c in exclude) + "]" if exclude else "."


def _body(op: ir.Op, value: str, case_sensitive: bool, exclude: str) -> str | None:
    """The whole-value regex (without anchors) of `<op> value`, over characters not in
    `exclude`; None when no such value can hold it (the needle holds an excluded character)."""
    if any(ch in exclude for ch in value):
        return None
    needle = literal_regex(value, case_sensitive, exclude)
    anything = _any(exclude) + "*"
    if op is ir.Op.EQUALS:
        return needle
    if op is ir.Op.CONTAINS:
        return anything + needle + anything
    if op is ir.Op.STARTSWITH:
        return needle + anything
    if op is ir.Op.ENDSWITH:
        return anything + needle
    return None


class _View:
    """How a string expression of one field reads that field: `wrap(body)` is the condition
    on the field that holds exactly when the expression's value matches `^body$`;
    `exclude` are characters the value can never hold; `empty` the condition on the field
    under which the value is '' whatever `body` says (out of a split's range)."""

    def __init__(self, field: ir.Field, wrap: Callable[[str], ir.Condition], exclude: str = "",
                 empty: ir.Condition = ir.Const(False)):
        self.field, self.wrap, self.exclude, self.empty = field, wrap, exclude, empty


def _regex_predicate(field: ir.Field, body: str) -> ir.Condition:
    return ir.Predicate(field, ir.Op.REGEX, ("(?s)^(?:" + body + ")$",), case_sensitive=True)


def _view(expr: Any) -> _View | None:
    """The view of a string expression over one string field, or None."""
    if isinstance(expr, ir.Field):
        if not _is_string(expr):
            return None
        return _View(expr, lambda body: _regex_predicate(expr, body))
    if not isinstance(expr, ir.Call):
        return None
    if expr.function == "tostring" and expr.args:
        inner = expr.args[0]
        if _is_string(inner):
            return _view(inner)
        if _call(inner, "index") and _call(inner.args[0], "split"):
            return _split_view(inner)
        return None
    if expr.function in ("trim_start", "trim_end") and len(expr.args) == 2:
        return _trim_view(expr)
    if expr.function == "substring" and len(expr.args) == 2:
        return _substring_view(expr)
    return None


def _split_view(index_call: ir.Call) -> _View | None:
    """`tostring(split(x, 'c')[i])`, i >= 0: the i-th run of characters other than c."""
    split, position = index_call.args
    if not (isinstance(position, ir.Literal) and isinstance(position.value, int)
            and not isinstance(position.value, bool) and position.value >= 0):
        return None
    if len(split.args) != 2 or not isinstance(split.args[1], ir.Literal):
        return None
    delimiter = split.args[1].value
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        return None
    inner = _view(split.args[0])
    if inner is None:
        return None
    i, d = position.value, re.escape(delimiter)
    other = _any(delimiter)

    def wrap(body: str) -> ir.Condition:
        return inner.wrap(f"(?:{other}*{d}){{{i}}}(?:{body})(?:{d}.*)?")

    # fewer than i+1 segments: at most i-1 delimiters, so segment i is null, read as ''
    empty = inner.wrap(f"{other}*(?:{d}{other}*){{0,{i - 1}}}") if i > 0 else ir.Const(False)
    return _View(inner.field, wrap, inner.exclude + delimiter, ir.any_of([inner.empty, empty]))


def _literal_set(pattern: str) -> list[str] | None:
    """The texts a simple regex matches when it matches finitely many (literals, `?`, small
    classes, alternations), else None."""
    try:
        from re import _parser  # type: ignore[attr-defined] - the parser of Python's own `re`

        parsed = _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - not Python syntax: not a simple set
        return None
    texts = _expand(list(parsed))
    if texts is None or not texts or len(texts) > 64:
        return None
    return texts


def _expand(items: list[Any]) -> list[str] | None:
    from re import _constants as C  # type: ignore[attr-defined]

    texts = [""]
    for op, av in items:
        if op is C.LITERAL:
            options = [chr(av)]
        elif op is C.IN:
            options = []
            for kind, value in av:
                if kind is C.LITERAL:
                    options.append(chr(value))
                elif kind is C.RANGE and value[1] - value[0] < 16:
                    options.extend(chr(c) for c in range(value[0], value[1] + 1))
                else:
                    return None
        elif op is C.SUBPATTERN:
            options = _expand(list(av[-1]))
        elif op is C.BRANCH:
            options = []
            for branch in av[1]:
                expanded = _expand(list(branch))
                if expanded is None:
                    return None
                options.extend(expanded)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] == 0 and av[1] == 1:
            inner = _expand(list(av[2]))
            options = None if inner is None else ["", *inner]
        else:
            return None
        if options is None:
            return None
        texts = [t + o for t in texts for o in options]
        if len(texts) > 64:
            return None
    return list(dict.fromkeys(texts))


def _trim_view(call: ir.Call) -> _View | None:
    """`trim_start(R, x)` / `trim_end(R, x)` where R matches finitely many texts, none of
    which starts (ends) another and none empty: the one that x starts (ends) with, if any, is
    removed."""
    pattern, source = call.args
    if not isinstance(pattern, ir.Literal) or not isinstance(pattern.value, str):
        return None
    texts = _literal_set(pattern.value)
    if texts is None or "" in texts:
        return None
    at_start = call.function == "trim_start"
    for a in texts:
        for b in texts:
            if a != b and (b.startswith(a) if at_start else b.endswith(a)):
                return None
    inner = _view(source)
    if inner is None or any(ch in inner.exclude for t in texts for ch in t):
        return None
    alternatives = "|".join(re.escape(t) for t in texts)
    none_of = ir.Not(ir.Predicate(inner.field, ir.Op.STARTSWITH if at_start else ir.Op.ENDSWITH,
                                  tuple(texts), case_sensitive=True)) if isinstance(source, ir.Field) else None
    if none_of is None:
        return None  # "x does not start with R" on a computed x has no field test

    def wrap(body: str) -> ir.Condition:
        cut = f"(?:{alternatives})(?:{body})" if at_start else f"(?:{body})(?:{alternatives})"
        return ir.any_of([inner.wrap(cut), ir.all_of([none_of, inner.wrap(body)])])

    return _View(inner.field, wrap, inner.exclude, inner.empty)


def _substring_view(call: ir.Call) -> _View | None:
    """`substring(x, k)`, k >= 0: x without its first k characters ('' when shorter)."""
    source, start = call.args
    if not (isinstance(start, ir.Literal) and isinstance(start.value, int)
            and not isinstance(start.value, bool) and start.value >= 0):
        return None
    inner = _view(source)
    if inner is None or inner.exclude:
        return None
    k = start.value
    empty = inner.wrap(f".{{0,{k - 1}}}") if k > 0 else ir.Const(False)
    return _View(inner.field, lambda body: inner.wrap(f".{{{k}}}(?:{body})"), "",
                 ir.any_of([inner.empty, empty]))


def _as_regex(p: ir.Predicate) -> ir.Condition | None:
    """A string test on a viewable expression as a condition on its field."""
    if p.op not in _REGEX_TESTS or p.field.type not in STRING_TYPES:
        return None
    view = _view(p.field)
    if view is None or isinstance(p.field, ir.Field):
        return None
    from rmmc.compiler.evaluator import evaluate_predicate

    tests = []
    for value in p.values:
        if not isinstance(value, str):
            return None
        body = _body(p.op, value, p.case_sensitive, view.exclude)
        test = view.wrap(body) if body is not None else ir.Const(False)
        # where the value is '' whatever the field holds, the test is the test of ''
        on_empty = evaluate_predicate(replace(p, field=ir.Field("_"), values=(value,), negated=False,
                                              all_values=False), {}) is True
        if on_empty:
            test = ir.any_of([test, view.empty])
        tests.append(test)
    combined = ir.all_of(tests) if p.all_values else ir.any_of(tests)
    return ir.Not(combined) if p.negated else combined
