"""EQL as Elasticsearch runs it: the `eql` package's parser, Elastic's documented semantics.

The `eql` package (1.0.x) reads Elasticsearch's EQL syntax, but its engine folds case in every
comparison, and its parser maps `like` and `like~`, `regex` and `regex~`, `in` and `in~` to the
same node, so a case-sensitive test cannot be run on it.  Here the package only parses
(`parse`: its own parser, with the `~` kept on the node it builds), and `evaluate` gives each
node the meaning Elastic's EQL syntax reference (elasticsearch:
docs/reference/query-languages/eql/eql-syntax.md) documents:

* `==` and `!=` compare case-sensitively and expand no wildcard; `<` `<=` `>` `>=` order
  numbers, and strings case-sensitively;
* `:` is `like~`: a wildcard match, case-insensitive; `like` is case-sensitive; `*` is any run
  of characters and `?` exactly one (a line break too); nothing escapes them, a backslash is an
  ordinary character; the whole value must match; a list is any of its patterns;
* `regex` / `regex~`: a Lucene regular expression over the whole value (`rmmc.verify.lucene`),
  case-sensitive / not; `in` / `in~`: equal to one of the list, case-sensitive / not;
* case-insensitive means what Elasticsearch's automata do (`AutomatonQueries`, Lucene's
  CASE_INSENSITIVE flag): each character of the pattern also matches its other case (its upper
  case if it is lower case, else its lower case, Java's one-character mappings), and a class or
  range in a regex stays as written (a limitation the regexp-syntax page documents);
* `== null` / `!= null` test presence; `cidrMatch(f, "net", ...)`: the address is in one of
  the networks.  It takes only `ip` fields, and an `ip` field holds no value that is no address
  (`select` drops such values, as indexing does) and holds an IPv4 address as its IPv4-mapped
  IPv6 form, so both sides are compared in that form;
* `and`, `or`, `not`: three-valued (a test on a missing field is null, `not null` is null),
  and an event is selected only when the condition is true.  `null_reading="false"` reads a
  test on null as false instead (so `not` of it is true): the syntax page's "Otherwise returns
  false"; rmmc's EQL must select the same events under both readings.
"""

from __future__ import annotations

import ipaddress
import re
from contextlib import contextmanager
from typing import Any, Iterator

from rmmc.verify.lucene import literal, lucene_fullmatch, other_case

_CASED = {":": "like~", "like": "like", "like~": "like~", "regex": "regex", "regex~": "regex~"}


@contextmanager
def _keeping_case() -> Iterator[None]:
    """The package's parser, building `FunctionCall("like~" | "like" | "regex" | "regex~" |
    "in" | "in~", [value, *patterns])` where it would build a case-blind node."""
    from eql import ast
    from eql.parser import LarkToEQL

    saved = LarkToEQL.string_predicate, LarkToEQL.in_set

    def string_predicate(self, node):
        info = saved[0](self, node)
        info.node = ast.FunctionCall(_CASED[str(node["STRING_PREDICATE"])], info.node.arguments)
        return info

    def in_set(self, node):
        info = saved[1](self, node)
        keyword = "in~" if str(node.get("IN")) == "in~" else "in"
        info.node = ast.FunctionCall(keyword, [info.node.expression, *info.node.container])
        return info

    LarkToEQL.string_predicate, LarkToEQL.in_set = string_predicate, in_set
    try:
        yield
    finally:
        LarkToEQL.string_predicate, LarkToEQL.in_set = saved


def parse(text: str, sequences: bool = False) -> Any:
    """The query's `where` condition and its event category, parsed by the eql package in
    Elasticsearch syntax (without its optimizer, which rewrites `(f == 0 or f == 1) or f < 0`
    as `f in (0, 1)` in eql 1.0.1).  Raises the package's errors for text it rejects.  With
    `sequences`, a `sequence` query too (its `ast.Sequence`)."""
    from eql import ast
    from eql.parser import elasticsearch_syntax, ignore_missing_functions, parse_query, skip_optimizations

    with _keeping_case(), elasticsearch_syntax, ignore_missing_functions, skip_optimizations:
        query = parse_query(text)
    allowed = (ast.EventQuery, ast.Sequence) if sequences else (ast.EventQuery,)
    if not isinstance(query, ast.PipedQuery) or query.pipes or not isinstance(query.first, allowed):
        raise ValueError("only `<category> where <condition>` is in the subset")
    return query.first


# ------------------------------------------------------------------ case


def wildcard_regex(pattern: str, ignore_case: bool) -> str:
    """An EQL wildcard pattern (`*`, `?`; no escape) as a Python regex for `fullmatch`."""
    return "".join(".*" if ch == "*" else "." if ch == "?" else literal(ch, ignore_case) for ch in pattern)


def equal(value: str, other: str, ignore_case: bool) -> bool:
    """Whole-value equality; case-insensitive: each character equal or its `other_case`."""
    if not ignore_case:
        return value == other
    return len(value) == len(other) and all(a == b or other_case(b) == a for a, b in zip(value, other))


# ------------------------------------------------------------------ evaluation


def _mapped(text: Any) -> ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address


def _block(text: str) -> ipaddress.IPv6Network:
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv4Network):
        mapped = _mapped(network.network_address)
        return ipaddress.IPv6Network((mapped, 96 + network.prefixlen))
    return network


class _Evaluator:
    def __init__(self, event: dict[str, Any], null_reading: str):
        self.event, self.null_false = event, null_reading == "false"

    def unknown(self) -> Any:
        return False if self.null_false else None

    def value(self, node: Any) -> Any:
        from eql import ast

        if isinstance(node, ast.Field):
            return self.event.get(".".join(str(p) for p in node.full_path))
        if isinstance(node, ast.Literal):
            return node.value
        if isinstance(node, ast.MathOperation):  # `-1` reads as 0 - 1
            left, right = self.value(node.left), self.value(node.right)
            if left is None or right is None:
                return None
            if node.operator == "/" and isinstance(left, int) and isinstance(right, int):
                return int(left / right)  # "rounds down" integer division (the syntax page)
            return {"+": left + right, "-": left - right, "*": left * right}.get(node.operator) \
                if node.operator != "/" else left / right
        return self.test(node)

    def test(self, node: Any) -> Any:
        from eql import ast

        if isinstance(node, ast.And):
            results = [self.test(t) for t in node.terms]
            return False if False in results else (None if None in results else True)
        if isinstance(node, ast.Or):
            results = [self.test(t) for t in node.terms]
            return True if True in results else (None if None in results else False)
        if isinstance(node, ast.Not):
            inner = self.test(node.term)
            return None if inner is None else not inner
        if isinstance(node, ast.IsNull):
            return self.value(node.expr) is None
        if isinstance(node, ast.IsNotNull):
            return self.value(node.expr) is not None
        if isinstance(node, ast.Boolean):
            return node.value
        if isinstance(node, ast.Comparison):
            left, right = self.value(node.left), self.value(node.right)
            if left is None or right is None:
                return self.unknown()
            if isinstance(left, str) != isinstance(right, str):
                raise TypeError(f"cannot compare {left!r} with {right!r}")
            return {"==": left == right, "!=": left != right, "<": left < right,
                    "<=": left <= right, ">": left > right, ">=": left >= right}[node.comparator]
        if isinstance(node, ast.FunctionCall):
            return self.call(node.name, [self.value(a) for a in node.arguments])
        raise TypeError(f"no Elasticsearch meaning here for {type(node).__name__}: {node}")

    def call(self, name: str, args: list[Any]) -> Any:
        subject, rest = args[0], args[1:]
        if subject is None:
            return self.unknown()
        if name in ("like", "like~", "regex", "regex~"):
            if not isinstance(subject, str):
                raise TypeError(f"{name} on a non-string value {subject!r}")
            ignore_case = name.endswith("~")
            if name.startswith("like"):
                return any(re.fullmatch(wildcard_regex(p, ignore_case), subject, re.DOTALL) is not None
                           for p in rest)
            return any(lucene_fullmatch(p, subject, ignore_case) for p in rest)
        if name in ("in", "in~"):
            if isinstance(subject, str):
                return any(isinstance(v, str) and equal(subject, v, name == "in~") for v in rest)
            return any(v == subject and not isinstance(v, str) for v in rest)
        if name == "cidrMatch":
            address = _mapped(subject)
            if address is None:
                return self.unknown()
            return any(address in _block(str(n)) for n in rest)
        raise TypeError(f"function {name} is not in the subset")


def selects(query: Any, event: dict[str, Any], null_reading: str = "three-valued") -> bool:
    """Whether the parsed query (`parse`) selects the event (a flat dict: dotted field name ->
    value, a missing field absent or None)."""
    return _Evaluator(event, null_reading).test(query.query) is True


def ip_fields(query: Any) -> set[str]:
    """The fields the query passes to `cidrMatch`: Elasticsearch takes only `ip` fields there."""
    from eql import ast

    return {".".join(str(p) for p in node.arguments[0].full_path) for node in query.query
            if isinstance(node, ast.FunctionCall) and node.name == "cidrMatch"
            and node.arguments and isinstance(node.arguments[0], ast.Field)}


class MixedFieldTypes(ValueError):
    """The query tests one field both as an `ip` (cidrMatch) and as text: no index mapping
    gives Elasticsearch both, so the query has no one meaning to check."""


def text_fields(query: Any) -> set[str]:
    """The fields the query compares with strings or matches as text."""
    from eql import ast

    out = set()
    for node in query.query:
        if isinstance(node, ast.FunctionCall) and node.name != "cidrMatch":
            args = node.arguments
        elif isinstance(node, ast.Comparison) and (isinstance(node.left, ast.String) or isinstance(node.right, ast.String)):
            args = [node.left, node.right]
        else:
            continue
        out.update(".".join(str(p) for p in a.full_path) for a in args if isinstance(a, ast.Field))
    return out


def indexed(event: dict[str, Any], ips: set[str]) -> dict[str, Any]:
    """The event as an index holds it: an `ip` field keeps no value that is no address (a
    malformed value is not indexed), so it reads as missing."""
    return {k: v for k, v in event.items() if k not in ips or _mapped(v) is not None}


def select(text: str, events: list[dict[str, Any]], null_reading: str = "three-valued") -> list[int]:
    """Indexes of the events the query selects (flat events, see `selects`); the fields given to
    `cidrMatch` are read as `ip` fields (`indexed`)."""
    query = parse(text)
    ips = ip_fields(query)
    mixed = ips & text_fields(query)
    if mixed:
        raise MixedFieldTypes(f"{', '.join(sorted(mixed))} is tested both with cidrMatch (an ip "
                              "field) and as text: Elasticsearch maps a field one way")
    return [i for i, e in enumerate(events) if selects(query, indexed(e, ips), null_reading)]


# ------------------------------------------------------------------ sequences


def _category_matches(query: Any, event: dict[str, Any]) -> bool:
    """`<category> where`: the event's `event.category` is the category (or holds it); `any`
    reads every event."""
    category = query.event_type
    if category == "any":
        return True
    value = event.get("event.category")
    return category in value if isinstance(value, (list, tuple)) else value == category


def sequence_groups(text: str, events: list[dict[str, Any]], times: list[float]) -> set[tuple]:
    """The join-key values of the sequences the query finds, with Elasticsearch's documented
    semantics: events in order of time, then of the index (the implicit tiebreaker); a match is
    one event per stage in that order with equal `by` values, the last at most `maxspan` after
    the first (the syntax reference: "within this duration, starting at the first event").
    A stage's `by` value is null when a field is missing: such an event joins nothing."""
    from eql import ast

    sequence = parse(text, sequences=True)
    if not isinstance(sequence, ast.Sequence):
        raise ValueError("not a sequence")
    span = sequence.max_span
    limit = None if span is None else span.as_milliseconds() / 1000.0
    order = sorted(range(len(events)), key=lambda i: (times[i], i))
    stages = sequence.queries
    found: set[tuple] = set()
    pending: list[dict[tuple, float]] = [dict() for _ in stages]  # key -> start time of the latest partial match
    for i in order:
        event = events[i]
        for n in reversed(range(len(stages))):  # later stages first: one event advances one stage
            stage = stages[n]
            if not _category_matches(stage.query, event) or not selects(stage.query, event):
                continue
            key = tuple(event.get(".".join(str(p) for p in f.full_path)) for f in stage.join_values)
            if any(v is None for v in key):
                continue
            if n == 0:
                start = times[i]
            else:
                start = pending[n - 1].get(key)
                if start is None or (limit is not None and times[i] - start > limit):
                    continue
            if n == len(stages) - 1:
                found.add(key)
            else:
                pending[n][key] = max(pending[n].get(key, start), start)
    return found
