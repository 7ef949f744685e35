"""What every backend shares: its options, its result, and how it reports what it cannot say.

A backend turns an IR `Rule` into target text.  Where the target cannot express a node
exactly it says so with a diagnostic, never silently:

* `lossy` (warning): translated with a flagged approximation (the message says exactly
  what changes: which events would now match or no longer match);
* `unsupported` (error): not translated; the rule's output is refused or incomplete.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Callable

from rmmc.compiler.diagnostics import Diagnostic, Severity, Span
from rmmc.compiler.ir import Condition, Not, Predicate, Rule


@dataclass(frozen=True)
class EmitOptions:
    loose: bool = False             # Sigma: `has` as |contains (a reported widening) instead of |re
    apply_exclusions: bool = False  # AND the understood exclusions into the detection


@dataclass(frozen=True)
class Translation:
    """A backend's answer: the text (empty when it could not translate) and its diagnostics."""

    target: str
    text: str
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.text) and not any(d.is_error for d in self.diagnostics)


def lossy(target: str, message: str, span: Span | None = None, subject: object = None) -> Diagnostic:
    """`subject`: what changed (see `Diagnostic.subject`): the predicate or node, a `Field`,
    or a stage name ("output", "lookback", "exclusions")."""
    return Diagnostic(Severity.WARNING, f"{target}: {message}", span, "lossy", subject=subject)


def unsupported(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, f"{target}: {message}", span, "unsupported")


def note(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.NOTE, f"{target}: {message}", span, "note")


def cidr_networks(p: Predicate, refusal: Callable[..., Exception] = ValueError) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of an `Op.CIDR` predicate as the evaluator reads them (`ip_network(text,
    strict=False)`: host bits are dropped); a value that is no network raises `refusal(message,
    span)`.  `str()` of each is the strict notation every target accepts."""
    networks = []
    for value in p.values:
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError as exc:
            raise refusal(f"{value!r} is not an IP network (cidr on {p.field.name}): {exc}", p.span) from None
    return networks


IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def reads_ipv4(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether an IPv6 network overlaps the IPv4-mapped block ::ffff:0:0/96, where engines that
    store an IPv4 address as its mapped IPv6 form (or read it so) put IPv4 values, which the
    IR never does."""
    return network.version == 6 and network.overlaps(IPV4_MAPPED)


def exclusion_conditions(rule: Rule, options: EmitOptions, target: str, found: list[Diagnostic],
                         render: Callable[[Condition], str] | None = None, form: str = "",
                         refusal: type[Exception] = Exception) -> list[Condition]:
    """The rule's exclusions as conditions to AND in (each `Not(...)`) when they are applied.
    Otherwise one note per exclusion, saying how it reads in the target when `render` can
    write it (`render` gets the exclusion's condition; `refusal` is what it raises when it
    cannot, and `form` names the target's language in that message).  An exclusion rmmc did
    not understand, when asked to apply it, is lossy: the events it excludes still match."""
    applied: list[Condition] = []
    for exclusion in rule.exclusions:
        label = exclusion.name or "(unnamed)"
        if exclusion.condition is None:
            if options.apply_exclusions:
                found.append(lossy(target, f"exclusion {label!r} was not understood and is not "
                                           "applied: the events it excludes still match", exclusion.span,
                                   subject="exclusions"))
            continue
        if options.apply_exclusions:
            applied.append(Not(exclusion.condition))
            continue
        message = f"exclusion {label!r} not applied (apply_exclusions is off)"
        if render is not None:
            try:
                message += "; " + render(exclusion.condition)
            except refusal as exc:
                message += f"; it has no {form} form ({exc})"
        found.append(note(target, message, exclusion.span))
    return applied


# ------------------------------------------------------------------ wildcard regexes


class Wildcard(enum.Enum):
    """A wildcard of a `wildcard_pattern`: `ANY` any run of characters (Sigma/EQL/ES|QL `*`),
    `ONE` exactly one character (`?`).  Never equal to a literal string."""

    ANY = "*"
    ONE = "?"


_WILDCARD_PREFIX = "(?s)^"
_WILDCARD_META = frozenset("\\.^$|?*+()[]{}")


def wildcard_pattern(regex: str) -> tuple[str | Wildcard, ...] | None:
    """The wildcard pattern a regex of exactly the form rmmc's Sigma reader writes for a value
    with a wildcard inside (`wildcard_regex`) stands for, or None for any other regex.

    The form: `(?s)^` + body + `$`, the body a sequence of `.*` (`Wildcard.ANY`), `.`
    (`Wildcard.ONE`), a character that is no regex metacharacter (`\\.^$|?*+()[]{}`), or one
    of those metacharacters escaped with one backslash (a literal).  Adjacent literals are
    joined into one string; the result alternates literals and wildcards in order (`(?s)^$`
    gives `()`: only the empty value).  With `(?s)`, `.` matches any character, a line break
    too, as a wildcard does in Sigma, EQL `like` and ES|QL `LIKE` (Lucene automata).  `$` is the very
    end of the value (RE2's reading, which the evaluator follows), as for a wildcard."""
    if not regex.startswith(_WILDCARD_PREFIX) or not regex.endswith("$"):
        return None
    body, i = regex[len(_WILDCARD_PREFIX):], 0
    parts: list[str | Wildcard] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    end = len(body) - 1  # the closing `$`
    while i < end:
        ch = body[i]
        if ch == ".":
            flush()
            if body.startswith(".*", i):
                parts.append(Wildcard.ANY)
                i += 2
            else:
                parts.append(Wildcard.ONE)
                i += 1
        elif ch == "\\":
            if i + 1 >= end or body[i + 1] not in _WILDCARD_META:
                return None  # `\\d`, `\\-`, ... or the `$` escaped: not the form
            literal.append(body[i + 1])
            i += 2
        elif ch in _WILDCARD_META:
            return None  # an operator the form never holds (`+`, `|`, a group, an anchor ...)
        else:
            literal.append(ch)
            i += 1
    if i != end:
        return None  # the last `$` was consumed as an escaped literal
    flush()
    return tuple(parts)
