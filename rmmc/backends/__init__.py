"""Backends, one module per target, imported only when used (start-up stays light)."""

from __future__ import annotations

from importlib import import_module
from typing import Callable

_BACKENDS: dict[str, tuple[str, str]] = {
    "sigma": ("rmmc.backends.sigma", "emit_sigma"),
    "kql": ("rmmc.backends.kql", "emit_kql"),
}
EXTENSIONS = {"sigma": ".yml", "kql": ".kql"}


def targets() -> list[str]:
    """The targets rmmc can emit."""
    return list(_BACKENDS)


def backend(target: str) -> Callable:
    """The emit function of a target: `emit(rule, options) -> Translation`."""
    try:
        module_name, function = _BACKENDS[target]
    except KeyError:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(_BACKENDS)}") from None
    return getattr(import_module(module_name), function)
