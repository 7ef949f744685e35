"""Filling the Sigma placeholders rmmc writes for external tables: a pySigma processing pipeline.

A Sigma rule rmmc wrote from a KQL rule with `externaldata` feeds names, in its custom attribute
`rmmc_placeholders` (see `placeholders`), what each `%name%` stands for: the URIs, and the
subquery as KQL.  Given the text stored at each URI (fetched by the caller: rmmc never fetches
while it translates), `placeholder_values` parses it as Kusto does (`rmmc.compiler.external`),
runs the subquery with the reference evaluator (its where, distinct, extend ... included) and
takes the column the test reads; `pipeline` writes the pySigma pipeline

    name: rmmc placeholders
    priority: 10
    vars: {<name>: [<value>, ...]}          each value a Sigma plain string: *, ? and \\ escaped
    transformations: [{type: value_placeholders, include: [<name>, ...]}]

Refused (`FillError`) rather than written wrong: a subquery that gives no value (pySigma's
`value_placeholders` takes no empty list, and `x in ()` matches nothing) and one that gives
'' (in KQL it matches an event whose field is missing, read as ''; a Sigma list value cannot
match a missing field).

Known pySigma defect (1.5.1 and 2.0.1, `SigmaString.replace_placeholders`): the strings a
placeholder expands to are plain `SigmaString`s, so `|cased` is lost and the converted query
compares case-insensitively - a KQL `in` then also matches values differing only in case.
`pipeline` says so in `warnings`; `pysigma_pipeline` is the same pipeline as a Python object
whose transformation keeps `|cased` (what the tests and `rmmc verify` use).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from rmmc.backends.sigma.placeholders import ATTRIBUTE
from rmmc.backends.sigma.values import escape_plain

PIPELINE_NAME = "rmmc placeholders"
PRIORITY = 10  # before a backend's own pipelines, which map fields (pySigma runs low first)


class FillError(ValueError):
    """A placeholder whose list cannot be written (the message says which and why)."""


def placeholders_of(documents: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Every placeholder the Sigma documents declare in `rmmc_placeholders`, by name."""
    out: dict[str, dict[str, Any]] = {}
    for doc in documents:
        found = doc.get(ATTRIBUTE) if isinstance(doc, dict) else None
        if isinstance(found, dict):
            for name, spec in found.items():
                if not isinstance(spec, dict) or not isinstance(spec.get("query"), str):
                    raise FillError(f"{ATTRIBUTE}.{name}: no subquery (query) to run")
                out.setdefault(str(name), spec)
    return out


def cased_placeholders(documents: Iterable[Any]) -> set[str]:
    """The placeholders some selection tests with `|expand|cased` (case-sensitive)."""
    found: set[str] = set()

    def visit(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                visit(v, str(k))
        elif isinstance(node, list):
            for item in node:
                visit(item, key)
        elif isinstance(node, str) and "|expand" in key and "|cased" in key \
                and node.startswith("%") and node.endswith("%"):
            found.add(node[1:-1])

    for doc in documents:
        if isinstance(doc, dict):
            visit(doc.get("detection"))
    return found


def placeholder_values(name: str, spec: Mapping[str, Any], stored: Mapping[str, bytes | str] | None,
                       events: list[Any] | None = None) -> list[str]:
    """The values a placeholder stands for: its subquery run by the reference evaluator over
    the rows the feeds' stored text gives (or, with `events`, the rows of an event set whose
    events tagged with a URI are that URI's rows, as `rmmc verify` generates them), the column
    the test reads, each value once."""
    from rmmc.compiler import functions
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.compiler.rows import output_column, run

    missing = [u for u in spec.get("uris") or () if events is None and u not in (stored or {})]
    if missing:
        raise FillError(f"%{name}%: the text of {', '.join(missing)} is not given")
    lowered = lower_text(spec["query"])
    if lowered.rule is None:
        errors = "; ".join(d.message for d in lowered.diagnostics if d.is_error)
        raise FillError(f"%{name}%: its subquery cannot be read: {errors}")
    column = spec.get("column") or output_column(lowered.rule)
    try:
        rows = run(lowered.rule, events or [], external=dict(stored) if stored is not None else None)
    except (ValueError, TypeError) as exc:
        raise FillError(f"%{name}%: the feed cannot be read: {exc}") from None
    values: list[str] = []
    seen: set[str] = set()
    for row in rows:
        value = row.get(column) if column else next(iter(row.values()), None)
        if value is None:
            continue  # a null is in no list (KQL's `in` skips it too)
        text = value if isinstance(value, str) else functions.to_text(value)
        if text not in seen:
            seen.add(text)
            values.append(text)
    if "" in seen:
        raise FillError(f"%{name}%: the feed gives the empty value '', which in KQL matches an event "
                        "whose field is missing (read as ''); a Sigma placeholder list cannot say that")
    if not values:
        raise FillError(f"%{name}%: the subquery gives no value (pySigma's value_placeholders takes no "
                        "empty list; the test would match no event)")
    return values


def pipeline(documents: list[Any], stored: Mapping[str, bytes | str] | None,
             events: list[Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The pySigma pipeline filling every rmmc placeholder of the documents, and warnings
    (the pySigma `|cased` defect, per placeholder that needs it); `events`: see
    `placeholder_values`."""
    specs = placeholders_of(documents)
    if not specs:
        raise FillError(f"no {ATTRIBUTE} in the rule: it uses no rmmc placeholder")
    variables = {name: [escape_plain(v) for v in placeholder_values(name, spec, stored, events)]
                 for name, spec in specs.items()}
    warnings = [f"%{name}% is tested with |cased (KQL `in`): pySigma's value_placeholders drops |cased "
                "from the values it expands (pySigma 1.5.1, 2.0.1), so a pySigma conversion with this "
                "pipeline also matches values differing only in case"
                for name in sorted(cased_placeholders(documents) & set(specs))]
    body = {"name": PIPELINE_NAME, "priority": PRIORITY, "vars": variables,
            "transformations": [{"id": "rmmc_placeholders", "type": "value_placeholders",
                                 "include": list(variables)}]}
    return body, warnings


def pipeline_text(body: Mapping[str, Any]) -> str:
    from rmmc.backends.yaml_text import dump_all

    return dump_all([dict(body)])


def pysigma_pipeline(body: Mapping[str, Any]) -> Any:
    """The pipeline as a pySigma `ProcessingPipeline` whose placeholder transformation keeps
    `|cased` on the values it expands (the module docstring's pySigma defect)."""
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import ValueListPlaceholderTransformation
    from sigma.types import SigmaCasedString, SigmaType

    class CasedValueListPlaceholderTransformation(ValueListPlaceholderTransformation):
        def apply_value(self, field, val):
            out = super().apply_value(field, val)
            if out is not None and isinstance(val, SigmaCasedString):
                return [SigmaCasedString.from_sigma_string(v) for v in out]
            return out

        # pySigma picks the values a transformation sees from `val`'s annotation (evaluated, so
        # not a string: this module's annotations are postponed)
        apply_value.__annotations__ = {"field": object, "val": SigmaType, "return": object}

    item = body["transformations"][0]
    transformation = CasedValueListPlaceholderTransformation(include=list(item.get("include") or []))
    return ProcessingPipeline(name=body["name"], priority=body["priority"], vars=dict(body["vars"]),
                              items=[ProcessingItem(transformation, identifier=item.get("id"))])
