"""Compile-time values of KQL expressions: literals, scalar and list lets, `dynamic([...])`,
and tabular lets over `datatable` folded to a list (`has_any ((T | distinct URI))`).

`now()` and `ago(x)` are kept symbolic (`RelativeTime`): they only make sense as a lookback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from rmmc.compiler.kql import ast as A

_UNITS = {
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "milli": 1e-3, "millis": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "micro": 1e-6, "micros": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "nano": 1e-9, "nanos": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
    "tick": 1e-7, "ticks": 1e-7,
}
_TIMESPAN = re.compile(r"(\d+(?:\.\d*)?)([a-z]+)")


class NotConstant(Exception):
    """The expression has no compile-time value; `node` is the part that has none."""

    def __init__(self, node: Any, reason: str):
        super().__init__(reason)
        self.node = node
        self.reason = reason


@dataclass(frozen=True)
class RelativeTime:
    """`now() + offset` (`ago(5d)` is an offset of -5 days)."""

    offset: timedelta


def timespan(text: str) -> timedelta:
    """`5d`, `1.5h`, `100ms` ... as a timedelta."""
    match = _TIMESPAN.fullmatch(text)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a timespan: {text}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return timedelta(seconds=seconds)


def timespan_text(delta: timedelta) -> str:
    """The shortest exact KQL literal for a timedelta (`5d`, `36h`, `90m`, `1500ms`)."""
    micro = round(delta.total_seconds() * 1_000_000)
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000),
                       ("s", 1_000_000), ("ms", 1000)):
        if micro % size == 0:
            return f"{micro // size}{unit}"
    return f"{micro}microseconds"


def number(text: str) -> int | float:
    body = text.rstrip("lL")
    if body.lower().startswith("0x"):
        return int(body, 16)
    if re.fullmatch(r"\d+", body):
        return int(body)
    return float(body)


def datetime_literal(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class Constants:
    """Evaluates expressions against the query's lets (name -> bound expression)."""

    def __init__(self, lets: Mapping[str, Any]):
        self.lets = lets
        self._resolving: set[str] = set()

    def value(self, node: A.Expr) -> Any:
        """The value of a scalar expression: str, int, float, bool, timedelta, datetime,
        RelativeTime, None (null), or a list (dynamic arrays)."""
        if isinstance(node, A.StringLit):
            return node.value
        if isinstance(node, A.NumberLit):
            return number(node.text)
        if isinstance(node, A.BoolLit):
            return node.value
        if isinstance(node, A.NullLit):
            return None
        if isinstance(node, A.TimespanLit):
            return timespan(node.text)
        if isinstance(node, A.TypedLit):
            return self._typed(node)
        if isinstance(node, A.DynamicLit):
            return self.value(node.value)
        if isinstance(node, A.DynArray):
            return [self.value(item) for item in node.items]
        if isinstance(node, A.Paren):
            return self.value(node.expr)
        if isinstance(node, A.Unary):
            inner = self.value(node.operand)
            if node.op == "-" and isinstance(inner, (int, float, timedelta)):
                return -inner
            if node.op == "+":
                return inner
            raise NotConstant(node, "cannot negate this value")
        if isinstance(node, A.Name):
            bound = self.let(node.name)
            if bound is None:
                raise NotConstant(node, f"'{node.name}' is a column, not a constant")
            return self._resolved(node.name, bound)
        if isinstance(node, A.Call) and isinstance(node.func, A.Name):
            return self._call(node)
        raise NotConstant(node, "not a constant")

    def let(self, name: str) -> Any | None:
        return self.lets.get(name)

    def _resolved(self, name: str, bound: Any) -> Any:
        if name in self._resolving:
            raise NotConstant(bound, f"'{name}' refers to itself")
        self._resolving.add(name)
        try:
            if isinstance(bound, A.FunctionDef):
                raise NotConstant(bound, f"'{name}' is a function")
            if isinstance(bound, (A.Pipeline, A.Datatable)):
                return self.column_values(bound)
            return self.value(bound)
        finally:
            self._resolving.discard(name)

    def _typed(self, node: A.TypedLit) -> Any:
        text = node.text
        if text == "null":
            return None
        if node.type in ("datetime", "date"):
            try:
                return datetime_literal(text)
            except ValueError:
                raise NotConstant(node, f"unreadable datetime '{text}'") from None
        if node.type in ("timespan", "time"):
            try:
                return timespan(text)
            except ValueError:
                raise NotConstant(node, f"unreadable timespan '{text}'") from None
        if node.type in ("int", "long", "real", "double", "decimal"):
            try:
                return int(text) if node.type in ("int", "long") else float(text)
            except ValueError:
                raise NotConstant(node, f"unreadable {node.type} '{text}'") from None
        if node.type in ("bool", "boolean"):
            return text.lower() == "true"
        if node.type == "guid":
            return text
        raise NotConstant(node, f"unsupported literal {node.type}()")

    def _call(self, node: A.Call) -> Any:
        name = node.func.name
        args = node.args
        if name == "now":
            if not args:
                return RelativeTime(timedelta(0))
            offset = self.value(args[0])
            if isinstance(offset, timedelta):
                return RelativeTime(offset)
        elif name == "ago" and len(args) == 1:
            offset = self.value(args[0])
            if isinstance(offset, timedelta):
                return RelativeTime(-offset)
        elif name == "strcat":
            from rmmc.compiler.functions import to_text

            parts = [self.value(a) for a in args]
            if any(isinstance(p, (RelativeTime, list)) for p in parts):
                raise NotConstant(node, "strcat() of this value has no compile-time text here")
            return "".join(to_text(p) for p in parts)
        elif name in ("tolower", "toupper") and len(args) == 1:
            text = self.value(args[0])
            if isinstance(text, str):  # one character for one, as the model's functions fold
                from rmmc.compiler.functions import fold, upper

                return fold(text) if name == "tolower" else upper(text)
        elif name == "pack_array":
            return [self.value(a) for a in args]
        elif name in ("datetime", "todatetime") and len(args) == 1:
            text = self.value(args[0])
            if isinstance(text, str):
                try:
                    return datetime_literal(text)
                except ValueError:
                    hint = (" (a template placeholder, to be filled in before the query runs)"
                            if "{{" in text or "}}" in text else "")
                    raise NotConstant(node, f"{name}('{text}') is not a datetime{hint}") from None
        raise NotConstant(node, f"{name}() has no compile-time value here")

    # -- tabular constants

    def column_values(self, node: Any) -> list[Any]:
        """The single column of a constant tabular expression, as a list: a datatable (one
        column), or a pipeline over one with `distinct C` / `project C` / `where` on constants."""
        if isinstance(node, A.Paren):
            return self.column_values(node.expr)
        if isinstance(node, A.Name):
            bound = self.let(node.name)
            if bound is None:
                raise NotConstant(node, f"'{node.name}' is a table: its values are not known when the rule is compiled")
            if isinstance(bound, (A.Pipeline, A.Datatable, A.Paren, A.Name)):
                return self.column_values(bound)
            value = self._resolved(node.name, bound)
            return value if isinstance(value, list) else [value]
        table = self.table(node)
        if len(table.columns) != 1:
            raise NotConstant(node, f"a list needs one column; this table has {len(table.columns)} "
                              f"({', '.join(table.columns)})")
        return [row[0] for row in table.rows]

    def table(self, node: Any) -> "ConstTable":
        if isinstance(node, A.Paren):
            return self.table(node.expr)
        if isinstance(node, A.Name):
            bound = self.let(node.name)
            if bound is None:
                raise NotConstant(node, f"'{node.name}' is a table: its values are not known when the rule is compiled")
            return self.table(bound)
        if isinstance(node, A.Datatable):
            names = tuple(c.name for c in node.columns)
            width = len(names)
            values = [self.value(v) for v in node.values]
            if len(values) % width:
                raise NotConstant(node, "datatable values do not fill whole rows")
            rows = [tuple(values[i:i + width]) for i in range(0, len(values), width)]
            return ConstTable(names, rows)
        if isinstance(node, A.Pipeline):
            table = self.table(node.source)
            for op in node.operators:
                table = self._apply(table, op)
            return table
        raise NotConstant(node, "not a constant table")

    def _apply(self, table: "ConstTable", op: Any) -> "ConstTable":
        if isinstance(op, (A.Distinct, A.Project)) and all(isinstance(i, A.Name) for i in op.items):
            wanted = [i.name for i in op.items]
            missing = [w for w in wanted if w not in table.columns]
            if missing:
                raise NotConstant(op, f"no column {missing[0]} in the datatable")
            idx = [table.columns.index(w) for w in wanted]
            rows = [tuple(r[i] for i in idx) for r in table.rows]
            if isinstance(op, A.Distinct):
                rows = list(dict.fromkeys(rows))
            return ConstTable(tuple(wanted), rows)
        raise NotConstant(op, "only distinct / project of columns fold over a datatable")


@dataclass(frozen=True)
class ConstTable:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
