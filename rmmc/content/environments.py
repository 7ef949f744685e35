"""Environments for `rmmc build`: a name (or an environment file) -> the targets built for it.

The environments are `rmmc.environments`' (one YAML file each: names, value conventions, where
the data lives, the schema).  `rmmc build` adds only what a build needs: which targets each
environment yields and whether they are written packaged (`--package`):

| environment        | targets       | written                                        |
| ------------------ | ------------- | ---------------------------------------------- |
| defender-xdr       | kql           | advanced-hunting queries (.kql)                |
| sentinel           | kql           | Sentinel analytic rules (YAML)                 |
| sigma              | sigma         | Sigma rules (a correlation in its own file)    |
| splunk-sysmon      | splunk        | savedsearches.conf stanzas, Sysmon names       |
| splunk-cim         | splunk        | savedsearches.conf stanzas, CIM data model     |
| splunk-defender    | splunk        | savedsearches.conf stanzas, Defender tables    |
| elastic-endpoint   | eql, esql     | Elastic detection rules (ndjson), Endpoint ECS |
| elastic-winlogbeat | eql, esql     | Elastic detection rules (ndjson), Winlogbeat   |

A file path names a user's own environment file (its bytes are part of the cache key).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BuildTarget:
    """One target an environment builds: its language, the environment it is translated in
    (a built-in's name or a file path), and whether rules are written packaged (`--package`)."""

    target: str
    env: str
    package: bool = False
    schedule: str | None = None  # `--schedule` (None: the environment's)

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of `rmmc.translation.translate_compiled` for this target."""
        out = {"to": self.target, "env": self.env, "package": self.package}
        if self.schedule is not None and self.package:
            out["schedule"] = self.schedule
        return out


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    targets: tuple[BuildTarget, ...]
    content: str = ""  # a user file's text (the built-ins change with rmmc's version)

    def fingerprint(self) -> str:
        """What the environment's outputs depend on, as a hash (part of the build cache key)."""
        data = json.dumps({**self.to_json(), "content": self.content}, sort_keys=True)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "targets": [{k: v for k, v in asdict(t).items() if k != "schedule" or v is not None}
                            for t in self.targets]}


_TARGETS = {"kql": ("kql",), "sigma": ("sigma",), "splunk": ("splunk",), "elastic": ("eql", "esql")}
_UNPACKAGED = {"defender-xdr", "sigma"}  # hunting queries and Sigma rules are their own format


class UnknownEnvironment(ValueError):
    pass


def builtin_names() -> list[str]:
    """The built-in environments, in the order `rmmc build` builds them by default."""
    from rmmc.environments import BUILTINS

    return list(BUILTINS)


def environment(name: str, schedule: str | None = None) -> Environment:
    """The environment called `name` (a built-in, or an environment file's path); raises
    `UnknownEnvironment` saying which exist, or what is wrong with the file."""
    import os

    from rmmc.environments import BUILTINS, EnvironmentError, load_environment

    try:
        loaded = load_environment(name)
    except EnvironmentError as exc:
        if name not in BUILTINS and not os.path.isfile(name):
            raise UnknownEnvironment(f"unknown environment {name!r}; built in: "
                                     + ", ".join(BUILTINS) + " (or an environment file's path)") from None
        raise UnknownEnvironment(str(exc)) from None
    content = ""
    if not loaded.builtin:
        with open(name, encoding="utf-8") as handle:
            content = handle.read()
    package = loaded.name not in _UNPACKAGED or not loaded.builtin
    package = package and loaded.target != "sigma"
    schedule = schedule if package else None
    targets = tuple(BuildTarget(t, name, package, schedule)
                    for t in _TARGETS.get(loaded.target, (loaded.target,)))
    return Environment(loaded.name, loaded.description, targets, content)


def environments(names: list[str] | tuple[str, ...] | None,
                 schedule: str | None = None) -> list[Environment]:
    """The environments to build: the named ones in the order given (each once), or every
    built-in one when none is named; `schedule` for their packages (None: each one's own)."""
    return [environment(n, schedule) for n in dict.fromkeys(names or builtin_names())]
