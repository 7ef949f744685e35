"""The Sigma backend: an IR rule as a Sigma rule (YAML), with its meaning kept.

`emit_sigma(rule, options)` writes one YAML stream: the Sigma rule, then, when the rule
aggregates, a Sigma correlation rule (`event_count`, see `sigma_output`) that refers to it by
`name`.  The detection is exact (`sigma_detection`); whatever cannot be said exactly is a
`lossy` or `unsupported` diagnostic, and a rule with any `unsupported` part yields no text.

Exclusions (false-positive scenarios).  By default they travel as `falsepositives` text and
are not applied, as in the KQL rule.  They are deliberately not written as Sigma filter
documents in the same stream: pySigma applies every filter it finds beside a rule when it
loads the collection, which would change what the rule selects.  `emit_sigma_filters` writes
the understood ones as separate Sigma filter documents (`filter: {rules: [<rule id>], ...}`,
for a filter file / sigma-cli `--filter`); `options.apply_exclusions` ANDs them into the
detection as `and not filter_<name>`.

A membership test against another table (`in (T | ...)`, IR `InSubquery`) is widened away
(`rmmc.backends.widen`) and reported `lossy`: the Sigma rule then matches a superset.

A rule whose condition is constant is refused: Sigma has no exact "every event" (or "no
event") detection; `|exists` on some field would not be exact.

YAML is written only with PyYAML's safe dumper (`yaml_text.dump_all`, never by string
building), so no value can break out of its scalar, and line-break characters YAML readers
fold (NEL, U+2028, U+2029) are written as escapes.
"""

from __future__ import annotations

import re
from typing import Any

from rmmc.backends.base import EmitOptions, Translation, note, refuse_expression_tests, unsupported
from rmmc.compiler.pushdown import push_filters
from rmmc.backends.sigma_detection import (ConditionLowerer, Lowered, Namer, compact, render,
                                           s_and, widening_diagnostics)
from rmmc.backends.sigma_fields import TARGET, FieldMapper
from rmmc.backends.sigma_meta import MetaBuilder
from rmmc.backends.sigma_output import plan_output
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Exclusion, Not, Rule

__all__ = ["emit_sigma", "emit_sigma_filters"]


def emit_sigma(rule: Rule, options: EmitOptions = EmitOptions(), *, schema: Any = None) -> Translation:
    """The rule as a Sigma YAML stream (rule, then its correlation when it aggregates).

    `schema` is a `rmmc.compiler.schema.Schema` (default: `load_schema()`).  A rule on Defender
    columns is first put into the `sigma` environment (`in_sigma`): Sigma's names and Sysmon's
    value conventions, the inverse of how the Sigma reader reads them."""
    rule, found = in_sigma(rule)
    if any(d.is_error for d in found):
        return Translation(TARGET, "", tuple(found))
    translation = _emit_sigma(rule, options, schema)
    return Translation(TARGET, translation.text, (*found, *translation.diagnostics))


def in_sigma(rule: Rule) -> tuple[Rule, list[Diagnostic]]:
    """A rule on a Defender table's columns in the `sigma` environment (`rmmc.environments`);
    a rule already in Sigma's names is returned as it is."""
    if rule.source.taxonomy == "sigma" or rule.source.table is None:
        return rule, []
    from rmmc.environments import default_environment
    from rmmc.environments.adapt import adapt

    adapted = adapt(rule, default_environment("sigma"))
    return (adapted.rule if adapted.rule is not None else rule), list(adapted.diagnostics)


def _emit_sigma(rule: Rule, options: EmitOptions, schema: Any) -> Translation:
    rule = push_filters(rule)  # Sigma says the detection: every filter that can move, moves
    refused = refuse_expression_tests(rule.condition, TARGET, "Sigma")
    if refused:
        return Translation(TARGET, "", tuple(refused))
    ctx = _Context(rule, options, schema)
    detection = ctx.detection(apply_exclusions=options.apply_exclusions)
    plan = plan_output(rule, ctx.fields)
    ctx.diagnostics.extend(plan.diagnostics)
    ctx.exclusion_notes(options.apply_exclusions)
    if detection is None or any(d.is_error for d in ctx.all_diagnostics()):
        return Translation(TARGET, "", tuple(ctx.all_diagnostics()))

    meta = ctx.meta
    base: dict[str, Any] = {"title": meta.title, "id": meta.rule_id()}
    name = _slug(meta.title) or "rule_" + meta.rule_id().split("-")[0]
    if plan.correlation is not None:
        base["name"] = name
    base.update(ctx.header())
    base["logsource"] = ctx.logsource
    base["detection"] = detection
    if plan.fields:
        base["fields"] = plan.fields
    falsepositives = ctx.falsepositives()
    if falsepositives:
        base["falsepositives"] = falsepositives
    base["level"] = meta.level()
    documents = [base]

    if plan.correlation is not None:
        correlation = dict(plan.correlation, rules=[name])
        keys = ", ".join(correlation.get("group-by", [])) or "no group key"
        corr: dict[str, Any] = {
            "title": f"{meta.title} (event count)",
            "id": meta.derived_id("correlation"),
            "status": base["status"],
            "description": (f"Groups ({keys}) with at least one event of rule '{name}' within "
                            f"{correlation['timespan']}: the KQL rule's summarize."),
        }
        for key in ("references", "author", "date", "modified", "tags"):
            if key in base:
                corr[key] = base[key]
        corr["correlation"] = correlation
        if falsepositives:
            corr["falsepositives"] = falsepositives
        corr["level"] = base["level"]
        documents.append(corr)
    return Translation(TARGET, _dump(documents), tuple(ctx.all_diagnostics()))


def emit_sigma_filters(rule: Rule, options: EmitOptions = EmitOptions(), *,
                       schema: Any = None) -> Translation:
    """The rule's understood exclusions as Sigma filter documents referring to the rule's id
    (for a separate filter file: loaded beside the rule, pySigma applies them)."""
    rule, found = in_sigma(rule)
    if any(d.is_error for d in found):
        return Translation(TARGET, "", tuple(found))
    ctx = _Context(rule, options, schema)
    meta = ctx.meta
    documents = []
    for slug, exclusion in ctx.exclusion_slugs():
        if exclusion.condition is None:
            ctx.diagnostics.append(note(TARGET, f"exclusion {exclusion.name!r} is free text: no filter"))
            continue
        namer = Namer()
        expr = ctx.lower_exclusion(exclusion, slug, namer)
        if expr is True:
            ctx.diagnostics.append(note(TARGET, f"exclusion {exclusion.name!r} excludes no event: no filter"))
            continue
        if expr is False:
            ctx.diagnostics.append(unsupported(
                TARGET, f"exclusion {exclusion.name!r} excludes every event: a Sigma filter needs a detection",
                exclusion.span))
            continue
        body: dict[str, Any] = {"rules": [meta.rule_id()], **namer.selections,
                                "condition": render(expr, namer)}
        doc: dict[str, Any] = {
            "title": f"{meta.title}: exclude {exclusion.name}",
            "id": meta.derived_id(f"filter:{slug}"),
            "status": meta.status(),
            "description": exclusion.description or exclusion.text or exclusion.name,
            **{k: v for k, v in (("date", meta.date()), ("modified", meta.modified())) if v is not None},
            "logsource": ctx.logsource,
            "filter": body,
        }
        documents.append(doc)
    ctx.diagnostics.extend(widening_diagnostics_all(ctx))
    if any(d.is_error for d in ctx.all_diagnostics()) or not documents:
        return Translation(TARGET, "", tuple(ctx.all_diagnostics()))
    return Translation(TARGET, _dump(documents), tuple(ctx.all_diagnostics()))


# ------------------------------------------------------------------ shared state of one rule


class _Context:
    """One rule's table schema, field map, lowering and diagnostics."""

    def __init__(self, rule: Rule, options: EmitOptions, schema: Any) -> None:
        self.rule = rule
        self.options = options
        self.diagnostics: list[Diagnostic] = []
        table = _table_schema(rule, schema)
        self.fields = FieldMapper(rule.source.table, table, rule.source.taxonomy)
        self.lowerer = ConditionLowerer(self.fields, options, self.diagnostics)
        self.meta = MetaBuilder(rule)
        self.logsource = self.meta.logsource(table)
        self._lowered: list[Lowered] = []

    def all_diagnostics(self) -> list[Diagnostic]:
        self.fields.finish()
        return [*self.meta.diagnostics, *self.diagnostics, *self.fields.diagnostics]

    def header(self) -> dict[str, Any]:
        m, meta = self.rule.metadata, self.meta
        out: dict[str, Any] = {"status": meta.status(), "description": meta.description()}
        references = meta.references()
        if references:
            out["references"] = references
        if m.author and m.author.strip():
            out["author"] = m.author.strip()
        for key, value in (("date", meta.date()), ("modified", meta.modified())):
            if value is not None:
                out[key] = value
        tags = meta.tags()
        if tags:
            out["tags"] = tags
        return out

    def exclusion_slugs(self) -> list[tuple[str, Exclusion]]:
        out, used = [], set()
        for i, exclusion in enumerate(self.rule.exclusions, 1):
            slug = _slug(exclusion.name)[:40].strip("_") or str(i)
            while slug in used:
                slug = f"{slug}_{i}"
            used.add(slug)
            out.append((slug, exclusion))
        return out

    def lower_exclusion(self, exclusion: Exclusion, slug: str, namer: Namer) -> Lowered:
        expr = compact(self.lowerer.lower_widened(Not(exclusion.condition)))
        namer.name_all(expr, f"filter_{slug}")
        self._lowered.append(expr)
        return expr

    def detection(self, apply_exclusions: bool) -> dict[str, Any] | None:
        """The `detection:` map, or None (with an `unsupported` diagnostic) when refused."""
        namer = Namer()
        base = compact(self.lowerer.lower_widened(self.rule.condition))
        namer.name_all(base, "selection")
        self._lowered.append(base)
        parts = [base]
        if apply_exclusions:
            for slug, exclusion in self.exclusion_slugs():
                if exclusion.condition is not None:
                    parts.append(self.lower_exclusion(exclusion, slug, namer))
        whole = s_and(parts)
        self.diagnostics.extend(widening_diagnostics_all(self))
        if base is True and whole is True:
            self.diagnostics.append(unsupported(
                TARGET, "the rule matches every event of its table: a Sigma rule needs a detection "
                        "(an |exists test would not be exact)"))
            return None
        if whole is False:
            self.diagnostics.append(unsupported(
                TARGET, "the rule matches no event (its condition is always false): nothing to detect"))
            return None
        if whole is True:  # base True, every exclusion excluded nothing
            self.diagnostics.append(unsupported(
                TARGET, "the rule matches every event of its table: a Sigma rule needs a detection"))
            return None
        return {**namer.selections, "condition": render(whole, namer)}

    def exclusion_notes(self, applied: bool) -> None:
        understood = [e for e in self.rule.exclusions if e.condition is not None]
        free = [e for e in self.rule.exclusions if e.condition is None]
        if applied:
            for e in free:
                self.diagnostics.append(note(TARGET, f"exclusion {e.name!r} is free text: listed under "
                                                     "falsepositives, not applied", e.span))
        elif understood:
            self.diagnostics.append(note(
                TARGET, f"{len(understood)} exclusion(s) are listed under falsepositives and not "
                        "applied, as in the KQL rule (apply_exclusions ANDs them into the detection; "
                        "emit_sigma_filters writes them as Sigma filter documents)"))

    def falsepositives(self) -> list[str]:
        """metadata.false_positives, each scenario that is an exclusion's name (or description)
        replaced by the exclusion's fuller line; other exclusions appended."""
        out = [fp.strip() for fp in self.rule.metadata.false_positives if fp and fp.strip()]
        for e in self.rule.exclusions:
            line = e.name
            if e.description:
                line += f": {e.description}"
            if e.text:
                line += f" (exclusion: {e.text})"
            same = [i for i, fp in enumerate(out) if fp in (e.name.strip(), (e.description or "").strip())]
            if same:
                out[same[0]] = line
            elif line not in out:
                out.append(line)
        return out


def widening_diagnostics_all(ctx: _Context) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for expr in ctx._lowered:
        out.extend(widening_diagnostics(expr))
    ctx._lowered.clear()
    return out


def _table_schema(rule: Rule, schema: Any) -> Any | None:
    if rule.source.table is None:
        return None
    if schema is None:
        from rmmc.compiler.schema import load_schema

        schema = load_schema()
    return schema.table(rule.source.table)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:80]


def _dump(documents: list[dict[str, Any]]) -> str:
    from rmmc.backends.yaml_text import dump_all

    return dump_all(documents)

