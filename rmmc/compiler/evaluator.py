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
* IN_SUBQUERY (`x in (T | ...)` over another table): equality with one of the values that
  query returns; the caller supplies those values (`subqueries`, by query text), since they
  come from other events.  Without them the test is unknown.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Iterable, Mapping

from rmmc.compiler.ir import (And, Condition, Const, Field, InSubquery, Not, Op, Or, Predicate, Rule)

Event = Mapping[str, Any]


def fold(text: str) -> str:
    """Lower-case each character one for one (no 'ß' -> 'ss' expansion)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def is_term_char(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


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
def _regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(re2_dollar(pattern), 0 if case_sensitive else re.IGNORECASE)


_LEADING_FLAGS = re.compile(r"\(\?([a-zA-Z]+)\)")


def re2_dollar(pattern: str) -> str:
    """The pattern with RE2's `$` for Python's `re`: outside multi-line mode RE2 reads `$` as
    the very end of the text, Python also before a final line break, so each unescaped `$`
    outside a character class becomes `\\Z` (Python's very end).  A pattern that turns on
    multi-line mode in its leading flags (`(?m)`, `(?sm)` ...) keeps its `$`, which both read as
    the end of a line."""
    if "$" not in pattern:
        return pattern
    at = 0
    while (m := _LEADING_FLAGS.match(pattern, at)) is not None:
        if "m" in m.group(1):
            return pattern
        at = m.end()
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if pattern.startswith("^", i):  # `[^]...]`: a leading `]` is a literal
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append("]")
                i += 1
            continue
        elif ch == "$":
            out.append("\\Z")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# ------------------------------------------------------------------ reading a field

_NULL = object()


def read(event: Event, field: Field) -> Any:
    """The field's value as KQL sees it: '' for a missing string, None for other nulls."""
    value = event.get(field.name)
    if field.type == "string":
        if value is None:
            return ""
        return value if isinstance(value, str) else str(value)
    if value is None:
        return None
    try:
        return coerce(value, field.type)
    except (TypeError, ValueError):
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


def evaluate_predicate(p: Predicate, event: Event) -> bool | None:
    """True, False, or None (unknown: a comparison with a null)."""
    if p.op is Op.EXISTS:
        present = event.get(p.field.name) is not None
        return present != p.negated
    value = read(event, p.field)
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
                low, high = (coerce(v, p.field.type) for v in p.values)
                result = low <= value <= high
            else:
                result = _compare(p.op, value, coerce(p.values[0], p.field.type))
        except TypeError:
            return None
        return result != p.negated
    # string operators and equality
    if value is None:  # a null of a non-string type: == is false, != true
        return p.negated
    if p.field.type != "string" and p.op is Op.EQUALS:
        try:
            hits = [value == coerce(v, p.field.type) for v in p.values]
        except (TypeError, ValueError):
            hits = [False]
    else:
        text = value if isinstance(value, str) else str(value)
        hits = [_string_test(p.op, text, str(v), p.case_sensitive) for v in p.values]
    matched = all(hits) if p.all_values else any(hits)
    return matched != p.negated


Subqueries = Mapping[str, Iterable[Any]]


def evaluate_subquery(node: InSubquery, event: Event, subqueries: Subqueries | None) -> bool | None:
    if subqueries is None or node.query not in subqueries:
        return None
    value = read(event, node.field)
    if value is None:
        return node.negated
    values = [str(v) for v in subqueries[node.query] if v is not None]
    text = str(value)
    if node.case_sensitive:
        hit = text in values
    else:
        hit = fold(text) in {fold(v) for v in values}
    return hit != node.negated


def evaluate(condition: Condition, event: Event, subqueries: Subqueries | None = None) -> bool | None:
    """Three-valued: True, False or None (unknown)."""
    if isinstance(condition, Predicate):
        return evaluate_predicate(condition, event)
    if isinstance(condition, InSubquery):
        return evaluate_subquery(condition, event, subqueries)
    if isinstance(condition, And):
        unknown = False
        for operand in condition.operands:
            result = evaluate(operand, event, subqueries)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True
    if isinstance(condition, Or):
        unknown = False
        for operand in condition.operands:
            result = evaluate(operand, event, subqueries)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False
    if isinstance(condition, Not):
        result = evaluate(condition.operand, event, subqueries)
        return None if result is None else not result
    if isinstance(condition, Const):
        return condition.value
    raise TypeError(f"not a condition: {condition!r}")


def matches(rule: Rule, event: Event, apply_exclusions: bool = False,
            subqueries: Subqueries | None = None) -> bool:
    """Whether the rule selects the event (its lookback is not applied: events carry no
    notion of now here)."""
    if apply_exclusions:
        rule = rule.with_exclusions_applied()
    return evaluate(rule.condition, event, subqueries) is True


def select(rule: Rule, events: Iterable[Event], apply_exclusions: bool = False) -> list[int]:
    """Indexes of the events the rule selects."""
    return [i for i, e in enumerate(events) if matches(rule, e, apply_exclusions)]


# ------------------------------------------------------------------ aggregation


def aggregate(rule: Rule, events: Iterable[Event]) -> list[dict[str, Any]]:
    """The rows of the rule's aggregation over the events it selects (group keys plus
    each aggregate), sorted by group key; without an aggregation, the selected events."""
    selected = [e for e in events if matches(rule, e)]
    aggregation = rule.output.aggregation
    if aggregation is None:
        return [dict(e) for e in selected]
    groups: dict[tuple, list[Event]] = {}
    for e in selected:
        key = tuple(e.get(k, "") if e.get(k) is not None else "" for k in aggregation.group_by)
        groups.setdefault(key, []).append(e)
    rows = []
    for key, members in groups.items():
        row = dict(zip(aggregation.group_by, key))
        for agg in aggregation.aggregates:
            row[agg.name] = _aggregate_one(agg.function, agg.field, members)
        rows.append(row)
    rows.sort(key=lambda r: tuple(str(r[k]) for k in aggregation.group_by))
    return rows


def _aggregate_one(function: str, field: str | None, members: list[Event]) -> Any:
    values = [m.get(field) for m in members if field is not None and m.get(field) is not None]
    if function == "count":
        return len(members)
    if function == "dcount":
        return len(set(values))
    if function == "min":
        return min(values) if values else None
    if function == "max":
        return max(values) if values else None
    if function == "sum":
        return sum(values)
    if function in ("make_set", "make_set_if"):
        return sorted(set(values), key=str)
    if function in ("make_list", "make_list_if"):
        return values
    if function in ("any", "take_any"):
        return values[0] if values else None
    raise ValueError(f"aggregate {function} has no reference meaning yet")
