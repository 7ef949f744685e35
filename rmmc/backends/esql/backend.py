"""IR -> ES|QL (Elasticsearch Query Language).

Shape of the query::

    FROM logs-*
    | WHERE @timestamp > NOW() - 5 days
    | WHERE <condition>
    | <each stage, in the rule's order: EVAL, WHERE, STATS, KEEP, DROP, RENAME, SORT, LIMIT>
    | LIMIT 10000

Field names come from a field profile (`rmmc.compiler.schema.profiles`, ECS by default);
a column the profile does not map is written under its own name with a warning naming it.
Names that are not plain identifiers are quoted with backticks (a backtick inside doubled).
Columns a stage makes keep the event field's name where they replace one, else their KQL name.

How the meaning is kept (the reference is `rmmc.compiler.evaluator` and `rmmc.compiler.rows`):

* String literals are double-quoted; `\\`, `"`, CR, LF and TAB are escaped (the ES|QL lexer:
  `'"' (ESCAPE_SEQUENCE | ~[\\r\\n"\\\\])* '"'` with `ESCAPE_SEQUENCE: '\\\\' [tnr"\\\\]`).
  Triple-quoted strings are never used.
* Nulls.  KQL reads a missing string as '' while ES|QL has nulls, and `NOT (x == "a")` is
  null (no match) on a null where KQL's `!=` matches.  Every string field is therefore read
  as `COALESCE(field, "")`: tests on strings are two-valued, exactly as in the IR.  Equality
  on a typed field is guarded (`field IS NOT NULL AND ...`) so that it is false, not null, on
  a null (the IR's `==` is false and `!=` true on a null).  Comparisons (`<`, between ...)
  stay three-valued in both languages, and WHERE keeps only true rows, as the IR does.  Every
  condition written has the IR's three values exactly, so it is also a bool value (`extend
  Flag = x > 5`, `iff(...)`).
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
* Another regex predicate (RE2 syntax), when case-sensitive, is `RLIKE ".*(...).*"` with the
  pattern in Lucene's syntax (`esql_regex.lucene_regex`: no `.*` on an anchored side, which
  refuses what Lucene cannot say); case-insensitive ones are refused (a regex cannot be
  lower-cased as a value can).
* Tests on expressions (`strlen(x) > 5`, `tolower(x) == 'a'`) and comparisons of two
  expressions are written like tests on fields, over the expression (`expr`).
* `InSubquery` is widened (replaced by the constant that keeps a superset of the events),
  each replaced node reported lossy.
* A union (`union`): one FROM of every branch's indexes, each branch's tests under its
  source's filter, OR-ed; per-source columns as `CASE` over the filters.
* Stages (`stages`): every stage in the rule's order, each with KQL's meaning; what ES|QL
  cannot say is refused (`unsupported`, located at the stage), never dropped.
* Rows.  ES|QL returns at most 1,000 rows unless a `LIMIT` says more, and never more than
  10,000 (`esql.query.result_truncation_max_size`, its documented default).  A rule that does
  not end with a take is written with `| LIMIT 10000`, and a note says that past 10,000 rows
  the result is cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rmmc.backends.base import (cidr_networks, reads_ipv4, EmitOptions, exclusion_conditions,
                                Translation, lossy, note, shape, unsupported, Wildcard, wildcard_pattern)
from rmmc.backends.esql.expr import Esql, ExprWriter, kind_of
from rmmc.backends.esql.regex import lucene_regex
from rmmc.backends.esql.stages import StageWriter
from rmmc.backends.esql.text import (NUMERIC as _NUMERIC, TEXT_LIKE as _TEXT_LIKE, Refusal,  # noqa: F401
                                     ident, join, like_escape, lucene_escape, paren, string_lit,
                                     strip_parens, time_span, typed_lit)
from rmmc.backends.widen import widen
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span
from rmmc.compiler.evaluator import fold, is_term_char
from rmmc.compiler.functions import describe
from rmmc.compiler.prefilter import is_own_superset, superset
from rmmc.compiler.pushdown import push_filters
from rmmc.compiler.ir import (And, Compare, Condition, Const, Field, InSubquery, Limit, Not, Op, Or,
                              Predicate, Rule, Summarize, all_of)

TARGET = "esql"
HANDLES = frozenset({"union"})
"""The constructs over several sources written here (`rmmc.backends.esql.union`); the others are
refused where they are used (`rmmc.backends._unhandled`)."""
DEFAULT_INDEX = "logs-*"
METADATA = ("_id", "_version", "_index")
"""What a non-aggregating ES|QL rule reads with `FROM ... METADATA` (Elastic's rule validation and
alert deduplication need them)."""
MAX_ROWS = 10_000
"""The most rows an ES|QL query returns (`esql.query.result_truncation_max_size`, default)."""

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


# ------------------------------------------------------------------ regexes of tests


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


def regex_lucene(pattern: str, span: Span | None) -> str:
    """A case-sensitive model regex (an unanchored RE2 search) as a whole-value Lucene regex;
    `Refusal` for what is not written."""
    try:
        return lucene_regex(pattern)
    except Refusal as refusal:
        raise Refusal(str(refusal), span) from None


# ------------------------------------------------------------------ conditions


@dataclass(frozen=True)
class Subject:
    """What a predicate tests: `raw` for null tests (a field as stored), `value` for the
    other tests (a string field through COALESCE), the model type, and whether `value` can be
    null (the test is then guarded so that a null makes it false, as in the IR)."""

    raw: str
    value: str
    type: str
    nullable: bool
    is_field: bool
    segment: bool = False  # text or null (one segment of a split)


@dataclass
class Emitter:
    """Conditions and expressions over the row as the stages so far made it.  `columns` holds
    the columns the stages made or kept by name (KQL name -> kind: `event` a field's stored
    value, `value` computed (a string never null), `segment`, `multi`); any other column is
    the event's field through the profile."""

    table: str | None
    profile: Any
    profile_name: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    case_folded: bool = False
    taxonomy: str | None = None  # "sigma": the rule's fields are Sigma names already
    columns: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Any] = field(default_factory=dict)  # `AdditionalFields.x` read as fields (paths.py)

    def __post_init__(self) -> None:
        self.writer = ExprWriter(self)

    def add(self, d: Diagnostic) -> None:
        if d not in self.diagnostics:
            self.diagnostics.append(d)

    # -- names

    def mapped(self, name: str) -> str | None:
        """The field a column names through the profile (None: unmapped), without a warning."""
        if self.profile is not None and self.taxonomy == "sigma":
            from rmmc.compiler.schema.profiles import rule_field

            return rule_field(self.profile, self.table, name, self.taxonomy)
        if self.profile is not None:  # a profile knows no column of no table: unmapped
            return self.profile.field(self.table, name)
        return None

    def out_name(self, name: str) -> str:
        """The ES|QL name of a column: its field through the profile, else its own."""
        return self.mapped(name) or name

    def column(self, name: str) -> str:
        if name in self.columns:
            return ident(self.out_name(name))
        if name in self.paths:  # a path into a dynamic column: the field JSON extraction names
            from rmmc.compiler.paths import path_name, path_warning_text

            written = path_name(self.paths[name], TARGET, self.table)
            self.add(Diagnostic(Severity.WARNING, path_warning_text(self.paths[name], written, TARGET),
                                None, "path"))
            return ident(written)
        mapped = self.mapped(name)
        if mapped is None:
            self.add(Diagnostic(Severity.WARNING, f"{TARGET}: column {name} has no field in the "
                                f"{self.profile_name!r} profile; written as {name}", None,
                                "unmapped-field"))
            mapped = name
        return ident(mapped)

    def check_own_name(self, name: str, span: Span | None = None) -> None:
        """Refuse a column written under its own name when that name is the field another column
        of the table maps to (writing it would replace that column's values)."""
        if self.mapped(name) is not None or self.profile is None or self.table is None:
            return
        columns = getattr(self.profile, "columns", None)
        targets = columns(self.table) if callable(columns) else {}
        owners = [c for c, f in targets.items() if f == name and c != name]
        if owners:
            raise Refusal(f"the column {name} would be written as {name}, the ES|QL field of the "
                          f"column {owners[0]}", span)

    # -- what the expression writer reads

    def column_value(self, f: Field) -> Esql:
        from rmmc.compiler.paths import PathField

        if isinstance(f, PathField):
            self.paths.setdefault(f.name, f)
        kind = self.columns.get(f.name)
        name = self.column(f.name)
        if kind in ("multi", "segment"):
            return Esql(name, kind)
        k = kind_of(f.type)
        if k == "string":
            return Esql(name if kind == "value" else f"COALESCE({name}, \"\")", "string", False)
        if k in ("number", "datetime", "bool"):
            return Esql(name, k)
        raise Refusal(f"{f.name} is a {f.type} column, which has no ES|QL value rmmc reads with "
                      "KQL's meaning")

    def condition_text(self, c: Condition) -> str:
        return self.emit(c)

    def note(self, message: str) -> None:
        self.add(note(TARGET, message))

    def shape(self, message: str) -> None:
        self.add(shape(TARGET, message))

    def expressible(self, node: Condition) -> bool:
        """False for a test ES|QL cannot say exactly (a subquery, a function or type rmmc has
        no ES|QL form for): a last filter widens them away (lossy), others refuse."""
        if isinstance(node, InSubquery):
            return False
        if not isinstance(node, (Predicate, Compare)):
            return True
        saved = (list(self.diagnostics), self.case_folded)
        try:
            self.emit(node)
        except Refusal:
            return False
        finally:
            self.diagnostics[:], self.case_folded = saved
        return True

    # -- conditions; every returned text is atomic or parenthesized, with the IR's three values

    def emit(self, c: Condition) -> str:
        if isinstance(c, Const):
            return "true" if c.value else "false"
        if isinstance(c, Predicate):
            return self.predicate(c)
        if isinstance(c, Compare):
            return self.compare(c)
        if isinstance(c, Not):
            return f"(NOT {self.emit(c.operand)})"
        if isinstance(c, (And, Or)):
            parts = [self.emit(o) for o in c.operands]
            return paren(join("AND" if isinstance(c, And) else "OR", parts))
        if isinstance(c, InSubquery):
            raise Refusal(f"{c.field.name} in ({c.query}): ES|QL cannot run a query over another "
                          "table here", c.span)
        raise Refusal(f"not a condition ES|QL can say: {c!r}")

    def subject(self, p: Predicate) -> Subject:
        from rmmc.compiler.paths import PathField

        kind = p.field.type.lower()
        if isinstance(p.field, PathField):
            self.paths.setdefault(p.field.name, p.field)
        if isinstance(p.field, Field):
            stored = self.columns.get(describe(p.field))
            if stored in ("multi",):
                raise Refusal(f"a test on {describe(p.field)}, which holds the values STATS collected: "
                              "no ES|QL test with KQL's meaning", p.span)
            col = self.column(describe(p.field))
            if stored == "segment":
                return Subject(col, col, kind, True, True, segment=True)
            if kind == "string":
                value = col if stored == "value" else f"COALESCE({col}, \"\")"
                return Subject(col, value, kind, False, True)
            return Subject(col, col, kind, True, True)
        value = self.writer.value(p.field, p.span)
        if value.kind == "multi":
            raise Refusal(f"a test on {describe(p.field)}: no ES|QL test of a collected list with "
                          "KQL's meaning", p.span)
        return Subject(value.text, value.text, kind, value.nullable, False,
                       segment=value.kind == "segment")

    def predicate(self, p: Predicate) -> str:
        kind = p.field.type.lower()
        s = self.subject(p)
        name = describe(p.field)
        stringish = kind in _TEXT_LIKE or s.segment
        if p.op is Op.EXISTS:
            if not s.is_field and not s.nullable:
                return "false" if p.negated else "true"  # a computed string is never null
            return f"({s.raw} IS {'' if p.negated else 'NOT '}NULL)"
        if p.op is Op.EMPTY:
            if stringish and not s.nullable:
                return f"({s.value} {'!=' if p.negated else '=='} \"\")"
            if s.segment:
                test = f"({s.value} IS NULL OR {s.value} == \"\")"
                return f"(NOT {test})" if p.negated else test
            return f"({s.raw} IS {'NOT ' if p.negated else ''}NULL)"
        if p.op in (Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN):
            return self.comparison(p, kind, s.value)
        if p.op is Op.CIDR:
            return self.cidr(p, kind, s.raw)
        patterns = []
        if p.op is Op.REGEX:
            patterns = [wildcard_pattern(v) if isinstance(v, str) else None for v in p.values]
            if any(x is None for x in patterns) and not p.case_sensitive:
                raise Refusal(f"regex on {name}: the pattern is RE2 syntax and ES|QL's RLIKE reads "
                              "Lucene syntax; rmmc translates only case-sensitive ones", p.span)
        if not stringish and not (p.op is Op.EQUALS and kind not in ("dynamic",)):
            raise Refusal(f"{p.op.value} on the {kind} field {name} has no exact "
                          "ES|QL form", p.span)
        if not p.values:  # any-of nothing is false, all-of nothing true
            return "true" if p.all_values != p.negated else "false"
        subject = s.value
        guard = f"{s.value} IS NOT NULL" if s.nullable else None
        if not p.case_sensitive and stringish:
            subject = f"TO_LOWER({subject})"
            self.case_folded = True
        if p.op is Op.EQUALS:
            test = self.equality(p, "string" if s.segment else kind, subject)
        elif p.op is Op.REGEX:
            tests = [f"{subject} LIKE {string_lit(self.like(p, x))}" if x is not None else
                     f"{subject} RLIKE {string_lit(regex_lucene(v, p.span))}"
                     for x, v in zip(patterns, p.values)]
            test = paren(join("AND" if p.all_values else "OR", tests))
        else:
            tests = [f"{subject} RLIKE {string_lit(pattern_regex(p.op, self.needle(p, v), p.case_sensitive))}"
                     for v in p.values]
            test = paren(join("AND" if p.all_values else "OR", tests))
        if guard is not None:
            test = f"({guard} AND {test})"
        return f"(NOT {test})" if p.negated else test

    def compare(self, c: Compare) -> str:
        """`left op right` between expressions, with the IR's three values: ordering with a
        null is null (in both); `==` / `=~` with a null is false and `!=` / `!~` true (KQL's
        equality is total), so equality is guarded."""
        left = self.writer.value(c.left, c.span)
        right = self.writer.value(c.right, c.span)
        what = f"{describe(c.left)} {c.op} {describe(c.right)}"
        strings = {"string", "segment"}
        if left.kind in strings and right.kind in strings:
            a, b, op = left.text, right.text, c.op
            if op in ("=~", "!~"):
                a, b, op = f"TO_LOWER({a})", f"TO_LOWER({b})", "==" if op == "=~" else "!="
                self.case_folded = True
            if op not in ("==", "!="):
                raise Refusal(f"{what}: KQL orders no strings", c.span)
        elif left.kind == right.kind and left.kind in ("number", "datetime", "bool") and c.op not in ("=~", "!~"):
            a, b, op = left.text, right.text, c.op
            if op not in ("==", "!=") and left.kind == "bool":
                raise Refusal(f"{what}: no order of bools rmmc writes", c.span)
            if op not in ("==", "!="):
                return f"({a} {op} {b})"
        else:
            raise Refusal(f"{what} ({left.kind}, {right.kind}): no ES|QL comparison with KQL's "
                          "meaning", c.span)
        nulls = [f"{v.text} IS NOT NULL" for v in (left, right) if v.nullable]
        equal = "(" + " AND ".join(nulls + [f"{a} == {b}"]) + ")"
        return equal if op == "==" else f"(NOT {equal})"

    def cidr(self, p: Predicate, kind: str, col: str) -> str:
        """`COALESCE(CIDR_MATCH(TO_IP(f), "net", ...), false)`: TO_IP gives null (with a
        warning header) for a text that is no address, CIDR_MATCH null on a null; COALESCE makes
        that false, so NOT is exact (a missing value or no address is not inside, as in the IR).
        all_values: one CIDR_MATCH per network, and-ed."""
        if kind not in ("string", "ip"):
            raise Refusal(f"cidr on the {kind} field {describe(p.field)} has no exact ES|QL form", p.span)
        networks = cidr_networks(p, Refusal)
        if not networks:
            return "true" if p.all_values != p.negated else "false"
        for network in networks:
            if reads_ipv4(network):
                self.add(lossy(TARGET, f"cidr {network} on {describe(p.field)} overlaps ::ffff:0:0/96: "
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

    def index_test(self, c: Condition) -> str | None:
        """A `prefilter.superset` condition as tests Elasticsearch answers from the index:
        `TO_LOWER(f) == "v"` / `IN (...)` (a case-insensitive term query) and `TO_LOWER(f) LIKE
        "*v*"` (a case-insensitive wildcard query; ES|QL pushes both down since 8.19 / 9.1).  No
        COALESCE: the needles are non-empty, so a null field (null, dropped by WHERE) and '' (false)
        agree, and the superset has no NOT.  None when a field is a column a stage made."""
        if isinstance(c, (And, Or)):
            parts = [self.index_test(o) for o in c.operands]
            if any(t is None for t in parts):
                return None
            return paren(join("AND" if isinstance(c, And) else "OR", parts))
        if not isinstance(c, Predicate) or describe(c.field) in self.columns or describe(c.field) in self.paths:
            return None
        subject = f"TO_LOWER({self.column(describe(c.field))})"
        self.case_folded = True
        values = [v for v in c.values if isinstance(v, str)]
        if c.op is Op.EQUALS:
            if len(values) == 1:
                return f"({subject} == {string_lit(values[0])})"
            return f"({subject} IN ({', '.join(string_lit(v) for v in values)}))"
        shape = {Op.CONTAINS: "*{}*", Op.STARTSWITH: "{}*", Op.ENDSWITH: "*{}"}[c.op]
        tests = [f"{subject} LIKE {string_lit(shape.format(like_escape(v)))}" for v in values]
        return paren(join("OR", tests))

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
            self.add(lossy(TARGET, f"{describe(p.field)}: the value {text!r} holds a character whose "
                           "lower case is longer (U+0130); ES|QL's TO_LOWER never yields it, so "
                           "text holding it no longer matches this value", p.span, p))
        return fold(text)

    def equality(self, p: Predicate, kind: str, subject: str) -> str:
        if kind in _TEXT_LIKE:
            values = [string_lit(self.needle(p, v)) for v in p.values]
        else:
            values = [typed_lit(v, kind, describe(p.field)) for v in p.values]
        if len(values) == 1:
            return f"({subject} == {values[0]})"
        if p.all_values:
            return paren(join("AND", [f"{subject} == {v}" for v in values]))
        return f"({subject} IN ({', '.join(values)}))"

    def comparison(self, p: Predicate, kind: str, col: str) -> str:
        if kind not in _NUMERIC and kind != "datetime":
            raise Refusal(f"{p.op.value} on the {kind} field {describe(p.field)}: rmmc orders only "
                          "numbers and datetimes in ES|QL", p.span)
        wanted = 2 if p.op is Op.BETWEEN else 1
        if len(p.values) != wanted:
            raise Refusal(f"{p.op.value} on {describe(p.field)} needs {wanted} value(s)", p.span)
        bounds = [typed_lit(v, kind, describe(p.field)) for v in p.values]
        if p.op is Op.BETWEEN:
            test = f"({col} >= {bounds[0]} AND {col} <= {bounds[1]})"
        else:
            symbol = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}[p.op]
            test = f"({col} {symbol} {bounds[0]})"
        return f"(NOT {test})" if p.negated else test  # three-valued in both languages




# ------------------------------------------------------------------ the rule


def where_parts(em: Emitter, condition: Condition) -> tuple[list[str], list[str]]:
    """The detection as (index tests, exact tests): each top-level conjunct's
    `prefilter.superset` (implied by it) in its indexable form first; a conjunct that is its own
    superset (a case-insensitive equality, contains, ... with a plain needle) is said there only."""
    conjuncts = list(condition.operands) if isinstance(condition, And) else [condition]
    index_parts: list[str] = []
    exact_parts: list[str] = []
    for c in conjuncts:
        pre = superset(c)
        test = None if pre == Const(True) else em.index_test(pre)
        if test is not None and test not in index_parts:
            index_parts.append(test)
        if test is None or not is_own_superset(c):
            exact_parts.append(em.emit(c))
    return index_parts, exact_parts


def _where(em: Emitter, condition: Condition) -> list[str]:
    """`WHERE <index tests>` then `WHERE <exact tests>` (see `where_parts`)."""
    index_parts, exact_parts = where_parts(em, condition)
    commands = []
    if index_parts:
        commands.append("WHERE " + strip_parens(join("AND", index_parts)))
    if exact_parts:
        commands.append("WHERE " + strip_parens(join("AND", exact_parts)))
    return commands


def detection(em: Emitter, rule: Rule, options: EmitOptions, found: list[Diagnostic]) -> Condition:
    """The rule's detection with its exclusions, each subquery widened away (reported lossy)."""
    def exclusion_text(c: Condition) -> str:
        side = Emitter(em.table, em.profile, em.profile_name, taxonomy=em.taxonomy)
        wide, _ = widen(Not(c), lambda n: isinstance(n, InSubquery))
        return "as ES|QL: | WHERE " + strip_parens(side.emit(wide))

    condition = all_of([rule.condition, *exclusion_conditions(
        rule, options, TARGET, found, render=exclusion_text, form="ES|QL", refusal=Refusal)])
    condition, replaced = widen(condition, lambda n: isinstance(n, InSubquery))
    for node in replaced:
        assert isinstance(node, InSubquery)
        said = lossy(TARGET, f"{node.field.name} {'!' if node.negated else ''}in "
                             f"({node.query}) needs another query, which ES|QL cannot "
                             "run here: the test is dropped and events it would reject "
                             "now match", node.span, node)
        if said not in found:
            found.append(said)
    return condition


def lookback_test(em: Emitter, rule: Rule, found: list[Diagnostic]) -> str | None:
    """`<time> > NOW() - <span>` for the rule's lookback (None without one)."""
    if rule.lookback is None:
        return None
    span, rounded = time_span(rule.lookback.window)
    if rounded:
        said = lossy(TARGET, f"lookback {rule.lookback.window} rounded up to {span} "
                             "(ES|QL spans are whole milliseconds): slightly older "
                             "events now match", subject="lookback")
        if said not in found:
            found.append(said)
    return f"{em.column('Timestamp')} > NOW() - {span}"


def _table(rule: Rule) -> str | None:
    if rule.source.table:
        return rule.source.table
    from rmmc.backends.kql import KIND_TABLES

    return KIND_TABLES.get(rule.source.kind)


def _keep_metadata(written: list[str], aggregates: bool, found: list[Diagnostic]) -> list[str]:
    """A non-aggregating rule's KEEPs also keep the metadata the alerts are deduplicated by."""
    if aggregates:
        return written
    written = [c + ", " + ", ".join(METADATA) if c.startswith("KEEP ") and not c.endswith(", *") else c
               for c in written]
    said = note(TARGET, "KEEP also keeps " + ", ".join(METADATA) + ": Elastic deduplicates "
                        "the alerts of a non-aggregating rule by them")
    if any(c.startswith("KEEP ") for c in written) and said not in found:
        found.append(said)
    return written


_INDEX = re.compile(r"[A-Za-z0-9._*:+-]+(,[A-Za-z0-9._*:+-]+)*")


def emit_esql(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: str = "ecs",
              index: str = DEFAULT_INDEX) -> Translation:
    """The rule as ES|QL text (empty when refused), with lossy/unsupported/note diagnostics."""
    from rmmc.compiler.paths import with_paths

    found: list[Diagnostic] = []
    rule = push_filters(rule)
    rule, _ = with_paths(rule)  # `AdditionalFields.x`: a field named by its path
    profile = _load_profile(fields)
    index = getattr(options.placement, "index", None) or index
    if profile is None:
        found.append(note(TARGET, f"field profile {fields!r} is not available: columns keep "
                                  "their Defender names"))
    em = Emitter(_table(rule), profile, fields, taxonomy=rule.source.taxonomy)
    stages = StageWriter(em)
    try:
        if not _INDEX.fullmatch(index):
            raise Refusal(f"index pattern {index!r} is not a plain index pattern")
        aggregates = any(isinstance(s, Summarize) for s in rule.stages)
        # Elastic's rule validation requires the metadata on a non-aggregating query (alert ids)
        commands = [f"FROM {index}" if aggregates else f"FROM {index} METADATA {', '.join(METADATA)}"]
        if rule.union is not None:
            from rmmc.backends.esql.union import union_commands

            union_head, em = union_commands(rule, options, profile, fields, found)
            stages = StageWriter(em, known=em.known)
            commands = [f"FROM {em.index}" if aggregates else f"FROM {em.index} METADATA {', '.join(METADATA)}"]
            commands += _keep_metadata(union_head, aggregates, found)
        else:
            since = lookback_test(em, rule, found)
            if since is not None:
                commands.append(f"WHERE {since}")
            condition = detection(em, rule, options, found)
            if condition != Const(True):
                commands += _where(em, condition)
        commands += _keep_metadata(stages.write(rule.stages), aggregates, found)
        last = rule.stages[-1] if rule.stages else None
        if not isinstance(last, Limit):
            commands.append(f"LIMIT {MAX_ROWS}")
            found.append(note(TARGET, f"ES|QL returns 1,000 rows unless a LIMIT says more and never "
                                      f"more than {MAX_ROWS:,} (its default maximum): LIMIT {MAX_ROWS} "
                                      "is written, and rows past it are cut"))
        elif last.count > MAX_ROWS:
            found.append(note(TARGET, f"ES|QL returns at most {MAX_ROWS:,} rows (its default maximum): "
                                      f"rows past that of the LIMIT {last.count} are cut"))
    except Refusal as refusal:
        found.append(unsupported(TARGET, str(refusal), refusal.span or rule.metadata.source_span))
        return Translation(TARGET, "", tuple(em.diagnostics + stages.diagnostics + found))
    if em.case_folded:
        found.append(note(TARGET, "case-insensitive tests lower-case the field with TO_LOWER: it "
                                  "agrees with KQL's folding except on U+0130 'İ', which TO_LOWER "
                                  "turns into 'i' + U+0307"))
    return Translation(TARGET, "\n| ".join(commands), tuple(em.diagnostics + stages.diagnostics + found))
