"""IR -> Splunk SPL: the detection as a `search` plus, where needed, one `| where`, then
every stage of the rule in its order.

Shape of the query:

    search [prefix] earliest=-<lookback> latest=now <search conjuncts>
    | where <eval conjuncts>
    | <each stage: eval, where, stats, table, fields, rename, sort, head (splunk_stages)>

Filters that can move into the detection are moved there first (`pushdown.push_filters`:
by substitution, exact); the others stay `| where` in their place, after stats too.
Scalar expressions are eval expressions with KQL's meaning (`expr`, where the table
of functions lives); a test on an expression or a comparison of two expressions is a `where`
test like any other.

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
`lower(x)=="v"` (or `x=="v"` when case-sensitive; eval compares two strings as text).  Field
names other than plain
identifiers are single-quoted in eval (`'process.pe.company'`: a bare dot would
concatenate).

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

**Stages** (`stages`): computed columns are `eval`s that read the row before them;
aggregation is `fillnull` + `stats` (or `eventstats` + `where` + `dedup` for arg_max by the
event time); what SPL cannot say with KQL's meaning is refused (`unsupported`, located at
the stage), never dropped: a stage that would change which rows come back is no warning.
Losing only output shape (values() order, a column renamed) is a `shape` warning.
Fields go through the field profile (`fields=`); Timestamp is `_time`.

**Index / sourcetype**: none is emitted unless `prefix=` is given (e.g. `index=edr
sourcetype=...`, inserted verbatim after `search`, refused if it holds `|`, a backquote or a
control character); without it a note says the search runs over every index searched by default.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rmmc.backends.base import (cidr_networks, exclusion_conditions, EmitOptions, Translation, lossy, note,
                                reads_ipv4, shape, unsupported)
from rmmc.backends.splunk.expr import (BOOL_TESTS, ExprWriter, Spl, SplRefusal, epoch, eval_name, set_holds,
                                       regex_literal, regex_string, seconds)
from rmmc.backends.widen import widen
from rmmc.compiler.diagnostics import Diagnostic, Span
from rmmc.compiler.text_rules import fold_to_ascii, is_term_char, re2_dollar
from rmmc.compiler.functions import describe, fold
from rmmc.compiler.prefilter import PrintableAsciiBut, superset
from rmmc.compiler.pushdown import push_filters
# (stages, lookups and multi are imported where a rule needs them: most rules are one source's
# detection, and a cold start does without the three modules)
from rmmc.compiler.diagnostics import Severity
from rmmc.compiler.ir import (JOIN, SUBQUERY, UNION, And, Call, Compare, Condition, Const, Field, InSubquery, Not,
                              Op, Or, Predicate, Rule, all_of, any_of, features,
                              unchanged_operands)
from rmmc.compiler.ir import Project as ir_Project
from rmmc.compiler.paths import PathField, path_name, path_warning_text, resolve_path, with_paths
from rmmc.compiler.schema.profiles import load_profile, rule_field

TARGET = "splunk"
TIME_FIELD = "_time"
HANDLES = frozenset({"union", "join", "subquery", "parse", "externaldata", "mv-expand"})
"""The constructs over several sources this backend writes (see `rmmc.backends.emit`)."""
WHY_NOT = {
    "mv-expand": "Splunk holds an array as a multivalue field only where its JSON extraction made "
                 "one (`field{}`), which tells neither null from [] nor keeps a scalar, an object or a "
                 "number as KQL's element (mvexpand drops an event without the field, KQL keeps a null "
                 "one), and split() and values() do not say their empty values",
}
"""Why a construct this backend does not write has no SPL form with KQL's meaning."""

_SEARCH_OPS = frozenset({Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH})
_STRING_TEST_OPS = frozenset({Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM,
                              Op.TERM_PREFIX, Op.TERM_SUFFIX, Op.REGEX})
_TRUE = Const(True)
_NUMERIC = frozenset({"int", "long", "real", "double", "decimal"})
_STRINGLIKE = frozenset({"string", "guid"})
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DIGITS = re.compile(r"[0-9]+")
_SEARCH_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@-]*\Z")
_EVAL_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@ -]*\Z")
_SAFE_NAMES: set[str] = set()
"""Field names found safe in both search and eval (`Emitter.field`), kept across rules (at
most a few thousand: the names of an environment's fields)."""

# ------------------------------------------------------------------ literals


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """Whether the text holds an ASCII control character (C0 or DEL)."""
    if text.isprintable():  # (C) no control character, nor any other unprintable one
        return False
    return _CONTROL.search(text) is not None


def quote(text: str) -> str:
    """A double-quoted SPL string: `\\` and `"` escaped.  Control characters are refused
    (callers route such values to a regex, where they are written as `\\x{hh}`)."""
    if has_control(text):
        raise ValueError(f"control character in {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=1024)
def _network_literal(network: Any) -> str:
    """A network's strict notation quoted (`cidrmatch`'s first argument), remembered per network
    (writing an IPv6 network out is slow, and the same ranges come back rule after rule)."""
    return quote(str(network))


def pcre(pattern: str) -> str:
    """A model (RE2) regex as PCRE reads it the same: PCRE's `$` also matches before a final
    line break, RE2's only at the very end, so each unescaped `$` outside a character class
    becomes PCRE's `\\z` (`evaluator.re2_dollar`; multi-line patterns keep their `$`)."""
    return re2_dollar(pattern, "\\z")


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
    predicate read as false, so each predicate is emitted as `true exactly when KQL says true`.
    (The kinds are asked commonest first: predicates, then And / Or.)"""
    if isinstance(node, Predicate):
        return node if positive else node.negate()
    if isinstance(node, (And, Or)):
        return _nnf_group(node, positive)
    if isinstance(node, Not):
        return _nnf(node.operand, not positive)
    if isinstance(node, Compare):
        return node if positive else Compare(node.left, _COMPLEMENT[node.op], node.right, node.span)
    if isinstance(node, InSubquery):
        if positive:
            return node
        return replace(node, negated=not node.negated)
    if isinstance(node, Const):
        return Const(node.value == positive)
    raise TypeError(f"not expected here: {node!r}")


def _nnf_group(node: And | Or, positive: bool) -> Condition:
    """`_nnf` of an And / Or: its parts', joined (the other way round under a NOT).  A positive
    predicate is its own part (what `_nnf` gives it), without a call."""
    if positive:
        parts = [o if o.__class__ is Predicate else _nnf(o, True) for o in node.operands]
    else:
        parts = [_nnf(o, False) for o in node.operands]
    if positive and unchanged_operands(parts, node.operands, type(node)):
        return node  # what `all_of` / `any_of` would build again (no constant among the parts)
    conj = isinstance(node, And) == positive
    if conj:
        if _holds_const(parts, False):
            return Const(False)
        return all_of(parts)
    if _holds_const(parts, True):
        return Const(True)
    return any_of(parts)


def _holds_const(parts: list[Condition], value: bool) -> bool:
    """`Const(value) in parts`, without comparing every predicate with a constant (two
    dataclass `__eq__` calls each, always unequal)."""
    for part in parts:
        if isinstance(part, Const) and part.value == value:
            return True
    return False


_COMPLEMENT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "==", "=~": "!~", "!~": "=~"}
"""not(a op b) as one comparison: ordering with a null stays unknown, equality stays total."""


def _seconds_of(value: Any) -> Any:
    """A datetime as epoch seconds, a timespan as seconds (how SPL holds them), else itself."""
    if isinstance(value, datetime):
        return epoch(value)
    if isinstance(value, timedelta):
        return seconds(value)
    return value


_ALTERNATION_OPS = frozenset({Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX})
_EDGES = {Op.CONTAINS: ("", ""), Op.STARTSWITH: ("^", ""), Op.ENDSWITH: ("", "\\z"),
          Op.TERM: ("term", "term"), Op.TERM_PREFIX: ("term", ""), Op.TERM_SUFFIX: ("", "term")}
"""Each regex operator's edges (`term`: the TERM boundary where the needle's end is a letter or
digit, as `term_regex` writes it)."""


_SEARCH_WILDCARDS = {Op.EQUALS: ("", ""), Op.CONTAINS: ("*", "*"), Op.STARTSWITH: ("", "*"), Op.ENDSWITH: ("*", "")}
"""What a search value has before and after the needle for each operator search says."""


def _search_values(values: tuple) -> bool:
    """Whether search can say a test of these values: at least one, each a non-empty text
    (so the test cannot match '', see null handling) of printable ASCII without the wildcard
    `*`, which search cannot escape.  Checked once over the values joined by a space (which
    is none of what the checks look for); a value that is no text makes the join fail."""
    if not values or "" in values:
        return False
    try:
        text = " ".join(values)
    except TypeError:  # a number, a datetime ...
        return False
    return text.isascii() and text.isprintable() and "*" not in text


class Emitter:
    """Conditions and expressions over the row as the stages so far made it.  `columns` holds
    the columns the stages made (KQL name -> SPL name and kind: `string`, `number`, `time`,
    `segment`, `multi`); any other column is the event's field through the profile.

    Made for every rule (and sub-rule) written, by a plain `__init__`: a dataclass's asked
    for each of its eight container fields whether one was passed before making it."""

    def __init__(self, table: str | None, profile_name: str, taxonomy: str | None = None) -> None:
        self.table = table
        self.profile_name = profile_name
        self.taxonomy = taxonomy  # "sigma": the rule's fields are Sigma names already
        self.diagnostics: list[Diagnostic] = []
        self.columns: dict[str, tuple[str, str]] = {}
        self._fields: dict[str, str] = {}
        self._non_ascii_warned: set = set()  # predicates already reported
        self.paths: dict[str, PathField] = {}  # `AdditionalFields.x` read as fields
        self.aliases: dict[str, Any] = {}  # columns that are a dynamic value (paths.dynamic_alias)
        self.subsearch: Any = None  # sub-rule -> (its SPL commands, its emitter), for joins and subqueries
        self.options: Any = None  # the translation's EmitOptions (how external tables are held: lookups)
        self.sets: dict = {}  # column -> "string" / "integer": every distinct value a make_set collected
        self.profile = load_profile(profile_name)
        self._last_warned: tuple[set, Predicate] | None = None  # see `_warned_of`

    @property
    def writer(self) -> ExprWriter:
        """The expression writer over this emitter's columns, made when asked: it holds nothing
        but the emitter, and kept on it the two were a reference cycle, so every rule's
        emitter (its dicts, diagnostics, names) waited for the garbage collector."""
        return ExprWriter(self)

    # ---------------------------------------------------------------- fields

    def field(self, column: str, span: Span | None = None) -> str:
        """The Splunk field of a column (Timestamp -> _time; unmapped: the column, warned)."""
        if column in self.columns:
            return self.columns[column][0]
        if column in self._fields:
            return self._fields[column]
        if column in ("Timestamp", "TimeGenerated"):  # Defender / Sentinel event time
            name = TIME_FIELD
        elif column in self.paths:
            path = resolve_path(self.paths[column], self.aliases)
            name = path_name(path, TARGET, self.table)
            self.diagnostics.append(Diagnostic(Severity.WARNING, path_warning_text(path, name, TARGET),
                                               span, "path"))
        else:
            name = rule_field(self.profile, self.table, column, self.taxonomy)
            if name is None:
                name = column
                where = f"table {self.table}" if self.table else "a rule without a table"
                self.diagnostics.append(lossy(
                    TARGET, f"field {column} has no '{self.profile_name}' field mapping for {where}: "
                            f"emitted as '{column}' (the test matches only if the data has that field)", span, subject=Field(column)))
        if name not in _SAFE_NAMES:
            if not _SEARCH_NAME.match(name) or not _EVAL_NAME.match(name):
                raise ValueError(f"field name {name!r} cannot be written safely in SPL")
            if len(_SAFE_NAMES) < 4096:
                _SAFE_NAMES.add(name)
        self._fields[column] = name
        return name

    def mapped(self, column: str) -> str | None:
        """The event field a column names through the profile, without a warning (None: none)."""
        if column in ("Timestamp", "TimeGenerated"):
            return TIME_FIELD
        name = rule_field(self.profile, self.table, column, self.taxonomy)
        return name if name is not None and _SEARCH_NAME.match(name) else None

    def eval_field(self, column: str, span: Span | None = None) -> str:
        return eval_name(self.field(column, span))

    def column_text(self, field: Field) -> tuple[str, str]:
        """(eval name, kind) of a column, for the expression writer."""
        if isinstance(field, PathField):
            self.paths.setdefault(field.name, field)
        if field.name in self.columns:
            name, kind = self.columns[field.name]
            return eval_name(name), kind
        name = self.field(field.name, None)
        return eval_name(name), ("eventtime" if name == TIME_FIELD else "event")

    def condition_text(self, condition: Condition) -> str:
        return self.where(_nnf(condition))

    def shape_note(self, message: str, span: Span | None = None) -> None:
        if not any(d.message == f"{TARGET}: {message}" for d in self.diagnostics):
            self.diagnostics.append(shape(TARGET, message, span))

    # ---------------------------------------------------------------- what goes where

    def expressible(self, node: Condition) -> bool:
        """False for the tests SPL cannot say exactly (a subquery, a type or function SPL has
        no form for): the detection widens them away (lossy), a later filter refuses them."""
        if isinstance(node, InSubquery):
            return False
        if not isinstance(node, (Predicate, Compare)):
            return True
        if self.searchable(node):  # its eval form can only fail in naming the field
            name, said = node.field.name, len(self.diagnostics)
            known = name in self._fields  # naming it records only its own entry: undone alone
            try:
                self.field(name, None)
            except SplRefusal:
                return False
            finally:
                del self.diagnostics[said:]
                if not known:
                    self._fields.pop(name, None)
            return True
        saved = (len(self.diagnostics), dict(self._fields), set(self._non_ascii_warned))
        try:
            self.where(node)
        except SplRefusal:
            return False
        finally:
            del self.diagnostics[saved[0]:]
            self._fields, self._non_ascii_warned = saved[1], saved[2]
        return True

    def searchable(self, node: Condition) -> bool:
        """Whether search terms say the condition exactly (every predicate of it `says_in_search`)."""
        if isinstance(node, (And, Or)):
            return all(self.searchable(o) for o in node.operands)
        return isinstance(node, Predicate) and self.says_in_search(node)

    def says_in_search(self, p: Predicate) -> bool:
        """Whether a search term says the predicate exactly: a case-insensitive EQUALS /
        CONTAINS / STARTSWITH / ENDSWITH on an event's string field, with values search can
        quote (`_search_values`)."""
        if isinstance(p.field, PathField):
            self.paths.setdefault(p.field.name, p.field)
        return (isinstance(p.field, Field) and p.field.name not in self.columns
                and p.field.type == "string" and p.op in _SEARCH_OPS and not p.case_sensitive
                and _search_values(p.values))

    # ---------------------------------------------------------------- search syntax

    def search(self, node: Condition) -> str | None:
        """The condition as search terms, or None when search cannot say it exactly
        (`searchable`), found in the same walk that writes it: a predicate's field is named
        only once every predicate before it was found searchable, and the `where` form that
        follows a None names those fields first too, in the same order."""
        if isinstance(node, Predicate):
            return self.search_predicate(node) if self.says_in_search(node) else None
        if isinstance(node, (And, Or)):
            parts = []
            for operand in node.operands:
                part = self.search(operand)
                if part is None:
                    return None
                parts.append(part)
            return "(" + (" AND " if isinstance(node, And) else " OR ").join(parts) + ")"
        return None

    def search_predicate(self, p: Predicate) -> str:
        """A predicate search says (`says_in_search`) as search terms."""
        name = self.field(p.field.name, p.span)
        head, tail = _SEARCH_WILDCARDS[p.op]
        # every value quoted in one pass: no value holds the separator (`_search_values`)
        escaped = "\x00".join(p.values).replace("\\", "\\\\").replace('"', '\\"')
        if len(p.values) == 1:
            text = f'{name}="{head}{escaped}{tail}"'
        elif p.all_values:
            text = "(" + " AND ".join(f'{name}="{head}{v}{tail}"' for v in escaped.split("\x00")) + ")"
        else:
            text = f'{name} IN ("{head}' + escaped.replace("\x00", f'{tail}", "{head}') + f'{tail}")'
        return f"NOT {text}" if p.negated else text

    # ---------------------------------------------------------------- eval syntax

    def where(self, node: Condition) -> str:
        """A condition in NNF as an eval boolean, true exactly when KQL's is (never null)."""
        if isinstance(node, Predicate):
            return self.predicate(node)
        if isinstance(node, (And, Or)):
            word = " AND " if isinstance(node, And) else " OR "
            return "(" + word.join(self.where(o) for o in node.operands) + ")"
        if isinstance(node, Const):
            return "true()" if node.value else "false()"
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, InSubquery):
            raise SplRefusal(f"{node.field.name} in ({node.query}): SPL cannot run a subquery over "
                             "another table with KQL's meaning", node.span)
        raise SplRefusal(f"no SPL form for the condition {node!r}")

    def predicate(self, p: Predicate) -> str:
        subject, kind = p.field, p.field.type
        if p.op is Op.EXISTS:
            value = self.subject(p, raw=True)
            if value.kind == "string":  # a computed string is never null in KQL
                return "false()" if p.negated else "true()"
            return f"isnull({value.text})" if p.negated else f"isnotnull({value.text})"
        if p.op is Op.EMPTY:
            value = self.subject(p, raw=True)
            if value.kind == "string":
                return f'{value.text}!=""' if p.negated else f'{value.text}==""'
            if value.kind == "multi":
                raise SplRefusal(f"isempty() of {describe(subject)}: a collected list is never empty "
                                 "in KQL's sense here", p.span)
            f = value.text
            if value.kind == "segment" or (isinstance(subject, Field) and kind in _STRINGLIKE):
                return f'(isnotnull({f}) AND {f}!="")' if p.negated else f'(isnull({f}) OR {f}=="")'
            return f"isnotnull({f})" if p.negated else f"isnull({f})"
        if kind in _NUMERIC or kind in ("datetime", "timespan"):
            return self.numeric(p, self.writer.number(subject, p.span))
        if kind == "bool" and isinstance(subject, Call) and subject.function in BOOL_TESTS \
                and p.op is Op.EQUALS and p.values and all(isinstance(v, bool) for v in p.values):
            return self.bool_test(p, *BOOL_TESTS[subject.function](self.writer, subject, p.span))
        if kind in _STRINGLIKE:
            x = self.writer.string(subject, p.span)
            return self.string_predicate(p, x)
        if kind == "dynamic":
            value = self.subject(p, raw=False)
            if value.kind == "multi" and p.op is Op.TERM and isinstance(subject, Field) \
                    and self.sets.get(subject.name) == "integer" and p.values \
                    and all(isinstance(v, str) and _DIGITS.fullmatch(v) for v in p.values):
                return self.number_terms(p, value.text)
            if value.kind in ("string", "segment") and p.op in _STRING_TEST_OPS:
                # a dynamic string or null: a null passes only the negated test (evaluator)
                test = self.string_predicate(replace(p, negated=False), f"coalesce({value.text}, \"\")")
                if value.kind == "string":
                    return f"NOT {test}" if p.negated else test
                if p.negated:
                    return f"(isnull({value.text}) OR NOT {test})"
                return f"(isnotnull({value.text}) AND {test})"
        raise SplRefusal(f"{describe(subject)} {'not ' if p.negated else ''}{p.op.value} "
                         f"{list(p.values)} ({kind}): no SPL test with KQL's meaning", p.span)

    def number_terms(self, p: Predicate, collected: str) -> str:
        """`S has '21'` of a set of integers: KQL tests the terms of S's JSON text (`[21,-53]`),
        and an integer's only term is its digits, so a digit needle is a term of the text when
        it is an element's digits: `mvfind` (Search Reference: the index of the first value
        matching the regex, else null) over the values `values()` collected as text."""
        tests = [set_holds(collected, "^-?" + v + "\\z") for v in p.values]
        body = tests[0] if len(tests) == 1 else "(" + (" AND " if p.all_values else " OR ").join(tests) + ")"
        return f"NOT {body}" if p.negated else body

    def bool_test(self, p: Predicate, defined: str, true: str) -> str:
        """`f(x) == v` for a bool function: a null value equals nothing (so `!=` holds)."""
        tests = [true if v else f"({defined} AND NOT {true})" for v in p.values]
        body = tests[0] if len(tests) == 1 else "(" + (" AND " if p.all_values else " OR ").join(tests) + ")"
        return f"NOT {body}" if p.negated else body

    def subject(self, p: Predicate, raw: bool) -> "Spl":
        """A predicate's subject; `raw`: a column as the field itself (null when missing)."""
        subject = p.field
        if isinstance(subject, Field) and subject.name in self.aliases:
            # a column standing for a path (`S = parse_json(AdditionalFields).x`): the field JSON
            # extraction names, as `tostring(S)` reads it (null where the path is absent)
            from rmmc.compiler.paths import field_path, resolve_aliases

            path = field_path(resolve_aliases(subject, self.aliases))
            if path is not None:
                return Spl(self.column_text(path)[0], True, "segment")
        if isinstance(subject, Field):
            name, kind = self.column_text(subject)
            if kind == "multi":
                return Spl(name, True, "multi")
            if kind == "segment":
                return Spl(name, True, "segment")
            return Spl(name, True, "event")
        return self.writer.value(subject, p.span)

    def string_predicate(self, p: Predicate, x: str) -> str:
        if p.op is Op.CIDR:
            return self.cidr(p, x)
        if p.op not in _STRING_TEST_OPS:
            raise SplRefusal(f"{p.op.value} on the string {describe(p.field)}: KQL orders no strings", p.span)
        texts = self.texts(p)
        if len(texts) > 1 and not p.all_values and p.op in _ALTERNATION_OPS:
            # each value as its own test would check, fold and warn it
            tests = self.alternation(p, x, [self.needle(p, v) for v in texts])
        else:
            tests = [self.string_test(p, x, v) for v in texts]
        if not tests:  # no values: `in ()` is false
            body = "false()"
        elif len(tests) == 1:
            body = tests[0]
        else:
            body = "(" + (" AND " if p.all_values else " OR ").join(tests) + ")"
        return f"NOT {body}" if p.negated else body

    def alternation(self, p: Predicate, x: str, needles: list[str]) -> list[str]:
        """Any of several needles (the predicate's values as `needle` reads them) as one
        `match()` per kind of edge: `H(?:a|b|c)T` matches where `HaT`, `HbT` or `HcT` does (a
        regex alternation is the union), so the event is read once instead of once per needle
        (the all-tools rule: 186 needles, one regex)."""
        groups: dict[tuple[str, str], list[str]] = {}
        head, tail = _EDGES[p.op]
        for value in needles:
            start = head if head != "term" else ("(^|[^0-9A-Za-z])" if value and is_term_char(value[0]) else "")
            end = tail if tail != "term" else ("($|[^0-9A-Za-z])" if value and is_term_char(value[-1]) else "")
            groups.setdefault((start, end), []).append(regex_literal(value))
        flags = "" if p.case_sensitive else "(?i)"
        return [f"match({x}, {regex_string(flags + start + (literals[0] if len(literals) == 1 else '(?:' + '|'.join(literals) + ')') + end)})"
                for (start, end), literals in groups.items()]

    def texts(self, p: Predicate) -> list[str]:
        """The predicate's values as text, in order, in one call (a test may hold hundreds);
        a regex must be text.  (Writing a value never fails before its text does, and a
        failure discards what the values before it said, so asking them all first is the
        same.)"""
        if p.op is Op.REGEX:
            for value in p.values:
                if not isinstance(value, str):
                    raise SplRefusal(f"regex {value!r} on {describe(p.field)} is not text", p.span)
        return [str(v) for v in p.values]

    def compare(self, node: Compare) -> str:
        """`left op right` between expressions, true exactly when KQL's is: ordering with a
        null is unknown (false here), `==` with a null false and `!=` true."""
        left_type, right_type = node.left.type, node.right.type
        op = node.op
        if left_type in _STRINGLIKE and right_type in _STRINGLIKE:
            a, b = self.writer.string(node.left, node.span), self.writer.string(node.right, node.span)
            if op in ("=~", "!~"):
                a, b, op = f"lower({a})", f"lower({b})", "==" if op == "=~" else "!="
            if op not in ("==", "!="):
                raise SplRefusal(f"{describe(node.left)} {node.op} {describe(node.right)}: KQL orders no "
                                 "strings", node.span)
            return f"{a}{op}{b}"
        numeric = _NUMERIC | {"datetime", "timespan"}
        if left_type not in numeric or right_type not in numeric or op in ("=~", "!~"):
            raise SplRefusal(f"{describe(node.left)} {node.op} {describe(node.right)} ({left_type}, "
                             f"{right_type}): no SPL comparison with KQL's meaning", node.span)
        a, b = self.writer.number(node.left, node.span), self.writer.number(node.right, node.span)
        nullable = [v.text for v in (a, b) if v.nullable]
        if op == "!=":
            return "(" + " OR ".join([f"isnull({t})" for t in nullable] + [f"{a.text}!={b.text}"]) + ")"
        return "(" + " AND ".join([f"isnotnull({t})" for t in nullable] + [f"{a.text}{op}{b.text}"]) + ")"

    def cidr(self, p: Predicate, x: str) -> str:
        """`cidrmatch("net", x)` per network (eval syntax; x is `coalesce(f, "")`, which is no
        address, so a missing field is not inside and NOT is exact)."""
        networks = cidr_networks(p)
        for network in networks:
            if reads_ipv4(network):
                self.diagnostics.append(lossy(
                    TARGET, f"cidr {network} on {p.field.name} overlaps the IPv4-mapped block "
                            "::ffff:0:0/96: whether Splunk's cidrmatch puts an IPv4 value in it is "
                            "not documented (the IR never does)", p.span, subject=p))
        tests = [f"cidrmatch({_network_literal(n)}, {x})" for n in networks]
        if not tests:
            body = "true()" if p.all_values else "false()"
        elif len(tests) == 1:
            body = tests[0]
        else:
            body = "(" + (" AND " if p.all_values else " OR ").join(tests) + ")"
        return f"NOT {body}" if p.negated else body

    def needle(self, p: Predicate, value: str) -> str:
        """A value as the test reads it (folded as the evaluator folds it unless cased), its
        non-ASCII case folding reported once per predicate."""
        if not p.case_sensitive and p.op is not Op.REGEX:  # the needle as the evaluator folds it
            value = fold_to_ascii(value)
        if not p.case_sensitive and not value.isascii() and not self._warned_of(p):
            self._non_ascii_warned.add(p)
            self._last_warned = (self._non_ascii_warned, p)
            self.diagnostics.append(lossy(
                TARGET, f"case-insensitive test of {p.field.name} with non-ASCII text: Splunk's "
                        "lower()/PCRE (?i) case folding of non-ASCII letters may differ from KQL's", p.span, subject=p))
        return value

    def _warned_of(self, p: Predicate) -> bool:
        """`p in self._non_ascii_warned`, without hashing all of p's values again for each of
        them: the last predicate found or added there is remembered with the set it is in
        (a rolled-back emitter holds another set, so it is asked again)."""
        warned = self._non_ascii_warned
        last = self._last_warned
        if last is not None and last[0] is warned and last[1] is p:
            return True
        if p in warned:
            self._last_warned = (warned, p)
            return True
        return False

    def string_test(self, p: Predicate, x: str, value: str) -> str:
        value = self.needle(p, value)
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
        op = p.op
        if op is Op.CONTAINS:
            body = regex_literal(value)
        elif op is Op.STARTSWITH:
            body = "^" + regex_literal(value)
        elif op is Op.ENDSWITH:
            body = regex_literal(value) + "\\z"
        else:  # TERM, TERM_PREFIX, TERM_SUFFIX
            body = term_regex(value, start=op is not Op.TERM_SUFFIX, end=op is not Op.TERM_PREFIX)
        return f"match({x}, {regex_string(flags + body)})"

    def numeric(self, p: Predicate, value: Spl) -> str:
        """A test on a number (a datetime as epoch seconds): a null makes `==` and the
        comparisons false and `!=` true, as in KQL; the null guards test the columns the value
        is null through (none for a value never null)."""
        # (an int, the commonest value - an event id -, is its repr: what `number` gives it)
        nums = tuple([repr(v) if v.__class__ is int else number(_seconds_of(v)) for v in p.values])
        if not nums or None in nums or (p.op is Op.BETWEEN and len(nums) != 2):
            raise SplRefusal(f"{describe(p.field)} {p.op.value} {list(p.values)}: not a number SPL "
                             "can compare with", p.span)
        return _numeric_test(value.text, value.null_tests(), p.op, nums, p.negated, p.all_values)


@functools.lru_cache(maxsize=4096)
def _numeric_test(f: str, tests: tuple[str, ...], op: Op, nums: tuple[str, ...], negated: bool,
                  all_values: bool) -> str:
    """`Emitter.numeric`'s test of the value `f` (null when one of `tests` is) against the
    numbers `nums` as SPL writes them: a function of these alone, remembered (an environment's
    own filter, `EventCode==1`, is one of every rule's tests; event ids come back rule after
    rule), up to 4,096."""
    if op is Op.EQUALS:
        hits = [f"{f}=={n}" for n in nums]
        if not negated:
            body = hits[0] if len(hits) == 1 else "(" + (" AND " if all_values else " OR ").join(hits) + ")"
            return _present(tests, body)
        misses = [f"{f}!={n}" for n in nums]
        body = misses[0] if len(misses) == 1 else "(" + (" OR " if all_values else " AND ").join(misses) + ")"
        return _absent(tests, body)
    if op is Op.BETWEEN:
        low, high = nums[0], nums[1]
        body = f"({f}<{low} OR {f}>{high})" if negated else f"{f}>={low} AND {f}<={high}"
        return _present(tests, body) if tests else f"({body})"
    text = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}[op]
    if negated:
        text = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[text]
    return _present(tests, f"{f}{text}{nums[0]}")


def _present(tests: tuple[str, ...], body: str) -> str:
    """`body` where none of the values `tests` names is null (else false)."""
    return "(" + " AND ".join([f"isnotnull({t})" for t in tests] + [body]) + ")" if tests else body


def _absent(tests: tuple[str, ...], body: str) -> str:
    """`body`, or true where one of the values `tests` names is null."""
    return "(" + " OR ".join([f"isnull({t})" for t in tests] + [body]) + ")" if tests else body


# ------------------------------------------------------------------ the rule


def _exclusions(rule: Rule, options: EmitOptions, found: list[Diagnostic]) -> list[Condition]:
    return exclusion_conditions(rule, options, TARGET, found)


_MACRO = re.compile(r"`[A-Za-z0-9_.:-]+(?:\([^`|\[\]]*\))?`")


@functools.lru_cache(maxsize=64)
def _check_prefix(prefix: str, macros: bool = False) -> str:
    """Plain search terms; with `macros` (an environment's own search prefix), also macro calls
    such as `sysmon` in backquotes.  Memoised: a function of its text alone, asked once per
    rule of a batch with the same environment's search."""
    text = _MACRO.sub("", prefix) if macros else prefix
    if any(ch in text for ch in "|`[]") or has_control(prefix):
        raise ValueError(f"prefix {prefix!r} must be plain search terms (no |, `, [ ], control characters)"
                         + (" besides macro calls" if macros else ""))
    return prefix.strip()


class UnionEmitter(Emitter):
    """The columns of a union's rows: each named alike in every source's SPL fields."""

    def __init__(self, table: str | None, profile_name: str, taxonomy: str | None = None) -> None:
        super().__init__(table, profile_name, taxonomy)
        self.branches: list[Emitter] = []

    def field(self, column: str, span: Span | None = None) -> str:
        if column in self.columns:
            return self.columns[column][0]
        names = {b.field(column, span) for b in self.branches}
        if len(names) != 1:
            raise SplRefusal(f"the column {column} is named differently in the union's sources "
                             f"({', '.join(sorted(names))}): no one SPL field holds it", span)
        return names.pop()

    def mapped(self, column: str) -> str | None:
        names = {b.mapped(column) for b in self.branches}
        return names.pop() if len(names) == 1 else None


_DATAMODEL = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\.([A-Za-z][A-Za-z0-9_]*)\Z")


def _make_emitter(rule: Rule, fields: str, options: EmitOptions, prefix: str | None,
                  found: list[Diagnostic]) -> Emitter:
    emitter = Emitter(rule.source.table, fields, rule.source.taxonomy)
    emitter.subsearch = lambda sub: _subsearch(sub, options, fields, prefix, found)
    emitter.options = options
    return emitter


def _terms(emitter: Emitter, rule: Rule, options: EmitOptions, found: list[Diagnostic],
           pulled: list[InSubquery] | None = None, plain: str | None = None) -> tuple[list[str], list[str]]:
    """The detection's (search terms, where terms); with `pulled`, top-level subqueries with a
    model are taken out (to become joins).  `plain`: the caller found the detection
    `_plain_tests` already (what it gave)."""
    condition, excluded = _detection(rule, options, found)
    if type(emitter) is Emitter:
        form = plain if plain and not excluded else _plain_tests(condition)
        if form:  # (no subquery to pull)
            written = _written_at_once(emitter, condition, in_nnf=form is _PLAIN_NNF)
            if written is not None:
                return written
    if pulled is not None:
        conjuncts = _nnf(condition)
        conjuncts = list(conjuncts.operands) if isinstance(conjuncts, And) else [conjuncts]
        kept = []
        for c in conjuncts:
            if isinstance(c, InSubquery) and c.rule is not None and (
                    c.op is Op.EQUALS or c.rule.source.external is not None):
                pulled.append(c)
            else:
                kept.append(c)
        condition = all_of(kept)
    condition, replaced = widen(condition, lambda n: not emitter.expressible(n))
    for node in replaced:
        span = getattr(node, "span", None)
        if isinstance(node, InSubquery):
            what = f"{node.field.name} in ({node.query})"
        elif isinstance(node, Compare):
            what = f"{describe(node.left)} {node.op} {describe(node.right)}"
        else:
            what = f"{describe(node.field)} {'not ' if node.negated else ''}{node.op.value} {list(node.values)} " \
                   f"({node.field.type})"
        found.append(lossy(TARGET, f"{what} cannot be said exactly in SPL: dropped, so the query matches "
                                   "more events (never fewer)", span, subject=node))
    return _split_terms(emitter, condition)


def _detection(rule: Rule, options: EmitOptions, found: list[Diagnostic]) -> tuple[Condition, bool]:
    """The detection with the exclusions applied ANDed in, and whether there were any: the
    rule's own condition object when none is (most rules have no exclusion)."""
    excluded = _exclusions(rule, options, found) if rule.exclusions else []
    return (all_of([rule.condition, *excluded]), True) if excluded else (rule.condition, False)


_PLAIN, _PLAIN_NNF = "plain tests", "plain tests in negation normal form"
"""What `_plain_tests` finds a condition of plain tests holding no Not, or holding one."""


def _plain_tests(condition: Condition) -> str | None:
    """Whether every test of the condition is a predicate on a plain column (no constant,
    comparison, subquery, path or computed subject) and every And / Or is as `all_of` /
    `any_of` build them (two operands or more, none of its own kind).  Then writing a test
    has no lasting effect but its own diagnostics and field names, and whether it can be
    written depends only on the test (`_written_at_once`); and the condition is what
    `push_filters` (`simplify`), `with_paths` and `_late_feed_tests` give back, the same
    object, so a rule without stages holding it needs none of them (`_settled`).  None when
    not; else `_PLAIN_NNF` when the condition holds no Not, so that it is its own negation
    normal form (`_nnf` gives it back, the same object, as it gives back every And / Or
    `all_of` / `any_of` built of positive predicates), else `_PLAIN`."""
    negated = False
    stack = [condition]
    while stack:
        node = stack.pop()
        kind = node.__class__
        if kind is Predicate:
            if node.field.__class__ is not Field:
                return None
        elif kind is And or kind is Or:
            operands = node.operands
            if len(operands) < 2:
                return None
            for operand in operands:
                if operand.__class__ is kind:
                    return None
                stack.append(operand)
        elif kind is Not:
            negated = True
            stack.append(node.operand)
        else:
            return None
    return _PLAIN if negated else _PLAIN_NNF


def _settled(rule: Rule) -> str | None:
    """Whether the rule is one source's detection of plain tests and nothing else: no union, no
    stage, no external source, a `_plain_tests` condition.  `features` finds nothing in it,
    and pushing filters down, reading paths as fields and taking feed tests out give it back
    as it is (the same object), so the writer skips them.  What `_plain_tests` gave, else None."""
    if rule.union is None and not rule.stages and rule.source.external is None:
        return _plain_tests(rule.condition)
    return None


def _written_at_once(emitter: Emitter, condition: Condition,
                     in_nnf: bool = False) -> tuple[list[str], list[str]] | None:
    """`_terms` of a condition of plain tests (`_plain_tests`) without first asking of each
    test whether SPL can say it (`Emitter.expressible` writes it only to throw the text away):
    when every conjunct is written, nothing was to be widened, and widening would have
    returned the condition as it is (it holds no constant to fold; nor a subquery to pull,
    so putting it into negation normal form first, as `_terms` does to pull them, gives what
    `_split_terms` gives it); when one cannot be written, the emitter is put back as it was
    and None says so (the caller widens).  `in_nnf`: see `_split_terms`."""
    saved = (len(emitter.diagnostics), dict(emitter._fields), set(emitter._non_ascii_warned))
    try:
        return _split_terms(emitter, condition, in_nnf)
    except Exception:  # SplRefusal, a name SPL cannot carry ...: the widening path decides (and raises)
        del emitter.diagnostics[saved[0]:]
        emitter._fields, emitter._non_ascii_warned = saved[1], saved[2]
        return None


def _split_terms(emitter: Emitter, condition: Condition, in_nnf: bool = False) -> tuple[list[str], list[str]]:
    """The widened detection as (search terms, where terms): each top-level conjunct of its
    negation normal form to search when it can go there, else to where (with a search term
    implied by it, for the index).  `in_nnf`: the caller knows the condition is its own
    negation normal form (`_PLAIN_NNF`), so it is not walked to find that again."""
    if not in_nnf:
        condition = _nnf(condition)
    conjuncts = list(condition.operands) if isinstance(condition, And) else [condition]
    search_terms: list[str] = []
    where_terms: list[str] = []
    for c in conjuncts:
        if c.__class__ is Const and c == _TRUE:
            continue
        term = emitter.search(c)
        if term is not None:
            search_terms.append(term)
            continue
        where_terms.append(emitter.where(c))
        prefilter = superset(c, _search_char)  # implied by c: the index narrows, where decides
        if prefilter.__class__ is not Const or not prefilter.value:
            # asked and written in one walk (`search`): its fields are c's, named by `where`
            # already, so a walk that stops half-way names nothing new
            term = emitter.search(prefilter)
            if term is not None and term not in search_terms:
                search_terms.append(term)
    return search_terms, where_terms


_search_char = PrintableAsciiBut("*")
"""The characters a quoted search value says literally (printable ASCII but the wildcard)."""


def _head(rule_lookbacks: list[Any], prefix: str | None, found: list[Diagnostic], quiet: bool = False,
          placement: Any = None) -> list[str]:
    """The search's leading terms: the prefix (else the environment's own search, macros allowed),
    the lookback."""
    terms: list[str] = []
    if prefix:
        terms.append(_check_prefix(prefix))
    elif getattr(placement, "search", None):
        terms.append(_check_prefix(placement.search, macros=True))
    elif not quiet and getattr(placement, "datamodel", None) is None and \
            not any(t.search for _, t in getattr(placement, "parts", ())):  # each branch has its own
        found.append(note(TARGET, "no index or sourcetype: the search covers the default indexes "
                                  "(pass prefix='index=... sourcetype=...')"))
    windows = {lb.window for lb in rule_lookbacks if lb is not None}
    if len(windows) > 1:
        raise SplRefusal("the union's sources look back over different windows: one search has one "
                         "time range")
    if windows:
        window = windows.pop()
        text, rounded = span_text(window)
        terms.append(f"earliest=-{text} latest=now")
        if rounded:
            found.append(lossy(TARGET, f"lookback {window} rounded up to -{text}: "
                                       "slightly older events also match", subject="lookback"))
    return terms


def _commands(rule: Rule, options: EmitOptions, fields: str, prefix: str | None, found: list[Diagnostic],
              select: bool, sub: bool = False, settled: str | None = None) -> tuple[list[str], Emitter]:
    """A single-table rule's SPL commands (the first is `search ...`) and its emitter;
    `settled`: the caller found the rule `_settled` (what that gave)."""
    late: list[Condition] = []
    if not settled:
        rule = push_filters(rule)
        rule = with_paths(rule)[0]
        rule, late = _late_feed_tests(rule)
    emitter = _make_emitter(rule, fields, options, prefix, found)
    pulled: list[InSubquery] = []
    search_terms, where_terms = _terms(emitter, rule, options, found, pulled, plain=settled)
    head = _head([rule.lookback], prefix, found, quiet=sub, placement=options.placement)
    if select and not getattr(options.placement, "parts", ()):  # else each source's filter selects it
        from rmmc.backends.splunk.multi import selector

        placed = bool(prefix or getattr(options.placement, "search", None))
        head.insert(1 if placed else 0, selector(rule.source.table)[0])
    commands = ["search " + (" ".join(head + search_terms) if head or search_terms else "*")]
    if where_terms:
        commands.append("where " + " AND ".join(where_terms))
    for node in pulled:
        from rmmc.backends.splunk.lookups import membership_commands
        from rmmc.backends.splunk.multi import subquery_commands, subsearch_note

        if node.rule.source.external is not None:  # a feed: its lookup, in this search
            left = emitter.writer.string(node.field, node.span)
            commands.extend(membership_commands(node, left, lambda: Emitter(None, fields), options, found))
            continue
        commands.extend(subquery_commands(node, emitter))
        found.append(subsearch_note())
    if late:  # tests of feeds inside or / not: each a flag on the events, then the test
        from rmmc.backends.splunk.lookups import membership_commands

        flags: list[InSubquery] = []
        condition = _nnf(all_of([_flagged(c, flags) for c in late]))
        for i, node in enumerate(flags):
            flag = f"rmmc_f{i + 1}"
            left = emitter.writer.string(node.field, node.span)
            commands.extend(membership_commands(node, left, lambda: Emitter(None, fields), options, found, flag))
            emitter.columns[flag] = (flag, "number")
        commands.append("where " + emitter.where(condition))
        commands.append("fields - " + " ".join(f"rmmc_f{i + 1}" for i in range(len(flags))))
    if rule.stages:  # (a writer of no stage writes nothing and says nothing)
        from rmmc.backends.splunk.stages import StageWriter

        stages = StageWriter(emitter)
        commands.extend(stages.write(rule.stages))
        found.extend(stages.diagnostics)
    found[:0] = emitter.diagnostics
    return commands, emitter


def _is_feed_test(node: Any) -> bool:
    return isinstance(node, InSubquery) and node.rule is not None and node.rule.source.external is not None


def _late_feed_tests(rule: Rule) -> tuple[Rule, list[Condition]]:
    """The rule without the conjuncts of its detection that test a feed inside `or` / `not`
    (a plain `x in (feed)` conjunct stays: it filters the events directly), and those conjuncts."""
    from rmmc.compiler.ir import subqueries, walk

    if not any(_is_feed_test(n) for n in subqueries(rule.condition)):
        return rule, []  # no feed test at all (what `_nnf` keeps, it keeps as a subquery test)
    condition = _nnf(rule.condition)
    conjuncts = list(condition.operands) if isinstance(condition, And) else [condition]
    late = [c for c in conjuncts if not _is_feed_test(c) and any(_is_feed_test(n) for n in walk(c))]
    if not late:
        return rule, []
    return replace(rule, condition=all_of([c for c in conjuncts if not any(c is x for x in late)])), late


def _branch_feed_tests(part: Rule, emitter: Emitter, flags: list[InSubquery], emitters: list[Emitter]) \
        -> tuple[Rule, Condition | None]:
    """A union branch without the conjuncts of its detection that test a feed, and those
    conjuncts (NNF) with each feed test a test of its flag field, numbered after the flags of
    the branches before (`flags`, each test's branch emitter in `emitters`, which reads the flags)."""
    from rmmc.compiler.ir import walk

    condition = _nnf(part.condition)
    conjuncts = list(condition.operands) if isinstance(condition, And) else [condition]
    late = [c for c in conjuncts if any(_is_feed_test(n) for n in walk(c))]
    if not late:
        return part, None
    before = len(flags)
    flagged = _nnf(all_of([_flagged(c, flags) for c in late]))
    for i in range(before, len(flags)):
        emitters.append(emitter)
        emitter.columns[f"rmmc_f{i + 1}"] = (f"rmmc_f{i + 1}", "number")
    return replace(part, condition=all_of([c for c in conjuncts if not any(c is x for x in late)])), flagged


def _flagged(condition: Condition, flags: list[InSubquery]) -> Condition:
    """The condition with each feed test replaced by a test of its flag field `rmmc_f<i>` (set
    on the events whose value the feed holds), the tests collected in `flags`."""
    if _is_feed_test(condition):
        flags.append(condition)
        return Predicate(Field(f"rmmc_f{len(flags)}", "long"), Op.EXISTS, negated=condition.negated)
    if isinstance(condition, (And, Or)):
        return type(condition)(tuple(_flagged(c, flags) for c in condition.operands))
    if isinstance(condition, Not):
        return Not(_flagged(condition.operand, flags))
    return condition


def _subsearch(rule: Rule, options: EmitOptions, fields: str, prefix: str | None,
               found: list[Diagnostic]) -> tuple[list[str], Emitter]:
    if rule.union is not None:
        raise SplRefusal("a union inside a join or subquery has no SPL form here")
    if rule.source.external is not None:
        raise SplRefusal("a join against an external table is not written over its lookup (a subquery "
                         "`in (feed ...)` is)", rule.source.external.span)
    from rmmc.backends.splunk.multi import placed

    sub_found: list[Diagnostic] = []
    commands, emitter = _commands(replace(rule, exclusions=()),
                                  EmitOptions(loose=options.loose, placement=placed(options.placement, rule.source.table)),
                                  fields,
                                  prefix, sub_found, select=True, sub=True)
    for d in sub_found:
        if d not in found:
            found.append(d)
    return commands, emitter


def _union(rule: Rule, options: EmitOptions, fields: str, prefix: str | None,
           found: list[Diagnostic]) -> tuple[list[str], Emitter]:
    from rmmc.backends.splunk.lookups import membership_commands
    from rmmc.backends.splunk.multi import branch_column_commands, union_search
    from rmmc.backends.splunk.stages import StageWriter
    from rmmc.compiler.branches import split_union

    def emitter_for(part: Rule) -> Emitter:
        part_paths = with_paths(part)[1]
        made = _make_emitter(part, fields, options, prefix, found)
        made.paths.update((p.name, p) for p in part_paths)
        return made

    feed_tests: list[InSubquery] = []  # every branch's feed tests, numbered across the union
    feed_emitters: list[Emitter] = []
    lates: list[Condition | None] = []  # per branch: its conjuncts holding feed tests, on their flags

    def terms_of(made: Emitter, part: Rule) -> tuple[list[str], list[str]]:
        part = with_paths(part)[0]
        part, late = _branch_feed_tests(part, made, feed_tests, feed_emitters)
        lates.append(late)
        return _terms(made, part, options, found)

    rule = push_filters(rule)  # a filter over the union is tested in every branch, never dropped
    searches, wheres, emitters, selectors = union_search(rule, emitter_for, terms_of, options.placement)
    parts = [part for _, part in split_union(replace(rule, stages=()))]
    lookbacks = [part.lookback for part in parts]
    head = _head(lookbacks, prefix, found, placement=options.placement)
    commands = ["search " + (" ".join(head + ([" OR ".join(searches)] if searches else [])) or "*")]
    if wheres:
        commands.append("where " + " OR ".join(wheres))
    if feed_tests:  # tests of feeds in a branch: each a flag on every event, then each branch's test
        made_flags: dict[tuple[str, ...], str] = {}  # the same test of the same field: one flag
        for i, (node, made) in enumerate(zip(feed_tests, feed_emitters)):
            left = made.writer.string(node.field, node.span)
            flag = f"rmmc_f{i + 1}"
            flagging = membership_commands(node, left, lambda: Emitter(None, fields), options, found, "rmmc_fx")
            key = tuple(flagging)
            if key in made_flags:
                commands.append(f"eval {flag}={made_flags[key]}")
                continue
            made_flags[key] = flag
            commands.extend(c.replace("rmmc_fx", flag) for c in flagging)
        tests = []
        for (label, sel_eval), made, late in zip(selectors, emitters, lates):
            if sel_eval is None:
                raise SplRefusal(f"the union's source {label} cannot be told apart from the others after "
                                 "its search, where its feed tests are made")
            tests.append(f"({sel_eval} AND {made.where(late)})" if late is not None else f"({sel_eval})")
        commands.append("where " + " OR ".join(tests))
        commands.append("fields - " + " ".join(f"rmmc_f{i + 1}" for i in range(len(feed_tests))))
    union = UnionEmitter(None, fields)
    union.branches = emitters
    union.subsearch = lambda sub: _subsearch(sub, options, fields, prefix, found)
    union.options = options
    later = rule.stages
    commands.extend(branch_column_commands(union, parts, emitters, selectors, later))
    stages = StageWriter(union)
    commands.extend(stages.write(later))
    for made in [*emitters, union]:
        found.extend(d for d in made.diagnostics if d not in found)
    found.extend(stages.diagnostics)
    return commands, union


def _feeds_only(rule: Rule) -> bool:
    """Whether every other source the rule reads (its joins' right sides, its subqueries) is an
    external table: a feed's lookup, not events, so no table needs telling apart."""
    from rmmc.compiler.ir import sub_rules

    others = sub_rules(rule)
    return bool(others) and all(o.source.external is not None for o in others)


def build_splunk(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: str = "sigma",
                 prefix: str | None = None) -> tuple[str, list[Diagnostic]]:
    """The SPL text and its diagnostics (raises ValueError for a name SPL cannot carry)."""
    found: list[Diagnostic] = []
    settled = _settled(rule)
    used = {} if settled else features(rule)
    several = UNION in used or ((JOIN in used or SUBQUERY in used) and not _feeds_only(rule))
    if rule.source.external is not None:  # `Feed | join (T ...)`: read from T's side
        from rmmc.backends.splunk.lookups import feed_first
        from rmmc.backends.splunk.multi import placed

        rule = feed_first(rule)
        used = features(rule)
        several = UNION in used or ((JOIN in used or SUBQUERY in used) and not _feeds_only(rule))
        options = replace(options, placement=placed(options.placement, rule.source.table))
    if JOIN in used:  # `A | join kind=rightanti (B)`: read from B's side
        from rmmc.backends.splunk.multi import placed, right_joins_swapped

        swapped = right_joins_swapped(rule)
        if swapped is not rule:
            rule = swapped
            options = replace(options, placement=placed(options.placement, rule.source.table))
    datamodel = getattr(options.placement, "datamodel", None)
    if datamodel is not None and _DATAMODEL.match(datamodel) is None:
        raise ValueError(f"data model {datamodel!r} is not <Model>.<Dataset>")
    if several:  # a branch's data model is never dropped for a plain search
        models = list(dict.fromkeys(m for m in [datamodel, *(getattr(t, "datamodel", None) for _, t in
                                                           getattr(options.placement, "parts", ()))] if m))
        if models:
            raise SplRefusal(f"the environment reads data model datasets ({', '.join(models)}): a union, "
                             "join or subquery over several sources has no form there")
    if options.splunk_form == "tstats":
        from rmmc.backends.splunk.tstats import build_tstats

        return "\n".join(build_tstats(rule, options, fields, found)) + "\n", found
    if rule.union is not None:
        commands, _ = _union(rule, options, fields, prefix, found)
    else:
        commands, _ = _commands(rule, options, fields, prefix, found, select=several, settled=settled)
    if several and not getattr(options.placement, "parts", ()):
        from rmmc.backends.splunk.multi import selector_warning

        found.append(selector_warning())
    lines = [commands[0]] + ["| " + c for c in commands[1:]]
    if datamodel is not None:  # the data model's events, fields named <Dataset>.<field>
        model, dataset = _DATAMODEL.match(datamodel).groups()
        lines = [f"| datamodel {model} {dataset} search", "| " + lines[0], *lines[1:]]
    return "\n".join(lines) + "\n", found


def emit_splunk(rule: Rule, options: EmitOptions = EmitOptions(), *, fields: str = "sigma",
                prefix: str | None = None) -> Translation:
    """Translate a rule to Splunk SPL, field names in the `fields` profile
    (`sigma`, `cim`, `ecs`, `defender`)."""
    try:
        text, found = build_splunk(rule, options, fields=fields, prefix=prefix)
    except ValueError as error:  # SplRefusal too: a located reason (else at the rule's query)
        return Translation(TARGET, "", (unsupported(TARGET, str(error), getattr(error, "span", None)
                                                    or rule.metadata.source_span),))
    return Translation(TARGET, text, tuple(found))
