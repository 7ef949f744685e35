"""The rest of the SPL pipeline for tests: `run(spl, events)` gives the rows a query returns.

`tests/spl_interp.py` reads the first line (`search`) and `| where`; this module runs every
command rmmc's Splunk backend writes after it, over rows (dicts; a missing field is absent):
`where`, `eval`, `fillnull`, `stats`, `eventstats`, `dedup`, `table`, `fields -`, `rename`,
`sort`, `head`.  It is written from Splunk's documentation (Search Reference: eval and its
functions, stats functions, sort, fields, rename, dedup), not from rmmc's evaluator, and it
raises `Undocumented` where Splunk does not document the behaviour (a null in arithmetic or in
`if()`'s condition, `substr` outside the text, `%` by zero, an empty value in `dc()` ...): a
query that relies on such an edge fails its test instead of passing by luck.

Documented behaviour modelled:
* eval: comma-separated assignments left to right, later ones see earlier ones; a boolean
  cannot be assigned; a null result removes the field.  Arithmetic in double precision (`/`
  always gives a real); division by zero gives null.  `.` joins two strings; `+` adds numbers
  or joins two strings.  Comparisons take two numbers or two strings (strings compare by
  code point, case-sensitively); a null makes them null; AND / OR / NOT are three-valued.
* functions: len (code points), lower, upper, substr (from 1), replace (PCRE, every match,
  `\\1` names a group; one that took no part in a match is undocumented), match, if, case,
  coalesce, nullif, isnull, isnotnull, tostring, floor, ceiling, abs, mvcount, mvfind (the
  index of the first value the regex matches, else null), cidrmatch, now, true, false, null.
* stats / eventstats: count, count(x), dc, sum, avg, min, max (numbers, else text by code
  point), values (distinct, sorted as text), list (event order, at most 100, as text), first;
  an event whose by-field is null is left out; without `by`, one row even over no events.
* sort: `num()` / `str()` keys, a missing field last in both directions; `sort 0`: every row.
* fields: `fields - a b` drops them; `fields a b` keeps them and the internal `_time`, `_raw`
  (the Search Reference: it does not remove internal fields unless told to).
* dedup keeps the first event of each combination and drops events missing one of the fields;
  rename `a as b` gives b a's value (none when a is missing); table keeps only its fields.
* join (Search Reference, join): `join type=inner|left max=N <fields> [<subsearch>]`: the
  subsearch runs over the same events; each main result pairs with the first N subsearch
  results (0: all) whose join fields hold the same values, the subsearch's fields overwriting
  its own (overwrite=true, the default); `inner` drops a result with no match, `left` keeps it
  as it is.  A join field missing on either side is not documented (raises).
* streamstats count as X (the result's position, from 1); mvexpand f (one result per value, a
  single value as it is); eval's mvrange(a, b) (a to b-1), mvindex(f, i), max(a, b) of numbers,
  mvmap(f, expr) (expr once per value of f, f standing for that value, other fields as they
  are), mvfind(f, regex) (the index of the first value the regex matches, else null); match()'s
  regex may be a field (every eval function that takes a string takes a field).
* inputlookup (Search Reference, inputlookup): `inputlookup [append=true] [strict=true] <file>.csv` reads a CSV
  lookup file (`lookups`: file name -> its text): the first row names the fields, each further
  row is a result of those fields as text, an empty cell no field; `append=true` adds them after
  the current results, else they replace them.  A missing file raises (Splunk warns and returns
  nothing: a test that needs a lookup gives it).
* rex (Search Reference, rex): `rex field=f "<PCRE>"`: each named group that takes part in
  the first match becomes a field; no match (or a missing f) leaves the result as it is.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

from tests.spl_interp import SearchParser, tokens as search_tokens

NOW = 1_700_000_000.0  # `now()`: the search's start time in tests


class Undocumented(AssertionError):
    """The query relies on behaviour Splunk does not document."""


# ------------------------------------------------------------------ eval expressions

_TOKEN = re.compile(r'''\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<fq>'[^']*')|(?P<num>\d+\.\d+|\d+)'''
                    r'''|(?P<op>==|!=|<=|>=|<|>|=|\(|\)|,|\+|-|\*|/|%|\.)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))''', re.S)


def eval_tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SyntaxError(f"bad eval at {pos}: {text[pos:pos + 30]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def unquote(literal: str) -> str:
    """An eval string literal: `\\\\` and `\\"` are escapes; rmmc writes no other."""
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            if body[i + 1] not in '\\"':
                raise Undocumented(f"escape \\{body[i + 1]} in an eval string")
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def pcre_to_python(pattern: str) -> str:
    """A PCRE as Python's `re` reads it the same, for the syntax rmmc writes: `\\x{hh}`,
    `\\z` (the very end); `$` means the same in both (also before a final line break)."""
    pattern = re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: "\\U%08x" % int(m.group(1), 16), pattern)
    return re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Expr:
    """A parsed eval expression over one row."""

    def __init__(self, toks: list[tuple[str, str]], start: int = 0):
        self.toks, self.i = toks, start

    def peek(self, value: str | None = None):
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        return tok if value is None or tok[1] == value else None

    def take(self, value: str | None = None):
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise SyntaxError(f"expected {value!r}, got {tok!r} in {self.toks}")
        self.i += 1
        return tok

    # grammar: or > and > not > comparison > additive (+ - .) > multiplicative > unary > primary
    def parse(self):
        return self.disj()

    def disj(self):
        left = self.conj()
        while self.peek("OR"):
            self.take()
            right = self.conj()
            left = ("or", left, right)
        return left

    def conj(self):
        left = self.neg()
        while self.peek("AND"):
            self.take()
            right = self.neg()
            left = ("and", left, right)
        return left

    def neg(self):
        if self.peek("NOT"):
            self.take()
            return ("not", self.neg())
        return self.comparison()

    def comparison(self):
        left = self.additive()
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("==", "!=", "<", "<=", ">", ">=", "="):
            op = self.take()[1]
            return ("cmp", "==" if op == "=" else op, left, self.additive())
        return left

    def additive(self):
        left = self.multiplicative()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "+-.":
            op = self.take()[1]
            left = ("arith", op, left, self.multiplicative())
        return left

    def multiplicative(self):
        left = self.unary()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in ("*", "/", "%"):
            op = self.take()[1]
            left = ("arith", op, left, self.unary())
        return left

    def unary(self):
        if self.peek("-"):
            self.take()
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        if self.peek("("):
            self.take("(")
            inner = self.disj()
            self.take(")")
            return inner
        kind, text = self.take()
        if kind == "str":
            return ("lit", unquote(text))
        if kind == "num":
            return ("lit", float(text) if "." in text else int(text))
        if kind == "fq":
            return ("field", text[1:-1])
        if kind != "word":
            raise SyntaxError(f"unexpected {text!r}")
        if self.peek("("):
            self.take("(")
            args = []
            while not self.peek(")"):
                args.append(self.disj())
                if self.peek(","):
                    self.take()
            self.take(")")
            return ("call", text, args)
        return ("field", text)


def evaluate(node, row: dict) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "field":
        return row.get(node[1])
    if kind == "not":
        inner = evaluate(node[1], row)
        return None if inner is None else not _bool(inner)
    if kind in ("and", "or"):
        a, b = evaluate(node[1], row), evaluate(node[2], row)
        a = None if a is None else _bool(a)
        b = None if b is None else _bool(b)
        if kind == "and":
            return False if (a is False or b is False) else (None if None in (a, b) else True)
        return True if (a is True or b is True) else (None if None in (a, b) else False)
    if kind == "cmp":
        return _compare(node[1], evaluate(node[2], row), evaluate(node[3], row))
    if kind == "arith":
        return _arith(node[1], evaluate(node[2], row), evaluate(node[3], row))
    if kind == "neg":
        value = evaluate(node[1], row)
        if not _number(value):
            raise Undocumented(f"unary minus of {value!r}")
        return -value
    if kind == "call":
        return call(node[1], node[2], row)
    raise ValueError(node)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Undocumented(f"{value!r} used as a boolean")
    return value


def _compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, list) or isinstance(b, list):
        raise Undocumented("a comparison with a multivalue field")
    if _number(a) and _number(b):
        pass
    elif isinstance(a, str) and isinstance(b, str):
        pass
    else:
        raise Undocumented(f"comparison of {a!r} and {b!r} (a number and a string)")
    return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _arith(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        raise Undocumented(f"{op} with a null operand")
    if op == ".":
        if not (isinstance(a, str) and isinstance(b, str)):
            raise Undocumented(f"'.' of {a!r} and {b!r} (rmmc joins only text)")
        return a + b
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_number(a) and _number(b)):
        raise Undocumented(f"{op} of {a!r} and {b!r}")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return None if b == 0 else a / b
    if op == "%":
        if b == 0:
            raise Undocumented("% by zero")
        return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else \
            int(math.copysign(abs(a) % abs(b), a))  # C's remainder; rmmc must not depend on it
    raise ValueError(op)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Undocumented(f"{what} of {value!r}")
    return value


def _replacement(text: str) -> str:
    """Splunk's replacement text (`\\1` .. `\\9` name groups) for Python's `re.sub`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 < len(text) and text[i + 1].isdigit():
                out.append("\\" + text[i + 1])
                i += 2
                continue
            raise Undocumented(f"backslash in the replacement {text!r}")
        out.append(text[i].replace("\\", "\\\\"))
        i += 1
    return "".join(out)


def call(name: str, args: list, row: dict) -> Any:
    if name == "if":
        condition = evaluate(args[0], row)
        if not isinstance(condition, bool):
            raise Undocumented(f"if() with the condition {condition!r}")
        return evaluate(args[1] if condition else args[2], row)
    if name == "case":
        for i in range(0, len(args) - 1, 2):
            condition = evaluate(args[i], row)
            if not isinstance(condition, bool):
                raise Undocumented(f"case() with the condition {condition!r}")
            if condition:
                return evaluate(args[i + 1], row)
        return None
    if name == "mvmap":  # Search Reference, multivalue eval functions: the expression once per value,
        # the field's name standing for that value (other fields read as they are); a single value
        # is one value, a missing field none
        field = args[0]
        if field[0] != "field":
            raise Undocumented("mvmap() of an expression (rmmc maps a field)")
        value = row.get(field[1])
        if value is None:
            raise Undocumented("mvmap() of a missing field")
        out = []
        for item in value if isinstance(value, list) else [value]:
            result = evaluate(args[1], {**row, field[1]: item})
            if result is None or isinstance(result, (bool, list)):
                raise Undocumented(f"mvmap() giving {result!r} for a value")
            out.append(result)
        return out
    values = [evaluate(a, row) for a in args]
    if name == "mvfind":  # the index of the first value the regex matches (from 0), else null
        value, regex = values
        if value is None:
            raise Undocumented("mvfind() of a missing field")
        items = value if isinstance(value, list) else [value]
        pattern = re.compile(pcre_to_python(_text(regex, "mvfind")))
        return next((i for i, item in enumerate(items) if pattern.search(_text(item, "mvfind"))), None)
    if name in ("true", "false"):
        return name == "true"
    if name == "null":
        return None
    if name == "now":
        return NOW
    if name == "isnull":
        return values[0] is None
    if name == "isnotnull":
        return values[0] is not None
    if name == "coalesce":
        return next((v for v in values if v is not None), None)
    if name == "nullif":
        a, b = values
        if a is None:
            return None
        return None if _compare("==", a, b) else a
    if name in ("lower", "upper"):
        text = _text(values[0], name)
        return text.lower() if name == "lower" else text.upper()
    if name == "len":
        return len(_text(values[0], "len"))
    if name == "substr":
        text = _text(values[0], "substr")
        start = values[1]
        if not isinstance(start, int) or not 1 <= start <= len(text):
            raise Undocumented(f"substr({text!r}, {start!r})")
        if len(values) > 2:
            length = values[2]
            if not isinstance(length, int) or length < 0:
                raise Undocumented(f"substr length {length!r}")
            return text[start - 1:start - 1 + length]
        return text[start - 1:]
    if name == "match":
        if values[0] is None:
            return None
        return re.search(pcre_to_python(values[1]), _text(values[0], "match")) is not None
    if name == "replace":
        text = _text(values[0], "replace")
        replacement = _replacement(values[2])
        named = [int(g) for g in re.findall(r"\\(\d)", replacement)]

        def substitute(m: re.Match) -> str:
            for g in named:  # what Splunk writes for a group that took no part is not documented
                if g <= (m.re.groups or 0) and m.group(g) is None:
                    raise Undocumented(f"replace() names group {g}, which took no part in a match")
            return m.expand(replacement)

        return re.sub(pcre_to_python(values[1]), substitute, text)
    if name == "tostring":
        value = values[0]
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise Undocumented(f"tostring({value!r})")
    if name in ("floor", "ceiling", "abs"):
        value = values[0]
        if not _number(value):
            raise Undocumented(f"{name}({value!r})")
        if name == "abs":
            return abs(value)
        return math.floor(value) if name == "floor" else math.ceil(value)
    if name == "mvrange":  # Search Reference, multivalue functions: start to end, end excluded
        start, end = values
        if not (_number(start) and _number(end)):
            raise Undocumented("mvrange() of a non-number")
        return [float(i) if isinstance(start, float) else i for i in range(int(start), int(end))]
    if name == "mvindex":  # one index: that value (0 is the first); a single value is index 0
        value, index = values
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if not isinstance(index, int) or not -len(items) <= index < len(items):
            raise Undocumented(f"mvindex() at {index!r} of {len(items)} values")
        return items[index]
    if name == "max" and len(values) == 2 and all(_number(v) for v in values):  # eval max(a, b)
        return max(values)
    if name == "mvcount":
        value = values[0]
        if value is None:
            raise Undocumented("mvcount(null)")
        return len(value) if isinstance(value, list) else 1
    if name == "cidrmatch":
        if values[1] is None:
            return None
        network = ipaddress.ip_network(values[0], strict=False)
        try:
            address = ipaddress.ip_address(str(values[1]))
        except ValueError:
            return False
        return address.version == network.version and address in network
    raise Undocumented(f"function {name}() is not modelled")


def condition(text: str, row: dict) -> Any:
    parser = Expr(eval_tokens(text))
    tree = parser.parse()
    assert parser.i == len(parser.toks), f"trailing tokens in {text!r}"
    return evaluate(tree, row)


# ------------------------------------------------------------------ commands


def _assignments(text: str) -> list[tuple[str, Any]]:
    toks = eval_tokens(text)
    parser = Expr(toks)
    out = []
    while parser.peek() is not None:
        kind, name = parser.take()
        assert kind in ("word", "fq"), (kind, name)
        parser.take("=")
        out.append((name.strip("'"), parser.disj()))
        if parser.peek(","):
            parser.take()
    return out


def _names(text: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", text.strip()) if n]


def _stats_calls(text: str) -> tuple[list[tuple[str, str | None, str]], list[str]]:
    """`f(x) as n ... by k1 k2` -> [(function, argument, name)], keys."""
    by: list[str] = []
    match = re.search(r"\sby\s(.+)\Z", text)
    if match:
        by = _names(match.group(1))
        text = text[:match.start()]
    calls = []
    for m in re.finditer(r"(\w+)(?:\(([^()]*)\))?(?:\s+as\s+([\w.@-]+))?", text):
        function, arg, name = m.group(1), m.group(2), m.group(3)
        calls.append((function, arg, name or (f"{function}({arg})" if arg else function)))
    return calls, by


def _aggregate(function: str, arg: str | None, rows: list[dict]) -> Any:
    if function == "count" and arg is None:
        return len(rows)
    values = [r.get(arg) for r in rows]
    present = [v for v in values if v is not None]
    if function in ("count", "dc", "values", "list") and any(v == "" for v in present):
        raise Undocumented(f"{function}() over an empty value")
    if function == "count":
        return len(present)
    if function == "dc":
        return len({str(v) for v in present})
    if function in ("sum", "avg"):
        if any(not _number(v) for v in present):
            raise Undocumented(f"{function}() of text")
        if not present:
            return None
        return sum(present) if function == "sum" else sum(present) / len(present)
    if function in ("min", "max"):
        if not present:
            return None
        numbers = [v for v in present if _number(v)]
        texts = [v for v in present if isinstance(v, str)]
        if numbers and texts:
            raise Undocumented(f"{function}() of numbers and text")
        if any(re.fullmatch(r"\s*[-+]?[0-9.]+\s*", t) for t in texts):
            raise Undocumented(f"{function}() of numeric-looking text")
        return (min if function == "min" else max)(present)
    if function == "values":
        return sorted({str(v) for v in present}) or None
    if function == "list":
        return [str(v) for v in present][:100] or None
    if function == "first":
        return present[0] if present else None
    raise Undocumented(f"stats function {function}() is not modelled")


def _groups(rows: list[dict], by: list[str]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(row.get(k) for k in by)
        if any(v is None for v in key):
            continue  # stats leaves out events whose by-field is null
        if any(isinstance(v, list) for v in key):
            raise Undocumented("grouping by a multivalue field")
        groups.setdefault(key, []).append(row)
    return groups


def _sort_key(spec: str):
    m = re.fullmatch(r"([+-]?)(?:(num|str)\(([^()]+)\)|([^()]+))", spec.strip())
    assert m, spec
    return m.group(1) == "-", m.group(2) or "auto", (m.group(3) or m.group(4)).strip()


def read_lookup(text: str) -> list[dict]:
    """A CSV lookup file's rows as Splunk reads them: the header names the fields, an empty
    cell is no field, every value text."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None) or []
    return [{name: value for name, value in zip(header, row) if value != ""} for row in reader]


def _inputlookup(rest: str, rows: list[dict], lookups: dict | None) -> list[dict]:
    m = re.fullmatch(r"(append=(?:true|t|false|f)\s+)?(strict=(?:true|t|false|f)\s+)?([A-Za-z0-9_.-]+\.csv)",
                     rest.strip())
    assert m, rest
    if lookups is None or m.group(3) not in lookups:
        raise Undocumented(f"lookup file {m.group(3)} not given to the test")
    found = read_lookup(lookups[m.group(3)])
    append = m.group(1) is not None and m.group(1).strip().split("=")[1] in ("true", "t")
    return [*rows, *found] if append else found


def _command(line: str, rows: list[dict], events: list[dict] = (), lookups: dict | None = None) -> list[dict]:
    name, _, rest = line.partition(" ")
    if name == "inputlookup":
        return _inputlookup(rest, rows, lookups)
    if name == "where":
        return [r for r in rows if condition(rest, r) is True]
    if name == "eval":
        assignments = _assignments(rest)
        out = []
        for row in rows:
            row = dict(row)
            for field, tree in assignments:
                value = evaluate(tree, row)
                if isinstance(value, bool):
                    raise Undocumented("eval cannot assign a boolean")
                if value is None:
                    row.pop(field, None)
                else:
                    row[field] = value
            out.append(row)
        return out
    if name == "fillnull":
        m = re.fullmatch(r'value=""\s+(.+)', rest)
        assert m, line
        fields = _names(m.group(1))
        return [{**r, **{f: "" for f in fields if r.get(f) is None}} for r in rows]
    if name in ("stats", "eventstats"):
        calls, by = _stats_calls(rest)
        groups = _groups(rows, by)
        if name == "stats":
            if not by and not groups:
                groups = {(): []}
            out = []
            for key in sorted(groups, key=lambda k: [str(v) for v in k]):
                result = dict(zip(by, key))
                for function, arg, out_name in calls:
                    value = _aggregate(function, arg, groups[key])
                    if value is not None:
                        result[out_name] = value
                out.append(result)
            return out
        computed = {key: {n: _aggregate(f, a, members) for f, a, n in calls} for key, members in groups.items()}
        out = []
        for row in rows:
            key = tuple(row.get(k) for k in by)
            row = dict(row)
            for n, value in computed.get(key, {}).items():
                if value is None:
                    row.pop(n, None)
                else:
                    row[n] = value
            out.append(row)
        return out
    if name == "streamstats":  # only `streamstats count as X`: the result's position, from 1
        m = re.fullmatch(r"count as ([A-Za-z_][A-Za-z0-9_]*)", rest.strip())
        assert m, line
        return [{**r, m.group(1): i + 1} for i, r in enumerate(rows)]
    if name == "mvexpand":  # one result per value of the field; a single value: the result as it is
        field = rest.strip()
        out = []
        for row in rows:
            value = row.get(field)
            if value is None:
                raise Undocumented("mvexpand of a missing field")
            out.extend({**row, field: v} for v in (value if isinstance(value, list) else [value]))
        return out
    if name == "dedup":
        fields = _names(rest)
        seen, out = set(), []
        for row in rows:
            key = tuple(row.get(f) for f in fields)
            if any(v is None for v in key) or key in seen:
                continue
            seen.add(key)
            out.append(row)
        return out
    if name == "table":
        fields = _names(rest)
        return [{f: r[f] for f in fields if f in r} for r in rows]
    if name == "fields":
        if not rest.startswith("- "):  # `fields a b`: those, and the internal _time and _raw
            fields = set(_names(rest)) | {"_time", "_raw"}
            return [{k: v for k, v in r.items() if k in fields} for r in rows]
        fields = _names(rest[2:])
        return [{k: v for k, v in r.items() if k not in fields} for r in rows]
    if name == "rename":
        pairs = [tuple(p.split(" as ")) for p in rest.split(", ")]
        out = []
        for row in rows:
            row = dict(row)
            for old, new in pairs:
                value = row.pop(old.strip(), None)
                row.pop(new.strip(), None)
                if value is not None:
                    row[new.strip()] = value
            out.append(row)
        return out
    if name == "sort":
        count, _, keys = rest.partition(" ")
        assert count == "0", line
        out = list(rows)
        for descending, how, field in reversed([_sort_key(k) for k in keys.split(",")]):
            present = [r for r in out if r.get(field) is not None]
            missing = [r for r in out if r.get(field) is None]
            for r in present:
                value = r[field]
                if how == "num" and not _number(value):
                    raise Undocumented(f"num() of {value!r}")
                if how == "str" and not isinstance(value, str):
                    raise Undocumented(f"str() of {value!r}")
            present.sort(key=lambda r: r[field], reverse=descending)
            out = present + missing  # a missing field sorts last either way
        return out
    if name == "head":
        return rows[:int(rest)]
    if name == "join":
        return _join(rest, rows, events)
    if name == "rex":
        m = re.fullmatch(r'field=(\S+) ("(?:[^"\\]|\\.)*")', rest)
        assert m, line
        pattern = unquote(m.group(2))
        names = re.findall(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", pattern)
        from tests import pcre

        compiled = pcre.compile(pattern)
        out = []
        for row in rows:
            value = row.get(m.group(1))
            found = compiled.named(str(value), names) if value is not None else None
            out.append({**row, **found} if found else dict(row))
        return out
    raise Undocumented(f"command {name} is not modelled")


def _join(rest: str, rows: list[dict], events: list[dict]) -> list[dict]:
    m = re.fullmatch(r"type=(inner|left) max=(\d+) ([A-Za-z0-9_ ]+?) \[(.*)\]", rest, re.S)
    assert m, rest
    kind, most, fields, body = m.group(1), int(m.group(2)), m.group(3).split(), m.group(4)
    right = run("\n".join(_pipeline_lines(body)), events)
    for row in rows + right:
        if any(row.get(f) is None for f in fields):
            raise Undocumented(f"join on {fields}: a result without one of them")
    out = []
    for row in rows:
        matches = [r for r in right if all(str(r[f]) == str(row[f]) for f in fields)]
        if most:
            matches = matches[:most]
        if not matches and kind == "left":
            out.append(dict(row))
        out.extend({**row, **r} for r in matches)
    return out


def _pipeline_lines(body: str) -> list[str]:
    """A one-line subsearch (`search ... | cmd | cmd`) as the lines `run` reads: split at each
    `|` outside quotes and brackets."""
    parts, depth, quote, start = [], 0, False, 0
    i = 0
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
        i += 1
    parts.append(body[start:].strip())
    return [parts[0]] + ["| " + p for p in parts[1:]]


def run(spl: str, events: list[dict], lookups: dict | None = None) -> list[dict]:
    """The rows the query returns over `events` (dicts of field -> value; `_time` in epoch
    seconds); `lookups`: the CSV lookup files `inputlookup` reads (file name -> text)."""
    lines = spl.rstrip("\n").split("\n")
    if lines[0].startswith("| inputlookup "):
        rows = _inputlookup(lines[0][len("| inputlookup "):], [], lookups)
        for line in lines[1:]:
            assert line.startswith("| "), line
            rows = _command(line[2:], rows, events, lookups)
        return rows
    assert lines[0].startswith("search ")
    search = search_tokens(lines[0][len("search "):])
    rows = []
    for event in events:
        parser = SearchParser(search, event)
        if parser.conj():
            rows.append(dict(event))
        assert parser.i == len(parser.toks), "trailing search tokens"
    for line in lines[1:]:
        assert line.startswith("| "), line
        rows = _command(line[2:], rows, events, lookups)
    return rows
