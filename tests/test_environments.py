"""Environments: validated data with located errors, and value conventions that are exact.

Each convention is checked the way `rmmc verify` checks a translation, at the model: events
generated around a rule's values are put into the conventions' domain, the source rule reads
them in its own convention, the adapted rule (what every backend is given) reads them as the
environment holds them (`Adapted.target_event`), and the two must agree on every event.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rmmc
from rmmc.compiler.evaluator import evaluate
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.sigma import read_sigma_rules
from rmmc.environments import (DEFAULTS, EnvironmentError, find_environment, list_environments,
                               load_environment)
from rmmc.environments.adapt import adapt
from rmmc.environments.loader import read_environment
from rmmc.verify.events import boundary_events

ROOT = Path(__file__).resolve().parent.parent


def kql(query: str):
    lowered = lower_text(query)
    assert lowered.rule is not None, lowered.diagnostics
    return lowered.rule


def sigma(text: str):
    [(rule, diagnostics)] = read_sigma_rules(text)
    assert rule is not None, diagnostics
    return rule


def agrees(rule, env: str) -> None:
    """The adapted rule, on the events as `env` holds them, selects what the rule selects."""
    adapted = adapt(rule, load_environment(env), allow_unknown_fields=True)
    assert adapted.ok, [d.message for d in adapted.diagnostics if d.is_error]
    assert not [d for d in adapted.diagnostics if d.code == "lossy"]
    events = [adapted.normalize(e) for e in boundary_events(rule, sample=40)]
    assert events
    for e in events:
        want = evaluate(rule.condition, e) is True
        got = evaluate(adapted.rule.condition, adapted.target_event(e)) is True
        assert want == got, (env, e, adapted.target_event(e), adapted.rule.condition)


# ------------------------------------------------------------------ the built-ins


def test_every_builtin_loads_and_lists():
    listed = {e.name: e.target for e in list_environments()}
    assert listed == {"defender-xdr": "kql", "sentinel": "kql", "sigma": "sigma", "splunk-sysmon": "splunk",
                      "splunk-cim": "splunk", "splunk-defender": "splunk", "elastic-endpoint": "elastic", "elastic-winlogbeat": "elastic"}
    for name in listed:
        env = load_environment(name)
        assert env.name == name and env.sources and env.description
    assert set(DEFAULTS) == {"kql", "sigma", "splunk", "eql", "esql"}
    assert all(load_environment(DEFAULTS[t]).serves(t) for t in DEFAULTS)


# ------------------------------------------------------------------ located errors

BAD = """\
name: mine
target: splunk
time_field: _time
sources:
  - match: {table: DeviceProcessEvents}
    feilds:
      FolderPath: Image
  - match: {table: DeviceNetworkEvents}
    schema: [splunk:sysmon_eventid_3x]
    fields:
      RemoteUrl: {field: DestinationHostname, hives: longer}
      AccountName: {part: last}
"""


def test_errors_are_located_with_a_did_you_mean(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(EnvironmentError) as caught:
        load_environment(str(path))
    found = {(d.span.line, d.span.column): d.message for d in caught.value.diagnostics}
    assert all(d.path == str(path) for d in caught.value.diagnostics)
    assert "unknown key 'feilds' in a source (did you mean 'fields'?)" in found[(6, 5)]
    assert "no field set 'splunk:sysmon_eventid_3x' (did you mean 'splunk:sysmon_eventid_3'?)" in found[(9, 14)]
    assert "hives: 'longer' is not one of long, short, native" in found[(11, 7)]
    assert "fields.AccountName: field is required" in found[(12, 7)]


def test_the_cli_prints_them_and_stops_with_status_2(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text(BAD, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "rmmc", "translate", "rules/", "--to", "splunk",
                           "--env", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert f"{path}:6:5: error: unknown key 'feilds'" in done.stderr
    assert "Traceback" not in done.stderr
    wrong = subprocess.run([sys.executable, "-m", "rmmc", "translate", "rules/", "--to", "kql",
                            "--env", "splunk-sysmon"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert wrong.returncode == 2 and "splunk-sysmon is for splunk, not kql" in wrong.stderr


def test_structure_errors():
    def problems(text: str) -> list[str]:
        with pytest.raises(EnvironmentError) as caught:
            read_environment(text, "x.yml")
        return [d.message for d in caught.value.diagnostics]

    assert any("target 'qradar' is not one of" in m for m in problems(
        "name: x\ntarget: qradar\ntime_field: t\nsources: [{match: {}}]\n"))
    assert any("sources is required" in m for m in problems("name: x\ntarget: kql\ntime_field: t\n"))
    assert any("one YAML document" in m for m in problems("name: x\n---\nname: y\n"))
    assert any("use one or the other" in m for m in problems(
        "name: x\ntarget: kql\ntime_field: t\nsources: [{match: {table: T, category: c}}]\n"))
    assert any("must not hold '|'" in m for m in problems(
        "name: x\ntarget: splunk\ntime_field: t\nplace: {search: 'a | delete'}\nsources: [{match: {}}]\n"))


def test_rmmc_yml_at_the_root_of_the_rules_is_found(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "q.kql").write_text(
        "DeviceProcessEvents | where FileName =~ 'cmd.exe'", encoding="utf-8")
    assert find_environment([str(tmp_path / "rules")]) is None
    (tmp_path / "rules" / "rmmc.yml").write_text(
        "name: ours\ntarget: splunk\ntime_field: _time\nplace: {search: 'index=edr'}\n"
        "sources:\n  - match: {table: DeviceProcessEvents}\n    fields: {FileName: process_name}\n",
        encoding="utf-8")
    assert find_environment([str(tmp_path / "rules")]) == str(tmp_path / "rules" / "rmmc.yml")
    done = subprocess.run([sys.executable, "-m", "rmmc", "translate", str(tmp_path / "rules"), "--to", "splunk"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "environment ours from" in done.stderr
    assert done.stdout.startswith('search index=edr process_name="cmd.exe"')


# ------------------------------------------------------------------ registry hives


REGISTRY_SIGMA = """\
title: Run key
logsource: {product: windows, category: registry_set}
detection:
  machine: {TargetObject|startswith: 'HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\'}
  users: {TargetObject|contains: 'HKU\\S-1-5-21'}
  whole: {TargetObject: 'HKLM\\System\\CurrentControlSet\\Control\\MiniNt'}
  tail: {TargetObject|endswith: '\\Run\\evil'}
  condition: 1 of them
"""


def test_sigma_hives_are_written_as_defender_stores_them():
    rule = sigma(REGISTRY_SIGMA)
    keys = [p.values[0] for p in _predicates(rule) if p.field.name == "RegistryKey"]
    assert "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\" in keys
    assert "HKEY_USERS\\S-1-5-21" in keys and "HKEY_LOCAL_MACHINE\\System\\CurrentControlSet\\Control\\MiniNt" in keys
    assert not any(k.startswith(("HKLM", "HKU\\")) for k in keys)
    text = rmmc.translate(REGISTRY_SIGMA, to="kql").text
    assert "RegistryKey startswith 'HKEY_USERS\\\\S-1-5-21'" in text  # contains at the start of a key
    # and back: Sigma and Sysmon write HKLM again
    back = yaml.safe_load(rmmc.translate(REGISTRY_SIGMA, to="sigma").text)["detection"]
    # (Sigma writes a backslash doubled: it escapes the wildcards)
    assert {"TargetObject|startswith": "HKLM\\\\SOFTWARE\\\\Microsoft\\\\Windows\\\\CurrentVersion\\\\Run\\\\"} \
        in back["selection"]
    for env in ("defender-xdr", "sigma", "splunk-sysmon", "elastic-winlogbeat"):
        agrees(rule, env)


def test_defender_hives_are_written_as_sysmon_writes_them():
    rule = kql("DeviceRegistryEvents | where RegistryKey startswith @'HKEY_USERS\\' "
               "and RegistryKey endswith @'\\Run' or RegistryKey =~ @'HKEY_LOCAL_MACHINE\\SOFTWARE\\X' "
               "or RegistryKey startswith 'HKEY_C'")
    result = rmmc.translate("DeviceRegistryEvents | where RegistryKey startswith @'HKEY_USERS\\S-1'",
                            to="splunk")
    assert 'TargetObject="HKU\\\\S-1*"' in result.text, result.text
    for env in ("splunk-sysmon", "sigma", "elastic-winlogbeat", "splunk-cim"):
        agrees(rule, env)


def test_a_hive_test_inside_a_regex_is_flagged():
    rule = kql("DeviceRegistryEvents | where RegistryKey matches regex @'^HKEY_LOCAL_MACHINE\\\\Soft'")
    adapted = adapt(rule, load_environment("splunk-sysmon"))
    assert any(d.code == "lossy" and "regex" in d.message for d in adapted.diagnostics)
    assert not rmmc.translate("DeviceRegistryEvents | where RegistryKey matches regex @'^HKEY_LOCAL_MACHINE\\\\S'",
                              to="splunk").ok  # lossy: refused unless --allow-lossy


# ------------------------------------------------------------------ users


def test_domain_and_name_are_one_user_field_in_sysmon():
    rule = kql("DeviceProcessEvents | where AccountName != 'system' and AccountDomain =~ 'NT AUTHORITY' "
               "or AccountName contains 'adm' or AccountName startswith 'svc'")
    agrees(rule, "splunk-sysmon")
    agrees(rule, "sigma")
    text = rmmc.translate("DeviceProcessEvents | where AccountName =~ 'system' and AccountDomain =~ 'NT AUTHORITY'",
                          to="sigma").text
    assert yaml.safe_load(text)["detection"]["selection"] == {"User": "NT AUTHORITY\\\\system"}


def test_sigma_users_are_defender_domain_and_name():
    rule = sigma("""
title: u
logsource: {product: windows, category: process_creation}
detection:
  s: {User|contains: ['AUTHORI', 'AUTORI']}
  t: {User: 'NT AUTHORITY\\SYSTEM'}
  condition: s or t
""")
    kql_text = rmmc.translate("""
title: u
logsource: {product: windows, category: process_creation}
detection:
  t: {User: 'NT AUTHORITY\\SYSTEM'}
  condition: t
""", to="kql").text
    assert "AccountDomain =~ 'NT AUTHORITY' and AccountName =~ 'SYSTEM'" in kql_text
    for env in ("defender-xdr", "sigma", "splunk-sysmon", "elastic-endpoint"):
        agrees(rule, env)


def test_a_user_exists_when_its_domain_or_its_name_does():
    # Sysmon writes User whenever either part is there; reading `User|exists` as a test on
    # strcat(domain, '\\', name) held on every event (the property test's counterexample: {})
    rule = sigma("""
title: u
logsource: {product: windows, category: process_creation}
detection:
  s: {User|exists: true}
  condition: s
""")
    assert not evaluate(rule.condition, {})
    assert evaluate(rule.condition, {"AccountName": "bob"})
    assert evaluate(rule.condition, {"AccountDomain": "CORP"})


def test_an_output_column_computed_from_a_shared_value_says_so():
    # Sysmon's Initiated=true is four of Defender's ActionTypes: the output can name only one
    text = "DeviceNetworkEvents | where RemoteUrl has 'anydesk.com' | project DeviceName, ActionType"
    result = rmmc.translate(text, to="splunk", env="splunk-sysmon")
    assert result.ok
    said = [d.message for d in result.diagnostics if d.code == "shape"]
    assert any("ActionType is computed from Initiated" in m and "ConnectionFailed" in m for m in said), said
    plain = rmmc.translate("DeviceProcessEvents | where FileName =~ 'a.exe' | project ActionType",
                           to="splunk", env="splunk-sysmon")
    assert plain.ok and not [d for d in plain.diagnostics if d.code == "shape"]


# ------------------------------------------------------------------ hashes


HASH = "a" * 64


def test_hashes_contains_sha256_both_ways():
    sigma_text = """
title: h
logsource: {product: windows, category: process_creation}
detection:
  s: {Hashes|contains: ['SHA256=ABC', 'SHA256=%s']}
  condition: s
""" % HASH.upper()
    text = rmmc.translate(sigma_text, to="kql").text
    assert "SHA256 startswith 'ABC'" in text and f"SHA256 =~ '{HASH.upper()}'" in text
    agrees(sigma(sigma_text), "defender-xdr")
    # the other way: Defender's column is an entry of Sysmon's list
    back = rmmc.translate(f"DeviceProcessEvents | where SHA256 == '{HASH}'", to="sigma").text
    assert yaml.safe_load(back)["detection"]["selection"] == {"Hashes|contains|cased": f"SHA256={HASH}"}
    spl = rmmc.translate(f"DeviceProcessEvents | where SHA1 =~ '{'b' * 40}'", to="splunk").text
    assert f'Hashes="*SHA1={"b" * 40}*"' in spl
    rule = kql(f"DeviceProcessEvents | where SHA256 =~ '{HASH}' or SHA1 startswith 'ab' or MD5 contains 'cd'")
    for env in ("sigma", "splunk-sysmon"):
        agrees(rule, env)


def test_a_digest_the_table_does_not_hold_stays_a_test_on_the_list():
    result = rmmc.translate("""
title: h
logsource: {product: windows, category: process_creation}
detection:
  s: {Hashes|contains: 'IMPHASH=0123'}
  condition: s
""", to="kql")
    assert not result.ok
    assert any("Hashes" in d.message and d.code == "environment" and d.is_error for d in result.diagnostics)


# ------------------------------------------------------------------ ActionType and event ids


def test_action_type_is_the_target_event_vocabulary():
    registry = kql("DeviceRegistryEvents | where ActionType == 'RegistryValueSet' and RegistryValueName == 'x'")
    spl = rmmc.translate("DeviceRegistryEvents | where ActionType == 'RegistryValueSet' and RegistryKey has 'Run'",
                         to="splunk").text
    assert 'EventType="SetValue"' in spl or 'EventType=="SetValue"' in spl or "SetValue" in spl
    agrees(registry, "splunk-sysmon")
    process = kql("DeviceProcessEvents | where ActionType == 'ProcessCreated' and FileName =~ 'x.exe'")
    eql = rmmc.translate("DeviceProcessEvents | where ActionType == 'ProcessCreated' and FileName =~ 'x.exe'",
                         to="eql").text
    assert 'event.code : "1"' in eql and 'winlog.channel : "Microsoft-Windows-Sysmon/Operational"' in eql
    agrees(process, "elastic-winlogbeat")
    read = sigma("""
title: e
logsource: {product: windows, category: registry_set}
detection:
  s: {EventType: SetValue, TargetObject|endswith: '\\Run'}
  condition: s
""")
    assert any(p.field.name == "ActionType" and p.values == ("RegistryValueSet",) for p in _predicates(read))
    unknown = adapt(kql("DeviceFileEvents | where ActionType == 'FileRenamed'"), load_environment("splunk-sysmon"))
    assert any(d.code == "lossy" and "FileRenamed" in d.message for d in unknown.diagnostics)


def test_initiated_is_the_direction_of_a_connection():
    rule = sigma("""
title: n
logsource: {product: windows, category: network_connection}
detection:
  s: {Initiated: 'true', DestinationPort: 4444}
  condition: s
""")
    assert any(p.field.name == "ActionType" for p in _predicates(rule))
    for env in ("defender-xdr", "splunk-sysmon", "elastic-winlogbeat", "sigma"):
        agrees(rule, env)


# ------------------------------------------------------------------ file name and path


def test_file_name_is_the_end_of_the_path_in_sysmon():
    text = rmmc.translate("DeviceProcessEvents | where FileName =~ 'cmd.exe'", to="sigma").text
    assert yaml.safe_load(text)["detection"]["selection"] == {"Image|endswith": "\\\\cmd.exe"}
    rule = kql("DeviceProcessEvents | where FileName in~ ('cmd.exe', 'pwsh.exe') or FileName endswith '.scr' "
               "or FileName startswith 'ps' or FileName contains 'exec' or FileName has 'x'")
    for env in ("splunk-sysmon", "sigma"):
        agrees(rule, env)


# ------------------------------------------------------------------ where the data lives


def test_placement_per_environment():
    seed = "DeviceProcessEvents | where Timestamp > ago(1d) | where ProcessCommandLine has 'x' | summarize count() by DeviceName"
    assert rmmc.translate(seed, to="splunk").text.startswith("search `sysmon` EventCode=1 earliest=-1d") or \
        rmmc.translate(seed, to="splunk").text.startswith("search `sysmon` earliest=-1d")
    cim = rmmc.translate(seed, to="splunk", env="splunk-cim").text
    assert cim.startswith("| datamodel Endpoint Processes search\n| search earliest=-1d")
    assert "by Processes.dest" in cim
    sentinel = rmmc.translate(seed, to="kql", env="sentinel").text
    assert sentinel.startswith("DeviceProcessEvents\n| where TimeGenerated > ago(1d)")
    esql = rmmc.translate(seed, to="esql", env="elastic-endpoint").text
    assert esql.startswith("FROM logs-endpoint.events.process-*\n| WHERE @timestamp > NOW() - 1 day")


def test_sentinel_reads_windows_event_data():
    text = rmmc.translate("""
title: ps
logsource: {product: windows, category: ps_script}
detection:
  s: {ScriptBlockText|contains: 'Invoke-Mimikatz'}
  condition: s
""", to="kql", env="sentinel").text
    assert text.startswith("WindowsEvent\n| where Channel =~ 'Microsoft-Windows-PowerShell/Operational' and "
                           "EventID == 4104 and tostring(EventData.ScriptBlockText) contains 'Invoke-Mimikatz'")


def test_fields_is_a_deprecated_alias():
    result = rmmc.translate("DeviceProcessEvents | where FileName =~ 'a.exe'", to="splunk", fields="sigma")
    assert any("--fields sigma is deprecated" in d.message and "--env splunk-sysmon" in d.message
               for d in result.diagnostics)


def _predicates(rule):
    from rmmc.compiler.ir import walk_predicates

    return walk_predicates(rule.condition)


def test_the_readme_custom_environment_works(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Environments"):]
    block = section[section.index("```yaml\n") + len("```yaml\n"):]
    block = block[:block.index("```")]
    path = tmp_path / "mine.yml"
    path.write_text(block, encoding="utf-8")
    env = load_environment(str(path))
    assert env.name == "our-splunk" and env.serves("splunk")
    result = rmmc.translate("DeviceProcessEvents | where FileName =~ 'cmd.exe' and AccountName =~ 'bob'",
                            to="splunk", env=str(path))
    assert result.ok, result.diagnostics
    assert result.text.startswith('search index=edr sourcetype=XmlWinEventLog Image="*\\\\cmd.exe"')
    assert "DeviceId" in str([d.message for d in rmmc.translate(
        "DeviceProcessEvents | where FileName =~ 'a' | summarize count() by DeviceId", to="splunk",
        env=str(path)).diagnostics])


def test_a_list_kept_beside_its_digest_columns_stays_one_list():
    """SigmaHQ verify found it: a rule with `Hashes|contains` for a digest Defender has a column
    for and one it has not keeps both the column and the list; an event must hold one list."""
    rule = sigma("""
title: h
logsource: {product: windows, category: process_creation}
detection:
  s: {Hashes|contains: ['SHA256=%s', 'IMPHASH=04DE0AD9C37EB7BD52043D2ECAC958DF']}
  i: {Image|endswith: '\\\\x.exe'}
  condition: s or i
""" % HASH.upper())
    assert {p.field.name for p in _predicates(rule)} == {"SHA256", "Hashes", "FolderPath"}
    agrees(rule, "sigma")
    agrees(rule, "elastic-winlogbeat")


def test_check_with_an_environment_reports_what_it_lacks_at_the_rule():
    done = subprocess.run([sys.executable, "-m", "rmmc", "check", "rules/rmm_remotepc_netconn.txt",
                           "--env", "splunk-sysmon"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1
    assert ("rules/rmm_remotepc_netconn.txt:9:5: error: splunk-sysmon: InitiatingProcessVersionInfoCompanyName "
            "has no field in DeviceNetworkEvents events (Sysmon network events carry no version information)"
            in done.stdout)
    plain = subprocess.run([sys.executable, "-m", "rmmc", "check", "rules/rmm_remotepc_netconn.txt"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert plain.returncode == 0 and "splunk-sysmon" not in plain.stdout


def test_check_with_an_environment_refuses_what_translate_refuses(tmp_path):
    """A group key the environment lacks merges groups, so other alerts fire: `translate`
    refuses it and `check` reports it as an error; with --allow-lossy both let it through
    (`check` as a warning)."""
    rule = tmp_path / "groups.kql"
    rule.write_text("DeviceProcessEvents\n| where FileName =~ 'anydesk.exe'\n"
                    "| summarize n = count() by DeviceId, FileName\n| where n > 3\n", encoding="utf-8")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "rmmc", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    strict = run("check", str(rule), "--env", "splunk-sysmon")
    assert strict.returncode == 1 and "error: splunk-sysmon: DeviceId has no field" in strict.stdout
    assert "--allow-lossy writes it anyway" in strict.stdout
    assert run("translate", str(rule), "--to", "splunk", "--env", "splunk-sysmon").returncode == 1
    lenient = run("check", str(rule), "--env", "splunk-sysmon", "--allow-lossy")
    assert lenient.returncode == 0 and "warning: splunk-sysmon: DeviceId has no field" in lenient.stdout
    assert run("translate", str(rule), "--to", "splunk", "--env", "splunk-sysmon", "--allow-lossy").returncode == 0


def test_an_aggregate_beside_arg_max_star_is_no_event_field():
    """`summarize n = dcount(x), arg_max(Timestamp, *) by k | where n >= 3`: `n` is the
    summarize's column, not a field the environment's events must hold (the event columns
    stay readable through '*')."""
    from rmmc.translation import translate_text

    query = ("DeviceProcessEvents | summarize TotalCommands = dcount(ProcessCommandLine), "
             "arg_max(Timestamp, *) by DeviceName | where TotalCommands >= 3")
    for target in ("kql", "splunk"):
        (result,) = translate_text(query, target)
        assert not [d for d in result.diagnostics if "TotalCommands" in d.message and d.is_error], target
    (kql,) = translate_text(query, "kql")
    assert kql.verdict == "exact" and "where TotalCommands >= 3" in kql.text
    (wrong,) = translate_text("DeviceProcessEvents | summarize n = count(), arg_max(Timestamp, *) by DeviceName "
                              "| where NoSuchField == 1", "kql")
    assert wrong.verdict == "refused"  # an event field read through '*' is still checked
