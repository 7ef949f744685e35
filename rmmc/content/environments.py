"""Environments for `rmmc build`: a name -> the targets built for it and how each is translated.

This module is the adapter between `rmmc build` and whatever an environment is.  Today rmmc has
field profiles (`--fields sigma|cim|ecs|defender`), not environments, so the built-ins below are
provisional: each is named after the environment it approximates (the names issue 12's
environment files will have) and translates with today's arguments:

| environment    | targets (field profile)          | what it stands for today                       |
| -------------- | -------------------------------- | ---------------------------------------------- |
| defender-xdr   | kql (Defender columns), sigma    | advanced-hunting KQL; Sigma as pySigma's        |
|                |                                  | microsoft_xdr pipeline reads it                 |
| sentinel       | kql, packaged                    | a Sentinel analytic rule over the Device* tables|
| splunk-sysmon  | splunk (sigma profile), packaged | savedsearches.conf with Sysmon field names      |
| splunk-cim     | splunk (cim profile), packaged   | savedsearches.conf with CIM field names         |
| elastic-endpoint | eql, esql (ecs profile), packaged | Elastic detection rules (ndjson), ECS fields  |

`elastic-winlogbeat` is left out: today's `ecs` profile cannot tell it from elastic-endpoint,
and a tree that only pretends to differ would mislead.  When environments land, only
`environment()` and `BuildTarget.arguments()` change: `rmmc build` reads nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BuildTarget:
    """One target an environment builds: its language, the field profile its translator takes
    (None: the target's own names), and whether rules are written packaged (`--package`)."""

    target: str
    fields: str | None = None
    package: bool = False

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of `rmmc.translation.translate_compiled` for this target."""
        return {"to": self.target, "fields": self.fields, "package": self.package}


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    targets: tuple[BuildTarget, ...]

    def fingerprint(self) -> str:
        """What the environment's outputs depend on, as a hash (part of the build cache key)."""
        data = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "targets": [asdict(t) for t in self.targets]}


BUILTIN: dict[str, Environment] = {env.name: env for env in (
    Environment("defender-xdr", "Microsoft Defender XDR advanced hunting (Device* tables); "
                "Sigma with the SigmaHQ taxonomy",
                (BuildTarget("kql"), BuildTarget("sigma"))),
    Environment("sentinel", "Microsoft Sentinel analytic rules over the Defender Device* tables",
                (BuildTarget("kql", package=True),)),
    Environment("splunk-sysmon", "Splunk saved searches, Sysmon field names (today's sigma profile)",
                (BuildTarget("splunk", "sigma", package=True),)),
    Environment("splunk-cim", "Splunk saved searches, CIM field names (today's cim profile)",
                (BuildTarget("splunk", "cim", package=True),)),
    Environment("elastic-endpoint", "Elastic Security detection rules (EQL and ES|QL), ECS fields",
                (BuildTarget("eql", "ecs", package=True), BuildTarget("esql", "ecs", package=True))),
)}


class UnknownEnvironment(ValueError):
    pass


def builtin_names() -> list[str]:
    """The built-in environments, in the order `rmmc build` builds them by default."""
    return list(BUILTIN)


def environment(name: str) -> Environment:
    """The environment called `name`; raises `UnknownEnvironment` saying which exist."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise UnknownEnvironment(f"unknown environment {name!r}; built in: "
                                 + ", ".join(BUILTIN)) from None


def environments(names: list[str] | tuple[str, ...] | None) -> list[Environment]:
    """The environments to build: the named ones in the order given (each once), or every
    built-in one when none is named."""
    if not names:
        return [BUILTIN[n] for n in BUILTIN]
    return [environment(n) for n in dict.fromkeys(names)]
