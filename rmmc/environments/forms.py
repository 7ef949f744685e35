"""Value conventions: how a column's values are written on a platform, as exact rewrites of
the model's predicates (never string edits inside one backend).

A rule's values are in the convention of its columns (Defender XDR's for Defender columns:
`HKEY_LOCAL_MACHINE\\...` keys, `AccountDomain` and `AccountName` apart, one column per digest,
`FileName` beside `FolderPath`, Defender's `ActionType` words).  A form turns a test on one of
those columns into the test on the environment's field(s) that holds for exactly the same
events, each event written in the environment's convention:

* `hives`: a registry key whose hive is named in another style (`HKLM\\...`, `\\REGISTRY\\MACHINE\\...`);
* `joined`: two columns held in one field with a separator (Sysmon's `User` is `DOMAIN\\name`);
* `item`: one `KEY=value` entry of a list field (Sysmon's `Hashes`: `SHA1=...,MD5=...`);
* `basename`: a file name that is the last part of a path field (Sysmon's `Image`);
* `values`: an enumerated vocabulary spelled otherwise (`ActionType` words as Sysmon `EventType`s).

"Exactly" is over the convention's domain, which each form states: a key begins with a hive
name, a part of a joined field holds no separator, a digest is hex of its algorithm's length,
a path holds its file name last, an enumerated column takes the listed values.  `rmmc verify`
puts generated events into that domain (`normalize`) before it writes them in the target's
convention (`to_env`), so the check is the same claim.  A test the form cannot rewrite exactly
is written as close as it can, with a `lossy` diagnostic naming it (`unsupported` when there is
nothing close), never silently.

Each form also reads the other way (`read`: a test on the environment's field as tests on the
columns), which is how the Sigma reader puts a Sigma rule's values into Defender's convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.fast_replace import replace
from rmmc.compiler.functions import fold
from rmmc.environments import conventions
from rmmc.environments.conventions import HIVE_STYLES
from rmmc.environments.model import FieldSpec

_ANCHORED = (ir.Op.EQUALS, ir.Op.STARTSWITH)
_TERM = "0-9A-Za-z"


@dataclass
class Context:
    """What a form needs from the adaptation around it."""

    env: str                                     # the environment's name, for messages
    subject: Callable[[str, str], Any]           # env field name, type -> its IR expression
    report: Callable[[Diagnostic], None]
    origin: ir.Predicate | None = None           # the rule's predicate being rewritten

    def lossy(self, message: str, p: ir.Predicate) -> None:
        from rmmc.backends.base import lossy

        subject = self.origin if self.origin is not None else p
        self.report(lossy("environment", f"{self.env}: {message}", p.span, subject=subject))

    def shape(self, message: str) -> None:
        """Only what a column of the output holds changes (which alerts fire does not)."""
        from rmmc.backends.base import shape

        self.report(shape("environment", f"{self.env}: {message}"))

    def note(self, message: str, p: ir.Predicate | None = None) -> None:
        from rmmc.backends.base import note

        self.report(note("environment", f"{self.env}: {message}", p.span if p else None))


def negated(condition: ir.Condition) -> ir.Condition:
    """NOT of a condition, kept on the predicate when it is one (KQL's `!=`, `!contains` ...)."""
    if isinstance(condition, ir.Predicate):
        return condition.negate()
    if isinstance(condition, ir.Const):
        return ir.Const(not condition.value)
    if isinstance(condition, ir.Not):
        return condition.operand
    return ir.Not(condition)


def per_value(p: ir.Predicate, one: Callable[[ir.Predicate], ir.Condition]) -> ir.Condition:
    """`one` applied to each value of a positive predicate, combined as the predicate combines
    its values (any of them; every one with `all_values`)."""
    if p.negated:
        return negated(per_value(p.negate(), one))
    if len(p.values) <= 1:
        return one(p)
    # each value's predicate built from the fields in order (`on_subject`; p is positive here)
    subject, op, cased, span = p.field, p.op, p.case_sensitive, p.span
    parts = [one(ir.Predicate(subject, op, (v,), False, cased, False, span)) for v in p.values]
    return ir.all_of(parts) if p.all_values else ir.any_of(parts)


def renamed(p: ir.Predicate, subject: Any) -> ir.Predicate:
    """The predicate on `subject`: itself when that is its own subject already (a column the
    environment names as the rule does), not a copy equal to it."""
    field = p.field
    if type(subject) is type(field) and (
            subject.name == field.name and subject.type == field.type if type(field) is ir.Field  # (its `==`)
            else subject == field):
        return p
    return on_subject(p, subject)


def on_subject(p: ir.Predicate, subject: Any) -> ir.Predicate:
    """`replace(p, field=subject)`, built from the predicate's fields in order: a predicate or
    more is copied so per test, and `replace` names and looks up every field first
    (`tests/test_splunk_speedups.py` holds both to the same copy and `ir.Predicate` to these
    fields)."""
    return ir.Predicate(subject, p.op, p.values, p.all_values, p.case_sensitive, p.negated, p.span)


def regex_predicate(subject: Any, pattern: str, p: ir.Predicate) -> ir.Predicate:
    """A regex test built from `literal_regex` pieces (their classes already fold case)."""
    return ir.Predicate(subject, ir.Op.REGEX, ("(?s)" + pattern,), case_sensitive=True, span=p.span)


def _lit(text: str, p: ir.Predicate) -> str:
    from rmmc.compiler.rewrite import literal_regex

    return literal_regex(text, p.case_sensitive)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class Form:
    """A column held under one environment field in some convention."""

    __slots__ = ("spec", "column", "field", "as_text")  # (a plan keeps one per column: small)

    def __init__(self, spec: FieldSpec):
        self.spec = spec
        self.column = spec.column
        self.field = spec.field
        self.as_text: bool = spec.options.get("type") == "string"
        """`type: string`: a number column held as text (Elastic's keyword `event.code`)."""

    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def forward(self, p: ir.Predicate, type_: str, ctx: Context) -> ir.Condition:
        """A test on the column as a test on the environment's field(s)."""
        if self.as_text and type_ not in ("string", "guid") and p.values:
            if p.op is not ir.Op.EQUALS:
                ctx.lossy(f"{self.column} is text in {self.field}: a {p.op.value} test compares it as text", p)
            values = tuple(str(v) if not isinstance(v, bool) else str(v).lower() for v in p.values)
            return replace(p, field=ctx.subject(self.field, "string"), values=values, case_sensitive=True)
        return renamed(p, ctx.subject(self.field, "string" if self.as_text else type_))

    def value(self, type_: str, ctx: Context) -> Any:
        """The column's value as an expression over the environment's fields (None: none)."""
        return ctx.subject(self.field, "string" if self.as_text else type_)

    def feed_entries(self, column: str) -> tuple[ir.Op, str] | None:
        """For `x in (<external feed>)` where the field holds the column in another form: the
        test (`Op.CONTAINS`, `Op.ENDSWITH`) on the field and the KQL stages that write the
        feed's `column` values as the field holds them, so that the field passes the test
        against one of them exactly when the column equals one of the feed's values; None:
        no such test."""
        return None

    def to_env(self, event: dict, out: dict) -> None:
        if self.column in event:
            value = event[self.column]
            out[self.field] = str(value) if self.as_text and value is not None and not isinstance(value, str) else value

    def normalize(self, event: dict) -> None:
        """Put a generated event's value of the column into the form's domain."""

    def from_env(self, event: dict, out: dict) -> None:
        """The column's value from an event as the environment holds it (`to_env` reversed)."""
        if self.field in event:
            out[self.column] = event[self.field]

    def read(self, p: ir.Predicate, columns: dict[str, ir.Field], ctx: Context) -> ir.Condition:
        """A positive test on the environment's field as a test on the column(s)."""
        return replace(p, field=columns[self.column])


# ------------------------------------------------------------------ registry hives


def _starts(text: str, prefix: str, cased: bool) -> bool:
    return text.startswith(prefix) if cased else fold(text).startswith(fold(prefix))


def _overlaps(value: str, tokens: list[str], cased: bool, skip_zero: bool = False) -> bool:
    """Whether an occurrence of `value` could begin inside a hive name (before the `\\` that
    ends it, which every style shares)."""
    return _overlapping(value if cased else fold(value), *_hive_tails(tuple(tokens), cased, skip_zero))


@cache
def _hive_tails(tokens: tuple[str, ...], cased: bool, skip_zero: bool) -> tuple[tuple[str, ...], str]:
    """For `_overlaps`: each tail of each `token\\` the value may begin with, and all of them
    each after a NUL (a value one begins with is then found after a NUL)."""
    tails = []
    for token in tokens:
        t = (token if cased else fold(token)) + "\\"
        tails += [t[k:] for k in range(1 if skip_zero else 0, len(token))]
    return tuple(tails), "".join("\0" + tail for tail in tails)


def leading_hive(value: str, names: dict[str, str], cased: bool) -> tuple[str, int] | None:
    """(hive, length of its name) when the value begins with a hive name followed by `\\` or
    its end."""
    for hive, token in names.items():
        if _starts(value, token, cased) and (len(value) == len(token) or value[len(token)] == "\\"):
            return hive, len(token)
    return None


def rewrite_hives(p: ir.Predicate, subject: Any, source: str, target: str, ctx: Context,
                  what: str) -> ir.Condition:
    """A positive test on a registry key written with `source` hive names, as the test on the
    key written with `target` names.  Domain: a key begins with a hive name of its style
    followed by `\\` or its end, and names no hive (of any style) anywhere else."""
    if source == target:
        return replace(p, field=subject)
    src, dst = conventions.hives(source), conventions.hives(target)

    def one(q: ir.Predicate) -> ir.Condition:
        value = _text(q.values[0]) if q.values else None
        same = on_subject(q, subject)
        if value is None or q.op in (ir.Op.EMPTY, ir.Op.EXISTS):
            return same
        cased = q.case_sensitive
        if q.op is ir.Op.REGEX:
            text = fold(value)
            if text.startswith("^") or "\\a" in text or any(t in text for t in _hive_names(source, target)):
                ctx.lossy(f"the regex {value!r} on {what} may read the hive name, which is not "
                          f"rewritten inside a regex for {ctx.env}", q)
            return same
        styles = _HiveStyles.of(source, target, cased)
        text = value if cased else fold(value)  # (the value folded once for every name test)
        lead = _leading(text, value, styles.src, styles.src_names)
        if lead:  # the hive: at the start of the key, the only place a hive is named
            hive, n = lead
            if hive not in dst:
                ctx.lossy(f"{what} {value!r} names hive {src[hive]}, which {ctx.env} has no "
                          f"{target} name for: written unchanged", q)
                return same
            moved = dst[hive] + value[n:]
            op = {ir.Op.CONTAINS: ir.Op.STARTSWITH, ir.Op.ENDSWITH: ir.Op.EQUALS}.get(q.op, q.op)
            return replace(same, op=op, values=(moved,))
        if q.op is ir.Op.STARTSWITH:
            hits = [h for h, token, name in styles.src if len(value) < len(token) and name.startswith(text)]
            if hits:
                if any(h not in dst for h in hits):
                    ctx.lossy(f"{what} starts with {value!r}, the start of a hive {ctx.env} "
                              "has no name for: written unchanged", q)
                    return same
                return ir.any_of([replace(same, values=(dst[h],)) for h in hits])
        if _leading(text, value, styles.dst, styles.dst_names):
            ctx.note(f"{what} {value!r} already names its hive as {ctx.env} does: kept", q)
            return same
        if q.op is not ir.Op.EQUALS and (_overlapping(text, *styles.src_tails)
                                         or _overlapping(text, *styles.dst_tails)):
            ctx.lossy(f"{what} test {q.op.value} {value!r} may match across the hive name, which "
                      f"{ctx.env} writes otherwise: written unchanged", q)
        return same

    return per_value(p, one)


@cache
def _hive_names(source: str, target: str) -> tuple[str, ...]:
    """Every hive name of both styles, folded (what a regex on the key may read)."""
    return tuple(fold(t) for t in [*conventions.hives(source).values(), *conventions.hives(target).values()])


class _HiveStyles:
    """For `rewrite_hives` from `source` to `target` names, cased or not: each style's (hive,
    name, name as compared), the names as compared, and `_hive_tails` (the same for every
    test: made once)."""

    def __init__(self, source: str, target: str, cased: bool):
        src, dst = conventions.hives(source), conventions.hives(target)
        self.src = tuple((h, t, t if cased else fold(t)) for h, t in src.items())
        self.dst = tuple((h, t, t if cased else fold(t)) for h, t in dst.items())
        self.src_names = tuple(name for _, _, name in self.src)
        self.dst_names = tuple(name for _, _, name in self.dst)
        self.src_tails = _hive_tails(tuple(src.values()), cased, True)
        self.dst_tails = _hive_tails(tuple(dst.values()), cased, True)

    @staticmethod
    @cache
    def of(source: str, target: str, cased: bool) -> "_HiveStyles":
        return _HiveStyles(source, target, cased)


def _leading(text: str, value: str, names: tuple[tuple[str, str, str], ...],
             compared: tuple[str, ...]) -> tuple[str, int] | None:
    """`leading_hive` of `value` (`text`: as compared) among (hive, name, name as compared);
    `compared`: the names as compared (most keys start with none of them: one test in C)."""
    if not text.startswith(compared):
        return None
    for hive, token, name in names:
        if text.startswith(name) and (len(value) == len(token) or value[len(token)] == "\\"):
            return hive, len(token)
    return None


def _overlapping(v: str, tails: tuple[str, ...], joined: str) -> bool:
    """`_overlaps` of a value already compared as its tails are (folded unless cased)."""
    if v.startswith(tails):
        return True
    if "\0" in v:  # (the separator below)
        return any(tail.startswith(v) for tail in tails)
    return "\0" + v in joined  # a tail starts with v


def hive_event_value(value: Any, source: str, target: str) -> Any:
    if not isinstance(value, str) or source == target:
        return value
    src, dst = conventions.hives(source), conventions.hives(target)
    lead = leading_hive(value, src, True)
    if lead and lead[0] in dst:
        return dst[lead[0]] + value[lead[1]:]
    return value


class Hives(Form):
    """`hives: short` (the field's style), `from: long` (the column's, Defender's by default)."""

    __slots__ = ()

    @property
    def styles(self) -> tuple[str, str]:
        return self.spec.options.get("from", "long"), self.spec.options["hives"]

    def forward(self, p, type_, ctx):
        source, target = self.styles
        return rewrite_hives(p, ctx.subject(self.field, type_), source, target, ctx, self.column)

    def to_env(self, event, out):
        if self.column in event:
            out[self.field] = hive_event_value(event[self.column], *self.styles)

    def from_env(self, event, out):
        if self.field in event:
            source, target = self.styles
            out[self.column] = hive_event_value(event[self.field], target, source)

    def normalize(self, event):
        value = event.get(self.column)
        if not isinstance(value, str) or not value:
            return
        names = conventions.hives(self.styles[0])
        lead = leading_hive(value, names, True)
        head, rest = (value[:lead[1]], value[lead[1]:]) if lead else (names["machine"], "\\" + value)
        every = sorted({fold(t) for style in HIVE_STYLES for t in conventions.hives(style).values()},
                       key=len, reverse=True)
        changed = True
        while changed:  # no hive named after the first part of the key
            changed = False
            for token in every:
                at = fold(rest).find(token)
                if at != -1:
                    rest = rest[:at + 1] + "_" + rest[at + 1:]
                    changed = True
        event[self.column] = head + rest

    def read(self, p, columns, ctx):
        source, target = self.styles
        return rewrite_hives(p, columns[self.column], target, source, ctx, self.field)


# ------------------------------------------------------------------ joined fields


class Joined(Form):
    """`part: first|last`, `with: <the other column>`, `separator` (`\\`): the field is
    `first + separator + last` (Sysmon's `User` = AccountDomain \\ AccountName).  Domain: neither
    part holds the separator."""

    __slots__ = ()

    @property
    def sep(self) -> str:
        return self.spec.options.get("separator", "\\")

    @property
    def first(self) -> bool:
        return self.spec.options["part"] == "first"

    @property
    def other(self) -> str:
        return self.spec.options["with"]

    def forward(self, p, type_, ctx):
        subject = ctx.subject(self.field, "string")
        s, first = self.sep, self.first
        S = re.escape(s)

        def one(q: ir.Predicate) -> ir.Condition:
            v = _text(q.values[0]) if q.values else None
            op = q.op
            if op is ir.Op.EXISTS:  # both parts are there or neither (the domain)
                return replace(q, field=subject)
            if op is ir.Op.EQUALS and v == "":  # a string is never null: == '' is isempty
                op = ir.Op.EMPTY
            if op is ir.Op.EMPTY:
                edge = ir.Op.STARTSWITH if first else ir.Op.ENDSWITH
                return ir.any_of([ir.Predicate(subject, ir.Op.EMPTY, span=q.span),
                                  ir.Predicate(subject, edge, (s,), span=q.span)])
            if v is None or op not in (ir.Op.EQUALS, ir.Op.STARTSWITH, ir.Op.ENDSWITH,
                                        ir.Op.CONTAINS, ir.Op.TERM):
                ctx.lossy(f"a {op.value} test on {self.column} cannot be said on {self.field} "
                          f"(its {'first' if first else 'last'} part): written on the whole field", q)
                return replace(q, field=subject)
            if s in v:
                return ir.Const(False)  # a part never holds the separator
            if v == "" and op in (ir.Op.STARTSWITH, ir.Op.ENDSWITH, ir.Op.CONTAINS, ir.Op.TERM):
                return ir.Const(True)
            at = lambda o, text: replace(q, field=subject, op=o, values=(text,))  # noqa: E731
            if first:
                simple = {ir.Op.EQUALS: (ir.Op.STARTSWITH, v + s), ir.Op.STARTSWITH: (ir.Op.STARTSWITH, v),
                          ir.Op.ENDSWITH: (ir.Op.CONTAINS, v + s)}
            else:
                simple = {ir.Op.EQUALS: (ir.Op.ENDSWITH, s + v), ir.Op.STARTSWITH: (ir.Op.CONTAINS, s + v),
                          ir.Op.ENDSWITH: (ir.Op.ENDSWITH, v)}
            if op in simple:
                return at(*simple[op])
            needle = _lit(v, q)
            other = f"[^{S}]"
            if op is ir.Op.CONTAINS:
                pattern = f"^{other}*{needle}" if first else f"{S}{other}*{needle}"
            else:  # TERM: a whole term inside the part
                before = f"(?:{other}*[^{_TERM}])?" if v[0].isascii() and v[0].isalnum() else f"{other}*"
                after = (f"[^{_TERM}]" if first else f"(?:$|[^{_TERM}])") if v[-1].isascii() and v[-1].isalnum() else ""
                pattern = (f"^{before}" if first else f"{S}{before}") + needle + after
            return regex_predicate(subject, pattern, q)

        return per_value(p, one)

    def value(self, type_, ctx):
        index = 0 if self.first else 1
        split = ir.Call("split", (ctx.subject(self.field, "string"), ir.Literal(self.sep)), "dynamic")
        return ir.Call("tostring", (ir.Call("index", (split, ir.Literal(index, "long")), "dynamic"),), "string")

    def to_env(self, event, out):
        first, last = (self.column, self.other) if self.first else (self.other, self.column)
        if event.get(first) is None and event.get(last) is None:
            return
        out[self.field] = f"{event.get(first) or ''}{self.sep}{event.get(last) or ''}"

    def normalize(self, event):
        value = event.get(self.column)
        if isinstance(value, str) and self.sep in value:
            event[self.column] = value.replace(self.sep, "_")
        if event.get(self.column) is None and event.get(self.other) is not None:
            event[self.column] = ""

    def from_env(self, event, out):
        value = event.get(self.field)
        if isinstance(value, str):
            first, sep, last = value.partition(self.sep)
            out[self.column] = (first if self.first else last) if sep else ("" if self.first else value)

    def read(self, p, columns, ctx):
        first, last = ((self.column, self.other) if self.first else (self.other, self.column))
        whole = ir.Call("strcat", (columns[first], ir.Literal(self.sep), columns[last]), "string")
        return split_joined(replace(p, field=whole), ctx)


def joined_parts(subject: Any) -> tuple[ir.Field, str, ir.Field] | None:
    """(first, separator, last) when `subject` is `strcat(first, 'c', last)` over two fields."""
    if (isinstance(subject, ir.Call) and subject.function == "strcat" and len(subject.args) == 3
            and isinstance(subject.args[0], ir.Field) and isinstance(subject.args[2], ir.Field)
            and isinstance(subject.args[1], ir.Literal) and isinstance(subject.args[1].value, str)
            and len(subject.args[1].value) == 1):
        return subject.args[0], subject.args[1].value, subject.args[2]
    return None


def split_joined(p: ir.Predicate, ctx: Context | None = None) -> ir.Condition:
    """A test on `strcat(first, sep, last)` (neither part holding sep) as tests on the parts,
    where one exists; otherwise the test on the expression, which is exact as it is."""
    parts = joined_parts(p.field)
    if parts is None:
        return p
    first, s, last = parts

    def on(field: ir.Field, q: ir.Predicate, op: ir.Op, value: str) -> ir.Condition:
        if value == "" and op in (ir.Op.STARTSWITH, ir.Op.ENDSWITH, ir.Op.CONTAINS):
            return ir.Const(True)
        return replace(q, field=field, op=op, values=(value,))

    def one(q: ir.Predicate) -> ir.Condition:
        if q.op in (ir.Op.EXISTS, ir.Op.EMPTY):
            # the field is written when either part is (`Joined.to_env`), and then holds the
            # separator: it exists when a part does, and is never '' when it exists
            either = ir.any_of([ir.Predicate(first, ir.Op.EXISTS, span=q.span),
                                ir.Predicate(last, ir.Op.EXISTS, span=q.span)])
            return either if q.op is ir.Op.EXISTS else negated(either)
        v = _text(q.values[0]) if q.values else None
        if v is None:
            return q
        pieces = v.split(s)
        if q.op is ir.Op.TERM and len(pieces) == 1 and v:
            return ir.any_of([on(first, q, ir.Op.TERM, v), on(last, q, ir.Op.TERM, v)])
        if len(pieces) == 1:
            if q.op is ir.Op.CONTAINS:
                return ir.any_of([on(first, q, ir.Op.CONTAINS, v), on(last, q, ir.Op.CONTAINS, v)])
            if q.op is ir.Op.STARTSWITH:
                return on(first, q, ir.Op.STARTSWITH, v)
            if q.op is ir.Op.ENDSWITH:
                return on(last, q, ir.Op.ENDSWITH, v)
            if q.op is ir.Op.EQUALS and ctx is not None:
                ctx.note(f"{v!r} has no '{s}': the field always holds one, so this test never holds", q)
            return q
        if len(pieces) == 2:
            a, b = pieces
            shapes = {ir.Op.EQUALS: (ir.Op.EQUALS, ir.Op.EQUALS), ir.Op.CONTAINS: (ir.Op.ENDSWITH, ir.Op.STARTSWITH),
                      ir.Op.STARTSWITH: (ir.Op.EQUALS, ir.Op.STARTSWITH), ir.Op.ENDSWITH: (ir.Op.ENDSWITH, ir.Op.EQUALS)}
            if q.op in shapes:
                op_a, op_b = shapes[q.op]
                return ir.all_of([on(first, q, op_a, a), on(last, q, op_b, b)])
        return q

    return per_value(p, one)


def merge_joined(condition: ir.Condition, pairs: dict[str, tuple[str, str, str]]) -> ir.Condition:
    """The inverse of `split_joined` where the condition holds its result: sibling tests on
    the two parts of a joined field (`pairs`: first column -> (first, sep, last)) that
    `split_joined` would have made become one test on `strcat(first, sep, last)`."""
    if not pairs or not isinstance(condition, (ir.And, ir.Or)):
        if isinstance(condition, ir.Not):
            return ir.Not(merge_joined(condition.operand, pairs))
        return condition
    operands = [merge_joined(o, pairs) for o in condition.operands]
    is_and = isinstance(condition, ir.And)
    shapes = ({(ir.Op.EQUALS, ir.Op.EQUALS): ir.Op.EQUALS, (ir.Op.ENDSWITH, ir.Op.STARTSWITH): ir.Op.CONTAINS,
               (ir.Op.EQUALS, ir.Op.STARTSWITH): ir.Op.STARTSWITH, (ir.Op.ENDSWITH, ir.Op.EQUALS): ir.Op.ENDSWITH}
              if is_and else {(ir.Op.CONTAINS, ir.Op.CONTAINS): ir.Op.CONTAINS, (ir.Op.TERM, ir.Op.TERM): ir.Op.TERM})

    def simple(node: Any) -> bool:
        return (isinstance(node, ir.Predicate) and isinstance(node.field, ir.Field) and not node.negated
                and len(node.values) == 1 and isinstance(node.values[0], str))

    used: set[int] = set()
    out: list[ir.Condition] = []
    for i, a in enumerate(operands):
        if i in used or not simple(a) or a.field.name not in pairs:
            continue
        first, s, last = pairs[a.field.name]
        for j, b in enumerate(operands):
            if j in used or j == i or not simple(b) or b.field.name != last:
                continue
            op = shapes.get((a.op, b.op))
            if op is None or a.case_sensitive != b.case_sensitive or s in a.values[0] + b.values[0]:
                continue
            if not is_and and a.values != b.values:
                continue
            value = a.values[0] if not is_and else a.values[0] + s + b.values[0]
            whole = ir.Call("strcat", (a.field, ir.Literal(s), b.field), "string")
            out.append(ir.Predicate(whole, op, (value,), case_sensitive=a.case_sensitive, span=a.span))
            used.update((i, j))
            break
    rest = [o for k, o in enumerate(operands) if k not in used]
    return (ir.all_of if is_and else ir.any_of)(out + rest)


# ------------------------------------------------------------------ list items


class Item(Form):
    """`item: SHA256`: the column is the value of `SHA256=...` in the field's comma-separated
    list (Sysmon's `Hashes`).  Domain: each digest is hex of its algorithm's length."""

    __slots__ = ()

    @property
    def key(self) -> str:
        return self.spec.options["item"]

    @property
    def sep(self) -> str:
        return self.spec.options.get("separator", ",")

    @property
    def assign(self) -> str:
        return self.spec.options.get("assign", "=")

    def forward(self, p, type_, ctx):
        subject = ctx.subject(self.field, "string")
        entry = self.key + self.assign
        hexes = f"[0-9A-Fa-f]*"
        size = conventions.digest_length(self.key)

        def one(q: ir.Predicate) -> ir.Condition:
            v = _text(q.values[0]) if q.values else None
            if q.op is ir.Op.EMPTY or (q.op is ir.Op.EQUALS and v == ""):
                return negated(ir.Predicate(subject, ir.Op.CONTAINS, (entry,), span=q.span))
            if q.op is ir.Op.EXISTS:
                return ir.Predicate(subject, ir.Op.CONTAINS, (entry,), span=q.span)
            if v is None or q.op not in (ir.Op.EQUALS, ir.Op.STARTSWITH, ir.Op.CONTAINS,
                                         ir.Op.ENDSWITH, ir.Op.TERM):
                ctx.lossy(f"a {q.op.value} test on {self.column} cannot be said on {self.field}: "
                          "written on the whole list", q)
                return replace(q, field=subject)
            if not re.fullmatch(r"[0-9A-Fa-f]*", v) or (size and len(v) > size):
                return ir.Const(False)  # a digest is hex of its length
            if q.op is ir.Op.STARTSWITH or (q.op in (ir.Op.EQUALS, ir.Op.TERM) and size and len(v) == size):
                return ir.Predicate(subject, ir.Op.CONTAINS, (entry + v,), case_sensitive=q.case_sensitive,
                                    span=q.span)
            needle = _lit(v, q)
            start = _lit(entry, q)
            end = f"(?:{re.escape(self.sep)}|$)"
            pattern = {ir.Op.CONTAINS: f"{start}{hexes}{needle}", ir.Op.ENDSWITH: f"{start}{hexes}{needle}{end}",
                       ir.Op.EQUALS: f"{start}{needle}{end}", ir.Op.TERM: f"{start}{needle}{end}"}[q.op]
            return regex_predicate(subject, pattern, q)

        return per_value(p, one)

    def feed_entries(self, column: str) -> tuple[ir.Op, str] | None:
        """`column in (<feed>)` as `field contains` one of the feed's values written as list
        entries: the KQL stages that turn the feed's values into `KEY=digest` entries.  A value
        that is no digest of the key's length is left out (no column value of the domain equals
        it: `forward` makes such a test false); '' is kept as '' (it matches a missing digest,
        which an entry cannot say: `rmmc placeholders` refuses it)."""
        from rmmc.compiler.kql.printer import kql_name, kql_string

        size = conventions.digest_length(self.key)
        if not size:
            return None
        c = kql_name(column)
        digest = kql_string(f"^[0-9A-Fa-f]{{{size}}}$")
        return ir.Op.CONTAINS, (f"| where isempty({c}) or {c} matches regex {digest} "
                                f"| project {c} = iff(isempty({c}), {c}, strcat({kql_string(self.key + self.assign)}, {c}))")

    def value(self, type_, ctx):
        pattern = f"(?:^|{re.escape(self.sep)}){re.escape(self.key + self.assign)}([^{re.escape(self.sep)}]*)"
        return ir.Call("extract", (ir.Literal(pattern), ir.Literal(1, "long"),
                                   ctx.subject(self.field, "string")), "string")

    def to_env(self, event, out):
        value = event.get(self.column)
        if value in (None, "") or self.field in event:  # the list itself is there (normalize)
            return
        entry = f"{self.key}{self.assign}{value}"
        out[self.field] = f"{out[self.field]}{self.sep}{entry}" if out.get(self.field) else entry

    def from_env(self, event, out):
        value = event.get(self.field)
        if isinstance(value, str):
            for entry in value.split(self.sep):
                key, assign, digest = entry.partition(self.assign)
                if assign and key.strip().upper() == self.key.upper():
                    out[self.column] = digest.strip()

    def normalize(self, event):
        value = event.get(self.column)
        size = conventions.digest_length(self.key) or 64
        if value not in (None, "") and not (isinstance(value, str) and re.fullmatch(f"[0-9A-Fa-f]{{{size}}}", value)):
            import hashlib  # only here (verify's events): it loads OpenSSL, 2% of a cold start

            digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()
            event[self.column] = value = (digest * 2)[:size]
        if self.field in event:  # the list itself is a column too (a test rmmc kept on it)
            listed = event[self.field]
            entries = [e for e in (listed.split(self.sep) if isinstance(listed, str) and listed else [])
                       if e.partition(self.assign)[0].strip().upper() != self.key.upper()]
            if value not in (None, ""):
                entries.append(f"{self.key}{self.assign}{value}")
            event[self.field] = self.sep.join(entries)


def read_items(p: ir.Predicate, items: dict[str, tuple[ir.Field | None, str, str]], ctx: Context) -> ir.Condition:
    """A test on a `KEY=value,...` list field (`items`: key -> (column or None, sep, assign))
    as tests on the columns: `Hashes|contains: 'SHA256=AB'` is `SHA256 startswith 'AB'`, and a
    whole digest is `SHA256 == ...`; a hex value without a key is any digest containing it.
    A test the columns cannot say (a key the table has no column for, such as IMPHASH in
    Defender, or a test on the list's text) stays a test on the list field itself, which the
    table does not have: a target without it then says so."""

    def kept(q: ir.Predicate, why: str) -> ir.Condition:
        ctx.note(why + f": kept as a test on {q.field.name}", q)
        return q

    def one(q: ir.Predicate) -> ir.Condition:
        v = _text(q.values[0]) if q.values else None
        if v is None or q.op is not ir.Op.CONTAINS:
            return kept(q, f"a {q.op.value} test on the whole list is no digest test")
        key, assign, digest = v.partition("=")
        if assign and key.upper() in items and re.fullmatch(r"[0-9A-Fa-f]+", digest):
            column = items[key.upper()][0]
            if column is None:
                return kept(q, f"{key.upper()} digests have no column here")
            size = conventions.digest_length(key) or 0
            op = ir.Op.EQUALS if size and len(digest) == size else ir.Op.STARTSWITH
            return replace(q, field=column, op=op, values=(digest,))
        if not assign and re.fullmatch(r"[0-9A-Fa-f]{3,}", v):
            columns = [c for c, _, _ in items.values() if c is not None]
            if len(columns) == len(items):
                return ir.any_of([replace(q, field=c) for c in columns])
            return kept(q, "some digests of the list have no column here")
        return kept(q, f"{v!r} is no KEY=digest test")

    return per_value(p, one)


# ------------------------------------------------------------------ file name of a path


class Basename(Form):
    """`basename: true`: the column is the file name, the last part of the path the field holds
    (`FileName` of Sysmon's `Image`).  Domain: the path holds a separator and ends with the name."""

    __slots__ = ()

    @property
    def sep(self) -> str:
        return self.spec.options.get("separator", "\\")

    def forward(self, p, type_, ctx):
        subject = ctx.subject(self.field, "string")
        s = self.sep
        S = re.escape(s)

        def one(q: ir.Predicate) -> ir.Condition:
            v = _text(q.values[0]) if q.values else None
            if q.op is ir.Op.EXISTS:  # a file name is there when its path is (the domain)
                return replace(q, field=subject)
            if q.op is ir.Op.EMPTY or (q.op is ir.Op.EQUALS and v == ""):
                return ir.any_of([ir.Predicate(subject, ir.Op.EMPTY, span=q.span),
                                  ir.Predicate(subject, ir.Op.ENDSWITH, (s,), span=q.span)])
            if v is None or q.op not in (ir.Op.EQUALS, ir.Op.STARTSWITH, ir.Op.ENDSWITH,
                                        ir.Op.CONTAINS, ir.Op.TERM):
                ctx.lossy(f"a {q.op.value} test on {self.column} cannot be said on the path "
                          f"{self.field}: written on the whole path", q)
                return replace(q, field=subject)
            if s in v:
                return ir.Const(False)
            if v == "":  # every name starts, ends with, contains '' (and has it as a term)
                return ir.Const(True)
            if q.op is ir.Op.EQUALS:
                return replace(q, field=subject, op=ir.Op.ENDSWITH, values=(s + v,))
            if q.op is ir.Op.ENDSWITH:
                return replace(q, field=subject)
            needle = _lit(v, q)
            rest = f"[^{S}]*"
            if q.op is ir.Op.STARTSWITH:
                pattern = f"{S}{needle}{rest}$"
            elif q.op is ir.Op.CONTAINS:
                pattern = f"{S}{rest}{needle}{rest}$"
            else:
                before = f"(?:{rest}[^{_TERM}])?" if v[0].isascii() and v[0].isalnum() else rest
                after = f"(?:[^{_TERM}]{rest})?$" if v[-1].isascii() and v[-1].isalnum() else f"{rest}$"
                pattern = f"{S}{before}{needle}{after}"
            return regex_predicate(subject, pattern, q)

        return per_value(p, one)

    def feed_entries(self, column: str) -> tuple[ir.Op, str] | None:
        """`column in (<feed>)` as `field endswith` one of the feed's values after a separator:
        the KQL stages that write each value as `\\name`.  A value holding the separator is
        left out (no file name equals it: `forward` makes such a test false); '' is kept as ''
        (it matches a path ending with the separator, which a suffix cannot say alone:
        `rmmc placeholders` refuses it)."""
        from rmmc.compiler.kql.printer import kql_name, kql_string

        c, s = kql_name(column), kql_string(self.sep)
        return ir.Op.ENDSWITH, (f"| where not({c} contains {s}) "
                                f"| project {c} = iff(isempty({c}), {c}, strcat({s}, {c}))")

    def value(self, type_, ctx):
        split = ir.Call("split", (ctx.subject(self.field, "string"), ir.Literal(self.sep)), "dynamic")
        return ir.Call("tostring", (ir.Call("index", (split, ir.Literal(-1, "long")), "dynamic"),), "string")

    def to_env(self, event, out):
        path_column = self.spec.options.get("path")
        if path_column is not None and event.get(path_column) is not None:
            out.setdefault(self.field, event[path_column])
        elif event.get(self.column) is not None:
            out.setdefault(self.field, "C:" + self.sep + str(event[self.column]))

    def from_env(self, event, out):
        value = event.get(self.field)
        if isinstance(value, str):
            out[self.column] = value.rsplit(self.sep, 1)[-1]

    def normalize(self, event):
        path_column = self.spec.options.get("path")
        name = event.get(self.column)
        if isinstance(name, str) and self.sep in name:
            event[self.column] = name = name.replace(self.sep, "_")
        if path_column is None:
            return
        path = event.get(path_column)
        if isinstance(name, str):
            folder = path.rsplit(self.sep, 1)[0] if isinstance(path, str) and self.sep in path else "C:"
            event[path_column] = folder + self.sep + name
        elif isinstance(path, str):
            if self.sep not in path:
                event[path_column] = path = "C:" + self.sep + path
            event[self.column] = path.rsplit(self.sep, 1)[1]


# ------------------------------------------------------------------ enumerated values


class Values(Form):
    """`values: {column value: field value}`: an enumerated column spelled otherwise (Defender's
    `RegistryValueSet` is Sysmon's `EventType: SetValue`).  Domain: the column takes the
    listed values."""

    __slots__ = ("table", "env_type")

    def __init__(self, spec: FieldSpec):
        """`table` and `env_type` worked out once (a plan keeps the form, and every test on the
        column reads both, `env_type` twice)."""
        super().__init__(spec)
        self.table: dict[Any, tuple[Any, ...]] = {k: tuple(v) if isinstance(v, list) else (v,)
                                                  for k, v in spec.options["values"].items()}
        numbers = [v for vs in self.table.values() for v in vs]
        self.env_type: str = "long" if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers) \
            else "string"

    def forward(self, p, type_, ctx):
        from rmmc.compiler.evaluator import evaluate_predicate

        table = self.table
        subject = ctx.subject(self.field, self.env_type)
        probe = ir.Field("v", type_)
        if p.op is ir.Op.EQUALS:
            strange = [v for v in p.values if not _names_key(v, table, p.case_sensitive)]
            if strange:
                ctx.lossy(f"{self.column} {', '.join(map(repr, strange))} has no form in {ctx.env} "
                          f"(its {self.field} values stand for {', '.join(map(repr, table))}): "
                          "that test never holds there", p)
        probed = replace(p, field=probe)  # (one copy for every key: the test is the same)
        hits = [key for key in table if evaluate_predicate(probed, {"v": key}) is True]
        wanted = [v for key in hits for v in table[key]]
        shared = [key for key in table if key not in hits and set(table[key]) & set(wanted)]
        if shared:
            ctx.lossy(f"{self.field} does not tell {', '.join(map(repr, hits))} from "
                      f"{', '.join(map(repr, shared))} apart: the test also matches those", p)
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return ir.Const(False)
        return ir.Predicate(subject, ir.Op.EQUALS, tuple(wanted), case_sensitive=self.env_type != "string",
                            span=p.span)

    def value(self, type_, ctx):
        subject = ctx.subject(self.field, self.env_type)
        keys_of: dict[str, list[str]] = {}
        for key, env_values in self.table.items():
            for v in env_values:
                keys_of.setdefault(str(v).lower(), []).append(key)
        shared = {v: keys for v, keys in keys_of.items() if len(keys) > 1}
        if shared:  # several of the rule's values are one here: the output can only name one
            v, keys = next(iter(shared.items()))
            ctx.shape(f"{self.column} is computed from {self.field}, where {v!r} stands for "
                      f"{', '.join(keys)}: the output says {keys[0]} for each of them")
        args: list[Any] = []
        for key, env_values in self.table.items():
            args += [ir.Boolean(ir.Predicate(subject, ir.Op.EQUALS, env_values,
                                             case_sensitive=self.env_type != "string")), ir.Literal(key)]
        return ir.Call("case", (*args, ir.Literal("")), "string")

    def to_env(self, event, out):
        value = event.get(self.column)
        for key, env_values in self.table.items():
            if value is not None and _same(value, key, True):
                out[self.field] = env_values[0]
                return

    def normalize(self, event):
        if not any(_same(event.get(self.column), key, True) for key in self.table):
            event[self.column] = next(iter(self.table))  # every event has one of the values

    def from_env(self, event, out):
        value = event.get(self.field)
        for key, env_values in self.table.items():
            if value is not None and any(_same(value, v, False) or str(value) == str(v) for v in env_values):
                out[self.column] = key
                return

    def read(self, p, columns, ctx):
        probe = ir.Field("v", p.field.type if isinstance(p.field, ir.Field) else "string")
        probed = replace(p, field=probe)  # (one copy for every value: the test is the same)
        hits = [key for key, env_values in self.table.items() if _holds_for_any(probed, env_values)]
        if not hits:
            return ir.Const(False)
        return ir.Predicate(columns[self.column], ir.Op.EQUALS, tuple(hits), span=p.span)


def _names_key(value: Any, table: dict[Any, Any], cased: bool) -> bool:
    """Whether `value` is one of the table's keys (`_same`): a loop, not `any` over a generator,
    which the first key found closes by raising GeneratorExit into it."""
    for key in table:
        if _same(value, key, cased):
            return True
    return False


def _holds_for_any(p: ir.Predicate, values: tuple[Any, ...]) -> bool:
    """Whether the test `p` of the field `v` holds for one of `values` (a loop, as `_names_key`)."""
    from rmmc.compiler.evaluator import evaluate_predicate

    for v in values:
        if evaluate_predicate(p, {"v": v}) is True:
            return True
    return False


def _same(a: Any, b: Any, cased: bool) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a == b if cased else fold(a) == fold(b)
    return a == b


FORMS: dict[str, type[Form]] = {"rename": Form, "hives": Hives, "joined": Joined, "item": Item,
                                "basename": Basename, "values": Values}


def form_of(spec: FieldSpec) -> Form:
    return FORMS[spec.form](spec)
