"""IR -> Splunk SPL (a `search` plus, where needed, one `| where`).

Shape of the query:

    search [prefix] earliest=-<lookback> latest=now <search conjuncts>
    | where <eval conjuncts>
    | eval <constants> | fillnull value="" <group keys> | stats ... by ...
    | table ... | rename ... | sort 0 ... | head N

**Split.**  The condition is first widened (parts Splunk cannot say are replaced by the
constant that only widens, each reported `lossy`), then put in negation normal form (NOT
pushed down to the predicates: exact in KQL's three-valued logic, see `_nnf`).  Each
top-level conjunct goes to `search` when every predicate in it is exact there, else the whole
conjunct goes to the `| where`.  Splitting an AND into two filters is exact.

**search** is used only for case-insensitive EQUALS / CONTAINS / STARTSWITH / ENDSWITH on
string fields whose values are printable ASCII, contain no `*` (search cannot escape it) and
cannot match '' (see null handling): `f="v"`, `f="*v*"`, `f="v*"`, `f="*v"`,
`f IN ("a","b")`, `NOT ...`.  Every AND / OR group is parenthesized (in search, OR binds
tighter than AND).  Values are double-quoted with `\\` and `\"` escaped; control characters
never reach search.

**where** (eval syntax) says everything else exactly: `has` and its kin, contains & co. as
PCRE `match()` with every ASCII non-alphanumeric character backslash-escaped and control
characters as `\\x{hh}`; the term regex puts `(^|[^0-9A-Za-z])` / `($|[^0-9A-Za-z])` only at
an end of the value that is an ASCII letter or digit (the evaluator's TERM).  Equality is
`lower(x)=="v"` (or `x=="v"` when case-sensitive).  Field names other than plain
identifiers are single-quoted in eval (`'process.pe.company'`: a bare dot would concatenate).

**Null handling.**  KQL reads a missing string as '', Splunk has null.  In `where` every
string field is read as `coalesce(f, "")`, so each test is two-valued and means what KQL
means, `NOT` included.  In `search`, a positive test is false on a missing field and
`NOT f="v"` true, which is KQL's answer exactly because search never gets a value that
matches ''.  Non-string (numeric) fields keep KQL's rules explicitly: `==` false on null,
`!=` true (`isnull(f) OR ...`), comparisons false on null (`isnotnull(f) AND ...`, negated
comparisons as the complementary operator, e.g. NOT < as >=).  EMPTY is `isnull(f) OR f==""`,
EXISTS `isnotnull(f)`.  Multivalue Splunk fields are out of KQL's model (not handled).

**Lookback** is `earliest=-<n><unit> latest=now` in the largest of d/h/m/s that divides the
window; a window in fractions of a second is rounded up to whole seconds (lossy: widens).

**Aggregation**: `| fillnull value="" <keys>` (stats drops events whose by-field is null,
KQL groups them under '') then `| stats` with count, dc, min, max, sum, avg, values
(make_set), list (make_list, lossy: at most 100 values) and first (any / take_any); other
functions, computed columns and post operators are reported `lossy` one by one and dropped.
Fields go through the field profile (`fields=`); Timestamp is `_time`.

**Index / sourcetype**: none is emitted unless `prefix=` is given (e.g. `index=edr
sourcetype=...`, inserted verbatim after `search`, refused if it holds `|`, a backquote or a
control character); without it a note says the search runs over every index searched by default.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rmmc.backends.base import (cidr_networks, exclusion_conditions, EmitOptions, Translation, lossy, note,
                                reads_ipv4, unsupported)
from rmmc.backends.widen import widen
from rmmc.compiler.diagnostics import Diagnostic, Span
from rmmc.compiler.evaluator import fold, is_term_char, re2_dollar
from rmmc.backends.base import refuse_expression_tests
from rmmc.backends.legacy_output import ClassicOutput, classic_output
from rmmc.compiler.pushdown import push_filters
from rmmc.compiler.ir import (And, Condition, Const, InSubquery, Not, Op, Or, Predicate, Rule,
                              all_of, any_of)
from rmmc.compiler.schema.profiles import load_profile, rule_field

TARGET = "splunk"
TIME_FIELD = "_time"

_SEARCH_OPS = frozenset({Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH})
_NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})
_STRINGLIKE = frozenset({"string", "guid"})
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SEARCH_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@-]*\Z")
_EVAL_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@ -]*\Z")

# ------------------------------------------------------------------ literals


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """Whether the text holds an ASCII control character (C0 or DEL)."""
    return _CONTROL.search(text) is not None


def quote(text: str) -> str:
    """A double-quoted SPL string: `\\` and `"` escaped.  Control characters are refused
    (callers route such values to a regex, where they are written as `\\x{hh}`)."""
    if has_control(text):
        raise ValueError(f"control character in {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def regex_literal(value: str) -> str:
    """`value` as a PCRE matching exactly that text: ASCII letters, digits, space and
    non-ASCII characters as themselves (no pattern here ever sets PCRE's (?x)), every other printable ASCII character backslash-escaped
    (always literal in PCRE), control characters as `\\x{hh}`."""
    out = []
    for ch in value:
        code = ord(ch)
        if code < 32 or code == 127:
            out.append("\\x{%02x}" % code)
        elif code > 127 or ch.isalnum() or ch == " ":
            out.append(ch)
        else:
            out.append("\\" + ch)
    return "".join(out)


def pcre(pattern: str) -> str:
    """A model (RE2) regex as PCRE reads it the same: PCRE's `$` also matches before a final
    line break, RE2's only at the very end, so each unescaped `$` outside a character class
    becomes PCRE's `\\z` (`evaluator.re2_dollar`; multi-line patterns keep their `$`)."""
    return re2_dollar(pattern, "\\z")


def regex_string(pattern: str) -> str:
    """A PCRE as an eval string literal; literal control characters become `\\x{hh}`."""
    pattern = "".join("\\x{%02x}" % ord(ch) if ord(ch) < 32 or ord(ch) == 127 else ch for ch in pattern)
    return quote(pattern)


def term_regex(value: str, start: bool = True, end: bool = True) -> str:
    """The KQL term test as a PCRE (case not handled here): boundaries only at an end of the
    value that is an ASCII letter or digit."""
    head = "(^|[^0-9A-Za-z])" if start and value and is_term_char(value[0]) else ""
    tail = "($|[^0-9A-Za-z])" if end and value and is_term_char(value[-1]) else ""
    return head + regex_literal(value) + tail


def span_text(window: timedelta) -> tuple[str, bool]:
    """Splunk relative-time text for a window (`5d`, `12h`, `90m`, `30s`) and whether it
    was rounded up to whole seconds."""
    micros = window // timedelta(microseconds=1)
    seconds, rest = divmod(micros, 1_000_000)
    rounded = rest != 0
    if rounded:
        seconds += 1
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}", rounded
    return f"{seconds}s", rounded


def number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return repr(value)


# ------------------------------------------------------------------ conditions


def _nnf(node: Condition, positive: bool = True) -> Condition:
    """NOT pushed down to the predicates (De Morgan holds in three-valued logic), constants
    folded.  In NNF a condition is true exactly when it is true with every unknown
    predicate read as false, so each predicate is emitted as `true exactly when KQL says true`."""
    if isinstance(node, Not):
        return _nnf(node.operand, not positive)
    if isinstance(node, Predicate):
        return node if positive else node.negate()
    if isinstance(node, Const):
        return Const(node.value == positive)
    if isinstance(node, (And, Or)):
        parts = [_nnf(o, positive) for o in node.operands]
        conj = isinstance(node, And) == positive
        if conj:
            if Const(False) in parts:
                return Const(False)
            return all_of(parts)
        if Const(True) in parts:
            return Const(True)
        return any_of(parts)
    raise TypeError(f"not expected here: {node!r}")


def _matches_empty(p: Predicate) -> bool:
    if p.op in (Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.EQUALS):
        return any(str(v) == "" for v in p.values)
    return True


@dataclass
class Emitter:
    table: str | None
    profile_name: str
    taxonomy: str | None = None  # "sigma": the rule's fields are Sigma names already
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _fields: dict[str, str] = field(default_factory=dict)
    _non_ascii_warned: bool = False

    def __post_init__(self) -> None:
        self.profile = load_profile(self.profile_name)

    # ---------------------------------------------------------------- fields

    def field(self, column: str, span: Span | None = None) -> str:
        """The Splunk field of a column (Timestamp -> _time; unmapped: the column, warned)."""
        if column in self._fields:
            return self._fields[column]
        if column in ("Timestamp", "TimeGenerated"):  # Defender / Sentinel event time
            name = TIME_FIELD
        else:
            name = rule_field(self.profile, self.table, column, self.taxonomy)
            if name is None:
                name = column
                where = f"table {self.table}" if self.table else "a rule without a table"
                self.diagnostics.append(lossy(
                    TARGET, f"field {column} has no '{self.profile_name}' field mapping for {where}: "
                            f"emitted as '{column}' (the test matches only if the data has that field)", span))
        if not _SEARCH_NAME.match(name) or not _EVAL_NAME.match(name):
            raise ValueError(f"field name {name!r} cannot be written safely in SPL")
        self._fields[column] = name
        return name

    def eval_field(self, column: str, span: Span | None = None) -> str:
        name = self.field(column, span)
        return name if _PLAIN_NAME.match(name) else f"'{name}'"

    # ---------------------------------------------------------------- what goes where

    def expressible(self, node: Condition) -> bool:
        """False for nodes widened away: subqueries, and tests Splunk cannot say exactly."""
        if isinstance(node, InSubquery):
            return False
        if not isinstance(node, Predicate):
            return True
        p = node
        if p.op in (Op.EXISTS, Op.EMPTY):
            return True
        if p.op is Op.CIDR:
            return p.field.type == "string"
        if p.field.type in _STRINGLIKE:
            return p.op is not Op.REGEX or all(isinstance(v, str) for v in p.values)
        if p.field.type in _NUMERIC:
            if p.op is Op.EQUALS or p.op in (Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN):
                return bool(p.values) and all(number(v) is not None for v in p.values)
        return False

    def searchable(self, node: Condition) -> bool:
        if isinstance(node, (And, Or)):
            return all(self.searchable(o) for o in node.operands)
        if not isinstance(node, Predicate):
            return False
        p = node
        return (p.field.type == "string" and p.op in _SEARCH_OPS and not p.case_sensitive
                and bool(p.values) and not _matches_empty(p)
                and all(isinstance(v, str) and v.isascii() and "*" not in v and not has_control(v)
                        for v in p.values))

    # ---------------------------------------------------------------- search syntax

    def search(self, node: Condition) -> str:
        if isinstance(node, (And, Or)):
            word = " AND " if isinstance(node, And) else " OR "
            return "(" + word.join(self.search(o) for o in node.operands) + ")"
        p: Predicate = node  # type: ignore[assignment]
        name = self.field(p.field.name, p.span)
        pattern = {Op.EQUALS: "{}", Op.CONTAINS: "*{}*", Op.STARTSWITH: "{}*", Op.ENDSWITH: "*{}"}[p.op]
        values = [quote(pattern.format(v)) for v in p.values]
        if len(values) == 1:
            text = f"{name}={values[0]}"
        elif p.all_values:
            text = "(" + " AND ".join(f"{name}={v}" for v in values) + ")"
        else:
            text = f"{name} IN ({', '.join(values)})"
        return f"NOT {text}" if p.negated else text

    # ---------------------------------------------------------------- eval syntax

    def where(self, node: Condition) -> str:
        if isinstance(node, (And, Or)):
            word = " AND " if isinstance(node, And) else " OR "
            return "(" + word.join(self.where(o) for o in node.operands) + ")"
        if isinstance(node, Const):
            return "true()" if node.value else "false()"
        return self.predicate(node)  # type: ignore[arg-type]

    def predicate(self, p: Predicate) -> str:
        f = self.eval_field(p.field.name, p.span)
        if p.op is Op.EXISTS:
            return f"isnull({f})" if p.negated else f"isnotnull({f})"
        if p.op is Op.EMPTY:
            return f'(isnotnull({f}) AND {f}!="")' if p.negated else f'(isnull({f}) OR {f}=="")'
        if p.field.type in _NUMERIC:
            return self.numeric(p, f)
        x = f"coalesce({f}, \"\")"
        if p.op is Op.CIDR:
            return self.cidr(p, x)
        tests = [self.string_test(p, x, str(v)) for v in p.values]
        if not tests:  # no values: `in ()` is false
            body = "false()"
        elif len(tests) == 1:
            body = tests[0]
        else:
            body = "(" + (" AND " if p.all_values else " OR ").join(tests) + ")"
        return f"NOT {body}" if p.negated else body

    def cidr(self, p: Predicate, x: str) -> str:
        """`cidrmatch("net", x)` per network (eval syntax; x is `coalesce(f, "")`, which is no
        address, so a missing field is not inside and NOT is exact)."""
        networks = cidr_networks(p)
        for network in networks:
            if reads_ipv4(network):
                self.diagnostics.append(lossy(
                    TARGET, f"cidr {network} on {p.field.name} overlaps the IPv4-mapped block "
                            "::ffff:0:0/96: whether Splunk's cidrmatch puts an IPv4 value in it is "
                            "not documented (the IR never does)", p.span))
        tests = [f"cidrmatch({quote(str(n))}, {x})" for n in networks]
        if not tests:
            body = "true()" if p.all_values else "false()"
        elif len(tests) == 1:
            body = tests[0]
        else:
            body = "(" + (" AND " if p.all_values else " OR ").join(tests) + ")"
        return f"NOT {body}" if p.negated else body

    def string_test(self, p: Predicate, x: str, value: str) -> str:
        if not p.case_sensitive and not value.isascii() and not self._non_ascii_warned:
            self._non_ascii_warned = True
            self.diagnostics.append(lossy(
                TARGET, f"case-insensitive test of {p.field.name} with non-ASCII text: Splunk's "
                        "lower()/PCRE (?i) case folding of non-ASCII letters may differ from KQL's", p.span))
        if p.op is Op.EQUALS:
            if p.case_sensitive:
                return f"{x}=={quote(value)}" if not has_control(value) else \
                    f"match({x}, {regex_string('^' + regex_literal(value) + chr(92) + 'z')})"
            if has_control(value):
                return f"match({x}, {regex_string('(?i)^' + regex_literal(value) + chr(92) + 'z')})"
            return f"lower({x})=={quote(fold(value))}"
        flags = "" if p.case_sensitive else "(?i)"
        if p.op is Op.REGEX:
            return f"match({x}, {regex_string(flags + pcre(value))})"
        literal = regex_literal(value)
        body = {
            Op.CONTAINS: literal,
            Op.STARTSWITH: "^" + literal,
            Op.ENDSWITH: literal + "\\z",
            Op.TERM: term_regex(value),
            Op.TERM_PREFIX: term_regex(value, end=False),
            Op.TERM_SUFFIX: term_regex(value, start=False),
        }[p.op]
        return f"match({x}, {regex_string(flags + body)})"

    def numeric(self, p: Predicate, f: str) -> str:
        nums = [number(v) for v in p.values]
        if p.op is Op.EQUALS:
            hits = [f"{f}=={n}" for n in nums]
            if not p.negated:
                body = hits[0] if len(hits) == 1 else "(" + (" AND " if p.all_values else " OR ").join(hits) + ")"
                return f"(isnotnull({f}) AND {body})"
            misses = [f"{f}!={n}" for n in nums]
            body = misses[0] if len(misses) == 1 else "(" + (" OR " if p.all_values else " AND ").join(misses) + ")"
            return f"(isnull({f}) OR {body})"
        if p.op is Op.BETWEEN:
            low, high = nums[0], nums[1]
            body = f"({f}<{low} OR {f}>{high})" if p.negated else f"{f}>={low} AND {f}<={high}"
            return f"(isnotnull({f}) AND {body})"
        op = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}[p.op]
        if p.negated:
            op = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[op]
        return f"(isnotnull({f}) AND {f}{op}{nums[0]})"


# ------------------------------------------------------------------ output

_STATS = {"count": "count", "dcount": "dc", "min": "min", "max": "max", "sum": "sum", "avg": "avg",
          "make_set": "values", "make_list": "list", "any": "first", "take_any": "first"}


def _name(text: str) -> str:
    if not _PLAIN_NAME.match(text):
        raise ValueError(f"output name {text!r} cannot be written safely in SPL")
    return text


def _output(output: ClassicOutput, emitter: Emitter, found: list[Diagnostic]) -> list[str]:
    commands: list[str] = []
    produced: set[str] = set()

    def out_field(name: str) -> str:
        return name if name in produced else emitter.field(name)

    for name, value in output.constants:
        literal = number(value) if not isinstance(value, str) else None
        if isinstance(value, str) and not has_control(value):
            literal = quote(value)
        if literal is None:
            found.append(lossy(TARGET, f"constant column {name} = {value!r} is dropped (no exact SPL literal)"))
            continue
        commands.append(f"eval {_name(name)}={literal}")
        produced.add(name)
    for name, text in output.computed:
        found.append(lossy(TARGET, f"computed column {name} = {text} (KQL) is dropped: not translated to SPL"))
    agg = output.aggregation
    if agg is not None:
        keys = [emitter.field(k) for k in agg.group_by]
        if agg.bin_field is not None and agg.bin_size is not None:
            size, rounded = span_text(agg.bin_size)
            bf = emitter.field(agg.bin_field)
            commands.append(f"bin {bf} span={size}")
            found.append(lossy(TARGET, f"bin({agg.bin_field}, {agg.bin_size}) as `bin span={size}`: Splunk "
                                       "aligns bins to the search time zone, KQL to UTC"
                                       + (" (size rounded up to whole seconds)" if rounded else "")))
            if agg.bin_field not in agg.group_by:
                keys.append(bf)
        parts = []
        for a in agg.aggregates:
            function = _STATS.get(a.function)
            if function is None or a.args or (function != "count" and a.field is None) \
                    or (function == "count" and a.field is not None):
                found.append(lossy(TARGET, f"aggregate {a.name} = {a.function}"
                                           f"({', '.join(str(x) for x in ([a.field] if a.field else []) + list(a.args))}) "
                                           "is dropped: no exact stats function"))
                continue
            if function == "list":
                found.append(lossy(TARGET, f"{a.name} = make_list as list(): Splunk keeps at most 100 values"))
            if a.field == "Timestamp" and function in ("min", "max", "values", "list", "first"):
                found.append(note(TARGET, f"{a.name} holds _time as epoch seconds (KQL: a datetime)"))
            call = "count" if function == "count" else f"{function}({emitter.field(a.field)})"
            parts.append(f"{call} as {_name(a.name)}")
            produced.add(a.name)
        if keys:
            commands.append("fillnull value=\"\" " + " ".join(keys))
        by = (" by " + " ".join(keys)) if keys else ""
        if not parts:
            parts = ["count as Count"] if not keys else []
            if not keys:
                produced.add("Count")
        if parts:
            commands.append("stats " + " ".join(parts) + by)
        else:  # distinct: the groups only
            commands.extend(["stats count" + by, "fields - count"])
        produced.update(agg.group_by)
    if output.projection:
        commands.append("table " + " ".join(out_field(c) for c in output.projection))
    for old, new in output.renames:
        commands.append(f"rename {out_field(old)} as {_name(new)}")
        produced.add(new)
    if output.sort:
        keys = []
        for column, direction in output.sort:
            keys.append(("+" if (direction or "desc").lower().startswith("asc") else "-") + out_field(column))
        commands.append("sort 0 " + " ".join(keys))
        found.append(note(TARGET, "sort: Splunk orders nulls and mixed types its own way"))
    if output.limit is not None:
        commands.append(f"head {int(output.limit)}")
    for text in output.post:
        found.append(lossy(TARGET, f"KQL operator dropped (not translated to SPL): | {text}"))
    return commands


# ------------------------------------------------------------------ the rule


def _exclusions(rule: Rule, options: EmitOptions, found: list[Diagnostic]) -> list[Condition]:
    return exclusion_conditions(rule, options, TARGET, found)


def _check_prefix(prefix: str) -> str:
    if any(ch in prefix for ch in "|`[]") or has_control(prefix):
        raise ValueError(f"prefix {prefix!r} must be plain search terms (no |, `, [ ], control characters)")
    return prefix.strip()


def build_splunk(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: str = "sigma",
                 prefix: str | None = None) -> tuple[str, list[Diagnostic]]:
    """The SPL text and its diagnostics (raises ValueError for a name SPL cannot carry)."""
    found: list[Diagnostic] = []
    rule = push_filters(rule)
    refused = refuse_expression_tests(rule.condition, TARGET, "SPL (in rmmc today)")
    if refused:
        return "", refused
    emitter = Emitter(rule.source.table, fields, rule.source.taxonomy)
    condition = all_of([rule.condition, *_exclusions(rule, options, found)])
    condition, replaced = widen(condition, lambda n: not emitter.expressible(n))
    for node in replaced:
        span = getattr(node, "span", None)
        if isinstance(node, InSubquery):
            what = f"{node.field.name} in ({node.query})"
        else:
            what = f"{node.field.name} {'not ' if node.negated else ''}{node.op.value} {list(node.values)} " \
                   f"({node.field.type})"
        found.append(lossy(TARGET, f"{what} cannot be said exactly in SPL: dropped, so the query matches "
                                   "more events (never fewer)", span))
    condition = _nnf(condition)
    conjuncts = list(condition.operands) if isinstance(condition, And) else [condition]
    search_terms: list[str] = []
    if prefix:
        search_terms.append(_check_prefix(prefix))
    else:
        found.append(note(TARGET, "no index or sourcetype: the search covers the default indexes "
                                  "(pass prefix='index=... sourcetype=...')"))
    if rule.lookback is not None:
        text, rounded = span_text(rule.lookback.window)
        search_terms.append(f"earliest=-{text} latest=now")
        if rounded:
            found.append(lossy(TARGET, f"lookback {rule.lookback.window} rounded up to -{text}: "
                                       "slightly older events also match"))
    where_terms: list[str] = []
    for c in conjuncts:
        if c == Const(True):
            continue
        if emitter.searchable(c):
            search_terms.append(emitter.search(c))
        else:
            where_terms.append(emitter.where(c))
    lines = ["search " + (" ".join(search_terms) if search_terms else "*")]
    if where_terms:
        lines.append("| where " + " AND ".join(where_terms))
    lines.extend("| " + c for c in _output(classic_output(rule), emitter, found))
    found[:0] = emitter.diagnostics
    return "\n".join(lines) + "\n", found


def emit_splunk(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: str = "sigma",
                prefix: str | None = None) -> Translation:
    """Translate a rule to Splunk SPL, field names in the `fields` profile
    (`sigma`, `cim`, `ecs`, `defender`)."""
    try:
        text, found = build_splunk(rule, options, fields=fields, prefix=prefix)
    except ValueError as error:
        return Translation(TARGET, "", (unsupported(TARGET, str(error)),))
    return Translation(TARGET, text, tuple(found))
