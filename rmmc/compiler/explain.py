"""The detection model, readable: what `rmmc explain` prints (text, or JSON for machines)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from rmmc.compiler import ir
from rmmc.compiler.constants import timespan_text
from rmmc.compiler.functions import describe

_OP_WORDS = {
    ir.Op.EQUALS: "equals", ir.Op.CONTAINS: "contains", ir.Op.STARTSWITH: "starts with",
    ir.Op.ENDSWITH: "ends with", ir.Op.TERM: "has the term", ir.Op.TERM_PREFIX: "has a term starting with",
    ir.Op.TERM_SUFFIX: "has a term ending with", ir.Op.REGEX: "matches the regex",
    ir.Op.EMPTY: "is empty", ir.Op.EXISTS: "exists", ir.Op.LT: "<", ir.Op.LE: "<=", ir.Op.GT: ">",
    ir.Op.GE: ">=", ir.Op.BETWEEN: "is between", ir.Op.CIDR: "is an IP address in network",
}


def _value(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, timedelta):
        return timespan_text(v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def predicate_text(p: ir.Predicate) -> str:
    words = _OP_WORDS[p.op]
    subject = describe(p.field)  # a column, or an expression (a constant a mutation left)
    if p.op in (ir.Op.EMPTY, ir.Op.EXISTS):
        text = f"{subject} {words}"
    elif p.op is ir.Op.BETWEEN:
        text = f"{subject} {words} {_value(p.values[0])} and {_value(p.values[1])} (inclusive)"
    elif len(p.values) == 1:
        text = f"{subject} {words} {_value(p.values[0])}"
    elif p.op is ir.Op.CIDR:
        quantifier = "all of" if p.all_values else "any of"
        text = (f"{subject} is an IP address in {quantifier} the networks "
                f"({', '.join(_value(v) for v in p.values)})")
    else:
        quantifier = "all of" if p.all_values else "any of"
        text = f"{subject} {words} {quantifier} ({', '.join(_value(v) for v in p.values)})"
    if p.op in ir.STRING_OPS:
        text += " [case-sensitive]" if p.case_sensitive else " [case-insensitive]"
    return f"NOT {text}" if p.negated else text


def condition_lines(c: ir.Condition, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(c, ir.Predicate):
        return [pad + predicate_text(c)]
    if isinstance(c, ir.InSubquery):
        op = "is not among" if c.negated else "is among"
        case = "" if c.case_sensitive else " [case-insensitive]"
        return [f"{pad}{c.field.name} {op} the values of ({c.query}){case}"]
    if isinstance(c, ir.Compare):
        return [f"{pad}{describe(c.left)} {c.op} {describe(c.right)}"]
    if isinstance(c, ir.Const):
        return [pad + ("always true" if c.value else "always false")]
    if isinstance(c, ir.Not):
        return [pad + "none of:"] + condition_lines(c.operand, indent + 1)
    head = "all of:" if isinstance(c, ir.And) else "any of:"
    lines = [pad + head]
    for operand in c.operands:
        lines.extend(condition_lines(operand, indent + 1))
    return lines


def _columns(columns) -> str:
    return ", ".join(n if isinstance(e, ir.Field) and e.name == n else f"{n} = {describe(e)}"
                     for n, e in columns)


def stage_lines(stage: ir.Stage, indent: int) -> list[str]:
    """One stage of the rule, readable (its meaning is `rmmc.compiler.rows`)."""
    pad = "  " * indent
    if isinstance(stage, ir.Filter):
        return [pad + "keep the rows where:"] + condition_lines(stage.condition, indent + 1)
    if isinstance(stage, ir.Extend):
        return [pad + "add columns " + _columns(stage.columns)]
    if isinstance(stage, ir.Project):
        return [pad + "keep only the columns " + _columns(stage.columns)]
    if isinstance(stage, ir.Summarize):
        parts = [f"{a.name} = " if a.name else "" for a in stage.aggregates]
        parts = [p + f"{a.function}({', '.join(describe(x) for x in a.args)})"
                 for p, a in zip(parts, stage.aggregates)]
        keys = _columns(stage.group_by) or "(all rows)"
        return [pad + f"one row per {keys}" + (f": {', '.join(parts)}" if parts else " (distinct)")]
    if isinstance(stage, ir.ProjectAway):
        return [pad + "drop the columns " + ", ".join(stage.patterns)]
    if isinstance(stage, ir.Rename):
        return [pad + "rename " + ", ".join(f"{old} to {new}" for new, old in stage.pairs)]
    if isinstance(stage, ir.Reorder):
        return [pad + "put first the columns " + ", ".join(stage.patterns)]
    if isinstance(stage, ir.Sort):
        return [pad + "sort by " + ", ".join(f"{describe(k.expr)} {'desc' if k.descending else 'asc'}"
                                             for k in stage.keys)]
    if isinstance(stage, ir.Limit):
        return [pad + f"keep the first {stage.count} rows"]
    if isinstance(stage, ir.Join):
        keys = ", ".join(a if a == b else f"{a} = {b}" for a, b in stage.keys)
        what = "lookup" if stage.lookup else "join"
        return ([pad + f"{what} ({stage.kind}) on {keys} with:"] + rule_lines(stage.right, indent + 1))
    if isinstance(stage, ir.MvExpand):
        return [pad + "one row per element of " + ", ".join(
            f"{n} = {describe(e)}" + (f" (as {t})" if t else "") for n, e, t in stage.columns)
            + (f", at most {stage.limit} per row" if stage.limit is not None else "")]
    if isinstance(stage, ir.Parse):
        pattern = " ".join("*" if p is None else p[0] if isinstance(p, tuple) else repr(p) for p in stage.pattern)
        return [pad + f"parse {describe(stage.source)} with {pattern}" + (" (drop non-matches)" if stage.drop else "")]
    return [pad + type(stage).__name__]


def rule_lines(rule: ir.Rule, indent: int) -> list[str]:
    """A sub-rule (a union branch, a join's right side), readable."""
    pad = "  " * indent
    s = rule.source
    lines = []
    if rule.union is not None:
        lines.append(pad + "the rows of each of:" + (f" (with the source in {rule.union.withsource})"
                                                      if rule.union.withsource else ""))
        for branch in rule.union.branches:
            lines.append(pad + "  -")
            lines.extend(rule_lines(branch, indent + 2))
    else:
        lines.append(pad + f"source: {s.table or '(no table)'}")
    if rule.lookback:
        lines.append(pad + f"lookback: {rule.lookback.text or timespan_text(rule.lookback.window)} ending now")
    if rule.condition != ir.Const(True):
        lines.append(pad + "condition:")
        lines.extend(condition_lines(rule.condition, indent + 1))
    for stage in rule.stages:
        lines.extend(stage_lines(stage, indent))
    return lines


def explain(rule: ir.Rule) -> str:
    """A readable account of a rule's detection model."""
    m, s = rule.metadata, rule.source
    lines = [f"rule: {m.title or '(untitled)'}" + (f"  [{m.id}]" if m.id else "")]
    if m.tactics or m.techniques:
        lines.append(f"  att&ck: {', '.join(m.tactics + m.techniques)}")
    if m.level:
        lines.append(f"  level: {m.level}")
    logsource = "/".join(x for x in (s.product, s.category, s.service) if x) or "none"
    if rule.union is not None:
        lines.append("  source: a union" + (f" (the source in {rule.union.withsource})" if rule.union.withsource else ""))
        for branch in rule.union.branches:
            lines.append("    -")
            lines.extend(rule_lines(branch, 3))
    else:
        lines.append(f"  source: {s.table or '(no table)'} ({s.kind.value} events; Sigma logsource {logsource})")
    lines.append(f"  lookback: {rule.lookback.text or timespan_text(rule.lookback.window)} ending now"
                 if rule.lookback else "  lookback: none (left to the scheduler)")
    lines.append("  condition:")
    lines.extend(condition_lines(rule.condition, 2))
    if rule.stages:
        lines.append("  then, in order:")
        for stage in rule.stages:
            lines.extend(stage_lines(stage, 2))
    if rule.exclusions:
        lines.append("  exclusions (applied only with --apply-exclusions):")
        for e in rule.exclusions:
            lines.append(f"    - {e.name}")
            if e.condition is not None:
                lines.extend(condition_lines(e.condition, 4))
            elif e.text:
                lines.append(f"        kept as text: {e.text}")
    return "\n".join(lines)


def to_jsonable(value: Any) -> Any:
    """The IR as plain JSON values (enums by value, times in ISO form, spans dropped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"node": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name in ("span", "source_span"):
                continue
            out[f.name] = to_jsonable(getattr(value, f.name))
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return timespan_text(value)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def explain_json(rule: ir.Rule) -> str:
    return json.dumps(to_jsonable(rule), indent=2, ensure_ascii=False)
