"""An IR condition as Sigma detection: named selections and a condition string.

Exactness rests on four rules, each checked against the reference evaluator by the tests:

* Each predicate becomes one selection that is exactly its (un-negated) test; a negated
  predicate is `not <selection>`.  Sigma reads a test on a missing field as false, while in
  KQL a string is never null (a missing string reads as ''): so when the test is true of ''
  (`contains ''`, `== ''`, a regex matching '') the selection also accepts the field being
  null (`- Field: null`).
* Comparisons (`<`, `between` ...) on a null are unknown in KQL, and `not` of unknown is still
  not a match, whereas Sigma backends read them as false (and `not` of false as true).  So a
  negation over a subtree that holds a comparison is pushed down to the comparisons and
  flipped there (`not (x > 5)` -> `x|lte: 5`); any other `not` is kept as written.
* Values are escaped (`values`); EMPTY is `Field: ''` or `Field: null`; EXISTS is
  `|exists`; `has` is the term regex (`values` docstring), or `|contains` when the
  needle has no term character at a checked end (then both are the same test).
* CIDR is `Field|cidr: [networks]` in strict notation (a network with host bits is written
  as its network address, with a note); never true of a missing field, so `not` is exact.
  How a Sigma backend runs it is its own: pySigma's sqlite backend, for one, expands it to
  wildcard patterns (`10.*`), which also match text that is no address.
* `all_values` is `|contains|all` for contains; any other operator (where pySigma's
  validators reject `|all` without `contains`) becomes one selection per value, ANDed.

A condition that folds to a constant is returned as a bool; the caller refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Union

from rmmc.backends.base import (EmitOptions, Wildcard, asked_lossy, cidr_networks, lossy, note, unsupported,
                                wildcard_pattern)
from rmmc.backends.sigma.fields import TARGET, FieldMapper
from rmmc.backends.sigma.placeholders import Placeholders, is_feed_test
from rmmc.backends.sigma.values import (escape_plain, regex_portability, term_boundaries,
                                        term_regex)
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.evaluator import coerce, evaluate_predicate, fold, fold_to_ascii, re2_dollar
from rmmc.compiler.regexes import dollar_is_the_end, ends_at_dollar_after_no_line_break
from rmmc.compiler.ir import And, Condition, Const, InSubquery, Not, Op, Or, Predicate
from rmmc.compiler.prefilter import printable_ascii, superset

NUMERIC_TYPES = frozenset({"int", "long", "real", "double", "decimal"})
# Types whose text KQL string operators see as the same text a Sigma backend compares.
TEXT_TYPES = frozenset({"string", "int", "long", "guid"})
COMPARISONS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN})
_ALWAYS_ON_EMPTY_NEEDLE = frozenset({Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM,
                                     Op.TERM_PREFIX, Op.TERM_SUFFIX, Op.REGEX})
_FLIP = {Op.LT: Op.GE, Op.GE: Op.LT, Op.LE: Op.GT, Op.GT: Op.LE}
_COMPARE_MODIFIER = {Op.LT: "lt", Op.LE: "lte", Op.GT: "gt", Op.GE: "gte"}
_STRING_MODIFIER = {Op.CONTAINS: "contains", Op.STARTSWITH: "startswith", Op.ENDSWITH: "endswith"}
_TERM_OPS = frozenset({Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX})


# ------------------------------------------------------------------ the Sigma condition tree


@dataclass(frozen=True)
class Widening:
    """A TERM predicate emitted as `|contains` under `--loose`, for the values listed."""

    predicate: Predicate
    values: tuple[str, ...]


@dataclass(eq=False)
class Leaf:
    """One Sigma selection: a map (its items ANDed) or a list of maps (ORed)."""

    body: dict[str, Any] | list[dict[str, Any]]
    widenings: tuple[Widening, ...] = ()


@dataclass(frozen=True)
class SAnd:
    items: tuple["SExpr", ...]


@dataclass(frozen=True)
class SOr:
    items: tuple["SExpr", ...]


@dataclass(frozen=True)
class SNot:
    item: "SExpr"


SExpr = Union[Leaf, SAnd, SOr, SNot]
Lowered = Union[SExpr, bool]


def s_and(items: Iterable[Lowered]) -> Lowered:
    flat: list[SExpr] = []
    for item in items:
        if item is False:
            return False
        if item is True:
            continue
        flat.extend(item.items if isinstance(item, SAnd) else (item,))
    if not flat:
        return True
    return flat[0] if len(flat) == 1 else SAnd(tuple(flat))


def s_or(items: Iterable[Lowered]) -> Lowered:
    flat: list[SExpr] = []
    for item in items:
        if item is True:
            return True
        if item is False:
            continue
        flat.extend(item.items if isinstance(item, SOr) else (item,))
    if not flat:
        return False
    return flat[0] if len(flat) == 1 else SOr(tuple(flat))


def s_not(item: Lowered) -> Lowered:
    if isinstance(item, bool):
        return not item
    return item.item if isinstance(item, SNot) else SNot(item)


def _bodies(leaf: Leaf) -> list[dict[str, Any]]:
    return list(leaf.body) if isinstance(leaf.body, list) else [leaf.body]


def compact(expr: Lowered) -> Lowered:
    """Merge ANDed map selections with distinct keys into one map, and ORed selections into
    one list of maps: the same test, fewer names."""
    if isinstance(expr, (bool, Leaf)):
        return expr
    if isinstance(expr, SNot):
        return SNot(compact(expr.item))
    items = [compact(i) for i in expr.items]
    out: list[SExpr] = []
    if isinstance(expr, SAnd):
        for item in items:
            last = out[-1] if out and isinstance(out[-1], Leaf) else None
            if (isinstance(item, Leaf) and isinstance(item.body, dict) and last is not None
                    and isinstance(last.body, dict) and not (item.body.keys() & last.body.keys())):
                out[-1] = Leaf({**last.body, **item.body}, last.widenings + item.widenings)
            else:
                out.append(item)
        return out[0] if len(out) == 1 else SAnd(tuple(out))
    leaves = [i for i in items if isinstance(i, Leaf)]
    if len(leaves) > 1:
        merged = Leaf([b for leaf in leaves for b in _bodies(leaf)],
                      tuple(w for leaf in leaves for w in leaf.widenings))
        first = items.index(leaves[0])
        items = [i for i in items if not isinstance(i, Leaf)]
        items.insert(first, merged)
    return items[0] if len(items) == 1 else SOr(tuple(items))


# ------------------------------------------------------------------ naming and rendering


@dataclass
class Namer:
    """Gives each Leaf its selection name; remembers them for the detection map."""

    names: dict[int, str] = field(default_factory=dict)
    selections: dict[str, Any] = field(default_factory=dict)

    def name_all(self, expr: Lowered, prefix: str) -> None:
        leaves = list(_leaves(expr))
        for i, leaf in enumerate(leaves, 1):
            name = prefix if len(leaves) == 1 else f"{prefix}_{i}"
            self.names[id(leaf)] = name
            self.selections[name] = leaf.body


def _leaves(expr: Lowered):
    if isinstance(expr, Leaf):
        yield expr
    elif isinstance(expr, SNot):
        yield from _leaves(expr.item)
    elif isinstance(expr, (SAnd, SOr)):
        for item in expr.items:
            yield from _leaves(item)


def leaves_with_parity(expr: Lowered, negated: bool = False):
    """(leaf, under an odd number of `not`) for every leaf."""
    if isinstance(expr, Leaf):
        yield expr, negated
    elif isinstance(expr, SNot):
        yield from leaves_with_parity(expr.item, not negated)
    elif isinstance(expr, (SAnd, SOr)):
        for item in expr.items:
            yield from leaves_with_parity(item, negated)


def render(expr: SExpr, namer: Namer) -> str:
    """The Sigma condition string (`not` binds tighter than `and`, `and` than `or`; an
    `and` inside an `or` is parenthesised anyway, for the reader)."""
    if isinstance(expr, Leaf):
        return namer.names[id(expr)]
    if isinstance(expr, SNot):
        inner = render(expr.item, namer)
        return f"not ({inner})" if isinstance(expr.item, (SAnd, SOr)) else f"not {inner}"
    parts = []
    for item in expr.items:
        text = render(item, namer)
        parts.append(f"({text})" if isinstance(item, (SAnd, SOr)) else text)
    return (" and " if isinstance(expr, SAnd) else " or ").join(parts)


# ------------------------------------------------------------------ lowering


def _may_be_unknown(condition: Condition) -> bool:
    """Whether the condition can evaluate to unknown (it holds a comparison)."""
    stack = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, Predicate):
            if node.op in COMPARISONS:
                return True
        elif isinstance(node, (And, Or)):
            stack.extend(node.operands)
        elif isinstance(node, Not):
            stack.append(node.operand)
    return False


def _unique(values: Iterable[Any]) -> list[Any]:
    """The values in order, each once (a set for hashable values: lists of 100,000 values
    made the list-membership version quadratic)."""
    seen: set[Any] = set()
    out: list[Any] = []
    for v in values:
        try:
            if v in seen:
                continue
            seen.add(v)
        except TypeError:  # an unhashable value: compare with what is kept
            if v in out:
                continue
        out.append(v)
    return out


@dataclass
class ConditionLowerer:
    """Lowers IR conditions of one rule; diagnostics go to `diagnostics`."""

    fields: FieldMapper
    options: EmitOptions
    diagnostics: list[Diagnostic]
    placeholders: Placeholders = field(default_factory=Placeholders)  # feed tests (placeholders.py)

    def lower_widened(self, condition: Condition) -> Lowered:
        """`lower` after replacing each `in (T | ...)` subquery (another table, which Sigma
        cannot query) by the constant that only adds matches; one `lossy` per replaced node."""
        from rmmc.backends.widen import widen

        widened, replaced = widen(condition, lambda node: isinstance(node, InSubquery) and not is_feed_test(node))
        for node in replaced:
            kind = "!in" if node.negated else "in"
            source = f" on table {node.table}" if node.table else ""
            self.diagnostics.append(lossy(
                TARGET, f"{node.field.name} {kind} ({node.query}) is dropped: Sigma cannot query "
                        f"another table{source}, so the rule matches more events (as if the test "
                        "always held where it counts)", node.span, subject=node))
        return self.lower(widened)

    def lower(self, condition: Condition, negate: bool = False) -> Lowered:
        """A Sigma expression true exactly when `condition` is true (`negate`: exactly when it
        is false; not when it is unknown)."""
        if isinstance(condition, Const):
            return condition.value != negate
        if isinstance(condition, InSubquery) and is_feed_test(condition):  # a feed: a placeholder
            name = self.fields.sigma(condition.field.name, condition.span)
            key = self.placeholders.key(condition, name, self.options, self.diagnostics)
            if key is None:
                return Leaf({})  # refused (said)
            leaf = Leaf({key[0]: key[1]})
            return s_not(leaf) if condition.negated != negate else leaf
        if isinstance(condition, InSubquery):  # lower_widened removes these
            self.diagnostics.append(unsupported(
                TARGET, f"{condition.field.name} in ({condition.query}): Sigma cannot query another table",
                condition.span))
            return Leaf({})
        if negate and not _may_be_unknown(condition):
            return s_not(self.lower(condition, False))
        if isinstance(condition, Predicate):
            if condition.op in COMPARISONS:
                return self._comparison(condition, flip=negate != condition.negated)
            if condition.op is Op.EXISTS:  # `|exists: false` reads better than `not`
                name = self.fields.sigma(condition.field.name, condition.span)
                return Leaf({f"{name}|exists": not condition.negated})
            base = self._predicate(condition)
            return s_not(base) if condition.negated else base
        if isinstance(condition, Not):
            return self.lower(condition.operand, not negate)
        if isinstance(condition, And):
            parts = [self.lower(op, negate) for op in condition.operands]
            return s_or(parts) if negate else s_and(parts)
        if isinstance(condition, Or):
            parts = [self.lower(op, negate) for op in condition.operands]
            return s_and(parts) if negate else s_or(parts)
        raise TypeError(f"not a condition: {condition!r}")

    # -------------------------------------------------------------- diagnostics

    def _refuse(self, p: Predicate, why: str) -> Lowered:
        self.diagnostics.append(unsupported(TARGET, f"{p.field.name} {p.op.value}: {why}", p.span))
        return Leaf({})  # a placeholder: the rule is refused

    # -------------------------------------------------------------- comparisons

    def _comparison(self, p: Predicate, flip: bool) -> Lowered:
        """`p`'s un-negated comparison (flipped: its complement among non-null values)."""
        kind = p.field.type
        if kind in ("datetime", "timespan"):
            return self._refuse(p, f"Sigma has no {kind} comparison")
        if kind not in NUMERIC_TYPES:
            return self._refuse(p, f"Sigma compares numbers only, and {p.field.name} is {kind}")
        bounds = []
        for v in p.values:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                return self._refuse(p, f"bound {v!r} is not a number")
            try:
                bounds.append(coerce(v, kind))
            except (TypeError, ValueError):
                return self._refuse(p, f"bound {v!r} is not a number")
        expected = 2 if p.op is Op.BETWEEN else 1
        if len(bounds) != expected or any(isinstance(b, str) for b in bounds):
            return self._refuse(p, f"expected {expected} numeric bound(s), got {p.values!r}")
        name = self.fields.sigma(p.field.name, p.span)
        if p.op is Op.BETWEEN:
            low, high = bounds
            if flip:
                return s_or([Leaf({f"{name}|lt": low}), Leaf({f"{name}|gt": high})])
            return Leaf({f"{name}|gte": low, f"{name}|lte": high})
        op = _FLIP[p.op] if flip else p.op
        return Leaf({f"{name}|{_COMPARE_MODIFIER[op]}": bounds[0]})

    # -------------------------------------------------------------- other predicates

    def _predicate(self, p: Predicate) -> Lowered:
        """The exact Sigma test for `p` with its negation ignored."""
        kind = p.field.type
        if p.op is Op.EMPTY:
            name = self.fields.sigma(p.field.name, p.span)
            return Leaf([{name: ""}, {name: None}])
        if p.op is Op.CIDR:
            return self._cidr(p)
        if p.op is Op.EQUALS and kind not in ("string", "guid"):
            return self._typed_equals(p)
        if kind not in TEXT_TYPES:
            return self._refuse(p, f"a string test on a {kind} field has no exact Sigma form")
        if p.op is Op.REGEX:
            for v in p.values:
                try:
                    re.compile(str(v))
                except re.error as e:
                    return self._refuse(p, f"invalid regex {v!r}: {e}")
        values = _unique(str(v) for v in p.values)
        string_field = kind == "string"
        if string_field and p.op in _ALWAYS_ON_EMPTY_NEEDLE:
            values, always = self._drop_always(p, values)
            if always:
                return True
        if not values:  # any-of nothing is false, all-of nothing true
            return p.all_values
        # KQL compares a guid exactly; its other string operators follow `case_sensitive`.
        case_sensitive = p.case_sensitive or (kind == "guid" and p.op is Op.EQUALS)
        if not case_sensitive and p.op is not Op.REGEX:  # the needle as the evaluator folds it
            values = _unique(fold_to_ascii(v) for v in values)
        if p.op is Op.EQUALS:
            values = self._equals_values(p, values, case_sensitive)
            if not values:
                return False
        base = self._string_test(p, values, case_sensitive)
        if string_field and evaluate_predicate(replace(p, negated=False), {}) is True:
            base = _or_null(base, self.fields.sigma(p.field.name, p.span))
        return base

    def _cidr(self, p: Predicate) -> Lowered:
        """`Field|cidr: [networks]` (any of them); all_values: one selection per network, ANDed.
        pySigma wants strict notation (no host bits): a network written with host bits is
        written as its network (the same addresses), with a note."""
        if p.field.type != "string":
            return self._refuse(p, f"cidr on a {p.field.type} field has no exact Sigma form")
        try:
            networks = cidr_networks(p)
        except ValueError as exc:
            return self._refuse(p, str(exc))
        texts = _unique(str(n) for n in networks)
        for value, network in zip(p.values, networks):
            said = note(TARGET, f"cidr network {value!r} on {p.field.name} written as {str(network)!r} "
                                "(Sigma needs the network address; the same addresses)", p.span)
            if str(value).strip() != str(network) and said not in self.diagnostics:
                self.diagnostics.append(said)
        if not texts:  # any-of nothing is false, all-of nothing true
            return p.all_values
        name = self.fields.sigma(p.field.name, p.span)
        return _keyed(f"{name}|cidr", texts, p.all_values, split=True)

    @staticmethod
    def _drop_always(p: Predicate, values: list[str]) -> tuple[list[str], bool]:
        """An empty needle (or regex) matches every string, so it is decided now: any-of such
        a value is true; all-of just drops it."""
        kept = [v for v in values if v != ""]
        if len(kept) < len(values) and not p.all_values:
            return kept, True
        return kept, False

    @staticmethod
    def _equals_values(p: Predicate, values: list[str], case_sensitive: bool) -> list[str]:
        """EQUALS with all_values holds only if every value is the same string."""
        if not p.all_values:
            return values
        keys = {v if case_sensitive else fold(v) for v in values}
        return values[:1] if len(keys) == 1 else []

    def _typed_equals(self, p: Predicate) -> Lowered:
        kind = p.field.type
        if kind not in NUMERIC_TYPES and kind not in ("bool", "boolean"):
            return self._refuse(p, f"Sigma has no exact {kind} equality")
        try:
            coerced = [coerce(v, kind) for v in p.values]
        except (TypeError, ValueError):
            return False  # the evaluator: a value that does not convert makes the test false
        if kind in NUMERIC_TYPES and any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in coerced):
            return False
        values = _unique(coerced)
        if not values:
            return p.all_values
        if p.all_values and len(values) > 1:
            return False
        name = self.fields.sigma(p.field.name, p.span)
        return Leaf({name: values[0] if len(values) == 1 else values})

    def _string_test(self, p: Predicate, values: list[str], case_sensitive: bool) -> Lowered:
        name = self.fields.sigma(p.field.name, p.span)
        cased = "|cased" if case_sensitive else ""
        if p.op is Op.EQUALS:
            return _keyed(f"{name}{cased}", [escape_plain(v) for v in values], p.all_values, split=True)
        if p.op in _STRING_MODIFIER:
            key = f"{name}|{_STRING_MODIFIER[p.op]}{cased}"
            return _keyed(key, [escape_plain(v) for v in values], p.all_values,
                          split=p.op is not Op.CONTAINS)
        if p.op is Op.REGEX:
            wildcards = [wildcard_pattern(v) for v in values]
            if all(w is not None for w in wildcards):  # the reader's form of a Sigma wildcard value
                return _keyed(f"{name}{cased}", [_sigma_wildcard(w) for w in wildcards], p.all_values,
                              split=True)
            for message in _unique(m for v in values for m in regex_portability(v)):
                self.diagnostics.append(note(TARGET, f"regex on {p.field.name}: {message}", p.span))
            key = f"{name}|re" + ("" if case_sensitive else "|i")
            if any(re2_dollar(v) != v and not dollar_is_the_end(v) for v in values) and values and all(
                    ends_at_dollar_after_no_line_break(v) for v in values):
                # RE2's `$` is the very end; PCRE's and Python's also match before a final line
                # break, which these patterns cannot end with: the same test on a value that
                # does not end with one (regexes.ends_at_dollar_after_no_line_break); "ends with
                # a line break" as the regex `\n$`, which every engine reads alike (a plain value
                # would hold a control character, which pySigma's validators flag)
                return s_and([_keyed(key, values, p.all_values, split=True),
                              s_not(Leaf({f"{name}|re": "\\n$"}))])
            if any(re2_dollar(v) != v and not dollar_is_the_end(v) for v in values):
                self.diagnostics.append(lossy(
                    TARGET, f"regex on {p.field.name}: '$' is the very end of the value in KQL's RE2 "
                            "(and rmmc's model); Sigma backends' engines (PCRE, Python) also match it "
                            "before a final line break, so such values now match too", p.span, subject=p))
            key = f"{name}|re" + ("" if case_sensitive else "|i")
            return _keyed(key, values, p.all_values, split=True)
        if p.op in _TERM_OPS:
            return self._term(p, name, values, case_sensitive)
        raise AssertionError(f"unhandled operator {p.op}")

    def _term(self, p: Predicate, name: str, values: list[str], case_sensitive: bool) -> Lowered:
        bounded = [v for v in values if any(term_boundaries(p.op, v))]
        cased = "|cased" if case_sensitive else ""
        if not bounded or self.options.loose:
            leaf = _keyed(f"{name}|contains{cased}", [escape_plain(v) for v in values],
                          p.all_values, split=False)
            if bounded and isinstance(leaf, Leaf):
                leaf.widenings = (Widening(p, tuple(bounded)),)
            return leaf
        key = f"{name}|re" + ("" if case_sensitive else "|i")
        exact = _keyed(key, [term_regex(p.op, v) for v in values], p.all_values, split=True)
        index = index_values(replace(p, values=tuple(values), case_sensitive=case_sensitive, negated=False))
        if index is None:
            return exact
        contains = _keyed(f"{name}|contains", [escape_plain(v) for v in index], p.all_values, split=False)
        if not p.all_values and isinstance(exact, Leaf) and isinstance(exact.body, dict) \
                and isinstance(contains, Leaf):  # one selection: `X|contains` beside `X|re|i`
            return Leaf({**contains.body, **exact.body})
        return s_and([contains, exact])


def _index_char(ch: str) -> bool:
    return printable_ascii(ch)


def index_values(p: Predicate) -> list[str] | None:
    """The `|contains` needles implied by a term test (`prefilter.superset`: has -> contains,
    case-insensitive), which every pySigma backend can hand to an index: written beside the
    term regex in the same selection, ANDed with it (the regex implies it, so the selection
    and its negation mean what the regex alone means).  None when there is none."""
    pre = superset(p, _index_char)
    parts = pre.operands if isinstance(pre, And) else (pre,)
    if not all(isinstance(x, Predicate) and x.op is Op.CONTAINS for x in parts):
        return None
    values = [v for x in parts for v in x.values]
    return values if (len(parts) == 1) != p.all_values or len(values) == 1 else None


def _sigma_wildcard(parts) -> str:
    """A `wildcard_pattern` as a Sigma plain value: literals escaped, `*` and `?` as wildcards."""
    return "".join(escape_plain(p) if isinstance(p, str) else ("*" if p is Wildcard.ANY else "?")
                   for p in parts)


def _keyed(key: str, values: list[Any], all_values: bool, split: bool) -> Lowered:
    """One selection item for the values: a scalar, an any-of list, `|all` (contains only),
    or one selection per value ANDed (`split`)."""
    if len(values) == 1:
        return Leaf({key: values[0]})
    if not all_values:
        return Leaf({key: list(values)})
    if split:
        return s_and(Leaf({key: v}) for v in values)
    return Leaf({f"{key}|all": list(values)})


def _or_null(base: Lowered, name: str) -> Lowered:
    """`base` or the field is null (KQL reads a missing string as '')."""
    if isinstance(base, Leaf) and isinstance(base.body, dict):
        return Leaf([base.body, {name: None}], base.widenings)
    return s_or([base, Leaf({name: None})])


def widening_diagnostics(expr: Lowered) -> list[Diagnostic]:
    """One `lossy` per TERM predicate emitted as `|contains` (`--loose`), saying whether it now
    matches more events or, under `not`, excludes more."""
    out: list[Diagnostic] = []
    for leaf, negated in leaves_with_parity(expr):
        for w in leaf.widenings:
            p = w.predicate
            shown = ", ".join(repr(v) for v in w.values)
            left, _ = term_boundaries(p.op, w.values[0])
            inside = repr(f"not{w.values[0]}" if left else f"{w.values[0]}s")
            kind = {Op.TERM: "has", Op.TERM_PREFIX: "hasprefix", Op.TERM_SUFFIX: "hassuffix"}[p.op]
            effect = "now also excludes" if negated else "now also matches"
            out.append(asked_lossy(
                TARGET,
                f"{p.field.name} {kind} {shown} is emitted as |contains (--loose): it {effect} events "
                f"where the value occurs inside a longer word (e.g. {inside})",
                p.span, subject=p))
    return out
