"""Sigma values (after their modifiers) as predicates of the detection model.

* A string without wildcards is EQUALS; `*x*`, `x*`, `*x` are CONTAINS, STARTSWITH, ENDSWITH;
  a lone `*` is EXISTS (pySigma: any value, so not on a missing field); any other wildcard
  pattern is an anchored REGEX (`(?s)^...$`, `*` -> `.*`, `?` -> `.`).  Case-insensitive unless
  `cased` (Sigma's default).
* `re` is REGEX (case-sensitive unless `i`; `m`/`s` become inline flags).  The one regex form
  rmmc's Sigma backend writes for a KQL term match (`sigma_values` docstring) is lifted back to
  TERM / TERM_PREFIX / TERM_SUFFIX, and a regex that is only an escaped literal to CONTAINS, so
  KQL -> Sigma -> KQL gives back `has`.
* null is "the field is missing" (EXISTS negated); numbers and booleans are equality on a
  numeric / boolean field, or on their text for a string column; `gt`... are comparisons.
  A string that is a decimal or a hex number (`'0x3e7'`, as Windows logs write ids) on a
  numeric column is equality with that number.
"""

from __future__ import annotations

import re

from rmmc.compiler.diagnostics import Span
from rmmc.compiler.text_rules import is_term_char
from rmmc.compiler.ir import Field, Op, Predicate
from rmmc.compiler.sigma.values import (MULTI, TERM_BOUNDARY_LEFT, TERM_BOUNDARY_RIGHT, SBool, SCidr, SCompare,
                                        SExists, SNull, SNumber, SRegex, SString, SValue, Wild, escape_regex,
                                        literal, normalise)

NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})
_COMPARE = {"gt": Op.GT, "gte": Op.GE, "lt": Op.LT, "lte": Op.LE}
_ESCAPED_LITERAL = re.compile(r"(?:\\[\\.^$|?*+()\[\]{}]|[^\\.^$|?*+()\[\]{}])*")
_UNESCAPE = re.compile(r"\\(.)")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_LEFT, _RIGHT = TERM_BOUNDARY_LEFT, TERM_BOUNDARY_RIGHT


def shared_field(name: str, kind: str) -> Field:
    """`Field(name, kind)`, one shared value per name and type (a frozen value: the SigmaHQ
    rules test a few hundred fields over 8,600 items, and a shared field compares equal to
    itself without a call, as the reader's merging and `drop_implied` compare them)."""
    found = _FIELDS.get((name, kind))
    if found is None:
        if len(_FIELDS) > 4096:
            _FIELDS.clear()
        found = _FIELDS[(name, kind)] = Field(name, kind)
    return found


_FIELDS: dict[tuple[str, str], Field] = {}


def predicate(name: str, column_type: str | None, value: SValue, span: Span | None) -> Predicate:
    """One Sigma value on one field as a predicate (`column_type` None: the field is not a
    known column, so its type follows the value)."""
    kind = column_type or "string"
    if isinstance(value, SString):
        return _string(name, kind, value, span)
    if isinstance(value, SRegex):
        return _regex(name, kind, value, span)
    if isinstance(value, SNull):
        return Predicate(shared_field(name, kind), Op.EXISTS, negated=True, span=span)
    if isinstance(value, SExists):
        return Predicate(shared_field(name, kind), Op.EXISTS, negated=not value.value, span=span)
    if isinstance(value, SCidr):
        return Predicate(shared_field(name, kind), Op.CIDR, (value.network,), span=span)
    if isinstance(value, SCompare):
        number_type = column_type if column_type in NUMERIC else _number_type(value.value)
        return Predicate(shared_field(name, number_type), _COMPARE[value.op], (value.value,), span=span)
    if isinstance(value, SNumber):
        if column_type is None:
            return Predicate(shared_field(name, _number_type(value.value)), Op.EQUALS, (value.value,), span=span)
        if kind in NUMERIC:
            return Predicate(shared_field(name, kind), Op.EQUALS, (value.value,), span=span)
        return Predicate(shared_field(name, kind), Op.EQUALS, (str(value.value),), span=span)
    if isinstance(value, SBool):
        if column_type is None or kind == "bool":
            return Predicate(shared_field(name, "bool"), Op.EQUALS, (value.value,), span=span)
        return Predicate(shared_field(name, kind), Op.EQUALS, ("true" if value.value else "false",), span=span)
    raise TypeError(f"not a Sigma value: {value!r}")


_PLAIN_OPS = {(): Op.EQUALS, ("contains",): Op.CONTAINS, ("startswith",): Op.STARTSWITH,
              ("endswith",): Op.ENDSWITH}


def plain_predicate(name: str, column_type: str | None, raw: object, modifiers: tuple[str, ...],
                    span: Span | None) -> Predicate | None:
    """The predicate `predicate` gives for the most common Sigma value, a text with no wildcard
    and no escape under at most one of contains / startswith / endswith (`modifiers`: the value
    modifiers, list modifiers left out), without building the Sigma value; None for any other
    value.  The reader tries this first for each of the SigmaHQ rules' 34,000 values."""
    op = _PLAIN_OPS.get(modifiers)
    if op is None or type(raw) is not str or not raw or "*" in raw or "?" in raw or "\\\\" in raw:
        return None  # (a backslash before anything but `*`, `?` or itself is itself)
    kind = column_type or "string"
    if op is Op.EQUALS and kind in NUMERIC:  # may be a number written as text
        return None
    return Predicate(shared_field(name, kind), op, (raw,), False, False, False, span)


def plain_item(raws: list, modifiers: tuple[str, ...], name: str, column_type: str | None,
               link_all: bool, span: Span | None) -> Predicate | None:
    """The one predicate of a detection item on `name` when its raw values (`raws`: its YAML
    nodes) are all ones `plain_predicate` reads, or all whole numbers with no modifier
    (`EventID: 4688`, a sixth of the SigmaHQ values `plain_predicate` does not read), as
    `predicate` and the reader's merging of single predicates that differ only in their value
    (`_link`, all of them with `link_all`) give it; None otherwise.  Most items of the
    SigmaHQ rules are read here, built in one call."""
    op = _PLAIN_OPS.get(modifiers)
    if op is None or not raws:
        return None
    kind = column_type or "string"
    values = []
    if type(raws[0].value) is int:  # (not a bool: its type is bool)
        if op is not Op.EQUALS:
            return None
        for raw in raws:
            number = raw.value
            if type(number) is not int:
                return None
            values.append(number)
        if column_type is None:  # `predicate`: the type follows the value
            kind = "long"
        elif kind not in NUMERIC:  # on a string column: its text
            values = [str(n) for n in values]
    else:
        if op is Op.EQUALS and kind in NUMERIC:  # a text may be a number written as text
            return None
        for raw in raws:
            text = raw.value
            if type(text) is not str or not text or "*" in text or "?" in text or "\\\\" in text:
                return None
            values.append(text)
    field = _FIELDS.get((name, kind)) or shared_field(name, kind)
    return Predicate(field, op, tuple(values), link_all and len(values) > 1, False, False, span)


def _number_type(n: int | float) -> str:
    return "real" if isinstance(n, float) else "long"


def _string(name: str, kind: str, value: SString, span: Span | None) -> Predicate:
    # (the common predicates below, as in plain_predicate / plain_item / _regex, are built with
    # positional arguments: a class called with keywords builds a dict of them first)
    parts = normalise(value.parts)
    field = shared_field(name, kind)
    cased = value.cased
    text = literal(parts)
    if text is not None:
        if kind in NUMERIC and _is_number(text):
            return Predicate(field, Op.EQUALS, (_number(text),), span=span)
        if kind in NUMERIC and _HEX.fullmatch(text):
            # Windows logs write ids in hex ('0x3e7', the SYSTEM logon id); Defender's numeric
            # columns hold the number (LogonId 999): the same value.
            return Predicate(field, Op.EQUALS, (int(text, 16),), span=span)
        return Predicate(field, Op.EQUALS, (text,), False, cased, False, span)
    if parts == (MULTI,):
        return Predicate(field, Op.EXISTS, span=span)
    if len(parts) == 3 and parts[0] == MULTI and parts[-1] == MULTI and isinstance(parts[1], str):
        return Predicate(field, Op.CONTAINS, (parts[1],), False, cased, False, span)
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] == MULTI:
        return Predicate(field, Op.STARTSWITH, (parts[0],), False, cased, False, span)
    if len(parts) == 2 and parts[0] == MULTI and isinstance(parts[1], str):
        return Predicate(field, Op.ENDSWITH, (parts[1],), False, cased, False, span)
    return Predicate(field, Op.REGEX, (wildcard_regex(parts),), False, cased, False, span)


def wildcard_regex(parts) -> str:
    """An anchored regex for a wildcard pattern; `.` matches a line break too, as `*` does."""
    body = "".join((".*" if p.char == "*" else ".") if isinstance(p, Wild) else escape_regex(p)
                   for p in parts)
    return f"(?s)^{body}$"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text != ""


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _regex(name: str, kind: str, value: SRegex, span: Span | None) -> Predicate:
    field = shared_field(name, kind)
    cased = "i" not in value.flags
    if not value.flags - {"i"}:
        lifted = lift_term_regex(value.pattern)
        if lifted is not None:
            op, needle = lifted
            return Predicate(field, op, (needle,), False, cased, False, span)
    inline = "".join(sorted(value.flags - {"i"}))
    pattern = f"(?{inline}){value.pattern}" if inline else value.pattern
    return Predicate(field, Op.REGEX, (pattern,), False, cased, False, span)


def lift_term_regex(pattern: str) -> tuple[Op, str] | None:
    """(operator, needle) when `pattern` is exactly a term regex rmmc's Sigma backend writes
    (or an escaped literal: CONTAINS); None for any other regex."""
    left = pattern.startswith(_LEFT)
    body = pattern[len(_LEFT):] if left else pattern
    right = body.endswith(_RIGHT)
    body = body[:-len(_RIGHT)] if right else body
    if not _ESCAPED_LITERAL.fullmatch(body):
        return None
    needle = _UNESCAPE.sub(r"\1", body)
    if not needle:
        return None
    starts, ends = is_term_char(needle[0]), is_term_char(needle[-1])
    if left and not starts or right and not ends:
        return None  # a boundary the backend would not write: not its form
    if left and right:
        return Op.TERM, needle
    if left:
        return (Op.TERM_PREFIX if ends else Op.TERM), needle
    if right:
        return (Op.TERM_SUFFIX if starts else Op.TERM), needle
    return Op.CONTAINS, needle
