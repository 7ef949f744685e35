"""What each target's query asks of its engine: which tests an index can answer and which the
engine runs on every candidate event (`rmmc explain --cost`, bench/prefilter.py, the done-when
test of the SPL base search).

Read from the written query text, per target:

* SPL: the base search (`search <env search> earliest=... <terms>`) is parsed (OR binds tighter
  than AND there, NOT applies to the next term, parentheses group); a term `f="v"`, `f IN (...)`
  is answered by the indexers (field extraction at search time, the literal parts of the value
  from the lexicon); `| where` tests run on each event the search returns.  `covered`: every
  OR-branch of the rule's own terms (the environment's macro and the time range aside) holds a
  positive term, so no branch reads every event of the index.  `| tstats` reads the data
  model's summaries.
* ES|QL: a `WHERE` without COALESCE / RLIKE (`TO_LOWER(f) LIKE`, `==`, `IN`) is pushed down to
  Lucene; RLIKE and tests over COALESCE run on each row the index returns.
* EQL: `:` / `like~` / `in~` / `==` are term / wildcard queries; `regex~` a regexp query, which
  walks the field's whole term dictionary.
* Sigma: `|contains`, plain and `|startswith` / `|endswith` values are what pySigma backends
  hand to an index; `|re` becomes a regex (Splunk `| regex`, Elasticsearch `regexp`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ------------------------------------------------------------------ SPL base search

_TOKEN = re.compile(r'\s*(`[^`]*`|\(|\)|,|=|"(?:[^"\\]|\\.)*"|[^\s()",=]+)')


@dataclass(frozen=True)
class Term:
    field: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Macro:
    text: str


@dataclass(frozen=True)
class Node:
    op: str  # "and", "or", "not"
    items: tuple


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"not an SPL search at {pos}: {text[pos:pos + 20]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


class _Search:
    def __init__(self, tokens: list[str]):
        self.t, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ValueError(f"expected {want or 'a term'}, got {tok!r}")
        self.i += 1
        return tok

    def conj(self):
        items = []
        while self.peek() not in (None, ")"):
            if self.peek() == "AND":
                self.take()
            items.append(self.disj())
        return items[0] if len(items) == 1 else Node("and", tuple(items))

    def disj(self):
        items = [self.unary()]
        while self.peek() == "OR":
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else Node("or", tuple(items))

    def unary(self):
        if self.peek() == "NOT":
            self.take()
            return Node("not", (self.unary(),))
        return self.atom()

    def atom(self):
        tok = self.take()
        if tok == "(":
            inner = self.conj()
            self.take(")")
            return inner
        if tok.startswith("`"):
            return Macro(tok)
        if self.peek() == "IN":
            self.take()
            self.take("(")
            values = [_unquote(self.take())]
            while self.peek() == ",":
                self.take()
                values.append(_unquote(self.take()))
            self.take(")")
            return Term(tok, tuple(values))
        if self.peek() == "=":
            self.take()
            return Term(tok, (_unquote(self.take()),))
        return Term("", (tok,))  # a bare word (`*`, a raw term)


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return re.sub(r'\\(["\\])', r"\1", token[1:-1])
    return token


def spl_base_search(query: str):
    """The first line's search terms as a tree (Term / Macro / Node); raises ValueError when it
    is no `search` line."""
    line = query.lstrip().split("\n", 1)[0]
    if not line.startswith("search "):
        raise ValueError("the query does not start with a search")
    parser = _Search(_tokens(line[len("search "):]))
    tree = parser.conj()
    if parser.peek() is not None:
        raise ValueError(f"unbalanced search at {parser.peek()!r}")
    return tree


def _indexed(term) -> bool:
    return (isinstance(term, Term) and term.field not in ("", "earliest", "latest")
            and all(v.strip("*") for v in term.values))


def covered(tree) -> bool:
    """Whether every OR-branch of the search holds a positive indexed `f=value` term."""
    if isinstance(tree, Term):
        return _indexed(tree)
    if isinstance(tree, Macro):
        return False
    if tree.op == "and":
        return any(covered(x) for x in tree.items)
    if tree.op == "or":
        return all(covered(x) for x in tree.items)
    return False


def _terms(tree) -> list:
    if isinstance(tree, (Term, Macro)):
        return [tree]
    return [t for x in tree.items for t in _terms(x)]


# ------------------------------------------------------------------ per target


@dataclass
class Cost:
    """What a query asks of its engine."""

    target: str
    index: list[str] = field(default_factory=list)  # what an index answers
    scan: list[str] = field(default_factory=list)   # what runs on each candidate event
    every_branch_indexed: bool | None = None        # SPL: `covered`

    def lines(self) -> list[str]:
        out = [f"{self.target}:"]
        out.append(f"  index: {len(self.index)} test(s)" + (f" ({', '.join(self.index[:6])}"
                   + (", ..." if len(self.index) > 6 else "") + ")" if self.index else
                   " -- the engine reads every event of the time range"))
        out.append(f"  per event: {len(self.scan)} test(s)" + (f" ({', '.join(_counts(self.scan))})"
                                                               if self.scan else ""))
        if self.every_branch_indexed is not None:
            out.append("  every OR-branch has an index term: " + ("yes" if self.every_branch_indexed else "no"))
        return out


def _counts(items: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for item in items:
        seen[item] = seen.get(item, 0) + 1
    return [f"{n} {k}" for k, n in seen.items()]


def cost(target: str, text: str) -> Cost:
    """The cost of one query (the first of `text` when it holds several)."""
    query = text.strip().split("\n---\n", 1)[0] if target == "sigma" else text.strip().split("\n\n", 1)[0]
    return {"splunk": _spl, "esql": _esql, "eql": _eql, "sigma": _sigma, "kql": _kql}[target](query)


def _spl(query: str) -> Cost:
    c = Cost("splunk")
    if query.lstrip().startswith("| tstats"):
        c.index = ["tstats over the data model's summaries: " + query.split(" where ", 1)[-1].split(" by ", 1)[0][:120]]
        c.every_branch_indexed = True
        return c
    lines = query.split("\n")
    first = next((i for i, line in enumerate(lines) if line.lstrip("| ").startswith("search ")), None)
    if first is not None:
        tree = spl_base_search(lines[first].lstrip("| "))
        c.index = [f"{t.field}={'|'.join(t.values)}" if isinstance(t, Term) else t.text
                   for t in _terms(tree) if isinstance(t, Macro) or _indexed(t)]
        c.every_branch_indexed = covered(tree)
    where = "\n".join(line for line in lines if line.startswith("| where "))
    c.scan = ["match() regex"] * where.count("match(") + ["lower() comparison"] * where.count("lower(")
    return c


def _esql(query: str) -> Cost:
    c = Cost("esql")
    for line in query.split("\n"):
        if not line.startswith(("| WHERE ", "WHERE ")) or "NOW()" in line:
            continue
        if "COALESCE" in line or "RLIKE" in line:
            c.scan += ["RLIKE regex"] * line.count(" RLIKE ") + ["LIKE over COALESCE"] * line.count(" LIKE ")
            c.scan += ["== over COALESCE"] * line.count(" == ")
        else:
            c.index += re.findall(r'TO_LOWER\(([^)]+)\) (?:LIKE|==|IN)', line)
    return c


def _eql(query: str) -> Cost:
    c = Cost("eql")
    c.index = re.findall(r'([\w.@`]+) (?::|like~?|in~?|==) ', query)
    c.scan = ["regex query (whole term dictionary)"] * len(re.findall(r" regex~? ", query))
    return c


def _sigma(query: str) -> Cost:
    c = Cost("sigma")
    detection = query.split("\ndetection:\n", 1)[-1]
    detection = re.split(r"\n\S", detection, maxsplit=1)[0]
    for key in re.findall(r"^\s+([\w.@-]+(?:\|\w+)*):", detection, re.M):
        if "|re" in key:
            c.scan.append("|re regex")
        elif key != "condition" and not key.startswith(("selection", "filter")):
            c.index.append(key)
    return c


def _kql(query: str) -> Cost:
    """Kusto indexes terms: `has` & co., `==`, `in`, `startswith` use the term index; `contains`,
    `endswith` and regexes read each value."""
    c = Cost("kql")
    c.index = re.findall(r"\b(\w+) (?:has(?:_any|_all|prefix)?|==|=~|in~?|startswith)\s", query)
    c.scan = re.findall(r"\b\w+ (contains|endswith|matches regex|hassuffix)\b", query)
    return c
