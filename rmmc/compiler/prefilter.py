"""Indexable supersets: for a detection condition, a weaker condition an engine can answer from
its index, to be tested *before* the exact test (`prefilter AND exact == exact`).

Search engines index field values (Splunk's `f="*x*"`, Elasticsearch's keyword wildcard and
term queries, case-insensitively); they cannot index a term regex (KQL `has`) or a case-folded
comparison written as `lower(f) == ...`.  Every backend writes the exact test as it did; this
module says, once and as IR, which plain test each exact test implies, so each backend can put
that test where its engine uses an index.

`superset(condition, writable)` returns a condition `S` with `condition => S` under the
reference evaluator, built only from positive, case-insensitive EQUALS / CONTAINS / STARTSWITH /
ENDSWITH tests on string fields, with non-empty needles whose every character `writable`
accepts (what the backend can write exactly in its indexable syntax), or `Const(True)`.
Why each step is a superset (the evaluator folds case one character for one, `fold`):

* TERM / TERM_PREFIX / TERM_SUFFIX (`has` & co.) need an occurrence of the needle: CONTAINS.
* A case-sensitive test implies its case-insensitive twin (folding both sides keeps equality
  and substrings).
* A test whose needle holds characters the backend cannot write (`*`, control or non-ASCII
  characters) implies CONTAINS of any piece of the needle: the longest writable run is used.
  A case-insensitive needle is first written through `fold_to_ascii` (KELVIN SIGN is `k`),
  which the evaluator reads as the same needle.
* `has_any` / `in` (any value): the OR of the values' supersets, none if one value has none;
  `has_all` (every value): each value's superset.
* AND: the supersets of its parts; OR: the OR of its parts' supersets, `True` when one part has
  none (that branch would need a full scan anyway).
* A case-sensitive REGEX: CONTAINS of the longest run of single characters at its top level
  (`regex_literal`; `[jJ]` is `j` up to case); a case-insensitive one none (its folding is not
  the evaluator's: `(?i)s` also matches 'ſ').
* Negated tests, numbers, CIDR, EMPTY / EXISTS, expressions: `True` (no index test).

"""

from __future__ import annotations

import functools
from typing import Callable

from rmmc.compiler.functions import fold
from rmmc.compiler.text_rules import fold_to_ascii
from rmmc.compiler.ir import And, Condition, Const, Field, Not, Op, Or, Predicate, all_of, any_of

Writable = Callable[[str], bool]
"""Whether the backend can write this character inside an indexable needle."""


class PrintableAsciiBut:
    """A `Writable`: printable ASCII but the characters `excluded` (a backend's wildcards and
    escapes).  Asked of a whole text (`writes`), it answers with the string's own C tests
    instead of a call per character: `superset` asks it of every value of every test."""

    __slots__ = ("excluded",)

    def __init__(self, excluded: str):
        self.excluded = excluded

    def __call__(self, ch: str) -> bool:
        return " " <= ch <= "~" and ch not in self.excluded

    def writes(self, text: str) -> bool:
        """Whether every character of `text` is writable (`all(self(ch) for ch in text)`)."""
        if not (text.isascii() and text.isprintable()):  # ASCII: printable is ' ' to '~'
            return False
        for ch in self.excluded:
            if ch in text:
                return False
        return True

    def __repr__(self) -> str:
        return f"PrintableAsciiBut({self.excluded!r})"

_TO_CONTAINS = {Op.TERM: Op.CONTAINS, Op.TERM_PREFIX: Op.CONTAINS, Op.TERM_SUFFIX: Op.CONTAINS}
_PLAIN = frozenset({Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH})
_TRUE = Const(True)


printable_ascii = PrintableAsciiBut("*?\\")
"""The characters every target writes in a quoted needle: printable ASCII but the wildcard
characters `*` and `?` and the escape `\\` (engines differ on escaping them)."""


def superset(condition: Condition, writable: Writable = printable_ascii, positive: bool = True) -> Condition:
    """An indexable condition implied by `condition` (see the module docstring); with
    `positive` False, implied by its negation (NOT pushed down by De Morgan, which holds in
    three-valued logic).  (The kinds are asked commonest first: predicates, then And / Or.)"""
    if isinstance(condition, Predicate):
        return _predicate(condition if positive else condition.negate(), writable)
    if isinstance(condition, (And, Or)):
        parts = [superset(c, writable, positive) for c in condition.operands]
        if isinstance(condition, And) == positive:
            return all_of(parts)
        if any(p == _TRUE for p in parts):
            return _TRUE
        return any_of(parts)
    if isinstance(condition, Not):
        return superset(condition.operand, writable, not positive)
    return _TRUE


def is_indexable(condition: Condition) -> bool:
    """Whether a condition is already of the form `superset` builds (nothing to add)."""
    if isinstance(condition, (And, Or)):
        return all(is_indexable(c) for c in condition.operands)
    return (isinstance(condition, Predicate) and _plain_field(condition) and condition.op in _PLAIN
            and not condition.negated and not condition.case_sensitive)


def is_own_superset(condition: Condition, writable: Writable = printable_ascii) -> bool:
    """Whether `superset` gives a condition that means the same as this one (a positive
    case-insensitive plain test whose needles are whole and writable): then a backend's index
    test *is* the exact test, and writing both would only test it twice."""
    if isinstance(condition, (And, Or)):
        return all(is_own_superset(c, writable) for c in condition.operands)
    return (is_indexable(condition) and bool(condition.values)
            and all(isinstance(v, str) and v and _all_writable(fold(fold_to_ascii(v)), writable)
                    for v in condition.values))


def _all_writable(text: str, writable: Writable) -> bool:
    """Whether `writable` accepts every character of `text` (a `PrintableAsciiBut` by the
    string's own C tests: this runs for every value of every Sigma rule)."""
    if type(writable) is PrintableAsciiBut:
        return writable.writes(text)
    return all(writable(ch) for ch in text)


def drop_implied(conjuncts: list[Condition]) -> list[Condition]:
    """The conjuncts of an AND without those another one implies through its superset (a
    `X|contains` written beside `X|re|i` for an index, read back: `has` implies it), so reading
    a translation back gives the rule, not the rule and its prefilter.  Exact: a dropped
    conjunct is its own superset, which the kept one implies."""
    if len(conjuncts) < 2:  # most selections: one item (nothing to look at)
        return list(conjuncts)
    if _distinct_predicates(conjuncts):  # most of the others (each item tests its own field)
        return list(conjuncts)
    own: dict[int, bool] = {}
    supersets: dict[int, Condition] = {}

    def own_of(j: int) -> bool:  # each computed once, and only when asked
        if j not in own:
            own[j] = is_own_superset(conjuncts[j])
        return own[j]

    def superset_of(j: int) -> Condition:  # likewise
        if j not in supersets:
            supersets[j] = superset(conjuncts[j])
        return supersets[j]

    out = []
    for i, c in enumerate(conjuncts):
        rivals = [j for j, other in enumerate(conjuncts) if j != i and _may_imply(other, c)]
        if rivals and own_of(i):
            others = [j for j in rivals if not own_of(j)]
            for j in others:
                if _needles_may_match(conjuncts[j], c) and superset_of(j) == superset_of(i):
                    break
            else:
                out.append(c)
            continue
        out.append(c)
    return out


def _may_imply(other: Condition, own: Condition) -> bool:
    """Whether `other`'s superset may be that of `own` (a conjunct that is its own superset),
    told without folding values or parsing regexes (what `drop_implied` spent its time on):
    two predicates on different subjects cannot, for the reason `_distinct_predicates` gives;
    nor can a predicate whose tests have another operator than `own`'s, unless `own` is a
    CONTAINS: `own`'s superset tests with `own.op` alone, and `_predicate` gives `other` tests
    with `other.op` (a term test's as CONTAINS) or CONTAINS (a regex's literal, a shortened
    needle), or none (`_TRUE`).  (Same-subject pairs of different operators, `|startswith`
    beside `|endswith`, are most of the SigmaHQ selections that reach the comparison.)"""
    if not (isinstance(other, Predicate) and isinstance(own, Predicate)):
        return True
    if other.field != own.field:
        return False
    return own.op is Op.CONTAINS or other.op is own.op


def _needles_may_match(other: Condition, own: Condition) -> bool:
    """Whether `other`'s superset may equal `own`'s (`own` its own superset, `other` not),
    told by a substring test per value instead of building `other`'s superset (what
    `drop_implied` spent half its time on; SigmaHQ's same-field `|contains` beside
    `|contains|all` pairs never match).  Necessary, for a predicate `own`: its superset tests
    its subject with each of its values folded as a needle, and a needle of `other`'s
    superset is a folded value (or a run of one) of a leaf predicate of `other` (reached
    through And / Or / Not, as `superset` reaches them) on that subject, unless the leaf is a
    regex (its literal: then the full comparison decides).  The leaves' values are joined by
    NUL (never in a writable needle) and folded at once where ASCII (`fold` of an ASCII text
    is `lower`, one character for one); otherwise, or for an And / Or `own`, the answer is
    yes."""
    if own.__class__ is not Predicate:
        return True
    subject = own.field
    texts: list[str] = []
    stack = [other]
    while stack:
        node = stack.pop()
        if isinstance(node, Predicate):
            if node.field == subject:
                if node.op is Op.REGEX:
                    return True
                for value in node.values:
                    if value.__class__ is str:
                        texts.append(value)
        elif isinstance(node, (And, Or)):
            stack.extend(node.operands)
        elif isinstance(node, Not):
            stack.append(node.operand)
    haystack = "\0".join(texts)
    if not haystack.isascii():
        return True
    haystack = haystack.lower()
    for value in own.values:
        if fold(fold_to_ascii(value)) not in haystack:
            return False
    return True


def _distinct_predicates(conjuncts: list[Condition]) -> bool:
    """Whether the conjuncts are predicates on pairwise different subjects, so that
    `drop_implied` drops none of them (found without folding their values): an own-superset
    predicate's superset is a test of its subject with needles that are its values folded
    (`fold` and `fold_to_ascii` keep a text's length, so none is empty and the superset is
    never `_TRUE`), and another predicate's superset only tests that one's subject or is
    `_TRUE`; the two cannot be equal."""
    for i, c in enumerate(conjuncts):
        if not isinstance(c, Predicate):
            return False
        subject = c.field
        for other in conjuncts[:i]:
            if other.field == subject:
                return False
    return True


def _plain_field(p: Predicate) -> bool:
    return isinstance(p.field, Field) and p.field.type == "string"


def _predicate(p: Predicate, writable: Writable) -> Condition:
    if p.negated or not _plain_field(p) or not p.values:
        return _TRUE
    if not all(isinstance(v, str) for v in p.values):
        return _TRUE
    if p.op is Op.REGEX:
        if not p.case_sensitive:  # (?i) also folds 'ſ' to 's', which `fold` does not
            return _TRUE
        needles = ((Op.CONTAINS, regex_literal(v)) for v in p.values)
    else:
        op = _TO_CONTAINS.get(p.op, p.op)
        if op not in _PLAIN:
            return _TRUE
        needles = ((op, v) for v in p.values)
    tests = []
    for op, value in needles:
        test = _needle(op, value, writable)
        if not test[1] and not p.all_values:
            return _TRUE  # one value with no needle: none of the others' tests is implied
        tests.append(test)
    if p.all_values:
        return all_of([Predicate(p.field, o, (n,), span=p.span) for o, n in tests if n])
    ops = {o for o, _ in tests}
    if len(ops) == 1:
        return Predicate(p.field, ops.pop(), tuple(dict.fromkeys(n for _, n in tests)), span=p.span)
    return any_of([Predicate(p.field, o, (n,), span=p.span) for o, n in tests])


def _needle(op: Op, value: str, writable: Writable) -> tuple[Op, str]:
    """(operator, needle) of the case-insensitive test a value's test implies; needle '' when
    there is none."""
    value = fold(fold_to_ascii(value))
    if value and _all_writable(value, writable):
        return op, value
    runs, run = [], ""
    for ch in value:
        if writable(ch):
            run += ch
        else:
            runs.append(run)
            run = ""
    runs.append(run)
    return Op.CONTAINS, max(runs, key=len)


@functools.lru_cache(maxsize=1024)
def regex_literal(pattern: str) -> str:
    """The longest text every match of a case-sensitive regex holds, up to case: a run of
    top-level single characters (a literal, or a class of one letter in both cases such as
    `[jJ]`, which the environments' basename regexes use).  '' when there is none, or when the
    regex folds case itself (a global `(?i)`).  Remembered per pattern (a function of it
    alone): parsing is some 240,000 instructions a pattern, and a batch writes the same
    pattern in several rules (110 regex tests over the SigmaHQ Windows rules, 89 patterns)."""
    try:
        import re._parser as sre  # the standard library's own regex parser
        parsed = sre.parse(pattern)
    except Exception:  # noqa: BLE001 - any pattern it cannot read has no needle
        return ""
    if parsed.state.flags & 2:  # re.IGNORECASE
        return ""
    runs, run = [], ""
    for kind, arg in parsed:
        ch = _single_char(kind, arg, sre)
        if ch is None:
            runs.append(run)
            run = ""
        else:
            run += ch
    runs.append(run)
    return max(runs, key=len)


def _single_char(kind, arg, sre) -> str | None:
    """The one character a parsed regex item matches (up to case), else None; `kind` is one of
    the parser's opcode constants (`sre.LITERAL` ...), compared as the objects they are."""
    if kind is sre.LITERAL:
        return chr(arg)
    if kind is sre.IN and all(k is sre.LITERAL for k, _ in arg):
        chars = {chr(code) for _, code in arg}
        if len(chars) == 1:
            return chars.pop()
        if len(chars) == 2 and len({fold(c) for c in chars}) == 1 and all(c.isascii() for c in chars):
            return fold(min(chars))
    return None
