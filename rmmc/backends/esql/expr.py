"""Model scalar expressions -> ES|QL expressions with KQL's meaning.

How a KQL value lives in ES|QL:

* a string is text that is never null: KQL reads a missing string as '', so an event's string
  field is read as `COALESCE(f, "")` and every string function here gets and returns text
  (ES|QL's functions return null only for a null argument);
* a number, datetime or bool is itself, null where KQL's is null (`+ - * /` and the functions
  used give null for a null operand, as KQL);
* a timespan is only a constant (`5 days`, `90 minutes`): ES|QL has no timespan column, so a
  timespan is written where a datetime is moved by it or rounded to it;
* a dynamic value is no ES|QL value, except the two forms written here: one segment of a
  `split()` (a `segment`: text, or null past the last segment) and what `VALUES` collected (a
  `multi`: a multivalued column, or null when nothing was collected).

Each function is written from Elastic's ES|QL documentation only; where it leaves an edge
open (`SUBSTRING` outside the text, division by zero, which `%` sign, `LOCATE` of "", how
`TO_LONG` rounds a double, how a group that took no part in a match is replaced), the
expression decides that edge itself.  What ES|QL cannot say with KQL's meaning raises
`Refusal` (an `unsupported` diagnostic, located).

The mapping of each model function is data where it can be (`TEMPLATES`: function -> ES|QL
form); the others are builders (`BUILDERS`), one per function.  Regexes are Java's (ES|QL's
`REPLACE`, `regex`) or Lucene's (`RLIKE`, for the split-segment tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from rmmc.backends.esql.regex import java_literal, java_regex, java_replacement
from rmmc.backends.esql.text import (Refusal, datetime_lit, lucene_escape, number_lit, string_lit,
                                     time_span)
from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Span
from rmmc.compiler.functions import INTEGER_TYPES, NUMERIC_TYPES, STRING_TYPES, TIME_FUNCTIONS, describe

MAX_TEXT = 20_000
"""Longest expression written (guards repeat their operands)."""

ZERO_TO_1970 = timedelta(days=719_162)
"""From 0001-01-01T00:00:00Z, where ES|QL's `DATE_TRUNC` counts its intervals ("Rounds down a
date to the closest interval since epoch, which starts at 0001-01-01T00:00:00Z"), to
1970-01-01T00:00:00Z, where KQL's `bin` counts them (and Java's epoch milliseconds)."""


@dataclass(frozen=True)
class Esql:
    """An ES|QL expression: its text (always an atom: a name, literal, call or parenthesized,
    so it composes without precedence questions), its kind (`string` never null, `segment`
    text or null, `number`, `datetime`, `bool`, `multi`, `span` a constant time span) and
    whether it can be null."""

    text: str
    kind: str
    nullable: bool = True


def kind_of(type_name: str) -> str:
    """The ES|QL kind of a model type."""
    if type_name in STRING_TYPES:
        return "string"
    if type_name in NUMERIC_TYPES:
        return "number"
    if type_name in ("bool", "boolean"):
        return "bool"
    if type_name == "timespan":
        return "span"
    return type_name  # datetime, dynamic


class Context(Protocol):
    """What the writer needs from the backend: columns, conditions, and where to say things."""

    def column_value(self, field: ir.Field) -> Esql:
        """A column's value as KQL reads it (a string field through COALESCE ...)."""

    def condition_text(self, condition: ir.Condition) -> str:
        """A condition whose ES|QL value (true / false / null) is the model's."""

    def note(self, message: str) -> None:
        ...

    def shape(self, message: str) -> None:
        ...


def guarded(test: str, operands: list[Esql]) -> str:
    """`test` made false (not null) where a nullable operand is null."""
    nulls = [f"{o.text} IS NOT NULL" for o in operands if o.nullable]
    return "(" + " AND ".join(nulls + [test]) + ")" if nulls else test


def span_text(value: timedelta, span: Span | None, largest: str = "day") -> str:
    text, rounded = time_span(abs(value), largest)
    if rounded:
        raise Refusal(f"the time span {value} is not a whole number of milliseconds (ES|QL's "
                      "precision)", span)
    return text


# ------------------------------------------------------------------ the writer


class ExprWriter:
    """Writes model expressions as ES|QL expressions (see the module docstring)."""

    def __init__(self, context: Context):
        self.context = context

    # -- entry points

    def value(self, expr: Any, span: Span | None = None) -> Esql:
        out = self._value(expr, span)
        if len(out.text) > MAX_TEXT:
            raise Refusal(f"{describe(expr)} would be an ES|QL expression of {len(out.text)} "
                          "characters", span)
        return out

    def string(self, expr: Any, span: Span | None = None) -> str:
        """A string-typed expression as text that is never null."""
        out = self.value(expr, span)
        if out.kind == "segment":
            return out.text if not out.nullable else f"COALESCE({out.text}, \"\")"
        if out.kind != "string":
            raise Refusal(f"{describe(expr)} is not a string here", span)
        return out.text

    def typed(self, expr: Any, kinds: tuple[str, ...], span: Span | None) -> Esql:
        out = self.value(expr, span)
        if out.kind not in kinds:
            raise Refusal(f"{describe(expr)} ({getattr(expr, 'type', '?')}) has no ES|QL value of "
                          f"the kind {' or '.join(kinds)} here", span)
        return out

    def number(self, expr: Any, span: Span | None = None) -> Esql:
        return self.typed(expr, ("number",), span)

    def condition(self, expr: Any, span: Span | None) -> str:
        """A bool-valued expression as a condition (its null is 'not true', as in KQL's
        `iff` and `case`)."""
        if isinstance(expr, ir.Boolean):
            return self.context.condition_text(expr.condition)
        return self.typed(expr, ("bool",), span).text

    # -- nodes

    def _value(self, expr: Any, span: Span | None) -> Esql:
        if isinstance(expr, ir.Field):
            return self.context.column_value(expr)
        if isinstance(expr, ir.Literal):
            return self.literal(expr, span)
        if isinstance(expr, ir.Boolean):
            return Esql(self.context.condition_text(expr.condition), "bool")
        if isinstance(expr, ir.Call):
            folded = fold_constant(expr)
            if folded is not None:
                return self.literal(folded, span)
            return self.call(expr, span)
        raise Refusal(f"no ES|QL form for {describe(expr)}", span)

    def literal(self, node: ir.Literal, span: Span | None) -> Esql:
        value = node.value
        kind = kind_of(node.type)
        if value is None:
            if kind == "string":
                return Esql('""', "string", False)
            if kind in ("number", "datetime", "bool"):
                return Esql("null", kind)
            raise Refusal(f"a null {node.type} has no ES|QL value here", span)
        if isinstance(value, bool):
            return Esql("true" if value else "false", "bool", False)
        if isinstance(value, str):
            return Esql(string_lit(value), "string", False)
        if isinstance(value, (int, float)):
            try:
                return Esql(number_lit(value), "number", False)
            except Refusal as refusal:
                raise Refusal(str(refusal), span) from None
        if isinstance(value, datetime):
            if value.microsecond % 1000:
                raise Refusal(f"the datetime {value.isoformat()} has sub-millisecond precision", span)
            return Esql(datetime_lit(value), "datetime", False)
        if isinstance(value, timedelta):
            if value < timedelta(0):
                raise Refusal(f"the negative time span {value} as a value", span)
            return Esql(span_text(value, span), "span", False)
        raise Refusal(f"no ES|QL value for {describe(node)}", span)

    def call(self, call: ir.Call, span: Span | None) -> Esql:
        from rmmc.compiler.paths import field_path

        path = field_path(call)  # `tostring(AdditionalFields.x)`: the field JSON extraction names
        if path is not None:
            self.context.column_value(path)  # registers it
            return Esql(self.context.column(path.name), "segment")
        template = TEMPLATES.get(call.function)
        if template is not None:
            return template.write(self, call, span)
        builder = BUILDERS.get(call.function)
        if builder is None:
            raise Refusal(f"{call.function}() has no ES|QL form rmmc writes with KQL's meaning", span)
        return builder(self, call, span)


def fold_constant(call: ir.Call) -> ir.Literal | None:
    """A call of constants (no `ago()` / `now()` inside) as the literal the model computes for
    it (`1h + 30m` is `90m`), or None."""
    def constant(node: Any) -> bool:
        if isinstance(node, ir.Literal):
            return True
        return isinstance(node, ir.Call) and node.function not in TIME_FUNCTIONS and \
            all(constant(a) for a in node.args)

    if not constant(call):
        return None
    from rmmc.compiler.evaluator import evaluate_expr
    from rmmc.compiler.functions import EvaluationError

    try:
        value = evaluate_expr(call, {})
    except (EvaluationError, TypeError, ValueError, ArithmeticError):
        return None
    if isinstance(value, (list, tuple, dict)):
        return None
    return ir.Literal(value, call.type)


def literal_arg(call: ir.Call, position: int, kind: type | tuple[type, ...], span: Span | None) -> Any:
    """A constant argument (a regex, a delimiter, an index ...), or a refusal."""
    arg = call.args[position] if position < len(call.args) else None
    if not isinstance(arg, ir.Literal) or isinstance(arg.value, bool) or not isinstance(arg.value, kind):
        raise Refusal(f"{call.function}() with a {describe(arg) if arg is not None else 'missing'} "
                      f"argument {position + 1}: rmmc writes it for a constant only", span)
    return arg.value


# ------------------------------------------------------------------ the function table


@dataclass(frozen=True)
class Template:
    """A function whose ES|QL form is one call over its arguments: `form` with `{0}` ... for
    the arguments, each of `kinds` (`string`: text never null; `number`; `datetime`), and the
    kind of the result, null exactly when an argument is (ES|QL's functions return null for
    null).  `note`: what to say when it is used."""

    form: str
    kinds: tuple[str, ...]
    result: str
    note: str | None = None

    def write(self, writer: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
        if len(call.args) != len(self.kinds):
            raise Refusal(f"{call.function}() with {len(call.args)} arguments has no ES|QL form", span)
        texts, operands = [], []
        for arg, kind in zip(call.args, self.kinds):
            if kind == "string":
                texts.append(writer.string(arg, span))
            else:
                operand = writer.typed(arg, (kind,), span)
                operands.append(operand)
                texts.append(operand.text)
        if self.note:
            writer.context.note(self.note)
        return Esql(self.form.format(*texts), self.result, any(o.nullable for o in operands))


_CASE_NOTE = ("{0} is Java's full mapping: 'İ' (U+0130) becomes 'i' + U+0307 and 'ß' 'SS' ({1}), "
              "where KQL maps one character to one")

TEMPLATES: dict[str, Template] = {
    "tolower": Template("TO_LOWER({0})", ("string",), "string",
                        _CASE_NOTE.format("TO_LOWER", "lower case of 'İ' only")),
    "toupper": Template("TO_UPPER({0})", ("string",), "string",
                        _CASE_NOTE.format("TO_UPPER", "upper case of 'ß', 'ŉ', ligatures ...")),
    "strlen": Template("LENGTH({0})", ("string",), "number"),
    "abs": Template("ABS({0})", ("number",), "number"),
    "startofday": Template("DATE_TRUNC(1 day, {0})", ("datetime",), "datetime"),
}
"""KQL model function -> its ES|QL call.  `LENGTH` counts characters (code points), as
`strlen`; `DATE_TRUNC(1 day, ...)` is the UTC day (0001-01-01 and 1970-01-01 both start one)."""


# ------------------------------------------------------------------ builders: strings


def _text_of(w: ExprWriter, arg: Any, span: Span | None) -> str:
    """KQL's `tostring(arg)` as text that is never null."""
    value = w.value(arg, span)
    if value.kind == "string":
        return value.text
    if value.kind == "segment":
        return value.text if not value.nullable else f"COALESCE({value.text}, \"\")"
    if value.kind == "number" and getattr(arg, "type", None) in INTEGER_TYPES:
        # an integer's decimal digits are the same text in both
        text = f"TO_STRING({value.text})"
        return f"COALESCE({text}, \"\")" if value.nullable else text
    raise Refusal(f"the text of {describe(arg)} ({getattr(arg, 'type', '?')}): KQL's text of it "
                  "differs from ES|QL's TO_STRING, or ES|QL has no such value", span)


def _strcat(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    parts = [_text_of(w, arg, span) for arg in call.args]
    if len(parts) == 1:
        return Esql(parts[0], "string", False)
    return Esql("CONCAT(" + ", ".join(parts) + ")", "string", False)


def _tostring(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    return Esql(_text_of(w, call.args[0], span), "string", False)


def _substring(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """`substring(s, k[, n])` for constant k and n: KQL's start counts from 0 and, negative,
    from the end (further back than the start: ''), a length past the end stops there; ES|QL's
    `SUBSTRING` counts from 1 and is documented only for positions inside the text, so every
    edge is decided here first."""
    text = w.string(call.args[0], span)
    start = literal_arg(call, 1, int, span)
    length = literal_arg(call, 2, int, span) if len(call.args) > 2 else None
    if length is not None and length <= 0:
        return Esql('""', "string", False)
    if start >= 0:
        if start == 0 and length is None:
            return Esql(text, "string", False)
        rest = f"SUBSTRING({text}, {start + 1})"
        if length is None:
            return Esql(f"CASE(LENGTH({text}) <= {start}, \"\", {rest})", "string", False)
        return Esql(f"CASE(LENGTH({text}) <= {start}, \"\", LENGTH({text}) - {start} >= {length}, "
                    f"SUBSTRING({text}, {start + 1}, {length}), {rest})", "string", False)
    back = -start
    part = f"SUBSTRING({text}, {start})" if length is None or length >= back else \
        f"SUBSTRING({text}, {start}, {length})"
    return Esql(f"CASE(LENGTH({text}) < {back}, \"\", {part})", "string", False)


def _segment(w: ExprWriter, container: ir.Call, index: int, span: Span | None) -> Esql:
    """Segment `index` of `split(s, d)` for a constant d: KQL's text between the index-th and
    the next occurrence of d (left to right, not overlapping; negative: from the end), or null
    past the last one.  The segment is group 1 of a Java regex matching the whole text when
    the segment exists; whether it does is a Lucene `RLIKE`: at least `index` occurrences."""
    delimiter = literal_arg(container, 1, str, span)
    text = w.string(container.args[0], span)
    if delimiter == "":  # KQL: split(s, '') is [s]
        return Esql(text, "segment", False) if index in (0, -1) else Esql("null", "segment")
    d = java_literal(delimiter)
    if index >= 0:
        skip = f"(?:[\\s\\S]*?{d}){{{index}}}" if index else ""
        regex = f"^{skip}([\\s\\S]*?)(?:{d}[\\s\\S]*)?\\z"
        needed = index
    else:
        if len(delimiter) != 1:
            raise Refusal(f"segment {index} of a split on {delimiter!r}: from the end, overlapping "
                          "delimiters of several characters count differently", span)
        other = f"[^{d}]"
        after = f"(?:{d}{other}*){{{-index - 1}}}" if index < -1 else ""
        regex = f"^(?:[\\s\\S]*{d})?({other}*){after}\\z"
        needed = -index - 1
    value = f"REPLACE({text}, {string_lit(regex)}, \"$1\")"
    if needed == 0:
        return Esql(value, "segment", False)
    exists = f"{text} RLIKE {string_lit('(.*' + lucene_escape(delimiter) + '){' + str(needed) + '}.*')}"
    return Esql(f"CASE({exists}, {value})", "segment")


def _index(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    container, position = call.args
    if not (isinstance(container, ir.Call) and container.function == "split" and len(container.args) == 2):
        raise Refusal(f"{describe(call)}: ES|QL reads no dynamic value other than a split's segment", span)
    return _segment(w, container, literal_arg(call, 1, int, span), span)


def _split(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """`split(s, d, i)`: KQL's one-element array holding segment i (empty past the last one),
    as the segment itself or null (a multivalue of one value, or none); KQL shows `["x"]`
    (shape only).  `split(s, d)` whole is written only inside `array_length` and `[i]`."""
    if len(call.args) != 3:
        raise Refusal(f"{describe(call)}: the whole array of a split is no ES|QL value rmmc writes "
                      "(only one segment of it, or its length)", span)
    segment = _segment(w, ir.Call("split", call.args[:2], "dynamic"), literal_arg(call, 2, int, span), span)
    w.context.shape(f"{describe(call)} is one value in ES|QL, a one-element array in KQL")
    return Esql(segment.text, "multi", segment.nullable)


def _array_length(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    arg = call.args[0]
    if isinstance(arg, ir.Call) and arg.function == "split" and len(arg.args) == 2:
        delimiter = literal_arg(arg, 1, str, span)
        text = w.string(arg.args[0], span)
        if delimiter == "":
            return Esql("1", "number", False)
        removed = f"LENGTH({text}) - LENGTH(REPLACE({text}, {string_lit(java_literal(delimiter))}, \"\"))"
        if len(delimiter) == 1:
            return Esql(f"({removed} + 1)", "number", False)
        return Esql(f"(({removed}) / {len(delimiter)} + 1)", "number", False)
    value = w.value(arg, span)
    if value.kind == "multi":
        return Esql(f"COALESCE(MV_COUNT({value.text}), 0)", "number", False)
    raise Refusal(f"{describe(call)}: ES|QL counts only the values STATS collected or a split's "
                  "segments", span)


def _trim(wrapper: str) -> Callable[[ExprWriter, ir.Call, Span | None], Esql]:
    """KQL splices the regex into `^(R)` / `(R)$` / both and removes every match: the same
    `REPLACE` with R as a Java regex."""

    def build(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
        regex, _ = _java(literal_arg(call, 0, str, span), span)
        text = w.string(call.args[1], span)
        return Esql(f"REPLACE({text}, {string_lit(wrapper.format(regex))}, \"\")", "string", False)

    return build


def _java(pattern: str, span: Span | None) -> tuple[str, int]:
    try:
        return java_regex(pattern)
    except Refusal as refusal:
        raise Refusal(str(refusal), span) from None


def matches(text: str, pattern: str, whole: str) -> str:
    """A condition true exactly when the model regex `pattern` matches somewhere in `text`
    (never null), given `whole`, a Java regex matching the whole of every text where it does
    (`^[\\s\\S]*?(?:R)[\\s\\S]*\\z`): `REPLACE` with it leaves "" exactly where it matches or
    where the text was "" already, and whether the pattern matches "" is known here."""
    from rmmc.compiler.evaluator import compiled_regex

    replaced = f"REPLACE({text}, {string_lit(whole)}, \"\") == \"\""
    if compiled_regex(pattern).search("") is not None:
        return replaced
    return f"({text} != \"\" AND {replaced})"


def _extract(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """`extract(R, n, s)`: group n of R's first match, '' when none.  The group must take part
    in every match (Java's `$n` of a group that took none is not documented)."""
    from rmmc.compiler.regexes import group_always_set, parse

    if len(call.args) != 3:
        raise Refusal("extract() with a type argument has no ES|QL form rmmc writes", span)
    pattern = literal_arg(call, 0, str, span)
    group = literal_arg(call, 1, int, span)
    text = w.string(call.args[2], span)
    regex, groups = _java(pattern, span)
    if parse(pattern) is None:
        raise Refusal(f"extract(): the regex {pattern!r} uses syntax rmmc cannot check", span)
    if group < 0 or group > groups:
        return Esql('""', "string", False)
    if group and not group_always_set(pattern, group):
        raise Refusal(f"extract() of group {group} of {pattern!r}, which may take no part in a match "
                      "(what ES|QL's REPLACE writes for it then is not documented)", span)
    whole = f"^[\\s\\S]*?(?:{regex})[\\s\\S]*\\z"
    taken = f"^[\\s\\S]*?({regex})[\\s\\S]*\\z" if group == 0 else whole
    value = f"REPLACE({text}, {string_lit(taken)}, \"${max(group, 1)}\")"
    return Esql(f"CASE({matches(text, pattern, whole)}, {value}, \"\")", "string", False)


def _rewrite(rewrite: str, groups: int, pattern: str, span: Span | None) -> str:
    """KQL's rewrite (`\\1` or `$1` name a group, anything else is literal) as a Java
    replacement: `$1`, other `\\` and `$` escaped; a group the regex does not have writes ''
    (KQL); a group that may take no part in a match is refused."""
    from rmmc.compiler.regexes import group_always_set

    out, i = [], 0
    while i < len(rewrite):
        ch = rewrite[i]
        if ch in "\\$" and i + 1 < len(rewrite) and rewrite[i + 1].isdigit():
            number = int(rewrite[i + 1])
            if i + 2 < len(rewrite) and rewrite[i + 2].isdigit():
                raise Refusal(f"the rewrite {rewrite!r} has a group number followed by a digit "
                              "(Java reads them as one number)", span)
            if number <= groups:
                if number and not group_always_set(pattern, number):
                    raise Refusal(f"replace_regex() names group {number} of {pattern!r}, which may take "
                                  "no part in a match", span)
                out.append(f"${number}")
            i += 2
            continue
        out.append(java_replacement(ch))
        i += 1
    return "".join(out)


def _replace_regex(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    from rmmc.compiler.regexes import can_match_empty

    text = w.string(call.args[0], span)
    pattern = literal_arg(call, 1, str, span)
    rewrite = literal_arg(call, 2, str, span)
    regex, groups = _java(pattern, span)
    if rewrite and can_match_empty(pattern):
        raise Refusal(f"replace_regex() with {pattern!r}, which can match an empty text: where such "
                      "matches are replaced differs between engines", span)
    replacement = _rewrite(rewrite, groups, pattern, span)
    return Esql(f"REPLACE({text}, {string_lit(regex)}, {string_lit(replacement)})", "string", False)


def _replace_string(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    text = w.string(call.args[0], span)
    lookup = literal_arg(call, 1, str, span)
    rewrite = literal_arg(call, 2, str, span)
    if lookup == "":
        return Esql(text, "string", False)
    return Esql(f"REPLACE({text}, {string_lit(java_literal(lookup))}, {string_lit(java_replacement(rewrite))})",
                "string", False)


def _indexof(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """`indexof(s, t)`: KQL counts from 0 (-1: absent), `LOCATE` from 1 (0: absent)."""
    if len(call.args) != 2:
        raise Refusal("indexof() with a start or length has no ES|QL form rmmc writes", span)
    text = w.string(call.args[0], span)
    lookup = literal_arg(call, 1, str, span)
    if lookup == "":
        return Esql("0", "number", False)
    return Esql(f"(LOCATE({text}, {string_lit(lookup)}) - 1)", "number", False)


# ------------------------------------------------------------------ builders: conversions, choice


def _conversion(kind: str) -> Callable[[ExprWriter, ir.Call, Span | None], Esql]:
    """`toint` / `tolong` / `todouble` of a number: a real truncated toward zero (KQL) before
    `TO_INTEGER` / `TO_LONG` (which round is not documented: they get a whole number); out of
    `integer` range `TO_INTEGER` gives null, as `toint`.  Text is not converted: KQL and ES|QL
    read numeric text differently at the edges (spaces, signs, exponents)."""

    def build(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
        arg = call.args[0]
        source = getattr(arg, "type", None)
        if source not in NUMERIC_TYPES:
            raise Refusal(f"{call.function}() of a {source}: KQL and ES|QL read numeric text "
                          "differently at the edges (spaces, signs, exponents)", span)
        value = w.number(arg, span)
        if kind == "real":
            return value if source not in INTEGER_TYPES else Esql(f"TO_DOUBLE({value.text})", "number", value.nullable)
        whole = value.text
        if source not in INTEGER_TYPES:
            whole = f"CASE({value.text} < 0, CEIL({value.text}), FLOOR({value.text}))"
        if kind == "long":
            return value if source in INTEGER_TYPES else Esql(f"TO_LONG({whole})", "number")
        return value if source == "int" else Esql(f"TO_INTEGER({whole})", "number")

    return build


def _same_kind(w: ExprWriter, call: ir.Call, args, span: Span | None) -> list[Esql]:
    """The values a choice returns, of the call's kind (strings never null)."""
    kind = kind_of(call.type)
    if kind == "string":
        return [Esql(w.string(a, span), "string", False) for a in args]
    if kind in ("number", "datetime", "bool"):
        return [w.typed(a, (kind,), span) for a in args]
    raise Refusal(f"{call.function}() returning a {call.type}: no ES|QL value for it", span)


def _iff(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    condition = w.condition(call.args[0], span)
    then, otherwise = _same_kind(w, call, call.args[1:], span)
    return Esql(f"CASE({condition}, {then.text}, {otherwise.text})", then.kind,
                then.nullable or otherwise.nullable)


def _case(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    args = call.args
    if len(args) % 2 == 0:
        raise Refusal("case() needs a default value", span)
    values = _same_kind(w, call, [args[i] for i in range(1, len(args), 2)] + [args[-1]], span)
    parts = []
    for i, value in zip(range(0, len(args) - 1, 2), values):
        parts += [w.condition(args[i], span), value.text]
    parts.append(values[-1].text)
    return Esql(f"CASE({', '.join(parts)})", values[0].kind, any(v.nullable for v in values))


def _coalesce(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """KQL: the first value that is not null (for strings: not empty)."""
    values = _same_kind(w, call, call.args, span)
    if values[0].kind == "string":
        parts = [p for v in values[:-1] for p in (f"{v.text} != \"\"", v.text)]
        return Esql(f"CASE({', '.join(parts + [values[-1].text])})" if parts else values[0].text, "string", False)
    if len(values) == 1:
        return values[0]
    return Esql("COALESCE(" + ", ".join(v.text for v in values) + ")", values[0].kind,
                all(v.nullable for v in values))


# ------------------------------------------------------------------ builders: numbers and time


def _zero_guard(divisor: Esql, right: Any, body: str) -> str:
    """`body`, or null where the divisor is 0 (ES|QL does not document division by zero)."""
    if isinstance(right, ir.Literal) and isinstance(right.value, (int, float)) and right.value != 0:
        return body
    return f"CASE({divisor.text} == 0, null, {body})"


def _add_subtract(symbol: str) -> Callable[[ExprWriter, ir.Call, Span | None], Esql]:
    """Numbers, or a datetime moved by a constant span (`x + 1 hour`): null when an operand
    is.  A datetime minus a datetime is a timespan, which ES|QL cannot hold."""

    def build(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
        a, b = (w.value(arg, span) for arg in call.args)
        if a.kind == b.kind == "number":
            return Esql(f"({a.text} {symbol} {b.text})", "number", a.nullable or b.nullable)
        if a.kind == "datetime" and b.kind == "span":
            return Esql(f"({a.text} {symbol} {b.text})", "datetime", a.nullable)
        if symbol == "+" and a.kind == "span" and b.kind == "datetime":
            return Esql(f"({b.text} + {a.text})", "datetime", b.nullable)
        raise Refusal(f"{describe(call)} ({a.kind} {symbol} {b.kind}): no ES|QL value with KQL's "
                      "meaning", span)

    return build


def _multiply(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    a, b = (w.number(arg, span) for arg in call.args)
    return Esql(f"({a.text} * {b.text})", "number", a.nullable or b.nullable)


def _divide(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """Integers divide truncating toward zero in both ("Division of two integer types will
    yield an integer result, rounding towards 0"); by zero KQL gives null (guarded here).  A
    real divided by zero is ±inf or NaN in KQL, which ES|QL has no value for, so a real is
    divided only by a constant that is not zero."""
    left, right = call.args
    a, b = w.number(left, span), w.number(right, span)
    quotient = f"({a.text} / {b.text})"
    kinds = {getattr(left, "type", None), getattr(right, "type", None)}
    if kinds <= INTEGER_TYPES:
        return Esql(_zero_guard(b, right, quotient), "number")
    if isinstance(right, ir.Literal) and isinstance(right.value, (int, float)) and right.value != 0:
        return Esql(quotient, "number", a.nullable)
    raise Refusal(f"{describe(call)}: a real divided by what may be zero is ±inf or NaN in KQL, "
                  "which ES|QL has no value for", span)


def _modulo(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """KQL's `%` is never negative and null by zero.  ES|QL's `%` "returns the remainder" and
    does not say its sign, so the result is made non-negative whichever it is; integers only
    (a real remainder near zero would round differently)."""
    left, right = call.args
    if not {getattr(left, "type", None), getattr(right, "type", None)} <= INTEGER_TYPES:
        raise Refusal(f"{describe(call)}: the remainder of a real is not written", span)
    a, b = w.number(left, span), w.number(right, span)
    if isinstance(right, ir.Literal) and isinstance(right.value, int) and right.value != 0:
        m = number_lit(abs(right.value))
        return Esql(f"((({a.text} % {m}) + {m}) % {m})", "number", a.nullable)
    body = f"((({a.text} % {b.text}) + ABS({b.text})) % ABS({b.text}))"
    return Esql(_zero_guard(b, right, body), "number")


def _negate(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    a = w.number(call.args[0], span)
    return Esql(f"(-{a.text})", "number", a.nullable)


def _bin(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """`bin(x, size)`: x rounded down to a multiple of size.  A datetime: KQL counts multiples
    from 1970-01-01, `DATE_TRUNC` from 0001-01-01 (its documentation) and Java from 1970: only a
    size dividing the 719,162 days between the two is written (1 hour, 10 minutes, 1 day, 2
    days ...: the same bins whichever the start), in hours or less (a fixed interval).  An
    integer: `x - (x mod size)` with the mod made non-negative; a real: `FLOOR(x / size) * size`."""
    size = literal_arg(call, 1, (int, float, timedelta), span)
    value = w.value(call.args[0], span)
    if isinstance(size, timedelta):
        if value.kind != "datetime":
            raise Refusal(f"{describe(call)}: a bin of time over a {getattr(call.args[0], 'type', '?')} "
                          "(rmmc writes it for a datetime)", span)
        if size <= timedelta(0):
            raise Refusal(f"{describe(call)}: a size that is not positive", span)
        if ZERO_TO_1970 % size:
            raise Refusal(f"{describe(call)}: bins of {size} start at different instants in KQL "
                          "(from 1970-01-01) and ES|QL (from 0001-01-01)", span)
        return Esql(f"DATE_TRUNC({span_text(size, span, largest='hour')}, {value.text})", "datetime",
                    value.nullable)
    if value.kind != "number" or size <= 0:
        raise Refusal(f"{describe(call)}: no ES|QL form rmmc writes", span)
    if isinstance(size, int) and getattr(call.args[0], "type", None) in INTEGER_TYPES:
        m = number_lit(size)
        return Esql(f"({value.text} - ((({value.text} % {m}) + {m}) % {m}))", "number", value.nullable)
    step = number_lit(float(size))
    return Esql(f"(FLOOR({value.text} / {step}) * {step})", "number", value.nullable)


def _ago(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """`ago(t)`: the query's `NOW()` minus t."""
    value = literal_arg(call, 0, timedelta, span)
    sign = "-" if value >= timedelta(0) else "+"
    return Esql(f"(NOW() {sign} {span_text(value, span)})", "datetime", False)


def _now(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    offset = literal_arg(call, 0, timedelta, span) if call.args else timedelta(0)
    if not offset:
        return Esql("NOW()", "datetime", False)
    sign = "+" if offset >= timedelta(0) else "-"
    return Esql(f"(NOW() {sign} {span_text(offset, span)})", "datetime", False)


# ------------------------------------------------------------------ builders: addresses


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # no leading zero, as the model reads it
_ADDRESS = f"{_OCTET}(\\.{_OCTET}){{3}}"
_PRIVATE = (f"(10(\\.{_OCTET}){{3}}|172\\.(1[6-9]|2[0-9]|3[01])(\\.{_OCTET}){{2}}"
            f"|192\\.168(\\.{_OCTET}){{2}})")


def _stripped(address: str) -> str:
    """A Lucene regex of the texts the model reads as `address` after `strip()` and cutting at
    the first '/': white space (Python's `str.isspace`), the address, then a '/' and anything,
    or white space."""
    from rmmc.compiler.functions import WHITESPACE

    space = "[" + "".join(WHITESPACE) + "]"
    return f"{space}*{address}(/.*|{space}*)"


def _ipv4_is_private(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """KQL: the text stripped, cut at a '/', read as an IPv4 address (null when it is not
    one), inside 10/8, 172.16/12 or 192.168/16: both decided by a Lucene regex on the text."""
    text = w.string(call.args[0], span)
    return Esql(f"CASE({text} RLIKE {string_lit(_stripped(_ADDRESS))}, {text} RLIKE "
                f"{string_lit(_stripped(_PRIVATE))})", "bool")


def _ipv4_is_in_range(w: ExprWriter, call: ir.Call, span: Span | None) -> Esql:
    """KQL: the text read as an IPv4 address as it is (null when it is not one, or when the
    network is no IPv4 network), inside the network: `CIDR_MATCH` on a valid address only."""
    import ipaddress

    text = w.string(call.args[0], span)
    network = literal_arg(call, 1, str, span)
    try:
        net = ipaddress.IPv4Network(network, strict=False)
    except ValueError:
        return Esql("null", "bool")
    return Esql(f"CASE({text} RLIKE {string_lit(_ADDRESS)}, COALESCE(CIDR_MATCH(TO_IP({text}), "
                f"{string_lit(str(net))}), false))", "bool")


BUILDERS: dict[str, Callable[[ExprWriter, ir.Call, Span | None], Esql]] = {
    "strcat": _strcat,
    "tostring": _tostring,
    "substring": _substring,
    "index": _index,
    "split": _split,
    "array_length": _array_length,
    "trim": _trim("^(?:{0})|(?:{0})\\z"),
    "trim_start": _trim("^(?:{0})"),
    "trim_end": _trim("(?:{0})\\z"),
    "extract": _extract,
    "replace_regex": _replace_regex,
    "replace_string": _replace_string,
    "indexof": _indexof,
    "toint": _conversion("int"),
    "tolong": _conversion("long"),
    "todouble": _conversion("real"),
    "iff": _iff,
    "case": _case,
    "coalesce": _coalesce,
    "add": _add_subtract("+"),
    "subtract": _add_subtract("-"),
    "multiply": _multiply,
    "divide": _divide,
    "modulo": _modulo,
    "negate": _negate,
    "bin": _bin,
    "ago": _ago,
    "now": _now,
    "ipv4_is_private": _ipv4_is_private,
    "ipv4_is_in_range": _ipv4_is_in_range,
}
"""KQL model functions whose ES|QL form depends on their arguments (constants, types)."""
