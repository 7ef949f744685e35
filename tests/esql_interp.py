"""A small interpreter of the ES|QL rmmc's ES|QL backend emits (tests only).

Written from Elastic's ES|QL documentation and grammar, not from rmmc's evaluator (the pages
are under elasticsearch's docs/reference/query-languages/esql/; where they are silent the
interpreter raises `Undocumented`, so a query relying on such an edge fails its test instead
of passing by luck):

* Lexing (x-pack/plugin/esql/src/main/antlr/lexer/Expression.g4): keywords and function names
  are case-insensitive; a string is `"` (`\\t \\n \\r \\" \\\\` | any character but CR, LF, `"`
  and `\\`)* `"`, or `\"\"\"`-quoted with no escapes (and no line break); identifiers are
  `[a-z][a-z0-9_]*` or `[_@][a-z0-9_]+`, or backquoted with a backquote doubled; `//` and
  `/* */` comments.  Anything else is a `SyntaxError`, as Elasticsearch's parser would refuse it.
* Commands: `FROM`, `ROW`, `WHERE`, `EVAL` (assignments left to right, each seeing those to its
  left; a column of the same name is dropped and the new one appended), `STATS ... [WHERE ...]
  BY ...` (commands/layout/stats-by.md), `KEEP` and `DROP` (wildcards; KEEP's precedence
  rules), `RENAME` (the same as one RENAME after another; an existing column of the new name is
  dropped), `SORT` (`ASC`/`DESC`, `NULLS FIRST`/`NULLS LAST`; by default nulls are larger than
  any value), `LIMIT`.
* NULL (esql-null-values.md): a missing field is null; a comparison (`== != < <= > >=`) with
  null is null; `AND`/`OR`/`NOT` are three-valued; `WHERE` keeps a row only when its condition
  is true; `IS [NOT] NULL` is two-valued; functions return null on a null argument; `COALESCE`
  returns its first non-null argument; `CASE` the value of the first condition that is true
  (the default with an odd number of arguments, else null).
* `x IN (a, b)`: true when x equals one of them, null when x is null or no element equals and
  one is null, else false.
* `LIKE` (operators/layout/like.md): `*` any run of characters, `?` one character (a line break
  too: a Lucene wildcard automaton), `\\` makes the next character literal; the whole value
  must match; case-sensitive; a list of patterns is any of them.
* `RLIKE` (operators/layout/rlike.md): a Lucene regular expression over the whole value
  (`rmmc.verify.lucene`, tested against the regexp-syntax page's examples); case-sensitive.
* Arithmetic: `+ - * /` and `%` ("the remainder"), null in, null out; "Division of two integer
  types will yield an integer result, rounding towards 0", so `%` of integers is the remainder
  of that division; division by zero is not documented (`Undocumented`).  A date plus or minus
  a time span (`5 days`, `1 hour`) moves it.
* Functions: `TO_LOWER` / `TO_UPPER` (Java's `toLowerCase` / `toUpperCase(Locale.ROOT)`: full
  Unicode mappings, as Python's `str.lower` / `str.upper`: 'İ' becomes 'i' + U+0307), `LENGTH`
  (characters), `CONCAT`, `SUBSTRING` (from 1; a negative start counts from the end; without a
  length, the rest; documented for positions inside the text only), `LOCATE` (from 1, 0 when
  absent), `REPLACE` (a Java regex: tests/java_regex.py), `TO_STRING` (of an integer: its
  digits), `TO_INTEGER` / `TO_LONG` (null out of range; a double only when whole), `TO_DOUBLE`,
  `ABS`, `FLOOR`, `CEIL`, `MV_COUNT`, `DATE_TRUNC` ("Rounds down a date to the closest interval
  since epoch, which starts at 0001-01-01T00:00:00Z"), `NOW()` (the `now` given to `run`),
  `TO_DATETIME`, `TO_IP` (null, with a warning in Elasticsearch, for anything that is no
  address), `CIDR_MATCH(ip, block, ...)` (Elasticsearch's `ip` type holds an IPv4 address as
  its IPv4-mapped IPv6 address, so both are compared in that form).
* Aggregations (skipping nulls): `COUNT(*)` counts rows, `COUNT(x)` non-null values, `MIN`,
  `MAX` (numbers, dates, keywords), `SUM`, `AVG`, `COUNT_DISTINCT` (counted exactly here:
  Elasticsearch's count is "approximate"), `VALUES` (the distinct values, a multivalue; null
  when none); an aggregation may sit inside other functions (`COALESCE(MV_COUNT(VALUES(x)),
  0)`) and have its own `WHERE`; a null key is a group of its own; without `BY` one row, even
  over no rows; the aggregations come first in the output, then the groups.

`run(query, rows, now)` returns the output rows (dicts).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from java_regex import Undocumented, replace_all
from rmmc.verify.lucene import lucene_fullmatch

__all__ = ["Undocumented", "run", "tokens"]

# ------------------------------------------------------------------ lexing


@dataclass(frozen=True)
class Token:
    kind: str   # str, int, dec, id, qid, op, pipe
    text: str   # the source text
    value: Any  # the string's or number's value, the identifier's name


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_OPS = ("==", "=~", "!=", "<=", ">=", "::", "<", ">", "=", ":", ",", ".", "+", "-", "*", "/",
        "%", "(", ")", "[", "]")
_UNQUOTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*|[_@][A-Za-z0-9_]+")
_NUMBER = re.compile(r"(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|\d+[eE][+-]?\d+|(\d+)")


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                raise SyntaxError("unclosed comment")
            i = end + 2
        elif text.startswith('"""', i):
            end = text.find('"""', i + 3)
            if end == -1 or any(c in text[i + 3:end] for c in "\r\n"):
                raise SyntaxError(f"bad triple-quoted string at {i}")
            end += 3
            while end < len(text) and text[end] == '"' and end - (text.find('"""', i + 3) + 3) < 2:
                end += 1
            body = text[i + 3:end - 3]
            out.append(Token("str", text[i:end], body))
            i = end
        elif ch == '"':
            j, value = i + 1, []
            while True:
                if j >= len(text) or text[j] in "\r\n":
                    raise SyntaxError(f"unclosed string at {i}")
                c = text[j]
                if c == '"':
                    break
                if c == "\\":
                    nxt = text[j + 1:j + 2]
                    if nxt not in _ESCAPES:
                        raise SyntaxError(f"bad escape \\{nxt} at {j}")
                    value.append(_ESCAPES[nxt])
                    j += 2
                else:
                    value.append(c)
                    j += 1
            out.append(Token("str", text[i:j + 1], "".join(value)))
            i = j + 1
        elif ch == "`":
            j, name = i + 1, []
            while True:
                if j >= len(text):
                    raise SyntaxError(f"unclosed quoted identifier at {i}")
                if text[j] == "`":
                    if text.startswith("``", j):
                        name.append("`")
                        j += 2
                        continue
                    break
                name.append(text[j])
                j += 1
            if not name:
                raise SyntaxError("empty quoted identifier")
            out.append(Token("qid", text[i:j + 1], "".join(name)))
            i = j + 1
        elif ch == "|":
            out.append(Token("pipe", "|", "|"))
            i += 1
        elif (m := _NUMBER.match(text, i)) and m.end() > i:
            kind = "int" if m.group(3) and not m.group(2) and m.group(0) == m.group(3) else "dec"
            value = int(m.group(0)) if kind == "int" else float(m.group(0))
            out.append(Token(kind, m.group(0), value))
            i = m.end()
        elif (m := _UNQUOTED.match(text, i)):
            out.append(Token("id", m.group(0), m.group(0)))
            i = m.end()
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                raise SyntaxError(f"unexpected {ch!r} at {i}")
            out.append(Token("op", op, op))
            i += len(op)
    return out


# ------------------------------------------------------------------ values and functions

Null = None


def _string(x: Any) -> str:
    if not isinstance(x, str):
        raise TypeError(f"expected a string, got {x!r}")
    return x


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def like(value: str, pattern: str) -> bool:
    """ES|QL LIKE: `*` any run, `?` one character, `\\` escapes the next; whole value."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), value, re.DOTALL) is not None


def _mapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address


def _block(text: str) -> ipaddress.IPv6Network:
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv4Network):
        return ipaddress.IPv6Network((_mapped(network.network_address), 96 + network.prefixlen))
    return network


def to_ip(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return x
    try:
        return ipaddress.ip_address(_string(x))
    except ValueError:
        return None  # Elasticsearch: null and a warning header


def cidr_match(ip: Any, *blocks: Any) -> Any:
    if ip is None or any(b is None for b in blocks):
        return None
    address = _mapped(ip)
    return any(address in _block(_string(b)) for b in blocks)


def to_datetime(x: Any) -> Any:
    if x is None or isinstance(x, datetime):
        return x
    return datetime.fromisoformat(_string(x).replace("Z", "+00:00"))


def substring(s: Any, start: Any, length: Any = ...) -> Any:
    """From 1; a negative start counts from the end ("A negative start position is
    interpreted as being relative to the end of the string"); 0 as 1 (the VALUES example's
    `SUBSTRING(first_name, 0, 1)`); without a length, the rest.  Positions outside the text and
    lengths past its end are not documented."""
    if s is None or start is None or length is None:
        return None
    s = _string(s)
    index = start - 1 if start > 0 else (len(s) + start if start < 0 else 0)
    if not 0 <= index < len(s):
        raise Undocumented(f"SUBSTRING({s!r}, {start}): a start outside the text")
    if length is ...:
        return s[index:]
    if length < 0 or index + length > len(s):
        raise Undocumented(f"SUBSTRING({s!r}, {start}, {length}): a length past the text")
    return s[index:index + length]


def locate(s: Any, sub: Any) -> Any:
    if s is None or sub is None:
        return None
    if _string(sub) == "":
        raise Undocumented("LOCATE of an empty string")
    return _string(s).find(sub) + 1


def to_string(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, str):
        return x
    if _integer(x):
        return str(x)
    raise Undocumented(f"TO_STRING of {x!r}: its text is not documented")


def _to_whole(x: Any, bits: int) -> Any:
    """TO_INTEGER / TO_LONG: null out of range (documented with its warning); a double only
    when it is a whole number (which way another one rounds is not documented)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, float):
        if not x.is_integer():
            raise Undocumented(f"converting the double {x!r} to a whole number")
        x = int(x)
    if not _integer(x):
        raise Undocumented(f"converting {x!r} to a whole number")
    return x if -2 ** (bits - 1) <= x < 2 ** (bits - 1) else None


def to_double(x: Any) -> Any:
    if x is None:
        return None
    if not _number(x):
        raise Undocumented(f"TO_DOUBLE of {x!r}")
    return float(x)


def _rounded(function: Callable[[float], int]) -> Callable[[Any], Any]:
    def apply(x: Any) -> Any:
        if x is None:
            return None
        if _integer(x):
            return x  # "This is a noop for long (including unsigned) and integer"
        if not _number(x):
            raise TypeError(f"not a number: {x!r}")
        return float(function(x))
    return apply


_EPOCH_0001 = datetime(1, 1, 1, tzinfo=timezone.utc)


def date_trunc(interval: Any, date: Any) -> Any:
    if interval is None or date is None:
        return None
    if not isinstance(interval, timedelta) or not isinstance(date, datetime) or interval <= timedelta(0):
        raise TypeError(f"DATE_TRUNC({interval!r}, {date!r})")
    return _EPOCH_0001 + ((date - _EPOCH_0001) // interval) * interval


def mv_count(x: Any) -> Any:
    if x is None:
        return None
    return len(x) if isinstance(x, list) else 1


def concat(*xs: Any) -> Any:
    if len(xs) < 2:
        raise SyntaxError("CONCAT takes two or more strings")
    if any(x is None for x in xs):
        return None
    return "".join(_string(x) for x in xs)


def replace(s: Any, regex: Any, new: Any) -> Any:
    if s is None or regex is None or new is None:
        return None
    return replace_all(_string(s), _string(regex), _string(new))


def _not_a_number(x: Any) -> Any:
    raise TypeError(f"not a number: {x!r}")


def _null_safe(function: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *xs: None if any(x is None for x in xs) else function(*xs)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "to_lower": lambda x: None if x is None else _string(x).lower(),
    "to_upper": lambda x: None if x is None else _string(x).upper(),
    "coalesce": lambda *xs: next((x for x in xs if x is not None), None),
    "to_ip": to_ip,
    "cidr_match": cidr_match,
    "to_datetime": to_datetime,
    "length": lambda x: None if x is None else len(_string(x)),
    "substring": substring,
    "locate": locate,
    "concat": concat,
    "replace": replace,
    "to_string": to_string,
    "to_integer": lambda x: _to_whole(x, 32),
    "to_long": lambda x: _to_whole(x, 64),
    "to_double": to_double,
    "abs": _null_safe(lambda x: abs(x) if _number(x) else _not_a_number(x)),
    "floor": _rounded(math.floor),
    "ceil": _rounded(math.ceil),
    "date_trunc": date_trunc,
    "mv_count": mv_count,
}

_UNITS = {"millisecond": timedelta(milliseconds=1), "second": timedelta(seconds=1),
          "minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1),
          "week": timedelta(weeks=1)}


def _span(count: int, unit: str) -> timedelta:
    unit = unit.lower()
    base = unit[:-1] if unit.endswith("s") else unit
    if base not in _UNITS:
        raise SyntaxError(f"unknown time unit {unit!r}")
    return count * _UNITS[base]


def compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    numeric = (int, float)
    if isinstance(a, bool) != isinstance(b, bool) or (
            isinstance(a, numeric) != isinstance(b, numeric)) or (
            isinstance(a, str) != isinstance(b, str)) or (
            isinstance(a, datetime) != isinstance(b, datetime)) or isinstance(a, list) or isinstance(b, list):
        raise TypeError(f"cannot compare {a!r} and {b!r}")
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "=~":
        return _string(a).lower() == _string(b).lower()
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def arithmetic(op: str, a: Any, b: Any) -> Any:
    """`+ - * / %` on numbers (integer `/` truncates toward zero, `%` is the remainder of that
    division), and a date moved by a time span; null in, null out."""
    if a is None or b is None:
        return None
    if isinstance(a, datetime) and isinstance(b, timedelta) and op in "+-":
        return a + b if op == "+" else a - b
    if isinstance(a, timedelta) and isinstance(b, datetime) and op == "+":
        return b + a
    if not (_number(a) and _number(b)):
        raise TypeError(f"cannot compute {a!r} {op} {b!r}")
    if op in "/%" and b == 0:
        raise Undocumented(f"{a!r} {op} 0: division by zero is not documented")
    if op == "/":
        if _integer(a) and _integer(b):
            quotient = abs(a) // abs(b)
            return quotient if (a >= 0) == (b >= 0) else -quotient
        return a / b
    if op == "%":
        if _integer(a) and _integer(b):
            return a - b * arithmetic("/", a, b)
        return math.fmod(a, b)
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b}[op]()


def and3(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def or3(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def not3(a: Any) -> Any:
    return None if a is None else not a


def _boolean(x: Any) -> Any:
    if x is not None and not isinstance(x, bool):
        raise TypeError(f"not a boolean: {x!r}")
    return x


# ------------------------------------------------------------------ aggregations


def _values(vs: list[Any]) -> Any:
    distinct = list(dict.fromkeys(vs))
    return sorted(distinct, key=repr) if distinct else None


_AGGREGATES: dict[str, Callable[[list[Any]], Any]] = {
    "min": lambda vs: min(vs) if vs else None,
    "max": lambda vs: max(vs) if vs else None,
    "sum": lambda vs: sum(vs) if vs else None,
    "avg": lambda vs: sum(vs) / len(vs) if vs else None,
    "count_distinct": lambda vs: len(set(vs)),
    "values": _values,
}


# ------------------------------------------------------------------ expressions

Row = dict[str, Any]
Expr = Callable[[Row], Any]


class _Parser:
    def __init__(self, toks: list[Token], now: datetime):
        self.toks, self.i, self.now = toks, 0, now
        self.aggregating = False       # parsing a STATS aggregation: aggregate calls allowed
        self.members: list[Row] = []   # the rows an aggregation reads when it is evaluated

    def peek(self, *words: str) -> Token | None:
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        if not words:
            return tok
        if tok.kind in ("id", "op") and tok.text.lower() in words:
            return tok
        return None

    def take(self, *words: str) -> Token:
        tok = self.peek(*words)
        if tok is None:
            raise SyntaxError(f"expected {words or 'a token'} at {self.i}: {self.toks[self.i:self.i + 3]}")
        self.i += 1
        return tok

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def text(self, start: int) -> str:
        """The source text of the tokens from `start` (how ES|QL names an unnamed column)."""
        return "".join(t.text + (" " if t.text == "," else "") for t in self.toks[start:self.i])

    def assignment(self) -> tuple[str, Expr]:
        """`[name =] expression`; an unnamed column is named by the expression's text."""
        start = self.i
        if self.peek() is not None and self.peek().kind in ("id", "qid"):
            self.name()
            if self.peek("="):
                name = ".".join(t.value for t in self.toks[start:self.i] if t.kind in ("id", "qid"))
                self.take("=")
                return name, self.boolean()
            self.i = start
        expr = self.boolean()
        return self.text(start), expr

    # booleanExpression: OR < AND < NOT < predicates
    def boolean(self) -> Expr:
        return self.chain("or", self.conjunction, or3)

    def conjunction(self) -> Expr:
        return self.chain("and", self.negation, and3)

    def chain(self, word: str, operand: Callable[[], Expr], combine: Callable[[Any, Any], Any]) -> Expr:
        """`a OP b OP c ...`, left to right, evaluated in a loop (a long chain is no deep call)."""
        parts = [operand()]
        while self.peek(word):
            self.take()
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]

        def evaluate(row: Row) -> Any:
            value = _boolean(parts[0](row))
            for part in parts[1:]:
                value = combine(value, _boolean(part(row)))
            return value
        return evaluate

    def negation(self) -> Expr:
        if self.peek("not"):
            self.take()
            inner = self.negation()
            return lambda row: not3(_boolean(inner(row)))
        return self.predicate()

    def predicate(self) -> Expr:
        left = self.value()
        negate = False
        if self.peek("not") and self.i + 1 < len(self.toks) and \
                self.toks[self.i + 1].text.lower() in ("like", "rlike", "in"):
            self.take()
            negate = True
        if self.peek("like", "rlike"):
            keyword = self.take().text.lower()
            patterns = self.patterns()
            test = like if keyword == "like" else lucene_fullmatch

            def matcher(row: Row, left=left, patterns=patterns, test=test) -> Any:
                value = left(row)
                return None if value is None else any(test(p, _string(value)) if test is lucene_fullmatch
                                                      else test(_string(value), p) for p in patterns)
            expr: Expr = matcher
        elif self.peek("in"):
            self.take()
            self.take("(")
            items = [self.value()]
            while self.peek(","):
                self.take()
                items.append(self.value())
            self.take(")")

            def member(row: Row, left=left, items=items) -> Any:
                value = left(row)
                if value is None:
                    return None
                values = [item(row) for item in items]
                if any(v is not None and compare("==", value, v) for v in values):
                    return True
                return None if None in values else False
            expr = member
        elif self.peek("is"):
            self.take()
            positive = not self.peek("not")
            if not positive:
                self.take()
            self.take("null")
            return lambda row: (left(row) is None) == positive
        else:
            return left
        return (lambda row: not3(expr(row))) if negate else expr

    def patterns(self) -> list[str]:
        if self.peek("("):
            self.take()
            out = [self.string()]
            while self.peek(","):
                self.take()
                out.append(self.string())
            self.take(")")
            return out
        return [self.string()]

    def string(self) -> str:
        tok = self.take()
        if tok.kind != "str":
            raise SyntaxError(f"expected a string, got {tok.text}")
        return tok.value

    def value(self) -> Expr:
        left = self.arithmetic()
        tok = self.peek("==", "!=", "<", "<=", ">", ">=", "=~")
        if tok is None:
            return left
        op = self.take().text
        right = self.arithmetic()
        return lambda row: compare(op, left(row), right(row))

    def arithmetic(self, ops: tuple[str, ...] = ("+", "-")) -> Expr:
        """`+ -` over `* / %` over primaries (see `arithmetic`)."""
        inner = (lambda: self.arithmetic(("*", "/", "%"))) if ops == ("+", "-") else self.primary
        left = inner()
        while self.peek(*ops):
            op = self.take().text
            right = inner()
            left = (lambda l, r, op: lambda row: arithmetic(op, l(row), r(row)))(left, right, op)
        return left

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind == "op" and tok.text == "(":
            inner = self.boolean()
            self.take(")")
            return inner
        if tok.kind == "op" and tok.text == "-":
            inner = self.primary()

            def negative(row: Row) -> Any:
                value = inner(row)
                if value is None:
                    return None
                if not _number(value):
                    raise TypeError(f"cannot negate {value!r}")
                return -value
            return negative
        if tok.kind == "str":
            return lambda row, v=tok.value: v
        if tok.kind in ("int", "dec"):
            unit = self.peek()
            if tok.kind == "int" and unit is not None and unit.kind == "id" and \
                    unit.text.lower().rstrip("s") in _UNITS:
                self.take()
                span = _span(tok.value, unit.text)
                return lambda row: span
            return lambda row, v=tok.value: v
        if tok.kind == "id" and tok.text.lower() in ("true", "false"):
            return lambda row, v=tok.text.lower() == "true": v
        if tok.kind == "id" and tok.text.lower() == "null":
            return lambda row: None
        if tok.kind in ("id", "qid"):
            if tok.kind == "id" and self.peek("("):
                return self.call(tok.text.lower())
            name = self.qualified(tok)
            return lambda row: row.get(name)
        raise SyntaxError(f"unexpected {tok.text!r}")

    def qualified(self, first: Token) -> str:
        parts = [first.value]
        while self.peek(".") and self.i + 1 < len(self.toks) and self.toks[self.i + 1].kind in ("id", "qid"):
            self.take()
            parts.append(self.take().value)
        return ".".join(parts)

    def arguments(self) -> list[Expr]:
        self.take("(")
        args: list[Expr] = []
        while not self.peek(")"):
            args.append(self.boolean())
            if self.peek(","):
                self.take()
        self.take(")")
        return args

    def call(self, name: str) -> Expr:
        if name == "count" or name in _AGGREGATES:
            return self.aggregation(name)
        args = self.arguments()
        if name == "now":
            return lambda row: self.now
        if name == "case":
            def case(row: Row) -> Any:  # only the value chosen is computed
                for i in range(0, len(args) - 1, 2):
                    if _boolean(args[i](row)) is True:
                        return args[i + 1](row)
                return args[-1](row) if len(args) % 2 else None
            return case
        if name not in FUNCTIONS:
            raise SyntaxError(f"function {name} is not in the subset")
        function = FUNCTIONS[name]
        return lambda row: function(*(a(row) for a in args))

    def aggregation(self, name: str) -> Expr:
        """An aggregate call inside a STATS aggregation: over `self.members` when evaluated."""
        if not self.aggregating:
            raise SyntaxError(f"aggregation {name} outside STATS")
        self.aggregating = False  # no aggregation inside an aggregation
        self.take("(")
        argument: Expr | None = None
        if self.peek("*"):
            self.take()
        else:
            argument = self.boolean()
        self.take(")")
        self.aggregating = True
        if argument is None and name != "count":
            raise SyntaxError(f"{name}(*)")

        def aggregate(row: Row) -> Any:
            if argument is None:
                return len(self.members)
            values = []
            for member in self.members:
                value = argument(member)
                if isinstance(value, list):
                    values.extend(value)
                elif value is not None:
                    values.append(value)
            if name == "count":
                return len(values)
            return _AGGREGATES[name](values)
        return aggregate

    def name(self) -> str:
        tok = self.take()
        if tok.kind not in ("id", "qid"):
            raise SyntaxError(f"expected a name, got {tok.text}")
        return self.qualified(tok)

    def names(self) -> list[str]:
        """A comma-separated list of names and wildcard patterns (KEEP, DROP)."""
        out = []
        while not self.done():
            parts = []
            while not self.done() and not self.peek(","):
                parts.append(self.take())
            text = "".join(t.value if t.kind in ("id", "qid") else t.text for t in parts)
            if not text:
                raise SyntaxError("an empty column name")
            out.append(text)
            if self.peek(","):
                self.take()
        return out


# ------------------------------------------------------------------ commands


def _commands(toks: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    depth = 0
    for tok in toks:
        if tok.kind == "op" and tok.text in "([":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]":
            depth -= 1
        if tok.kind == "pipe" and depth == 0:
            out.append([])
        else:
            out[-1].append(tok)
    return out


def _stats(p: _Parser, rows: list[Row]) -> list[Row]:
    aggregates: list[tuple[str, Expr, Expr | None]] = []
    while not p.done() and not p.peek("by"):
        p.aggregating = True
        label, expr = p.assignment()
        p.aggregating = False
        where = None
        if p.peek("where"):
            p.take()
            where = p.boolean()
        aggregates.append((label, expr, where))
        if p.peek(","):
            p.take()
    groups: list[tuple[str, Expr]] = []
    if p.peek("by"):
        p.take()
        while True:
            groups.append(p.assignment())
            if not p.peek(","):
                break
            p.take()
    table: dict[tuple, tuple[list[Any], list[Row]]] = {}
    for row in rows:
        key = [expr(row) for _, expr in groups]
        if any(isinstance(k, list) for k in key):
            raise Undocumented("grouping by a multivalue")
        table.setdefault(tuple(repr(k) for k in key), (key, []))[1].append(row)
    if not groups and not table:
        table[()] = ([], [])
    out = []
    for key, members in table.values():
        result: Row = {}
        for label, expr, where in aggregates:
            p.members = [m for m in members if where is None or _boolean(where(m)) is True]
            result.pop(label, None)
            result[label] = expr({})
        for (label, _), value in zip(groups, key):
            result.pop(label, None)
            result[label] = value
        out.append(result)
    return out


def _keep(patterns: list[str], rows: list[Row]) -> list[Row]:
    """KEEP's order and precedence: a complete name over a partial wildcard over `*`; on a
    tie the rightmost wins; columns of one pattern keep their order."""
    columns = list(dict.fromkeys([c for r in rows for c in r] + [p for p in patterns if "*" not in p]))

    def rank(pattern: str) -> int:
        return 3 if "*" not in pattern else (1 if pattern == "*" else 2)

    placed: dict[str, int] = {}
    for column in columns:
        best = None
        for index, pattern in enumerate(patterns):
            if fnmatch.fnmatchcase(column, pattern) and (best is None or rank(pattern) >= rank(patterns[best])):
                best = index
        if best is not None:
            placed[column] = best
    order = sorted(placed, key=lambda c: (placed[c], columns.index(c)))
    return [{c: r.get(c) for c in order} for r in rows]


def _sort(p: _Parser, rows: list[Row]) -> list[Row]:
    keys = []
    while not p.done():
        expr = p.value()
        descending = False
        if p.peek("asc", "desc"):
            descending = p.take().text.lower() == "desc"
        nulls_first = descending  # "null values are treated as being larger than any other value"
        if p.peek("nulls"):
            p.take()
            nulls_first = p.take("first", "last").text.lower() == "first"
        keys.append((expr, descending, nulls_first))
        if p.peek(","):
            p.take()

    def order(a: Row, b: Row) -> int:
        for expr, descending, nulls_first in keys:
            x, y = expr(a), expr(b)
            if x is None and y is None:
                continue
            if x is None or y is None:
                return (-1 if x is None else 1) * (1 if nulls_first else -1)
            if compare("==", x, y):
                continue
            less = compare("<", x, y)
            return (-1 if less else 1) * (-1 if descending else 1)
        return 0

    return sorted(rows, key=functools.cmp_to_key(order))


def run(query: str, rows: list[Row], now: datetime | None = None) -> list[Row]:
    """The rows `query` returns over `rows` (each a dict of field name -> value, a missing
    field absent or None)."""
    now = now or datetime.now(timezone.utc)
    commands = _commands(tokens(query))
    current = [dict(r) for r in rows]
    for i, toks in enumerate(commands):
        if not toks:
            raise SyntaxError("empty command")
        keyword = toks[0].text.lower()
        p = _Parser(toks[1:], now)
        if i == 0 and keyword != "row":
            if keyword != "from":
                raise SyntaxError("a query starts with FROM or ROW")
            continue
        if keyword == "row":
            current = [{}]
            keyword = "eval"
        if keyword == "where":
            condition = p.boolean()
            current = [r for r in current if _boolean(condition(r)) is True]
        elif keyword == "eval":
            assignments = []
            while not p.done():
                assignments.append(p.assignment())
                if p.peek(","):
                    p.take()
            for r in current:
                for name, expr in assignments:
                    value = expr(r)
                    r.pop(name, None)  # an existing column is dropped, the new one appended
                    r[name] = value
        elif keyword == "stats":
            current = _stats(p, current)
        elif keyword == "keep":
            current = _keep(p.names(), current)
        elif keyword == "drop":
            patterns = p.names()
            current = [{c: v for c, v in r.items() if not any(fnmatch.fnmatchcase(c, x) for x in patterns)}
                       for r in current]
        elif keyword == "rename":
            pairs = []
            while not p.done():
                old = p.name()
                p.take("as")
                pairs.append((old, p.name()))
                if p.peek(","):
                    p.take()
            for r in current:
                for old, new in pairs:  # one RENAME after another
                    value = r.pop(old, None)
                    r.pop(new, None)
                    r[new] = value
        elif keyword == "limit":
            current = current[:int(p.take().value)]
        elif keyword == "sort":
            current = _sort(p, current)
        else:
            raise SyntaxError(f"command {keyword} is not in the subset")
        if not p.done():
            raise SyntaxError(f"trailing tokens in {keyword}: {p.toks[p.i:]}")
    return current
