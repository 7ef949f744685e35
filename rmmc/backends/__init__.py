"""Backends, one module per target, imported only when used (start-up stays light)."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

_BACKENDS: dict[str, tuple[str, str]] = {
    "sigma": ("rmmc.backends.sigma", "emit_sigma"),
    "kql": ("rmmc.backends.kql", "emit_kql"),
    "esql": ("rmmc.backends.esql", "emit_esql"),
    "eql": ("rmmc.backends.eql", "emit_eql"),
    "splunk": ("rmmc.backends.splunk", "emit_splunk"),
}
EXTENSIONS = {"sigma": ".yml", "kql": ".kql", "esql": ".esql", "splunk": ".spl", "eql": ".eql"}
# Targets that take a field profile (`--fields`); the others use the rule's own columns or
# the Sigma taxonomy by construction.
FIELD_PROFILE_TARGETS = {"esql": "ecs", "eql": "ecs", "splunk": "sigma"}


def targets() -> list[str]:
    """The targets rmmc can emit."""
    return list(_BACKENDS)


def emit(target: str, rule, options, fields: str | None = None):
    """Run one backend; `fields` picks the field profile where the target takes one."""
    function = backend(target)
    if target in FIELD_PROFILE_TARGETS:
        return function(rule, options, fields=fields or FIELD_PROFILE_TARGETS[target])
    return function(rule, options)


def backend(target: str) -> Callable:
    """The emit function of a target: `emit(rule, options) -> Translation`."""
    try:
        module_name, function = _BACKENDS[target]
    except KeyError:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(_BACKENDS)}") from None
    return getattr(import_module(module_name), function)
