"""Metadata every package carries: title, stable id, level, durations, ATT&CK tactics and
techniques as the rule names them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rmmc.backends.base import note
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule

LEVELS = ("informational", "low", "medium", "high", "critical")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://rmmc/rules")


def title(rule: Rule) -> str:
    text = (rule.metadata.title or "").strip()
    return text or f"rmmc rule {rule.metadata.id or rule_uuid(rule)}"


def rule_uuid(rule: Rule) -> str:
    """The rule's id, else a uuid5 of its title (stable from run to run)."""
    if rule.metadata.id and rule.metadata.id.strip():
        return rule.metadata.id.strip()
    key = (rule.metadata.title or "").strip() or (rule.metadata.source_path or "")
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def description(rule: Rule) -> str:
    return (rule.metadata.description or "").strip() or title(rule)


def level(rule: Rule, target: str, diagnostics: list[Diagnostic]) -> str:
    raw = (rule.metadata.level or "").strip().lower()
    if raw == "info":
        raw = "informational"
    if raw in LEVELS:
        return raw
    if raw:
        diagnostics.append(note(target, f"level {rule.metadata.level!r} is not a known level: medium"))
    return "medium"


def duration(delta: timedelta, units=(("d", 86400), ("h", 3600), ("m", 60), ("s", 1))) -> str:
    """`5d`, `90m`...: the largest unit that divides the duration (at least one second)."""
    seconds = max(1, int(delta.total_seconds()))
    for unit, size in units:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def tactics(rule: Rule, target: str, diagnostics: list[Diagnostic]):
    """The rule's ATT&CK Enterprise tactics (`rmmc.compiler.attack`), one per tactic id, in
    the rule's order and as the rule names them (v19 `Stealth` or v18 `Defense Evasion`)."""
    from rmmc.compiler.attack import tactic

    out = []
    for raw in rule.metadata.tactics:
        found = tactic(raw)
        if found is None:
            diagnostics.append(note(target, f"tactic {raw!r} is not an ATT&CK Enterprise tactic: left out"))
        elif all(t.id != found.id for t in out):
            out.append(found)
    return out


def techniques(rule: Rule, target: str, diagnostics: list[Diagnostic]) -> list[str]:
    from rmmc.compiler.attack import moved, technique_id

    out: list[str] = []
    for raw in rule.metadata.techniques:
        tid = technique_id(raw)
        if tid is None:
            diagnostics.append(note(target, f"technique {raw!r} is not an ATT&CK technique id: left out"))
            continue
        if tid not in out:
            out.append(tid)
            successor = moved(tid)
            if successor is not None:
                diagnostics.append(note(target, f"technique {tid} is {successor[0]} ({successor[1]}) "
                                                "in ATT&CK v19: written as the rule gives it"))
    return out
