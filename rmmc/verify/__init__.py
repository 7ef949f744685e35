"""Verification: does each translation select the events its source selects?

`verify_rule` / `verify_paths` (in `runner`) generate events around a rule's values
(`events`), run each translation on its target's engine (`engines`) and give a verdict per
target.  Imported lazily: the CLI registers `rmmc verify` without loading any of it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RuleVerdict", "STATUSES", "TargetVerdict", "verify_paths", "verify_rule"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rmmc.verify import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'rmmc.verify' has no attribute {name!r}")
