"""External tables (KQL `externaldata`) in Sigma: a membership test as a Sigma placeholder.

Sigma's own way to name a list kept outside the rule is a placeholder, `Field|expand: '%name%'`
(the specification's `expand` modifier): a processing pipeline fills it when the rule is
converted (pySigma's `value_placeholders` transformation reads the values from the pipeline's
`vars`).  An environment that declares `external: placeholder` (the built-in `sigma` one does)
gets a test `x in (<subquery over an external table>)` written as

    x|expand|cased: '%rmmc_<slug>_<8 hex>%'        KQL `in` (case-sensitive)
    x|expand: '%rmmc_<slug>_<8 hex>%'              `in~`
    not <that selection>                           `!in`, `!in~`

the name from the feed's first URI (host and last path segment) and a hash of the subquery's
KQL text, so the same subquery always gets the same name.  What each placeholder stands for
travels with the rule as the custom attribute `rmmc_placeholders` (Sigma allows custom
attributes; pySigma keeps them in `SigmaRule.custom_attributes`): its URIs, format, declared
columns, the column the test reads and the subquery as KQL.  `rmmc placeholders` (fill.py)
runs that subquery with the reference evaluator on the fetched feed text and writes the
pipeline.  The translation keeps the rule's meaning provided the pipeline's list holds the
subquery's values: said in a note per placeholder, not as lossy.

Only a test the list says exactly is written: `in` / `in~` (not `has_any`, a term match), on a
plain string field, against a subquery that reads external tables only (its own where,
distinct, extend ... are the evaluator's business, at fill time).  The others are widened as
any other subquery is (lossy); an environment that declares no `external:` kind refuses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from rmmc.backends.base import note, unsupported
from rmmc.compiler import ir
from rmmc.compiler.external import external_tables, reads_only_feeds, shown_uri, uri_slug

TARGET = "sigma"
KIND = "placeholder"
ATTRIBUTE = "rmmc_placeholders"


# the test against the list: `in` itself, or an environment's form of the column
# (environments/adapt.py `feed_entries`: `Hashes` contains `SHA256=<digest>`, `Image` ends with
# `\\<name>`), whose subquery writes the values so
_MODIFIERS = {ir.Op.EQUALS: "", ir.Op.CONTAINS: "|contains", ir.Op.ENDSWITH: "|endswith"}


def is_feed_test(node: Any) -> bool:
    """Whether a condition node is a membership test a placeholder says exactly (module doc)."""
    return (isinstance(node, ir.InSubquery) and node.rule is not None and node.op in _MODIFIERS
            and isinstance(node.field, ir.Field) and node.field.type == "string"
            and reads_only_feeds(node.rule))


def _column(node: ir.InSubquery) -> str | None:
    """The subquery's column the test reads, when its stages name it (else its first column,
    as the evaluator reads it)."""
    from rmmc.compiler.rows import output_column

    return node.column or output_column(node.rule)


def placeholder_name(node: ir.InSubquery) -> str:
    """`rmmc_<slug>_<8 hex of sha256(subquery KQL)>`, the slug from the first URI's host and last
    path segment (`external.uri_slug`; pySigma names may hold any character but `%`)."""
    uri = external_tables(node.rule)[0].uris[0]
    digest = hashlib.sha256(node.query.encode("utf-8")).hexdigest()[:8]
    slug = uri_slug(uri)
    return f"rmmc_{slug}_{digest}"


@dataclass
class Placeholders:
    """The placeholders one Sigma rule uses, in order, with what each stands for."""

    used: dict[str, dict[str, Any]] = field(default_factory=dict)

    def key(self, node: ir.InSubquery, sigma_field: str, options: Any,
            diagnostics: list[Any]) -> tuple[str, str] | None:
        """The selection key and value for a feed test (`is_feed_test`), its note said; None
        (with a located error) when the environment does not say how feeds reach Sigma."""
        if getattr(options, "external", None) != KIND:
            diagnostics.append(unsupported(
                TARGET, f"{node.field.name} in (externaldata ...): this environment does not say how "
                        "external tables reach Sigma; declare `external: placeholder` in it (each feed "
                        "test as a Sigma placeholder, which `rmmc placeholders` fills)", node.span))
            return None
        name = placeholder_name(node)
        tables = external_tables(node.rule)
        uris = [u for t in tables for u in t.uris]
        if name not in self.used:
            first = tables[0]
            column = _column(node)
            self.used[name] = {"uris": uris, "format": first.format,
                               "columns": [f"{c}:{t}" for c, t in first.columns],
                               **({"column": column} if column else {}), "query": node.query}
            shown = ", ".join(shown_uri(t, u) for t in tables for u in t.uris)
            said = f"column {column}" if column else "the first column"
            diagnostics.append(note(
                TARGET, f"placeholder %{name}% stands for the values of {said} of the "
                        f"subquery over {shown} (in the rule's {ATTRIBUTE}); the rule keeps its meaning "
                        "provided the pipeline's list holds them (`rmmc placeholders` writes it)",
                node.span))
        modifiers = _MODIFIERS[node.op] + ("|expand|cased" if node.case_sensitive else "|expand")
        return f"{sigma_field}{modifiers}", f"%{name}%"

    def attribute(self) -> dict[str, dict[str, Any]] | None:
        return dict(self.used) if self.used else None
