"""rmmc: a detection-rule compiler (KQL hunting rules to Sigma, SPL, EQL and back)."""

__version__ = "0.1.0"
