"""An Elastic Security detection rule (the Kibana rule-import ndjson: one JSON object a line).

Severity and risk score follow Elastic's prebuilt-rule convention (low 21, medium 47, high 73,
critical 99).  `from` / `interval` come from the package plan (`rmmc.packaging.schedule`);
`alert_suppression` groups the alerts of a rule that summarizes by keys; `threat` is the ATT&CK
block of `elastic/detection-rules`: each technique with its ATT&CK name under its tactic,
sub-techniques in their parent's `subtechnique` list.  The JSON schemas of Kibana's API
(reference/elastic/api_schemas) are what the tests validate every package against.
"""

from __future__ import annotations

import json
from datetime import timedelta

from rmmc.backends.base import note, shape
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule
from rmmc.packaging import common
from rmmc.packaging.columns import group_keys
from rmmc.packaging.schedule import Plan

_RISK = {"low": 21, "medium": 47, "high": 73, "critical": 99}
_SUPPRESS_KEYS = 3  # Kibana's alert_suppression.group_by takes at most three fields


def package(rule: Rule, target: str, query: str, plan: Plan, diagnostics: list[Diagnostic],
            index: str | None = None, entities: tuple[str, ...] = ()) -> str:
    level = common.level(rule, target, diagnostics)
    if level == "informational":
        diagnostics.append(note(target, "Elastic has no informational severity: low"))
        level = "low"
    interval = plan.window if plan.hunting else plan.schedule.interval
    body: dict = {
        "name": common.title(rule),
        "rule_id": common.rule_uuid(rule),
        "description": common.description(rule),
        "risk_score": _RISK[level],
        "severity": level,
        "type": target,
        "language": target,
        "query": query,
        "from": f"now-{common.duration(plan.window)}",
        "interval": common.duration(interval),
    }
    if target == "eql":
        body["index"] = (index or "logs-*").split(",")
    suppression = _suppression(rule, target, plan, diagnostics, entities)
    if suppression:
        body["alert_suppression"] = suppression
    body["threat"] = threat(rule, target, diagnostics)
    body["references"] = list(rule.metadata.references)
    body["false_positives"] = [e.name for e in rule.exclusions] or list(rule.metadata.false_positives)
    body["author"] = [rule.metadata.author] if rule.metadata.author else ["rmmc"]
    body["tags"] = ["Hunting"] if plan.hunting else []
    body["note"] = _note(plan)
    body["enabled"] = False
    body["version"] = 1
    diagnostics.append(note(target, plan.describe()))
    return json.dumps(body, ensure_ascii=False) + "\n"


def _note(plan: Plan) -> str:
    text = f"rmmc: {plan.describe()}."
    if plan.hunting:
        text += (" Run it as a hunt (it runs once per window: every run looks at the whole "
                 "window again).")
    return text


def _suppression(rule: Rule, target: str, plan: Plan, diagnostics: list[Diagnostic],
                 entities: tuple[str, ...] = ()) -> dict | None:
    """Alerts of one group (the rule's summarize keys) are suppressed for the hunting lookback
    (at least a run's window): a group alerts once per window it is seen in, as the hunting
    query reports it once.  A rule returning events is suppressed by its host and user fields
    (`entities`) for a run's window: the overlap's events and a burst on one host alert once."""
    keys = group_keys(rule)
    period = max(plan.lookback or timedelta(0), plan.window)
    if not keys:
        keys, period = entities, plan.window
    if not keys:
        return None
    if len(keys) > _SUPPRESS_KEYS:
        diagnostics.append(shape(target, f"Elastic suppresses alerts by at most {_SUPPRESS_KEYS} fields: "
                                         f"by {', '.join(keys[:_SUPPRESS_KEYS])} (not {', '.join(keys[_SUPPRESS_KEYS:])})"))
        keys = keys[:_SUPPRESS_KEYS]
    seconds = int(period.total_seconds())
    value, unit = next((seconds // size, unit) for unit, size in (("h", 3600), ("m", 60), ("s", 1))
                       if seconds % size == 0)
    return {"group_by": list(keys), "duration": {"value": value, "unit": unit},
            "missing_fields_strategy": "suppress"}


def threat(rule: Rule, target: str, diagnostics: list[Diagnostic]) -> list[dict]:
    """Elastic's `threat`: each technique under a tactic, by its ATT&CK name.  A technique goes
    under the tactic ATT&CK files it under (`rmmc.compiler.attack.technique`) -- the rule's own
    tactic when it names one of those, else that tactic is added (a note); a technique the data
    has no tactic for goes under the rule's first tactic.  A technique whose name rmmc's data
    does not hold is left out (a warning): Elastic shows `name` as the technique's name, and an
    id there would be wrong."""
    from rmmc.compiler.attack import tactic as tactic_of
    from rmmc.compiler.attack import technique

    tactics = common.tactics(rule, target, diagnostics)
    entries: dict[str, dict] = {}
    for found in tactics:
        entries[found.id] = {"framework": "MITRE ATT&CK",
                             "tactic": {"id": found.id, "name": found.name, "reference": found.reference},
                             "technique": {}}
    unnamed: list[str] = []
    for tid in common.techniques(rule, target, diagnostics):
        parent, _, sub = tid.partition(".")
        parent_known, own = technique(parent), technique(tid)
        if parent_known is None or (sub and own is None):
            unnamed.append(tid)
            continue
        where = [t for t in (own or parent_known)[1]]
        chosen = next((t for t in where if t in entries), None)
        if chosen is None and where:
            found = tactic_of(where[0])
            diagnostics.append(note(target, f"technique {tid} is filed under {found.name} ({found.id}) "
                                            "in ATT&CK, which the rule does not name: added"))
            entries[found.id] = {"framework": "MITRE ATT&CK",
                                 "tactic": {"id": found.id, "name": found.name,
                                            "reference": found.reference},
                                 "technique": {}}
            chosen = found.id
        if chosen is None:
            if not entries:
                diagnostics.append(shape(target, f"ATT&CK technique {tid} has no tactic in the rule or "
                                                 "in rmmc's data: left out of `threat`"))
                continue
            chosen = next(iter(entries))
        bucket = entries[chosen]["technique"]
        entry = bucket.setdefault(parent, {"id": parent, "name": parent_known[0],
                                           "reference": f"https://attack.mitre.org/techniques/{parent}/"})
        if sub:
            subs = entry.setdefault("subtechnique", [])
            if all(s["id"] != tid for s in subs):
                subs.append({"id": tid, "name": own[0],
                             "reference": f"https://attack.mitre.org/techniques/{parent}/{sub}/"})
    if unnamed:
        diagnostics.append(shape(target, f"ATT&CK technique{'s' if len(unnamed) > 1 else ''} "
                                         f"{', '.join(unnamed)}: rmmc's ATT&CK data holds no name, and "
                                         "Elastic's `threat` needs the name: left out of `threat`"))
    out = []
    for entry in entries.values():
        techniques = list(entry.pop("technique").values())
        if techniques:
            entry["technique"] = techniques
        out.append(entry)
    return out
