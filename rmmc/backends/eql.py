"""IR -> EQL (Elastic Event Query Language, Elasticsearch syntax).

    <category> where <condition>

The category follows the rule's kind of event (`process`, `network`, `file`, `registry`,
`library`, `authentication`; `any` otherwise).  Field names come from a field profile
(`rmmc.compiler.schema.profiles`, ECS by default); a column the profile does not map keeps
its own name, with a warning naming it.

Each predicate becomes the EQL test the reference evaluator (`rmmc.compiler.evaluator`)
gives it:

* case-insensitive equality `f : "v"` / `f in~ (...)`, cased `f == "v"` / `f in (...)`;
* contains / startswith / endswith `f like~ "*v*"` / `"v*"` / `"*v"` (cased: `like`).
  Elastic EQL has no escape for a literal `*` or `?` in a wildcard pattern, so a value
  holding one is matched with a regex instead (`regex~ ".*a\\*b.*"`), never a pattern;
* `has` (a whole term) as a Lucene regex.  Lucene regexes match the whole value (they are
  anchored) and have no `^`, `$` or `\\b`, so "the value starts here or a non-alphanumeric
  precedes" is an alternation: `(v|.*[^0-9A-Za-z]v)([^0-9A-Za-z].*)?` for an alphanumeric
  value at both ends; a side whose end of the value is not a letter or digit needs no
  boundary and becomes `.*`;
* `matches regex` (an unanchored RE2 search) as `.*(<pattern>).*` in Lucene syntax, after
  translating what has an exact Lucene form (`\\d` -> `[0-9]`, `.` -> `[^\\n]`, ...) and
  refusing what has none (anchors, `\\b`, lookaround, lazy repeats, inline flags, ...).
* a Sigma wildcard value (the regex `(?s)^...$` the Sigma reader writes for `a*b?c`, read
  back by `base.wildcard_pattern`) as `f like~ "a*b?c"` (cased: `like`; several values:
  `like~ ("a*b", "c?d")`).  Elasticsearch turns an EQL wildcard string into a LIKE pattern
  where every `*` and `?` is a wildcard and nothing escapes them (its escape character is
  U+0001, `%` and `_` are escaped with it), and a backslash is an ordinary character; its
  wildcards match any character, a line break too, as `(?s)` does.  A pattern whose literal
  text holds `*`, `?` or U+0001 is written as the equivalent whole-value Lucene regex
  instead (`regex~ "a\\*b.*"`, `.` matching any character in Lucene).

Strings: KQL reads a missing string as '', EQL as null, and a test on null is not true in
EQL (`not f : "x"` does not match an event without `f`).  Negations are pushed down to the
predicates, and a predicate the empty string passes is written `(f == null or <test>)`, so
an event without the field matches exactly when KQL's '' would.  A negated comparison is
written with the complementary operator (`not f < 5` -> `f >= 5`): both are unknown on null.

EQL has no aggregation, projection or time filter: the summarize and the rest of the output
are dropped with a `lossy` diagnostic (ES|QL can carry them: `--to esql`), and the lookback
is a `note` (it belongs to the rule's schedule, e.g. `from: now-5d`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import re
from typing import Any

from rmmc.backends.base import (cidr_networks, dropped_stages, reads_ipv4, refuse_expression_tests, EmitOptions,
                                exclusion_conditions, Translation, lossy, note, unsupported, Wildcard,
                                wildcard_pattern)
from rmmc.compiler.prefilter import is_own_superset, superset
from rmmc.compiler.pushdown import push_filters
from rmmc.backends.widen import widen
from rmmc.compiler.diagnostics import Diagnostic, Span
from rmmc.compiler.evaluator import evaluate_predicate, fold_to_ascii
from datetime import timedelta

from rmmc.compiler.diagnostics import Severity
from rmmc.compiler.ir import (And, Condition, Const, EventKind, Field, InSubquery, Join, Not, Op, Or,
                              Predicate, Rule, all_of, any_of, walk_predicates)
from rmmc.compiler.paths import path_name, path_warning_text, with_paths

TARGET = "eql"
HANDLES = frozenset({"union", "join"})
"""The constructs over several sources this backend writes (see `rmmc.backends.emit`)."""

CATEGORIES = {
    EventKind.PROCESS: "process",
    EventKind.NETWORK: "network",
    EventKind.FILE: "file",
    EventKind.REGISTRY: "registry",
    EventKind.IMAGE_LOAD: "library",
    EventKind.LOGON: "authentication",
}
"""The ECS `event.category` of each kind of event; every other kind reads `any`."""


class Refusal(Exception):
    """A node EQL cannot express: becomes an `unsupported` diagnostic."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


# ------------------------------------------------------------------ literals and names


_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def string_literal(value: str) -> str:
    """`"..."` with `"` and `\\` escaped, and every control or non-printable character as
    `\\u{XX}` (or `\\n` `\\r` `\\t`): no value can end the literal or the line."""
    out = []
    for ch in value:
        if ch in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[ch])
        elif not ch.isprintable() or ch in "\u2028\u2029":
            out.append(f"\\u{{{ord(ch):02X}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_SEGMENT = re.compile(r"[A-Za-z_@][A-Za-z0-9_@]*")
_KEYWORDS = frozenset("""and any by false in join length like maxspan not null of or regex
    sample sequence true until where with runs""".split())


def field_name(name: str) -> str:
    """A field reference: dotted plain segments as they are, anything else in backticks."""
    segments = name.split(".")
    if all(_SEGMENT.fullmatch(s) and s.lower() not in _KEYWORDS for s in segments):
        return name
    if "`" in name or any(not ch.isprintable() for ch in name):
        raise Refusal(f"field name {name!r} cannot be written in EQL")
    return f"`{name}`"


def number_literal(value: Any, field_name_: str) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise Refusal(f"{value!r} is not a number (field {field_name_})") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise Refusal(f"{value!r} has no EQL literal (field {field_name_})")
    if not isinstance(value, (int, float)):
        raise Refusal(f"{value!r} is not a number (field {field_name_})")
    return repr(value)


# ------------------------------------------------------------------ Lucene regexes


_LUCENE_RESERVED = set('.?+*|{}[]()"\\#@&<>~')


def lucene_escape(text: str) -> str:
    """A literal string as a Lucene regex (every operator character escaped)."""
    return "".join("\\" + ch if ch in _LUCENE_RESERVED else ch for ch in text)


_NOT_TERM = "[^0-9A-Za-z]"


def _is_term_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def term_regex(value: str, check_start: bool = True, check_end: bool = True) -> str:
    """The whole-value Lucene regex of KQL `has` (or `hasprefix` / `hassuffix` with one
    side unchecked): `value` occurs where, at a side whose end of the value is an ASCII
    letter or digit, the value starts/ends there or a non-alphanumeric character is next."""
    body = lucene_escape(value)
    if check_start and value and _is_term_char(value[0]):
        head = f"({body}|.*{_NOT_TERM}{body})"
    else:
        head = f".*{body}"
    if check_end and value and _is_term_char(value[-1]):
        return f"{head}({_NOT_TERM}.*)?"
    return f"{head}.*"


_CLASS_ESCAPES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\t\n\f\r "}
_LITERAL_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}


def _class_char(ch: str) -> str:
    return "\\" + ch if ch in _LUCENE_RESERVED or ch in "^-[]" else ch


def re2_to_lucene(pattern: str) -> str:
    """An RE2 pattern (unanchored search) as a whole-value Lucene regex: `.*(...).*`.
    Raises Refusal for what Lucene cannot say exactly."""
    out: list[str] = []
    i, n = 0, len(pattern)
    depth = 0

    def refuse(what: str):
        raise Refusal(f"regex {pattern!r} uses {what}, which Elastic's (Lucene) regex has no exact form for")

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                refuse("a trailing backslash")
            nxt = pattern[i + 1]
            i += 2
            if nxt in _CLASS_ESCAPES:
                out.append(f"[{_CLASS_ESCAPES[nxt]}]")
            elif nxt.lower() in _CLASS_ESCAPES:
                out.append(f"[^{_CLASS_ESCAPES[nxt.lower()]}]")
            elif nxt in _LITERAL_ESCAPES:
                out.append(_LITERAL_ESCAPES[nxt])
            elif not nxt.isalnum() and nxt.isascii():
                out.append(lucene_escape(nxt) if nxt in _LUCENE_RESERVED else nxt)
            else:
                refuse(f"\\{nxt}")
        elif ch == "[":
            j = i + 1
            parts = ["["]
            if j < n and pattern[j] == "^":
                parts.append("^")
                j += 1
            first = True
            while j < n and (pattern[j] != "]" or first):
                c = pattern[j]
                first = False
                if c == "[":
                    refuse("a nested or POSIX character class")
                if c == "\\":
                    if j + 1 >= n:
                        refuse("a trailing backslash")
                    e = pattern[j + 1]
                    j += 2
                    if e in _LITERAL_ESCAPES:
                        parts.append(_LITERAL_ESCAPES[e])
                    elif e in _CLASS_ESCAPES:
                        parts.append(_CLASS_ESCAPES[e])
                    elif not e.isalnum() and e.isascii():
                        parts.append(_class_char(e))
                    else:
                        refuse(f"\\{e} in a character class")
                    continue
                if c == "-" and len(parts) > 1 and j + 1 < n and pattern[j + 1] != "]" and parts[-1] not in ("[", "^"):
                    parts.append("-")
                else:
                    parts.append(_class_char(c))
                j += 1
            if j >= n:
                refuse("an unclosed character class")
            parts.append("]")
            out.append("".join(parts))
            i = j + 1
        elif ch == "(":
            if pattern.startswith("(?:", i):
                i += 3
            elif pattern.startswith("(?", i):
                refuse("a group or flag of the form (?...)")
            else:
                i += 1
            depth += 1
            out.append("(")
        elif ch == ")":
            depth -= 1
            if depth < 0:
                refuse("an unbalanced parenthesis")
            out.append(")")
            i += 1
        elif ch in "*+?":
            if not out or out[-1] in ("(", "|"):
                refuse("a repeat of nothing")
            if i + 1 < n and pattern[i + 1] in "?+":
                refuse("a lazy or possessive repeat")
            out.append(ch)
            i += 1
        elif ch == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", pattern[i:])
            if not m:
                out.append("\\{")  # RE2 reads a brace that starts no repeat literally
                i += 1
                continue
            if not out or out[-1] in ("(", "|"):
                refuse("a repeat of nothing")
            end = i + m.end()
            if end < n and pattern[end] in "?+":
                refuse("a lazy or possessive repeat")
            out.append(m.group(0))
            i = end
        elif ch in "^$":
            refuse(f"the anchor {ch}")
        elif ch == ".":
            out.append("[^\n]")  # RE2's . stops at a newline, Lucene's does not
            i += 1
        elif ch == "|":
            out.append("|")
            i += 1
        else:
            out.append(lucene_escape(ch))
            i += 1
    if depth != 0:
        refuse("an unbalanced parenthesis")
    return ".*(" + "".join(out) + ").*"


_LIKE_UNSAYABLE = frozenset("*?\x01")  # always wildcards / Elasticsearch's LIKE escape character


def like_pattern(pattern: tuple[str | Wildcard, ...]) -> str | None:
    """A `wildcard_pattern` as the text of an EQL `like` pattern, or None when a literal part
    holds `*`, `?` (EQL has no escape for them) or U+0001 (the escape character Elasticsearch
    gives the LIKE pattern it makes of it)."""
    if any(isinstance(part, str) and _LIKE_UNSAYABLE & set(part) for part in pattern):
        return None
    return "".join(part if isinstance(part, str) else part.value for part in pattern)


def wildcard_lucene(pattern: tuple[str | Wildcard, ...]) -> str:
    """A `wildcard_pattern` as the whole-value Lucene regex that matches the same values
    (Lucene's `.` matches any character, a line break too)."""
    return "".join(lucene_escape(part) if isinstance(part, str) else
                   (".*" if part is Wildcard.ANY else ".") for part in pattern)


# ------------------------------------------------------------------ conditions


def push_not(condition: Condition, negate: bool = False) -> Condition:
    """The condition with every `Not` moved onto the predicates (De Morgan)."""
    if isinstance(condition, Not):
        return push_not(condition.operand, not negate)
    if isinstance(condition, And):
        parts = [push_not(o, negate) for o in condition.operands]
        return any_of(parts) if negate else all_of(parts)
    if isinstance(condition, Or):
        parts = [push_not(o, negate) for o in condition.operands]
        return all_of(parts) if negate else any_of(parts)
    if isinstance(condition, Const):
        return Const(condition.value != negate)
    if isinstance(condition, (Predicate, InSubquery)):
        if not negate:
            return condition
        if isinstance(condition, Predicate):
            return condition.negate()
        from dataclasses import replace
        return replace(condition, negated=not condition.negated)
    raise Refusal(f"not a condition: {condition!r}")


_COMPLEMENT = {Op.LT: ">=", Op.LE: ">", Op.GT: "<=", Op.GE: "<"}
_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})
_WILDCARDS = frozenset("*?")
_LIKE_SHAPES = {Op.CONTAINS: "*{}*", Op.STARTSWITH: "{}*", Op.ENDSWITH: "*{}"}
_REGEX_SHAPES = {Op.CONTAINS: ".*{}.*", Op.STARTSWITH: "{}.*", Op.ENDSWITH: ".*{}", Op.EQUALS: "{}"}


def _join(op: str, parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return "(" + f" {op} ".join(parts) + ")"


_DYNAMIC_COLUMNS = frozenset({"AdditionalFields", "LoggedOnUsers", "ConnectedNetworks", "DnsAddresses",
                              "DefaultGateways", "IPAddresses"})


@dataclass
class Profile:
    """The field names to write: a profile of `rmmc.compiler.schema.profiles`, or names
    kept as they are (with a warning for each) when there is none."""

    table: str | None
    profile: Any
    taxonomy: str | None = None  # "sigma": the rule's fields are Sigma names already
    warnings: list[Diagnostic] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def name(self, column: str) -> str:
        mapped = None
        if "." in column and column.split(".", 1)[0] in _DYNAMIC_COLUMNS:
            return field_name(column)  # a path into a dynamic column (warned where it was read)
        if self.profile is not None:
            from rmmc.compiler.schema.profiles import rule_field  # another module's API

            mapped = rule_field(self.profile, self.table, column, self.taxonomy)
        if mapped is None:
            if column not in self.seen:
                self.seen.add(column)
                self.warnings.append(lossy(TARGET, f"column {column} has no field in the profile: "
                                                   f"kept as {column}, which the index may not hold",
                                           subject=Field(column)))
            mapped = column
        return field_name(mapped)


@dataclass
class ConditionEmitter:
    names: Profile
    diagnostics: list[Diagnostic] = field(default_factory=list)
    ip_fields: frozenset[str] = frozenset()  # columns the rule tests with cidr: `ip` fields in Elasticsearch

    def emit(self, condition: Condition) -> str:
        return self.node(push_not(condition))

    def node(self, c: Condition) -> str:
        if isinstance(c, Predicate):
            return self.predicate(c)
        if isinstance(c, Const):
            return "true" if c.value else "false"
        if isinstance(c, And):
            return _join("and", [self.node(o) for o in c.operands])
        if isinstance(c, Or):
            return _join("or", [self.node(o) for o in c.operands])
        raise Refusal(f"no EQL form for {type(c).__name__}", getattr(c, "span", None))

    def predicate(self, p: Predicate) -> str:
        f = self.names.name(p.field.name)
        kind = p.field.type.lower()
        if p.op in (Op.EXISTS, Op.EMPTY) and p.field.name in self.ip_fields:
            self.diagnostics.append(lossy(
                TARGET, f"{p.field.name} is an `ip` field in Elasticsearch (the rule tests it with "
                        "cidr), which holds no value for a text that is no address ('' included): "
                        f"an {p.op.value} test on it differs for such events", p.span, p))
        if p.op is Op.EXISTS:
            return f"{f} == null" if p.negated else f"{f} != null"
        if p.op is Op.EMPTY:
            if kind == "string":
                return f'({f} != null and {f} != "")' if p.negated else f'({f} == null or {f} == "")'
            return f"{f} != null" if p.negated else f"{f} == null"
        if p.op in _COMPARE or p.op is Op.BETWEEN:
            return self.comparison(p, f, kind)
        if p.op is Op.CIDR:
            return self.cidr(p, f, kind)
        if kind != "string":
            return self.typed(p, f, kind)
        if not p.values:
            return "true" if p.all_values != p.negated else "false"
        test = self.string_test(p, f)
        try:
            passes_empty = evaluate_predicate(p, {}) is True
        except (re.error, ValueError):
            passes_empty = True
        if passes_empty:  # KQL's '' passes: so must a missing field (null in EQL)
            return f"({f} == null or {test})"
        if p.negated:  # '' fails: so must a missing field, however `not` reads a null
            return f"({f} != null and {test})"
        return test

    def cidr(self, p: Predicate, f: str, kind: str) -> str:
        """`cidrMatch(f, "net", ...)` (any of the networks; all_values: one call per network,
        and-ed).  cidrMatch is null on a null (and Elasticsearch holds no value for a text that
        is no address in an `ip` field), so the negation is `(f == null or not cidrMatch(...))`:
        a missing value is not inside, as in the IR."""
        if kind != "string":
            raise Refusal(f"cidr on the {kind} field {p.field.name} has no exact EQL form", p.span)
        networks = cidr_networks(p, Refusal)
        if not networks:
            return "true" if p.all_values != p.negated else "false"
        for network in networks:
            if reads_ipv4(network):
                self.diagnostics.append(lossy(
                    TARGET, f"cidr {network} on {p.field.name} overlaps ::ffff:0:0/96: Elasticsearch "
                            "stores an IPv4 address as the IPv4-mapped IPv6 address, so IPv4 values "
                            "match it, which the IR never does", p.span, p))
        literals = [string_literal(str(n)) for n in networks]
        if p.all_values:
            test = _join("and", [f"cidrMatch({f}, {n})" for n in literals])
        else:
            test = f"cidrMatch({f}, {', '.join(literals)})"
        return f"({f} == null or not {test})" if p.negated else test

    def comparison(self, p: Predicate, f: str, kind: str) -> str:
        if kind not in _NUMERIC:
            raise Refusal(f"{p.op.value} on the {kind} field {p.field.name}: rmmc orders only "
                          "numbers in EQL", p.span)
        if p.op is Op.BETWEEN:
            if len(p.values) != 2:
                raise Refusal(f"between on {p.field.name} needs 2 values", p.span)
            low, high = (number_literal(v, p.field.name) for v in p.values)
            if p.negated:
                return f"({f} < {low} or {f} > {high})"
            return f"({f} >= {low} and {f} <= {high})"
        if len(p.values) != 1:
            raise Refusal(f"{p.op.value} on {p.field.name} needs 1 value", p.span)
        bound = number_literal(p.values[0], p.field.name)
        return f"{f} {(_COMPLEMENT if p.negated else _COMPARE)[p.op]} {bound}"

    def typed(self, p: Predicate, f: str, kind: str) -> str:
        if p.op is not Op.EQUALS or kind not in _NUMERIC | {"bool", "boolean"}:
            raise Refusal(f"{p.op.value} on the {kind} field {p.field.name} has no exact EQL form "
                          "in rmmc", p.span)
        if not p.values:
            return "true" if p.all_values != p.negated else "false"
        if kind in ("bool", "boolean"):
            from rmmc.compiler.evaluator import coerce
            try:
                literals = ["true" if coerce(v, "bool") else "false" for v in p.values]
            except (TypeError, ValueError):
                raise Refusal(f"{p.values!r} are not booleans (field {p.field.name})", p.span) from None
        else:
            literals = [number_literal(v, p.field.name) for v in p.values]
        if p.negated:  # not equal, or null (the IR's != is true on a null)
            tests = [f"{f} != {v}" for v in literals]
            inner = _join("or" if p.all_values else "and", tests)
            return f"({f} == null or {inner})"
        tests = [f"{f} == {v}" for v in literals]
        return _join("and" if p.all_values else "or", tests)

    def string_test(self, p: Predicate, f: str) -> str:
        values = [v if isinstance(v, str) else str(v) for v in p.values]
        ci = not p.case_sensitive
        if ci and p.op is not Op.REGEX:  # the needle as the evaluator folds it
            values = [fold_to_ascii(v) for v in values]
        if p.op is Op.REGEX:
            tests = self.regexes(f, values, ci, p.all_values)
        elif p.op in (Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX):
            tests = [self.regex(f, term_regex(v, p.op is not Op.TERM_SUFFIX, p.op is not Op.TERM_PREFIX), ci)
                     for v in values]
        elif p.op is Op.EQUALS:
            tests = self.equality(f, values, ci, p.all_values)
        elif p.op in _LIKE_SHAPES:
            tests = self.wildcard(f, p.op, values, ci, p.all_values)
        else:
            raise Refusal(f"operator {p.op.value} has no EQL form", p.span)
        if p.negated:  # none of them (any-of) / not all of them (all-of)
            tests = [f"not {t}" for t in tests]
            return _join("or" if p.all_values else "and", tests)
        return _join("and" if p.all_values else "or", tests)

    @staticmethod
    def regex(f: str, pattern: str, ci: bool) -> str:
        return f"{f} {'regex~' if ci else 'regex'} {string_literal(pattern)}"

    def regexes(self, f: str, values: list[str], ci: bool, all_values: bool) -> list[str]:
        """REGEX values: a Sigma wildcard regex as a `like` pattern (or, when its literal text
        cannot be in one, a Lucene regex), any other as `re2_to_lucene` gives it."""
        likes: list[str] = []
        tests: list[str] = []
        for value in values:
            pattern = wildcard_pattern(value)
            if pattern is None:
                tests.append(self.regex(f, re2_to_lucene(value), ci))
            elif (like := like_pattern(pattern)) is not None:
                likes.append(like)
            else:
                tests.append(self.regex(f, wildcard_lucene(pattern), ci))
        return self.likes(f, likes, ci, all_values) + tests

    @staticmethod
    def likes(f: str, patterns: list[str], ci: bool, all_values: bool) -> list[str]:
        """`f like~ "p"` per pattern (all_values), or one test over the list (any of them)."""
        keyword = "like~" if ci else "like"
        if all_values or len(patterns) == 1:
            return [f"{f} {keyword} {string_literal(x)}" for x in patterns]
        if patterns:
            return [f"{f} {keyword} ({', '.join(string_literal(x) for x in patterns)})"]
        return []

    def equality(self, f: str, values: list[str], ci: bool, all_values: bool) -> list[str]:
        if all_values or len(values) == 1:
            if ci:
                return [f"{f} : {string_literal(v)}" if not _WILDCARDS & set(v) else
                        f"{f} in~ ({string_literal(v)})" for v in values]
            return [f"{f} == {string_literal(v)}" for v in values]
        literals = ", ".join(string_literal(v) for v in values)
        return [f"{f} {'in~' if ci else 'in'} ({literals})"]

    def wildcard(self, f: str, op: Op, values: list[str], ci: bool, all_values: bool) -> list[str]:
        like = [v for v in values if not _WILDCARDS & set(v)]
        other = [v for v in values if _WILDCARDS & set(v)]  # no escape for * ? in a pattern
        tests = self.likes(f, [_LIKE_SHAPES[op].format(v) for v in like], ci, all_values)
        tests += [self.regex(f, _REGEX_SHAPES[op].format(lucene_escape(v)), ci) for v in other]
        return tests


# ------------------------------------------------------------------ the rule


def load_fields(fields: Any) -> Any:
    """The profile object for `fields` (a name, or an object with `.field(table, column)`)."""
    if not isinstance(fields, str):
        return fields
    from rmmc.compiler.schema.profiles import load_profile  # another module's API

    return load_profile(fields)


def build_eql(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: Any = "ecs") -> tuple[str, list[Diagnostic]]:
    if rule.union is not None:
        return _union(rule, options, fields)
    if any(isinstance(s, Join) for s in rule.stages):
        return _sequence(rule, options, fields)
    return _query(rule, options, fields)


def _query(rule: Rule, options: EmitOptions, fields: Any, stages: bool = True) -> tuple[str, list[Diagnostic]]:
    """`<category> where <condition>` for one table's rule (`stages`: report its stages)."""
    found: list[Diagnostic] = []
    rule = push_filters(rule)  # EQL says the detection only: every filter that can move, moves
    rule, paths = with_paths(rule)
    refused = refuse_expression_tests(rule.condition, TARGET, "EQL")
    if refused:
        return "", refused
    found.extend(Diagnostic(Severity.WARNING, path_warning_text(p, path_name(p, TARGET, rule.source.table), TARGET),
                            None, "path") for p in paths)
    try:
        profile = load_fields(fields)
    except (ImportError, KeyError, ValueError) as exc:
        profile = None
        found.append(lossy(TARGET, f"field profile {fields!r} is not available ({exc}): every "
                                   "column keeps its own name", subject="fields"))
    names = Profile(rule.source.table, profile, rule.source.taxonomy)
    tested = [rule.condition, *(e.condition for e in rule.exclusions if e.condition is not None)]
    emitter = ConditionEmitter(names, ip_fields=frozenset(
        q.field.name for c in tested for q in walk_predicates(c) if q.op is Op.CIDR))
    category = CATEGORIES.get(rule.source.kind, "any")
    if category == "any":
        found.append(note(TARGET, f"events of kind {rule.source.kind.value} have no EQL event "
                                  "category: the query reads `any`"))
    try:
        extra = exclusion_conditions(
            rule, options, TARGET, found, form="EQL", refusal=Refusal,
            render=lambda c: "as EQL: and " + ConditionEmitter(names).emit(Not(c)))
        condition = all_of([rule.condition, *extra])
        condition, replaced = widen(condition, lambda c: isinstance(c, InSubquery))
        for node in replaced:
            found.append(lossy(TARGET, f"{node.field.name} {'!' if node.negated else ''}in "
                                       f"({node.query}) reads other events, which EQL cannot: the "
                                       "test is dropped and events it would reject now match",
                               node.span, node))
        where = emitter.emit(with_prefilter(condition))
    except Refusal as refusal:
        found.append(unsupported(TARGET, str(refusal), refusal.span))
        return "", names.warnings + emitter.diagnostics + found
    if where.startswith("(") and where.endswith(")") and _balanced_outer(where):
        where = where[1:-1]
    if rule.lookback is not None:
        text = rule.lookback.text or f"{int(rule.lookback.window.total_seconds())}s"
        found.append(note(TARGET, f"EQL queries hold no time filter: the lookback ({text}) belongs "
                                  f"to the rule's schedule (from: now-{text})"))
    if stages:
        found.extend(dropped_stages(rule.stages, TARGET, "EQL"))
    return f"{category} where {where}", names.warnings + emitter.diagnostics + found


def _eql_char(ch: str) -> bool:
    """A character an EQL wildcard string says literally (it has no escape for `*` or `?`)."""
    return " " <= ch <= "~" and ch not in "*?"


def with_prefilter(condition: Condition) -> Condition:
    """The condition with, before it, each top-level conjunct's `prefilter.superset` (implied by
    the conjunct, so the AND means the same): `:` / `in~` / `like~` tests Elasticsearch answers
    from the index, before the `regex~` that decides.  A conjunct that is its own superset (it is
    such a test already) adds nothing."""
    conjuncts = condition.operands if isinstance(condition, And) else (condition,)
    found: list[Condition] = []
    for c in conjuncts:
        pre = superset(c, _eql_char)
        if pre != Const(True) and not is_own_superset(c, _eql_char) and pre not in found:
            found.append(pre)
    return all_of([*found, condition])


def _union(rule: Rule, options: EmitOptions, fields: Any) -> tuple[str, list[Diagnostic]]:
    """A union: `any where (event.category == "<c>" and <test>) or ...`, one per source."""
    from rmmc.compiler.branches import NotSplit, split_union

    try:
        parts = split_union(rule)
    except NotSplit as exc:
        return "", [unsupported(TARGET, str(exc), exc.span)]
    tests: list[str] = []
    found: list[Diagnostic] = []
    for _, part in parts:
        text, said = _query(part, options, fields)
        found.extend(d for d in said if d not in found)
        if not text:
            return "", found
        category, _, where = text.partition(" where ")
        if category == "any":
            found.append(unsupported(TARGET, f"the union's source {part.source.table} has no EQL event "
                                             "category: its events cannot be told apart", rule.union.span))
            return "", found
        tests.append(f"(event.category == {string_literal(category)} and {_wrap(where)})")
    return "any where " + " or ".join(tests), found


def _wrap(where: str) -> str:
    return where if where.startswith("(") and _balanced_outer(where) else f"({where})"


def _maxspan(span: Any) -> str:
    micros = span // timedelta(microseconds=1)
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1_000)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    raise Refusal(f"the window {span} is finer than a millisecond")


def _sequence(rule: Rule, options: EmitOptions, fields: Any) -> tuple[str, list[Diagnostic]]:
    """A join of two detections within a window, the right event after the left: `sequence
    by <keys> with maxspan=T [<left>] [<right>]` (`rmmc.compiler.correlate`)."""
    from rmmc.compiler.correlate import NotACorrelation, correlation

    try:
        found = correlation(rule)
    except NotACorrelation as exc:
        return "", [unsupported(TARGET, f"the join: {exc}", exc.span)]
    said: list[Diagnostic] = [lossy(TARGET, m, span, subject=node) for m, span, node in found.problems]
    window = found.window
    if window is None or window.high is None or window.low is None or window.low < timedelta(0):
        if window is not None and window.high is not None:
            said.append(lossy(TARGET, f"the window {window.describe()} (right event time minus left) lets "
                                      "the right event come first, which a sequence does not: written "
                                      "as a sequence, the left event first", found.span, subject=found.join))
        spans = [lb.window for lb in (found.left.lookback, found.right.lookback) if lb is not None]
        reach = window.high if window is not None and window.high is not None else None
        span = reach or (min(spans) if spans else timedelta(days=30))
    else:
        span = window.high
        if window.low > timedelta(0):
            said.append(lossy(TARGET, f"the window {window.describe()} starts after the left event: a "
                                      "sequence's maxspan bounds only the end", found.span, subject=found.join))
    if window is not None and window.low is not None and window.low == timedelta(0):
        said.append(lossy(TARGET, "events at the same instant: KQL's window "
                                  f"{'excludes' if window.low_strict else 'includes'} them, EQL orders them by "
                                  "its tiebreaker (the index order), so such a pair may fire differently",
                          found.span, subject=found.join))
    queries = []
    for side in (found.left, found.right):
        text, more = _query(side, options, fields, stages=False)
        said.extend(d for d in more if d not in said)
        if not text:
            return "", said
        queries.append(text)
    profile = load_fields(fields)
    left_names = Profile(found.left.source.table, profile, found.left.source.taxonomy)
    right_names = Profile(found.right.source.table, profile, found.right.source.taxonomy)
    lefts = [left_names.name(a) for a, _ in found.keys]
    rights = [right_names.name(b) for _, b in found.keys]
    said.extend(w for w in left_names.warnings + right_names.warnings if w not in said)
    try:
        maxspan = _maxspan(span)
    except Refusal as refusal:
        return "", said + [unsupported(TARGET, str(refusal), found.span)]
    if lefts == rights:
        head = f"sequence by {', '.join(lefts)} with maxspan={maxspan}"
        body = " ".join(f"[{q}]" for q in queries)
    else:
        head = f"sequence with maxspan={maxspan}"
        body = f"[{queries[0]}] by {', '.join(lefts)} [{queries[1]}] by {', '.join(rights)}"
    said.append(note(TARGET, "join keys: KQL matches them case-sensitively, as EQL's `by` does"))
    if found.after:
        said.extend(dropped_stages(list(found.after), TARGET, "an EQL sequence"))
    return f"{head} {body}", said


def _balanced_outer(text: str) -> bool:
    """Whether the first `(` closes at the last character (outside string literals)."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return False
    return True


def emit_eql(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: Any = "ecs") -> Translation:
    """The rule as an EQL query (empty when refused) with its diagnostics."""
    text, diagnostics = build_eql(rule, options, fields=fields)
    return Translation(TARGET, text, tuple(diagnostics))
