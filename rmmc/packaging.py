"""Rule packaging: a translated query wrapped in a ready-to-import rule for its platform.

`package(rule, target, query_text)` returns (file suffix, text, diagnostics):

* eql / esql -> an Elastic Security detection rule, one JSON object on one line (`.ndjson`,
  the format of Kibana's rule import), built with `json.dumps`.  Severity and risk score
  follow Elastic's prebuilt-rule convention (low 21, medium 47, high 73, critical 99);
  `threat` is the ATT&CK block of `elastic/detection-rules` (framework, tactic, technique).
* splunk -> a `savedsearches.conf` stanza (`.conf`).  Multi-line values continue with a
  trailing backslash; single-line values have line breaks folded and trailing backslashes
  removed, and the stanza name loses `[`, `]` and line breaks, so no value can open a stanza.
* kql -> a Microsoft Sentinel scheduled analytic rule in the YAML layout of the
  Azure-Sentinel repository (`.yaml`), written with a `yaml.SafeDumper`.
* sigma -> the translation already is a complete rule: returned unchanged.

A rule without a level is packaged as medium (as the Sigma backend does).  The schedulers
run hourly; each run looks back over the rule's lookback window (1h when it has none).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

from rmmc.backends.base import lossy, note, shape
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule

SUFFIXES = {"eql": ".eql.ndjson", "esql": ".esql.ndjson", "splunk": ".conf", "kql": ".yaml",
            "sigma": ".yml"}

INTERVAL = timedelta(hours=1)          # how often every packaged rule runs
DEFAULT_LOOKBACK = timedelta(hours=1)  # the window scanned when the rule gives none

_LEVELS = ("informational", "low", "medium", "high", "critical")
_ELASTIC_RISK = {"low": 21, "medium": 47, "high": 73, "critical": 99}
_SPLUNK_SEVERITY = {"informational": 2, "low": 3, "medium": 4, "high": 5, "critical": 6}
_SENTINEL_SEVERITY = {"informational": "Informational", "low": "Low", "medium": "Medium",
                      "high": "High", "critical": "High"}
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://rmmc/rules")


def package(rule: Rule, target: str, query_text: str,
            index: str | None = None) -> tuple[str, str, list[Diagnostic]]:
    """The translated `query_text` of `rule` as an importable rule file for `target`; `index`
    is the environment's index pattern (Elastic; default `logs-*`)."""
    target = target.lower()
    if target == "sigma":
        return SUFFIXES["sigma"], query_text, []
    diagnostics: list[Diagnostic] = []
    if target in ("eql", "esql"):
        text = _elastic(rule, target, query_text, diagnostics, index)
    elif target == "splunk":
        text = _splunk(rule, query_text, diagnostics)
    elif target == "kql":
        text = _sentinel(rule, query_text, diagnostics)
    else:
        raise ValueError(f"no rule packaging for target {target!r}")
    return SUFFIXES[target], text, diagnostics


# ------------------------------------------------------------------ shared metadata


def _title(rule: Rule) -> str:
    title = (rule.metadata.title or "").strip()
    return title or f"rmmc rule {rule.metadata.id or _rule_uuid(rule)}"


def _rule_uuid(rule: Rule) -> str:
    """The rule's id, else a uuid5 of its title (stable from run to run)."""
    if rule.metadata.id and rule.metadata.id.strip():
        return rule.metadata.id.strip()
    key = (rule.metadata.title or "").strip() or (rule.metadata.source_path or "")
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def _description(rule: Rule) -> str:
    return (rule.metadata.description or "").strip() or _title(rule)


def _level(rule: Rule, target: str, diagnostics: list[Diagnostic]) -> str:
    raw = (rule.metadata.level or "").strip().lower()
    if raw == "info":
        raw = "informational"
    if raw in _LEVELS:
        return raw
    if raw:
        diagnostics.append(note(target, f"level {rule.metadata.level!r} is not a known level: "
                                        "medium"))
    return "medium"


def _window(rule: Rule) -> timedelta:
    if rule.lookback is not None and rule.lookback.window > timedelta(0):
        return rule.lookback.window
    return DEFAULT_LOOKBACK


def _duration(delta: timedelta, units=(("d", 86400), ("h", 3600), ("m", 60), ("s", 1))) -> str:
    """`5d`, `90m`...: the largest unit that divides the duration (at least one second)."""
    seconds = max(1, int(delta.total_seconds()))
    for unit, size in units:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _tactics(rule: Rule, target: str, diagnostics: list[Diagnostic]):
    """The rule's ATT&CK Enterprise tactics (`rmmc.compiler.attack`), one per tactic id, in
    the rule's order and as the rule names them (v19 `Stealth` or v18 `Defense Evasion`)."""
    from rmmc.compiler.attack import tactic

    out = []
    for raw in rule.metadata.tactics:
        found = tactic(raw)
        if found is None:
            diagnostics.append(note(target, f"tactic {raw!r} is not an ATT&CK Enterprise "
                                            "tactic: left out"))
        elif all(t.id != found.id for t in out):
            out.append(found)
    return out


def _techniques(rule: Rule, target: str, diagnostics: list[Diagnostic]) -> list[str]:
    from rmmc.compiler.attack import moved, technique_id

    out: list[str] = []
    for raw in rule.metadata.techniques:
        tid = technique_id(raw)
        if tid is None:
            diagnostics.append(note(target, f"technique {raw!r} is not an ATT&CK technique "
                                            "id: left out"))
            continue
        if tid not in out:
            out.append(tid)
            successor = moved(tid)
            if successor is not None:
                diagnostics.append(note(target, f"technique {tid} is {successor[0]} ({successor[1]}) "
                                                "in ATT&CK v19: written as the rule gives it"))
    return out


# ------------------------------------------------------------------ Elastic


def _elastic(rule: Rule, target: str, query: str, diagnostics: list[Diagnostic],
             index: str | None = None) -> str:
    level = _level(rule, target, diagnostics)
    if level == "informational":
        diagnostics.append(note(target, "Elastic has no informational severity: low"))
        level = "low"
    body: dict = {
        "name": _title(rule),
        "rule_id": _rule_uuid(rule),
        "description": _description(rule),
        "risk_score": _ELASTIC_RISK[level],
        "severity": level,
        "type": target,
        "language": target,
        "query": query,
        "from": f"now-{_duration(_window(rule))}",
        "interval": _duration(INTERVAL),
    }
    if target == "eql":
        body["index"] = (index or "logs-*").split(",")
    body["threat"] = _elastic_threat(rule, target, diagnostics)
    body["references"] = list(rule.metadata.references)
    body["false_positives"] = [e.name for e in rule.exclusions] or list(
        rule.metadata.false_positives)
    body["enabled"] = False
    body["version"] = 1
    if rule.metadata.author:
        body["author"] = [rule.metadata.author]
    return json.dumps(body, ensure_ascii=False) + "\n"


def _elastic_threat(rule: Rule, target: str, diagnostics: list[Diagnostic]) -> list[dict]:
    """Elastic's `threat`: each technique sits under a tactic.  The rule's techniques go under
    its tactic when it names one; a rule naming several does not say which technique belongs
    to which (rmmc holds no technique -> tactic table), so they go under the first, with a
    warning; techniques without any tactic are left out, with a warning."""
    tactics = _tactics(rule, target, diagnostics)
    techniques = _techniques(rule, target, diagnostics)
    if techniques and not tactics:
        diagnostics.append(shape(target, f"ATT&CK techniques {', '.join(techniques)} have no tactic "
                                         "in the rule, and Elastic lists techniques under a "
                                         "tactic: left out of `threat`"))
        return []
    if techniques and len(tactics) > 1:
        diagnostics.append(shape(target, f"the rule names tactics {', '.join(t.name for t in tactics)} "
                                         "and does not say which technique belongs to which: "
                                         f"{', '.join(techniques)} are listed under {tactics[0].name}"))
    threat = []
    for i, found in enumerate(tactics):
        entry: dict = {
            "framework": "MITRE ATT&CK",
            "tactic": {"id": found.id, "name": found.name, "reference": found.reference},
        }
        if i == 0 and techniques:
            entry["technique"] = _elastic_techniques(techniques)
        threat.append(entry)
    return threat


def _elastic_techniques(techniques: list[str]) -> list[dict]:
    """Techniques with their sub-techniques nested, as Elastic lays them out.  Names are
    not known to rmmc: the id stands in for the name."""
    out: dict[str, dict] = {}
    for tid in techniques:
        parent, _, sub = tid.partition(".")
        entry = out.setdefault(parent, {
            "id": parent, "name": parent,
            "reference": f"https://attack.mitre.org/techniques/{parent}/"})
        if sub:
            entry.setdefault("subtechnique", []).append({
                "id": tid, "name": tid,
                "reference": f"https://attack.mitre.org/techniques/{parent}/{sub}/"})
    return list(out.values())


# ------------------------------------------------------------------ Splunk


def _conf_line(value: str) -> str:
    """A value that must stay on its line: breaks folded, no trailing backslash."""
    folded = " ".join(value.split())
    return folded.rstrip("\\").rstrip()


def _conf_multiline(value: str, diagnostics: list[Diagnostic]) -> str:
    """A value over several lines: every line but the last ends with a backslash, which
    .conf files read as "the value goes on".  A line that would end with a backslash of its
    own gets a trailing space so it does not join the next setting."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")
    if lines[-1].endswith("\\"):
        diagnostics.append(note("splunk", "the query ends with a backslash: a space was added "
                                          "after it"))
        lines[-1] += " "
    return "\\\n".join(lines)


def _splunk(rule: Rule, query: str, diagnostics: list[Diagnostic]) -> str:
    level = _level(rule, "splunk", diagnostics)
    name = _conf_line(re.sub(r"[\[\]]", "", _title(rule))) or f"rmmc rule {_rule_uuid(rule)}"
    settings = [
        ("description", _conf_line(_description(rule))),
        ("search", _conf_multiline(query, diagnostics)),
        ("dispatch.earliest_time", f"-{_duration(_window(rule))}"),
        ("dispatch.latest_time", "now"),
        ("cron_schedule", "0 * * * *"),
        ("enableSched", "1"),
        ("alert.track", "1"),
        ("alert.severity", str(_SPLUNK_SEVERITY[level])),
        ("counttype", "number of events"),
        ("relation", "greater than"),
        ("quantity", "0"),
    ]
    return f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in settings)


# ------------------------------------------------------------------ Microsoft Sentinel


def _sentinel_tactics(rule: Rule, diagnostics: list[Diagnostic]) -> list[str]:
    """Tactics as Sentinel spells them (`CommandAndControl`).  Sentinel's analytic rules take
    the ATT&CK v18 tactic names: v19's Stealth and Defense Impairment, both split from Defense
    Evasion (TA0005), are written DefenseEvasion, with a note."""
    from rmmc.compiler.attack import tactic

    out: list[str] = []
    for found in _tactics(rule, "kql", diagnostics):
        if found.v18 is not None:
            older = tactic(found.v18)
            diagnostics.append(note("kql", f"tactic {found.name} ({found.id}, ATT&CK v19) is written "
                                           f"{older.camel}: Sentinel takes ATT&CK v18 tactic names"))
            found = older
        if found.camel not in out:
            out.append(found.camel)
    return out


def _sentinel(rule: Rule, query: str, diagnostics: list[Diagnostic]) -> str:
    level = _level(rule, "kql", diagnostics)
    if level == "critical":
        diagnostics.append(note("kql", "Sentinel has no critical severity: High"))
    period = _window(rule)
    if period > timedelta(days=14):
        diagnostics.append(lossy("kql", f"Sentinel scheduled rules look back at most 14 days, "
                                        f"not {_duration(period)}: 14d"))
        period = timedelta(days=14)
    period = timedelta(minutes=max(5, -(-int(period.total_seconds()) // 60)))  # whole minutes, >= 5m
    frequency = min(INTERVAL, period)
    tactics = _sentinel_tactics(rule, diagnostics)
    body: dict = {
        "id": _rule_uuid(rule),
        "name": _title(rule),
        "description": _description(rule),
        "severity": _SENTINEL_SEVERITY[level],
    }
    if rule.source.table:
        body["requiredDataConnectors"] = [{"connectorId": "MicrosoftThreatProtection",
                                           "dataTypes": [rule.source.table]}]
    else:
        body["requiredDataConnectors"] = []
    body.update({
        "queryFrequency": _duration(frequency, units=(("d", 86400), ("h", 3600), ("m", 60))),
        "queryPeriod": _duration(period, units=(("d", 86400), ("h", 3600), ("m", 60))),
        "triggerOperator": "gt",
        "triggerThreshold": 0,
        "tactics": tactics,
        "relevantTechniques": _techniques(rule, "kql", diagnostics),
        "query": query.replace("\r\n", "\n").strip("\n") + "\n",
        "version": "1.0.0",
        "kind": "Scheduled",
    })
    from rmmc.backends.yaml_text import dump_all

    return dump_all([body], literal_blocks=True)
