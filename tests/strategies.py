"""Hypothesis strategies for IR rules and for the events that sit on their boundaries.

Rules (`rules()`) are over one Defender table (DeviceProcessEvents or DeviceNetworkEvents),
on real columns with their schema types (string and numeric), every operator of the IR, any
value list (any-of / all-of), case flags, negation, and nested and / or / not.  String values
("needles") are hostile on purpose: quotes, backslashes, `*`, `?`, `%`, `_`, regex
metacharacters, unicode, the empty string.

Events (`boundary_events(rule)`) are built around the rule's needles: the needle as a whole
value, as a whole term inside a longer value, inside a larger term, in other case, its prefix
or suffix, doubled, next to hostile characters, an empty string and a missing field; numbers
on, just below and just above each bound, or missing.

Each strategy takes an `alphabet` (see `Alphabet`): targets that fold only ASCII letters
(SQLite's NOCASE and LIKE) or whose term characters are Unicode letters (duckdb-kql) are
given needles whose non-ASCII characters have no case and are no letters, so that the
oracle's own limit is not mistaken for a translation bug.  The evaluator and rmmc itself get
the full alphabet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from rmmc.backends.sigma.values import escape_regex
from rmmc.compiler.ir import (And, Condition, EventKind, Field, Metadata, Not, Op, Or, Predicate,
                              Rule, Source, walk_predicates)
from rmmc.compiler.schema import load_schema

# ------------------------------------------------------------------ tables and fields


@dataclass(frozen=True)
class Table:
    name: str
    kind: EventKind
    strings: tuple[str, ...]
    numbers: tuple[str, ...]

    def field(self, column: str) -> Field:
        kind = load_schema().table(self.name).column_type(column)
        assert kind is not None, f"{self.name} has no column {column}"
        return Field(column, kind)


# Real columns, each with a Sigma field and an ECS field (so no target has to keep a name it
# cannot map, which is a warning of its own).
TABLES = (
    Table("DeviceProcessEvents", EventKind.PROCESS,
          ("FileName", "FolderPath", "ProcessCommandLine", "AccountName", "InitiatingProcessFileName"),
          ("ProcessId", "InitiatingProcessId")),
    Table("DeviceNetworkEvents", EventKind.NETWORK,
          ("RemoteUrl", "RemoteIP", "DeviceName", "ActionType"),
          ("RemotePort", "LocalPort")),
)
TABLE_BY_NAME = {t.name: t for t in TABLES}


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Alphabet:
    """The characters needles and events are made of."""

    name: str
    chars: str

    def text(self, min_size: int = 0, max_size: int = 4) -> st.SearchStrategy[str]:
        return st.text(alphabet=self.chars, min_size=min_size, max_size=max_size)


_ASCII = "aAbBxX09.-_ /:"
_HOSTILE = "'\"\\*?%_"
_REGEX_META = "^$|()[]{}+."
# No case and no letter or digit (Unicode category S*/P*/Z*): every target reads these alike.
_CASELESS = "✓€—\u00a0"
# Letters with case, some of them tricky: 'ß' upper-cases to 'SS', 'İ' lower-cases to two
# characters, 'ǅ' is title case.
_CASED_UNICODE = "éÉßİǅ日"

FULL = Alphabet("full", _ASCII + _HOSTILE + _REGEX_META + _CASELESS + _CASED_UNICODE + "\t\n")
"""For rmmc alone (round trips) and the evaluator."""

ENGINE = Alphabet("engine", _ASCII + _HOSTILE + _REGEX_META + _CASELESS + "\t")
"""For real engines: non-ASCII characters without case and not letters (SQLite folds ASCII
only; duckdb-kql's term characters are Unicode letters and digits, the evaluator's ASCII)."""

FIXED_HOSTILE = ("", "*", "?", "%", "_", "\\", "\\*", "it's", 'say "hi"', "C:\\Windows\\",
                 "a*b?c", "a%b_c", "(a|b)", "[x]", "^a$", "a.b", "x{2}", "+")


@st.composite
def needles(draw, alphabet: Alphabet = FULL) -> str:
    """One string value: random over the alphabet, or one of a few fixed hostile values."""
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return ""
    if choice <= 3:
        return draw(st.sampled_from(FIXED_HOSTILE))
    if choice <= 5:  # a word: term boundaries matter on both sides
        return draw(st.text(alphabet="aAbBxX09", min_size=1, max_size=4))
    return draw(alphabet.text(1, 4))


def needle_pools(alphabet: Alphabet = FULL) -> st.SearchStrategy[list[str]]:
    """A rule's few needles: its predicates draw their values from them, so that predicates
    overlap and events built around one needle meet several predicates."""
    return st.lists(needles(alphabet), min_size=1, max_size=3, unique=True)


REGEX_SHAPES = ("{}", "^{}", "{}$", "^{}$", "{}.", ".{}", "({}|zz)", "[ab]?{}", "{}+")


@st.composite
def regex_values(draw, needle: str) -> str:
    """A regex around a needle (escaped): anchored or not, with a class, an alternation or a
    repeat."""
    shape = draw(st.sampled_from(REGEX_SHAPES))
    escaped = escape_regex(needle)
    if shape == "{}+":
        escaped = f"(?:{escaped})" if escaped else "x"
    return shape.format(escaped)


# ------------------------------------------------------------------ predicates and conditions

STRING_OPS = (Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM, Op.TERM_PREFIX,
              Op.TERM_SUFFIX, Op.REGEX, Op.EMPTY, Op.EXISTS)
NUMBER_OPS = (Op.EQUALS, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN, Op.EMPTY, Op.EXISTS)
# Small bounds (so predicates meet), and wide ones: any 32-bit value whose neighbours still fit
# an `int` column (events hold each bound and the numbers just below and above it).
BOUNDS = st.one_of(st.integers(-2, 6), st.integers(-(2 ** 31) + 1, 2 ** 31 - 2))
NETWORKS = ("10.0.0.0/8", "192.168.1.0/24", "10.1.2.3/32", "0.0.0.0/0", "2001:db8::/32",
            "fe80::/10", "::/0")
"""CIDR values (`Op.CIDR` on an address column, drawn when `cidr=True`)."""


@st.composite
def predicates(draw, table: Table | None = None, pool: list[str] | None = None,
               alphabet: Alphabet = FULL, case_sensitive: st.SearchStrategy[bool] = st.booleans(),
               ops: tuple[Op, ...] | None = None, cidr: bool = False) -> Predicate:
    """One predicate on a column of `table`, with values from `pool` (drawn when None).
    `ops` limits the operators (both string and numeric ones); `cidr` allows CIDR tests on the
    table's address column."""
    table = table or draw(st.sampled_from(TABLES))
    pool = pool if pool is not None else draw(needle_pools(alphabet))
    negated = draw(st.booleans())
    if cidr and "RemoteIP" in table.strings and draw(st.integers(0, 5)) == 0:
        networks = tuple(draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=2)))
        return Predicate(table.field("RemoteIP"), Op.CIDR, networks,
                         all_values=draw(st.booleans()), negated=negated)
    if draw(st.integers(0, 4)) == 0:  # a numeric column
        field = table.field(draw(st.sampled_from(table.numbers)))
        op = draw(st.sampled_from([o for o in NUMBER_OPS if ops is None or o in ops]))
        if op in (Op.EMPTY, Op.EXISTS):
            return Predicate(field, op, (), negated=negated)
        if op is Op.BETWEEN:
            values = tuple(draw(st.lists(BOUNDS, min_size=2, max_size=2)))  # low > high too
            return Predicate(field, op, values, negated=negated)
        if op is Op.EQUALS:
            values = tuple(draw(st.lists(BOUNDS, min_size=1, max_size=3)))
            return Predicate(field, op, values, all_values=draw(st.booleans()), negated=negated)
        return Predicate(field, op, (draw(BOUNDS),), negated=negated)
    field = table.field(draw(st.sampled_from(table.strings)))
    op = draw(st.sampled_from([o for o in STRING_OPS if ops is None or o in ops]))
    if op in (Op.EMPTY, Op.EXISTS):
        return Predicate(field, op, (), negated=negated)
    values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    if op is Op.REGEX:
        values = [draw(regex_values(v)) for v in values]
    return Predicate(field, op, tuple(values), all_values=draw(st.booleans()),
                     case_sensitive=draw(case_sensitive), negated=negated)


def conditions(depth: int = 2, leaves: st.SearchStrategy[Condition] | None = None,
               **predicate_kw: Any) -> st.SearchStrategy[Condition]:
    """A condition tree at most `depth` levels of and / or / not above its predicates."""
    leaf = leaves if leaves is not None else predicates(**predicate_kw)
    if depth <= 0:
        return leaf
    inner = conditions(depth - 1, leaf)
    return st.one_of(
        leaf,
        leaf,
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
    )


@st.composite
def rules(draw, depth: int = 2, tables: tuple[Table, ...] = TABLES, alphabet: Alphabet = FULL,
          case_sensitive: st.SearchStrategy[bool] = st.booleans(),
          ops: tuple[Op, ...] | None = None, cidr: bool = False) -> Rule:
    """A rule over one Defender table: a condition tree on its columns, no output."""
    table = draw(st.sampled_from(tables))
    pool = draw(needle_pools(alphabet))
    condition = draw(conditions(depth, table=table, pool=pool, alphabet=alphabet,
                                case_sensitive=case_sensitive, ops=ops, cidr=cidr))
    return Rule(Metadata(title="Property rule", description="A generated rule."),
                Source(table.name, table.kind), condition)


def table_of(rule: Rule) -> Table:
    return TABLE_BY_NAME[rule.source.table]


# ------------------------------------------------------------------ events on the boundaries

_UNESCAPE = re.compile(r"\\(.)", re.S)


def literal_of(p: Predicate, value: Any) -> str:
    """The text a value of `p` is about: the value, or a regex's literal part."""
    text = str(value)
    if p.op is Op.REGEX:
        for wrapper in ("(?:", ")+", "|zz)", "[ab]?"):
            text = text.replace(wrapper, "")
        text = text.strip("^$").lstrip("(")
        text = text[:-1] if text.endswith(".") and not text.endswith("\\.") else text
        text = text[1:] if text.startswith(".") else text
        text = _UNESCAPE.sub(r"\1", text)
    return text


def addresses_around(network: str) -> str:
    """A few addresses on a network's edges (first, last, just outside), space-separated: each
    becomes an event value through `variants`' whole-value form."""
    import ipaddress

    n = ipaddress.ip_network(network, strict=False)
    first, last = int(n.network_address), int(n.broadcast_address)
    top = 2 ** n.max_prefixlen - 1
    picks = {first, last, max(first - 1, 0), min(last + 1, top), (first + last) // 2}
    kind = ipaddress.IPv6Address if n.version == 6 else ipaddress.IPv4Address
    return " ".join(str(kind(x)) for x in sorted(picks))


def variants(needle: str, alphabet: Alphabet) -> list[str]:
    """Texts on the boundaries of a needle."""
    out = [needle, "x" + needle, needle + "x", "a " + needle + " b", "a." + needle + "/b",
           "ab" + needle + "cd", needle + needle, needle[1:], needle[:-1],
           needle.upper(), needle.lower(), needle.swapcase(), " " + needle.upper() + " ",
           "'" + needle + "\\", "*" + needle + "%"]
    return [v for v in out if all(ch in alphabet.chars for ch in v)] or [needle]


@st.composite
def field_values(draw, texts: list[str], alphabet: Alphabet) -> str | None:
    choice = draw(st.integers(0, 11))
    if choice <= 1:
        return None  # missing
    if choice == 2:
        return ""
    if choice == 3:
        return draw(alphabet.text(0, 5))
    value = draw(st.sampled_from(texts))
    if choice == 4:  # two boundary texts joined by a separator or not
        value += draw(st.sampled_from(("", " ", "-", "_", "é" if "é" in alphabet.chars else "."))) \
            + draw(st.sampled_from(texts))
    return value


_ADDRESSES = re.compile(r"[0-9a-f.:]+( [0-9a-f.:]+)*")


def boundary_events(rule: Rule, alphabet: Alphabet = FULL, min_size: int = 6,
                    max_size: int = 14) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Events keyed by the rule's columns, around its needles and bounds."""
    table = table_of(rule)
    predicates_ = walk_predicates(rule.condition)
    needles_: set[str] = set()
    bounds: set[int] = set()
    for p in predicates_:
        if p.op is Op.CIDR:
            needles_.update(addresses_around(str(v)) for v in p.values)
            continue
        for v in p.values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                bounds.update({int(v) - 1, int(v), int(v) + 1})
            else:
                needles_.add(literal_of(p, v))
    texts = sorted({t for n in sorted(needles_) or [""] for t in variants(n, alphabet)})
    texts += sorted({a for n in needles_ if _ADDRESSES.fullmatch(n) for a in n.split(" ")})
    numbers = sorted(bounds) or [0, 1]

    @st.composite
    def event(draw) -> dict[str, Any]:
        e: dict[str, Any] = {}
        for column in table.strings:
            value = draw(field_values(texts, alphabet))
            if value is not None:
                e[column] = value
        for column in table.numbers:
            if draw(st.integers(0, 4)):
                e[column] = draw(st.sampled_from(numbers))
        return e

    # and always one event with every field missing
    return st.lists(event(), min_size=min_size, max_size=max_size).map(lambda events: events + [{}])


@st.composite
def cases(draw, alphabet: Alphabet = FULL, **rule_kw: Any) -> tuple[Rule, list[dict[str, Any]]]:
    """A rule and events on its boundaries."""
    rule = draw(rules(alphabet=alphabet, **rule_kw))
    return rule, draw(boundary_events(rule, alphabet))
