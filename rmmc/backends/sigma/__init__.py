"""The Sigma backend: `backend` writes the rule (and its correlation), `detection` the
detection block, `fields`/`values`/`meta`/`output` the field names, values, metadata and YAML."""
