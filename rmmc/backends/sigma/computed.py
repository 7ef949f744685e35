"""Tests on a computed value that Sigma can say as a test on the raw field.

Sigma tests event fields only.  `isnotempty(extract(R, g, X))` (and `isempty`, `== ''`,
`!= ''`) is a test on the field X when group g of R cannot match the empty string and takes
part in every match of R (g = 0: the whole match; g > 0: a group at R's top level, not inside
an alternative, an optional or a repeat): `extract` gives group g of R's first match in X, or ''
when R does not match (the evaluator's `functions._extract`, Kusto's extract() docs: "If
there's no match, or the type conversion fails: null", a null string reading as empty), so
the value is non-empty exactly when R matches X somewhere - the test `X matches regex R`,
which rmmc writes (and pySigma runs) as it writes any `matches regex` test.  A missing X
reads as '' in `extract` and matches no such R, as a regex test on a missing field does not.

`ipv4_is_private(X) == true` / `== false` (and their negations) is a regex test on X: the
evaluator (`functions._ipv4_is_private`; Kusto's ipv4_is_private() docs: true in 10/8,
172.16/12, 192.168/16, false otherwise, null when the text is no IPv4 address, an IP-prefix
`/n` allowed) strips the text (Python's `str.strip`: `functions.WHITESPACE`), cuts it at a '/'
and reads the rest as a dotted quad with no leading zeros; a null is neither true nor false.
So `== true` is `X matches ^WS*PRIVATE(/.*)?WS*$` and `== false` is the same with any address
and not with a private one.  The class of whitespace is written with its characters (RE2 and
Python read them alike), and `$` ends a starred class that takes a line break, so PCRE's and
Python's `$` (also before a final line break) match the same texts (`regexes.dollar_is_the_end`).

`parse_path(X).Extension == v` (`in`, `=~`, `in~`; v non-empty, with no '.', '/', '\\' or
':') is a test on X: the evaluator (`functions._parse_path`, after Kusto's documented examples)
takes the file name after X's last '/' or '\\' (a `scheme://` prefix ends with one), cuts an
alternate data stream at its first ':', and the extension after the name's last '.'.  So the
extension is v exactly when X ends with '.v' and has no ':' after its last separator, or the
name is `<no ':'>.v:<stream>`: `X|endswith: '.v'` and not `X|re: ':[^/\\]*$'`, or
`X|re: '(?:^|[/\\])[^/\\:]*\\.v:[^/\\]*$'` (each `$` after a class that takes a line break).

Before that, `isempty(E) and isempty(F)` is `isempty(E)` and `isnotempty(E) or isnotempty(F)`
is `isnotempty(E)` when F is empty wherever E is (F computed from E, and the evaluator gives
an empty F for E = '', which is also what a null string E reads as): `not(isempty(b64) and
isempty(base64_decode_tostring(b64)))` is then a test on b64 alone.

The widths come from Python's own regex parser (`re._parser`, which reads RE2's syntax as the
evaluator does after `re2_dollar`); a pattern it cannot read is left alone (and refused later
as any test on a computed value).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rmmc.compiler import ir


def raw_field_tests(condition: ir.Condition) -> ir.Condition:
    """The condition with each test above rewritten onto its raw field (the rest as it is)."""
    if isinstance(condition, ir.Predicate):
        return _extract_test(condition) or _private_test(condition) or _extension_test(condition) or condition
    if isinstance(condition, ir.And):
        return ir.all_of([raw_field_tests(o) for o in _absorbed(condition.operands, empty=True)])
    if isinstance(condition, ir.Or):
        return ir.any_of([raw_field_tests(o) for o in _absorbed(condition.operands, empty=False)])
    if isinstance(condition, ir.Not):
        return ir.Not(raw_field_tests(condition.operand))
    return condition


def _extract_test(p: ir.Predicate) -> ir.Condition | None:
    call = p.field
    if not (isinstance(call, ir.Call) and call.function == "extract" and len(call.args) == 3):
        return None
    pattern, group, subject = call.args
    if not (isinstance(pattern, ir.Literal) and isinstance(pattern.value, str)
            and isinstance(group, ir.Literal) and isinstance(group.value, int) and not isinstance(group.value, bool)
            and isinstance(subject, ir.Field) and subject.type in ("string", "guid")):
        return None
    if p.op is ir.Op.EMPTY and not p.values:
        empty = not p.negated
    elif p.op is ir.Op.EQUALS and p.values == ("",) and not p.all_values:
        empty = not p.negated
    else:
        return None
    if not _never_empty(pattern.value, group.value):
        return None
    return ir.Predicate(subject, ir.Op.REGEX, (pattern.value,), case_sensitive=True, negated=empty, span=p.span)


def _never_empty(pattern: str, group: int) -> bool:
    """Whether group `group` of every match of `pattern` is non-empty (module doc)."""
    import re

    from rmmc.compiler.evaluator import re2_dollar

    try:
        import re._parser as parser  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        import sre_parse as parser  # type: ignore[no-redef]
    try:
        parsed: Any = parser.parse(re2_dollar(pattern))
        re.compile(re2_dollar(pattern))
    except (re.error, RecursionError, OverflowError):
        return False
    if group == 0:
        return parsed.getwidth()[0] >= 1
    for op, value in parsed.data:
        if op is parser.SUBPATTERN and value[0] == group:
            return value[-1].getwidth()[0] >= 1
    return False


def _whitespace_class() -> str:
    from rmmc.compiler.functions import WHITESPACE

    return "[" + "".join({"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(c, f"\\x{ord(c):02x}" if ord(c) < 0x20 else c)
                         for c in WHITESPACE) + "]"


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # no leading zero, as Python reads it
_ADDRESS = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_PRIVATE = (f"(?:10(?:\\.{_OCTET}){{3}}|172\\.(?:1[6-9]|2[0-9]|3[01])(?:\\.{_OCTET}){{2}}"
            f"|192\\.168(?:\\.{_OCTET}){{2}})")


def _ip_shape(address: str) -> str:
    ws = _whitespace_class()
    return f"^{ws}*{address}(?:/[\\s\\S]*)?{ws}*$"


def _private_test(p: ir.Predicate) -> ir.Condition | None:
    call = p.field
    if not (isinstance(call, ir.Call) and call.function == "ipv4_is_private" and len(call.args) == 1
            and isinstance(call.args[0], ir.Field) and call.args[0].type in ("string", "guid")
            and p.op is ir.Op.EQUALS and len(p.values) == 1 and isinstance(p.values[0], bool)):
        return None
    subject = call.args[0]

    def matches(address: str) -> ir.Predicate:
        return ir.Predicate(subject, ir.Op.REGEX, (_ip_shape(address),), case_sensitive=True, span=p.span)

    test = matches(_PRIVATE) if p.values[0] else ir.all_of([matches(_ADDRESS), ir.Not(matches(_PRIVATE))])
    return ir.Not(test) if p.negated else test


def _extension_test(p: ir.Predicate) -> ir.Condition | None:
    member = p.field
    if isinstance(member, ir.Call) and member.function == "tostring" and len(member.args) == 1:
        member = member.args[0]  # the extension is a string already: tostring() keeps it
    if not (isinstance(member, ir.Call) and member.function == "member" and len(member.args) == 2
            and member.args[1] == ir.Literal("Extension", "string")):
        return None
    call = member.args[0]
    if not (isinstance(call, ir.Call) and call.function == "parse_path" and len(call.args) == 1
            and isinstance(call.args[0], ir.Field) and call.args[0].type in ("string", "guid")):
        return None
    if p.op is not ir.Op.EQUALS or p.all_values or not p.values or not all(
            isinstance(v, str) and v and not any(c in v for c in "./\\:") for v in p.values):
        return None
    import re

    subject = call.args[0]
    no_stream = ir.Predicate(subject, ir.Op.REGEX, (":[^/\\\\]*$",), case_sensitive=True, span=p.span)

    def one(v: str) -> ir.Condition:
        plain = ir.all_of([ir.Predicate(subject, ir.Op.ENDSWITH, ("." + v,), case_sensitive=p.case_sensitive,
                                        span=p.span), ir.Not(no_stream)])
        stream = ir.Predicate(subject, ir.Op.REGEX, (f"(?:^|[/\\\\])[^/\\\\:]*\\.{re.escape(v)}:[^/\\\\]*$",),
                              case_sensitive=p.case_sensitive, span=p.span)
        return ir.any_of([plain, stream])

    test = ir.any_of([one(v) for v in p.values])
    return ir.Not(test) if p.negated else test


def _emptiness(node: Any) -> tuple[Any, bool] | None:
    """(subject, whether the test is `isempty`) of an emptiness test on a computed string."""
    if isinstance(node, ir.Predicate) and not isinstance(node.field, ir.Field) and not node.all_values \
            and getattr(node.field, "type", None) == "string":
        if node.op is ir.Op.EMPTY and not node.values:
            return node.field, not node.negated
        if node.op is ir.Op.EQUALS and node.values == ("",):
            return node.field, not node.negated
    return None


def _contains(expr: Any, part: Any) -> bool:
    return expr == part or (isinstance(expr, ir.Call) and any(_contains(a, part) for a in expr.args))


def _replaced(expr: Any, part: Any, by: Any) -> Any:
    if expr == part:
        return by
    if isinstance(expr, ir.Call):
        return replace(expr, args=tuple(_replaced(a, part, by) for a in expr.args))
    return expr


def _empty_with(f: Any, e: Any) -> bool:
    """Whether F (which contains E) is empty wherever E is: F with E = '' evaluates to ''."""
    from rmmc.compiler.evaluator import subject_value
    from rmmc.compiler.functions import EvaluationError

    if f == e or not _contains(f, e):
        return False
    try:
        return subject_value(_replaced(f, e, ir.Literal("", "string")), {}) in ("", None)
    except (EvaluationError, ValueError, TypeError):
        return False


def _absorbed(operands: tuple[Any, ...], empty: bool) -> list[Any]:
    """The operands of an And (`empty`: isempty tests) or an Or (isnotempty tests) without the
    tests the module doc says another one implies."""
    tests = [(o, _emptiness(o)) for o in operands]
    base = [t[0] for _, t in tests if t is not None and t[1] is empty]
    return [o for o, t in tests
            if not (t is not None and t[1] is empty and any(_empty_with(t[0], e) for e in base))]
