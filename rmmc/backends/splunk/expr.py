"""Model scalar expressions -> Splunk `eval` expressions with KQL's meaning.

How a KQL value lives in Splunk:

* a string is text that is never null: KQL reads a missing string as '', so a column is read
  as `coalesce(f, "")` and every string function here returns text for text;
* a number is a number, null where KQL's is null (Splunk calculates in double precision, so
  integers beyond 2^53 lose precision there; KQL's long does not);
* a datetime is epoch seconds (Splunk's `_time`), a timespan a number of seconds;
* a bool or a dynamic value is no column value: a condition is written where one is expected
  (`if()`, `case()`, `where`), and the few dynamic forms SPL can say are read where they are
  used (a segment of a `split()`, the values `stats` collected).

Each function is written from what Splunk documents only: where Splunk's behaviour at an edge
is not documented (a null condition in `if()`, `substr()` out of range, `%` of a negative
number, division by zero other than `/`), the expression guards that edge itself.  What SPL
cannot say with KQL's meaning raises `SplRefusal` (an `unsupported` diagnostic, located).

The mapping of each model function is data where it can be (`TEMPLATES`: function -> SPL
form); the others are builders (`BUILDERS`), one per function, below.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Span
from rmmc.compiler.text_rules import re2_dollar
from rmmc.compiler.functions import INTEGER_TYPES, NUMERIC_TYPES, STRING_TYPES, WHITESPACE, describe
from rmmc.compiler.regexes import can_match_empty, group_always_set, parse
from rmmc.compiler.slots_init import fast_init

TIME_TYPES = frozenset({"datetime", "timespan"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TEXT = 20_000
"""Longest eval expression written (guards and regexes repeat their operands)."""


class SplRefusal(ValueError):
    """Something SPL cannot say with KQL's meaning: an `unsupported` diagnostic."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.span = span


@dataclass(frozen=True, slots=True)
class Spl:
    """An eval expression: its text (always an atom: a name, literal, call or parenthesized,
    so it composes without precedence questions), whether
    it can be null, and its kind: `string` (never null), `number` (datetimes and timespans
    too, in seconds), `segment` (a string or null: one segment of a split), `multi` (a
    multivalue field: what `values()` / `list()` collected)."""

    text: str
    nullable: bool = True
    kind: str = "number"
    null_if: tuple[str, ...] | None = None  # it is null exactly when one of these is (None: itself)

    def null_tests(self) -> tuple[str, ...]:
        """The texts whose nullness makes this null (to test instead of repeating it)."""
        return () if not self.nullable else (self.null_if if self.null_if is not None else (self.text,))


fast_init(Spl)  # made per test written: fields stored through their slots (`rmmc.compiler.slots_init`)


def derived(text: str, operands: list["Spl"], kind: str = "number") -> Spl:
    """A value that is null exactly when one of its operands is."""
    tests = tuple(dict.fromkeys(t for o in operands for t in o.null_tests()))
    return Spl(text, bool(tests), kind, tests)


class Context(Protocol):
    """What the expression writer needs from the backend: column names and conditions."""

    def column_text(self, field: ir.Field) -> tuple[str, str]:
        """(the eval name of a column, its SPL kind: `event` for an event's field,
        `eventtime` for its time, else the kind a stage gave the column)."""

    def condition_text(self, condition: ir.Condition) -> str:
        """A condition as an eval boolean that is true exactly when KQL's is (never null)."""


# ------------------------------------------------------------------ literals and regexes


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def string_literal(text: str) -> str:
    """A double-quoted eval string (`\\` and `"` escaped); control characters are refused."""
    if _CONTROL.search(text):
        raise SplRefusal(f"the text {text!r} holds a control character, which an SPL string "
                         "cannot carry safely")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def regex_string(pattern: str) -> str:
    """A PCRE as an eval string literal.  Control characters cannot go into SPL text, so each
    becomes `\\x{hh}`, which PCRE reads as that character; one escaped in the pattern
    (`\\<TAB>`, a literal TAB in PCRE) is replaced with its escape, so the pattern's backslash
    does not turn `\\x{09}` into a backslash followed by `x{09}`."""
    if not _CONTROL.search(pattern):  # the common case: the pattern as it is, quoted
        return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append("\\x{%02x}" % ord(nxt) if _CONTROL.match(nxt) else ch + nxt)
            i += 2
            continue
        out.append("\\x{%02x}" % ord(ch) if _CONTROL.match(ch) else ch)
        i += 1
    return '"' + "".join(out).replace("\\", "\\\\").replace('"', '\\"') + '"'


def regex_literal(value: str) -> str:
    """`value` as a PCRE matching exactly that text: ASCII letters, digits, space and
    non-ASCII characters as themselves (no pattern here ever sets PCRE's (?x)), every other
    printable ASCII character backslash-escaped (always literal in PCRE), control characters
    as `\\x{hh}`."""
    return value.translate(_REGEX_ESCAPES)


_REGEX_ESCAPES = {code: "\\x{%02x}" % code if code < 32 or code == 127 else "\\" + chr(code)
                  for code in range(128) if not (chr(code).isalnum() or code == 32)}
"""What `regex_literal` writes for each ASCII character it does not keep (one pass in C)."""


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def eval_name(name: str) -> str:
    """A field name as eval reads it: single-quoted unless a plain identifier (a bare dot
    would concatenate).  Remembered per name (a function of it alone, asked for each test of
    a field; a batch names a few hundred fields), up to a bound."""
    text = _EVAL_NAMES.get(name)
    if text is None:
        text = name if _PLAIN.match(name) else f"'{name}'"
        if len(_EVAL_NAMES) < 4096:
            _EVAL_NAMES[name] = text
    return text


_EVAL_NAMES: dict[str, str] = {}


def pcre(pattern: str) -> str:
    """A model (RE2) regex as PCRE reads it the same: each unescaped `$` outside a class is
    PCRE's `\\z` (PCRE's `$` also matches before a final line break)."""
    return re2_dollar(pattern, "\\z")


def number_text(value: Any) -> str:
    """A number as an eval literal (no exponent, finite: what SPL's grammar reads for sure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SplRefusal(f"{value!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SplRefusal(f"{value!r} has no SPL literal")
        text = repr(value)
        if "e" in text or "E" in text:
            text = f"{value:.17f}".rstrip("0").rstrip(".")
            if float(text) != value:
                raise SplRefusal(f"{value!r} has no exact SPL literal")
        return text if value >= 0 else f"({text})"
    return str(value) if value >= 0 else f"({value})"


def seconds(value: timedelta) -> int | float:
    micros = value // timedelta(microseconds=1)
    return micros // 1_000_000 if micros % 1_000_000 == 0 else micros / 1_000_000


def epoch(value: datetime) -> int | float:
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return seconds(value - _EPOCH)


# ------------------------------------------------------------------ the writer


def guard_null(operands: list[Spl], body: str) -> str:
    """`body`, or null when one of the nullable operands is: body never sees a null."""
    nullable = [t for o in operands for t in o.null_tests()]
    if not nullable:
        return body
    test = " OR ".join(f"isnull({t})" for t in dict.fromkeys(nullable))
    return f"if({test}, null(), {body})"


class ExprWriter:
    """Writes model expressions as eval expressions (see the module docstring)."""

    def __init__(self, context: Context):
        self.context = context

    # -- entry points

    def value(self, expr: Any, span: Span | None = None) -> Spl:
        out = self._value(expr, span)
        if len(out.text) > MAX_TEXT:
            raise SplRefusal(f"{describe(expr)} would be an eval expression of {len(out.text)} "
                             "characters", span)
        return out

    def string(self, expr: Any, span: Span | None = None) -> str:
        """A string-typed expression as text that is never null."""
        out = self.value(expr, span)
        if out.kind == "segment":
            return f"coalesce({out.text}, \"\")"
        if out.kind != "string":
            raise SplRefusal(f"{describe(expr)} is not a string here", span)
        return out.text

    def number(self, expr: Any, span: Span | None = None) -> Spl:
        out = self.value(expr, span)
        if out.kind != "number":
            raise SplRefusal(f"{describe(expr)} is not a number here", span)
        return out

    # -- nodes

    def _value(self, expr: Any, span: Span | None) -> Spl:
        if isinstance(expr, ir.Field):
            return self.field(expr, span)
        if isinstance(expr, ir.Literal):
            return self.literal(expr, span)
        if isinstance(expr, ir.Call):
            return self.call(expr, span)
        if isinstance(expr, ir.Boolean):
            raise SplRefusal("a condition used as a value (a bool column): Splunk's eval cannot "
                             "hold a boolean", span)
        raise SplRefusal(f"no SPL form for {describe(expr)}", span)

    def field(self, field: ir.Field, span: Span | None) -> Spl:
        name, kind = self.context.column_text(field)
        if kind == "multi":
            return Spl(name, True, "multi")
        if kind == "segment" and field.type not in STRING_TYPES:  # an element or segment kept as a column
            return Spl(name, True, "segment")
        kind_of = field.type
        if kind == "count":  # what count() / dc() gave: never null
            return Spl(name, False, "number")
        if kind_of in STRING_TYPES:
            return Spl(f"coalesce({name}, \"\")", False, "string")
        if kind_of in NUMERIC_TYPES:
            return Spl(name, True, "number")
        if kind_of in TIME_TYPES:
            if kind == "eventtime":  # every Splunk event has its time (as every Defender event)
                return Spl(name, False, "number")
            if kind != "time":
                raise SplRefusal(f"{field.name} is a {kind_of}: Splunk holds only _time as a time "
                                 "value, other time fields as text in a format rmmc does not know", span)
            return Spl(name, True, "number")
        raise SplRefusal(f"{field.name} is a {kind_of} column, which has no SPL value rmmc can read "
                         "with KQL's meaning", span)

    def literal(self, node: ir.Literal, span: Span | None) -> Spl:
        value = node.value
        if value is None:
            if node.type in STRING_TYPES:
                return Spl('""', False, "string")
            return Spl("null()", True, "number")
        if isinstance(value, bool):
            raise SplRefusal(f"the bool {value} as a value: Splunk's eval cannot hold a boolean", span)
        if isinstance(value, str):
            return Spl(string_literal(value), False, "string")
        if isinstance(value, (int, float)):
            return Spl(number_text(value), False, "number")
        if isinstance(value, datetime):
            return Spl(number_text(epoch(value)), False, "number")
        if isinstance(value, timedelta):
            return Spl(number_text(seconds(value)), False, "number")
        raise SplRefusal(f"no SPL value for {describe(node)}", span)

    def call(self, call: ir.Call, span: Span | None) -> Spl:
        from rmmc.compiler.paths import field_path, resolve_aliases

        # `tostring(AdditionalFields.x)`: the field JSON extraction names
        path = field_path(resolve_aliases(call, getattr(self.context, "aliases", {})))
        if path is not None:
            name, _ = self.context.column_text(path)
            return Spl(name, True, "segment")
        template = TEMPLATES.get(call.function)
        if template is not None:
            return template.write(self, call, span)
        builder = BUILDERS.get(call.function)
        if builder is None:
            raise SplRefusal(f"{call.function}() has no SPL form rmmc writes with KQL's meaning", span)
        return builder(self, call, span)

    # -- helpers for builders

    def condition(self, expr: Any, span: Span | None) -> str:
        if isinstance(expr, ir.Boolean):
            return self.context.condition_text(expr.condition)
        if isinstance(expr, ir.Literal) and isinstance(expr.value, bool):
            return "true()" if expr.value else "false()"
        raise SplRefusal(f"{describe(expr)} is not a condition SPL can test", span)


def literal_arg(call: ir.Call, position: int, kind: type | tuple[type, ...], span: Span | None) -> Any:
    """A constant argument (a regex, a delimiter, an index ...), or a refusal."""
    arg = call.args[position] if position < len(call.args) else None
    if not isinstance(arg, ir.Literal) or isinstance(arg.value, bool) or not isinstance(arg.value, kind):
        raise SplRefusal(f"{call.function}() with a {describe(arg) if arg is not None else 'missing'} "
                         f"argument {position + 1}: rmmc writes it for a constant only", span)
    return arg.value


# ------------------------------------------------------------------ the function table


@dataclass(frozen=True)
class Template:
    """A function whose SPL form is one call over its arguments: `form` with `{0}` ... for
    the arguments, each of `kinds` (`string`: text never null; `number`), and the kind of the
    result.  A string result of string arguments is never null; a number result is null
    exactly when an argument is (Splunk's functions return null for null)."""

    form: str
    kinds: tuple[str, ...]
    result: str

    def write(self, writer: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
        if len(call.args) != len(self.kinds):
            raise SplRefusal(f"{call.function}() with {len(call.args)} arguments has no SPL form", span)
        texts, operands = [], []
        for arg, kind in zip(call.args, self.kinds):
            if kind == "string":
                texts.append(writer.string(arg, span))
            else:
                operand = writer.number(arg, span)
                operands.append(operand)
                texts.append(operand.text)
        return derived(guard_null(operands, self.form.format(*texts)), operands, self.result)


TEMPLATES: dict[str, Template] = {
    "tolower": Template("lower({0})", ("string",), "string"),
    "toupper": Template("upper({0})", ("string",), "string"),
    "strlen": Template("len({0})", ("string",), "number"),
    "abs": Template("abs({0})", ("number",), "number"),
}
"""KQL model function -> its SPL call.  `lower` / `upper` fold as KQL's `tolower` / `toupper`
for ASCII; Splunk does not document its folding of other letters (the backend says so where a
case-insensitive test meets non-ASCII text).  `len` counts code points, as `strlen` does."""


# ------------------------------------------------------------------ builders


def _strcat(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    parts = [_text_of(w, arg, span) for arg in call.args]
    return Spl("(" + ".".join(parts) + ")" if len(parts) > 1 else parts[0], False, "string")


def _text_of(w: ExprWriter, arg: Any, span: Span | None) -> str:
    """KQL's `tostring(arg)` as text that is never null."""
    if isinstance(arg, ir.Call) and arg.function == "index":
        return _index(w, arg, span, missing='""').text
    value = w.value(arg, span)
    if value.kind == "string":
        return value.text
    if value.kind == "segment":
        return f"coalesce({value.text}, \"\")"
    if value.kind == "number" and getattr(arg, "type", None) in INTEGER_TYPES:
        # an integer's decimal digits are the same text in both (Splunk's tostring of a number)
        if value.nullable:
            return f"if(isnull({value.text}), \"\", tostring({value.text}))"
        return f"tostring({value.text})"
    raise SplRefusal(f"the text of {describe(arg)} ({getattr(arg, 'type', '?')}): KQL's text of "
                     "it differs from Splunk's, or SPL has no such value", span)


def _tostring(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    return Spl(_text_of(w, call.args[0], span), False, "string")


def _substring(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`substring(s, k[, n])` for constant k and n: KQL's start counts from 0 and, negative,
    from the end (further back than the start: ''); Splunk's `substr` counts from 1.  Every
    start outside the text is decided here, so `substr` only sees positions inside it."""
    if not all(isinstance(a, ir.Literal) for a in call.args[1:]):
        return _substring_computed(w, call, span)
    text = w.string(call.args[0], span)
    start = literal_arg(call, 1, int, span)
    length = literal_arg(call, 2, int, span) if len(call.args) > 2 else None
    if length is not None and length <= 0:
        return Spl('""', False, "string")
    tail = "" if length is None else f", {length}"
    if start >= 0:
        if start == 0 and length is None:
            return Spl(text, False, "string")
        return Spl(f"if(len({text})>{start}, substr({text}, {start + 1}{tail}), \"\")", False, "string")
    back = -start
    return Spl(f"if(len({text})>={back}, substr({text}, len({text})-{back - 1}{tail}), \"\")",
               False, "string")


def _substring_computed(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`substring(s, k[, n])` with a computed integer k or n (`indexof(s, '.') + 1`): the
    evaluator's meaning decided in eval: '' when k or n is null, n is not positive, or k
    (negative: counted from the end) falls outside the text; else `substr` from k+1, which then
    starts inside the text and takes at most n characters."""
    for position in range(1, len(call.args)):
        arg = call.args[position]
        if not isinstance(arg, ir.Literal) and getattr(arg, "type", None) not in INTEGER_TYPES:
            raise SplRefusal(f"substring() with a {describe(arg)} argument {position + 1}: rmmc writes "
                             "a computed one for an integer only (KQL truncates a real)", span)
        if isinstance(arg, ir.Literal):
            literal_arg(call, position, int, span)
    text = w.string(call.args[0], span)
    start = w.number(call.args[1], span)
    length = w.number(call.args[2], span) if len(call.args) > 2 else None
    at = f"if({start.text}<0, len({text})+{start.text}, {start.text})"
    inside = f"{at}>=0 AND {at}<len({text})"
    tail = ""
    if length is not None:
        inside += f" AND {length.text}>0"
        tail = f", {length.text}"
    body = f"if({inside}, substr({text}, {at}+1{tail}), \"\")"
    nulls = [t for o in (start, length) if o is not None for t in o.null_tests()]
    if nulls:
        body = f"if({' OR '.join(f'isnull({t})' for t in dict.fromkeys(nulls))}, \"\", {body})"
    return Spl(body, False, "string")


def _segment_regex(delimiter: str, index: int) -> str | None:
    """A PCRE whose group 1 is segment `index` of `split(x, delimiter)` (KQL: the text between
    the index-th and the next non-overlapping occurrence, left to right; negative from the
    end), matching when there is such a segment."""
    d = regex_literal(delimiter)
    if index >= 0:
        skip = f"(?:[\\s\\S]*?{d}){{{index}}}" if index else ""
        return f"^{skip}([\\s\\S]*?)(?:{d}[\\s\\S]*)?\\z"
    if len(delimiter) != 1:
        return None  # from the end, overlapping delimiters ('aa' in 'aaa') would count differently
    other = "[^" + d + "]"
    after = f"(?:{d}{other}*){{{-index - 1}}}" if index < -1 else ""
    return f"^(?:[\\s\\S]*{d})?({other}*){after}\\z"


def _index(w: ExprWriter, call: ir.Call, span: Span | None, missing: str = "null()") -> Spl:
    """`split(s, d)[i]` for constant d and i: one segment, or null past the last one
    (`missing`: what to write there instead, e.g. '' under `tostring`)."""
    container, position = call.args
    if isinstance(container, ir.Call) and container.function == "split" and len(container.args) == 3:
        # split(s, d, n) is [segment n] (or [] past the last): its [0] and [-1] are segment n
        if literal_arg(call, 1, int, span) not in (0, -1):
            return Spl(missing, missing == "null()", "segment")
        return _index(w, ir.Call("index", (ir.Call("split", container.args[:2], "dynamic"), container.args[2]),
                                 "dynamic"), span, missing)
    if not (isinstance(container, ir.Call) and container.function == "split" and len(container.args) == 2):
        raise SplRefusal(f"{describe(call)}: SPL reads no dynamic value other than a split's segment", span)
    delimiter = literal_arg(container, 1, str, span)
    index = literal_arg(call, 1, int, span)
    text = w.string(container.args[0], span)
    if delimiter == "":
        if index in (0, -1):  # KQL: split(s, '') is [s]
            return Spl(text, False, "segment")
        return Spl(missing, missing == "null()", "segment")
    regex = _segment_regex(delimiter, index)
    if regex is None:
        raise SplRefusal(f"{describe(call)}: a segment counted from the end of a split on a "
                         "delimiter of several characters", span)
    pattern = regex_string(regex)
    return Spl(f"if(match({text}, {pattern}), replace({text}, {pattern}, \"\\\\1\"), {missing})",
               missing == "null()", "segment")


def _split(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`split(s, d, i)`: KQL's one-element array holding segment i (empty past the last one),
    as the segment itself or null: one value or none, which is how SPL holds a multivalue
    field of one value; KQL shows it as `["x"]` (shape only).  `split(s, d)` whole is not
    written (Splunk's split() does not document its empty segments)."""
    if len(call.args) != 3:
        raise SplRefusal(f"{describe(call)}: the whole array of a split is no SPL value rmmc writes "
                         "(only one segment of it)", span)
    index = ir.Call("index", (ir.Call("split", call.args[:2], "dynamic"), call.args[2]), "dynamic")
    segment = _index(w, index, span)
    shape_note = getattr(w.context, "shape_note", None)
    if shape_note is not None:
        shape_note(f"{describe(call)} is one value in SPL, a one-element array in KQL", span)
    return Spl(segment.text, segment.nullable, "multi", segment.null_if)


def _array_length(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    arg = call.args[0]
    if isinstance(arg, ir.Call) and arg.function == "split" and len(arg.args) == 2:
        delimiter = literal_arg(arg, 1, str, span)
        text = w.string(arg.args[0], span)
        if delimiter == "":
            return Spl("1", False, "number")
        removed = f"len({text})-len(replace({text}, {regex_string(regex_literal(delimiter))}, \"\"))"
        if len(delimiter) == 1:
            return Spl(f"({removed}+1)", False, "number")
        return Spl(f"(floor(({removed})/{len(delimiter)})+1)", False, "number")
    value = w.value(arg, span)
    if value.kind == "multi":
        return Spl(f"if(isnull({value.text}), 0, mvcount({value.text}))", False, "number")
    raise SplRefusal(f"{describe(call)}: SPL counts only the values stats collected or a split's "
                     "segments", span)


def _string_size(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`string_size(s)`: the bytes of s in UTF-8.  Splunk's `len` counts characters (Search
    Reference, Text functions: "the count of the number of characters"), so each character
    beyond U+007F, U+07FF and U+FFFF adds one byte more: the characters left once those below
    each bound are removed (`replace`, PCRE in UTF mode as every class with `\\x{hhhh}` here)."""
    text = w.string(call.args[0], span)
    below = [regex_string("[\\x{00}-\\x{%x}]+" % bound) for bound in (0x7F, 0x7FF, 0xFFFF)]
    beyond = [f"len(replace({text}, {pattern}, \"\"))" for pattern in below]
    return Spl("(" + "+".join([f"len({text})", *beyond]) + ")", False, "number")


def _trim(wrapper: str) -> Callable[[ExprWriter, ir.Call, Span | None], Spl]:
    """KQL splices the regex into `^(R)` / `(R)$` / both and removes every match: the same
    `replace()` in PCRE (with `\\z` for RE2's `$`)."""

    def build(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
        pattern = pcre(literal_arg(call, 0, str, span))
        text = w.string(call.args[1], span)
        return Spl(f"replace({text}, {regex_string(wrapper.format(pattern))}, \"\")", False, "string")

    return build


def _extract(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`extract(R, n, s)`: group n of R's first match, '' when none: the whole text replaced by
    that group when R matches.  The group must take part in every match (how Splunk writes an
    unset group is not documented)."""
    if len(call.args) != 3:
        raise SplRefusal("extract() with a type argument has no SPL form rmmc writes", span)
    regex = literal_arg(call, 0, str, span)
    group = literal_arg(call, 1, int, span)
    text = w.string(call.args[2], span)
    tree = parse(regex)
    if tree is None:
        raise SplRefusal(f"extract(): the regex {regex!r} uses syntax rmmc cannot check", span)
    if group < 0 or group > tree.state.groups - 1:
        return Spl('""', False, "string")
    if group > 9:
        raise SplRefusal("extract() of a group after the 9th", span)
    if group and not group_always_set(regex, group):
        regex = _group_made_set(regex, group)
        if regex is None:
            raise SplRefusal(f"extract() of group {group} of {describe(call.args[0])}, which may take no "
                             "part in a match (Splunk does not document what it writes then)", span)
    body = pcre(regex)
    inner = f"((?:{body}))" if group == 0 else f"(?:{body})"
    whole = f"^[\\s\\S]*?{inner}[\\s\\S]*\\z"
    return Spl(f"if(match({text}, {regex_string(body)}), replace({text}, {regex_string(whole)}, "
               f"\"\\\\{max(group, 1)}\"), \"\")", False, "string")


def _group_made_set(regex: str, group: int) -> str | None:
    """`regex` with an optional capture group `(X)?` (or lazy `(X)??`) written `((?:X)?)`: the
    same matches, tried in the same order, but the group takes part in every one, capturing ''
    where `(X)?` took no part, which is what `extract()` gives for an unset group ('').  None
    when the group is not so optional (inside an alternation or another repeat), or the
    pattern holds syntax this scan does not read (`\\Q`)."""
    if "\\Q" in regex:
        return None
    opening, content, count, i = -1, -1, 0, 0
    depth_at_open, depth = 0, 0
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":  # a class: `]` first is literal; escapes and [:name:] inside
            i += 1
            if i < len(regex) and regex[i] == "^":
                i += 1
            if i < len(regex) and regex[i] == "]":
                i += 1
            while i < len(regex) and regex[i] != "]":
                if regex[i] == "\\":
                    i += 1
                elif regex.startswith("[:", i):
                    end = regex.find(":]", i + 2)
                    i = end + 1 if end >= 0 else i
                i += 1
            i += 1
            continue
        if ch == "(":
            depth += 1
            named = re.match(r"\(\?P?<(?![=!])[^>]*>", regex[i:])
            if not regex.startswith("(?", i) or named:
                count += 1
                if count == group:
                    opening, depth_at_open = i, depth
                    content = i + (len(named.group(0)) if named else 1)
        elif ch == ")":
            if opening >= 0 and depth == depth_at_open:
                quantifier = "??" if regex.startswith("??", i + 1) else "?" if regex.startswith("?", i + 1) else ""
                if not quantifier or regex.startswith("+", i + 1 + len(quantifier)):
                    return None
                made = (regex[:content] + "(?:" + regex[content:i] + ")" + quantifier + ")"
                        + regex[i + 1 + len(quantifier):])
                tree = parse(made)
                if tree is None or tree.state.groups != parse(regex).state.groups \
                        or not group_always_set(made, group):
                    return None
                return made
            depth -= 1
        i += 1
    return None


def _replacement(rewrite: str, span: Span | None) -> str:
    """KQL's rewrite (`\\1` or `$1` name a group) as Splunk's (`\\1`); any other backslash or
    dollar is refused (Splunk does not document them)."""
    out, i = [], 0
    while i < len(rewrite):
        ch = rewrite[i]
        if ch in "\\$":
            if i + 1 < len(rewrite) and rewrite[i + 1].isdigit():
                if i + 2 < len(rewrite) and rewrite[i + 2].isdigit():
                    raise SplRefusal(f"the rewrite {rewrite!r} has a group number followed by a digit", span)
                out.append("\\" + rewrite[i + 1])
                i += 2
                continue
            raise SplRefusal(f"the rewrite {rewrite!r} holds {ch!r} not naming a group", span)
        out.append(ch)
        i += 1
    return "".join(out)


def _replace_regex(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    text = w.string(call.args[0], span)
    regex = literal_arg(call, 1, str, span)
    rewrite = _replacement(literal_arg(call, 2, str, span), span)
    if rewrite and can_match_empty(regex):
        raise SplRefusal(f"replace_regex() with {regex!r}, which can match an empty text: where "
                         "such matches are replaced differs between engines", span)
    if re.search(r"\\[1-9]", rewrite):
        tree = parse(regex)
        for g in map(int, re.findall(r"\\([1-9])", rewrite)):
            if tree is None or not group_always_set(regex, g):
                raise SplRefusal(f"replace_regex() names group {g} of {regex!r}, which may take no "
                                 "part in a match", span)
    return Spl(f"replace({text}, {regex_string(pcre(regex))}, {regex_string(rewrite)})",
               False, "string")


def _replace_string(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    text = w.string(call.args[0], span)
    lookup = literal_arg(call, 1, str, span)
    rewrite = literal_arg(call, 2, str, span)
    if lookup == "":
        return Spl(text, False, "string")
    if "\\" in rewrite or "$" in rewrite:
        raise SplRefusal(f"replace_string() writing {rewrite!r}: a backslash or dollar in Splunk's "
                         "replacement text is not documented", span)
    return Spl(f"replace({text}, {regex_string(regex_literal(lookup))}, {string_literal(rewrite)})",
               False, "string")


def _indexof(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    if len(call.args) != 2:
        raise SplRefusal("indexof() with a start or length has no SPL form rmmc writes", span)
    text = w.string(call.args[0], span)
    lookup = literal_arg(call, 1, str, span)
    if lookup == "":
        return Spl("0", False, "number")
    needle = regex_literal(lookup)
    before = regex_string(f"^([\\s\\S]*?){needle}[\\s\\S]*\\z")
    return Spl(f"if(match({text}, {regex_string(needle)}), len(replace({text}, {before}, \"\\\\1\")), (-1))",
               False, "number")


def _conversion(kind: str) -> Callable[[ExprWriter, ir.Call, Span | None], Spl]:
    """`toint` / `tolong` / `todouble` of a number.  A text's reading is not written: KQL and
    Splunk read numeric text differently at the edges (spaces, signs, exponents)."""

    def build(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
        arg = call.args[0]
        source = getattr(arg, "type", None)
        if source not in NUMERIC_TYPES:
            raise SplRefusal(f"{call.function}() of a {source}: KQL and Splunk read numeric text "
                             "differently at the edges (spaces, signs, exponents)", span)
        value = w.number(arg, span)
        if kind == "real" or source == "int" or (kind == "long" and source in INTEGER_TYPES):
            return value
        if kind == "int":
            raise SplRefusal(f"{call.function}() of a {source}: KQL's null outside 32 bits is not "
                             "written", span)
        return derived(guard_null([value], _truncate(value.text)), [value])

    return build


def _truncate(q: str) -> str:
    """`q` truncated toward zero (KQL's integer division and conversions)."""
    return f"if({q}<0, ceiling({q}), floor({q}))"


def _iff(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    condition = w.condition(call.args[0], span)
    then, otherwise = _same_kind(w, call, call.args[1:], span)
    return Spl(f"if({condition}, {then.text}, {otherwise.text})", then.nullable or otherwise.nullable, then.kind)


def _case(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    args = call.args
    if len(args) % 2 == 0:
        raise SplRefusal("case() needs a default value", span)
    values = _same_kind(w, call, [args[i] for i in range(1, len(args), 2)] + [args[-1]], span)
    parts = []
    for i, value in zip(range(0, len(args) - 1, 2), values):
        parts += [w.condition(args[i], span), value.text]
    parts += ["true()", values[-1].text]
    return Spl(f"case({', '.join(parts)})", any(v.nullable for v in values), values[0].kind)


def _same_kind(w: ExprWriter, call: ir.Call, args, span: Span | None) -> list[Spl]:
    """The values a choice returns, all strings (never null) or all numbers."""
    result = call.type
    if result in STRING_TYPES:
        return [Spl(w.string(a, span), False, "string") for a in args]
    if result in NUMERIC_TYPES or result in TIME_TYPES:
        return [w.number(a, span) for a in args]
    raise SplRefusal(f"{call.function}() returning a {result}: no SPL value for it", span)


def _coalesce(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """KQL: the first value that is not null (for strings: not empty)."""
    if call.type in STRING_TYPES:
        texts = [w.string(a, span) for a in call.args]
        return Spl("coalesce(" + ", ".join(f"nullif({t}, \"\")" for t in texts) + ', "")', False, "string")
    values = _same_kind(w, call, call.args, span)
    return Spl("coalesce(" + ", ".join(v.text for v in values) + ")", all(v.nullable for v in values), "number")


def _arithmetic(symbol: str) -> Callable[[ExprWriter, ir.Call, Span | None], Spl]:
    """`+ - *` on numbers (datetimes and timespans as seconds): null when an operand is."""

    def build(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
        a, b = (w.number(arg, span) for arg in call.args)
        return derived(guard_null([a, b], f"({a.text}{symbol}{b.text})"), [a, b])

    return build


def _divide(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """Integers divide truncating toward zero, and by zero give null; reals give ±inf / NaN by
    zero in KQL, which Splunk cannot hold, so a real is divided only by a constant that is not
    zero.  Timespans divide as seconds (by zero: null in both)."""
    left, right = call.args
    a, b = w.number(left, span), w.number(right, span)
    kinds = {getattr(left, "type", None), getattr(right, "type", None)}
    quotient = f"{a.text}/{b.text}"
    if kinds <= INTEGER_TYPES:
        zero = f"{b.text}==0"
        body = f"if({zero}, null(), {_truncate(f'({quotient})')})"
        return Spl(guard_null([a, b], body), True, "number")
    if "timespan" in kinds:
        return Spl(guard_null([a, b], f"if({b.text}==0, null(), {quotient})"), True, "number")
    if isinstance(right, ir.Literal) and isinstance(right.value, (int, float)) and right.value != 0:
        return derived(guard_null([a], f"({quotient})"), [a])
    raise SplRefusal(f"{describe(call)}: a real divided by what may be zero is ±inf or NaN in KQL, "
                     "null in Splunk", span)


def _modulo(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """KQL's `%` is never negative and null by zero; Splunk does not document `%` of negative
    numbers, so the result is made non-negative whichever way it rounds."""
    a, b = (w.number(arg, span) for arg in call.args)
    divisor = f"abs({b.text})"
    body = f"if({b.text}==0, null(), ((({a.text} % {divisor})+{divisor}) % {divisor}))"
    return Spl(guard_null([a, b], body), True, "number")


def _negate(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    a = w.number(call.args[0], span)
    return derived(guard_null([a], f"(0-{a.text})"), [a])


def _bin(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`bin(x, size)`: x rounded down to a multiple of size (datetimes: of seconds since
    1970-01-01 UTC, as KQL; Splunk's `bin` command would align days to the local time zone)."""
    value = w.number(call.args[0], span)
    size = literal_arg(call, 1, (int, float, timedelta), span)
    size = seconds(size) if isinstance(size, timedelta) else size
    if size <= 0:
        return Spl("null()", True, "number")
    step = number_text(size)
    return derived(guard_null([value], f"(floor({value.text}/{step})*{step})"), [value])


def _startofday(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    if len(call.args) != 1:
        raise SplRefusal("startofday() with an offset has no SPL form rmmc writes", span)
    value = w.number(call.args[0], span)
    return derived(guard_null([value], f"(floor({value.text}/86400)*86400)"), [value])


_DIFF_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _datetime_diff(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`datetime_diff(unit, a, b)`: how many unit boundaries lie between b and a, each time
    counted in whole units since 1970-01-01 UTC (Kusto: datetime_diff('minute', 23:05:01,
    23:00:59) is 5).  Calendar units (week, month, quarter, year) would need the UTC calendar
    (SPL's strftime follows the search's time zone), sub-second ones the float _time exactly:
    refused."""
    unit = literal_arg(call, 0, str, span).strip().lower()
    if unit not in _DIFF_SECONDS:
        raise SplRefusal(f"datetime_diff('{unit}', ...): rmmc writes it for seconds, minutes, hours and "
                         "days only (a calendar unit follows SPL's time zone, a fraction of a second "
                         "the float time)", span)
    first, second = w.number(call.args[1], span), w.number(call.args[2], span)
    size = _DIFF_SECONDS[unit]
    body = f"(floor({first.text}/{size})-floor({second.text}/{size}))"
    return derived(guard_null([first, second], body), [first, second])


def _ago(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    """`ago(t)`: the search's start (`now()`) minus t seconds (not `relative_time`, whose days
    follow the local calendar)."""
    span_value = literal_arg(call, 0, timedelta, span)
    return Spl(f"(now()-{number_text(seconds(span_value))})", False, "number")


def _now(w: ExprWriter, call: ir.Call, span: Span | None) -> Spl:
    if not call.args:
        return Spl("now()", False, "number")
    offset = literal_arg(call, 0, timedelta, span)
    return Spl(f"(now()+{number_text(seconds(offset))})", False, "number")


# ------------------------------------------------------------------ bool functions (tested, not held)




_WS = "[" + "".join("\\x{%02x}" % ord(ch) for ch in WHITESPACE) + "]"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # no leading zero, as Python reads it
_ADDRESS = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_PRIVATE = (f"(?:10(?:\\.{_OCTET}){{3}}|172\\.(?:1[6-9]|2[0-9]|3[01])(?:\\.{_OCTET}){{2}}"
            f"|192\\.168(?:\\.{_OCTET}){{2}})")


def _ipv4_is_private(w: ExprWriter, call: ir.Call, span: Span | None) -> tuple[str, str]:
    """KQL: the text stripped, cut at a '/', read as an IPv4 address (null when it is not
    one), inside 10/8, 172.16/12 or 192.168/16: both decided by a regex on the text."""
    text = w.string(call.args[0], span)
    def shape(address: str) -> str:
        return "^" + _WS + "*" + address + "(?:/[\\s\\S]*|" + _WS + "*)\\z"

    return (f"match({text}, {regex_string(shape(_ADDRESS))})",
            f"match({text}, {regex_string(shape(_PRIVATE))})")


def _ipv4_is_in_range(w: ExprWriter, call: ir.Call, span: Span | None) -> tuple[str, str]:
    """KQL: the text read as an IPv4 address as it is (null when it is not one, or when the
    network is no IPv4 network), inside the network: `cidrmatch` on a valid address only."""
    import ipaddress

    text = w.string(call.args[0], span)
    network = literal_arg(call, 1, str, span)
    try:
        net = ipaddress.IPv4Network(network, strict=False)
    except ValueError:
        return "false()", "false()"
    valid = f"match({text}, {regex_string('^' + _ADDRESS + chr(92) + 'z')})"
    return valid, f"({valid} AND cidrmatch({string_literal(str(net))}, {text}))"


def _ipv4_is_match(w: ExprWriter, call: ir.Call, span: Span | None) -> tuple[str, str]:
    """`ipv4_is_match(x, 'a.b.c.d/p'[, n])` for a constant network (and prefix): KQL strips x,
    reads it as an address with an optional '/bits' (decimal, 0-32; '' is 32), and compares
    the first min(bits, p, n) bits.  Each bits value below the constant's width w is its own
    `cidrmatch` of the constant cut to that many bits; every other value compares w bits."""
    import ipaddress

    from rmmc.compiler.functions import FUNCTIONS

    if len(call.args) == 3:
        cap = literal_arg(call, 2, int, span)
    else:
        cap = 32
    other = literal_arg(call, 1, str, span)
    text = w.string(call.args[0], span)
    network = FUNCTIONS["ipv4_is_match"].impl(other, other) if cap >= 0 else None
    if network is None:  # the constant is no address (or the prefix is negative): always null
        return "false()", "false()"
    address, _, bits = other.strip().partition("/")
    width = min(int(bits) if bits else 32, cap, 32)
    base = int(ipaddress.IPv4Address(address))

    def cut(n: int) -> str:
        return string_literal(str(ipaddress.IPv4Network((base >> (32 - n) << (32 - n) if n else 0, n))))

    # x's shape decided once with the whitespace class; within that shape the only non-digits
    # after the '/' are whitespace and the address is the first run of digits and dots
    valid = "match({}, {})".format(text, regex_string(
        "^" + _WS + "*" + _ADDRESS + "(?:/" + _WS + "*(?:0*(?:[0-9]|[12][0-9]|3[0-2]))?)?" + _WS + "*\\z"))
    the_address = "replace({}, {}, {})".format(text, regex_string("^[^0-9]*([0-9.]+)[\\s\\S]*\\z"),
                                               string_literal("\\1"))

    def bits_are(values: list[int]) -> str:
        choices = "|".join(str(v) for v in values)
        return "match({}, {})".format(text, regex_string("/[^0-9]*0*(?:" + choices + ")[^0-9]*\\z"))

    no_bits = "NOT match({}, {})".format(text, regex_string("/[^0-9]*[0-9]"))
    cases = [f"{no_bits} OR {bits_are(list(range(width, 33)))}, cidrmatch({cut(width)}, {the_address})"]
    cases += [f"{bits_are([n])}, cidrmatch({cut(n)}, {the_address})" for n in range(width)]
    return valid, f"({valid} AND case({', '.join(cases)}, true(), false()))"


def _set_has_element(w: ExprWriter, call: ir.Call, span: Span | None) -> tuple[str, str]:
    """`set_has_element(S, 'text')` of a column holding every distinct text a `make_set` with
    no limit collected (`values()`; the emitter's `sets`): KQL's S is an array there, so the
    value is never null; it holds the text when one of S's values equals it (`mvfind`, Search
    Reference: the index of the first value matching the regex, else null)."""
    container, needle = call.args
    value = w.value(container, span)
    collected = getattr(w.context, "sets", {}).get(container.name) if isinstance(container, ir.Field) else None
    if value.kind != "multi" or collected != "string" or not isinstance(needle, ir.Literal) \
            or not isinstance(needle.value, str) or not needle.value:
        raise SplRefusal(f"{describe(call)}: SPL tests only a collected set of strings for a non-empty text",
                         span)
    return "true()", set_holds(value.text, "^" + regex_literal(needle.value) + "\\z")


def set_holds(collected: str, regex: str) -> str:
    """Whether a value of the set `collected` (a `values()` column: a make_set with no limit)
    matches `regex` (`mvfind`, Search Reference: the index of the first value matching the
    regex, else null).  values() of no value leaves the field missing where KQL's set is []:
    decided before mvfind, whose reading of a missing field the Search Reference does not give."""
    return f"if(isnull({collected}), false(), isnotnull(mvfind({collected}, {regex_string(regex)})))"


BOOL_TESTS: dict[str, Callable[[ExprWriter, ir.Call, Span | None], tuple[str, str]]] = {
    "ipv4_is_private": _ipv4_is_private,
    "ipv4_is_in_range": _ipv4_is_in_range,
    "ipv4_is_match": _ipv4_is_match,
    "set_has_element": _set_has_element,
}
"""KQL model functions giving a bool (or null), which SPL tests rather than holds: each gives
(the condition that the value is not null, the condition that it is true)."""


BUILDERS: dict[str, Callable[[ExprWriter, ir.Call, Span | None], Spl]] = {
    "strcat": _strcat,
    "tostring": _tostring,
    "substring": _substring,
    "index": _index,
    "split": _split,
    "array_length": _array_length,
    "string_size": _string_size,
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
    "add": _arithmetic("+"),
    "subtract": _arithmetic("-"),
    "multiply": _arithmetic("*"),
    "divide": _divide,
    "modulo": _modulo,
    "negate": _negate,
    "bin": _bin,
    "datetime_diff": _datetime_diff,
    "startofday": _startofday,
    "ago": _ago,
    "now": _now,
}
"""KQL model functions whose SPL form depends on their arguments (constants, types)."""
