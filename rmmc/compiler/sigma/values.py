"""Sigma detection values and modifiers, as pySigma 1.x defines them.

A plain Sigma string is a sequence of literal text and wildcards (`*` any run, `?` one
character); a backslash escapes `*`, `?` and itself, and is an ordinary character before
anything else (so `C:\\Windows\\` needs no doubling).  Modifiers are applied left to right,
each turning a value into another value or into several (an expansion: any of them).

Each rule here follows pySigma's code (`sigma.types`, `sigma.modifiers`), including its
quirks, so that rmmc's reader and pySigma's agree on every SigmaHQ rule:

* `contains` / `startswith` / `endswith` add a `*` where there is none (on a number, on its
  text); on a regex they change nothing (a regex is a search already);
* `windash` expands each `-` or `/` that starts a word (`\\B[-/]\\b` within a literal part) into
  `-`, `/`, en dash, em dash and horizontal bar, every combination;
* `base64` encodes the UTF-8 bytes of the text; `base64offset` gives pySigma's three
  shifted encodings; `wide`/`utf16le`, `utf16be` and `utf16` (a BOM, then UTF-16LE) turn
  each character into its code units as characters, ASCII only, as pySigma does;
* `re` takes the value as written (no wildcard parsing) and `i`, `m`, `s` set its flags;
* `cidr` needs a network in strict notation; `gt`/`gte`/`lt`/`lte` need a number;
  `exists` a boolean.
"""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass, replace
from typing import Union


class SigmaValueProblem(Exception):
    """A value or modifier that cannot be read (the message says why)."""


class Unsupported(SigmaValueProblem):
    """A value rmmc reads but the detection model cannot hold (fieldref, placeholders)."""


@dataclass(frozen=True, slots=True)
class Wild:
    """A wildcard in a plain string: `*` (any run) or `?` (one character)."""

    char: str  # "*" or "?"


MULTI = Wild("*")
SINGLE = Wild("?")
Part = Union[str, Wild]
_ESCAPABLE = frozenset("*?\\")


@dataclass(frozen=True, slots=True)
class SString:
    """A plain Sigma string: literal text and wildcards."""

    parts: tuple[Part, ...]
    cased: bool = False


@dataclass(frozen=True, slots=True)
class SRegex:
    """A regular expression (`|re`), with its `i` / `m` / `s` flags."""

    pattern: str
    flags: frozenset[str] = frozenset()  # subset of {"i", "m", "s"}


@dataclass(frozen=True, slots=True)
class SNumber:
    """A number value."""

    value: int | float


@dataclass(frozen=True, slots=True)
class SBool:
    """A boolean value."""

    value: bool


@dataclass(frozen=True, slots=True)
class SNull:
    """The null value (`field: null`)."""


@dataclass(frozen=True, slots=True)
class SCidr:
    """A network (`|cidr`)."""

    network: str  # normalised (ipaddress) notation


@dataclass(frozen=True, slots=True)
class SCompare:
    """A numeric comparison (`|gt`, `|gte`, `|lt`, `|lte`)."""

    op: str  # gt, gte, lt, lte
    value: int | float


@dataclass(frozen=True, slots=True)
class SExists:
    """Whether the field exists (`|exists`)."""

    value: bool


SValue = Union[SString, SRegex, SNumber, SBool, SNull, SCidr, SCompare, SExists]

KNOWN_MODIFIERS = frozenset({
    "all", "neq", "base64", "base64offset", "cased", "cidr", "contains", "endswith", "startswith",
    "exists", "expand", "fieldref", "gt", "gte", "lt", "lte", "i", "ignorecase", "m", "multiline",
    "s", "dotall", "re", "utf16", "utf16le", "utf16be", "wide", "windash",
    "day", "hour", "minute", "month", "week", "year",
})
LIST_MODIFIERS = frozenset({"all", "neq"})
_TIME_PARTS = frozenset({"day", "hour", "minute", "month", "week", "year"})
_WINDASH = re.compile(r"\B[-/]\b")
_WINDASH_CHARS = ("-", "/", "\u2013", "\u2014", "\u2015")
_B64_START = (0, 2, 3)
_B64_END = (None, -3, -2)


# ------------------------------------------------------------------ plain strings


_SPECIAL = re.compile(r"[\\*?]")


def parse_plain(text: str) -> tuple[Part, ...]:
    """A Sigma plain string as literal text and wildcards (pySigma's escaping rules)."""
    if _SPECIAL.search(text) is None:  # the common case: nothing special
        return (text,) if text else ()
    parts: list[Part] = []
    acc: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            if ch not in _ESCAPABLE:
                acc.append("\\")
            acc.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*" or ch == "?":
            if acc:
                parts.append("".join(acc))
                acc = []
            parts.append(MULTI if ch == "*" else SINGLE)
        else:
            acc.append(ch)
    if escaped:
        acc.append("\\")
    if acc:
        parts.append("".join(acc))
    return tuple(parts)


def literal(parts: tuple[Part, ...]) -> str | None:
    """The text of a string without wildcards, else None."""
    for p in parts:  # (a loop: a generator is a call per value)
        if isinstance(p, Wild):
            return None
    return "".join(parts)  # type: ignore[arg-type]


def normalise(parts: tuple[Part, ...]) -> tuple[Part, ...]:
    """Adjacent literals joined and runs of `*` collapsed (the same pattern)."""
    if len(parts) <= 1 and (not parts or parts[0] != ""):
        return parts
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + p
                continue
        elif p == MULTI and out and out[-1] == MULTI:
            continue
        out.append(p)
    return tuple(out)


def _text_of(value: SValue, modifier: str) -> SString:
    if isinstance(value, SString):
        return value
    if isinstance(value, SNumber):
        return SString((_number_text(value.value),))
    if isinstance(value, SBool):
        return SString(("true" if value.value else "false",))
    raise SigmaValueProblem(f"modifier {modifier} needs a string value")


def _number_text(n: int | float) -> str:
    return str(n)


# ------------------------------------------------------------------ modifiers


def initial(raw: object) -> SValue:
    """A YAML scalar as a Sigma value before any modifier."""
    if raw is None:
        return SNull()
    if isinstance(raw, bool):
        return SBool(raw)
    if isinstance(raw, (int, float)):
        return SNumber(raw)
    return SString(parse_plain(str(raw)))


def apply_modifiers(raw: object, modifiers: list[str]) -> list[SValue]:
    """The value(s) a raw YAML scalar stands for after the modifiers (list modifiers `all`
    and `neq` are the caller's); several values mean any of them."""
    values: list[SValue] = [initial(raw)]
    applied: list[str] = []
    for modifier in modifiers:
        if modifier in LIST_MODIFIERS:
            continue
        out: list[SValue] = []
        for value in values:
            out.extend(_apply(modifier, value, raw, applied))
        values = out
        applied.append(modifier)
    return values


def modified(raw: object, modifiers: tuple[str, ...]) -> tuple[SValue, ...]:
    """`apply_modifiers`, remembered per raw value (and its type: `1`, `1.0` and `True` are
    equal keys) and modifiers: it depends on nothing else, its values are frozen, and the
    SigmaHQ rules write the same value under the same modifiers (a windash flag, a base64
    keyword) again and again.  A value that cannot be read raises each time (not remembered)."""
    key = (raw.__class__, raw, modifiers)
    values = _MODIFIED.get(key)
    if values is None:
        values = tuple(apply_modifiers(raw, list(modifiers)))
        if len(_MODIFIED) > 4096:
            _MODIFIED.clear()
        _MODIFIED[key] = values
    return values


_MODIFIED: dict[tuple, tuple[SValue, ...]] = {}


def _apply(modifier: str, value: SValue, raw: object, applied: list[str]) -> list[SValue]:
    if modifier in ("contains", "startswith", "endswith"):
        if isinstance(value, SRegex):
            return [value]  # a regex is searched anywhere already
        s = _text_of(value, modifier)
        parts = s.parts
        if modifier in ("contains", "endswith") and not (parts and parts[0] == MULTI):
            parts = (MULTI, *parts)
        if modifier in ("contains", "startswith") and not (parts and parts[-1] == MULTI):
            parts = (*parts, MULTI)
        return [SString(parts, s.cased)]
    if modifier == "cased":
        return [replace(_text_of(value, modifier), cased=True)]
    if modifier == "re":
        if applied:
            raise SigmaValueProblem("modifier re applies only to an unmodified value")
        if not isinstance(raw, str):
            raise SigmaValueProblem("modifier re needs a string value")
        try:
            re.compile(raw)
        except re.error as exc:
            raise SigmaValueProblem(f"invalid regular expression: {exc}") from None
        return [SRegex(raw)]
    if modifier in ("i", "ignorecase", "m", "multiline", "s", "dotall"):
        if not isinstance(value, SRegex):
            raise SigmaValueProblem(f"modifier {modifier} applies only after re")
        flag = {"ignorecase": "i", "multiline": "m", "dotall": "s"}.get(modifier, modifier)
        return [replace(value, flags=value.flags | {flag})]
    if modifier == "windash":
        s = _text_of(value, modifier)
        return [replace(s, parts=p) for p in _windash(s.parts)]
    if modifier == "base64":
        return [SString((base64.b64encode(_bytes(value, modifier)).decode(),))]
    if modifier == "base64offset":
        data = _bytes(value, modifier)
        size = _sigma_len(value)
        return [SString((base64.b64encode(b" " * i + data)[_B64_START[i]:_B64_END[(size + i) % 3]].decode(),))
                for i in range(3)]
    if modifier in ("wide", "utf16le", "utf16be", "utf16"):
        s = _text_of(value, modifier)
        codec = "utf-16be" if modifier == "utf16be" else "utf-16le"
        parts: list[Part] = ["\ufeff"] if modifier == "utf16" else []
        for p in s.parts:
            if isinstance(p, str):
                try:
                    parts.append(p.encode(codec).decode("utf-8"))
                except UnicodeDecodeError:
                    raise SigmaValueProblem(f"modifier {modifier} is only defined for ASCII text "
                                            "(as pySigma implements it)") from None
            else:
                parts.append(p)
        return [replace(s, parts=tuple(parts))]
    if modifier == "cidr":
        if applied or not isinstance(raw, str):
            raise SigmaValueProblem("modifier cidr applies only to an unmodified string value")
        try:
            import ipaddress  # (only for a |cidr value: a cold start does without it)

            return [SCidr(str(ipaddress.ip_network(raw)))]
        except ValueError as exc:
            raise SigmaValueProblem(f"invalid CIDR network: {exc}") from None
    if modifier in ("gt", "gte", "lt", "lte"):
        if isinstance(value, SNumber):
            return [SCompare(modifier, value.value)]
        raise SigmaValueProblem(f"modifier {modifier} needs a number")
    if modifier == "exists":
        if isinstance(value, SBool):
            return [SExists(value.value)]
        raise SigmaValueProblem("modifier exists needs true or false")
    if modifier == "fieldref":
        raise Unsupported("modifier fieldref (comparing two fields of one event) has no form in "
                          "rmmc's detection model")
    if modifier == "expand":
        raise Unsupported("modifier expand needs the placeholder values a processing pipeline "
                          "supplies; rmmc has none")
    if modifier in _TIME_PARTS:
        raise Unsupported(f"modifier {modifier} (a part of a timestamp) has no form in rmmc's "
                          "detection model")
    raise SigmaValueProblem(f"unknown modifier {modifier!r}")


def _bytes(value: SValue, modifier: str) -> bytes:
    s = _text_of(value, modifier)
    text = literal(s.parts)
    if text is None:
        raise SigmaValueProblem(f"modifier {modifier}: a value with wildcards cannot be encoded")
    return text.encode()


def _sigma_len(value: SValue) -> int:
    s = _text_of(value, "base64offset")
    return sum(len(p) if isinstance(p, str) else 1 for p in s.parts)


def _windash(parts: tuple[Part, ...]) -> list[tuple[Part, ...]]:
    """Every combination of dash characters at each word-starting `-` or `/`."""
    pieces: list[list[Part]] = []  # each slot: the alternatives for that piece
    for p in parts:
        if not isinstance(p, str):
            pieces.append([p])
            continue
        last = 0
        for m in _WINDASH.finditer(p):
            if m.start() > last:
                pieces.append([p[last:m.start()]])
            pieces.append(list(_WINDASH_CHARS))
            last = m.end()
        if last < len(p):
            pieces.append([p[last:]])
    return [normalise(tuple(combo)) for combo in itertools.product(*pieces)]


# The term regex rmmc's Sigma backend writes for a KQL term test (`rmmc.backends.sigma.values`
# documents the form), which the reader recognises and lifts back: defined here, below both.
TERM_BOUNDARY_LEFT = "(^|[^0-9A-Za-z])"
TERM_BOUNDARY_RIGHT = "($|[^0-9A-Za-z])"
_REGEX_META = frozenset("\\.^$|?*+()[]{}")


def escape_regex(value: str) -> str:
    """A literal string as a regex that PCRE, RE2, Python and Lucene read the same way."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)
