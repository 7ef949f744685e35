"""The reference evaluator: what every IR node means over one event (a dict).

This is the definition every semantic test uses.  It follows KQL (Microsoft's documentation
and measurements of the engine):

* Strings are never null: a missing string field reads as ''.  Other types may be null
  (missing or None).
* Case-insensitive comparison folds each character to lower case one for one (ordinal,
  as Kusto does: 'ß' stays 'ß').
* TERM (`has`): some occurrence of the value in the field, case-folded unless cased, such
  that, if the value starts with a term character, the character just before the occurrence
  is not one (or the occurrence starts the field), and likewise at the end.  Term characters
  are the ASCII letters and digits; everything else (`_`, `-`, `.`, `/`, space, non-ASCII)
  splits terms.  So 'https://www.remotepc.com/x' and 'a_remotepc.com' have 'remotepc.com';
  'notremotepc.com' and 'remotepc.community' do not.  TERM_PREFIX checks only the start,
  TERM_SUFFIX only the end.
* EQUALS with several values is `in` (any equal); negated, `!in` (all different).
  A positive test on a null value is false, a negated one true (`==` / `!=` with null).
* Comparisons (LT ... BETWEEN) with a null are unknown; unknown propagates through
  And / Or / Not as in three-valued logic, and a rule matches only when its condition is true.
* REGEX is an unanchored, case-sensitive search (unless `case_sensitive` is false), with RE2's
  meaning (KQL's engine): `$` is the very end of the text unless multi-line mode is on (Python
  would also match before a final line break; `re2_dollar` rewrites it).
* EMPTY: null or ''.  EXISTS: the field is present and not null.
* CIDR: the value reads as an IPv4 or IPv6 address (Python's `ipaddress`, surrounding white
  space not allowed) inside one of the networks (`10.0.0.0/8`; every one of them with
  `all_values`, as for the other operators); anything else is false
  (KQL's `ipv4_is_in_range` gives null there, which `where` treats as false).  An IPv4
  value is never inside an IPv6 network or the other way round.
* IN_SUBQUERY (`x in (T | ...)` over another table): equality with one of the values in the
  first column of what that query returns (`has_any (T | ...)`: one of them is a term of x).
  When the subquery has a model (`rule`) and the evaluation has an event set (`run` over a
  multi-table event set), the sub-rule runs over it (`rmmc.compiler.rows`); otherwise the
  caller supplies the values (`subqueries`, by query text).  Without either the test is
  unknown.
* A predicate's subject may be a scalar expression (`strlen(x) > 5`): its value, read as its
  type reads (a string never null), is tested as a field's would be.  Scalar functions mean
  what `rmmc.compiler.functions` says; `ago()` / `now()` are relative to the query's `now`.
* COMPARE (`a < b` between two expressions): ordering with a null is unknown; `==` / `=~`
  with a null is false and `!=` / `!~` true (KQL's equality is total).
* Stages (`run`): the detection selects events, then each stage turns the list of rows into
  the next, in order (see `run_stages`).  Aggregation groups rows by the values of its keys
  (a null key is its own group); an aggregate skips nulls (`count()` counts rows).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Iterable, Mapping

from dataclasses import dataclass

from rmmc.compiler import functions as F
from rmmc.compiler.functions import fold  # noqa: F401 - the one folding, re-exported
from rmmc.compiler.text_rules import (_ASCII_FOLDS, fold_to_ascii,  # noqa: F401 - defined there, re-exported
                                      is_term_char, re2_dollar)
from rmmc.compiler.ir import (And, Call, Compare, Condition, Const, Field, InSubquery, Literal, Not, Op,
                              Or, Predicate, Rule, Star, Boolean)

Event = Mapping[str, Any]


@dataclass(frozen=True)
class Context:
    """What a condition or expression may need besides the row: the values of subqueries
    (by query text) and the query's `now` (for `ago()` / `now()`)."""

    subqueries: Mapping[str, Iterable[Any]] | None = None
    now: datetime | None = None
    events: Any = None  # the event set a sub-rule runs over (`rows.EventSet`), when there is one
    external: Mapping[str, Any] | None = None  # URI -> its stored text, for external tables

    def current_time(self) -> datetime:
        return self.now if self.now is not None else datetime.now(timezone.utc)


_NO_CONTEXT = Context()


def term_match(haystack: str, needle: str, check_start: bool = True, check_end: bool = True) -> bool:
    """Whether `needle` occurs in `haystack` as a term (see the module docstring).
    Both arguments are already case-folded when the match is case-insensitive."""
    need_start = check_start and bool(needle) and is_term_char(needle[0])
    need_end = check_end and bool(needle) and is_term_char(needle[-1])
    start = haystack.find(needle)
    while start != -1:
        end = start + len(needle)
        ok_start = not need_start or start == 0 or not is_term_char(haystack[start - 1])
        ok_end = not need_end or end == len(haystack) or not is_term_char(haystack[end])
        if ok_start and ok_end:
            return True
        start = haystack.find(needle, start + 1)
    return False


@lru_cache(maxsize=4096)
def compiled_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A KQL (RE2) regex as Python reads it: `$` is the end of the text (`re2_dollar`)."""
    return re.compile(re2_dollar(pattern), flags)


def _regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    return compiled_regex(pattern, 0 if case_sensitive else re.IGNORECASE)


# ------------------------------------------------------------------ reading a field


def read(event: Event, field: Field) -> Any:
    """The field's value as KQL sees it: '' for a missing string, None for other nulls."""
    return typed_value(event.get(field.name), field.type)


def typed_value(value: Any, type_name: str) -> Any:
    """A raw value read as `type_name`: strings are never null; other types are null when the
    value is missing or does not read as the type."""
    if type_name in F.STRING_TYPES:
        if value is None:
            return ""
        return value if isinstance(value, str) else F.to_text(value)
    if value is None:
        return None
    if type_name == "dynamic":
        return value
    try:
        return coerce(value, type_name)
    except (TypeError, ValueError, OverflowError):
        return None


def coerce(value: Any, type_name: str) -> Any:
    if type_name in ("int", "long"):
        if isinstance(value, bool):
            return int(value)
        return int(value) if not isinstance(value, float) else value
    if type_name in ("real", "double", "decimal"):
        return float(value)
    if type_name in ("bool", "boolean"):
        if isinstance(value, str):
            if value.lower() in ("true", "1"):
                return True
            if value.lower() in ("false", "0"):
                return False
            raise ValueError(value)
        return bool(value)
    if type_name == "datetime":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    if type_name == "timespan":
        return value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    return value


# ------------------------------------------------------------------ scalar expressions


def evaluate_expr(expr: Any, row: Event, ctx: Context = _NO_CONTEXT) -> Any:
    """The value of a scalar expression over one row (see `rmmc.compiler.functions`)."""
    if isinstance(expr, Field):
        return read(row, expr)
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Boolean):
        result = evaluate(expr.condition, row, ctx=ctx)
        return result
    if isinstance(expr, Call):
        return _call(expr, row, ctx)
    if isinstance(expr, Star):
        return dict(row)
    raise TypeError(f"not an expression: {expr!r}")


def _call(call: Call, row: Event, ctx: Context) -> Any:
    name = call.function
    if name == "ago":
        span = evaluate_expr(call.args[0], row, ctx)
        return ctx.current_time() - span if isinstance(span, timedelta) else None
    if name == "now":
        offset = evaluate_expr(call.args[0], row, ctx) if call.args else timedelta(0)
        return ctx.current_time() + offset if isinstance(offset, timedelta) else None
    if name == "ingestion_time":
        return F.to_datetime(row.get(F.INGESTION_TIME))
    function = F.FUNCTIONS.get(name)
    if function is None:
        raise F.EvaluationError(f"no function {name}() in the model")
    args = []
    for i, arg in enumerate(call.args):
        value = evaluate_expr(arg, row, ctx)
        if i in function.strings:
            value = F.to_text(value)
        args.append(value)
    result = function.impl(*args)
    if call.type in F.STRING_TYPES:
        return F.to_text(result)
    return result


def subject_value(subject: Any, row: Event, ctx: Context = _NO_CONTEXT) -> Any:
    """A predicate subject's value, read as its type reads (a string is never null)."""
    if isinstance(subject, Field):
        return read(row, subject)
    return typed_value(evaluate_expr(subject, row, ctx), subject.type)


# ------------------------------------------------------------------ predicates


@lru_cache(maxsize=1024)
def _network(text: str):
    import ipaddress

    return ipaddress.ip_network(text, strict=False)


def in_networks(value: Any, networks: Iterable[Any]) -> bool:
    """Whether `value` is an IP address inside one of `networks` (CIDR texts)."""
    import ipaddress

    if value is None or isinstance(value, bool):
        return False
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return False
    for text in networks:
        network = _network(str(text))
        if network.version == address.version and address in network:
            return True
    return False


def _string_test(op: Op, value: str, needle: str, case_sensitive: bool) -> bool:
    if op is Op.REGEX:
        return _regex(needle, case_sensitive).search(value) is not None
    if not case_sensitive:
        value, needle = fold(value), fold(needle)
    if op is Op.EQUALS:
        return value == needle
    if op is Op.CONTAINS:
        return needle in value
    if op is Op.STARTSWITH:
        return value.startswith(needle)
    if op is Op.ENDSWITH:
        return value.endswith(needle)
    if op is Op.TERM:
        return term_match(value, needle)
    if op is Op.TERM_PREFIX:
        return term_match(value, needle, check_end=False)
    if op is Op.TERM_SUFFIX:
        return term_match(value, needle, check_start=False)
    raise ValueError(f"not a string operator: {op}")


def _compare(op: Op, value: Any, bound: Any) -> bool:
    if op is Op.LT:
        return value < bound
    if op is Op.LE:
        return value <= bound
    if op is Op.GT:
        return value > bound
    if op is Op.GE:
        return value >= bound
    raise ValueError(f"not a comparison: {op}")


def evaluate_predicate(p: Predicate, event: Event, ctx: Context = _NO_CONTEXT) -> bool | None:
    """True, False, or None (unknown: a comparison with a null)."""
    subject = p.field
    if p.op is Op.EXISTS:
        if isinstance(subject, Field):
            present = event.get(subject.name) is not None
        else:
            present = evaluate_expr(subject, event, ctx) is not None
        return present != p.negated
    value = subject_value(subject, event, ctx)
    if p.op is Op.CIDR:  # any network, or every one with all_values
        hits = [in_networks(value, (network,)) for network in p.values]
        return (all(hits) if p.all_values else any(hits)) != p.negated
    if p.op is Op.EMPTY:
        empty = value is None or value == ""
        return empty != p.negated
    if p.op in (Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN):
        if value is None:
            return None
        try:
            if p.op is Op.BETWEEN:
                low, high = (coerce(v, subject.type) for v in p.values)
                result = low <= value <= high
            else:
                result = _compare(p.op, value, coerce(p.values[0], subject.type))
        except (TypeError, ValueError):
            return None
        return result != p.negated
    # string operators and equality
    if value is None:  # a null of a non-string type: == is false, != true
        return p.negated
    if subject.type not in F.STRING_TYPES and p.op is Op.EQUALS and subject.type != "dynamic":
        try:
            hits = [value == coerce(v, subject.type) for v in p.values]
        except (TypeError, ValueError):
            hits = [False]
    else:
        text = value if isinstance(value, str) else F.to_text(value)
        hits = [_string_test(p.op, text, v if isinstance(v, str) else F.to_text(v), p.case_sensitive)
                for v in p.values]
    matched = all(hits) if p.all_values else any(hits)
    return matched != p.negated


Subqueries = Mapping[str, Iterable[Any]]


def evaluate_subquery(node: InSubquery, event: Event, ctx: Context = _NO_CONTEXT) -> bool | None:
    values = _subquery_values(node, ctx)
    if values is None:
        return None
    value = subject_value(node.field, event, ctx)
    if value is None:
        return node.negated
    text = value if isinstance(value, str) else F.to_text(value)
    if node.op is Op.TERM:
        needles = [v if node.case_sensitive else fold(v) for v in values]
        haystack = text if node.case_sensitive else fold(text)
        hit = any(term_match(haystack, needle) for needle in needles)
    elif node.op in (Op.CONTAINS, Op.ENDSWITH):  # an environment's form (InSubquery.op)
        haystack = text if node.case_sensitive else fold(text)
        needles = [v if node.case_sensitive else fold(v) for v in values]
        hit = any((needle in haystack) if node.op is Op.CONTAINS else haystack.endswith(needle)
                  for needle in needles)
    elif node.case_sensitive:
        hit = text in values
    else:
        hit = fold(text) in {fold(v) for v in values}
    return hit != node.negated


def _subquery_values(node: InSubquery, ctx: Context) -> list[str] | None:
    """The values a subquery gives (as text, nulls skipped), or None when they are unknown."""
    if node.rule is not None and ctx.events is not None:
        from rmmc.compiler.rows import first_column

        raw = first_column(node.rule, ctx, node.column)
    elif ctx.subqueries is not None and node.query in ctx.subqueries:
        raw = list(ctx.subqueries[node.query])
    else:
        return None
    return [v if isinstance(v, str) else F.to_text(v) for v in raw if v is not None]


def evaluate_compare(node: Compare, row: Event, ctx: Context = _NO_CONTEXT) -> bool | None:
    """`left op right`: ordering with a null is unknown; equality is total (a null equals
    nothing, so `!=` is true)."""
    left = subject_value(node.left, row, ctx)
    right = subject_value(node.right, row, ctx)
    op = node.op
    if op in ("==", "!=", "=~", "!~"):
        if left is None or right is None:
            equal = False
        elif op in ("=~", "!~"):
            equal = fold(F.to_text(left)) == fold(F.to_text(right))
        elif isinstance(left, str) or isinstance(right, str):
            equal = F.to_text(left) == F.to_text(right)
        else:
            equal = _equal_values(left, right)
        return equal if op in ("==", "=~") else not equal
    if left is None or right is None:
        return None
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        return None


def _equal_values(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return a == b
    except TypeError:
        return False


def evaluate(condition: Condition, event: Event, subqueries: Subqueries | None = None,
             ctx: Context | None = None) -> bool | None:
    """Three-valued: True, False or None (unknown)."""
    if ctx is None:
        ctx = Context(subqueries) if subqueries is not None else _NO_CONTEXT
    if isinstance(condition, Predicate):
        return evaluate_predicate(condition, event, ctx)
    if isinstance(condition, InSubquery):
        return evaluate_subquery(condition, event, ctx)
    if isinstance(condition, Compare):
        return evaluate_compare(condition, event, ctx)
    if isinstance(condition, And):
        unknown = False
        for operand in condition.operands:
            result = evaluate(operand, event, ctx=ctx)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True
    if isinstance(condition, Or):
        unknown = False
        for operand in condition.operands:
            result = evaluate(operand, event, ctx=ctx)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False
    if isinstance(condition, Not):
        result = evaluate(condition.operand, event, ctx=ctx)
        return None if result is None else not result
    if isinstance(condition, Const):
        return condition.value
    raise TypeError(f"not a condition: {condition!r}")


def matches(rule: Rule, event: Event, apply_exclusions: bool = False,
            subqueries: Subqueries | None = None) -> bool:
    """Whether the rule's detection selects the event (its lookback and stages are not
    applied: events carry no notion of now here; `run` applies the stages)."""
    if apply_exclusions:
        rule = rule.with_exclusions_applied()
    return evaluate(rule.condition, event, subqueries) is True


def select(rule: Rule, events: Iterable[Event], apply_exclusions: bool = False) -> list[int]:
    """Indexes of the events the rule's detection selects."""
    return [i for i, e in enumerate(events) if matches(rule, e, apply_exclusions)]


# ------------------------------------------------------------------ stages over rows


def run(rule: Rule, events: Iterable[Event], **options: Any) -> list[dict[str, Any]]:
    """The rows the whole rule returns: its detection, then every stage (`rmmc.compiler.rows`
    defines the stages)."""
    from rmmc.compiler.rows import run as run_rows

    return run_rows(rule, events, **options)
