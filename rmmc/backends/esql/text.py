"""The text of ES|QL: identifiers, literals, time spans, regex and pattern escapes.

Shared by the ES|QL backend's modules (`backend` conditions and the rule, `expr` scalar
expressions, `stages` the stages).  Every literal is written so the ES|QL lexer reads it
back as exactly the value (elastic/elasticsearch `EsqlBaseLexer.g4`: `STRING: '"'
(ESCAPE_SEQUENCE | ~[\\r\\n"\\\\])* '"'`, `ESCAPE_SEQUENCE: '\\\\' [tnr"\\\\]`, quoted identifiers in
backticks with a backtick doubled).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from rmmc.compiler.diagnostics import Span
from rmmc.compiler.evaluator import coerce


class Refusal(ValueError):
    """Something ES|QL cannot say with KQL's meaning: an `unsupported` diagnostic, located."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


_KEYWORDS = frozenset("""
    and or not like rlike in is null true false by asc desc nulls first last as on with
    metadata where from row eval stats keep drop rename sort limit dissect grok enrich
    mv_expand show info
""".split())
_PLAIN_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*|[_@][A-Za-z0-9_]+")


def ident(name: str) -> str:
    """An ES|QL identifier for a field name: plain when every dot-separated part is a plain
    identifier and no keyword, else the whole name in backticks (backticks doubled)."""
    parts = name.split(".")
    if all(_PLAIN_PART.fullmatch(p) and p.lower() not in _KEYWORDS for p in parts):
        return name
    return "`" + name.replace("`", "``") + "`"


_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def string_lit(value: str) -> str:
    """A double-quoted ES|QL string literal holding exactly `value`."""
    return '"' + "".join(_STRING_ESCAPES.get(ch, ch) for ch in value) + '"'


def lucene_escape(text: str) -> str:
    """`text` as a Lucene regular expression matching exactly itself: every ASCII character
    other than a letter, digit or space gets a backslash (reserved or not: `\\` + any
    non-letter is that character); letters and non-ASCII characters stay as they are."""
    return "".join("\\" + ch if ch < "\x7f" and ch > " " and not ch.isalnum() else ch
                   for ch in text)


def like_escape(text: str) -> str:
    """`text` as a LIKE pattern matching exactly itself: `*`, `?` and `\\` escaped with `\\`
    (the only characters LIKE gives a meaning, and the only ones it lets `\\` escape)."""
    return "".join("\\" + ch if ch in "*?\\" else ch for ch in text)


_UNITS = (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000), ("second", 1_000),
          ("millisecond", 1))


def time_span(span: timedelta, largest: str = "day") -> tuple[str, bool]:
    """An ES|QL time span literal (`5 days`, `90 minutes`, ...) in the largest unit (not above
    `largest`) that divides it, and whether it had to be rounded up to a whole millisecond."""
    micros = span // timedelta(microseconds=1)
    millis, rest = divmod(micros, 1000)
    rounded = rest != 0
    millis += 1 if rounded else 0
    if millis == 0:
        return "0 milliseconds", rounded
    units = _UNITS[[u for u, _ in _UNITS].index(largest):]
    unit, per = next((u, p) for u, p in units if millis % p == 0)
    count = millis // per
    return f"{count} {unit}{'' if count == 1 else 's'}", rounded


def number_lit(value: int | float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise Refusal(f"{value!r} has no ES|QL literal")
    if isinstance(value, int) and not -(2 ** 63) < value < 2 ** 63:
        raise Refusal(f"{value} does not fit an ES|QL long")
    text = repr(value)
    return f"({text})" if text.startswith("-") else text


def datetime_lit(value: datetime) -> str:
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return "TO_DATETIME(" + string_lit(value.strftime("%Y-%m-%dT%H:%M:%S.") +
                                       f"{value.microsecond // 1000:03d}Z") + ")"


NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})
TEXT_LIKE = frozenset({"string", "guid"})


def typed_lit(value: Any, kind: str, field_name: str) -> str:
    if kind in TEXT_LIKE:
        return string_lit(value if isinstance(value, str) else str(value))
    try:
        typed = coerce(value, kind)
    except (TypeError, ValueError, OverflowError):
        raise Refusal(f"{value!r} is not a valid {kind} (field {field_name})") from None
    if kind in ("bool", "boolean"):
        return "true" if typed else "false"
    if kind in NUMERIC and isinstance(typed, (int, float)):
        return number_lit(typed)
    if kind == "datetime" and isinstance(typed, datetime):
        if typed.microsecond % 1000:
            raise Refusal(f"{value!r} on {field_name} has sub-millisecond precision")
        return datetime_lit(typed)
    raise Refusal(f"no ES|QL literal of type {kind} for {value!r} (field {field_name})")


def paren(text: str) -> str:
    return f"({text})"


def join(op: str, parts: list[str]) -> str:
    """`a AND b ...` / `a OR b ...`, each compound operand in parentheses; none: neutral."""
    if not parts:
        return "true" if op == "AND" else "false"
    if len(parts) == 1:
        return parts[0]
    return f" {op} ".join(parts)


def strip_parens(text: str) -> str:
    """`(x)` -> `x` when the outer parentheses enclose the whole text (for readability)."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth, in_string, in_tick, i = 0, False, False, 0
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif in_tick:
            if ch == "`":
                in_tick = False
        elif ch == '"':
            in_string = True
        elif ch == "`":
            in_tick = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return text
        i += 1
    return text[1:-1]
