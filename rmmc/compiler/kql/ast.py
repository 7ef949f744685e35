"""The KQL syntax tree: frozen dataclasses, one per construct, each with its source span.

Spans never take part in equality, so `parse(print(tree)) == tree` compares structure.
Names of operators and keywords are kept canonical (`filter` is a `Where`, `order` a
`Sort`, `limit` a `Take`): they mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import typing

from rmmc.compiler.diagnostics import Diagnostic, Span


@dataclass(frozen=True, slots=True)
class Node:
    span: Span | None = field(default=None, compare=False, repr=False, kw_only=True)


# ------------------------------------------------------------------ scalar expressions


@dataclass(frozen=True, slots=True)
class Name(Node):
    """A column, table, variable or function name (`['x y']` is the name `x y`)."""

    name: str


@dataclass(frozen=True, slots=True)
class NamePattern(Node):
    """A name with `*` wildcards, as in `project-away Init*` or `union Device*`."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Star(Node):
    """`*` standing for all columns: `distinct *`, `arg_max(t, *)`."""


@dataclass(frozen=True, slots=True)
class StringLit(Node):
    """A string literal, decoded.  `obfuscated` marks h'...' literals."""

    value: str
    obfuscated: bool = False


@dataclass(frozen=True, slots=True)
class NumberLit(Node):
    """An int, long or real literal, kept as written (`5`, `1.5`, `1e3`, `0x1F`)."""

    text: str


@dataclass(frozen=True, slots=True)
class TimespanLit(Node):
    """A timespan literal such as `5d`, `1.5h`, `100ms`."""

    text: str


@dataclass(frozen=True, slots=True)
class TypedLit(Node):
    """`datetime(2024-01-01)`, `int(null)`, `guid(...)`, `timespan(1d)`: type and inner text."""

    type: str
    text: str


@dataclass(frozen=True, slots=True)
class BoolLit(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class NullLit(Node):
    pass


@dataclass(frozen=True, slots=True)
class DynamicLit(Node):
    """`dynamic(...)`; `value` is a literal, `DynArray` or `DynObject`."""

    value: "Expr"


@dataclass(frozen=True, slots=True)
class DynArray(Node):
    items: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class DynObject(Node):
    entries: tuple[tuple[str, "Expr"], ...]


@dataclass(frozen=True, slots=True)
class Paren(Node):
    expr: "Expr"


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # '-' or '+'
    operand: "Expr"


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Arithmetic, comparison and string operators: `op` as written (`has`, `!contains_cs`,
    `=~`, `matches regex`, `==`, `<`, `+` ...)."""

    op: str
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True, slots=True)
class Logical(Node):
    """`a and b and c` / `a or b`: a flat chain of one operator."""

    op: str  # 'and' or 'or'
    operands: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class ListOp(Node):
    """`x in (...)`, `!in`, `in~`, `!in~`, `has_any (...)`, `has_all (...)`."""

    op: str
    left: "Expr"
    items: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Between(Node):
    left: "Expr"
    low: "Expr"
    high: "Expr"
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Call(Node):
    """`f(args)` or `x.f(args)`; `func` is a `Name` or a `Member`."""

    func: "Expr"
    args: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class NamedArg(Node):
    """`name = value` as a function argument: `f(starttime=ago(1d))`."""

    name: str
    value: "Expr"


@dataclass(frozen=True, slots=True)
class Member(Node):
    """`x.y` (also `x.['y']`)."""

    target: "Expr"
    name: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    """`x[0]`, `x['key']`."""

    target: "Expr"
    index: "Expr"


# ------------------------------------------------------------------ tabular expressions


@dataclass(frozen=True, slots=True)
class Pipeline(Node):
    """`source | op | op ...` (at least one operator)."""

    source: "Expr"
    operators: tuple["Operator", ...]


@dataclass(frozen=True, slots=True)
class ColumnDecl(Node):
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Datatable(Node):
    columns: tuple[ColumnDecl, ...]
    values: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class ExternalData(Node):
    """`externaldata (columns) [uri, ...] with (name = value, ...)`: a table whose rows are
    read from storage when the query runs."""

    columns: tuple[ColumnDecl, ...]
    uris: tuple["Expr", ...]
    properties: tuple[tuple[str, "Expr"], ...] = ()


@dataclass(frozen=True, slots=True)
class GenericSource(Node):
    """A tabular source outside the subset (`print`, `range`, `externaldata` ...)."""

    name: str
    raw: str


@dataclass(frozen=True, slots=True)
class Search(Node):
    """`search [kind=...] [in (T, ...)] predicate`: the predicate's string literals are terms
    looked for in every column (`SearchColumn` looks in one); `tables` is None without `in`."""

    params: tuple["OpParam", ...]
    tables: tuple["Expr", ...] | None
    predicate: "Expr"


@dataclass(frozen=True, slots=True)
class SearchColumn(Node):
    """`Column:"text"` in a search predicate: the term looked for in that column only.  Kusto's
    parser reads `left:right` with any operands, as a string operator; search documents only
    `ColumnName:StringLiteral`, so lowering refuses any other."""

    column: "Expr"
    value: "Expr"


@dataclass(frozen=True, slots=True)
class OpParam(Node):
    """An operator parameter: `kind=inner`, `hint.strategy=shuffle`, `isfuzzy=true`."""

    name: str
    value: "Expr"


@dataclass(frozen=True, slots=True)
class Assignment(Node):
    """`name = expr` (or `(a, b) = expr`) in extend, project, summarize, mv-expand."""

    targets: tuple[str, ...]
    value: "Expr"


@dataclass(frozen=True, slots=True)
class SortKey(Node):
    expr: "Expr"
    direction: str | None = None  # 'asc' | 'desc' | 'granny-asc' | 'granny-desc'
    nulls: str | None = None  # 'first' | 'last'


@dataclass(frozen=True, slots=True)
class Where(Node):
    predicate: "Expr"


@dataclass(frozen=True, slots=True)
class Extend(Node):
    items: tuple["Expr | Assignment", ...]


@dataclass(frozen=True, slots=True)
class Summarize(Node):
    params: tuple[OpParam, ...]
    aggregates: tuple["Expr | Assignment", ...]
    by: tuple["Expr | Assignment", ...]


@dataclass(frozen=True, slots=True)
class Project(Node):
    items: tuple["Expr | Assignment", ...]


@dataclass(frozen=True, slots=True)
class ProjectAway(Node):
    columns: tuple["Expr", ...]  # Name | NamePattern | Star


@dataclass(frozen=True, slots=True)
class ProjectKeep(Node):
    columns: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class ProjectRename(Node):
    # (new, old); a bare `Name` where the query wrote no `New =` (parsed as Microsoft's parser
    # does, refused when lowered as Kusto's semantic check does)
    renames: tuple["tuple[str, str] | Name", ...]


@dataclass(frozen=True, slots=True)
class ProjectReorder(Node):
    columns: tuple[SortKey, ...]  # expr is Name | NamePattern; nulls unused


@dataclass(frozen=True, slots=True)
class Distinct(Node):
    items: tuple["Expr | Assignment", ...]  # (Star(),) for `distinct *`


@dataclass(frozen=True, slots=True)
class Sort(Node):
    keys: tuple[SortKey, ...]


@dataclass(frozen=True, slots=True)
class Top(Node):
    count: "Expr"
    key: SortKey


@dataclass(frozen=True, slots=True)
class Take(Node):
    count: "Expr"


@dataclass(frozen=True, slots=True)
class Count(Node):
    pass


@dataclass(frozen=True, slots=True)
class As(Node):
    params: tuple[OpParam, ...]
    name: str


@dataclass(frozen=True, slots=True)
class Join(Node):
    params: tuple[OpParam, ...]
    right: "Expr"
    on: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Lookup(Node):
    params: tuple[OpParam, ...]
    right: "Expr"
    on: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Union(Node):
    """`union` as an operator (`T | union U`) or as a source (`union T, U`)."""

    params: tuple[OpParam, ...]
    tables: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class MvExpandItem(Node):
    item: "Expr | Assignment"
    to_type: str | None = None


@dataclass(frozen=True, slots=True)
class MvExpand(Node):
    params: tuple[OpParam, ...]
    items: tuple[MvExpandItem, ...]
    limit: "Expr | None" = None


@dataclass(frozen=True, slots=True)
class ParseColumn(Node):
    name: str
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Parse(Node):
    params: tuple[OpParam, ...]
    source: "Expr"
    pattern: tuple["StringLit | Star | ParseColumn", ...]


@dataclass(frozen=True, slots=True)
class GenericOperator(Node):
    """An operator outside the subset (`evaluate`, `render`, `make-series` ...), kept as
    its name and raw text so later stages can say precisely what is unsupported."""

    name: str
    raw: str


Operator = typing.Union[
    Where, Extend, Summarize, Project, ProjectAway, ProjectKeep, ProjectRename,
    ProjectReorder, Distinct, Sort, Top, Take, Count, As, Join, Lookup, Union,
    MvExpand, Parse, GenericOperator,
]

Expr = typing.Union[
    Name, NamePattern, Star, StringLit, NumberLit, TimespanLit, TypedLit, BoolLit, NullLit,
    DynamicLit, DynArray, DynObject, Paren, Unary, Binary, Logical, ListOp, Between, Call,
    NamedArg, Member, Index, Pipeline, Datatable, ExternalData, GenericSource, Union,
    Search, SearchColumn,
]


# ------------------------------------------------------------------ statements


@dataclass(frozen=True, slots=True)
class FunctionParam(Node):
    """A parameter of a let-defined function; `type` is a scalar type name, `*` for any
    table, or a tuple of columns for a tabular parameter."""

    name: str
    type: "str | tuple[ColumnDecl, ...]"
    default: "Expr | None" = None


@dataclass(frozen=True, slots=True)
class FunctionDef(Node):
    params: tuple[FunctionParam, ...]
    body: tuple["Statement", ...]
    view: bool = False


@dataclass(frozen=True, slots=True)
class Let(Node):
    name: str
    value: "Expr | FunctionDef"


@dataclass(frozen=True, slots=True)
class SetOption(Node):
    """`set name [= value]`: a query option."""

    name: str
    value: "Expr | None" = None


@dataclass(frozen=True, slots=True)
class ExprStatement(Node):
    expr: Expr


Statement = typing.Union[Let, SetOption, ExprStatement]


@dataclass(frozen=True, slots=True)
class Directive(Node):
    """A `#...` line before the first statement: a client directive (Kusto.Explorer's
    `#connect`, ...), the whole line as written."""

    text: str


@dataclass(frozen=True, slots=True)
class Query(Node):
    statements: tuple[Statement, ...]
    # What the parser noticed but did not refuse (how Kusto reads an odd escape ...).
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False, repr=False, kw_only=True)
    directives: tuple[Directive, ...] = field(default=(), kw_only=True)

    @property
    def body(self) -> Expr | None:
        """The last tabular expression statement: what the query returns."""
        for statement in reversed(self.statements):
            if isinstance(statement, ExprStatement):
                return statement.expr
        return None


def _speed_up_construction() -> None:
    """Every node class gets an `__init__` that stores fields through their slots
    (`rmmc.compiler.slots_init`): the parser builds one node per rule it reduces."""
    import dataclasses

    from rmmc.compiler.slots_init import fast_init

    fast_init(*(value for value in list(globals().values())
                if isinstance(value, type) and dataclasses.is_dataclass(value)
                and value.__module__ == __name__))


_speed_up_construction()
