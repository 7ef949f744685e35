"""The long tail of Defender hunts that SPL says exactly: each case's SPL, run by
tests/spl_pipeline.py over events as the `splunk-defender` environment holds them, returns the
reference evaluator's rows (KQL's meaning); where KQL names columns itself, Microsoft's parser
(tests/oracle) gives the result's columns, and the model's must be those."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.compiler import ir
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run
from rmmc.environments import load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import emit_adapted
from rmmc.verify.whole import NOW
from tests.row_sets import comparable, spl_rows, spl_time_as_timestamp

ENV = "splunk-defender"
MACRO = "`defender_xdr`"


def _spl_agrees(kql: str, events: list[dict], name=spl_time_as_timestamp) -> tuple[str, list[dict]]:
    """Translate `kql` exactly to SPL and check its rows on `events` are the evaluator's
    (`name`: the rule's name of an SPL field); returns the SPL and the rows."""
    lowered = lower_text(kql)
    assert lowered.rule is not None, lowered.diagnostics
    rule = lowered.rule
    adapted = adapt(rule, load_environment(ENV))
    assert adapted.ok, adapted.diagnostics
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    events = [adapted.normalize(e) for e in events]
    expected = run(rule, events, now=NOW)
    assert expected, "the events exercise the rule"
    got = spl_rows(out.text, adapted, events, (MACRO,))
    assert comparable(got, name) == comparable(expected), out.text
    return out.text, expected


def _spl_rows_flat(text: str, adapted, events: list[dict]) -> list[dict]:
    """The SPL run over the events as Splunk's JSON extraction holds a dynamic column's members
    (`AdditionalFields.Command`), the environment's pass-through for paths."""
    spl_pipeline = pytest.importorskip("tests.spl_pipeline")
    shaped = []
    for event in events:
        row = adapted.target_event(event)
        flat = {k: v for k, v in row.items() if not isinstance(v, dict) and k != ir.TABLE and v is not None}
        flat.update({f"{k}.{m}": x for k, v in row.items() if isinstance(v, dict) for m, x in v.items()})
        flat["_time"] = flat["_time"].timestamp()
        shaped.append(flat)
    return spl_pipeline.run(text.replace(MACRO + " ", ""), shaped)


def _process(i: int, **columns) -> dict:
    return {ir.TABLE: "DeviceProcessEvents", "Timestamp": NOW - timedelta(minutes=60 - i), **columns}


def _result_columns(kusto_oracle_defender, kql: str) -> list[str]:
    result = kusto_oracle_defender.check(kql)
    assert result.ok, result
    return [c.split(":")[0] for c in result.result_type.strip("()").split(", ")]


# -- arg_max() naming its columns

NAMED_ARG_MAX = """DeviceProcessEvents
| summarize Files = make_set(FileName), LastMention = arg_max(Timestamp, *) by DeviceName
| project DeviceName, LastMention, FileName, Files"""

NAMED_ARG_MIN = """DeviceProcessEvents
| summarize (First, FirstFile) = arg_min(Timestamp, FileName), Runs = count() by DeviceName
| where FirstFile =~ 'anydesk.exe'"""


def test_named_arg_max_is_the_columns_kusto_returns(kusto_oracle_defender):
    """The model's result columns are Kusto's, in order (the events carry only some of the
    table's columns, so `*` gives the model fewer of them)."""
    for kql in (NAMED_ARG_MAX.split("\n| project")[0], NAMED_ARG_MIN.split("\n| where")[0]):
        rule = lower_text(kql).rule
        assert rule is not None
        event = _process(1, DeviceName="a", FileName="x.exe", FolderPath="c:\\")
        model = [k for k in run(rule, [event], now=NOW)[0] if k != ir.TABLE]
        kusto = _result_columns(kusto_oracle_defender, kql)
        assert model == [c for c in kusto if c in model], (model, kusto)
        assert "Timestamp" not in model and "Timestamp" not in kusto
    assert _result_columns(kusto_oracle_defender, NAMED_ARG_MIN) == ["DeviceName", "First", "FirstFile", "Runs"]
    assert _result_columns(kusto_oracle_defender, NAMED_ARG_MAX) == ["DeviceName", "LastMention", "FileName", "Files"]


SUMMARIZE_NAMES = [
    "DeviceNetworkEvents | summarize T = dcount(RemoteIP), arg_max(Timestamp, *) by DeviceName, bin(Timestamp, 15m)",
    "DeviceNetworkEvents | summarize arg_max(RemotePort, *) by D = DeviceName",
    "DeviceNetworkEvents | summarize arg_max(RemotePort, *) by DeviceName = tolower(DeviceName)",
    "DeviceNetworkEvents | summarize arg_max(Timestamp, DeviceId, Timestamp) by DeviceName",
    "DeviceNetworkEvents | summarize arg_max(Timestamp, *) by Timestamp1 = DeviceId, bin(Timestamp, 1h)",
    "DeviceNetworkEvents | summarize RemoteIP = count(), arg_max(Timestamp, *) by DeviceName",
    "DeviceNetworkEvents | summarize arg_max(Timestamp, RemotePort, *) by DeviceName",
    "DeviceNetworkEvents | summarize arg_max(Timestamp, DeviceName) by DeviceName",
    "DeviceNetworkEvents | summarize L = arg_max(Timestamp, *) by bin(Timestamp, 1h)",
    "DeviceNetworkEvents | summarize arg_max(Timestamp, *), arg_min(Timestamp, *) by DeviceName",
    "DeviceNetworkEvents | summarize L = arg_max(Timestamp, RemotePort), count_ = count(), count() by DeviceName",
]


def test_arg_max_columns_are_named_as_kusto_names_them(kusto_oracle_defender, shared_dir):
    """Over an event with every column of its table, the model's result columns are exactly
    Kusto's: a name taken gets the first free suffix, `*` leaves out the first argument and
    the columns a key is."""
    import json

    table = json.loads((shared_dir / "tools" / "defender_schema.json").read_text())["tables"]["DeviceNetworkEvents"]
    names = [c.strip().split(":")[0] for c in table.strip("()").split(",")] if isinstance(table, str) else list(table)
    event = {ir.TABLE: "DeviceNetworkEvents", **dict.fromkeys(names, "x"), "Timestamp": NOW, "RemotePort": 1}
    for kql in SUMMARIZE_NAMES:
        rule = lower_text(kql).rule
        assert rule is not None, kql
        (row,) = run(rule, [event], now=NOW)
        assert [c for c in row if c != ir.TABLE] == _result_columns(kusto_oracle_defender, kql), kql


@pytest.mark.parametrize("kql", [
    "DeviceNetworkEvents | summarize (L, P) = arg_max(Timestamp, RemotePort), F = arg_min(Timestamp, RemotePort) "
    "by DeviceName",
    "DeviceNetworkEvents | summarize L = arg_max(count_, *), count() by DeviceName",
])
def test_a_name_a_rename_freed_is_refused(kql):
    """Kusto gives the later part the name the rename freed (RemotePort, count_); the model,
    renaming after the summarize, cannot: refused, not named otherwise."""
    lowered = lower_text(kql)
    assert lowered.rule is None
    assert any("Kusto names it otherwise" in d.message for d in lowered.diagnostics), lowered.diagnostics


@pytest.mark.parametrize("kql", [NAMED_ARG_MAX, NAMED_ARG_MIN], ids=["arg_max-star", "arg_min-tuple"])
def test_named_arg_max_in_spl_returns_the_rules_rows(kql):
    events = [_process(1, DeviceName="ws1", FileName="AnyDesk.exe"),
              _process(2, DeviceName="ws1", FileName="cmd.exe"),
              _process(3, DeviceName="ws2", FileName="cmd.exe"),
              _process(4, DeviceName="ws2", FileName="anydesk.exe")]
    text, rows = _spl_agrees(kql, events)
    assert len(rows) == (2 if kql is NAMED_ARG_MAX else 1)


@pytest.mark.parametrize("kql, message", [
    ("DeviceProcessEvents | summarize FileName = arg_max(Timestamp, *) by DeviceName", "taken"),
    ("DeviceProcessEvents | summarize T = arg_max(Timestamp, FileName), arg_min(Timestamp, FolderPath) "
     "by DeviceName", "Kusto names it otherwise"),
    ("DeviceProcessEvents | summarize (T, F) = arg_max(Timestamp, *) by DeviceName", "names more columns"),
])
def test_named_arg_max_that_is_no_plain_rename_is_refused(kql, message):
    lowered = lower_text(kql)
    assert lowered.rule is None
    assert any(message in d.message for d in lowered.diagnostics), lowered.diagnostics


# -- parse whose pattern starts with a column (Kusto accepts it: the column takes the text's start)

LEADING_PARSE = r"""DeviceProcessEvents
| parse FolderPath with DriveLetter '\\' Rest
| where DriveLetter != 'C:'
| project DeviceName, DriveLetter, Rest"""


def test_parse_starting_with_a_column_in_spl_returns_the_rules_rows(kusto_oracle_defender):
    assert _result_columns(kusto_oracle_defender, LEADING_PARSE) == ["DeviceName", "DriveLetter", "Rest"]
    events = [_process(1, DeviceName="a", FolderPath="E:\\tools\\x.exe"),
              _process(2, DeviceName="b", FolderPath="C:\\Windows\\cmd.exe"),
              _process(3, DeviceName="c", FolderPath="no separator")]
    text, rows = _spl_agrees(LEADING_PARSE, events)
    # E: keeps 'tools\x.exe' after the first separator; a value with none gives '' columns
    assert sorted((r["DeviceName"], r["DriveLetter"], r["Rest"]) for r in rows) == [
        ("a", "E:", "tools\\x.exe"), ("c", "", "")]


# -- split(s, d, n)[k]: split with an index is [segment n] (or []), so [0] / [-1] read segment n

SPLIT_INDEXED = """DeviceProcessEvents
| extend Method = tostring(split(ProcessCommandLine, ' /', 0)[0]),
         Path = split(ProcessCommandLine, ' /', 1)[-1],
         Past = split(ProcessCommandLine, ' /', 5)[0],
         Beyond = split(ProcessCommandLine, ' /', 0)[1]
| where Method == 'GET' or isnull(Path)
| project DeviceName, Method, Path, Past, Beyond"""


def test_an_element_of_an_indexed_split_in_spl_returns_the_rules_rows():
    events = [_process(1, DeviceName="a", ProcessCommandLine="GET /x.exe HTTP"),
              _process(2, DeviceName="b", ProcessCommandLine="POST /y HTTP"),
              _process(3, DeviceName="c", ProcessCommandLine="GET only"),
              _process(4, DeviceName="d", ProcessCommandLine="")]
    text, rows = _spl_agrees(SPLIT_INDEXED, events)
    assert sorted((r["DeviceName"], r["Method"], r["Path"]) for r in rows) == [
        ("a", "GET", "x.exe HTTP"), ("c", "GET only", None), ("d", "", None)]
    assert all(r["Past"] is None and r["Beyond"] is None for r in rows)


# -- arg_max(Timestamp, *) by ..., bin(Timestamp, ...): the key is Timestamp, the latest time Timestamp1

BINNED_ARG_MAX = """DeviceProcessEvents
| summarize Commands = dcount(ProcessCommandLine), arg_max(Timestamp, *) by DeviceName, bin(Timestamp, 1h)
| where Commands >= 2
| project Timestamp, Timestamp1, DeviceName, FileName, Commands"""

BINNED_ARG_MIN_COLUMNS = """DeviceProcessEvents
| summarize First = arg_min(Timestamp, FileName, DeviceName) by DeviceName, Hour = bin(Timestamp, 1h)
| where DeviceName1 == DeviceName"""


def test_arg_max_by_a_time_bin_in_spl_returns_the_rules_rows():
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    at = lambda minutes: {"Timestamp": hour - timedelta(hours=2) + timedelta(minutes=minutes)}  # noqa: E731
    events = [{ir.TABLE: "DeviceProcessEvents", **at(m), "DeviceName": d, "ProcessCommandLine": c, "FileName": f}
              for m, d, c, f in [(5, "ws1", "a", "one.exe"), (20, "ws1", "b", "two.exe"), (50, "ws1", "b", "three.exe"),
                                 (70, "ws1", "c", "four.exe"), (10, "ws2", "a", "x.exe"), (15, "ws2", "a", "y.exe")]]
    # Timestamp is _time here, so the latest time, Timestamp1, is _time1 (only the name differs)
    names = {"_time": "Timestamp", "_time1": "Timestamp1"}
    text, rows = _spl_agrees(BINNED_ARG_MAX, events, lambda k: names.get(k, k))
    # ws1's first hour: three commands, two distinct; the latest event of it is three.exe at :50
    assert [(r["DeviceName"], r["FileName"], r["Timestamp"], r["Timestamp1"]) for r in rows] == [
        ("ws1", "three.exe", hour - timedelta(hours=2), hour - timedelta(hours=2) + timedelta(minutes=50))]
    assert "eventstats" in text and "_time1=_time" in text.replace(" ", "")


def test_arg_min_of_a_key_column_names_it_with_a_suffix_in_spl():
    hour = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    events = [{ir.TABLE: "DeviceProcessEvents", "Timestamp": hour + timedelta(minutes=i), "DeviceName": d,
               "FileName": f} for i, (d, f) in enumerate([("ws1", "a.exe"), ("ws1", "b.exe"), ("ws2", "c.exe")])]
    text, rows = _spl_agrees(BINNED_ARG_MIN_COLUMNS, events)
    assert sorted(r["FileName"] for r in rows) == ["a.exe", "c.exe"]


STAR_BESIDE_AN_AGGREGATE = """DeviceNetworkEvents
| summarize RemoteIP = dcount(RemoteIP), arg_max(Timestamp, *) by DeviceName
| where RemoteIP1 startswith '10.' or RemoteIP > 1
| project DeviceName, RemoteIP, RemoteIP1, RemotePort"""

KEY_COPIED = """DeviceNetworkEvents
| summarize arg_max(Timestamp, RemotePort, DeviceName) by RemotePort, DeviceName
| where isnull(RemotePort1) or RemotePort1 > 100"""


@pytest.mark.parametrize("kql", [STAR_BESIDE_AN_AGGREGATE, KEY_COPIED], ids=["aggregate", "key"])
def test_a_column_arg_max_renames_keeps_each_events_value_in_spl(kql):
    """RemoteIP1 is the latest event's RemoteIP beside the aggregate RemoteIP; RemotePort1 the
    key's value again, null where the key is null (copied before eventstats and fillnull)."""
    events = [{ir.TABLE: "DeviceNetworkEvents", "Timestamp": NOW - timedelta(minutes=m), **columns}
              for m, columns in [(9, {"DeviceName": "a", "RemoteIP": "10.0.0.1", "RemotePort": 443}),
                                 (5, {"DeviceName": "a", "RemoteIP": "8.8.8.8", "RemotePort": 53}),
                                 (4, {"DeviceName": "b", "RemoteIP": "10.1.1.1", "RemotePort": 80}),
                                 (3, {"DeviceName": "c", "RemoteIP": "1.1.1.1"})]]
    text, rows = _spl_agrees(kql, events)
    if kql is KEY_COPIED:
        assert sorted(r["DeviceName"] for r in rows) == ["a", "c"]
    else:
        assert sorted((r["DeviceName"], r["RemoteIP"], r["RemoteIP1"]) for r in rows) == [
            ("a", 2, "8.8.8.8"), ("b", 1, "10.1.1.1")]


# -- a union column that is a dynamic value in one source, only shown: left out of the output

UNION_DYNAMIC = """let Processes = DeviceProcessEvents
| where ProcessCommandLine has 'Get-MpPreference'
| extend Table = 'DeviceProcessEvents';
let Commands = DeviceEvents
| extend Command = parse_json(AdditionalFields).Command
| where Command == 'Get-MpPreference'
| extend Table = 'DeviceEvents';
union Processes, Commands"""


def test_a_union_column_dynamic_in_one_source_is_left_out_of_the_spl_output():
    events = [_process(1, DeviceName="a", ProcessCommandLine="powershell Get-MpPreference"),
              _process(2, DeviceName="b", ProcessCommandLine="cmd"),
              {ir.TABLE: "DeviceEvents", "Timestamp": NOW - timedelta(minutes=3), "DeviceName": "c",
               "AdditionalFields": {"Command": "Get-MpPreference"}},
              {ir.TABLE: "DeviceEvents", "Timestamp": NOW - timedelta(minutes=2), "DeviceName": "d",
               "AdditionalFields": {"Command": "Set-MpPreference"}}]
    rule = lower_text(UNION_DYNAMIC).rule
    adapted = adapt(rule, load_environment(ENV))
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok and any("Command holds a dynamic value" in d.message and d.code == "shape"
                          for d in out.diagnostics), out.diagnostics
    events = [adapted.normalize(e) for e in events]
    expected = run(rule, events, now=NOW)
    assert sorted(r["DeviceName"] for r in expected) == ["a", "c"]
    got = _spl_rows_flat(out.text, adapted, events)
    # the rows, by the columns both hold (the SPL run's events carry only the fields it reads)
    assert comparable([{"Timestamp": r["_time"], "Table": r["Table"]} for r in got]) == \
        comparable([{"Timestamp": r["Timestamp"], "Table": r["Table"]} for r in expected]), out.text
    assert not any("Command" in r for r in got)


# -- datetime_diff() in whole seconds, minutes, hours and days since 1970 (UTC)

DATETIME_DIFF = """DeviceProcessEvents
| extend Minutes = datetime_diff('minute', Timestamp, Timestamp - 242s),
         Days = datetime_diff('day', Timestamp + 60m, Timestamp),
         Hours = datetime_diff('hour', Timestamp - 5m, Timestamp),
         Seconds = datetime_diff('second', Timestamp, Timestamp - 1500ms)
| where Minutes >= 5 or Days > 0
| project DeviceName, Minutes, Days, Hours, Seconds"""


def test_datetime_diff_in_spl_returns_the_rules_rows():
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    # Kusto's documentation: 23:05:01 - 23:00:59 is 5 minutes (boundaries crossed, not 4:02)
    times = [("a", day + timedelta(hours=23, minutes=5, seconds=1)), ("b", day + timedelta(hours=23, minutes=4, seconds=3)),
             ("c", day + timedelta(hours=10, minutes=2, seconds=3)), ("d", day + timedelta(hours=10, minutes=9))]
    events = [{ir.TABLE: "DeviceProcessEvents", "Timestamp": t, "DeviceName": d} for d, t in times]
    text, rows = _spl_agrees(DATETIME_DIFF, events)
    assert sorted((r["DeviceName"], r["Minutes"], r["Days"], r["Hours"], r["Seconds"]) for r in rows) == [
        ("a", 5, 1, 0, 2), ("b", 4, 1, -1, 2), ("d", 5, 0, 0, 2)]


def test_datetime_diff_in_a_calendar_unit_is_refused_in_spl():
    import rmmc

    result = rmmc.translate("DeviceProcessEvents | summarize by DeviceName, "
                            "Months = datetime_diff('month', Timestamp, Timestamp - 40d)", to="splunk", env=ENV)
    assert not result.ok and any("calendar unit" in d.message for d in result.diagnostics), result.diagnostics


# -- a test on a column that stands for a path (`S = parse_json(AdditionalFields).x`) inside an expression

PATH_ALIAS_TEST = """DeviceEvents
| extend Parsed = parse_json(AdditionalFields)
| extend SmartScreen = Parsed.Experience
| extend Kind = iff(SmartScreen == 'CustomBlockList', 'IoC', 'other'),
         Other = iff(SmartScreen != 'CustomBlockList', 1, 0)
| project DeviceName, Kind, Other"""


def test_a_test_on_a_path_column_in_an_expression_in_spl_returns_the_rules_rows():
    bags = [{"Experience": "CustomBlockList"}, {"Experience": "customblocklist"}, {"Other": "x"}, None]
    events = [{ir.TABLE: "DeviceEvents", "Timestamp": NOW - timedelta(minutes=i), "DeviceName": f"d{i}",
               **({"AdditionalFields": bag} if bag is not None else {})} for i, bag in enumerate(bags)]
    rule = lower_text(PATH_ALIAS_TEST).rule
    adapted = adapt(rule, load_environment(ENV))
    out = emit_adapted("splunk", adapted, EmitOptions())
    assert out.ok and not any(d.code == "lossy" for d in out.diagnostics), out.diagnostics
    events = [adapted.normalize(e) for e in events]
    expected = run(rule, events, now=NOW)
    # == is case-sensitive; an absent member is null: == false, != true
    assert sorted((r["DeviceName"], r["Kind"], r["Other"]) for r in expected) == [
        ("d0", "IoC", 0), ("d1", "other", 1), ("d2", "other", 1), ("d3", "other", 1)]
    got = _spl_rows_flat(out.text, adapted, events)
    keys = ("DeviceName", "Kind", "Other")
    assert comparable([{k: r.get(k) for k in keys} for r in got]) == comparable(expected), out.text
