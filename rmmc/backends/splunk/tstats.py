"""`--splunk-form tstats`: a summarizing rule over a CIM data model as `| tstats`, which reads
the data model's summaries (accelerated tsidx) instead of the raw events, as Splunk's own
detections do (reference/splunk/detections/detect_remote_access_software_usage_*.yml):

    | tstats summariesonly=false fillnull_value="" count min(_time) as firstTime
        max(_time) as lastTime [values(f) as rmmc_v1] from datamodel=Endpoint.Processes
        where earliest=-5d latest=now <search terms> by <group keys> [<tested fields>]
    [| where <exact tests>
     | stats sum(count) as Count min(firstTime) as FirstSeen ... by <group keys>]
    | `drop_dm_object_name(Processes)`

The where clause of tstats takes search terms only (the base-search terms and index prefilter
of the raw form, `splunk._terms`).  When the detection also needs eval tests (`match()` for
`has`), tstats groups by the tested fields as well, the exact `| where` runs over those groups
(a test on a group is the test on each of its events: the tested fields are its keys), and a
`stats` folds the groups into the rule's: counts add up, min of mins, max of maxes, values of
values.  `fillnull_value=""` puts a missing key or tested field under '' (KQL reads a missing
string so; the raw form's `fillnull`).

Exact only where every field the rule reads is a field of the data model's dataset
(`<Dataset>.<field>` after the environment's names), every tested field is a string, and the
rule is the detection then one `summarize` of count() / min(Timestamp) / max(Timestamp) /
make_set(field) by fields; anything else is refused with the reason, located at what is not
possible.  `drop_dm_object_name` names the columns without the dataset prefix: a `shape` note.
"""

from __future__ import annotations

from typing import Any

from rmmc.backends.base import EmitOptions, shape
from rmmc.backends.splunk.expr import SplRefusal
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Field, Op, Rule, Summarize, features, walk_predicates
from rmmc.compiler.paths import with_paths
from rmmc.compiler.pushdown import push_filters

_TIME = ("Timestamp", "TimeGenerated")


def build_tstats(rule: Rule, options: EmitOptions, fields: str, found: list[Diagnostic]) -> list[str]:
    """The lines of the tstats form (raises SplRefusal saying why a rule has none)."""
    from rmmc.backends.splunk import backend as raw

    datamodel = getattr(options.placement, "datamodel", None)
    if datamodel is None:
        raise SplRefusal("--splunk-form tstats reads a CIM data model: use an environment that places "
                         "the rule's events in one (--env splunk-cim)", rule.metadata.source_span)
    if features(rule):
        raise SplRefusal(f"--splunk-form tstats reads one data model dataset; this rule uses "
                         f"{', '.join(sorted(features(rule)))}", rule.metadata.source_span)
    model, dataset = raw._DATAMODEL.match(datamodel).groups()
    rule = push_filters(rule)
    rule, _ = with_paths(rule)
    summarize = _one_summarize(rule)
    emitter = raw._make_emitter(rule, fields, options, None, found)
    search_terms, where_terms = raw._terms(emitter, rule, options, found)
    head = raw._head([rule.lookback], None, found, quiet=True)

    def model_field(column: str, span: Any) -> str:
        name = emitter.field(column, span)
        if not name.startswith(dataset + "."):
            raise SplRefusal(f"{column} is not a field of the data model dataset {datamodel} (written "
                             f"{name}): tstats reads only the model's fields", span)
        return name

    tested: list[str] = []
    for p in walk_predicates(rule.condition):
        if not isinstance(p.field, Field):
            raise SplRefusal("a test on an expression has no tstats form (tstats reads fields)", p.span)
        name = model_field(p.field.name, p.span)
        if where_terms and p.field.type != "string" and (p.negated or p.op is not Op.EQUALS):
            raise SplRefusal(f"{p.field.name} ({p.field.type}) is tested after tstats, where a missing "
                             "value reads '' (fillnull_value): only string fields and == on other fields "
                             "keep KQL's meaning there", p.span)
        if name not in tested:
            tested.append(name)
    keys: list[str] = []
    for key, expr in summarize.group_by:
        if not isinstance(expr, Field) or key != expr.name:
            raise SplRefusal(f"group key {key}: tstats groups by fields as they are", summarize.span)
        keys.append(model_field(expr.name, summarize.span))
    by = keys + ([t for t in tested if t not in keys] if where_terms else [])
    first, second = ["count"], []
    for agg in summarize.aggregates:
        name = agg.name
        if agg.function == "count" and not agg.args:
            second.append(f"sum(count) as {name}" if where_terms else None)
            if not where_terms:
                first[0] = f"count as {name}"
        elif agg.function in ("min", "max") and agg.field is not None and \
                (agg.field in _TIME or emitter.field(agg.field) == "_time"):
            inner = "firstTime" if agg.function == "min" else "lastTime"
            first.append(f"{agg.function}(_time) as {inner if where_terms else name}")
            second.append(f"{agg.function}({inner}) as {name}")
        elif agg.function == "make_set" and agg.field is not None and len(agg.args) == 1:
            column = model_field(agg.field, summarize.span)
            inner = f"rmmc_v{len(first)}"
            first.append(f"values({column}) as {inner if where_terms else name}")
            second.append(f"values({inner}) as {name}")
        else:
            raise SplRefusal(f"{name} = {agg.function}(...): --splunk-form tstats writes count(), "
                             "min/max(Timestamp) and make_set(field)", summarize.span)
    if not by:
        raise SplRefusal("tstats needs group keys here (the rule summarizes without any)", summarize.span)
    where = " ".join(head + search_terms)
    lines = [f"| tstats summariesonly=false fillnull_value=\"\" {' '.join(first)} from datamodel={datamodel}"
             + (f" where {where}" if where else "") + f" by {' '.join(by)}"]
    if where_terms:
        lines.append("| where " + " AND ".join(where_terms))
        lines.append("| stats " + " ".join(s for s in second if s) + f" by {' '.join(keys)}")
    lines.append(f"| `drop_dm_object_name({dataset})`")
    found[:0] = emitter.diagnostics
    found.append(shape("splunk", f"tstats over {model}.{dataset}: the columns are named without the "
                                 f"'{dataset}.' prefix (drop_dm_object_name), as in Splunk's detections"))
    return lines


def _one_summarize(rule: Rule) -> Summarize:
    stages = rule.stages
    if len(stages) != 1 or not isinstance(stages[0], Summarize):
        span = getattr(stages[0], "span", None) if stages else rule.metadata.source_span
        raise SplRefusal("--splunk-form tstats writes a detection followed by one summarize (tstats "
                         "returns groups, not events)", span)
    return stages[0]
