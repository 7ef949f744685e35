"""The KQL front end: `parser` (text -> `ast`, with `errors` and `strings`), `lower` (the
syntax tree -> the detection model) and `printer` (a syntax tree back to KQL text)."""
