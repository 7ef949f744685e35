"""Sigma in: rmmc's own reader of Sigma YAML into the detection model (see `reader`).

The reader (and the detection model under it) is imported when first asked for: the other
modules of this package (`yaml_tree`, the YAML reader every rule document goes through) are
also used by `rmmc check` on KQL rules, which never needs it."""

__all__ = ["SigmaRule", "read_sigma_rules", "read_sigma_text"]


def __getattr__(name: str):
    if name in __all__:
        from rmmc.compiler.sigma import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
