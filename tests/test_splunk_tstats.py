"""`--splunk-form tstats` (rmmc/backends/splunk/tstats.py): the text for a process and a network
rule over splunk-cim (checked by hand against Splunk's detections in
../shared/reference/splunk/detections/), the located refusals, and the meaning: the query run
by a small tstats model (Splunk's documented tstats: group the events the where clause keeps by
the by-fields, a missing by-field read as `fillnull_value`; then the SPL after it, the where by
tests/spl_interp.py) gives the evaluator's groups and counts on events that vary case, missing
fields and term boundaries.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.compiler.documents import read_text
from rmmc.compiler.pipeline import compile_document
from rmmc.translation import translate_compiled

from spl_interp import SearchParser, WhereParser, tokens

PROCESS = """DeviceProcessEvents
| where Timestamp > ago(5d)
| where FileName in~ ('AnyDesk.exe', 'rustdesk.exe') and ProcessCommandLine has 'connect'
| summarize FirstSeen=min(Timestamp), LastSeen=max(Timestamp), Count=count() by DeviceName, FileName
"""

NETWORK = """DeviceNetworkEvents
| where Timestamp > ago(1d)
| where RemotePort in (5938, 7070) and InitiatingProcessFileName in~ ('teamviewer.exe', 'anydesk.exe')
| summarize Count=count(), Ports=make_set(RemotePort) by DeviceName, RemoteIP
"""

PROCESS_SPL = '''| tstats summariesonly=false fillnull_value="" count min(_time) as firstTime max(_time) as lastTime from datamodel=Endpoint.Processes where earliest=-5d latest=now Processes.process_name IN ("AnyDesk.exe", "rustdesk.exe") Processes.process="*connect*" by Processes.dest Processes.process_name Processes.process
| where match(coalesce('Processes.process', ""), "(?i)(^|[^0-9A-Za-z])connect($|[^0-9A-Za-z])")
| stats min(firstTime) as FirstSeen max(lastTime) as LastSeen sum(count) as Count by Processes.dest Processes.process_name
| `drop_dm_object_name(Processes)`
'''

NETWORK_SPL = '''| tstats summariesonly=false fillnull_value="" count values(All_Traffic.dest_port) as rmmc_v1 from datamodel=Network_Traffic.All_Traffic where earliest=-1d latest=now All_Traffic.app IN ("teamviewer.exe", "anydesk.exe") by All_Traffic.dvc All_Traffic.dest_ip All_Traffic.dest_port All_Traffic.app
| where (isnotnull('All_Traffic.dest_port') AND ('All_Traffic.dest_port'==5938 OR 'All_Traffic.dest_port'==7070))
| stats sum(count) as Count values(rmmc_v1) as Ports by All_Traffic.dvc All_Traffic.dest_ip
| `drop_dm_object_name(All_Traffic)`
'''


def compiled(text: str):
    return compile_document(read_text(text, "<t>.kql").documents[0])


def tstats(text: str, env: str = "splunk-cim", **kw):
    options = EmitOptions(splunk_form="tstats", **kw)
    return translate_compiled(compiled(text), "splunk", options, env=env)


def test_process_and_network_rules():
    t = tstats(PROCESS)
    assert t.text == PROCESS_SPL, t.text
    assert any("drop_dm_object_name" in d.message and d.code == "shape" for d in t.diagnostics)
    assert tstats(NETWORK).text == NETWORK_SPL


@pytest.mark.parametrize("text, env, why", [
    (PROCESS, "splunk-sysmon", "use an environment that places the rule's events in one"),
    (PROCESS.replace("Count=count()", "Count=dcount(FileName)"), "splunk-cim", "tstats writes count()"),
    (PROCESS + "| sort by Count desc\n", "splunk-cim", "one summarize"),
    ("DeviceProcessEvents | where FileName =~ 'a.exe'", "splunk-cim", "tstats returns groups"),
    (NETWORK.replace("RemotePort in (5938, 7070)", "RemotePort > 5000"), "splunk-cim",
     "only string fields and == on other fields"),
])
def test_refusals_say_why(text, env, why):
    t = tstats(text, env=env)
    assert not t.text
    errors = [d for d in t.diagnostics if d.is_error]
    assert errors and why in errors[0].message, [d.message for d in errors]
    assert errors[0].span is not None


def test_a_field_outside_the_model_is_refused():
    text = PROCESS.replace("by DeviceName, FileName", "by DeviceName, FileName, ReportId")
    assert not tstats(text).text  # ReportId, a group key CIM has not: the environment refuses it first
    t = tstats(text, allow_lossy=True)  # ... or, asked, groups without it and says so
    assert "ReportId" not in t.text and "by Processes.dest Processes.process_name" in t.text
    assert any(d.code == "lossy" and "ReportId" in d.message for d in t.diagnostics)
    t = translate_compiled(compiled(text), "splunk", EmitOptions(splunk_form="tstats"), env="splunk-cim",
                           allow_unknown_fields=True)
    assert not t.text
    assert any("is not a field of the data model dataset Endpoint.Processes" in d.message
               for d in t.diagnostics if d.is_error)


# ------------------------------------------------------------------ meaning


def run_tstats(spl: str, events: list[dict]) -> list[dict]:
    """Splunk's tstats as documented, then the where and stats rmmc writes after it."""
    lines = spl.strip().split("\n")
    head = re.fullmatch(r'\| tstats summariesonly=false fillnull_value="" (.*?) from datamodel=\S+'
                        r'(?: where (.*))? by (.*)', lines[0])
    funcs, where, by = head.group(1), head.group(2) or "*", head.group(3).split()
    aggs = re.findall(r'(count|min|max|values)(?:\(([^)]*)\))?(?: as (\w+))?', funcs)

    def fold(rows, keys, aggs):
        groups: dict = {}
        for row in rows:
            groups.setdefault(tuple(row.get(k) if row.get(k) is not None else "" for k in keys), []).append(row)
        out = []
        for key, members in groups.items():
            result = dict(zip(keys, key))
            for func, arg, name in aggs:
                name = name or func
                if func == "count":
                    result[name] = len(members)
                elif func == "sum":
                    result[name] = sum(m[arg] for m in members)
                elif func in ("min", "max"):
                    result[name] = (min if func == "min" else max)(m[arg] for m in members)
                else:
                    vals = set()
                    for m in members:
                        v = m.get(arg)
                        vals |= set(v) if isinstance(v, (set, list)) else ({v} if v is not None else set())
                    result[name] = vals
            out.append(result)
        return out

    kept = [e for e in events if SearchParser(tokens(where), e).conj()]
    rows = fold(kept, by, aggs)
    for line in lines[1:]:
        if line.startswith("| where "):
            rows = [r for r in rows if WhereParser(tokens(line[len("| where "):]), r).disj() is True]
        elif line.startswith("| stats "):
            body, keys = line[len("| stats "):].split(" by ")
            rows = fold(rows, keys.split(), re.findall(r'(sum|min|max|values)\((\w+)\) as (\w+)', body))
    return rows


NOW = datetime.now(timezone.utc)
PROCESS_EVENTS = [
    {"DeviceName": "h1", "FileName": "AnyDesk.exe", "ProcessCommandLine": "anydesk --connect 1"},
    {"DeviceName": "h1", "FileName": "ANYDESK.EXE", "ProcessCommandLine": "x CONNECT"},
    {"DeviceName": "h1", "FileName": "anydesk.exe", "ProcessCommandLine": "reconnect"},      # no term
    {"DeviceName": "h2", "FileName": "rustdesk.exe", "ProcessCommandLine": "connect_now"},   # _ splits
    {"FileName": "rustdesk.exe", "ProcessCommandLine": "connect"},                          # no device
    {"DeviceName": "h3", "FileName": "other.exe", "ProcessCommandLine": "connect"},
    {"DeviceName": "h2", "FileName": "rustdesk.exe"},                                        # no cmdline
]


def test_tstats_form_gives_the_evaluators_groups():
    from rmmc.compiler import evaluator
    from rmmc.environments import load_environment
    from rmmc.environments.adapt import adapt

    rule = compiled(PROCESS).rule
    events = [{**e, "Timestamp": NOW - timedelta(hours=i)} for i, e in enumerate(PROCESS_EVENTS)]
    expected = {(r["DeviceName"], r["FileName"]): (r["Count"], r["FirstSeen"], r["LastSeen"])
                for r in evaluator.run(rule, events)}
    adapted = adapt(rule, load_environment("splunk-cim"))
    shaped = []
    for e in events:
        t = adapted.target_event(adapted.normalize(e))
        t["_time"] = e["Timestamp"].timestamp()
        shaped.append(t)
    got = {(r["Processes.dest"], r["Processes.process_name"]): (r["Count"], r["FirstSeen"], r["LastSeen"])
           for r in run_tstats(tstats(PROCESS).text, shaped)}
    # h1 twice (KQL groups case-sensitively), h2 (`_` splits terms), '' (no device)
    assert len(expected) == 4 and ("", "rustdesk.exe") in expected, expected
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in expected.items()}
    assert {k: (v[1], v[2]) for k, v in got.items()} == \
        {k: (v[1].timestamp(), v[2].timestamp()) for k, v in expected.items()}
