"""A Splunk `savedsearches.conf` stanza.

Multi-line values continue with a trailing backslash; single-line values have line breaks folded
and trailing backslashes removed, and the stanza name loses `[`, `]` and line breaks, so no
value can open a stanza.  A scheduled package runs on the cron of its interval over
`interval + overlap` and suppresses repeated alerts of one group (`alert.suppress.fields`: the
rule's summarize keys) for the hunting lookback; a hunting package is a report (not scheduled,
no alert settings) over the rule's own window.
"""

from __future__ import annotations

import re
from datetime import timedelta

from rmmc.backends.base import note, unsupported
from rmmc.compiler.diagnostics import Diagnostic
from rmmc.compiler.ir import Rule
from rmmc.environments.model import cron
from rmmc.packaging import common
from rmmc.packaging.columns import group_keys
from rmmc.packaging.schedule import Plan

_SEVERITY = {"informational": 2, "low": 3, "medium": 4, "high": 5, "critical": 6}


def conf_line(value: str) -> str:
    """A value that must stay on its line: breaks folded, no trailing backslash."""
    folded = " ".join(value.split())
    return folded.rstrip("\\").rstrip()


def conf_multiline(value: str, diagnostics: list[Diagnostic]) -> str:
    """A value over several lines: every line but the last ends with a backslash, which
    .conf files read as "the value goes on".  A line that would end with a backslash of its
    own gets a trailing space so it does not join the next setting."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")
    if lines[-1].endswith("\\"):
        diagnostics.append(note("splunk", "the query ends with a backslash: a space was added after it"))
        lines[-1] += " "
    return "\\\n".join(lines)


def _cron(plan: Plan, diagnostics: list[Diagnostic]) -> str:
    text = cron(plan.schedule.interval)
    if text is None:  # a Schedule made without parse_schedule's check
        diagnostics.append(unsupported("splunk", f"cron cannot run every {plan.schedule.interval}: "
                                                 "not packaged"))
        return ""
    return text


def package(rule: Rule, query: str, plan: Plan, diagnostics: list[Diagnostic],
            entities: tuple[str, ...] = ()) -> str:
    level = common.level(rule, "splunk", diagnostics)
    name = conf_line(re.sub(r"[\[\]]", "", common.title(rule))) or f"rmmc rule {common.rule_uuid(rule)}"
    settings = [
        ("description", conf_line(common.description(rule))),
        ("search", conf_multiline(query, diagnostics)),
        ("dispatch.earliest_time", f"-{common.duration(plan.window)}"),
        ("dispatch.latest_time", "now"),
    ]
    if plan.hunting:
        settings += [("enableSched", "0")]
    else:
        settings += [
            ("cron_schedule", _cron(plan, diagnostics)),
            ("enableSched", "1"),
            ("alert.track", "1"),
            ("alert.severity", str(_SEVERITY[level])),
            ("counttype", "number of events"),
            ("relation", "greater than"),
            ("quantity", "0"),
        ]
        # by the summarize keys for the hunting lookback; a rule returning events by its host
        # and user fields for a run's window (the overlap's events alert once)
        keys, period = group_keys(rule), max(plan.lookback or timedelta(0), plan.window)
        if not keys:
            keys, period = entities, plan.window
        if keys:
            settings += [
                ("alert.digest_mode", "0"),  # one alert per result: suppression by field needs it
                ("alert.suppress", "1"),
                ("alert.suppress.fields", ",".join(conf_line(k) for k in keys)),
                ("alert.suppress.period", common.duration(period)),
            ]
    diagnostics.append(note("splunk", plan.describe()))
    comment = "# rmmc: " + conf_line(plan.describe())
    return f"[{name}]\n{comment}\n" + "".join(f"{key} = {value}\n" for key, value in settings)


# ------------------------------------------------------------------ lookups (external tables)

LOOKUPS_SUFFIX = ".lookups.json"
TRANSFORMS_SUFFIX = ".transforms.conf"


def lookup_manifest(rule: Rule) -> list[dict]:
    """The lookups a Splunk translation of `rule` reads: per URI its file, the URI, the format,
    the columns (name, type) and ignoreFirstRecord: what `rmmc lookups fetch` needs to write it."""
    from rmmc.backends.splunk.lookups import lookup_file
    from rmmc.compiler.external import external_tables, term_tested_tables

    entries: list[dict] = []
    tested = term_tested_tables(rule)
    for table in external_tables(rule):
        for terms in (False, True) if table in tested else (False,):
            for uri in table.uris:
                entry = {"file": lookup_file(uri, terms), "uri": uri, "format": table.format,
                         "format_given": table.format_given, "ignoreFirstRecord": table.ignore_first_record,
                         "columns": [{"name": n, "type": t} for n, t in table.columns]}
                if terms:  # `has_any (feed)`: each string value's term pattern beside it
                    entry["terms"] = True
                if entry not in entries:
                    entries.append(entry)
    return entries


def transforms_text(entries: list[dict]) -> str:
    """One `transforms.conf` lookup definition per lookup file (case-sensitive matching, as
    KQL's `in` and `==`)."""
    out = []
    for entry in entries:
        out.append(f"[{entry['file'][:-len('.csv')]}]\n"
                   f"# rmmc: the rows of {conf_line(entry['uri'])} ({entry['format']}"
                   f"{', first record skipped' if entry['ignoreFirstRecord'] else ''}); "
                   "rmmc lookups fetch writes the file\n"
                   f"filename = {entry['file']}\n"
                   "case_sensitive_match = true\n")
    return "\n".join(out)


def lookup_companions(rule: Rule) -> tuple[tuple[str, str], ...]:
    """The files a Splunk package needs beside its stanza when it reads lookups: the lookup
    definitions (`<rule>.transforms.conf`) and their manifest (`<rule>.lookups.json`)."""
    import json

    entries = lookup_manifest(rule)
    if not entries:
        return ()
    manifest = json.dumps({"lookups": entries}, indent=2, sort_keys=True) + "\n"
    return ((TRANSFORMS_SUFFIX, transforms_text(entries)), (LOOKUPS_SUFFIX, manifest))
