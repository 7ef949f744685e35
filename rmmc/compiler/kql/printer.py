"""Syntax tree -> canonical KQL text.

`parse_kql(to_kql(tree)) == tree` for every tree the parser makes.  Parentheses are printed
where the tree has them (`Paren`) and added where a generated tree needs them to keep its
structure, so the printer is also safe for trees built by the KQL backend.
"""

from __future__ import annotations

import re
from functools import singledispatch

from rmmc.compiler.kql import ast as A
from rmmc.grammar.kql_words import SCHEMA_KEYWORDS

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*|[0-9]+[A-Za-z_][A-Za-z0-9_]*")
_TIMESPAN_OR_NUMBER = re.compile(r"[0-9]+([.][0-9]*)?([eE][+-]?[0-9]+|[A-Za-z]+)?")

# Words the lexer may take as keywords where a name could stand: such names print bracketed.
RESERVED = frozenset("""
    let set view where filter extend summarize project distinct sort order top take limit
    count as join lookup union parse datatable by on with to typeof asc desc nulls first last
    and or true false True False TRUE FALSE null dynamic kind withsource isfuzzy bagexpansion
    with_itemindex flags decodeblocks in has has_any has_all between contains startswith
    endswith hasprefix hassuffix has_cs contains_cs startswith_cs endswith_cs hasprefix_cs
    hassuffix_cs like notlike notcontains containscs notcontainscs matches print find evaluate
    search render mvexpand macro-expand granny-asc granny-desc externaldata external_data range
""".split())

# Binding strength of each operator (higher binds tighter); see the grammar's header.
_LEVEL_OR, _LEVEL_AND, _LEVEL_EQ, _LEVEL_STR, _LEVEL_REL = 1, 2, 3, 4, 5
_LEVEL_ADD, _LEVEL_MUL, _LEVEL_UNARY, _LEVEL_POSTFIX, _LEVEL_ATOM = 6, 7, 8, 9, 10
_EQ_OPS = {"==", "!=", "<>"}
_REL_OPS = {"<", "<=", ">", ">="}
_ADD_OPS = {"+", "-"}
_MUL_OPS = {"*", "/", "%"}


def binary_level(op: str) -> int:
    if op == "=":
        return 0
    if op in _EQ_OPS:
        return _LEVEL_EQ
    if op in _REL_OPS:
        return _LEVEL_REL
    if op in _ADD_OPS:
        return _LEVEL_ADD
    if op in _MUL_OPS:
        return _LEVEL_MUL
    return _LEVEL_STR  # has, contains, =~, matches regex ...


def level(node: A.Expr) -> int:
    if isinstance(node, A.Logical):
        return _LEVEL_OR if node.op == "or" else _LEVEL_AND
    if isinstance(node, (A.ListOp, A.Between)):
        return _LEVEL_EQ
    if isinstance(node, A.Binary):
        return binary_level(node.op)
    if isinstance(node, A.Unary):
        return _LEVEL_UNARY
    if isinstance(node, A.SearchColumn):
        return _LEVEL_STR
    if isinstance(node, (A.Pipeline, A.Union, A.Datatable, A.ExternalData, A.GenericSource, A.Search)):
        return 0
    if isinstance(node, (A.Call, A.Member, A.Index)):
        return _LEVEL_POSTFIX
    return _LEVEL_ATOM


# ------------------------------------------------------------------ leaves


def kql_string(value: str, obfuscated: bool = False) -> str:
    """A single-quoted KQL string literal for any value (escapes quotes, backslashes and
    control characters, so the value can never break out of its literal)."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or ch in "\u2028\u2029\u0085":
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return ("h" if obfuscated else "") + "'" + "".join(out) + "'"


def kql_name(name: str) -> str:
    """A name as KQL writes it: bare when it is a plain identifier, else `['...']`."""
    if _IDENTIFIER.fullmatch(name) and name not in RESERVED and not _TIMESPAN_OR_NUMBER.fullmatch(name):
        return name
    return "[" + kql_string(name) + "]"


def schema_name(name: str) -> str:
    """A column name in a row schema: as `kql_name`, and bracket-quoted where Microsoft's
    parser takes no bare keyword (`['date']:datetime`)."""
    return "[" + kql_string(name) + "]" if name in SCHEMA_KEYWORDS else kql_name(name)


def _bare(name: str) -> str:
    """A name where the grammar takes only an identifier (let names, column declarations)."""
    return name


# ------------------------------------------------------------------ expressions


def _wrap(node: A.Expr, minimum: int) -> str:
    text = expr(node)
    return f"({text})" if level(node) < minimum else text


@singledispatch
def expr(node) -> str:
    raise TypeError(f"cannot print {type(node).__name__} as KQL")


@expr.register
def _(node: A.Name) -> str:
    return kql_name(node.name)


@expr.register
def _(node: A.NamePattern) -> str:
    return node.pattern


@expr.register
def _(node: A.Star) -> str:
    return "*"


@expr.register
def _(node: A.StringLit) -> str:
    return kql_string(node.value, node.obfuscated)


@expr.register
def _(node: A.NumberLit) -> str:
    return node.text


@expr.register
def _(node: A.TimespanLit) -> str:
    return node.text


@expr.register
def _(node: A.TypedLit) -> str:
    return f"{node.type}({node.text})"


@expr.register
def _(node: A.BoolLit) -> str:
    return "true" if node.value else "false"


@expr.register
def _(node: A.NullLit) -> str:
    return "null"


@expr.register
def _(node: A.DynamicLit) -> str:
    return f"dynamic({expr(node.value)})"


@expr.register
def _(node: A.DynArray) -> str:
    return "[" + ", ".join(expr(item) for item in node.items) + "]"


@expr.register
def _(node: A.DynObject) -> str:
    return "{" + ", ".join(f"{kql_string(k)}: {expr(v)}" for k, v in node.entries) + "}"


@expr.register
def _(node: A.Paren) -> str:
    return f"({expr(node.expr)})"


@expr.register
def _(node: A.Unary) -> str:
    return node.op + _wrap(node.operand, _LEVEL_POSTFIX)


@expr.register
def _(node: A.Binary) -> str:
    lvl = binary_level(node.op)
    if lvl in (_LEVEL_ADD, _LEVEL_MUL):  # left-associative
        left, right = _wrap(node.left, lvl), _wrap(node.right, lvl + 1)
    elif lvl == 0:
        left, right = expr(node.left), _wrap(node.right, _LEVEL_OR)
    else:  # non-associative
        left, right = _wrap(node.left, lvl + 1), _wrap(node.right, lvl + 1)
    return f"{left} {node.op} {right}"


@expr.register
def _(node: A.Logical) -> str:
    lvl = _LEVEL_OR if node.op == "or" else _LEVEL_AND
    return f" {node.op} ".join(_wrap(o, lvl + 1) for o in node.operands)


@expr.register
def _(node: A.ListOp) -> str:
    return f"{_wrap(node.left, _LEVEL_STR)} {node.op} ({', '.join(expr(i) for i in node.items)})"


@expr.register
def _(node: A.Between) -> str:
    op = "!between" if node.negated else "between"
    return f"{_wrap(node.left, _LEVEL_STR)} {op} ({expr(node.low)} .. {expr(node.high)})"


@expr.register
def _(node: A.Call) -> str:
    func = node.func
    if isinstance(func, A.Name):
        head = func.name
    elif isinstance(func, A.Member):
        head = f"{_wrap(func.target, _LEVEL_POSTFIX)}.{func.name}"
    else:
        raise TypeError("a call's function must be a name or a member")
    return f"{head}({', '.join(expr(a) for a in node.args)})"


@expr.register
def _(node: A.NamedArg) -> str:
    return f"{node.name}={expr(node.value)}"


@expr.register
def _(node: A.Member) -> str:
    target = _wrap(node.target, _LEVEL_POSTFIX)
    if _IDENTIFIER.fullmatch(node.name):
        return f"{target}.{node.name}"
    return f"{target}[{kql_string(node.name)}]"


@expr.register
def _(node: A.Index) -> str:
    return f"{_wrap(node.target, _LEVEL_POSTFIX)}[{expr(node.index)}]"


@expr.register
def _(node: A.Pipeline) -> str:
    return pipeline(node, " ")


@expr.register
def _(node: A.Datatable) -> str:
    columns = ", ".join(f"{schema_name(c.name)}:{c.type}" for c in node.columns)
    values = ", ".join(expr(v) for v in node.values)
    return f"datatable({columns})[{values}]"


@expr.register
def _(node: A.ExternalData) -> str:
    columns = ", ".join(f"{schema_name(c.name)}:{c.type}" for c in node.columns)
    uris = ", ".join(expr(u) for u in node.uris)
    text = f"externaldata({columns})[{uris}]"
    if node.properties:
        text += " with (" + ", ".join(f"{name}={expr(value)}" for name, value in node.properties) + ")"
    return text


@expr.register
def _(node: A.GenericSource) -> str:
    return f"{node.name} {node.raw}".rstrip()


@expr.register
def _(node: A.Union) -> str:
    return operator(node)


@expr.register
def _(node: A.Search) -> str:
    tables = f"in ({', '.join(expr(t) for t in node.tables)}) " if node.tables is not None else ""
    return f"search {_params(node.params)}{tables}{expr(node.predicate)}"


@expr.register
def _(node: A.SearchColumn) -> str:
    return f"{_wrap(node.column, _LEVEL_STR + 1)}:{_wrap(node.value, _LEVEL_STR + 1)}"


def pipeline(node: A.Pipeline, separator: str = "\n") -> str:
    """`source | op | op`, each operator on its own line when `separator` is a newline."""
    source = node.source
    head = expr(source)
    if isinstance(source, A.Pipeline):
        head = f"({head})"
    return head + "".join(f"{separator}| {operator(op)}" for op in node.operators)


# ------------------------------------------------------------------ operators


def _item(node: "A.Expr | A.Assignment") -> str:
    if isinstance(node, A.Assignment):
        if len(node.targets) == 1:
            target = kql_name(node.targets[0])
        else:
            target = "(" + ", ".join(_bare(t) for t in node.targets) + ")"
        return f"{target} = {expr(node.value)}"
    return expr(node)


def _items(nodes) -> str:
    return ", ".join(_item(n) for n in nodes)


def _params(params: tuple[A.OpParam, ...]) -> str:
    return "".join(f"{p.name}={_param_value(p.value)} " for p in params)


def _param_value(value: A.Expr) -> str:
    if isinstance(value, A.Name):
        return value.name
    return expr(value)


def _sort_key(key: A.SortKey) -> str:
    text = _item(key.expr) if not isinstance(key.expr, (A.NamePattern,)) else key.expr.pattern
    if key.direction:
        text += f" {key.direction}"
    if key.nulls:
        text += f" nulls {key.nulls}"
    return text


@singledispatch
def operator(node) -> str:
    raise TypeError(f"cannot print {type(node).__name__} as a KQL operator")


@operator.register
def _(node: A.Where) -> str:
    return f"where {expr(node.predicate)}"


@operator.register
def _(node: A.Extend) -> str:
    return f"extend {_items(node.items)}"


@operator.register
def _(node: A.Summarize) -> str:
    text = "summarize " + _params(node.params) + _items(node.aggregates)
    if node.by:
        text = text.rstrip() + " by " + _items(node.by)
    return text.rstrip()


@operator.register
def _(node: A.Project) -> str:
    return f"project {_items(node.items)}".rstrip()


@operator.register
def _(node: A.ProjectAway) -> str:
    return f"project-away {_items(node.columns)}"


@operator.register
def _(node: A.ProjectKeep) -> str:
    return f"project-keep {_items(node.columns)}"


@operator.register
def _(node: A.ProjectRename) -> str:
    return "project-rename " + ", ".join(kql_name(r.name) if isinstance(r, A.Name) else f"{kql_name(r[0])} = {kql_name(r[1])}"
                                         for r in node.renames)


@operator.register
def _(node: A.ProjectReorder) -> str:
    return "project-reorder " + ", ".join(_sort_key(k) for k in node.columns)


@operator.register
def _(node: A.Distinct) -> str:
    return f"distinct {_items(node.items)}"


@operator.register
def _(node: A.Sort) -> str:
    return "sort by " + ", ".join(_sort_key(k) for k in node.keys)


@operator.register
def _(node: A.Top) -> str:
    return f"top {expr(node.count)} by {_sort_key(node.key)}"


@operator.register
def _(node: A.Take) -> str:
    return f"take {expr(node.count)}"


@operator.register
def _(node: A.Count) -> str:
    return "count"


@operator.register
def _(node: A.As) -> str:
    return f"as {_params(node.params)}{_bare(node.name)}"


def _join_like(keyword: str, node: "A.Join | A.Lookup") -> str:
    right = node.right
    right_text = _wrap(right, _LEVEL_POSTFIX)
    on = ", ".join(expr(c) for c in node.on)
    return f"{keyword} {_params(node.params)}{right_text} on {on}"


@operator.register
def _(node: A.Join) -> str:
    return _join_like("join", node)


@operator.register
def _(node: A.Lookup) -> str:
    return _join_like("lookup", node)


@operator.register
def _(node: A.Union) -> str:
    return "union " + _params(node.params) + ", ".join(expr(t) for t in node.tables)


@operator.register
def _(node: A.MvExpand) -> str:
    parts = []
    for item in node.items:
        text = _item(item.item)
        if item.to_type:
            text += f" to typeof({item.to_type})"
        parts.append(text)
    text = "mv-expand " + _params(node.params) + ", ".join(parts)
    if node.limit is not None:
        text += f" limit {expr(node.limit)}"
    return text


@operator.register
def _(node: A.Parse) -> str:
    parts = []
    for part in node.pattern:
        if isinstance(part, A.ParseColumn):
            parts.append(kql_name(part.name) + (f":{part.type}" if part.type else ""))
        else:
            parts.append(expr(part))
    return f"parse {_params(node.params)}{_wrap(node.source, _LEVEL_POSTFIX)} with {' '.join(parts)}"


@operator.register
def _(node: A.GenericOperator) -> str:
    return f"{node.name} {node.raw}".rstrip()


# ------------------------------------------------------------------ statements


def _function(node: A.FunctionDef) -> str:
    params = []
    for p in node.params:
        if isinstance(p.type, tuple):
            ptype = "(" + ", ".join(f"{schema_name(c.name)}:{c.type}" for c in p.type) + ")"
        elif p.type == "*":
            ptype = "(*)"
        else:
            ptype = p.type
        text = f"{p.name}:{ptype}"
        if p.default is not None:
            text += f" = {expr(p.default)}"
        params.append(text)
    body = "; ".join(statement(s, " ") for s in node.body)
    return ("view" if node.view else "") + f"({', '.join(params)}) {{ {body} }}"


def statement(node: A.Statement, separator: str = "\n") -> str:
    if isinstance(node, A.Let):
        if isinstance(node.value, A.FunctionDef):
            return f"let {node.name} = {_function(node.value)}"
        return f"let {node.name} = {_top(node.value, separator)}"
    if isinstance(node, A.SetOption):
        return f"set {node.name}" + (f" = {_param_value(node.value)}" if node.value is not None else "")
    if isinstance(node, A.ExprStatement):
        return _top(node.expr, separator)
    raise TypeError(f"cannot print {type(node).__name__} as a KQL statement")


def _top(node: A.Expr, separator: str) -> str:
    if isinstance(node, A.Pipeline):
        return pipeline(node, separator)
    return expr(node)


def to_kql(node) -> str:
    """Canonical KQL text for a query, statement, operator or expression."""
    if isinstance(node, A.Query):
        return "".join(d.text + "\n" for d in node.directives) + ";\n".join(statement(s) for s in node.statements)
    if isinstance(node, (A.Let, A.SetOption, A.ExprStatement)):
        return statement(node)
    if isinstance(node, A.Pipeline):
        return pipeline(node)
    try:
        return expr(node)
    except TypeError:
        return operator(node)
