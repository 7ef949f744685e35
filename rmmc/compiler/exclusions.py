"""Filter/Exclusion lines of hunt documents -> IR conditions.

Each false-positive scenario of a hunt document ends with `Filter/Exclusion:`, either an
expression over Elastic Common Schema names (`process.name == "schtasks.exe" ||
user.name == "support_user"`) or prose ("Exclude connections from known admin IP ranges").
Expressions become `ir.Exclusion.condition`; prose is kept as text with a note.

Decisions:

* `==` is a case-insensitive whole-value equality: `Predicate(field, Op.EQUALS, (value,),
  case_sensitive=False)`, so `process.name == "schtasks.exe"` matches 'SchTasks.exe'.  The
  values are Windows file, account and host names, which Windows itself compares without
  case; an exact-case reading of the ECS keyword semantics would let 'SCHTASKS.EXE'
  through the exclusion.  `!=` is the same predicate negated.  Numbers and booleans
  compare by value.
* `||` / `or` -> `ir.Or`, `&&` / `and` -> `ir.And`, `!` / `not` -> negation; precedence
  or < and < not < comparison (the grammar is `rmmc/grammar/exclusion.lark`).
* Strings: "..." or '...'; `\\\\`, `\\"` and `\\'` are escapes, any other backslash is kept
  as written, so `"C:\\Windows\\x.exe"` means what a Windows user typed.
* Names are mapped per table by `schema/exclusion_fields.json` onto the column with the same
  meaning (in DeviceNetworkEvents `process.name` is the *initiating* process).  A literal
  must fit the column's type (a quoted string against RemotePort is an error).  An unknown
  name, table or type leaves the scenario's condition None, with a diagnostic.
* Text is an expression when the grammar parses it.  Text that does not parse but starts
  like one (a name then `==`, `!=`, `=`, `:` ...) gets a located syntax error; anything else
  is prose: kept as text with a note.
* Coordinates: `parse_exclusion` locates nodes and errors in the exclusion text itself;
  `lower_exclusion` returns predicates and diagnostics in FILE coordinates, computed from
  `scenario.exclusion_span` (the exclusion is a verbatim slice of the file, so the lines
  inside it give exact line and column).  If the text does not fit its span, diagnostics
  point at the whole exclusion.  No relocation is left to the caller: only add the path
  (`Diagnostic.with_path`).
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Union

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, LineIndex, RmmcError, Severity, Span
from rmmc.compiler.documents.model import FalsePositiveScenario

__all__ = ["AndExpr", "Column", "Comparison", "ExclusionExpr", "ExclusionSyntaxError", "Literal",
           "Name", "NotExpr", "OrExpr", "field_map", "looks_like_expression", "lower_exclusion",
           "lower_expression", "names_of", "parse_exclusion", "relocate"]

MAX_CHARS = 1_000_000
MAX_DEPTH = 100
"""Exclusions nested deeper than this are refused (real ones nest a few levels); the bound
keeps every recursive stage after the parser far from Python's recursion limit."""

FIELDS_PATH = Path(__file__).parent / "schema" / "exclusion_fields.json"

LiteralValue = Union[str, int, float, bool]


class ExclusionSyntaxError(RmmcError):
    """Text that is not an exclusion expression rmmc reads."""


# ------------------------------------------------------------------ the expression tree


@dataclass(frozen=True, slots=True)
class Name:
    """A dotted field name as written (`process.name`)."""

    path: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Literal:
    value: LiteralValue
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Comparison:
    """`name == value`, or `name != value` when negated."""

    name: Name
    value: Literal
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NotExpr:
    operand: "ExclusionExpr"
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AndExpr:
    operands: tuple["ExclusionExpr", ...]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class OrExpr:
    operands: tuple["ExclusionExpr", ...]
    span: Span | None = field(default=None, compare=False, repr=False)


ExclusionExpr = Union[Comparison, NotExpr, AndExpr, OrExpr]


def names_of(expr: ExclusionExpr) -> list[Name]:
    """Every name of an expression, in order."""
    out: list[Name] = []
    stack: list[ExclusionExpr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Comparison):
            out.append(node.name)
        elif isinstance(node, NotExpr):
            stack.append(node.operand)
        else:
            stack.extend(reversed(node.operands))
    return out


# ------------------------------------------------------------------ positions


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` in `text` (`\\n` ends a line)."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _text_span(text: str, start: int, end: int) -> Span:
    line, column = _position(text, start)
    return Span(start, end, line, column)


def relocate(span: Span, text: str, base: Span | None) -> Span:
    """A span of the exclusion `text` moved to the file, where `text` sits at `base`.
    Without a base the span stays relative to the text; when the text does not fit its
    base (not a verbatim slice) the whole base is returned."""
    if base is None:
        return span
    if base.end - base.offset != len(text):
        return base
    start = base.offset + span.offset
    if span.line == 1:
        return Span(start, base.offset + span.end, base.line, base.column + span.column - 1)
    return Span(start, base.offset + span.end, base.line + span.line - 1, span.column)


# ------------------------------------------------------------------ parsing


def _is_token(x: Any) -> bool:
    return hasattr(x, "type") and hasattr(x, "start_pos")


def _bounds(x: Any) -> tuple[int, int]:
    if _is_token(x):
        return x.start_pos, x.end_pos
    return x.span.offset, x.span.end


_ESCAPE = re.compile(r"""\\(["'\\])""")


def _literal(token: Any, span: Span) -> Literal:
    text = str(token)
    if token.type == "STRING":
        return Literal(_ESCAPE.sub(r"\1", text[1:-1]), span)
    if token.type == "NUMBER":
        return Literal(float(text) if "." in text else int(text), span)
    return Literal(token.type == "TRUE", span)


class _Builder:
    """Lark callbacks that build the expression tree while the LALR parser reduces."""

    def _reset(self, text: str) -> None:
        self.lines = LineIndex(text)
        self.depths: dict[int, int] = {}
        self.keep: list[Any] = []

    def _span(self, children: list[Any]) -> Span:
        start, _ = _bounds(children[0])
        _, end = _bounds(children[-1])
        return self.lines.span(start, end)

    def start(self, c):
        return c[0]

    def or_expr(self, c):
        return OrExpr(tuple(c[0::2]), self._span(c))

    def and_expr(self, c):
        return AndExpr(tuple(c[0::2]), self._span(c))

    def negation(self, c):
        return NotExpr(c[1], self._span(c))

    def group(self, c):
        return c[1]

    def comparison(self, c):
        name, op, value = c
        return Comparison(Name(str(name), self._span([name])),
                          _literal(value, self._span([value])),
                          op.type == "NE", self._span(c))


def _with_depth(callback):
    """Record the depth of each node built and refuse trees deeper than MAX_DEPTH."""

    def build(self, children):
        node = callback(self, children)
        deepest = max((self.depths.get(id(x), 0) for x in children), default=0)
        if deepest + 1 > MAX_DEPTH:
            raise _TooDeep(children[0])
        self.depths[id(node)] = deepest + 1
        self.keep.append(node)  # ids stay unique while the parse runs
        return node

    build.__name__ = callback.__name__
    return build


for _name, _callback in list(vars(_Builder).items()):
    if not _name.startswith("_") and callable(_callback):
        setattr(_Builder, _name, _with_depth(_callback))


class _TooDeep(Exception):
    def __init__(self, at: Any):
        super().__init__("too deep")
        self.at = at


_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _lark():
    from rmmc.grammar import load_parser

    builder = _Builder()
    parser = load_parser("exclusion.lark", parser="lalr", lexer="contextual",
                         keep_all_tokens=True, transformer=builder)
    return parser, builder


def parse_exclusion(text: str) -> ExclusionExpr:
    """Parse an exclusion expression; spans are relative to `text`.  Raises
    `ExclusionSyntaxError` (an `RmmcError` with one located diagnostic) otherwise."""
    from lark.exceptions import UnexpectedInput

    if not text.strip():
        raise _syntax("the exclusion is empty", _text_span(text, 0, len(text)))
    if len(text) > MAX_CHARS:
        raise _syntax(f"the exclusion is too long ({len(text):,} characters; the limit is "
                      f"{MAX_CHARS:,})", Span(0, 0, 1, 1), "exclusion-too-long")
    parser, builder = _lark()
    with _LOCK:
        builder._reset(text)
        try:
            return parser.parse(text)
        except _TooDeep as exc:
            start, end = _bounds(exc.at)
            raise _syntax(f"the exclusion is nested too deeply (more than {MAX_DEPTH} levels)",
                          _text_span(text, start, end), "exclusion-too-deep") from None
        except UnexpectedInput as exc:
            raise _syntax(*_describe(exc, text)) from None
        except RecursionError:  # pragma: no cover - the depth bound comes first
            raise _syntax("the exclusion is nested too deeply", Span(0, 0, 1, 1),
                          "exclusion-too-deep") from None
        finally:
            builder._reset("")


def _syntax(message: str, span: Span, code: str = "exclusion-syntax") -> ExclusionSyntaxError:
    return ExclusionSyntaxError(Diagnostic(Severity.ERROR, message, span, code))


_WHAT = {"NAME": "a field name", "EQ": "`==`", "NE": "`!=`", "OR": "`||`", "AND": "`&&`",
         "NOT": "`!`", "LPAR": "`(`", "RPAR": "`)`", "$END": "the end of the expression"}
_VALUES = frozenset({"STRING", "NUMBER", "TRUE", "FALSE"})


def _expected(names: set[str] | frozenset[str]) -> str:
    parts = sorted({_WHAT.get(n, n) for n in names if n not in _VALUES})
    if names & _VALUES:
        parts.insert(0, "a value (a quoted string, a number, true or false)")
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _describe(exc: Any, text: str) -> tuple[str, Span]:
    """A message saying what was found and what was expected, and where."""
    from lark.exceptions import UnexpectedCharacters

    if isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream
        char = text[at]
        if char in "\"'":
            end = text.find("\n", at)
            return "unterminated string", _text_span(text, at, len(text) if end == -1 else end)
        allowed = _acceptable(exc) or set(exc.allowed or ())
        expected = _expected(allowed)
        hint = ""
        if (char.isdigit() or char == "-") and allowed & _VALUES:
            hint = " (quote values that are not plain numbers, such as IP addresses)"
        elif char == "=" and "EQ" in allowed:
            hint = " (compare with `==`)"
        elif char in "\u201c\u201d\u2018\u2019":
            hint = " (quote with straight quotes: \" or ')"
        message = f"unexpected character {char!r}" + (f"; expected {expected}" if expected else "")
        return message + hint, _text_span(text, at, at + 1)
    token = exc.token
    expected = _expected(_acceptable(exc))
    if token.type == "$END":
        end = len(text.rstrip())
        return f"unexpected end of the exclusion; expected {expected}", _text_span(text, end, end)
    if token.type == "RPAR" and "RPAR" not in _acceptable(exc):
        return "unmatched `)`", _text_span(text, token.start_pos, token.end_pos)
    found = str(token)
    shown = found if len(found) <= 40 else found[:37] + "..."
    hint = ""
    if token.type == "NAME" and _acceptable(exc) & _VALUES:
        hint = " (quote text values)"
    return (f"unexpected `{shown}`; expected {expected}{hint}",
            _text_span(text, token.start_pos, token.end_pos))


def _acceptable(exc: Any) -> set[str]:
    """The tokens the parser could take where it stopped: asked of the parser itself (LALR
    merges lookaheads, so the lexer's list may name tokens that would fail later)."""
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None:
        try:
            return set(interactive.accepts())
        except Exception:  # pragma: no cover - fall back to Lark's own list
            pass
    return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


_EXPRESSION_START = re.compile(
    r"\s*(?:(?:[(!]|not\s)\s*)*"
    r"(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\s*(?:[=!<>:~]|in\b)"  # a dotted name, then an operator
    r"|[A-Za-z_]\w*\s*(?:==|!=))",                             # any name, then == or !=
    re.IGNORECASE)


def looks_like_expression(text: str) -> bool:
    """Whether `text` is meant as an expression: it parses, or it starts like one (a
    name followed by a comparison operator), in which case not parsing is a syntax error.
    Anything else is prose."""
    if not text or not text.strip():
        return False
    if _EXPRESSION_START.match(text):
        return True
    try:
        parse_exclusion(text)
    except RmmcError:
        return False
    return True


# ------------------------------------------------------------------ the field map


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str = "string"


@lru_cache(maxsize=1)
def _field_data() -> dict[str, Any]:
    return json.loads(FIELDS_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def field_map(table: str | None) -> Mapping[str, Column] | None:
    """The dotted names understood for `table`, with their columns; None for tables
    without a map."""
    entries = _field_data()["tables"].get(table) if table else None
    if entries is None:
        return None
    return MappingProxyType({name: Column(e["column"], e.get("type", "string"))
                             for name, e in entries.items()})


def _unknown_name_message(name: str, table: str, known: Mapping[str, Column]) -> str:
    message = f"unknown field `{name}` for {table}"
    reason = _field_data().get("not_mapped", {}).get(name)
    if reason:
        message += f": {reason}"
    else:
        folded = {k.lower(): k for k in known}
        guess = folded.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, 1)), None)
        if guess:
            message += f" (did you mean `{guess}`?)"
    return message + "; the exclusion is kept as text"


# ------------------------------------------------------------------ lowering

_RANGES = {"int": (-(2 ** 31), 2 ** 31 - 1), "long": (-(2 ** 63), 2 ** 63 - 1)}


def _value_for(column: Column, literal: Literal, name: str) -> tuple[ir.Value | None, str | None]:
    """The literal as a value of the column's type, or why it is not one."""
    value = literal.value
    kind = column.type
    what = f"`{name}` ({column.name}) is {'an' if kind == 'int' else 'a'} {kind}"
    if kind == "string":
        if isinstance(value, str):
            return value, None
        return None, f"{what}: quote the value"
    if kind in _RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{what}: compare it with a whole number, without quotes"
        low, high = _RANGES[kind]
        if not low <= value <= high:
            return None, f"{what}: {value} is out of its range"
        return value, None
    if kind in ("bool", "boolean"):
        if isinstance(value, bool):
            return value, None
        return None, f"{what}: compare it with true or false"
    if kind in ("real", "double") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    return None, f"{what}: rmmc cannot compare it in an exclusion"


Locate = Callable[[Span | None], Span | None]


def lower_expression(expr: ExclusionExpr, table: str | None,
                     locate: Locate = lambda span: span,
                     ) -> tuple[ir.Condition | None, list[Diagnostic]]:
    """The IR condition of a parsed exclusion over `table`'s columns, or None with the
    diagnostics saying why.  `locate` maps spans of the exclusion text to where they are
    reported (identity: relative to the text)."""
    known = field_map(table)
    if known is None:
        reason = ("the rule's table is unknown" if not table
                  else f"rmmc has no exclusion field map for table {table}")
        return None, [Diagnostic(Severity.WARNING, f"{reason}, so the exclusion's fields cannot "
                                 "be mapped; it is kept as text", locate(expr.span),
                                 "exclusion-table")]
    diagnostics: list[Diagnostic] = []
    seen: set[str] = set()
    for name in names_of(expr):
        if name.path not in known and name.path not in seen:
            seen.add(name.path)
            diagnostics.append(Diagnostic(Severity.WARNING,
                                          _unknown_name_message(name.path, table, known),
                                          locate(name.span), "exclusion-unknown-field"))
    if diagnostics:
        return None, diagnostics
    condition = _lower(expr, known, locate, diagnostics)
    return (None if diagnostics else condition), diagnostics


def _lower(expr: ExclusionExpr, known: Mapping[str, Column], locate: Locate,
           diagnostics: list[Diagnostic]) -> ir.Condition:
    if isinstance(expr, Comparison):
        column = known[expr.name.path]
        value, problem = _value_for(column, expr.value, expr.name.path)
        if problem is not None:
            diagnostics.append(Diagnostic(Severity.ERROR, problem, locate(expr.value.span),
                                          "exclusion-type"))
            return ir.Const(False)
        return ir.Predicate(ir.Field(column.name, column.type), ir.Op.EQUALS, (value,),
                            case_sensitive=False, negated=expr.negated,
                            span=locate(expr.span))
    if isinstance(expr, NotExpr):
        inner = _lower(expr.operand, known, locate, diagnostics)
        return inner.negate() if isinstance(inner, ir.Predicate) else ir.Not(inner)
    operands = [_lower(x, known, locate, diagnostics) for x in expr.operands]
    return ir.all_of(operands) if isinstance(expr, AndExpr) else ir.any_of(operands)


def lower_exclusion(scenario: FalsePositiveScenario,
                    table: str | None) -> tuple[ir.Exclusion, list[Diagnostic]]:
    """The scenario as an `ir.Exclusion`: its condition when the exclusion is an expression
    rmmc understands over `table`, else None; diagnostics in file coordinates.  Never
    raises: problems, even internal ones, come back as diagnostics."""
    text = scenario.exclusion
    base = scenario.exclusion_span
    condition: ir.Condition | None = None
    diagnostics: list[Diagnostic] = []
    if text is not None and text.strip():
        try:
            condition, diagnostics = _condition_of(text, table, base)
        except Exception as exc:  # a bug here must not become a traceback for the user
            condition, diagnostics = None, [Diagnostic(
                Severity.ERROR, f"internal error while reading the exclusion: "
                f"{type(exc).__name__}: {exc}", base, "exclusion-internal")]
    exclusion = ir.Exclusion(name=scenario.title, text=text, description=scenario.description,
                             condition=condition, span=base)
    return exclusion, diagnostics


def _condition_of(text: str, table: str | None,
                  base: Span | None) -> tuple[ir.Condition | None, list[Diagnostic]]:
    def locate(span: Span | None) -> Span | None:
        return None if span is None else relocate(span, text, base)

    try:
        expr = parse_exclusion(text)
    except RmmcError as exc:
        if not _EXPRESSION_START.match(text):
            return None, [Diagnostic(Severity.NOTE, "kept as text: not an expression", base,
                                     "exclusion-prose")]
        return None, [Diagnostic(d.severity, d.message, locate(d.span), d.code)
                      for d in exc.diagnostics]
    return lower_expression(expr, table, locate)
