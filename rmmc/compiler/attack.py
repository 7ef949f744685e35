"""MITRE ATT&CK tactics and technique moves, read from data (`schema/attack.json`).

The data file is generated from the platform reference (`python -m rmmc.environments.build`,
from `reference/attack/`): the Enterprise tactics of ATT&CK v19 (Stealth keeps TA0005, Defense
Impairment is TA0112) together with the v18 name Defense Evasion, and the techniques that moved
between v18 and v19.  Rules name tactics in many spellings (`CommandAndControl`, `Command and
Control`, `command-and-control`, `TA0011`); `tactic()` reads them all, v18 and v19 names alike.

rmmc keeps a technique id as the rule gives it (a v18 id is still an ATT&CK id: MITRE keeps
revoked ids with a link to their successor); `moved()` says where v19 put it, for a note.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from rmmc.resources import package_text

__all__ = ["Tactic", "ICS_TACTICS", "moved", "tactic", "tactics", "technique", "technique_id"]

# ATT&CK for ICS tactics Sigma rules may tag (not in the Enterprise reference): accepted as Sigma
# tags only, never given to a platform that expects Enterprise tactics.
ICS_TACTICS = frozenset({"evasion", "inhibit-response-function", "impair-process-control"})
_TECHNIQUE = re.compile(r"^T(\d{4})(?:\.(\d{3}))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Tactic:
    """One Enterprise tactic as named in one ATT&CK version: `until` is the last version that
    used this name (None: current); `v18` is the v18 shortname of the tactic it was split
    from or renamed from (for platforms that still take v18 names)."""

    shortname: str
    id: str
    name: str
    until: str | None = None
    v18: str | None = None

    @property
    def camel(self) -> str:
        """`CommandAndControl`: how Sentinel and Defender spell a tactic."""
        return "".join(w.capitalize() for w in self.name.replace("-", " ").split())

    @property
    def reference(self) -> str:
        return f"https://attack.mitre.org/tactics/{self.id}/"


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@cache
def _data() -> dict:
    return json.loads(package_text("rmmc.compiler.schema", "attack.json"))


@cache
def tactics() -> tuple[Tactic, ...]:
    """Every Enterprise tactic name the data knows, v19 names first, then retired names."""
    return tuple(Tactic(t["shortname"], t["id"], t["name"], t.get("until"), t.get("v18"))
                 for t in _data()["tactics"])


@cache
def _by_key() -> dict[str, Tactic]:
    out: dict[str, Tactic] = {}
    for t in tactics():
        for key in (t.shortname, t.name):
            out.setdefault(_key(key), t)
    for t in tactics():  # an id names the current (v19) tactic
        out.setdefault(_key(t.id), t)
    return out


def tactic(name: str) -> Tactic | None:
    """The tactic a rule names (any spelling, v18 or v19 name, or its id), else None."""
    return _by_key().get(_key(name)) if name and name.strip() else None


def technique_id(text: str) -> str | None:
    """`T1059.001` (upper-cased) when the text is an ATT&CK technique id, else None."""
    match = _TECHNIQUE.match(text.strip()) if text else None
    return match.group(0).upper() if match else None


def moved(technique: str) -> tuple[str, str] | None:
    """(v19 id, v19 name) when ATT&CK v19 moved this v18 technique, else None."""
    entry = _data()["moved"].get(technique.strip().upper())
    return (entry["id"], entry["name"]) if entry else None


def technique(technique_id: str) -> tuple[str, tuple[str, ...]] | None:
    """(name, tactic ids) of an ATT&CK technique or sub-technique the data names (the
    techniques of Elastic's reference rules), else None: rmmc then knows only its id."""
    entry = _data().get("techniques", {}).get(technique_id.strip().upper())
    return (entry["name"], tuple(entry["tactics"])) if entry else None
