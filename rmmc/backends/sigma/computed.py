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
        return _extract_test(condition) or condition
    if isinstance(condition, ir.And):
        return ir.all_of([raw_field_tests(o) for o in condition.operands])
    if isinstance(condition, ir.Or):
        return ir.any_of([raw_field_tests(o) for o in condition.operands])
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
