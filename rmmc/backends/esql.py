"""IR -> ES|QL (Elasticsearch Query Language).

Shape of the query::

    FROM logs-*
    | WHERE @timestamp > NOW() - 5 days
    | WHERE <condition>
    | EVAL <constants> | STATS ... BY ... | KEEP ... | RENAME ... | SORT ... | LIMIT ...

Field names come from a field profile (`rmmc.compiler.schema.profiles`, ECS by default);
a column the profile does not map is written under its own name with a warning naming it.
Names that are not plain identifiers are quoted with backticks (a backtick inside doubled).

How the meaning is kept (the reference is `rmmc.compiler.evaluator`):

* String literals are double-quoted; `\\`, `"`, CR, LF and TAB are escaped (the ES|QL lexer:
  `'"' (ESCAPE_SEQUENCE | ~[\\r\\n"\\\\])* '"'` with `ESCAPE_SEQUENCE: '\\\\' [tnr"\\\\]`).
  Triple-quoted strings are never used.
* Nulls.  KQL reads a missing string as '' while ES|QL has nulls, and `NOT (x == "a")` is
  null (no match) on a null where KQL's `!=` matches.  Every string field is therefore read
  as `COALESCE(field, "")`: tests on strings are two-valued, exactly as in the IR.  Equality
  on a typed field is guarded (`field IS NOT NULL AND ...`) so that it is false, not null, on
  a null (the IR's `==` is false and `!=` true on a null).  Comparisons (`<`, between ...)
  stay three-valued in both languages, and WHERE keeps only true rows, as the IR does.
* Case-insensitive tests lower-case the field with `TO_LOWER` and the value in rmmc (one
  character for one, as KQL).  Java's lower-casing agrees with that on every character
  except U+0130 'İ' (it becomes 'i' + U+0307): text holding it may compare differently;
  a note says so, and a value holding it is reported lossy.  (Assumes the default locale.)
* contains / startswith / endswith / has / hasprefix / hassuffix become `RLIKE` with a Lucene
  regular expression, which is anchored (it must match the whole value).  Every ASCII
  character other than a letter, digit or space is escaped with a backslash (a letter never
  is: Lucene gives `\\d`, `\\w`, ... a meaning).  A term test (`has`) puts a boundary only on
  a side where the value starts/ends with an ASCII letter or digit:
  `(v|.*[^0-9a-z]v)([^0-9a-z].*)?` ("starts the field, or follows a non-term character",
  then "ends the field, or a non-term character follows").
* A Sigma wildcard value (the regex `(?s)^...$` the Sigma reader writes for `a*b?c`, read
  back by `base.wildcard_pattern`) becomes `LIKE` with that wildcard pattern:
  `COALESCE(f, "") LIKE "a*b?c"`, case-insensitive `TO_LOWER(COALESCE(f, "")) LIKE "a*b?c"`
  with the pattern lower-cased in rmmc as for the other tests; several values are or-ed.
  In a LIKE pattern `*` is any run of characters and `?` one character (a line break too:
  Lucene's wildcard automaton), and a backslash escapes `*`, `?` and itself, so a literal
  `*` `?` `\\` is written `\\*` `\\?` `\\\\` (then doubled again inside the string literal).
* Other regex predicates (RE2 syntax) are refused: Lucene's syntax differs.
* `InSubquery` is widened (replaced by the constant that keeps a superset of the events),
  each replaced node reported lossy.
* Aggregates: count -> COUNT(*), min/max/sum/avg, make_set -> VALUES; dcount ->
  COUNT_DISTINCT (approximate: lossy), make_list -> VALUES (drops duplicates: lossy);
  anything else is dropped with a lossy diagnostic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from rmmc.backends.base import (cidr_networks, reads_ipv4, EmitOptions, exclusion_conditions,
                                Translation, lossy, note, unsupported, Wildcard, wildcard_pattern)
from rmmc.backends.widen import widen
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span
from rmmc.compiler.evaluator import coerce, fold, is_term_char
from rmmc.backends.base import refuse_expression_tests
from rmmc.backends.legacy_output import classic_output
from rmmc.compiler.pushdown import push_filters
from rmmc.compiler.ir import (And, Condition, Const, InSubquery, Not, Op, Or, Predicate, Rule,
                              all_of)

TARGET = "esql"
DEFAULT_INDEX = "logs-*"

# ------------------------------------------------------------------ field profiles


def _load_profile(name: Any):
    """The field profile called `name` (or a naming object given as is), or None when the
    profiles are not available."""
    if not isinstance(name, str):
        return name
    try:
        from rmmc.compiler.schema.profiles import load_profile
    except ImportError:
        return None
    return load_profile(name)


# ------------------------------------------------------------------ lexical helpers

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


def term_regex(needle: str, check_start: bool = True, check_end: bool = True,
               case_sensitive: bool = False) -> str:
    """The anchored Lucene regex of a term test (KQL `has` / `hasprefix` / `hassuffix`) for
    a needle already lower-cased when the test is case-insensitive."""
    other = "[^0-9a-zA-Z]" if case_sensitive else "[^0-9a-z]"
    value = lucene_escape(needle)
    need_start = check_start and bool(needle) and is_term_char(needle[0])
    need_end = check_end and bool(needle) and is_term_char(needle[-1])
    head = f"({value}|.*{other}{value})" if need_start else f".*{value}"
    tail = f"({other}.*)?" if need_end else ".*"
    return head + tail


def pattern_regex(op: Op, needle: str, case_sensitive: bool) -> str:
    """The anchored Lucene regex of a substring or term operator."""
    value = lucene_escape(needle)
    if op is Op.CONTAINS:
        return f".*{value}.*"
    if op is Op.STARTSWITH:
        return f"{value}.*"
    if op is Op.ENDSWITH:
        return f".*{value}"
    if op is Op.TERM:
        return term_regex(needle, True, True, case_sensitive)
    if op is Op.TERM_PREFIX:
        return term_regex(needle, True, False, case_sensitive)
    if op is Op.TERM_SUFFIX:
        return term_regex(needle, False, True, case_sensitive)
    raise ValueError(f"not a pattern operator: {op}")


_UNITS = (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000), ("second", 1_000),
          ("millisecond", 1))


def time_span(span: timedelta) -> tuple[str, bool]:
    """An ES|QL time span literal (`5 days`, `90 minutes`, ...) in the largest unit that
    divides it, and whether it had to be rounded up to a whole millisecond."""
    micros = span // timedelta(microseconds=1)
    millis, rest = divmod(micros, 1000)
    rounded = rest != 0
    millis += 1 if rounded else 0
    if millis == 0:
        return "0 milliseconds", rounded
    unit, per = next((u, p) for u, p in _UNITS if millis % p == 0)
    count = millis // per
    return f"{count} {unit}{'' if count == 1 else 's'}", rounded


class Refusal(Exception):
    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


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


_NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})
_TEXT_LIKE = frozenset({"string", "guid"})


def typed_lit(value: Any, kind: str, field_name: str) -> str:
    if kind in _TEXT_LIKE:
        return string_lit(value if isinstance(value, str) else str(value))
    try:
        typed = coerce(value, kind)
    except (TypeError, ValueError, OverflowError):
        raise Refusal(f"{value!r} is not a valid {kind} (field {field_name})") from None
    if kind in ("bool", "boolean"):
        return "true" if typed else "false"
    if kind in _NUMERIC and isinstance(typed, (int, float)):
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


# ------------------------------------------------------------------ conditions


@dataclass
class Emitter:
    table: str | None
    profile: Any
    profile_name: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    case_folded: bool = False
    taxonomy: str | None = None  # "sigma": the rule's fields are Sigma names already

    def add(self, d: Diagnostic) -> None:
        if d not in self.diagnostics:
            self.diagnostics.append(d)

    def column(self, name: str) -> str:
        mapped = None
        if self.profile is not None and self.taxonomy == "sigma":
            from rmmc.compiler.schema.profiles import rule_field

            mapped = rule_field(self.profile, self.table, name, self.taxonomy)
        elif self.profile is not None:  # a profile knows no column of no table: unmapped
            mapped = self.profile.field(self.table, name)
        if mapped is None:
            self.add(Diagnostic(Severity.WARNING, f"{TARGET}: column {name} has no field in the "
                                f"{self.profile_name!r} profile; written as {name}", None,
                                "unmapped-field"))
            mapped = name
        return ident(mapped)

    # -- conditions; every returned text is atomic or parenthesized

    def emit(self, c: Condition) -> str:
        if isinstance(c, Const):
            return "true" if c.value else "false"
        if isinstance(c, Predicate):
            return self.predicate(c)
        if isinstance(c, Not):
            return f"(NOT {self.emit(c.operand)})"
        if isinstance(c, (And, Or)):
            parts = [self.emit(o) for o in c.operands]
            return paren(join("AND" if isinstance(c, And) else "OR", parts))
        raise Refusal(f"not a condition ES|QL can say: {c!r}")

    def predicate(self, p: Predicate) -> str:
        kind = p.field.type.lower()
        col = self.column(p.field.name)
        if p.op is Op.EXISTS:
            return f"({col} IS {'' if p.negated else 'NOT '}NULL)"
        if p.op is Op.EMPTY:
            if kind == "string":
                return f"(COALESCE({col}, \"\") {'!=' if p.negated else '=='} \"\")"
            return f"({col} IS {'NOT ' if p.negated else ''}NULL)"
        if p.op in (Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN):
            return self.comparison(p, kind, col)
        if p.op is Op.CIDR:
            return self.cidr(p, kind, col)
        patterns = []
        if p.op is Op.REGEX:
            patterns = [wildcard_pattern(v) if isinstance(v, str) else None for v in p.values]
            if any(x is None for x in patterns):
                raise Refusal(f"regex on {p.field.name}: the pattern is RE2 syntax and ES|QL's "
                              "RLIKE reads Lucene syntax; rmmc does not translate it", p.span)
        if kind not in _TEXT_LIKE and not (p.op is Op.EQUALS and kind not in ("dynamic",)):
            raise Refusal(f"{p.op.value} on the {kind} field {p.field.name} has no exact "
                          "ES|QL form", p.span)
        if not p.values:  # any-of nothing is false, all-of nothing true
            return "true" if p.all_values != p.negated else "false"
        if kind == "string":
            subject = f"COALESCE({col}, \"\")"
            guard = None
        else:  # the IR's test is false on a null, whatever the values (negated: true)
            subject, guard = col, f"{col} IS NOT NULL"
        if not p.case_sensitive and kind in _TEXT_LIKE:
            subject = f"TO_LOWER({subject})"
            self.case_folded = True
        if p.op is Op.EQUALS:
            test = self.equality(p, kind, subject)
        elif p.op is Op.REGEX:
            tests = [f"{subject} LIKE {string_lit(self.like(p, x))}" for x in patterns]
            test = paren(join("AND" if p.all_values else "OR", tests))
        else:
            tests = [f"{subject} RLIKE {string_lit(pattern_regex(p.op, self.needle(p, v), p.case_sensitive))}"
                     for v in p.values]
            test = paren(join("AND" if p.all_values else "OR", tests))
        if guard is not None:
            test = f"({guard} AND {test})"
        return f"(NOT {test})" if p.negated else test

    def cidr(self, p: Predicate, kind: str, col: str) -> str:
        """`COALESCE(CIDR_MATCH(TO_IP(f), "net", ...), false)`: TO_IP gives null (with a
        warning header) for a text that is no address, CIDR_MATCH null on a null; COALESCE makes
        that false, so NOT is exact (a missing value or no address is not inside, as in the IR).
        all_values: one CIDR_MATCH per network, and-ed."""
        if kind not in ("string", "ip"):
            raise Refusal(f"cidr on the {kind} field {p.field.name} has no exact ES|QL form", p.span)
        networks = cidr_networks(p, Refusal)
        if not networks:
            return "true" if p.all_values != p.negated else "false"
        for network in networks:
            if reads_ipv4(network):
                self.add(lossy(TARGET, f"cidr {network} on {p.field.name} overlaps ::ffff:0:0/96: "
                                       "Elasticsearch's ip type holds an IPv4 address as the "
                                       "IPv4-mapped IPv6 address, so IPv4 values match it, which "
                                       "the IR never does", p.span, p))
        subject = f"TO_IP({col})"
        literals = [string_lit(str(n)) for n in networks]
        if p.all_values:
            tests = [f"COALESCE(CIDR_MATCH({subject}, {n}), false)" for n in literals]
            test = paren(join("AND", tests)) if len(tests) > 1 else tests[0]
        else:
            test = f"COALESCE(CIDR_MATCH({subject}, {', '.join(literals)}), false)"
        return f"(NOT {test})" if p.negated else test

    def like(self, p: Predicate, pattern: tuple[str | Wildcard, ...]) -> str:
        """A `wildcard_pattern` as a LIKE pattern: literal parts (lower-cased when the test is
        case-insensitive) with `*`, `?` and `\\` escaped by a backslash."""
        return "".join(like_escape(self.needle(p, part)) if isinstance(part, str) else part.value
                       for part in pattern)

    def needle(self, p: Predicate, value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        if p.case_sensitive:
            return text
        if any(len(ch.lower()) != 1 for ch in text):
            self.add(lossy(TARGET, f"{p.field.name}: the value {text!r} holds a character whose "
                           "lower case is longer (U+0130); ES|QL's TO_LOWER never yields it, so "
                           "text holding it no longer matches this value", p.span, p))
        return fold(text)

    def equality(self, p: Predicate, kind: str, subject: str) -> str:
        if kind in _TEXT_LIKE:
            values = [string_lit(self.needle(p, v)) for v in p.values]
        else:
            values = [typed_lit(v, kind, p.field.name) for v in p.values]
        if len(values) == 1:
            return f"({subject} == {values[0]})"
        if p.all_values:
            return paren(join("AND", [f"{subject} == {v}" for v in values]))
        return f"({subject} IN ({', '.join(values)}))"

    def comparison(self, p: Predicate, kind: str, col: str) -> str:
        if kind not in _NUMERIC and kind != "datetime":
            raise Refusal(f"{p.op.value} on the {kind} field {p.field.name}: rmmc orders only "
                          "numbers and datetimes in ES|QL", p.span)
        wanted = 2 if p.op is Op.BETWEEN else 1
        if len(p.values) != wanted:
            raise Refusal(f"{p.op.value} on {p.field.name} needs {wanted} value(s)", p.span)
        bounds = [typed_lit(v, kind, p.field.name) for v in p.values]
        if p.op is Op.BETWEEN:
            test = f"({col} >= {bounds[0]} AND {col} <= {bounds[1]})"
        else:
            symbol = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}[p.op]
            test = f"({col} {symbol} {bounds[0]})"
        return f"(NOT {test})" if p.negated else test  # three-valued in both languages


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


# ------------------------------------------------------------------ outputs

_SIMPLE_AGGREGATES = {"min": "MIN", "max": "MAX", "sum": "SUM", "avg": "AVG", "make_set": "VALUES"}


def output_commands(rule: Rule, em: Emitter) -> list[str]:
    out = classic_output(rule)
    commands: list[str] = []
    made: set[str] = set()

    def name(column: str) -> str:
        return ident(column) if column in made else em.column(column)

    if out.constants:
        items = []
        for n, v in out.constants:
            if isinstance(v, str):
                lit = string_lit(v)
            elif isinstance(v, bool):
                lit = "true" if v else "false"
            elif isinstance(v, (int, float)):
                lit = number_lit(v)
            elif isinstance(v, datetime):
                lit = datetime_lit(v)
            else:
                em.add(lossy(TARGET, f"constant column {n} ({v!r}) has no ES|QL literal and is dropped", subject="output"))
                continue
            items.append(f"{ident(n)} = {lit}")
            made.add(n)
        if items:
            commands.append("EVAL " + ", ".join(items))
    for n, text in out.computed:
        em.add(lossy(TARGET, f"computed column {n} = {text} is KQL and is dropped", subject="output"))
    agg = out.aggregation
    if agg is not None:
        aggregates = []
        for a in agg.aggregates:
            function = a.function.lower()
            label = ident(a.name) if a.name else None
            if function == "count" and a.field is None and not a.args:
                call = "COUNT(*)"
            elif function in _SIMPLE_AGGREGATES and a.field is not None and not a.args:
                call = f"{_SIMPLE_AGGREGATES[function]}({em.column(a.field)})"
            elif function == "dcount" and a.field is not None and not a.args:
                call = f"COUNT_DISTINCT({em.column(a.field)})"
                em.add(lossy(TARGET, f"{a.name} = dcount({a.field}): COUNT_DISTINCT is approximate "
                                     "(HyperLogLog++), counts may differ from KQL's", subject="output"))
            elif function == "make_list" and a.field is not None and not a.args:
                call = f"VALUES({em.column(a.field)})"
                em.add(lossy(TARGET, f"{a.name} = make_list({a.field}): ES|QL has no list "
                                     "aggregate; VALUES keeps each value once (duplicates dropped)", subject="output"))
            else:
                em.add(lossy(TARGET, f"aggregate {a.name} = {a.function}({a.field or ''}"
                                     f"{', ' if a.field and a.args else ''}"
                                     f"{', '.join(map(str, a.args))}) has no ES|QL form and is dropped", subject="output"))
                continue
            aggregates.append(f"{label} = {call}" if label else call)
        groups = [em.column(k) for k in agg.group_by]
        if agg.bin_field is not None:
            em.add(lossy(TARGET, f"bin({agg.bin_field}, {agg.bin_size}) is dropped from the "
                                 "grouping: rows are not split by time bucket", subject="output"))
        text = "STATS"
        if aggregates:
            text += " " + ", ".join(aggregates)
        if groups:
            text += " BY " + ", ".join(groups)
        if text != "STATS":
            commands.append(text)
            if groups:
                em.add(note(TARGET, "STATS puts events whose group field is missing in a null "
                                    "group, where KQL shows ''"))
        made.update(a.name for a in agg.aggregates if a.name)
        made.update(agg.group_by)  # after STATS the group columns are the mapped names
    if out.projection:
        commands.append("KEEP " + ", ".join(name(c) for c in out.projection))
    if out.renames:
        commands.append("RENAME " + ", ".join(f"{name(old)} AS {ident(new)}" for new, old in out.renames))
        made.update(new for new, _ in out.renames)
    if out.sort:
        keys = []
        for c, d in out.sort:
            direction = (d or "").strip().upper()
            if direction not in ("", "ASC", "DESC"):
                raise Refusal(f"sort direction {d!r} of {c} is neither asc nor desc")
            # KQL `sort by` is descending by default
            keys.append(f"{name(c)} {direction or 'DESC'}")
        commands.append("SORT " + ", ".join(keys))
    if out.limit is not None:
        if isinstance(out.limit, bool) or out.limit < 0:
            raise Refusal(f"limit {out.limit!r} is not a row count")
        commands.append(f"LIMIT {out.limit}")
    for text in out.post:
        em.add(lossy(TARGET, f"KQL operator `{text}` has no ES|QL translation and is dropped", subject="output"))
    return commands


# ------------------------------------------------------------------ the rule


def _table(rule: Rule) -> str | None:
    if rule.source.table:
        return rule.source.table
    from rmmc.backends.kql import KIND_TABLES

    return KIND_TABLES.get(rule.source.kind)


_INDEX = re.compile(r"[A-Za-z0-9._*:+-]+(,[A-Za-z0-9._*:+-]+)*")


def emit_esql(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: str = "ecs",
              index: str = DEFAULT_INDEX) -> Translation:
    """The rule as ES|QL text (empty when refused), with lossy/unsupported/note diagnostics."""
    found: list[Diagnostic] = []
    rule = push_filters(rule)
    refused = refuse_expression_tests(rule.condition, TARGET, "ES|QL (in rmmc today)")
    if refused:
        return Translation(TARGET, "", tuple(refused))
    profile = _load_profile(fields)
    index = getattr(options.placement, "index", None) or index
    if profile is None:
        found.append(note(TARGET, f"field profile {fields!r} is not available: columns keep "
                                  "their Defender names"))
    em = Emitter(_table(rule), profile, fields, taxonomy=rule.source.taxonomy)
    try:
        if not _INDEX.fullmatch(index):
            raise Refusal(f"index pattern {index!r} is not a plain index pattern")
        commands = [f"FROM {index}"]
        if rule.lookback is not None:
            span, rounded = time_span(rule.lookback.window)
            if rounded:
                found.append(lossy(TARGET, f"lookback {rule.lookback.window} rounded up to {span} "
                                           "(ES|QL spans are whole milliseconds): slightly older "
                                           "events now match", subject="lookback"))
            commands.append(f"WHERE {em.column('Timestamp')} > NOW() - {span}")
        def exclusion_text(c: Condition) -> str:
            side = Emitter(em.table, profile, fields, taxonomy=em.taxonomy)
            wide, _ = widen(Not(c), lambda n: isinstance(n, InSubquery))
            return "as ES|QL: | WHERE " + strip_parens(side.emit(wide))

        condition = all_of([rule.condition, *exclusion_conditions(
            rule, options, TARGET, found, render=exclusion_text, form="ES|QL", refusal=Refusal)])
        condition, replaced = widen(condition, lambda n: isinstance(n, InSubquery))
        for node in replaced:
            assert isinstance(node, InSubquery)
            found.append(lossy(TARGET, f"{node.field.name} {'!' if node.negated else ''}in "
                                       f"({node.query}) needs another query, which ES|QL cannot "
                                       "run here: the test is dropped and events it would reject "
                                       "now match", node.span, node))
        if condition != Const(True):
            commands.append("WHERE " + strip_parens(em.emit(condition)))
        commands += output_commands(rule, em)
    except Refusal as refusal:
        found.append(unsupported(TARGET, str(refusal), refusal.span))
        return Translation(TARGET, "", tuple(em.diagnostics + found))
    if em.case_folded:
        found.append(note(TARGET, "case-insensitive tests lower-case the field with TO_LOWER: it "
                                  "agrees with KQL's folding except on U+0130 'İ', which TO_LOWER "
                                  "turns into 'i' + U+0307"))
    return Translation(TARGET, "\n| ".join(commands), tuple(em.diagnostics + found))
