"""rmmc: a detection-rule compiler (KQL and Sigma rules to Sigma, KQL, SPL, EQL, ES|QL, meaning kept).

The library surface; every name is imported on first use so that `import rmmc` stays light:

- `parse_kql(text) -> Query` (raises `KqlSyntaxError`), `to_kql(node) -> str`
- `lower_text(text) -> Lowered` (the detection model, `rmmc.compiler.ir`), `lower_query(query)`
- `matches(rule, event)`, the reference evaluator
- `translate(text, to="sigma", loose=False, apply_exclusions=False) -> TranslationResult`
- `read_path(path)`, `read_text(text)`: rule documents; `check_paths(paths)`: `rmmc check`
- `read_sigma_rules(text) -> [(Rule | None, diagnostics)]`: Sigma YAML into the detection model
- `verify_rule(rule, targets)`, `verify_paths(paths, targets)`: `rmmc verify`
- `build(rules_dir, outdir, envs) -> BuildResult`: `rmmc build` (manifest, cache, `check=True`)
- `diff(old, new, paths) -> DiffResult`: `rmmc diff`, what rule changes do to detection
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "parse_kql": "rmmc.compiler.kql.parser",
    "KqlSyntaxError": "rmmc.compiler.kql.parser",
    "to_kql": "rmmc.compiler.kql.printer",
    "lower_text": "rmmc.compiler.kql.lower",
    "lower_query": "rmmc.compiler.kql.lower",
    "matches": "rmmc.compiler.evaluator",
    "evaluate": "rmmc.compiler.evaluator",
    "translate": "rmmc.translation",
    "TranslationResult": "rmmc.translation",
    "read_path": "rmmc.compiler.documents",
    "read_text": "rmmc.compiler.documents",
    "check_paths": "rmmc.compiler.check",
    "read_sigma_rules": "rmmc.compiler.sigma",
    "verify_rule": "rmmc.verify.runner",
    "verify_paths": "rmmc.verify.runner",
    "build": "rmmc.content.build",
    "diff": "rmmc.content.diff",
    "Diagnostic": "rmmc.compiler.diagnostics",
    "Severity": "rmmc.compiler.diagnostics",
    "Span": "rmmc.compiler.diagnostics",
    "RmmcError": "rmmc.compiler.diagnostics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rmmc' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
