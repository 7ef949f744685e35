"""A Microsoft Sentinel analytic rule in the YAML layout of the Azure-Sentinel repository.

Scheduled (`kind: Scheduled`): `queryFrequency` is the plan's interval and `queryPeriod` its
window (interval + overlap, so `queryPeriod >= queryFrequency`, as the repository's validation
requires), alerts one per result (`eventGroupingSettings`) grouped into incidents by the rule's
group keys (`incidentConfiguration.groupingConfiguration`: the entities those keys map to, the
other keys as custom details).  A hunting package is the repository's hunting-query form (no
schedule).  `entityMappings` come from the columns the query really outputs (`columns`), with the
entity types and identifiers the repository's validation allows: at most 5 entities of at most 3
identifiers, each with one of its required identifiers.
"""

from __future__ import annotations

from datetime import timedelta

from rmmc.backends.base import lossy, note, shape, unsupported
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule
from rmmc.packaging import common
from rmmc.packaging.columns import group_keys, output_columns
from rmmc.packaging.schedule import Plan

_SEVERITY = {"informational": "Informational", "low": "Low", "medium": "Medium", "high": "High",
             "critical": "High"}
_MINUTES = (("d", 86400), ("h", 3600), ("m", 60))
_LONGEST_PERIOD = timedelta(days=14)
_LONGEST_GROUPING = timedelta(days=7)
_MAX_ENTITIES, _MAX_IDENTIFIERS = 5, 3
MAX_QUERY = 10000  # characters of query an analytic rule holds (the repository's validation)
_CONNECTORS = {"SecurityEvent": "SecurityEvents", "WindowsEvent": "WindowsForwardedEvents"}

# (entity type, ((column, identifier), ...)): in order of preference; an entity is mapped when
# one of its columns carrying a required identifier (REQUIRED) is among the output columns.
ENTITIES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Host", (("DeviceName", "FullName"), ("Computer", "FullName"), ("HostName", "HostName"))),
    ("Account", (("AccountUpn", "FullName"), ("UserPrincipalName", "FullName"), ("AccountName", "Name"),
                 ("AccountSid", "Sid"), ("AccountDomain", "NTDomain"))),
    ("Process", (("ProcessCommandLine", "CommandLine"), ("ProcessId", "ProcessId"))),
    ("File", (("FileName", "Name"), ("FolderPath", "Directory"))),
    ("FileHash", (("SHA256", "Value"),)),
    ("FileHash", (("SHA1", "Value"),)),
    ("FileHash", (("MD5", "Value"),)),
    ("IP", (("RemoteIP", "Address"),)),
    ("URL", (("RemoteUrl", "Url"),)),
    ("IP", (("LocalIP", "Address"),)),
    ("IP", (("IpAddress", "Address"),)),
)
REQUIRED = {"Host": {"FullName", "HostName", "NetBiosName", "AzureID", "OMSAgentID"},
            "Account": {"FullName", "Sid", "Name", "AadUserId", "PUID", "ObjectGuid"},
            "Process": {"CommandLine", "ProcessId"}, "File": {"Name"}, "IP": {"Address"},
            "URL": {"Url"}, "FileHash": {"Value"}}
HASH_ALGORITHM = "FileHashAlgorithm"  # the column added for a FileHash entity's algorithm


def package(rule: Rule, query: str, plan: Plan, diagnostics: list[Diagnostic],
            table: str | None = None) -> str:
    from rmmc.backends.yaml_text import dump_all

    level = common.level(rule, "kql", diagnostics)
    if level == "critical":
        diagnostics.append(note("kql", "Sentinel has no critical severity: High"))
    tactics, techniques = attack(rule, diagnostics)
    tables = _tables(rule) or ([table] if table else [])
    table = rule.source.table or table
    body: dict = {
        "id": common.rule_uuid(rule),
        "name": _limited(common.title(rule), 256, "name", diagnostics),
        "description": _limited(common.description(rule), 5000, "description", diagnostics),
        "severity": _SEVERITY[level],
        "requiredDataConnectors": _connectors(tables, defender=bool(_tables(rule))),
    }
    if not plan.hunting:
        period = plan.window
        if period > _LONGEST_PERIOD:  # the schedule's check keeps this from happening
            diagnostics.append(lossy("kql", f"Sentinel looks back at most 14 days, not "
                                            f"{common.duration(period)}: 14d", subject="lookback"))
            period = _LONGEST_PERIOD
        body.update({
            "queryFrequency": common.duration(plan.schedule.interval, _MINUTES),
            "queryPeriod": common.duration(_whole_minutes(period), _MINUTES),
            "triggerOperator": "gt",
            "triggerThreshold": 0,
        })
    body["tactics"] = tactics
    body["relevantTechniques"] = techniques
    body["query"] = query.replace("\r\n", "\n").strip("\n") + "\n"
    mappings = entity_mappings(output_columns(rule, table), diagnostics)
    algorithm = next((f["columnName"] for m in mappings if m["entityType"] == "FileHash"
                      for f in m["fieldMappings"] if f["identifier"] == "Value"), None)
    if algorithm:  # Sentinel reads a hash's algorithm from a column: one is added
        body["query"] = body["query"].rstrip("\n") + f"\n| extend {HASH_ALGORITHM} = '{algorithm}'\n"
        diagnostics.append(note("kql", f"a column {HASH_ALGORITHM} = '{algorithm}' is added to the output "
                                       f"for the FileHash entity (Sentinel reads the algorithm from a column)"))
    if len(body["query"]) > MAX_QUERY:
        diagnostics.append(unsupported("kql", f"the query is {len(body['query']):,} characters and a Sentinel "
                                              f"analytic rule holds at most {MAX_QUERY:,}: not packaged (the "
                                              "query itself can still be written without --package)"))
    if mappings:
        body["entityMappings"] = mappings
    if not plan.hunting:
        body.update(_grouping(rule, mappings, plan, diagnostics))
    body["version"] = "1.0.0"
    if not plan.hunting:
        body["kind"] = "Scheduled"
    diagnostics.append(note("kql", plan.describe()))
    return dump_all([body], literal_blocks=True)


def _tables(rule: Rule) -> list[str]:
    """The Defender / Log Analytics tables a rule reads (its union's branches, its joins')."""
    from rmmc.compiler.ir import sub_rules

    out: list[str] = []
    pending = [rule]
    while pending:
        current = pending.pop(0)
        if current.source.table and current.source.table not in out:
            out.append(current.source.table)
        pending.extend(sub_rules(current))
    return out


def _connectors(tables: list[str], defender: bool) -> list[dict]:
    if defender:
        return [{"connectorId": "MicrosoftThreatProtection", "dataTypes": tables}] if tables else []
    return [{"connectorId": _CONNECTORS[t], "dataTypes": [t]} for t in tables if t in _CONNECTORS]


def _whole_minutes(delta: timedelta) -> timedelta:
    return timedelta(minutes=max(5, -(-int(delta.total_seconds()) // 60)))


def entity_mappings(columns, diagnostics: list[Diagnostic]) -> list[dict]:
    """Sentinel entities for the output columns (at most 5, in `ENTITIES` order)."""
    present = set(columns)
    out: list[dict] = []
    skipped: list[str] = []
    for entity, candidates in ENTITIES:
        fields: list[dict] = []
        used: set[str] = set()
        for column, identifier in candidates:
            if column in present and identifier not in used and len(fields) < _MAX_IDENTIFIERS:
                fields.append({"identifier": identifier, "columnName": column})
                used.add(identifier)
        if not used & REQUIRED[entity]:
            continue
        if entity == "FileHash":
            if any(m["entityType"] == "FileHash" for m in out):
                continue  # one hash (the strongest the output has)
            fields.insert(0, {"identifier": "Algorithm", "columnName": HASH_ALGORITHM})
        if len(out) == _MAX_ENTITIES:
            skipped.append(f"{entity} ({', '.join(f['columnName'] for f in fields)})")
            continue
        out.append({"entityType": entity, "fieldMappings": fields})
    if skipped:
        diagnostics.append(shape("kql", f"Sentinel maps at most {_MAX_ENTITIES} entities: "
                                        f"{'; '.join(skipped)} not mapped"))
    return out


def _grouping(rule: Rule, mappings: list[dict], plan: Plan, diagnostics: list[Diagnostic]) -> dict:
    """One alert per result, grouped into incidents by the rule's group keys: the entities
    those keys are mapped to, the other keys as custom details (Sentinel groups incidents by
    custom details too)."""
    keys = group_keys(rule)
    by_column = {f["columnName"]: m["entityType"] for m in mappings for f in m["fieldMappings"]}
    entities = list(dict.fromkeys(by_column[k] for k in keys if k in by_column)) if keys else \
        list(dict.fromkeys(m["entityType"] for m in mappings))
    custom = {k: k for k in keys if k not in by_column and _custom_key(k)}
    out: dict = {}
    if custom:
        out["customDetails"] = custom
    period = max(plan.lookback or timedelta(0), plan.window)
    if period > _LONGEST_GROUPING:
        diagnostics.append(note("kql", f"Sentinel groups alerts into an incident over at most 7 days, not "
                                       f"{common.duration(period)}: 7d"))
        period = _LONGEST_GROUPING
    out["eventGroupingSettings"] = {"aggregationKind": "AlertPerResult"}
    grouping: dict = {"enabled": True, "reopenClosedIncident": False,
                      "lookbackDuration": iso_duration(_whole_minutes(period))}
    if entities or custom:
        grouping.update({"matchingMethod": "Selected", "groupByEntities": entities,
                         "groupByAlertDetails": [], "groupByCustomDetails": list(custom)})
    else:
        grouping["matchingMethod"] = "AllEntities"
    out["incidentConfiguration"] = {"createIncident": True, "groupingConfiguration": grouping}
    return out


def _limited(text: str, most: int, what: str, diagnostics: list[Diagnostic]) -> str:
    """Sentinel's analytic rules hold a name of at most 256 and a description of at most 5,000
    characters: a longer one is cut (a note)."""
    if len(text) <= most:
        return text
    diagnostics.append(note("kql", f"the {what} is {len(text):,} characters, Sentinel takes {most:,}: cut"))
    return text[:most - 1].rstrip() + "…"


def iso_duration(delta: timedelta) -> str:
    """ISO 8601, as Sentinel writes incident grouping's lookback: `P5D`, `PT5H`, `PT90M`."""
    text = common.duration(delta, _MINUTES)
    number, unit = text[:-1], text[-1]
    return f"P{number}D" if unit == "d" else f"PT{number}{unit.upper()}"


def _custom_key(key: str) -> bool:
    """Sentinel's custom-detail keys and columns: a letter first, then [A-Za-z0-9_]; keys at
    most 20 characters."""
    import re

    return bool(re.fullmatch(r"[a-zA-Z]\w{0,19}", key))


def attack(rule: Rule, diagnostics: list[Diagnostic]) -> tuple[list[str], list[str]]:
    """Tactics as Sentinel spells them (`CommandAndControl`) and the techniques.  Sentinel takes
    ATT&CK v18 tactic names (v19's Stealth and Defense Impairment, split from Defense Evasion,
    are written DefenseEvasion, with a note); its validation wants every technique's tactics
    among the rule's: a tactic ATT&CK files a technique under (`rmmc.compiler.attack.technique`)
    is added when the rule lacks it (a note), and a technique with no tactic at all is left out
    (a warning)."""
    from rmmc.compiler.attack import tactic, technique

    def camel(found) -> str:
        if found.v18 is not None:
            older = tactic(found.v18)
            diagnostics.append(note("kql", f"tactic {found.name} ({found.id}, ATT&CK v19) is written "
                                           f"{older.camel}: Sentinel takes ATT&CK v18 tactic names"))
            found = older
        return found.camel

    out: list[str] = []
    for found in common.tactics(rule, "kql", diagnostics):
        name = camel(found)
        if name not in out:
            out.append(name)
    techniques: list[str] = []
    for tid in common.techniques(rule, "kql", diagnostics):
        known = technique(tid.partition(".")[0])
        for tactic_id in (known[1] if known else ()):
            found = tactic(tactic_id)
            name = found.camel if found.v18 is None else tactic(found.v18).camel
            if name not in out:
                diagnostics.append(note("kql", f"technique {tid} is filed under {name} in ATT&CK, which "
                                               "the rule does not name: added"))
                out.append(name)
        if not out:
            diagnostics.append(shape("kql", f"technique {tid} has no tactic in the rule or in rmmc's "
                                            "ATT&CK data, and Sentinel files techniques under tactics: "
                                            "left out"))
            continue
        techniques.append(tid)
    return out, techniques
