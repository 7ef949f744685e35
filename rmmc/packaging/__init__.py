"""Rule packaging: a translated query wrapped in a ready-to-import rule for its platform.

`package(rule, target, query_text)` returns (file suffix, text, diagnostics):

* eql / esql -> an Elastic Security detection rule, one JSON object on one line (`.ndjson`,
  the format of Kibana's rule import): `rmmc.packaging.elastic`;
* splunk -> a `savedsearches.conf` stanza (`.conf`): `rmmc.packaging.splunk`;
* kql -> a Microsoft Sentinel analytic rule in the YAML layout of the Azure-Sentinel
  repository (`.yaml`): `rmmc.packaging.sentinel`;
* sigma -> the translation already is a complete rule: returned unchanged.

How each package runs is its `Plan` (`rmmc.packaging.schedule`): every `interval` over
`interval + overlap` (the environment's `schedule:` or `--schedule`; 5m + 1m by default), or a
hunting query over the rule's own window when its meaning needs that window.  Translation
(`rmmc.translation`) plans first and writes the query over the planned window; a caller that
packages a query it translated itself gets the plan of the rule as it is.

A rule without a level is packaged as medium (as the Sigma backend does).
"""

from __future__ import annotations

from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule
from rmmc.packaging.schedule import Plan, plan, scheduled_rule

__all__ = ["SUFFIXES", "Plan", "package", "plan", "scheduled_rule"]

SUFFIXES = {"eql": ".eql.ndjson", "esql": ".esql.ndjson", "splunk": ".conf", "kql": ".yaml",
            "sigma": ".yml"}


def package(rule: Rule, target: str, query_text: str, index: str | None = None,
            plan_: Plan | None = None, table: str | None = None,
            entities: tuple[str, ...] = ()) -> tuple[str, str, list[Diagnostic]]:
    """The translated `query_text` of `rule` as an importable rule file for `target`; `index`
    is the environment's index pattern (Elastic; default `logs-*`), `table` the table its
    events are in when the rule names none (Sentinel), `plan_` how it runs (default: the plan
    of `rule` under the default schedule), `entities` the fields holding its host and user
    (`columns.entity_fields`: Splunk and Elastic suppress a rule returning events by them)."""
    target = target.lower()
    if target == "sigma":
        return SUFFIXES["sigma"], query_text, []
    chosen = plan_ or plan(rule)
    diagnostics: list[Diagnostic] = []
    if target in ("eql", "esql"):
        from rmmc.packaging import elastic

        text = elastic.package(rule, target, query_text, chosen, diagnostics, index, entities)
    elif target == "splunk":
        from rmmc.packaging import splunk

        text = splunk.package(rule, query_text, chosen, diagnostics, entities)
    elif target == "kql":
        from rmmc.packaging import sentinel

        text = sentinel.package(rule, query_text, chosen, diagnostics, table)
    else:
        raise ValueError(f"no rule packaging for target {target!r}")
    return SUFFIXES[target], text, diagnostics
