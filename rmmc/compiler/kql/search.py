"""Kusto's `search` predicate as an ordinary `where` predicate over known columns.

Kusto's documentation (search operator, "Search predicate syntax"): `search in (T1, T2) P`
is `union T1, T2 | where P'` with a `$table` column naming each row's table, where P' is P
with its string-matching extensions spelled out:

* a string literal standing as a condition (in the predicate's `and` / `or` / parentheses;
  Microsoft's parser refuses one inside `not()`) is a term looked for in every column: `"err"` is
  `* has "err"`, `"err*"` `* hasprefix`, `"*err"` `* hassuffix`, `"*err*"` `* contains`
  (`"a*b"`, a regular expression `\\ba.*b\\b`, is refused here);
* `Column:"err"` looks for the term in that column only (`Column has "err"`);
* everything else (`Column == "x"`, `and`, `or`, `not()`, comparisons) keeps its meaning;
* `kind=case_sensitive` "forces all such [string] operators into case-sensitive matching
  mode": `has` is `has_cs` and so on; an operator with no case-sensitive form (`=~`, `in~`,
  `has_any` ...) is refused rather than guessed.  `default` / `case_insensitive` change nothing.

`* has "err"` becomes an `or` of `Column has "err"` over the union's columns ("search for
specific terms in all columns of a table", the page says; the find page: "search a term
across all input columns"): every string, guid and dynamic column (a term test on a dynamic
column as `where` reads it); a column of another type (long, datetime, bool ...) only when the
term's characters could occur in that type's text, which is refused (rmmc does not say how
Kusto prints such a value for a term match), else left out (it can never hold the term).  The
`$table` column is left out too, and a term that would match a table's name is refused: the
documentation does not say whether `*` covers `$table`.
"""

from __future__ import annotations

from typing import Any, Callable

from rmmc.compiler import ir
from rmmc.compiler.kql import ast as A
from rmmc.compiler.kql.printer import to_kql

TABLE_COLUMN = "$table"

# Term tests by (leading '*', trailing '*'), as the documentation's table gives them.
_TERM_OPS = {(False, False): "has", (True, False): "hassuffix", (False, True): "hasprefix",
             (True, True): "contains"}
_IR_OPS = {"has": ir.Op.TERM, "hassuffix": ir.Op.TERM_SUFFIX, "hasprefix": ir.Op.TERM_PREFIX,
           "contains": ir.Op.CONTAINS}
# Every character the text of a value of these types can hold (case-folded); a term with a
# character outside them can never occur in such a value.
_TEXT_CHARACTERS = {
    "long": "0123456789-", "int": "0123456789-",
    "real": "0123456789.-+eEnaifty", "decimal": "0123456789.-+eEnaifty",
    "datetime": "0123456789-:.tz", "timespan": "0123456789.:-",
    "bool": "truefals",
}
_STRING_LIKE = ("string", "guid", "dynamic")
# Operators kind=case_sensitive turns into their case-sensitive form.
_CASED = {"has", "!has", "hasprefix", "!hasprefix", "hassuffix", "!hassuffix", "contains",
          "!contains", "startswith", "!startswith", "endswith", "!endswith"}
_CASE_INSENSITIVE_ONLY = {"=~", "!~", "in~", "!in~", "has_any", "has_all", "notcontains", "like", "notlike"}


class SearchError(Exception):
    def __init__(self, node: Any, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


def case_sensitive(params: tuple[A.OpParam, ...]) -> bool:
    """Whether `kind=` asks for case-sensitive matching (any other parameter is refused)."""
    cased = False
    for param in params:
        value = param.value.name if isinstance(param.value, A.Name) else None
        if param.name.lower() != "kind" or value is None:
            raise SearchError(param, f"search parameter '{param.name}' is not lowered (only kind=)")
        if value.lower() not in ("default", "case_insensitive", "case_sensitive"):
            raise SearchError(param, f"search kind={value} is not one of default, case_insensitive, "
                              "case_sensitive")
        cased = value.lower() == "case_sensitive"
    return cased


def where_predicate(predicate: Any, columns: dict[str, str] | None, labels: tuple[str, ...],
                    cased: bool, is_tabular: Callable[[Any], bool] = lambda _: False) -> Any:
    """The search predicate as a `where` predicate over `columns` (the union's, `$table`
    included; None when a table is unknown), for tables named `labels`; `is_tabular` tells a
    list item that is a query (or a let bound to one)."""
    return _Rewriter(columns, labels, cased, is_tabular).boolean(predicate)


class _Rewriter:
    def __init__(self, columns: dict[str, str] | None, labels: tuple[str, ...], cased: bool,
                 is_tabular: Callable[[Any], bool]):
        self.columns = columns
        self.labels = labels
        self.cased = cased
        self.is_tabular = is_tabular

    def boolean(self, node: Any) -> Any:
        """A node standing as a condition: where a string literal is a term."""
        if isinstance(node, A.Star):
            return A.BoolLit(True, span=node.span)
        if isinstance(node, A.Paren):
            return A.Paren(self.boolean(node.expr), span=node.span)
        if isinstance(node, A.Logical):
            return A.Logical(node.op, tuple(self.boolean(o) for o in node.operands), span=node.span)
        if isinstance(node, A.StringLit):  # not inside not(): Microsoft's parser wants a bool there
            return self._every_column(node)
        return self.value(node)

    def value(self, node: Any) -> Any:
        """Any other node: unchanged, but for `Column:"term"` and the case of string operators."""
        if isinstance(node, A.SearchColumn):
            if not isinstance(node.column, A.Name) or not isinstance(node.value, A.StringLit):
                raise SearchError(node, f"{to_kql(node)}: search documents Column:\"term\" only (a column "
                                  "name, then a string literal); what another form looks for is not documented")
            op, text = self._term(node.value)
            return A.Binary(op, node.column, literal_of(text, node.value), span=node.span)
        if isinstance(node, A.Binary) and self.cased:
            op = node.op
            if op in _CASE_INSENSITIVE_ONLY:
                raise SearchError(node, f"'{op}' in a search with kind=case_sensitive: Kusto forces every "
                                  "string operator to match case, and this one has no such form here")
            if op in _CASED:
                op += "_cs"
            return A.Binary(op, self.value(node.left), self.value(node.right), span=node.span)
        if isinstance(node, A.ListOp) and self.cased and node.op in _CASE_INSENSITIVE_ONLY:
            raise SearchError(node, f"'{node.op}' in a search with kind=case_sensitive: Kusto forces every "
                              "string operator to match case, and this one has no such form here")
        if self.cased and (isinstance(node, (A.Pipeline, A.Union, A.Search))
                           or (isinstance(node, A.ListOp) and any(self.is_tabular(i) for i in node.items))):
            raise SearchError(node, "a query inside a search with kind=case_sensitive: whether the kind "
                              "reaches its operators is not documented")
        if isinstance(node, A.Node) and not isinstance(node, (A.Pipeline, A.Union, A.Search)):
            changes = {}
            for name in node.__dataclass_fields__:
                if name == "span":
                    continue
                item = getattr(node, name)
                if isinstance(item, A.Node):
                    new = self.value(item)
                elif isinstance(item, tuple) and any(isinstance(x, A.Node) for x in item):
                    new = tuple(self.value(x) if isinstance(x, A.Node) else x for x in item)
                else:
                    continue
                if new is not item:
                    changes[name] = new
            if changes:
                from dataclasses import replace

                return replace(node, **changes)
        return node

    def _term(self, literal: A.StringLit) -> tuple[str, str]:
        text = literal.value
        lead = text.startswith("*")
        trail = len(text) > 1 and text.endswith("*")
        core = text[1 if lead else 0:len(text) - 1 if trail else len(text)]
        if "*" in core:
            raise SearchError(literal, f"the search term {text!r} has '*' inside: Kusto matches it as a "
                              "regular expression, which rmmc does not lower")
        if not core:
            raise SearchError(literal, "an empty search term")
        op = _TERM_OPS[(lead, trail)]
        return (op + "_cs" if self.cased else op), core

    def _every_column(self, literal: A.StringLit) -> Any:
        """`"term"` as a condition: the term in any column."""
        op, core = self._term(literal)
        if self.columns is None:
            raise SearchError(literal, f"the search term {literal.value!r} looks in every column, and a "
                              "table's columns are unknown here")
        test = ir.Predicate(ir.Field("x"), _IR_OPS[op.removesuffix("_cs")], (core,), case_sensitive=self.cased)
        from rmmc.compiler.evaluator import evaluate

        for label in self.labels:
            if evaluate(test, {"x": label}):
                raise SearchError(literal, f"the search term {literal.value!r} would match the table name "
                                  f"{label}: whether Kusto's search looks in $table is not documented")
        folded = core if self.cased else core.lower()
        tests = []
        for column, type_name in self.columns.items():
            if column == TABLE_COLUMN:
                continue
            if type_name not in _STRING_LIKE:
                alphabet = _TEXT_CHARACTERS.get(type_name)
                if alphabet is not None and not all(ch.lower() in alphabet for ch in folded):
                    continue
                raise SearchError(literal, f"the search term {literal.value!r} could occur in the {type_name} "
                                  f"column {column}: rmmc does not lower a term match on a non-string column")
            tests.append(A.Binary(op, A.Name(column, span=literal.span), literal_of(core, literal),
                                  span=literal.span))
        if not tests:
            return A.BoolLit(False, span=literal.span)
        return A.Paren(A.Logical("or", tuple(tests), span=literal.span) if len(tests) > 1 else tests[0],
                       span=literal.span)


def literal_of(text: str, literal: A.StringLit) -> A.StringLit:
    return A.StringLit(text, literal.obfuscated, span=literal.span)
