"""IR -> KQL (Microsoft Defender XDR advanced hunting, or Sentinel for Sentinel tables).

The query is built as a KQL syntax tree (`rmmc.compiler.kql.ast`) and printed with
`to_kql`, so every value sits inside a literal the printer escaped and every name is
bracketed when it is not a plain identifier: no value can change the query's structure.

Each IR node becomes the KQL operator whose meaning the reference evaluator
(`rmmc.compiler.evaluator`) gives it, i.e. the inverse of the KQL lowering:

    <Table>                              (or: union [withsource=C] <branch>, <branch> ...)
    | where Timestamp > ago(<lookback>)
    | where <detection>
    | <each stage in the rule's order: extend, where, summarize, project, sort, take,
       join kind=K (<right sub-rule>) on ..., mv-expand, parse ...>

Sub-rules (union branches, a join's right side, a subquery `x in (<sub-rule>)`) are written
the same way, recursively; a branch that is a bare table is written as its name.

Where KQL cannot say a node exactly the translation carries a `lossy` diagnostic; where
it cannot say it at all, an `unsupported` one and no text.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta, timezone
import math
import re
from typing import Any, Iterator

from rmmc.backends.base import (cidr_networks, reads_ipv4, exclusion_conditions, EmitOptions,
                                Translation, lossy, note, unsupported)
from rmmc.compiler.kql import ast as A
from rmmc.compiler.diagnostics import Diagnostic, RmmcError, Severity, Span
from rmmc.compiler.evaluator import coerce, evaluate_predicate
from rmmc.compiler.functions import SYMBOLS
from rmmc.compiler.ir import (COMPARE_OPS, Aggregate, And, Call, Compare, Condition, Const, EventKind,
                              Extend, Field, Filter, InSubquery, Join, Limit, Literal, MvExpand, Not, Op,
                              Or, Parse, Predicate, Project, ProjectAway, Rename, Reorder, Rule, Sort,
                              Stage, Star, Summarize, Boolean, Value, all_of)
from rmmc.compiler.kql.printer import to_kql

TARGET = "kql"
HANDLES = frozenset({"union", "join", "subquery", "mv-expand", "parse", "externaldata"})
"""The constructs over several sources this backend writes (see `rmmc.backends.emit`)."""

# ------------------------------------------------------------------ tables and time


DEFENDER_TABLES = frozenset("""
    AADSignInEventsBeta AADSpnSignInEventsBeta AlertEvidence AlertInfo BehaviorEntities
    BehaviorInfo CloudAppEvents CloudAuditEvents CloudProcessEvents DeviceEvents
    DeviceFileCertificateInfo DeviceFileEvents DeviceImageLoadEvents DeviceInfo
    DeviceLogonEvents DeviceNetworkEvents DeviceNetworkInfo DeviceProcessEvents
    DeviceRegistryEvents EmailAttachmentInfo EmailEvents EmailPostDeliveryEvents EmailUrlInfo
    IdentityDirectoryEvents IdentityInfo IdentityLogonEvents IdentityQueryEvents
    MessageEvents MessagePostDeliveryEvents MessageUrlInfo OAuthAppInfo UrlClickEvents
""".split())
"""Defender XDR advanced-hunting tables: their time column is `Timestamp`.  Every other
table is taken as a Sentinel (Log Analytics) table, whose time column is `TimeGenerated`."""

KIND_TABLES = {
    EventKind.PROCESS: "DeviceProcessEvents",
    EventKind.NETWORK: "DeviceNetworkEvents",
    EventKind.FILE: "DeviceFileEvents",
    EventKind.REGISTRY: "DeviceRegistryEvents",
    EventKind.IMAGE_LOAD: "DeviceImageLoadEvents",
    EventKind.DEVICE_EVENT: "DeviceEvents",
    EventKind.LOGON: "DeviceLogonEvents",
    EventKind.FILE_CERTIFICATE: "DeviceFileCertificateInfo",
}
"""The Defender table holding each kind of event, for rules that name no table."""


def time_column(table: str) -> str:
    """The column a lookback filters on: `Timestamp` in Defender XDR, `TimeGenerated` in Sentinel."""
    return "Timestamp" if table in DEFENDER_TABLES else "TimeGenerated"


_TIMESPAN_UNITS = (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000),
                   ("s", 1_000_000), ("ms", 1_000), ("microsecond", 1))


def timespan_literal(span: timedelta) -> A.Expr:
    """The exact KQL literal of a timedelta, in the largest unit that divides it
    (`5d`, `12h`, `90m`, `30s`, `250ms`, `7microsecond`); never rounded."""
    micros = span // timedelta(microseconds=1)
    size = abs(micros)
    if size == 0:
        literal = A.TimespanLit("0s")
    else:
        unit, per = next((u, p) for u, p in _TIMESPAN_UNITS if size % p == 0)
        literal = A.TimespanLit(f"{size // per}{unit}")
    return A.Unary("-", literal) if micros < 0 else literal


# ------------------------------------------------------------------ literals


_TYPE_ALIASES = {"boolean": "bool", "double": "real", "decimal": "real", "time": "timespan",
                 "int32": "int", "int64": "long", "uniqueid": "guid"}
_NUMERIC = frozenset({"int", "long", "real"})
_ORDERED = _NUMERIC | {"datetime", "timespan"}
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class Refusal(Exception):
    """A node KQL cannot express: becomes an `unsupported` diagnostic."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


def type_of(name: str) -> str:
    return _TYPE_ALIASES.get(name.lower(), name.lower())


def datetime_literal(value: datetime) -> A.TypedLit:
    """`datetime(2024-01-01T10:00:00Z)` in UTC (a naive datetime is UTC, as in the evaluator)."""
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return A.TypedLit("datetime", text + "Z")


def number_literal(value: int | float) -> A.Expr:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise Refusal(f"{value} does not fit a KQL long")
        if value == _INT64[0]:  # its magnitude is no long: write the value whole
            return A.TypedLit("long", str(value))
        text = A.NumberLit(str(abs(value)))
        return A.Unary("-", text) if value < 0 else text
    if math.isnan(value):
        return A.TypedLit("real", "nan")
    if math.isinf(value):
        return A.TypedLit("real", "+inf" if value > 0 else "-inf")
    text = repr(abs(value))
    if "e" not in text and "." not in text:
        text += ".0"
    literal = A.NumberLit(text)
    return A.Unary("-", literal) if math.copysign(1.0, value) < 0 else literal


def value_literal(value: Any) -> A.Expr:
    """A literal for a Python value, by its own type (constants of the output)."""
    if isinstance(value, bool):
        return A.BoolLit(value)
    if isinstance(value, (int, float)):
        return number_literal(value)
    if isinstance(value, str):
        return A.StringLit(value)
    if isinstance(value, datetime):
        return datetime_literal(value)
    if isinstance(value, timedelta):
        return timespan_literal(value)
    raise Refusal(f"no KQL literal for {type(value).__name__} value {value!r}")


def typed_literal(value: Value, type_name: str, field_name: str) -> A.Expr:
    """A literal of the field's type, the value coerced as the evaluator coerces it."""
    if type_name == "string":
        return A.StringLit(value if isinstance(value, str) else str(value))
    if type_name == "guid":
        text = str(value)
        if not _GUID.fullmatch(text):
            raise Refusal(f"{text!r} is not a GUID (field {field_name} is a guid)")
        return A.TypedLit("guid", text)
    try:
        typed = coerce(value, type_name)
    except (TypeError, ValueError, OverflowError):
        raise Refusal(f"{value!r} is not a valid {type_name} (field {field_name})") from None
    if type_name == "bool":
        return A.BoolLit(bool(typed))
    if type_name in _NUMERIC and isinstance(typed, (int, float)):
        return number_literal(typed)
    if type_name == "datetime" and isinstance(typed, datetime):
        return datetime_literal(typed)
    if type_name == "timespan" and isinstance(typed, timedelta):
        return timespan_literal(typed)
    if type_name == "dynamic" and isinstance(typed, (str, int, float, bool)):
        return value_literal(typed)
    raise Refusal(f"no KQL literal of type {type_name} for {value!r} (field {field_name})")


# ------------------------------------------------------------------ regular expressions


def re2_problem(pattern: str) -> str | None:
    """Why a regex (read as Python syntax) would not run in KQL's RE2, or None.
    Lookarounds, backreferences, conditionals, atomic groups, possessive repeats, `\\Z`
    and the verbose and ASCII flags are Python-only.  A pattern Python cannot read is passed
    as it is: it came from KQL (RE2 has syntax Python lacks, such as `\\pL`)."""
    try:
        from re import _constants as C, _parser as P  # type: ignore[attr-defined]
        tree = P.parse(pattern)
    except Exception:  # noqa: BLE001 - not Python syntax (or no parser): nothing to say
        return None
    if tree.state.flags & re.VERBOSE:
        return "the verbose flag (?x)"
    if tree.state.flags & re.ASCII:
        return "the ASCII flag (?a)"
    refused = [(C.ASSERT, "lookaround"), (C.ASSERT_NOT, "lookaround"),
               (C.GROUPREF, "a backreference"), (C.GROUPREF_EXISTS, "a conditional group")]
    refused += [(getattr(C, n), w) for n, w in (("ATOMIC_GROUP", "an atomic group"),
                                                ("POSSESSIVE_REPEAT", "a possessive repeat"))
                if hasattr(C, n)]
    stack = [tree]
    while stack:
        for op, av in stack.pop():  # (opcode, argument) pairs; nested patterns are SubPatterns
            for code, what in refused:
                if op is code:
                    return what
            if op is C.AT and av is C.AT_END_STRING:
                return "\\Z"
            pending = [av]
            while pending:
                item = pending.pop()
                if isinstance(item, P.SubPattern):
                    stack.append(item)
                elif isinstance(item, (tuple, list)):
                    pending.extend(item)
    return None


# ------------------------------------------------------------------ conditions


_TERM_OPS = frozenset({Op.TERM, Op.TERM_PREFIX, Op.TERM_SUFFIX})
_STRING_OPERATORS = {Op.CONTAINS: "contains", Op.STARTSWITH: "startswith", Op.ENDSWITH: "endswith",
                     Op.TERM: "has", Op.TERM_PREFIX: "hasprefix", Op.TERM_SUFFIX: "hassuffix"}
_COMPARISONS = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}


def _in_range(function: str, subject: A.Expr, network: str) -> A.Expr:
    """`coalesce(<function>(subject, "network"), false)`: never null."""
    return A.Call(A.Name("coalesce"), (A.Call(A.Name(function), (subject, A.StringLit(network))),
                                       A.BoolLit(False)))




def not_(operand: A.Expr) -> A.Expr:
    return A.Call(A.Name("not"), (operand,))


def chain(op: str, operands: list[A.Expr]) -> A.Expr:
    """`a and b ...` / `a or b ...`; one operand stands alone, none is the neutral constant."""
    if not operands:
        return A.BoolLit(op == "and")
    return operands[0] if len(operands) == 1 else A.Logical(op, tuple(operands))


@dataclass
class ConditionEmitter:
    """IR conditions -> KQL expressions, collecting the lossy notes on the way.  `tabular`
    writes a sub-rule (a subquery's model) as a KQL tabular expression."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    tabular: Any = None
    time_for: Any = lambda rule: None  # a sub-rule -> its environment's time field (None: the table's)

    def model(self, message: str, p: Predicate) -> None:
        """Where the KQL written is the operator a KQL rule says (so the translation keeps its
        meaning) but rmmc's model of that operator may differ from Kusto's: `verify` excuses
        it, the translation is not lossy."""
        d = Diagnostic(Severity.WARNING, f"{TARGET}: {message}", p.span, "model", subject=p)
        if d not in self.diagnostics:
            self.diagnostics.append(d)

    def lossy(self, message: str, span: Span | None, subject: object = None) -> None:
        d = lossy(TARGET, message, span, subject)
        if d not in self.diagnostics:
            self.diagnostics.append(d)

    def emit(self, condition: Condition) -> A.Expr:
        if isinstance(condition, Predicate):
            return self.predicate(condition)
        if isinstance(condition, InSubquery):
            return self.subquery(condition)
        if isinstance(condition, Compare):
            if condition.op not in COMPARE_OPS:
                raise Refusal(f"comparison {condition.op!r} has no KQL form", condition.span)
            return A.Binary(condition.op, self.expr(condition.left), self.expr(condition.right))
        if isinstance(condition, Const):
            return A.BoolLit(condition.value)
        if isinstance(condition, Not):
            return not_(self.emit(condition.operand))
        if isinstance(condition, (And, Or)):
            op = "and" if isinstance(condition, And) else "or"
            operands: list[A.Expr] = []
            for operand in condition.operands:
                expr = self.emit(operand)
                if isinstance(expr, A.Logical) and expr.op == op and type(operand) is type(condition):
                    operands.extend(expr.operands)  # (a and b) and c: the same chain
                else:
                    operands.append(expr)
            return chain(op, operands)
        raise Refusal(f"not a condition: {condition!r}")

    def subquery(self, node: InSubquery) -> A.Expr:
        """`x in (T | ...)` / `x has_any (T | ...)`: the subquery written from its model, or,
        when it has none, parsed back to a tree from its text (never spliced as text)."""
        from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql

        if node.rule is not None and self.tabular is not None:
            body = self.tabular(node.rule)
        else:
            try:
                query = parse_kql(node.query)
            except KqlSyntaxError as exc:
                raise Refusal(f"the subquery {node.query!r} is not valid KQL: {exc}", node.span) from None
            if len(query.statements) != 1 or query.body is None:
                raise Refusal(f"the subquery {node.query!r} is not one tabular expression", node.span)
            body = query.body
        subject = _atom(self.expr(node.field))
        if node.op is Op.TERM:
            test = A.ListOp("has_any", subject, (body,))
            return not_(test) if node.negated else test
        op = ("!" if node.negated else "") + ("in" if node.case_sensitive else "in~")
        return A.ListOp(op, subject, (body,))

    # -- scalar expressions

    def expr(self, node: Any) -> A.Expr:
        """A model expression as KQL (the inverse of the lowering's `expr`)."""
        if isinstance(node, Field):
            return A.Name(node.name)
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Boolean):
            return self.emit(node.condition)
        if isinstance(node, Star):
            return A.Star()
        if isinstance(node, Call):
            args = [self.expr(a) for a in node.args]
            if node.function in SYMBOLS and len(args) == 2:
                op = SYMBOLS[node.function]
                return A.Binary(op, _operand(args[0], op), _operand(args[1], op, right=True))
            if node.function == "negate" and len(args) == 1:
                return A.Unary("-", _atom(args[0]))
            if node.function == "member" and isinstance(node.args[1], Literal):
                key = node.args[1].value
                if isinstance(key, str) and _IDENTIFIER.fullmatch(key) and key not in _KEYWORDS:
                    return A.Member(_atom(args[0]), key)
                return A.Index(_atom(args[0]), A.StringLit(str(key)))
            if node.function in ("member", "index"):
                return A.Index(_atom(args[0]), args[1])
            return A.Call(A.Name(node.function), tuple(args))
        raise Refusal(f"no KQL form for the expression {node!r}")

    def literal(self, node: Literal) -> A.Expr:
        value, kind = node.value, type_of(node.type)
        if value is None:
            return A.TypedLit(kind if kind in _LITERAL_TYPES else "dynamic", "null")
        if isinstance(value, tuple):
            return A.DynamicLit(A.DynArray(tuple(value_literal(v) for v in value)))
        return value_literal(value)

    # -- predicates

    def predicate(self, p: Predicate) -> A.Expr:
        kind = type_of(p.field.type)
        column = self.expr(p.field)
        if p.op is Op.EXISTS:
            if kind == "string":
                # A missing string reads as '' in KQL: "has a value" is the closest test KQL can
                # make (isnotnull() would be always true, isnull() never: pySigma's Sigma `null`).
                self.lossy(f"{p.field.name} exists: KQL strings are never null (a missing one reads "
                           "as ''), so it is written isnotempty(): an event whose field is present "
                           "but empty no longer matches" if not p.negated else
                           f"{p.field.name} does not exist: KQL strings are never null (a missing one "
                           "reads as ''), so it is written isempty(): an event whose field is present "
                           "but empty now matches too", p.span, subject=p)
                return A.Call(A.Name("isempty" if p.negated else "isnotempty"), (column,))
            return A.Call(A.Name("isnull" if p.negated else "isnotnull"), (column,))
        if p.op is Op.EMPTY:
            return A.Call(A.Name("isnotempty" if p.negated else "isempty"), (column,))
        if p.op is Op.BETWEEN or p.op in _COMPARISONS:
            return self.comparison(p, kind, column)
        if p.op is Op.CIDR:
            return self.cidr(p, kind, column)
        if p.op is not Op.EQUALS and p.op is not Op.REGEX and p.op not in _STRING_OPERATORS:
            raise Refusal(f"operator {p.op.value} has no KQL form", p.span)
        if kind == "string":
            if not p.values:  # no value: any-of is false, all-of true
                return A.BoolLit(p.all_values != p.negated)
            if p.op is Op.EQUALS:
                return self.string_equality(p, column)
            return self.regex(p, column) if p.op is Op.REGEX else self.string_test(p, column)
        return self.typed_test(p, kind, column)

    def typed_test(self, p: Predicate, kind: str, column: A.Name) -> A.Expr:
        """Equality or a string operator on a field that can be null: the IR's test is false
        on a null (true when negated), whatever the values."""
        if not p.values:
            on_value = p.all_values != p.negated
            if on_value == p.negated:
                return A.BoolLit(on_value)
            return A.Call(A.Name("isnotnull" if on_value else "isnull"), (column,))
        if p.op is Op.EQUALS:
            return self.typed_equality(p, kind, column)
        text = self.as_text(p, kind, column)
        test = self.regex(p, text) if p.op is Op.REGEX else self.string_test(p, text)
        probe = Predicate(Field("_"), p.op, p.values, p.all_values, p.case_sensitive)
        try:
            passes_empty = evaluate_predicate(probe, {}) is True
        except (re.error, ValueError):  # a pattern Python cannot read: keep the guard
            passes_empty = True
        if not passes_empty:
            return test  # KQL reads a null as '', where the test is false as on a null
        if p.negated:  # '' passes the test, a null must not
            return chain("or", [A.Call(A.Name("isnull"), (column,)), test])
        return chain("and", [A.Call(A.Name("isnotnull"), (column,)), test])

    def as_text(self, p: Predicate, kind: str, column: A.Name) -> A.Expr:
        """The field as the string a string operator reads (`tostring()` for typed fields,
        which KQL requires).  The evaluator reads Python's str() of the value: where that
        differs from KQL's text form, say so."""
        if kind == "string":
            return column
        if kind in ("real", "datetime", "timespan") or (kind in ("bool", "guid") and p.case_sensitive):
            self.lossy(f"{p.op.value} on the {kind} field {p.field.name} reads KQL's text form of "
                       f"the value (tostring), which may differ from the IR's", p.span, subject=p)
        if kind == "dynamic":
            return column  # KQL reads a dynamic value as its JSON text
        return A.Call(A.Name("tostring"), (column,))

    def values(self, p: Predicate) -> list[A.StringLit]:
        return [A.StringLit(v if isinstance(v, str) else str(v)) for v in p.values]

    def string_equality(self, p: Predicate, column: A.Expr) -> A.Expr:
        values = self.values(p)
        if len(values) == 1 or p.all_values:
            op = ("!=" if p.negated else "==") if p.case_sensitive else ("!~" if p.negated else "=~")
            tests = [A.Binary(op, column, v) for v in values]
            # all of them; negated: not all of them, i.e. one differs (strings are never null)
            return chain("or" if p.negated else "and", tests)
        op = "in" if p.case_sensitive else "in~"
        return A.ListOp("!" + op if p.negated else op, column, tuple(values))

    def typed_equality(self, p: Predicate, kind: str, column: A.Expr) -> A.Expr:
        values = [typed_literal(v, kind, p.field.name) for v in p.values]
        if kind == "guid":
            self.model(f"{p.field.name} is compared as a GUID value (hex digits in any case), "
                       "rmmc's model compares its text", p)
        elif kind == "dynamic":
            self.model(f"{p.field.name} is dynamic: KQL compares the dynamic value, rmmc's model "
                       "its text", p)
        if len(values) == 1 or p.all_values:
            tests = [A.Binary("!=" if p.negated else "==", column, v) for v in values]
            return chain("or" if p.negated else "and", tests)
        return A.ListOp("!in" if p.negated else "in", column, tuple(values))

    def comparison(self, p: Predicate, kind: str, column: A.Expr) -> A.Expr:
        if kind not in _ORDERED:
            raise Refusal(f"{p.op.value} on the {kind} field {p.field.name}: KQL orders only "
                          "numbers, datetimes and timespans", p.span)
        wanted = 2 if p.op is Op.BETWEEN else 1
        if len(p.values) != wanted:
            raise Refusal(f"{p.op.value} on {p.field.name} needs {wanted} value(s), has {len(p.values)}", p.span)
        bounds = [typed_literal(v, kind, p.field.name) for v in p.values]
        if p.op is Op.BETWEEN:
            return A.Between(column, bounds[0], bounds[1], negated=p.negated)
        test = A.Binary(_COMPARISONS[p.op], column, bounds[0])
        return not_(test) if p.negated else test  # not(null) stays null, as in the IR

    def string_test(self, p: Predicate, column: A.Expr) -> A.Expr:
        values = self.values(p)
        if p.op in _TERM_OPS:
            self.non_ascii_term_edges(p)
        if p.op is Op.TERM and len(values) > 1 and not p.case_sensitive:
            test = A.ListOp("has_all" if p.all_values else "has_any", column, tuple(values))
            return not_(test) if p.negated else test  # no !has_any: not() is exact
        op = _STRING_OPERATORS[p.op] + ("_cs" if p.case_sensitive else "")
        if p.negated:  # none of them (any-of) / not all of them (all-of): strings are never null
            return chain("or" if p.all_values else "and", [A.Binary("!" + op, column, v) for v in values])
        return chain("and" if p.all_values else "or", [A.Binary(op, column, v) for v in values])

    def non_ascii_term_edges(self, p: Predicate) -> None:
        """rmmc's term match (the evaluator) counts only ASCII letters and digits as term
        characters; Kusto's term index may count other letters too (duckdb-kql does).  A needle
        that starts or ends with such a letter can then need a boundary in Kusto where rmmc
        needs none.  The KQL written is the operator the rule's `has` was read from, so the
        translation itself keeps the source's meaning; what may differ is rmmc's model of it,
        which `verify` must not call a disagreement: a `model` warning says so."""
        edges = sorted({v for v in (str(x) for x in p.values)
                        if v and any(ch.isalnum() and not ch.isascii() for ch in (v[0], v[-1]))})
        if edges:
            shown = ", ".join(repr(v) for v in edges[:3]) + (" ..." if len(edges) > 3 else "")
            d = Diagnostic(Severity.WARNING, f"{TARGET}: {p.field.name} {p.op.value} {shown}: a non-ASCII "
                           "letter at the edge of a term; rmmc's model treats it as a term separator, "
                           "Kusto may treat it as part of the term, so rmmc's reading of this `has` can "
                           "differ from Kusto's when a letter or digit follows or precedes it", p.span, "model",
                           subject=p)
            if d not in self.diagnostics:
                self.diagnostics.append(d)

    def cidr(self, p: Predicate, kind: str, column: A.Name) -> A.Expr:
        """`coalesce(ipv4_is_in_range(F, "net"), false)` (ipv6_ for an IPv6 network) per network,
        or-ed (and-ed for all_values).  The functions give null when the value is no address
        (Microsoft's documentation: "null: if conversion ... wasn't successful"), which
        `coalesce` turns into false, so `not(...)` is exact: a value that is no address, or
        missing, is not inside.  `ipv6_is_in_range` also reads an IPv4 value (as the mapped
        address ::ffff:a.b.c.d), while the IR never puts an IPv4 value in an IPv6 network: for an
        IPv6 network that overlaps ::ffff:0:0/96 the test also requires the value not to read as
        IPv4 (`not(coalesce(ipv4_is_in_range(F, "0.0.0.0/0"), false))`)."""
        subject: A.Expr = column if kind in ("string", "dynamic") else A.Call(A.Name("tostring"), (column,))
        tests: list[A.Expr] = []
        for network in cidr_networks(p, Refusal):
            function = "ipv4_is_in_range" if network.version == 4 else "ipv6_is_in_range"
            test = _in_range(function, subject, str(network))
            if reads_ipv4(network):
                test = chain("and", [test, not_(_in_range("ipv4_is_in_range", subject, "0.0.0.0/0"))])
            tests.append(test)
        test = chain("and" if p.all_values else "or", tests)
        if isinstance(test, A.BoolLit):
            return A.BoolLit(test.value != p.negated)
        return not_(test) if p.negated else test

    def regex(self, p: Predicate, column: A.Expr) -> A.Expr:
        tests = []
        for value in p.values:
            pattern = value if isinstance(value, str) else str(value)
            problem = re2_problem(pattern)
            if problem is not None:
                raise Refusal(f"regex {pattern!r} on {p.field.name} uses {problem}, which KQL's "
                              "RE2 engine does not support", p.span)
            if not p.case_sensitive:
                pattern = "(?i)" + pattern
            tests.append(A.Binary("matches regex", column, A.StringLit(pattern)))
        test = chain("and" if p.all_values else "or", tests)
        return not_(test) if p.negated else test


# ------------------------------------------------------------------ stages


AGGREGATE_FUNCTIONS = frozenset("""
    count countif dcount dcountif min max minif maxif sum sumif avg avgif make_set make_set_if
    make_list make_list_if arg_max arg_min any take_any
""".split())

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset({"and", "or", "not", "in", "has", "contains", "between", "by", "on", "with",
                       "true", "false", "null", "let", "where", "extend", "project", "summarize"})
_LITERAL_TYPES = frozenset({"bool", "int", "long", "real", "datetime", "timespan", "dynamic", "guid",
                            "string"})


_PRECEDENCE = {"*": 2, "/": 2, "%": 2, "+": 1, "-": 1}


def _operand(node: A.Expr, op: str, right: bool = False) -> A.Expr:
    """`node` as an operand of the arithmetic `op`, in parentheses where it would otherwise bind
    differently (a lower precedence, or the same on the right: `a - (b - c)`)."""
    if isinstance(node, A.Binary) and node.op in _PRECEDENCE:
        inner, outer = _PRECEDENCE[node.op], _PRECEDENCE[op]
        if inner > outer or (inner == outer and not right):
            return node
        return A.Paren(node)
    if isinstance(node, (A.Binary, A.Logical, A.Between, A.ListOp, A.Unary)):
        return A.Paren(node)
    return node


def _atom(node: A.Expr) -> A.Expr:
    """`node` in parentheses where a member access or index after it would bind to its end."""
    if isinstance(node, (A.Binary, A.Logical, A.Between, A.ListOp, A.Unary)):
        return A.Paren(node)
    return node


def names_in(node: Any) -> Iterator[str]:
    """Every name an expression refers to (iteratively: trees may be deep)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, A.Name):
            yield item.name
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif is_dataclass(item):
            stack.extend(getattr(item, f.name) for f in fields(item) if f.name != "span")


def _assignment(name: str, value: A.Expr) -> A.Expr | A.Assignment:
    """`name = value`, or the bare column when it keeps its own name."""
    if isinstance(value, A.Name) and value.name == name:
        return value
    return A.Assignment((name,), value)


def _aggregate_call(agg: Aggregate, emitter: "ConditionEmitter") -> A.Expr | A.Assignment:
    if agg.function not in AGGREGATE_FUNCTIONS:
        raise Refusal(f"aggregate function {agg.function!r} is not one rmmc emits")
    call = A.Call(A.Name(agg.function), tuple(emitter.expr(a) for a in agg.args))
    return A.Assignment((agg.name,), call) if agg.name else call


def stage_operators(stage: Stage, emitter: "ConditionEmitter") -> list[A.Operator]:
    """One model stage as the KQL operator that means it."""
    if isinstance(stage, Filter):
        return [] if stage.condition == Const(True) else [A.Where(emitter.emit(stage.condition))]
    if isinstance(stage, Extend):
        return [A.Extend(tuple(A.Assignment((n,), emitter.expr(e)) for n, e in stage.columns))]
    if isinstance(stage, Project):
        return [A.Project(tuple(_assignment(n, emitter.expr(e)) for n, e in stage.columns))]
    if isinstance(stage, Summarize):
        by = tuple(_assignment(n, emitter.expr(e)) for n, e in stage.group_by)
        if not stage.aggregates:
            if not by:
                raise Refusal("a distinct of no columns")
            return [A.Distinct(by)]
        return [A.Summarize((), tuple(_aggregate_call(a, emitter) for a in stage.aggregates), by)]
    if isinstance(stage, ProjectAway):
        return [A.ProjectAway(tuple(_name_or_pattern(p) for p in stage.patterns))]
    if isinstance(stage, Reorder):
        return [A.ProjectReorder(tuple(A.SortKey(_name_or_pattern(p)) for p in stage.patterns))]
    if isinstance(stage, Rename):
        return [A.ProjectRename(tuple(stage.pairs))]
    if isinstance(stage, Sort):
        keys = []
        for key in stage.keys:
            nulls = None if key.nulls_first is None else ("first" if key.nulls_first else "last")
            keys.append(A.SortKey(emitter.expr(key.expr), "desc" if key.descending else "asc", nulls))
        return [A.Sort(tuple(keys))]
    if isinstance(stage, Limit):
        if isinstance(stage.count, bool) or stage.count < 0:
            raise Refusal(f"limit {stage.count!r} is not a row count")
        return [A.Take(number_literal(stage.count))]
    if isinstance(stage, Join):
        if emitter.tabular is None:
            raise Refusal("a join needs its right side written as a query", stage.span)
        on = tuple(A.Name(left) if left == right else
                   A.Binary("==", A.Member(A.Name("$left"), left), A.Member(A.Name("$right"), right))
                   for left, right in stage.keys)
        params = (A.OpParam("kind", A.Name(stage.kind)),)
        right = A.Paren(emitter.tabular(stage.right))
        return [A.Lookup(params, right, on) if stage.lookup else A.Join(params, right, on)]
    if isinstance(stage, MvExpand):
        items = []
        for name, expr, to_type in stage.columns:
            value = emitter.expr(expr)
            item = value if isinstance(value, A.Name) and value.name == name else A.Assignment((name,), value)
            items.append(A.MvExpandItem(item, to_type))
        params = (A.OpParam("with_itemindex", A.Name(stage.index)),) if stage.index else ()
        limit = number_literal(stage.limit) if stage.limit is not None else None
        return [A.MvExpand(params, tuple(items), limit)]
    if isinstance(stage, Parse):
        parts: list[Any] = []
        for part in stage.pattern:
            if part is None:
                parts.append(A.Star())
            elif isinstance(part, tuple):
                parts.append(A.ParseColumn(part[0]))
            else:
                parts.append(A.StringLit(part))
        return [A.Parse((), _atom(emitter.expr(stage.source)), tuple(parts))]
    raise Refusal(f"no KQL form for the stage {type(stage).__name__}")


def _name_or_pattern(text: str) -> A.Expr:
    return A.NamePattern(text) if "*" in text else A.Name(text)


# ------------------------------------------------------------------ the rule


@dataclass
class KqlQuery:
    """A built query (None when refused) and what was said while building it."""

    query: A.Query | None
    diagnostics: tuple[Diagnostic, ...]


def _source_table(rule: Rule, found: list[Diagnostic]) -> str:
    if rule.source.table:
        return rule.source.table
    table = KIND_TABLES.get(rule.source.kind)
    if table is None:
        raise Refusal("the rule names no table and its kind of event has no Defender table")
    found.append(note(TARGET, f"the rule names no table: {table} holds its {rule.source.kind.value} events"))
    return table


def _exclusions(rule: Rule, options: EmitOptions, conditions: ConditionEmitter,
                found: list[Diagnostic]) -> list[Condition]:
    """The exclusion conditions to AND in (as NOT), and a note or warning for each other one."""
    return exclusion_conditions(
        rule, options, TARGET, found, form="KQL", refusal=Refusal,
        render=lambda c: "as KQL: | where " + to_kql(not_(ConditionEmitter().emit(c))))


def _tables(rule: Rule) -> list[str]:
    """The tables a rule's rows come from (a union's branches', recursively)."""
    if rule.union is None:
        return [rule.source.table] if rule.source.table else []
    return [t for branch in rule.union.branches for t in _tables(branch)]


def _union_source(rule: Rule, conditions: ConditionEmitter, found: list[Diagnostic]) -> A.Union:
    union = rule.union
    params = []
    if union.withsource:
        params.append(A.OpParam("withsource", A.Name(union.withsource)))
    if union.fuzzy:
        params.append(A.OpParam("isfuzzy", A.BoolLit(True)))
    tables: list[A.Expr] = []
    for i, branch in enumerate(union.branches):
        label = union.labels[i] if i < len(union.labels) else None
        bare = (branch.union is None and branch.source.table and label == branch.source.table
                and not branch.stages and branch.lookback is None and branch.condition == Const(True))
        tables.append(A.Name(branch.source.table) if bare else A.Paren(_pipeline(branch, conditions, found)))
    return A.Union(tuple(params), tuple(tables))


def _time_column_of(rule: Rule, found: list[Diagnostic]) -> str:
    tables = _tables(rule)
    columns = {time_column(t) for t in tables}
    if len(columns) > 1:
        raise Refusal("the union's branches keep time in different columns (Timestamp and "
                      "TimeGenerated): no one lookback filter fits them")
    return columns.pop() if columns else time_column(_source_table(rule, found))


def _pipeline(rule: Rule, conditions: ConditionEmitter, found: list[Diagnostic],
              extra: tuple[Condition, ...] = (), time_field: str | None = None) -> A.Expr:
    """A rule (or sub-rule) as a KQL tabular expression: its source, lookback (on `time_field`
    when the environment names one), detection (with `extra` conditions ANDed in) and stages."""
    if rule.union is not None:
        source: A.Expr = _union_source(rule, conditions, found)
    elif rule.source.external is not None:
        source = _external_source(rule.source.external)
    else:
        source = A.Name(_source_table(rule, found))
    operators: list[A.Operator] = []
    time_field = time_field or conditions.time_for(rule)
    if rule.lookback is not None:
        ago = A.Call(A.Name("ago"), (timespan_literal(rule.lookback.window),))
        operators.append(A.Where(A.Binary(">", A.Name(time_field or _time_column_of(rule, found)), ago)))
    condition = all_of([rule.condition, *extra])
    if condition != Const(True):
        operators.append(A.Where(conditions.emit(condition)))
    for stage in rule.stages:  # in the rule's order: that order is part of the meaning
        operators += stage_operators(stage, conditions)
    return A.Pipeline(source, tuple(operators)) if operators else source


def _external_source(table: Any) -> A.ExternalData:
    """`externaldata (columns) [uris] with (format=..., ignoreFirstRecord=...)` as lowered (a
    format Kusto detected from the URI is left for it to detect again; a URI written h'...', a
    secret Kusto keeps out of its logs, is written so again)."""
    properties: list[tuple[str, A.Expr]] = []
    if table.format_given:
        properties.append(("format", A.StringLit(table.format)))
    if table.ignore_first_record:
        properties.append(("ignoreFirstRecord", A.BoolLit(True)))
    return A.ExternalData(tuple(A.ColumnDecl(n, t) for n, t in table.columns),
                          tuple(A.StringLit(u, i < len(table.hidden) and table.hidden[i])
                                for i, u in enumerate(table.uris)), tuple(properties))


def _placed_time(placement: Any, rule: Rule) -> str | None:
    """The time field the environment gives a sub-rule's source (`Target.parts`), if any."""
    if not getattr(placement, "parts", ()) or rule.union is not None:
        return None
    return placement.part(rule.source.table).time_field


def build_kql(rule: Rule, options: EmitOptions = EmitOptions()) -> KqlQuery:
    """The rule as a KQL syntax tree with its diagnostics; `query` is None when refused."""
    found: list[Diagnostic] = []
    conditions = ConditionEmitter()
    conditions.tabular = lambda sub: _pipeline(sub, conditions, found)
    conditions.time_for = lambda sub: _placed_time(options.placement, sub)
    try:
        extra = tuple(_exclusions(rule, options, conditions, found))
        placed = getattr(options.placement, "time_field", None)  # the environment's time field
        body = _pipeline(rule, conditions, found, extra, time_field=placed)
        _refuse_lone_surrogates(body)
    except Refusal as refusal:
        found.append(unsupported(TARGET, str(refusal), refusal.span))
        return KqlQuery(None, tuple(conditions.diagnostics + found))
    return KqlQuery(A.Query((A.ExprStatement(body),)), tuple(conditions.diagnostics + found))


def _refuse_lone_surrogates(node: Any) -> None:
    """A string literal holding half a UTF-16 pair (only a rule built in code can: the readers
    refuse it) has no KQL text that reads back as it: refused, as the readers do."""
    from rmmc.compiler.kql.strings import lone_surrogate

    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, A.StringLit):
            problem = lone_surrogate(current.value)
            if problem:
                raise Refusal(f"string literal: {problem}", getattr(current, "span", None))
        elif isinstance(current, tuple):
            pending.extend(current)
        elif dataclasses.is_dataclass(current) and not isinstance(current, type):
            pending.extend(getattr(current, f.name) for f in dataclasses.fields(current))


def rule_to_kql_ast(rule: Rule, options: EmitOptions = EmitOptions()) -> A.Query:
    """The rule as a KQL syntax tree; raises `RmmcError` when KQL cannot express it."""
    built = build_kql(rule, options)
    if built.query is None:
        raise RmmcError([d for d in built.diagnostics if d.is_error])
    return built.query


def emit_kql(rule: Rule, options: EmitOptions = EmitOptions()) -> Translation:
    """The rule as KQL text (empty when refused), with its lossy/unsupported/note diagnostics."""
    built = build_kql(rule, options)
    text = to_kql(built.query) if built.query is not None else ""
    return Translation(TARGET, text, built.diagnostics)
