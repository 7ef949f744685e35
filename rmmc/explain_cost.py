"""`rmmc explain --cost`: per target, what the engine can answer from an index and what it runs
on every candidate event, for one compiled rule (`rmmc.backends.cost` reads it from the query
each target gets in its default environment, written as a user would see it: lossy parts and
fields the environment lacks allowed, each target's verdict shown)."""

from __future__ import annotations

from typing import Any

from rmmc.backends.base import EmitOptions
from rmmc.backends.cost import Cost, cost

TARGETS = ("kql", "splunk", "esql", "eql", "sigma")


def rule_costs(compiled: Any) -> dict[str, Cost | str]:
    """Each target's `Cost`, or why there is no query to cost."""
    from rmmc.translation import translate_compiled

    out: dict[str, Cost | str] = {}
    for target in TARGETS:
        result = translate_compiled(compiled, target, EmitOptions(allow_lossy=True), allow_unknown_fields=True)
        if not result.text:
            errors = [d.message for d in result.diagnostics if d.is_error]
            out[target] = "no query: " + (errors[0] if errors else "not translated")
            continue
        try:
            out[target] = cost(target, result.text)
        except ValueError as error:  # a query shape the reader does not know
            out[target] = f"not measured: {error}"
    return out


def cost_text(compiled: Any) -> str:
    lines = ["cost (what each engine answers from an index, what it runs per event):"]
    for target, found in rule_costs(compiled).items():
        if isinstance(found, str):
            lines.append(f"  {target}: {found}")
        else:
            lines.extend("  " + line for line in found.lines())
    return "\n".join(lines)


def cost_json(compiled: Any) -> dict[str, Any]:
    return {target: found if isinstance(found, str) else
            {"index": found.index, "per_event": found.scan, "every_branch_indexed": found.every_branch_indexed}
            for target, found in rule_costs(compiled).items()}
