"""Sigma in: rmmc's own reader of Sigma YAML into the detection model (see `reader`)."""

from rmmc.compiler.sigma.reader import SigmaRule, read_sigma_rules, read_sigma_text

__all__ = ["SigmaRule", "read_sigma_rules", "read_sigma_text"]
