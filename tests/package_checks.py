"""Checks a platform applies to an imported rule package, written from the platforms' own rules.

* Sentinel: the analytic-rule checks of the Azure-Sentinel repository's
  `.script/tests/detectionTemplateSchemaValidation` (ScheduledTemplateInternalModel and its
  validation attributes): required keys, severity and trigger enums, `queryFrequency` and
  `queryPeriod` between 5 minutes and 14 days with `queryPeriod >= queryFrequency`, the
  entity types and identifiers allowed (EntityMappingIdentifiers: at most 5 entities of 1-3
  unique identifiers, one of the type's required identifier sets, column names
  `^[a-zA-Z_]+\\w*$`), custom details, event grouping kinds, tactics (the AttackTactic enum)
  and every technique's tactic among the rule's (NoTechniquesWithoutMatchingTactics; the
  technique -> tactic table here is rmmc's ATT&CK data, which knows fewer techniques than the
  repository's table: an unknown technique only needs a tactic).
* Elastic: Kibana's rule API JSON schemas (reference/elastic/api_schemas), by `jsonschema`.
* Splunk: `savedsearches.conf` syntax (stanza headers, `key = value` settings, values continued
  with a trailing backslash, no setting twice, nothing outside a stanza).
* Every format: a package not marked hunting looks back no more than interval + overlap, in
  its settings and in its query text.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

SENTINEL_TACTICS = {"Reconnaissance", "ResourceDevelopment", "InitialAccess", "Execution", "Persistence",
                    "PrivilegeEscalation", "DefenseEvasion", "CredentialAccess", "Discovery",
                    "LateralMovement", "Collection", "Exfiltration", "CommandAndControl", "Impact",
                    "PreAttack", "ImpairProcessControl", "InhibitResponseFunction"}
SENTINEL_IDENTIFIERS = {  # EntityMappingIdentifiers.cs: (identifiers, required combinations)
    "Account": ({"Name", "FullName", "NTDomain", "DnsDomain", "UPNSuffix", "Sid", "AadTenantId",
                 "AadUserId", "PUID", "IsDomainJoined", "DisplayName", "ObjectGuid"},
                [{"FullName"}, {"Sid"}, {"Name"}, {"AadUserId"}, {"PUID"}, {"ObjectGuid"}]),
    "File": ({"Directory", "Name"}, [{"Name"}]),
    "FileHash": ({"Algorithm", "Value"}, [{"Algorithm", "Value"}]),
    "Host": ({"DnsDomain", "NTDomain", "HostName", "FullName", "NetBiosName", "AzureID", "OMSAgentID",
              "OSFamily", "OSVersion", "IsDomainJoined"},
             [{"FullName"}, {"HostName"}, {"NetBiosName"}, {"AzureID"}, {"OMSAgentID"}]),
    "IP": ({"Address"}, [{"Address"}]),
    "Process": ({"ProcessId", "CommandLine", "ElevationToken", "CreationTimeUtc"},
                [{"CommandLine"}, {"ProcessId"}]),
    "URL": ({"Url"}, [{"Url"}]),
    "DNS": ({"DomainName"}, [{"DomainName"}]),
    "RegistryKey": ({"Hive", "Key"}, [{"Key"}, {"Hive"}]),
    "RegistryValue": ({"Name", "Value", "ValueType"}, [{"Name"}]),
}
_COLUMN = re.compile(r"^[a-zA-Z_]+\w*$")


def duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    assert match, f"not a duration: {text!r}"
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def iso_duration(text: str) -> timedelta:
    """An ISO 8601 duration of days, hours or minutes (`P5D`, `PT5H`, `PT45M`)."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", str(text))
    assert match and any(match.groups()), f"not an ISO 8601 duration: {text!r}"
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


# ------------------------------------------------------------------ Sentinel


def sentinel_problems(body: dict) -> list[str]:
    """What the Azure-Sentinel repository's validation rejects in a scheduled analytic rule or
    a hunting query (a package without `kind` and schedule)."""
    from rmmc.compiler.attack import tactic, technique

    out: list[str] = []
    scheduled = body.get("kind") == "Scheduled"
    required = ["id", "name", "description", "requiredDataConnectors", "query", "tactics",
                "relevantTechniques"] + (["severity", "queryFrequency", "queryPeriod", "triggerOperator",
                                          "triggerThreshold"] if scheduled else [])
    out += [f"missing {key}" for key in required if key not in body]
    if out:
        return out
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", body["id"]):
        out.append(f"id {body['id']!r} is not a GUID")
    if not 1 <= len(body["name"]) <= 256 or not 1 <= len(body["description"]) <= 5000:
        out.append("name longer than 256 or description longer than 5000 characters")
    if not 1 <= len(body["query"]) <= 10000:
        out.append(f"query length {len(body['query'])} outside 1..10000")
    if body.get("severity") not in ("Informational", "Low", "Medium", "High"):
        out.append(f"severity {body.get('severity')!r}")
    if scheduled:
        frequency, period = duration(body["queryFrequency"]), duration(body["queryPeriod"])
        for key, value in (("queryFrequency", frequency), ("queryPeriod", period)):
            if not timedelta(minutes=5) <= value <= timedelta(days=14):
                out.append(f"{key} {body[key]} outside 5m..14d")
        if period < frequency:
            out.append("queryPeriod < queryFrequency")
        if body["triggerOperator"] not in ("gt", "lt", "eq", "ne", "GreaterThan", "LessThan", "Equal",
                                           "NotEqual"):
            out.append(f"triggerOperator {body['triggerOperator']!r}")
        if not 0 <= body["triggerThreshold"] <= 10000:
            out.append("triggerThreshold outside 0..10000")
    tactics = body["tactics"]
    out += [f"tactic {t!r} is not a Sentinel tactic" for t in tactics if t not in SENTINEL_TACTICS]
    for tid in body["relevantTechniques"]:
        if not re.fullmatch(r"T\d{4}(\.\d{3})?", tid):
            out.append(f"technique {tid!r} is not T####(.###)")
            continue
        known = technique(tid.split(".")[0])
        wanted = {(tactic(t).camel if tactic(t).v18 is None else tactic(tactic(t).v18).camel)
                  for t in (known[1] if known else ())}
        if not tactics or not wanted <= set(tactics):
            out.append(f"no tactic of technique {tid} ({', '.join(sorted(wanted)) or 'any'}) in {tactics}")
    mappings = body.get("entityMappings")
    if mappings is not None:
        if not 1 <= len(mappings) <= 5:
            out.append(f"{len(mappings)} entity mappings (1..5)")
        for mapping in mappings:
            kind = mapping.get("entityType")
            if kind not in SENTINEL_IDENTIFIERS:
                out.append(f"entity type {kind!r}")
                continue
            allowed, combos = SENTINEL_IDENTIFIERS[kind]
            fields = mapping.get("fieldMappings") or []
            if not 1 <= len(fields) <= 3:
                out.append(f"{kind}: {len(fields)} field mappings (1..3)")
            used = [f.get("identifier") for f in fields]
            out += [f"{kind}: identifier {i!r}" for i in used if i not in allowed]
            if len(set(used)) != len(used):
                out.append(f"{kind}: an identifier twice")
            out += [f"{kind}: column {f.get('columnName')!r}" for f in fields
                    if not _COLUMN.match(str(f.get("columnName")))]
            if not any(c <= set(used) for c in combos):
                out.append(f"{kind}: none of the required identifiers")
    custom = body.get("customDetails")
    if custom is not None:
        if len(custom) > 20:
            out.append("more than 20 custom details")
        for key, value in custom.items():
            if not re.fullmatch(r"[a-zA-Z]+\w*", key) or len(key) > 20 or not _COLUMN.match(value):
                out.append(f"custom detail {key!r}: {value!r}")
    grouping = body.get("eventGroupingSettings")
    if grouping is not None and grouping.get("aggregationKind") not in ("SingleAlert", "AlertPerResult"):
        out.append(f"aggregationKind {grouping.get('aggregationKind')!r}")
    incident = (body.get("incidentConfiguration") or {}).get("groupingConfiguration")
    if incident is not None:
        if incident.get("matchingMethod") not in ("AllEntities", "AnyAlert", "Selected"):
            out.append(f"matchingMethod {incident.get('matchingMethod')!r}")
        if not timedelta(minutes=5) <= iso_duration(incident["lookbackDuration"]) <= timedelta(days=7):
            out.append(f"grouping lookbackDuration {incident['lookbackDuration']} outside 5m..7d")
        mapped = {m["entityType"] for m in mappings or ()}
        out += [f"groups by unmapped entity {e}" for e in incident.get("groupByEntities", ()) if e not in mapped]
        out += [f"groups by unknown custom detail {c}" for c in incident.get("groupByCustomDetails", ())
                if c not in (custom or {})]
    return out


def kql_output_has(query: str, column: str, table_columns) -> bool:
    """Whether a KQL query's output has `column`, read from the text: after its last
    `summarize` / `project` the column must be named there; without one, the table has it."""
    stages = re.split(r"\n\s*\|", query)
    for stage in reversed(stages):
        head = stage.strip().split(None, 1)[0] if stage.strip() else ""
        if head in ("summarize", "project", "distinct"):
            return re.search(rf"(?<![\w.]){re.escape(column)}(?![\w])", stage) is not None
        if head in ("extend", "project-rename") and re.search(rf"(?<![\w.]){re.escape(column)}\s*=", stage):
            return True
        if head == "project-away" and re.search(rf"(?<![\w.]){re.escape(column)}(?![\w])", stage):
            return False
    return column in table_columns


# ------------------------------------------------------------------ Elastic


def elastic_validator(reference: Path, target: str):
    """A `jsonschema` validator of Kibana's rule API schema for `target` (eql, esql)."""
    import jsonschema

    schema = json.loads((reference / "elastic" / "api_schemas" / f"{target}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def elastic_problems(validator, body: dict) -> list[str]:
    out = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
           for e in validator.iter_errors(body)]
    for entry in body.get("threat", []):
        for technique in entry.get("technique", []):
            for item in (technique, *technique.get("subtechnique", [])):
                if re.fullmatch(r"T\d{4}(\.\d{3})?", str(item.get("name"))):
                    out.append(f"technique {item['id']} named by its id")
            for sub in technique.get("subtechnique", []):
                if sub["id"].split(".")[0] != technique["id"]:
                    out.append(f"sub-technique {sub['id']} under {technique['id']}")
    return out


# ------------------------------------------------------------------ Splunk


def parse_conf_strict(text: str) -> dict[str, dict[str, str]]:
    """`savedsearches.conf` as Splunk reads it, failing on anything it would misread: a line
    is blank, a `#` comment, a `[stanza]` header (no `]` inside the name) or `key = value`; a
    value ending in a backslash goes on on the next line; a key appears once per stanza."""
    stanzas: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            assert line.endswith("]") and line.count("]") == 1 and line.count("[") == 1, line
            name = line[1:-1]
            assert name.strip() and name not in stanzas, name
            current = stanzas[name] = {}
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.]+) = (.*)", line)
        assert current is not None and match, f"not a setting: {line!r}"
        key, value = match.groups()
        while value.endswith("\\"):
            assert i < len(lines), "a continued value at the end of the file"
            value = value[:-1] + "\n" + lines[i]
            i += 1
        assert key not in current, f"{key} set twice"
        current[key] = value
    return stanzas


# ------------------------------------------------------------------ lookback


_QUERY_WINDOWS = (
    (re.compile(r"\bago\((\d+)([smhd])\)"), None),                              # KQL
    (re.compile(r"\bearliest=-(\d+)([smhd])\b"), None),                          # SPL
    (re.compile(r"NOW\(\) - (\d+) (second|minute|hour|day)s?"), {"second": "s", "minute": "m",
                                                                  "hour": "h", "day": "d"}),  # ES|QL
)


def query_windows(query: str) -> list[timedelta]:
    """Every lookback a query's own text states."""
    out = []
    for pattern, units in _QUERY_WINDOWS:
        for number, unit in pattern.findall(query):
            out.append(duration(f"{number}{units[unit] if units else unit}"))
    return out


def package_window(target: str, text: str) -> tuple[bool, list[timedelta]]:
    """(hunting?, every lookback the package states: its settings and its query)."""
    if target == "kql":
        import yaml

        body = yaml.safe_load(text)
        hunting = body.get("kind") != "Scheduled"
        windows = [] if hunting else [duration(body["queryPeriod"])]
        return hunting, windows + query_windows(body["query"])
    if target == "splunk":
        [settings] = parse_conf_strict(text).values()
        hunting = settings.get("enableSched") != "1"
        return hunting, [duration(settings["dispatch.earliest_time"].lstrip("-"))] + \
            query_windows(settings["search"])
    body = json.loads(text)
    hunting = "Hunting" in body.get("tags", [])
    return hunting, [duration(body["from"].removeprefix("now-"))] + query_windows(body["query"])
