"""Paths into dynamic columns as fields: `AdditionalFields.x`, for targets that name them.

Defender keeps event details in dynamic columns (`AdditionalFields`), and hunting rules test
them as `AdditionalFields.Foo`, `parse_json(AdditionalFields)['Foo']`, `todynamic(x).a.b`,
`tostring(AdditionalFields.Foo)`.  In the model that is `member()` over the column (with
`parse_json` / `todynamic` around a text column, `tostring` around the value).  KQL says it as
written; other targets have no dynamic values, but their JSON extraction names each leaf by
its dotted path (`AdditionalFields.Foo` in Splunk, in Sigma and in Elastic's flattened
fields).  `field_path(expr)` recognises such a path; `paths_as_fields(condition)` replaces the
subject of every string test on one by a `PathField`, a field named by the dotted path, so a
backend names it like any field.

The value tested is the same one: a string test on a dynamic value reads its text
(`tostring`), which for a JSON string is the string and for a number or bool its JSON text,
as the extracted field holds it.  Where the path's field lives in another platform's data is
the environment's to say (per target field mappings, issue 12): `path_name` is the one hook;
until then the path passes through under its Defender name and the backend says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.fast_replace import replace

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNWRAP = frozenset({"parse_json", "todynamic"})


@dataclass(frozen=True, slots=True)
class PathField(ir.Field):
    """A field named by a path into a dynamic column: `base` the column, `keys` the members."""

    base: str = ""
    keys: tuple[str, ...] = ()


def field_path(expr: Any) -> PathField | None:
    """The path an expression reads (`F.a.b`, `parse_json(F)['a']`, `tostring(F.a)` ...), as a
    `PathField` typed as the expression is, or None."""
    type_name = getattr(expr, "type", "dynamic")
    if isinstance(expr, ir.Call) and expr.function == "tostring" and len(expr.args) == 1:
        expr = expr.args[0]
    keys: list[str] = []
    while isinstance(expr, ir.Call):
        if expr.function == "member" and len(expr.args) == 2 and isinstance(expr.args[1], ir.Literal):
            key = expr.args[1].value
            if not isinstance(key, str) or not _KEY.match(key):
                return None
            keys.insert(0, key)
            expr = expr.args[0]
        elif expr.function in _UNWRAP and len(expr.args) == 1:
            expr = expr.args[0]
        else:
            return None
    if not isinstance(expr, ir.Field) or isinstance(expr, PathField) or not keys or expr.type != "dynamic":
        return None  # a path into a dynamic column (JSON text in a string column is no field elsewhere)
    name = ".".join((expr.name, *keys))
    return PathField(name, "string" if type_name in ("string", "dynamic") else type_name, expr.name, tuple(keys))


def dynamic_alias(expr: Any, aliases: dict[str, Any] | None = None) -> Any:
    """What a computed column stands for when it is a dynamic column or a path into one
    (`parse_json(AdditionalFields)`, `todynamic(F)`, `F.a`): the expression with earlier
    aliases resolved, else None."""
    expr = resolve_aliases(expr, aliases or {})
    inner = expr
    while isinstance(inner, ir.Call) and inner.function in _UNWRAP and len(inner.args) == 1:
        inner = inner.args[0]
    if inner is not expr and isinstance(inner, ir.Field) and not isinstance(inner, PathField) \
            and inner.type == "dynamic":
        return expr
    if isinstance(expr, ir.Call) and expr.function == "member" and field_path(expr) is not None:
        return expr
    return None


def resolve_aliases(expr: Any, aliases: dict[str, Any]) -> Any:
    """`expr` with each column that is an alias of a dynamic value replaced by what it stands for."""
    if not aliases:
        return expr
    if isinstance(expr, ir.Field) and not isinstance(expr, PathField) and expr.name in aliases:
        return aliases[expr.name]
    if isinstance(expr, ir.Call):
        return replace(expr, args=tuple(resolve_aliases(a, aliases) for a in expr.args))
    return expr


def resolve_path(path: PathField, aliases: dict[str, Any]) -> PathField:
    """A path whose base is an alias (`AF.FileType` with AF = parse_json(AdditionalFields)) as
    the path into the real column."""
    if path.base not in aliases:
        return path
    expr: Any = aliases[path.base]
    for key in path.keys:
        expr = ir.Call("member", (expr, ir.Literal(key)), "dynamic")
    found = field_path(expr)
    return replace(found, type=path.type) if found is not None else path


def path_name(path: PathField, target: str, table: str | None) -> str:
    """The field a target names a path by.  The hook an environment's field mapping takes over;
    until then the Defender column's dotted path, as JSON extraction names it."""
    return path.name


def paths_as_fields(condition: ir.Condition) -> tuple[ir.Condition, list[PathField]]:
    """The condition with each string test on a path tested on its `PathField`, and the paths."""
    found: list[PathField] = []

    def visit(node: Any) -> Any:
        if isinstance(node, ir.Predicate) and not isinstance(node.field, ir.Field) \
                and node.op in ir.STRING_OPS | {ir.Op.EMPTY}:
            path = field_path(node.field)
            if path is not None:
                if path not in found:
                    found.append(path)
                return replace(node, field=path)
            return node
        if isinstance(node, (ir.And, ir.Or)):  # rebuilt only where a test changed
            operands = tuple(visit(o) for o in node.operands)
            if all(new is old for new, old in zip(operands, node.operands)):
                return node
            return type(node)(operands)
        if isinstance(node, ir.Not):
            operand = visit(node.operand)
            return node if operand is node.operand else ir.Not(operand)
        return node

    return visit(condition), found


def with_paths(rule: ir.Rule) -> tuple[ir.Rule, list[PathField]]:
    """The rule with `paths_as_fields` applied to its detection and filters."""
    condition, found = paths_as_fields(rule.condition)
    stages = []
    for stage in rule.stages:
        if isinstance(stage, ir.Filter):
            new, more = paths_as_fields(stage.condition)
            found.extend(p for p in more if p not in found)
            stage = stage if new is stage.condition else replace(stage, condition=new)
        stages.append(stage)
    if condition is rule.condition and all(new is old for new, old in zip(stages, rule.stages)):
        return rule, found  # no path tested: the rule as it is
    return replace(rule, condition=condition, stages=tuple(stages)), found


def path_warning_text(path: PathField, name: str, target: str) -> str:
    return (f"{target}: {path.name} is a path into the dynamic column {path.base}: written as the field "
            f"'{name}', as JSON extraction names it (pass-through: map it to your data's field)")
