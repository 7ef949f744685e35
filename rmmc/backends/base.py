"""What every backend shares: its options, its result, and how it reports what it cannot say.

A backend turns an IR `Rule` into target text.  Where the target cannot express a node
exactly it says so with a diagnostic, never silently:

* `lossy`: translated with a flagged approximation that changes which alerts fire (the
  message says exactly what changes: which events would now match or no longer match).
  Backends report it as a warning; `rmmc.translation` makes it an error (nothing written)
  unless the user allows lossy translations (`--allow-lossy`);
* `shape` (warning): only what an alert shows changes (a dropped column, an order);
* `unsupported` (error): not translated; the rule's output is refused or incomplete.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from rmmc.compiler.diagnostics import LOSSY_CODES, LOSSY_HINT, Diagnostic, Severity, Span, has_error, refuse_lossy  # noqa: F401 (the policy, said with the diagnostics)
from rmmc.compiler.ir import Condition, Field, Not, Predicate, Rule
from rmmc.compiler.slots_init import fast_init

if TYPE_CHECKING:  # `ipaddress` is imported when a rule tests a network (a cold start does without it)
    import ipaddress


@dataclass(frozen=True, slots=True)
class EmitOptions:
    """How a backend writes a rule: the choices of the command line and the environment."""

    loose: bool = False             # Sigma: `has` as |contains (a reported widening) instead of |re
    apply_exclusions: bool = False  # AND the understood exclusions into the detection
    allow_lossy: bool = False       # write a translation whose alerts differ (flagged), not refuse it
    # Where the events are, from the environment (`rmmc.environments.adapt.Target`: search,
    # datamodel, index, table, time_field); None: each backend's own default.
    placement: Any = None
    splunk_form: str = "search"     # SPL: "search" (raw events) or "tstats" (CIM data model summaries)
    # How external tables (KQL externaldata) reach the platform, from the environment
    # (`Environment.external`: "lookup" for Splunk CSV lookups); None: not declared.
    external: str | None = None


def placed_options(options: EmitOptions, placement: Any, external: str | None) -> EmitOptions:
    """`replace(options, placement=placement, external=external)`, remembered for the objects
    last asked: a batch asks once per rule with one options object, one environment and a
    placement per table.  Exact: the options are frozen, and the copy holds the very objects
    asked with (kept in the entry, so their ids stay theirs)."""
    key = (id(options), id(placement), external)
    entry = _PLACED.get(key)
    if entry is not None and entry[0] is options and entry[1] is placement:
        return entry[2]
    from rmmc.compiler.fast_replace import replace

    placed = replace(options, placement=placement, external=external)
    if len(_PLACED) >= 64:  # (a long-lived process asks with ever new options: bounded)
        _PLACED.clear()
    _PLACED[key] = (options, placement, placed)
    return placed


_PLACED: dict[tuple, tuple] = {}


@dataclass(frozen=True, slots=True)
class Translation:
    """A backend's answer: the text (empty when it could not translate) and its diagnostics."""

    target: str
    text: str
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.text) and not has_error(self.diagnostics)


def lossy(target: str, message: str, span: Span | None = None, subject: object = None) -> Diagnostic:
    """`subject`: what changed (see `Diagnostic.subject`): the predicate or node, a `Field`,
    or a stage name ("output", "lookback", "exclusions")."""
    return Diagnostic(Severity.WARNING, f"{target}: {message}", span, "lossy", subject=subject)


def asked_lossy(target: str, message: str, span: Span | None = None, subject: object = None) -> Diagnostic:
    """A change in what fires that the user asked for by an option (`--loose`): written, and
    counted as lossy, without --allow-lossy."""
    return Diagnostic(Severity.WARNING, f"{target}: {message}", span, "loose", subject=subject)


def unsupported(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, f"{target}: {message}", span, "unsupported")


def note(target: str, message: str, span: Span | None = None) -> Diagnostic:
    return Diagnostic(Severity.NOTE, f"{target}: {message}", span, "note")


def shape(target: str, message: str, span: Span | None = None) -> Diagnostic:
    """Only the output's shape changes (a dropped column, an order): the same alerts fire."""
    return Diagnostic(Severity.WARNING, f"{target}: {message}", span, "shape")


def stage_text(stage) -> str:
    """A stage as the KQL operator that says it, for messages."""
    from rmmc.backends.kql import ConditionEmitter, stage_operators
    from rmmc.compiler.kql.printer import to_kql

    try:
        return " | ".join(to_kql(op) for op in stage_operators(stage, ConditionEmitter()))
    except Exception:  # noqa: BLE001 - a text for a message only
        return type(stage).__name__


def dropped_stages(stages, target: str, language: str) -> list[Diagnostic]:
    """What dropping each stage does, for a target that returns matching events only: a
    filter or a limit changes which alerts fire (`lossy`); an aggregation that no later filter
    or limit reads, a computed column, a projection, a rename or an order changes only what
    each alert shows (`shape`)."""
    from rmmc.compiler import ir

    out = []
    for stage in stages:
        text = stage_text(stage)
        span = getattr(stage, "span", None)
        if isinstance(stage, ir.Filter):
            out.append(lossy(target, f"'| {text}' is dropped: {language} cannot filter on what an "
                                     "earlier stage computed, so rows it removes now alert", span,
                             subject=stage))
        elif isinstance(stage, ir.Limit):
            out.append(lossy(target, f"'| {text}' is dropped: {language} returns every match, so "
                                     "more alerts fire", span, subject=stage))
        elif isinstance(stage, ir.Summarize):
            out.append(shape(target, f"'| {text}' is dropped: {language} returns each matching event, "
                                     "not one row per group", span))
        else:
            out.append(shape(target, f"'| {text}' is dropped: {language} returns whole events", span))
    return out


def expression_tests(condition: Condition) -> list[Condition]:
    """The tests of a condition that are not on a plain field: predicates on an expression
    (`strlen(x) > 5`) and comparisons between two expressions."""
    from rmmc.compiler.ir import Compare, walk

    return [node for node in walk(condition)
            if isinstance(node, Compare) or (isinstance(node, Predicate) and not isinstance(node.field, Field))]


def refuse_expression_tests(condition: Condition, target: str, language: str) -> list[Diagnostic]:
    """One `unsupported` diagnostic per test `language` cannot say because it tests an
    expression rather than a field."""
    from rmmc.compiler.functions import describe
    from rmmc.compiler.ir import Compare

    out = []
    for node in expression_tests(condition):
        if isinstance(node, Compare):
            what = f"{describe(node.left)} {node.op} {describe(node.right)}"
        else:
            what = f"a test on {describe(node.field)}"
        out.append(unsupported(target, f"{what}: {language} cannot test a computed value, and no "
                                       "test on the raw field means the same", node.span))
    return out


def cidr_networks(p: Predicate, refusal: Callable[..., Exception] = ValueError) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of an `Op.CIDR` predicate as the evaluator reads them (`ip_network(text,
    strict=False)`: host bits are dropped); a value that is no network raises `refusal(message,
    span)`.  `str()` of each is the strict notation every target accepts."""
    networks = []
    for value in p.values:
        try:
            networks.append(_network(str(value)))
        except ValueError as exc:
            raise refusal(f"{value!r} is not an IP network (cidr on {p.field.name}): {exc}", p.span) from None
    return networks


@functools.lru_cache(maxsize=1024)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`ip_network(text, strict=False)`, remembered (a network is an immutable value; the same
    private ranges come back in rule after rule); a text that is no network raises each time."""
    import ipaddress

    return ipaddress.ip_network(text, strict=False)


IPV4_MAPPED = "::ffff:0:0/96"
"""The block where engines that store an IPv4 address as its mapped IPv6 form put it."""


def reads_ipv4(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether an IPv6 network overlaps the IPv4-mapped block ::ffff:0:0/96, where engines that
    store an IPv4 address as its mapped IPv6 form (or read it so) put IPv4 values, which the
    IR never does."""
    return network.version == 6 and network.overlaps(_network(IPV4_MAPPED))


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


fast_init(EmitOptions, Translation)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
