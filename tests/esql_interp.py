"""A small interpreter of the ES|QL subset rmmc's ES|QL backend emits (tests only).

Written from Elastic's ES|QL documentation and grammar, not from rmmc's evaluator:

* Lexing (x-pack/plugin/esql/src/main/antlr/lexer/Expression.g4): keywords and function names
  are case-insensitive; a string is `"` (`\\t \\n \\r \\" \\\\` | any character but CR, LF, `"`
  and `\\`)* `"`, or `\"\"\"`-quoted with no escapes (and no line break); identifiers are
  `[a-z][a-z0-9_]*` or `[_@][a-z0-9_]+`, or backquoted with a backquote doubled; `//` and
  `/* */` comments.  Anything else is a `SyntaxError`, as Elasticsearch's parser would refuse it.
* Commands: `FROM`, `ROW`, `WHERE`, `EVAL`, `STATS ... BY ...`, `KEEP`, `RENAME`, `SORT`, `LIMIT`.
* NULL (docs/reference/query-languages/esql/esql-null-values.md): a missing field is null; a
  comparison (`== != < <= > >=`) with null is null; `AND`/`OR`/`NOT` are three-valued; `WHERE`
  keeps a row only when its condition is true; `IS [NOT] NULL` is two-valued; most functions
  return null on a null argument; `COALESCE` returns its first non-null argument.
* `x IN (a, b)`: true when x equals one of them, null when x is null or no element equals and
  one is null, else false.
* `LIKE` (operators/layout/like.md): `*` any run of characters, `?` one character (a line break
  too: a Lucene wildcard automaton), `\\` makes the next character literal; the whole value
  must match; case-sensitive; a list of patterns is any of them.
* `RLIKE` (operators/layout/rlike.md): a Lucene regular expression over the whole value
  (`rmmc.verify.lucene`, tested against the regexp-syntax page's examples); case-sensitive.
* `TO_LOWER`: Java's `String.toLowerCase(Locale.ROOT)`, full Unicode mapping (Python's
  `str.lower` is the same mapping: 'İ' becomes 'i' + U+0307).
* `TO_IP` reads an address (null, with a warning in Elasticsearch, for anything else);
  `CIDR_MATCH(ip, block, ...)` is whether the address is in one of the blocks.  Elasticsearch's
  `ip` type holds an IPv4 address as its IPv4-mapped IPv6 address, so both are compared in that
  form (an IPv4 value is inside `::ffff:0:0/96`).
* `STATS`: aggregates then group columns, a null key is its own group; `COUNT(*)` counts rows,
  `COUNT(x)` non-null values; `MIN MAX SUM AVG COUNT_DISTINCT VALUES` ignore nulls.
* `NOW()` is the `now` given to `run`; `NOW() - 5 days` subtracts a time span.

`run(query, rows, now)` returns the output rows (dicts).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from rmmc.verify.lucene import lucene_fullmatch

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


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "to_lower": lambda x: None if x is None else _string(x).lower(),
    "to_upper": lambda x: None if x is None else _string(x).upper(),
    "coalesce": lambda *xs: next((x for x in xs if x is not None), None),
    "to_ip": to_ip,
    "cidr_match": cidr_match,
    "to_datetime": to_datetime,
    "length": lambda x: None if x is None else len(_string(x)),
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
            isinstance(a, str) != isinstance(b, str)):
        raise TypeError(f"cannot compare {a!r} and {b!r}")
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "=~":
        return _string(a).lower() == _string(b).lower()
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


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


# ------------------------------------------------------------------ expressions

Row = dict[str, Any]
Expr = Callable[[Row], Any]


class _Parser:
    def __init__(self, toks: list[Token], now: datetime):
        self.toks, self.i, self.now = toks, 0, now

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

    # booleanExpression: OR < AND < NOT < predicates
    def boolean(self) -> Expr:
        left = self.conjunction()
        while self.peek("or"):
            self.take()
            right = self.conjunction()
            left = (lambda l, r: lambda row: or3(l(row), r(row)))(left, right)
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.peek("and"):
            self.take()
            right = self.negation()
            left = (lambda l, r: lambda row: and3(l(row), r(row)))(left, right)
        return left

    def negation(self) -> Expr:
        if self.peek("not"):
            self.take()
            inner = self.negation()
            return lambda row: not3(inner(row))
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
        """`+ -` over `* / %` over primaries; null in, null out; integer division truncates
        (Java's)."""
        inner = (lambda: self.arithmetic(("*", "/", "%"))) if ops == ("+", "-") else self.primary
        left = inner()
        while self.peek(*ops):
            op = self.take().text
            right = inner()

            def calc(row: Row, l=left, r=right, op=op) -> Any:
                a, b = l(row), r(row)
                if a is None or b is None:
                    return None
                if op == "/" and isinstance(a, int) and isinstance(b, int):
                    return int(a / b)
                return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                        "/": lambda: a / b, "%": lambda: a % b}[op]()
            left = calc
        return left

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind == "op" and tok.text == "(":
            inner = self.boolean()
            self.take(")")
            return inner
        if tok.kind == "op" and tok.text == "-":
            inner = self.primary()
            return lambda row: None if inner(row) is None else -inner(row)
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

    def call(self, name: str) -> Expr:
        self.take("(")
        args: list[Expr] = []
        while not self.peek(")"):
            args.append(self.boolean())
            if self.peek(","):
                self.take()
        self.take(")")
        if name == "now":
            return lambda row: self.now
        if name not in FUNCTIONS:
            raise SyntaxError(f"function {name} is not in the subset")
        function = FUNCTIONS[name]
        return lambda row: function(*(a(row) for a in args))

    def name(self) -> str:
        tok = self.take()
        if tok.kind not in ("id", "qid"):
            raise SyntaxError(f"expected a name, got {tok.text}")
        return self.qualified(tok)


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


_AGGREGATES: dict[str, Callable[[list[Any]], Any]] = {
    "min": lambda vs: min(vs) if vs else None,
    "max": lambda vs: max(vs) if vs else None,
    "sum": lambda vs: sum(vs) if vs else None,
    "avg": lambda vs: sum(vs) / len(vs) if vs else None,
    "count_distinct": lambda vs: len(set(vs)),
    "values": lambda vs: sorted(set(vs), key=str) if vs else None,
}


def _stats(p: _Parser, rows: list[Row]) -> list[Row]:
    aggregates: list[tuple[str, str, Expr | None]] = []
    while not p.done() and not p.peek("by"):
        label = None
        if p.i + 1 < len(p.toks) and p.toks[p.i + 1].text == "=":
            label = p.name()
            p.take("=")
        start = p.i
        function = p.take().text.lower()
        p.take("(")
        argument: Expr | None = None
        if p.peek("*"):
            p.take()
        else:
            argument = p.boolean()
        p.take(")")
        text = " ".join(t.text for t in p.toks[start:p.i])
        aggregates.append((label or text, function, argument))
        if p.peek(","):
            p.take()
    groups: list[str] = []
    if p.peek("by"):
        p.take()
        groups.append(p.name())
        while p.peek(","):
            p.take()
            groups.append(p.name())
    table: dict[tuple, list[Row]] = {}
    for row in rows:
        table.setdefault(tuple(row.get(g) for g in groups), []).append(row)
    if not groups and not table:
        table[()] = []
    out = []
    for key, members in table.items():
        result: Row = {}
        for label, function, argument in aggregates:
            values = [] if argument is None else [v for v in (argument(m) for m in members) if v is not None]
            if function == "count":
                result[label] = len(members) if argument is None else len(values)
            elif function in _AGGREGATES:
                result[label] = _AGGREGATES[function](values)
            else:
                raise SyntaxError(f"aggregate {function} is not in the subset")
        result.update(zip(groups, key))
        out.append(result)
    return out


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
            current = [r for r in current if condition(r) is True]
        elif keyword == "eval":
            assignments = []
            while not p.done():
                start = p.i
                if p.i + 1 < len(p.toks) and p.toks[p.i + 1].text == "=":
                    name = p.name()
                    p.take("=")
                    expr = p.boolean()
                else:  # unnamed: the column is called by the expression's text
                    expr = p.boolean()
                    name = "".join(t.text + (" " if t.text == "," else "") for t in p.toks[start:p.i])
                assignments.append((name, expr))
                if p.peek(","):
                    p.take()
            for r in current:
                for name, expr in assignments:
                    r[name] = expr(r)
        elif keyword == "stats":
            current = _stats(p, current)
        elif keyword == "keep":
            names = [p.name()]
            while p.peek(","):
                p.take()
                names.append(p.name())
            current = [{n: r.get(n) for n in names} for r in current]
        elif keyword == "rename":
            pairs = []
            while not p.done():
                old = p.name()
                p.take("as")
                pairs.append((old, p.name()))
                if p.peek(","):
                    p.take()
            for r in current:
                for old, new in pairs:
                    r[new] = r.pop(old, None)
        elif keyword == "limit":
            current = current[:int(p.take().value)]
        elif keyword == "sort":
            keys = []
            while not p.done():
                expr = p.value()
                descending = bool(p.peek("desc"))
                if p.peek("asc", "desc"):
                    p.take()
                keys.append((expr, descending))
                if p.peek(","):
                    p.take()
            for expr, descending in reversed(keys):  # nulls are larger than any value
                current.sort(key=lambda r, e=expr: (e(r) is None, e(r) if e(r) is not None else 0),
                             reverse=descending)
        else:
            raise SyntaxError(f"command {keyword} is not in the subset")
        if not p.done():
            raise SyntaxError(f"trailing tokens in {keyword}: {p.toks[p.i:]}")
    return current
