"""A check's outcome, (agree, detail, example event, whether the rule selects it), from what
the source selects and what the engine did: alerting events, or groups that fire.  Shared by
`runner` (one source) and `multi` (several)."""

from __future__ import annotations

from typing import Any


def events_verdict(wanted: list[int], got: list[int], events: list[dict[str, Any]]):
    if got == wanted:
        return True, f"{len(wanted)} alerting", None, None
    diff = sorted(set(got) ^ set(wanted))
    return False, f"{len(diff)} of {len(events)} events differ", events[diff[0]], diff[0] in wanted


def groups_verdict(wanted: set, got: set):
    if got == wanted:
        return True, f"{len(wanted)} groups fire", None, None
    extra, lacking = sorted(got - wanted, key=repr), sorted(wanted - got, key=repr)
    what = (f"fires on the group {extra[0]} the rule does not" if extra
            else f"does not fire on the group {lacking[0]}")
    return False, what, None, None
