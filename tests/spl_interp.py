"""A tiny interpreter for the SPL subset rmmc's Splunk backend emits (tests only).

Written from Splunk's documentation (Search Manual: "Boolean expressions", "Difference between
!= and NOT"; SPL and regular expressions), not from rmmc's evaluator:

* `search` terms: OR binds tighter than AND, AND is implied between terms, NOT applies to the
  term after it; `f="glob"` is a case-insensitive whole-value match with `*` wildcards, false on
  a missing field, so `NOT f="v"` keeps events without the field;
* one `| where` in eval syntax: AND binds tighter than OR; null is unknown (Kleene logic) and
  only true keeps an event; `match(x, "re")` searches with PCRE (tests/pcre.py: the PCRE2
  library itself), `lower`, `coalesce`, `isnull`, `isnotnull`, `cidrmatch`, `true()`,
  `false()`;
* strings are double-quoted with `\"` and `\\` escaped; single quotes name a field in eval.

Missing fields are None.
"""

from __future__ import annotations

import ipaddress
import operator
import re

try:
    import pcre
except ImportError:  # imported as tests.spl_interp
    from tests import pcre

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<fq>\'[^\']*\')|(?P<op>==|!=|<=|>=|<|>|=|\(|\)|,)'
                    r'|(?P<word>[A-Za-z0-9_.@*+-]+))', re.S)


def tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SyntaxError(f"bad SPL at {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def unquote(literal: str) -> str:
    return re.sub(r'\\(["\\])', r"\1", literal[1:-1])


def pcre_to_python(pattern: str) -> str:
    """A PCRE of the subset rmmc writes as a Python `re` pattern (`\\x{hh}`, `\\z`); the
    interpreter itself matches with PCRE2."""
    pattern = re.sub(r"\\x\{([0-9a-f]{2})\}", r"\\x\1", pattern)
    return pattern.replace("\\z", "\\Z")


class _Parser:
    def __init__(self, toks, event):
        self.toks, self.i, self.event = toks, 0, event

    def peek(self, value=None):
        if self.i >= len(self.toks):
            return None
        tok = self.toks[self.i]
        return tok if value is None or tok[1] == value else None

    def take(self, value=None):
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise SyntaxError(f"expected {value!r}, got {tok!r}")
        self.i += 1
        return tok

    def field_value(self, tok):
        kind, text = tok
        name = text[1:-1] if kind == "fq" else text
        return self.event.get(name)


class SearchParser(_Parser):
    def conj(self):
        result = True
        while self.peek() is not None and not self.peek(")"):
            if self.peek("AND"):
                self.take()
            result = self.disj() and result
        return result

    def disj(self):
        result = self.negation()
        while self.peek("OR"):
            self.take()
            result = self.negation() or result
        return result

    def negation(self):
        if self.peek("NOT"):
            self.take()
            return not self.negation()
        return self.atom()

    def atom(self):
        if self.peek("("):
            self.take("(")
            result = self.conj()
            self.take(")")
            return result
        kind, name = self.take()
        assert kind == "word", name
        if name == "*":
            return True
        if name in ("earliest", "latest"):
            self.take("=")
            self.take()
            return True
        value = self.event.get(name)
        if self.peek("IN"):
            self.take()
            self.take("(")
            globs = [search_value(self.take())]
            while self.peek(","):
                self.take()
                globs.append(search_value(self.take()))
            self.take(")")
        else:
            self.take("=")
            globs = [search_value(self.take())]
        if value is None:
            return False
        return any(glob(g, str(value)) for g in globs)


def search_value(tok: tuple[str, str]) -> str:
    """A search term's value: a quoted string unquoted, a bare word as it is."""
    return unquote(tok[1]) if tok[0] == "str" else tok[1]


def glob(pattern: str, value: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.I | re.S) is not None


class WhereParser(_Parser):
    def disj(self):
        result = self.conj()
        while self.peek("OR"):
            self.take()
            right = self.conj()
            result = True if (result is True or right is True) else (None if None in (result, right) else False)
        return result

    def conj(self):
        result = self.negation()
        while self.peek("AND"):
            self.take()
            right = self.negation()
            result = False if (result is False or right is False) else (None if None in (result, right) else True)
        return result

    def negation(self):
        if self.peek("NOT"):
            self.take()
            inner = self.negation()
            return None if inner is None else not inner
        return self.comparison()

    def comparison(self):
        left = self.primary()
        tok = self.peek()
        if tok is not None and tok[1] in ("==", "!=", "<", "<=", ">", ">=", "="):
            op = self.take()[1]
            right = self.primary()
            if left is None or right is None:
                return None
            if op in ("==", "="):
                return left == right
            if op == "!=":
                return left != right
            if isinstance(left, str) != isinstance(right, str):
                return None
            return {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op](left, right)
        return left

    def primary(self):
        if self.peek("("):
            self.take("(")
            result = self.disj()
            self.take(")")
            return result
        kind, text = self.take()
        if kind == "str":
            return unquote(text)
        if kind == "fq":
            return self.field_value((kind, text))
        if self.peek("("):
            self.take("(")
            args = []
            while not self.peek(")"):
                args.append(self.disj())
                if self.peek(","):
                    self.take()
            self.take(")")
            return call(text, args)
        if re.fullmatch(r"-?[0-9.]+(e[+-]?[0-9]+)?", text):
            return float(text) if any(c in text for c in ".e") else int(text)
        return self.event.get(text)


def call(name, args):
    if name == "match":
        if args[0] is None:
            return None
        return pcre.search(args[1], str(args[0]))
    if name == "cidrmatch":  # cidrmatch("net", ip): false when ip is no address (null on null)
        if args[1] is None:
            return None
        network = ipaddress.ip_network(args[0], strict=False)
        try:
            address = ipaddress.ip_address(str(args[1]))
        except ValueError:
            return False
        return address.version == network.version and address in network
    if name == "coalesce":
        return next((a for a in args if a is not None), None)
    if name == "lower":
        return None if args[0] is None else str(args[0]).lower()
    if name == "isnull":
        return args[0] is None
    if name == "isnotnull":
        return args[0] is not None
    if name == "true":
        return True
    if name == "false":
        return False
    raise ValueError(f"function {name} not in the subset")


def selects(spl: str, event: dict) -> bool:
    """Whether the search + where part of the query keeps the event."""
    lines = spl.rstrip("\n").split("\n")
    assert lines[0].startswith("search ")
    parser = SearchParser(tokens(lines[0][len("search "):]), event)
    keep = parser.conj()
    assert parser.i == len(parser.toks), "trailing search tokens"
    for line in lines[1:]:
        if line.startswith("| where "):
            wp = WhereParser(tokens(line[len("| where "):]), event)
            result = wp.disj()
            assert wp.i == len(wp.toks), "trailing where tokens"
            keep = keep and result is True
    return keep
