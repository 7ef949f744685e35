"""The field sets environments are checked against, reduced from the platforms' published data
(see `rmmc.environments.build`).  Every set is a map field name -> type (`string`, `long`,
`ip`, ... as the source says it, lower-cased; `object` for a name that stands for every field
under it, e.g. Elastic's `winlog`).

* `ecs`: ECS 9.2 (`reference/elastic/ecs_flat-9.2.0.json.gz`), multi-fields included;
* `elastic:<index pattern>`: the non-ECS fields Elastic's own rules read per index pattern
  (`reference/elastic/non-ecs-schema.json`);
* `splunk:<data source>`: the fields a Splunk add-on extracts for one source
  (`reference/splunk/data_sources/*.yml`: Sysmon EventID N, Windows Security N, PowerShell
  4104, ...), keyed by the file's stem (`sysmon_eventid_1`);
* `cim:<Model>.<Dataset>`: CIM data-model fields, written with the dataset prefix as the
  `datamodel` command returns them (`Processes.process_name`): the fields the add-on extracts
  for the events each dataset takes from it (lower-case names of those sources; which Sysmon
  event feeds which dataset is the CIM add-on's assignment, `_CIM_SOURCES`), the data-source
  files' own CIM `field_mappings`, and the fields Splunk's detections read from the dataset;
* `log_analytics:<table>`: the columns of a Log Analytics (Microsoft Sentinel) table, from the
  installed `pysigma-backend-kusto` (`azuremonitor/tables.py`, `sentinelasim/tables.py`), in
  their own file (`build_log_analytics`).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

# Which Splunk Add-on for Sysmon sources populate which CIM dataset (Splunk CIM add-on docs).
_CIM_SOURCES = {
    "Endpoint.Processes": ["sysmon_eventid_1"],
    "Endpoint.Filesystem": ["sysmon_eventid_11", "sysmon_eventid_23"],
    "Endpoint.Registry": ["sysmon_eventid_12", "sysmon_eventid_13"],
    "Network_Traffic.All_Traffic": ["sysmon_eventid_3"],
    "Network_Resolution.DNS": ["sysmon_eventid_22"],
}
# Splunk's own per-event fields, not CIM fields of a dataset.
_SPLUNK_INTERNAL = re.compile(r"^(date_\w+|punct|linecount|splunk_server|timeendpos|timestartpos|"
                              r"eventtype|tag|tag::\w+|index|source|sourcetype|host|id)$")
_TYPES = {"bigint": "long", "double": "real", "datetime": "datetime", "bool": "bool",
          "boolean": "bool", "guid": "guid", "enumerated": "string", "int": "int", "long": "long",
          "real": "real", "string": "string", "dynamic": "dynamic"}


def _ecs(reference: Path) -> dict[str, str]:
    with gzip.open(reference / "elastic" / "ecs_flat-9.2.0.json.gz", "rt", encoding="utf-8") as handle:
        flat = json.load(handle)
    out = {}
    for name, body in flat.items():
        out[name] = str(body.get("type", "keyword")).lower()
        for multi in body.get("multi_fields") or ():
            out[multi["flat_name"]] = str(multi.get("type", "keyword")).lower()
    return out


def _non_ecs(reference: Path) -> dict[str, dict[str, str]]:
    raw = json.loads((reference / "elastic" / "non-ecs-schema.json").read_text(encoding="utf-8"))
    out = {}
    for pattern, fields in raw.items():
        flat: dict[str, str] = {}
        stack = list(fields.items()) if isinstance(fields, dict) else [(str(f), "keyword") for f in fields]
        while stack:
            name, kind = stack.pop()
            if isinstance(kind, dict):  # an object: its own name stands for all of it, then its fields
                flat[name] = "object"
                stack.extend((f"{name}.{k}", v) for k, v in kind.items())
            else:
                flat[name] = str(kind).lower()
        out[pattern] = dict(sorted(flat.items()))
    return out


def _splunk(reference: Path) -> tuple[dict[str, dict[str, str]], dict[str, dict]]:
    import yaml

    sets, meta = {}, {}
    for path in sorted((reference / "splunk" / "data_sources").glob("*.yml")):
        body = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        fields = [str(f) for f in body.get("fields") or ()]
        if not fields:
            continue
        sets[path.stem] = {f: "string" for f in fields}
        meta[path.stem] = {"name": str(body.get("name", path.stem)),
                           "source": str(body.get("source", "")),
                           "sourcetype": str(body.get("sourcetype", "")),
                           "cim": {str(m.get("data_set")): sorted({str(v) for v in m["mapping"].values()})
                                   for m in body.get("field_mappings") or ()
                                   if m.get("data_model") == "cim" and m.get("data_set")}}
    return sets, meta


def _cim(reference: Path, splunk: dict[str, dict[str, str]], meta: dict[str, dict]) -> dict[str, dict[str, str]]:
    read_by_detections: dict[str, set[str]] = {}
    for path in sorted((reference / "splunk" / "detections").glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        for dataset, field in re.findall(r"\b(Processes|Filesystem|Registry|All_Traffic|DNS)\.([a-z_]+)\b", text):
            read_by_detections.setdefault(dataset, set()).add(field)
    out = {}
    for dataset, sources in _CIM_SOURCES.items():
        node = dataset.split(".")[1]
        names = {"_time"}
        for source in sources:
            names.update(f"{node}.{f}" for f in splunk.get(source, {})
                         if f[:1].islower() and not _SPLUNK_INTERNAL.match(f))
        for source in meta.values():
            names.update(source["cim"].get(dataset, ()))
        names.update(f"{node}.{f}" for f in read_by_detections.get(node, ()))
        out[dataset] = {n: "string" for n in sorted(names)}
    return out


def build_log_analytics() -> dict[str, Any]:
    """Every Log Analytics table pysigma-backend-kusto lists (and the ASIM schemas): what a
    Sentinel query may read.  Kept apart from `fields.json` (it is large) and read only when an
    environment names a `log_analytics` set."""
    from sigma.pipelines.azuremonitor.tables import AZURE_MONITOR_TABLES
    from sigma.pipelines.sentinelasim.tables import SENTINEL_ASIM_TABLES

    out = {}
    for name, columns in sorted(AZURE_MONITOR_TABLES.items()):
        out[name] = {c.strip(): _TYPES.get(str(b["data_type"]).lower(), "string") for c, b in columns.items()}
    for name, columns in SENTINEL_ASIM_TABLES.items():
        if name.startswith("im") or name.startswith("_Im"):
            out[name] = {c.strip(): _TYPES.get(str(b["data_type"]).lower(), "string") for c, b in columns.items()}
    return {"_source": "generated by rmmc.environments.build from pysigma-backend-kusto's "
                       "azuremonitor/tables.py and sentinelasim/tables.py", "tables": out}


def build_fields(reference: Path) -> dict[str, Any]:
    splunk, meta = _splunk(reference)
    sets: dict[str, dict[str, str]] = {"ecs": _ecs(reference)}
    sets.update({f"elastic:{k}": v for k, v in _non_ecs(reference).items()})
    sets.update({f"splunk:{k}": v for k, v in splunk.items()})
    sets.update({f"cim:{k}": v for k, v in _cim(reference, splunk, meta).items()})
    return {"_source": "generated by rmmc.environments.build from reference/elastic, "
                       "reference/splunk and pysigma-backend-kusto's Log Analytics tables",
            "splunk_sources": {k: {"name": v["name"], "source": v["source"], "sourcetype": v["sourcetype"]}
                               for k, v in meta.items()},
            "sets": sets}
