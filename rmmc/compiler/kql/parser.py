"""KQL text -> syntax tree (`rmmc.compiler.kql.ast`), or located diagnostics.

The grammar lives in `rmmc/grammar/kql.lark`; this module builds the tree while Lark's
LALR parser reduces (no recursion, so deep input cannot overflow the stack while parsing)
and turns Lark's exceptions into messages that say what was expected where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from lark.lexer import Token as _Token

from rmmc.compiler.kql import ast as A
from rmmc.compiler.diagnostics import Diagnostic, RmmcError, Severity, Span
from rmmc.compiler.kql.strings import decode_literal, lone_surrogate, pair_surrogates, plain_quoted
from rmmc.grammar.kql_words import SCHEMA_KEYWORDS
from rmmc.grammar.lalr_driver import Token as _FastToken

MAX_NESTING = 200
"""Trees nested deeper than this (brackets, or chains such as `a + b + c ...`) are refused with
a located error: real rules nest less than 20 deep, and a bound keeps every recursive stage
(printer, lowering, equality) far from Python's recursion limit."""

MAX_QUERY_CHARS = 16 * 1024 * 1024

FAST = True
"""Parse with `rmmc.grammar.lalr_driver` first (the same tables and callbacks as Lark, in a
tighter loop), and with Lark itself only when that stops (an error, to be described as Lark
describes it).  False: Lark only (the tests compare both)."""


class KqlSyntaxError(RmmcError):
    """A query that is not valid KQL (or uses syntax outside rmmc's subset)."""


# ------------------------------------------------------------------ string literals


def decode_string(token_text: str) -> tuple[str, bool]:
    """The value of one KQL string token and whether it was obfuscated (h'...'); the rules
    are in `rmmc.compiler.kql.strings`."""
    from rmmc.compiler.kql.strings import decode_literal, pair_surrogates

    decoded = decode_literal(token_text)
    return pair_surrogates(decoded.value), decoded.obfuscated


class _BadString(Exception):
    """A string literal no target can hold (raised while the tree is built)."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


# ------------------------------------------------------------------ tree building


@dataclass(frozen=True, slots=True)
class _Raw:
    """A run of raw source text (inside a generic operator)."""

    start: int
    end: int
    line: int
    column: int


class _Items(list):
    """A comma-separated list on its way to its parent."""


def _is_token(x: Any) -> bool:
    """A token.  The tree-building callbacks only ever see the fast loop's tokens
    (`rmmc.grammar.lalr_driver.Token`: a tuple of type, value, start_pos, end_pos, line,
    column ...); on Lark's path `_with_depth` converts Lark's tokens to them."""
    return x.__class__ is _FastToken


def _fast_token(token: _Token) -> _FastToken:
    return tuple.__new__(_FastToken, (token.type, token.value, token.start_pos, token.end_pos, token.line,
                                      token.column, token.end_line, token.end_column))


def _start(x: Any) -> tuple[int, int, int]:
    if isinstance(x, list):
        return _start(x[0])
    if _is_token(x):
        return x.start_pos, x.line, x.column
    if isinstance(x, _Raw):
        return x.start, x.line, x.column
    span = x.span
    return span.offset, span.line, span.column


def _end(x: Any) -> int:
    if isinstance(x, list):
        return _end(x[-1])
    if _is_token(x):
        return x.end_pos
    if isinstance(x, _Raw):
        return x.end
    return x.span.end


def _has_position(x: Any) -> bool:
    cls = x.__class__
    if cls is _FastToken or cls is _Raw:
        return True
    if isinstance(x, list):
        return bool(x)
    return getattr(x, "span", None) is not None


def _span(children: list[Any]) -> Span:
    """From the first child with a position to the last one."""
    first, last = children[0], children[-1]  # mostly tokens or nodes: no search
    if first.__class__ is _FastToken:
        offset, line, column = first[2], first[4], first[5]
    else:
        span = getattr(first, "span", None)
        if span is None:
            return _span_searched(children)
        offset, line, column = span.offset, span.line, span.column
    if last.__class__ is _FastToken:
        return Span(offset, last[3], line, column)
    span = getattr(last, "span", None)
    if span is None:
        return _span_searched(children)
    return Span(offset, span.end, line, column)


def _span_searched(children: list[Any]) -> Span:
    for first in children:
        cls = first.__class__
        if cls is _FastToken:
            offset, line, column = first.start_pos, first.line, first.column
            break
        if _has_position(first):
            offset, line, column = _start(first)
            break
    else:
        raise IndexError("no child has a position")
    for last in reversed(children):
        cls = last.__class__
        if cls is _FastToken:
            return Span(offset, last.end_pos, line, column)
        if _has_position(last):
            return Span(offset, _end(last), line, column)
    raise AssertionError("unreachable")


def _nodes(children: Iterable[Any]) -> list[Any]:
    """Children that are not punctuation or keyword tokens (nor empty placeholders)."""
    return [c for c in children if c is not None and not _is_token(c)]


def _as_expr(x: Any) -> Any:
    """Tokens that stand for an expression in lists (names, patterns, `*`)."""
    if _is_token(x):
        span = Span(x.start_pos, x.end_pos, x.line, x.column)
        if x.type == "NAME":
            return A.Name(x.value, span=span)
        if x.type == "NAME_PATTERN":
            return A.NamePattern(x.value, span=span)
        if x.type == "STAR":
            return A.Star(span=span)
        if x.type in ("TRUE", "FALSE"):
            return A.BoolLit(x.value.lower() == "true", span=span)
        if x.type == "NUMBER":
            return A.NumberLit(x.value, span=span)
        raise AssertionError(f"unexpected token {x.type}")
    return x


def _listed(children: list[Any]) -> "_Items":
    """A comma-separated list's items (tokens standing for expressions made nodes)."""
    items = _Items()
    for x in children:
        if x.__class__ is _FastToken:
            if x[0] == "COMMA":
                continue
            x = _as_expr(x)
        items.append(x)
    return items


def _name_of(x: Any) -> str:
    if isinstance(x, A.Name):
        return x.name
    return x.value if _is_token(x) else str(x)


class _Builder:
    """Lark callbacks (one per rule or alias) that build `kql_ast` nodes."""

    text: str = ""

    def _reset(self, text: str) -> None:
        self.text = text
        self.depths: dict[int, int] = {}
        self.keep: list[Any] = []
        self.warnings: list[Diagnostic] = []

    # -- statements
    def start(self, c):
        statements = tuple(_nodes(c))
        directives = tuple(A.Directive(x.value, span=_span([x])) for x in c if _is_token(x) and x.type == "DIRECTIVE")
        span = _span(c) if c else Span(0, 0, 1, 1)
        return A.Query(statements, span=span, warnings=tuple(self.warnings), directives=directives)

    def let_statement(self, c):
        return A.Let(c[1].value, c[3], span=_span(c))

    def function_def(self, c):
        view = _is_token(c[0]) and c[0].type == "VIEW"
        params = tuple(x for x in c if isinstance(x, A.FunctionParam))
        body = next(x for x in c if isinstance(x, _Items))
        return A.FunctionDef(params, tuple(body), view, span=_span(c))

    def function_body(self, c):
        return _Items(_nodes(c))

    def func_param(self, c):
        default = c[4] if len(c) > 4 else None
        return A.FunctionParam(c[0].value, c[2], default, span=_span(c))

    def param_type(self, c):
        if len(c) == 1:
            return c[0].value
        if len(c) == 3 and _is_token(c[1]) and c[1].type == "STAR":
            return "*"
        return tuple(x for x in c if isinstance(x, A.ColumnDecl))

    def set_statement(self, c):
        value = c[3] if len(c) > 3 else None
        return A.SetOption(c[1].value, value, span=_span(c))

    def set_value(self, c):
        return _as_expr(c[0])

    def expr_statement(self, c):
        return A.ExprStatement(c[0], span=_span(c))

    # -- tabular
    def pipe_expr(self, c):
        if len(c) == 1:
            return c[0]
        operators = tuple(x for x in c[2::2])
        return A.Pipeline(c[0], operators, span=_span(c))

    def generic_source(self, c):
        return A.GenericSource(c[0].value, self._raw(c[1:]), span=_span(c))

    def search_source(self, c):
        params = tuple(x for x in c[1:-1] if isinstance(x, A.OpParam))
        tables = None
        opened = next((i for i, x in enumerate(c) if _is_token(x) and x.type == "LIST_OP"), None)
        if opened is not None:
            if c[opened].value != "in":
                raise _BadString(Diagnostic(Severity.ERROR, f"expected 'in' after search, found '{c[opened].value}'",
                                            _span(c[opened:opened + 1]), "syntax"))
            closed = max(i for i, x in enumerate(c) if _is_token(x) and x.type == "RPAR")
            tables = tuple(_as_expr(x) for x in c[opened + 2:closed]
                           if x is not None and not (_is_token(x) and x.type == "COMMA"))
        predicate = c[-1]
        if _is_token(predicate) and predicate.type == "STAR":
            predicate = A.Star(span=_span(c[-1:]))
        return A.Search(params, tables, _as_expr(predicate), span=_span([x for x in c if x is not None]))

    def search_column(self, c):
        return A.SearchColumn(_as_expr(c[0]), _as_expr(c[2]), span=_span(c))

    def generic_operator(self, c):
        return A.GenericOperator(c[0].value, self._raw(c[1:]), span=_span(c))

    def _raw(self, items: list[Any]) -> str:
        items = [x for x in items if x is not None]
        if not items:
            return ""
        return self.text[_start(items[0])[0]:_end(items[-1])]

    def raw_group(self, c):
        offset, line, column = _start(c[0])
        return _Raw(offset, _end(c[-1]), line, column)

    def datatable(self, c):
        columns = tuple(x for x in c if isinstance(x, A.ColumnDecl))
        open_values = next(i for i, x in enumerate(c) if _is_token(x) and x.type == "LSQB")
        values = tuple(_as_expr(x) for x in c[open_values + 1:-1]
                       if x is not None and not (_is_token(x) and x.type == "COMMA"))
        return A.Datatable(columns, values, span=_span(c))

    def externaldata(self, c):
        columns = tuple(x for x in c if isinstance(x, A.ColumnDecl))
        open_uris = next(i for i, x in enumerate(c) if _is_token(x) and x.type == "LSQB")
        close_uris = next(i for i, x in enumerate(c) if _is_token(x) and x.type == "RSQB")
        uris = tuple(_as_expr(x) for x in c[open_uris + 1:close_uris]
                     if x is not None and not (_is_token(x) and x.type == "COMMA"))
        properties = tuple((x.name, x.value) for x in c[close_uris + 1:] if isinstance(x, A.NamedArg))
        return A.ExternalData(columns, uris, properties, span=_span([x for x in c if x is not None]))

    def external_property(self, c):
        return A.NamedArg(c[0].value, _as_expr(c[2]), span=_span(c))

    def column_decl(self, c):
        if _is_token(c[0]) and c[0].value in SCHEMA_KEYWORDS:  # Microsoft's parser wants ['date']
            raise _BadString(Diagnostic(Severity.ERROR, f"'{c[0].value}' is a keyword: a column so named is written "
                                        f"['{c[0].value}'] in a schema", _span(c[:1]), "syntax"))
        return A.ColumnDecl(_name_of(c[0]), c[2].value, span=_span(c))

    # -- operators
    def where_operator(self, c):
        return A.Where(c[1], span=_span(c))

    def extend_operator(self, c):
        return A.Extend(tuple(c[1]), span=_span(c))

    def summarize_operator(self, c):
        params = tuple(x for x in c if isinstance(x, A.OpParam))
        lists = [x for x in c if isinstance(x, _Items)]
        has_by = any(_is_token(x) and x.type == "BY" for x in c)
        by = tuple(lists.pop()) if has_by else ()
        aggregates = tuple(lists[0]) if lists else ()
        return A.Summarize(params, aggregates, by, span=_span(c))

    def project_operator(self, c):
        items = tuple(c[1]) if len(c) > 1 and c[1] is not None else ()
        return A.Project(items, span=_span(c))

    def project_away_operator(self, c):
        return A.ProjectAway(tuple(c[1]), span=_span(c))

    def project_keep_operator(self, c):
        return A.ProjectKeep(tuple(c[1]), span=_span(c))

    def project_rename_operator(self, c):
        # (new, old) pairs; a bare column stays a Name, for lowering to refuse where it stands
        return A.ProjectRename(tuple(_as_expr(x) if _is_token(x) else x for x in c[1::2]),
                               span=_span(c))

    def project_reorder_operator(self, c):
        return A.ProjectReorder(tuple(_nodes(c)), span=_span(c))

    def distinct_operator(self, c):
        if _is_token(c[1]):
            return A.Distinct((_as_expr(c[1]),), span=_span(c))
        return A.Distinct(tuple(c[1]), span=_span(c))

    def sort_operator(self, c):
        return A.Sort(tuple(x for x in c if isinstance(x, A.SortKey)), span=_span(c))

    def top_operator(self, c):
        return A.Top(c[1], c[3], span=_span(c))

    def take_operator(self, c):
        return A.Take(c[1], span=_span(c))

    def count_operator(self, c):
        return A.Count(span=_span(c))

    def as_operator(self, c):
        params = tuple(x for x in c if isinstance(x, A.OpParam))
        return A.As(params, c[-1].value, span=_span(c))

    def _join_like(self, c):
        params = tuple(x for x in c if isinstance(x, A.OpParam))
        on_index = next(i for i, x in enumerate(c) if _is_token(x) and x.type == "ON")
        right = _as_expr(c[on_index - 1])
        on = tuple(x for x in c[on_index + 1:] if not _is_token(x))
        return params, right, on

    def join_operator(self, c):
        return A.Join(*self._join_like(c), span=_span(c))

    def lookup_operator(self, c):
        return A.Lookup(*self._join_like(c), span=_span(c))

    def union_operator(self, c):
        params = tuple(x for x in c[1:] if isinstance(x, A.OpParam))
        tables = tuple(_as_expr(x) for x in c[1:]
                       if not isinstance(x, A.OpParam) and not (_is_token(x) and x.type == "COMMA"))
        return A.Union(params, tables, span=_span(c))

    def mv_expand_operator(self, c):
        params = tuple(x for x in c if isinstance(x, A.OpParam))
        items = tuple(x for x in c if isinstance(x, A.MvExpandItem))
        limit = c[-1] if len(c) >= 2 and _is_token(c[-2]) and c[-2].type == "LIMIT" else None
        return A.MvExpand(params, items, limit, span=_span(c))

    def mv_expand_item(self, c):
        to_type = c[4].value if len(c) > 1 else None
        return A.MvExpandItem(c[0], to_type, span=_span(c))

    def parse_operator(self, c):
        params = tuple(x for x in c if isinstance(x, A.OpParam))
        with_index = next(i for i, x in enumerate(c) if _is_token(x) and x.type == "WITH")
        source = c[with_index - 1]
        pattern = tuple(_as_expr(x) for x in c[with_index + 1:])
        return A.Parse(params, source, pattern, span=_span(c))

    def parse_column(self, c):
        return A.ParseColumn(_name_of(_as_expr(c[0])), c[2].value if len(c) > 2 else None, span=_span(c))

    def op_param(self, c):
        return A.OpParam(c[0].value, _as_expr(c[2]), span=_span(c))

    # -- lists and assignments
    def assignments(self, c):
        return _listed(c)

    def name_patterns(self, c):
        return _listed(c)

    def assign(self, c):
        if _is_token(c[0]) and c[0].type == "LPAR":
            targets = tuple(x.value for x in c if _is_token(x) and x.type == "NAME")
        else:
            targets = (_name_of(c[0]),)
        return A.Assignment(targets, c[-1], span=_span(c))

    def rename(self, c):
        return (_name_of(c[0]), _name_of(c[2]))

    def reorder_item(self, c):
        direction = c[1].value if len(c) > 1 and c[1] is not None else None
        return A.SortKey(_as_expr(c[0]), direction, span=_span(c))

    def sort_key(self, c):
        direction = nulls = None
        for x in c[1:]:
            if _is_token(x) and x.type in ("ASC", "DESC"):
                direction = x.value
            elif _is_token(x) and x.type in ("FIRST", "LAST"):
                nulls = x.value
        return A.SortKey(c[0], direction, nulls, span=_span(c))

    def call_args(self, c):
        return _listed(c)

    # -- scalar expressions
    def or_chain(self, c):
        return A.Logical("or", tuple(c[0::2]), span=_span(c))

    def and_chain(self, c):
        return A.Logical("and", tuple(c[0::2]), span=_span(c))

    def binary(self, c):
        left = _as_expr(c[0])
        if _is_token(c[0]) and c[0].type == "NAME":
            left = A.Name(c[0].value, span=_span(c[:1]))
        return A.Binary(c[1].value, left, c[2], span=_span(c))

    def render_property(self, c):
        return A.OpParam(c[0].value, _as_expr(c[2]), span=_span(c))

    def named_arg(self, c):
        return A.NamedArg(c[0].value, c[2], span=_span(c))

    def list_op(self, c):
        items = tuple(x for x in c[3:-1] if not (_is_token(x) and x.type == "COMMA"))
        return A.ListOp(c[1].value, c[0], items, span=_span(c))

    def between(self, c):
        return A.Between(c[0], c[3], c[5], c[1].value.startswith("!"), span=_span(c))

    def unary(self, c):
        return A.Unary(c[0].value, c[1], span=_span(c))

    def member(self, c):
        return A.Member(c[0], _name_of(c[2]), span=_span(c))

    def index(self, c):
        return A.Index(c[0], c[-2], span=_span(c))

    def call(self, c):
        name = A.Name(c[0].value, span=_span(c[:1]))
        args = tuple(c[2]) if c[2] is not None else ()
        return A.Call(name, args, span=_span(c))

    def method_call(self, c):
        target = A.Member(c[0], c[2].value, span=_span(c[:3]))
        args = tuple(c[4]) if c[4] is not None else ()
        return A.Call(target, args, span=_span(c))

    def name(self, c):
        _, value, start, end, line, column, _, _ = c[0]
        return A.Name(value, span=Span(start, end, line, column))

    def bracket_name(self, c):
        return A.Name(c[1].value, span=_span(c))

    def string(self, c):
        if len(c) == 1:  # most literals: one quoted token, nothing to decode
            _, text, start, end, line, column, _, _ = c[0]
            value = plain_quoted(text)
            if value is not None:
                return A.StringLit(value, False, span=Span(start, end, line, column))
        parts = [decode_literal(t.value) for t in c]
        for token, part in zip(c, parts):
            for note in part.notes:
                self.warnings.append(Diagnostic(
                    Severity.WARNING, note.message,
                    Span(token.start_pos + note.start, token.start_pos + note.end, token.line,
                         token.column + note.start), "kql-string"))
        value = pair_surrogates("".join(p.value for p in parts))
        problem = lone_surrogate(value)
        if problem is not None:
            raise _BadString(Diagnostic(Severity.ERROR, f"string literal: {problem}", _span(c),
                                        "kql-string"))
        return A.StringLit(value, any(p.obfuscated for p in parts), span=_span(c))

    def number(self, c):
        return A.NumberLit(c[0].value, span=_span(c))

    def signed_number(self, c):
        return A.Unary(c[0].value, A.NumberLit(c[1].value, span=_span(c[1:])), span=_span(c))

    def timespan(self, c):
        return A.TimespanLit(c[0].value, span=_span(c))

    def typed_literal(self, c):
        text = c[0].value
        type_name, _, rest = text.partition("(")
        return A.TypedLit(type_name.strip(), rest[:-1].strip(), span=_span(c))

    def true(self, c):
        return A.BoolLit(True, span=_span(c))

    def false(self, c):
        return A.BoolLit(False, span=_span(c))

    def null(self, c):
        return A.NullLit(span=_span(c))

    def dynamic(self, c):
        return A.DynamicLit(c[2], span=_span(c))

    def json_array(self, c):
        items = tuple(x for x in c[1:-1] if x is not None and not (_is_token(x) and x.type == "COMMA"))
        return A.DynArray(items, span=_span(c))

    def json_object(self, c):
        entries = tuple(x for x in c[1:-1] if x.__class__ is tuple)  # json_entry's (tokens: not)
        return A.DynObject(entries, span=_span(c))

    def json_entry(self, c):
        return (c[0].value, c[2])

    def paren(self, c):
        return A.Paren(c[1], span=_span(c))


def _with_depth(callback):
    """Wrap a tree-building callback so that it records the depth of what it builds and
    refuses trees deeper than MAX_NESTING (one mechanism for every kind of nesting)."""

    def build(self, children):
        children = [_fast_token(x) if x.__class__ is _Token else x for x in children]
        node = callback(self, children)
        get = self.depths.get
        deepest = 0
        for child in children:
            d = get(id(child), 0)
            if d > deepest:
                deepest = d
        depth = deepest + 1
        if depth > MAX_NESTING:
            raise _TooDeep(_first_token(children))
        self.depths[id(node)] = depth
        self.keep.append(node)  # ids stay unique while the parse runs
        return node

    build.__name__ = callback.__name__
    build.__wrapped__ = callback  # the fast loop counts depth itself (`_unwrapped`)
    return build


def _first_token(children):
    for child in children:
        if _is_token(child):
            return child
        span = getattr(child, "span", None)
        if span is not None:
            return _SpanToken(span)
    return _SpanToken(Span(0, 0, 1, 1))


@dataclass(frozen=True)
class _SpanToken:
    span: Span

    @property
    def start_pos(self):
        return self.span.offset

    @property
    def end_pos(self):
        return self.span.end

    @property
    def line(self):
        return self.span.line

    @property
    def column(self):
        return self.span.column


for _name, _callback in list(vars(_Builder).items()):
    if not _name.startswith("_") and callable(_callback):
        setattr(_Builder, _name, _with_depth(_callback))


# ------------------------------------------------------------------ the parser


class _TokenTracker:
    """A post-lexer that watches the token stream: it remembers the last tokens (for error
    messages) and refuses brackets nested deeper than MAX_NESTING."""

    OPEN = frozenset({"LPAR", "LSQB", "LBRACE"})
    CLOSE = frozenset({"RPAR", "RSQB", "RBRACE"})
    always_accept = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.previous = None
        self.last = None

    def token_before(self, exc: Exception):
        """The last good token before the place `exc` complains about."""
        bad = getattr(exc, "token", None)
        if bad is not None and bad.type != "$END" and self.last is not None and self.last.start_pos == getattr(bad, "start_pos", None):
            return self.previous
        return self.last

    def process(self, stream):
        depth = 0
        opening, closing = self.OPEN, self.CLOSE
        for token in stream:
            kind = token.type
            if kind in opening:
                depth += 1
                if depth > MAX_NESTING:
                    raise _TooDeep(token)
            elif kind in closing:
                depth -= 1
            self.previous, self.last = self.last, token
            yield token


class _TooDeep(Exception):
    def __init__(self, token):
        super().__init__("too deep")
        self.token = token


@lru_cache(maxsize=1)
def _lark():
    from rmmc.grammar import load_parser

    builder = _Builder()
    tracker = _TokenTracker()
    parser = load_parser("kql.lark", parser="lalr", lexer="contextual", keep_all_tokens=True,
                         maybe_placeholders=True, transformer=builder, postlex=tracker)
    return parser, builder, tracker


@lru_cache(maxsize=1)
def _driver():
    """The fast loop over the same parser (`rmmc.grammar.lalr_driver`)."""
    from rmmc.grammar.lalr_driver import LalrDriver

    parser, builder, tracker = _lark()
    return LalrDriver(parser, (tracker.OPEN, tracker.CLOSE, MAX_NESTING), skip_ignored=True,
                      nesting=(MAX_NESTING, _unwrapped))


def _unwrapped(callback):
    """A `_Builder` callback without its depth bookkeeping (`_with_depth`), for the fast
    loop, which counts the depth of what it builds on a stack of its own."""
    inner = getattr(callback, "__wrapped__", None)
    if inner is None or getattr(callback, "__self__", None) is None:
        return callback
    return inner.__get__(callback.__self__)


def _cache_file(grammar: str) -> str | bool:
    """Where Lark keeps the analysed KQL grammar between runs (see `rmmc.grammar`)."""
    from rmmc.grammar import cache_file

    return cache_file("kql.lark", grammar)


def parse_kql(text: str) -> A.Query:
    """Parse a KQL query.  Raises `KqlSyntaxError` (with located diagnostics) when the text
    is not valid KQL or goes beyond what rmmc reads."""
    from lark.exceptions import UnexpectedInput

    if len(text) > MAX_QUERY_CHARS:
        raise KqlSyntaxError(Diagnostic(
            Severity.ERROR,
            f"query is too large ({len(text):,} characters; the limit is {MAX_QUERY_CHARS:,})",
            Span(0, 0, 1, 1), "too-large"))
    parser, builder, tracker = _lark()
    if FAST:
        builder._reset(text)
        try:
            return _driver().parse(text)
        except Exception:  # not valid, or too deep: Lark says what is wrong, as always
            pass
        finally:
            builder._reset("")
    builder._reset(text)
    tracker.reset()
    try:
        return parser.parse(text)
    except _BadString as exc:
        raise KqlSyntaxError(exc.diagnostic) from None
    except _TooDeep as exc:
        token = exc.token
        raise KqlSyntaxError(Diagnostic(
            Severity.ERROR,
            f"query nested too deeply (more than {MAX_NESTING} levels)",
            Span(token.start_pos, token.end_pos, token.line, token.column), "too-deep")) from None
    except UnexpectedInput as exc:
        from rmmc.compiler.kql.errors import describe_syntax_error

        raise KqlSyntaxError(describe_syntax_error(exc, text, tracker.token_before(exc))) from None
    except RecursionError:
        raise KqlSyntaxError(Diagnostic(
            Severity.ERROR, "query is nested too deeply to parse", Span(0, 0, 1, 1),
            "too-deep")) from None
    finally:
        builder._reset("")

