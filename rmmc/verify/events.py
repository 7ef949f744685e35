"""Events around a rule's values: the boundaries where translations go wrong.

For every field the rule tests, candidate values are derived from the rule's own needles:
the needle itself, in other case, inside a longer term (`xNEEDLEx`), as a whole term among
others (`a NEEDLE b`), as a prefix and a suffix, cut short, empty and missing; numbers one
below, at and above each bound; addresses inside and outside each network.  The events are
a base event that satisfies each positive test, every single-field variation of it, and a
seeded random sample of combinations, so the same rule always gets the same events.
"""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any

from rmmc.compiler.ir import COMPARISON_OPS, STRING_OPS, Op, Predicate, Rule, walk_predicates

MISSING = object()  # a field left out of the event
MAX_VALUES_PER_FIELD = 8
_NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})


def boundary_events(rule: Rule, sample: int = 40, seed: int = 0) -> list[dict[str, Any]]:
    """Deterministic events around `rule`'s values (keyed by the rule's field names)."""
    conditions = [rule.condition] + [e.condition for e in rule.exclusions if e.condition is not None]
    predicates = [p for c in conditions for p in walk_predicates(c)]
    candidates: dict[str, list[Any]] = {}
    positive: dict[str, Any] = {}
    for p in predicates:
        values = candidates.setdefault(p.field.name, [])
        for v in _candidates(p):
            if not _contains(values, v):
                values.append(v)
        if not p.negated and p.field.name not in positive:
            first = _satisfying(p)
            if first is not MISSING:
                positive[p.field.name] = first
    rng = random.Random(seed)
    for name, values in candidates.items():
        if len(values) > 3 * MAX_VALUES_PER_FIELD:
            head, rest = values[:MAX_VALUES_PER_FIELD], values[MAX_VALUES_PER_FIELD:]
            candidates[name] = head + rng.sample(rest, 2 * MAX_VALUES_PER_FIELD)
    base = {name: positive.get(name, values[0] if values else "") for name, values in candidates.items()}
    events: list[dict[str, Any]] = [_event(base)]
    for name, values in candidates.items():
        for v in values:
            events.append(_event({**base, name: v}))
    names = list(candidates)
    for _ in range(sample if names else 0):
        events.append(_event({n: rng.choice(candidates[n] or [""]) for n in names}))
    out, seen = [], set()
    for e in events:
        key = repr(sorted(e.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _event(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not MISSING}


def _contains(values: list[Any], v: Any) -> bool:
    return any(type(x) is type(v) and x == v for x in values)


def _satisfying(p: Predicate) -> Any:
    if p.op is Op.EXISTS:
        return "x"
    if p.op is Op.EMPTY:
        return ""
    if not p.values:
        return MISSING
    v = p.values[0]
    if p.op is Op.REGEX:
        return _regex_example(str(v))
    if p.op in COMPARISON_OPS:
        return v
    if p.op is Op.CIDR:
        return str(ipaddress.ip_network(str(v), strict=False).network_address)
    if p.field.type in _NUMERIC or p.field.type == "bool":
        return v
    return str(v) if p.op is not Op.TERM_PREFIX else f"{v}x"


def _candidates(p: Predicate) -> list[Any]:
    out: list[Any] = [MISSING]
    kind = p.field.type
    if p.op in (Op.EXISTS, Op.EMPTY):
        return out + ["", "x", " "]
    if p.op is Op.CIDR:
        for text in p.values[:MAX_VALUES_PER_FIELD]:
            net = ipaddress.ip_network(str(text), strict=False)
            out += [str(net.network_address), str(net.broadcast_address)]
            try:
                out.append(str(net.broadcast_address + 1))
            except ipaddress.AddressValueError:  # the last network of the address space
                pass
        return out + ["not an address", "", "10.0.0.1", "::1"]
    if kind == "bool":
        return out + [True, False]
    if p.op in COMPARISON_OPS or (kind in _NUMERIC and p.op is Op.EQUALS):
        for v in p.values[:MAX_VALUES_PER_FIELD]:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out += [v - 1, v, v + 1]
        return out
    if p.op not in STRING_OPS:
        return out
    out.append("")
    for v in p.values[:MAX_VALUES_PER_FIELD]:
        text = _regex_example(str(v)) if p.op is Op.REGEX else str(v)
        out += _string_variants(text)
    return out


def _string_variants(v: str) -> list[str]:
    variants = [v, v.upper(), v.lower(), v.swapcase(), f"x{v}x", f"a {v} b", f"{v} tail", f"head {v}",
                f"{v}x", f"x{v}", f"-{v}-"]
    if len(v) > 1:
        variants += [v[1:], v[:-1]]
    return variants


_SIMPLE_REGEX = re.compile(r"^(?:\(\?[ims]+\))?\^?(?P<body>.*?)\$?$", re.S)


def _regex_example(pattern: str) -> str:
    """A string the regex probably matches: escapes read as their character, `.*` as 'zz',
    `.` as 'q', anchors and inline flags dropped (a guess: a miss only costs coverage)."""
    m = _SIMPLE_REGEX.match(pattern)
    body = m.group("body") if m else pattern
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
            continue
        if body.startswith(".*", i):
            out.append("zz")
            i += 2
            continue
        if ch == ".":
            out.append("q")
        elif ch in "()[]{}|+*?^$":
            pass
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def satisfying_value(p: Predicate) -> Any:
    """A value that satisfies the (positive) predicate `p`, or MISSING (`rmmc diff` joins them
    when several tests read one field)."""
    return _satisfying(p)


__all__ = ["MISSING", "boundary_events", "satisfying_value"]
