"""Backends, one module per target, imported only when used (start-up stays light)."""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Callable

_BACKENDS: dict[str, tuple[str, str]] = {
    "sigma": ("rmmc.backends.sigma.backend", "emit_sigma"),
    "kql": ("rmmc.backends.kql", "emit_kql"),
    "esql": ("rmmc.backends.esql.backend", "emit_esql"),
    "eql": ("rmmc.backends.eql", "emit_eql"),
    "splunk": ("rmmc.backends.splunk.backend", "emit_splunk"),
}
EXTENSIONS = {"sigma": ".yml", "kql": ".kql", "esql": ".esql", "splunk": ".spl", "eql": ".eql"}
# Targets that take a field profile (`--fields`); the others use the rule's own columns or
# the Sigma taxonomy by construction.
FIELD_PROFILE_TARGETS = {"esql": "ecs", "eql": "ecs", "splunk": "sigma"}


def targets() -> list[str]:
    """The targets rmmc can emit."""
    return list(_BACKENDS)


def emit(target: str, rule, options, fields: str | None = None):
    """Run one backend; `fields` picks the field profile where the target takes one.  A rule
    using a construct over several tables (or one that multiplies rows) that the backend does
    not declare it handles (its module's `HANDLES`) is refused here, located at its first use."""
    function = backend(target)
    refused = _unhandled(target, rule)
    if refused is not None:
        return refused
    if target in FIELD_PROFILE_TARGETS:
        return function(rule, options, fields=fields or FIELD_PROFILE_TARGETS[target])
    return function(rule, options)


_WHAT = {"union": "union (rows of several sources)", "join": "join (correlating the rows of two sources)",
         "subquery": "a subquery against another source (`in (T | ...)`)",
         "mv-expand": "mv-expand (one row per element of an array)",
         "parse": "parse (columns extracted at query time)"}


@functools.cache
def _ir():
    """The IR module, imported on first use (the registry loads no compiler module), then kept:
    `_unhandled` runs for every rule, and an import statement in a function asks the import
    system again each time."""
    from rmmc.compiler import ir

    return ir


def _handles_all(module) -> bool:
    """Whether a backend module declares every construct `features` can find (`HANDLES`):
    then no rule is refused for one, and the rule need not be walked to find them."""
    return _ir().FEATURES <= getattr(module, "HANDLES", frozenset())


def _unhandled(target: str, rule):
    module = _LOADED.get(target)
    if module is not None and _handles_all(module):  # (the SPL and KQL writers: every rule)
        return None
    used = _ir().features(rule)
    if not used:
        return None
    from rmmc.backends.base import Translation, unsupported
    from rmmc.compiler.ir import SUBQUERY

    module = _module(target)
    handles = getattr(module, "HANDLES", frozenset())
    why = getattr(module, "WHY_NOT", {})  # the backend's reason, where it says one
    # a subquery a backend does not handle keeps its older meaning there (widened, reported)
    missing = [(name, span) for name, span in used.items() if name not in handles and name != SUBQUERY]
    if not missing:
        return None
    return Translation(target, "", tuple(
        unsupported(target, f"{_WHAT.get(name, name)} is not translated to {target}"
                            + (f": {why[name]}" if name in why else ""), span)
        for name, span in missing))


_LOADED: dict[str, object] = {}
"""Each target's backend module once imported (a batch asks for it once per rule); its emit
function is still read from it each time (what the module holds now)."""


def backend(target: str) -> Callable:
    """The emit function of a target: `emit(rule, options) -> Translation`."""
    try:
        name = _BACKENDS[target][1]
    except KeyError:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(_BACKENDS)}") from None
    return getattr(_module(target), name)


def _module(target: str):
    """The backend module of a known `target`, imported on first use and kept in `_LOADED`."""
    module = _LOADED.get(target)
    if module is None:
        module = _LOADED[target] = import_module(_BACKENDS[target][0])
    return module
