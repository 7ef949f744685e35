"""Outputs that run where users run them, over the real corpora (the done-when of issue 12).

* SigmaHQ Windows rules to EQL and ES|QL in `elastic-winlogbeat`: every field every written query
  reads is an ECS field or one the environment declares (checked against ECS 9.2 and Elastic's
  non-ECS fields, from ../shared/reference, not against rmmc's own data).
* SigmaHQ to KQL in `defender-xdr`: every written query passes Microsoft's parser with the
  Defender schema (no column rmmc introduced is unknown); in `sentinel`, the rules Defender has
  no table for whose logsource Sentinel holds (Windows Security, PowerShell, Sysmon) translate,
  and pass Microsoft's parser with Sentinel's table schemas.
* SigmaHQ registry rules to KQL: hives written as Defender stores them, checked by `rmmc verify`
  on Defender-shaped events (and the Sigma on Sysmon-shaped ones).
* The RMM corpus to SPL in `splunk-sysmon`: no field outside the Sysmon add-on's lists, or an
  error saying which; with the unknown fields allowed, what is written is verified on
  Sysmon-shaped events by tests/spl_interp.py standing in for Splunk.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import yaml

from rmmc.backends.base import EmitOptions
from rmmc.compiler.documents import iter_rule_files, read_path
from rmmc.compiler.documents.model import RuleDocument
from rmmc.compiler.pipeline import compile_document
from rmmc.environments import load_environment
from rmmc.environments.adapt import adapt
from rmmc.translation import translate_document

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def sigma_windows(shared_dir: Path) -> list[RuleDocument]:
    root = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    if not root.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    return [doc for path in iter_rule_files([str(root)]) for doc in read_path(path).documents]


@pytest.fixture(scope="module")
def reference(shared_dir: Path) -> Path:
    path = shared_dir / "reference"
    if not path.is_dir():
        pytest.skip("shared/reference not present")
    return path


# ------------------------------------------------------------------ Elastic: ECS or declared


def _ecs_names(reference: Path) -> set[str]:
    with gzip.open(reference / "elastic" / "ecs_flat-9.2.0.json.gz", "rt", encoding="utf-8") as handle:
        flat = json.load(handle)
    names = set(flat)
    for body in flat.values():
        names.update(m["flat_name"] for m in body.get("multi_fields") or ())
    return names


def _declared(reference: Path, patterns: tuple[str, ...]) -> tuple[set[str], tuple[str, ...]]:
    """Elastic's own non-ECS fields for the environment's index patterns (a name standing for
    an object covers what is under it), and the environment's declared prefixes."""
    raw = json.loads((reference / "elastic" / "non-ecs-schema.json").read_text(encoding="utf-8"))
    names: set[str] = set()
    for pattern in patterns:
        fields = raw.get(pattern, {})
        names.update(fields if isinstance(fields, (dict, list)) else ())
    env = load_environment("elastic-winlogbeat")
    prefixes = tuple(d[:-1] for s in env.sources for d in s.declare if d.endswith("*"))
    return names, prefixes + tuple(n + "." for n in names)


def _eql_fields(text: str) -> set[str]:
    import eql
    import eql.ast as ast

    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        query = eql.parse_query(text)
    out, stack = set(), [query]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Field):
            out.add(".".join([node.base, *map(str, node.path)]))
        elif isinstance(node, ast.BaseNode):
            stack.extend(value for _, value in node.iter_slots())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return out


_ESQL_WORDS = frozenset("""
    and or not like rlike in is null true false by asc desc nulls first last as on with metadata where
    from row eval stats keep drop rename sort limit now day days hour hours minute minutes second seconds
    millisecond milliseconds week weeks month months year years
""".split())


def _esql_fields(text: str) -> set[str]:
    """The fields an ES|QL query reads: dotted identifier chains that are not functions,
    keywords, the index, or names the query itself makes (`x = ...`, `... AS x`)."""
    from esql_interp import tokens

    toks = tokens(text)
    first_pipe = next((i for i, t in enumerate(toks) if t.kind == "pipe"), len(toks))
    toks = toks[first_pipe:]  # past FROM <index patterns>
    made: set[str] = set()
    chains: list[tuple[int, str]] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind in ("id", "qid"):
            parts, j = [tok.value], i + 1
            while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind in ("id", "qid"):
                parts.append(toks[j + 1].value)
                j += 2
            chains.append((i, ".".join(parts)))
            i = j
        else:
            i += 1
    names = set()
    for at, name in chains:
        after = toks[at + len(name.split(".")) * 2 - 1] if at + len(name.split(".")) * 2 - 1 < len(toks) else None
        before = toks[at - 1] if at else None
        if after is not None and after.text == "(":
            continue  # a function
        if after is not None and after.text == "=" :
            made.add(name)
            continue
        if before is not None and before.kind == "id" and before.value.lower() == "as":
            made.add(name)
            continue
        if name.lower() in _ESQL_WORDS:
            continue
        names.add(name)
    return names - made


@pytest.mark.parametrize("target", ["eql", "esql"])
def test_sigmahq_elastic_fields_are_ecs_or_declared(sigma_windows, reference, target, terminal_report):
    if target == "eql":
        pytest.importorskip("eql")
    ecs = _ecs_names(reference)
    declared, prefixes = _declared(reference, ("winlogbeat-*", "logs-windows.*", "logs-system.security-*"))
    written, outside, unparsed = 0, [], 0
    for doc in sigma_windows:
        result = translate_document(doc, target, EmitOptions(), env="elastic-winlogbeat")
        if not result.ok:
            continue
        written += 1
        try:
            fields = _eql_fields(result.text) if target == "eql" else _esql_fields(result.text)
        except ValueError:  # the eql package reads a `\u{..}` escape greedily (README, verify)
            unparsed += 1
            continue
        for name in fields:
            if name not in ecs and name not in declared and not name.startswith(prefixes):
                outside.append((doc.path, name))
    terminal_report(f"SigmaHQ windows to {target} in elastic-winlogbeat: {written} of {len(sigma_windows)} "
                    f"written, {len(outside)} fields outside ECS and the environment's declared fields"
                    + (f" ({unparsed} the eql package cannot parse)" if unparsed else ""))
    assert written > 2200 and unparsed < 30
    assert not outside, outside[:10]


# ------------------------------------------------------------------ KQL: Defender and Sentinel


def test_sigmahq_kql_for_defender_names_no_unknown_column(sigma_windows, kusto_oracle_defender, terminal_report):
    texts = []
    for doc in sigma_windows:
        result = translate_document(doc, "kql", EmitOptions(), env="defender-xdr")
        if result.ok:
            texts.append((doc.path, result.text))
    verdicts = kusto_oracle_defender.check_many(text for _, text in texts)
    rejected = [(path, [e.message for e in v.errors][:2]) for (path, _), v in zip(texts, verdicts) if not v.ok]
    # The parser stops short of semantic analysis on a few very deep queries (thousands of ors):
    # syntax only there, no column judged.
    deep = [r for r in rejected if all("depth exceeds" in m for m in r[1])]
    terminal_report(f"SigmaHQ windows to kql in defender-xdr: {len(texts)} written, "
                    f"{len(rejected) - len(deep)} rejected by Microsoft's parser with the Defender "
                    f"schema ({len(deep)} too deep for its semantic pass)")
    assert len(texts) > 1600 and len(deep) < 10
    assert not [r for r in rejected if r not in deep], rejected[:5]


_SENTINEL_LOGS = re.compile(r"^(security|powershell|powershell-classic|sysmon)$")
_SENTINEL_CATEGORIES = {"ps_script", "ps_module", "ps_classic_start", "ps_classic_provider_start",
                        "process_access", "create_remote_thread", "pipe_created", "dns_query", "driver_load",
                        "create_stream_hash", "raw_access_thread", "wmi_event", "process_tampering",
                        "file_executable_detected", "sysmon_status", "sysmon_error"}


def _sentinel_schema(tmp_path: Path) -> Path:
    """Microsoft's parser's schema file for Sentinel: the Log Analytics tables the environment
    reads (pysigma-backend-kusto's lists, through rmmc's generated field sets) and the
    Defender tables with their Sentinel-only columns."""
    from rmmc.compiler.schema import load_schema
    from rmmc.environments.fieldsets import field_set

    tables = {}
    for name in ("SecurityEvent", "WindowsEvent", "Event"):
        columns = field_set(f"log_analytics:{name}")
        tables[name] = "(" + ", ".join(f"['{c}']:{t}" for c, t in columns.items()) + ")"
    for name, table in load_schema().tables.items():
        columns = {**table.columns, **table.sentinel_columns}
        tables[name] = "(" + ", ".join(f"['{c}']:{t}" for c, t in columns.items()) + ")"
    path = tmp_path / "sentinel_schema.json"
    path.write_text(json.dumps({"database": "Sentinel", "tables": tables}), encoding="utf-8")
    return path


def test_sentinel_translates_the_windows_logs_defender_has_no_table_for(sigma_windows, tmp_path, terminal_report):
    from kusto_oracle import KustoOracle, oracle_unavailable_reason

    candidates, translated, texts = 0, 0, []
    for doc in sigma_windows:
        logsource = doc.metadata.get("logsource") or {}
        if not isinstance(logsource, dict):
            continue
        defender = translate_document(doc, "kql", EmitOptions(), env="defender-xdr")
        if defender.ok or not any("has no source" in d.message for d in defender.diagnostics):
            continue
        if not (_SENTINEL_LOGS.match(str(logsource.get("service", ""))) or logsource.get("category") in _SENTINEL_CATEGORIES):
            continue
        candidates += 1
        sentinel = translate_document(doc, "kql", EmitOptions(), env="sentinel")
        if sentinel.ok:
            translated += 1
            texts.append((doc.path, sentinel.text))
        else:  # refused only for what Sentinel's tables lack (a column), never for having no table
            assert not any("has no source" in d.message for d in sentinel.diagnostics), doc.path
    rejected = []
    if oracle_unavailable_reason() is None:
        with KustoOracle(schema=_sentinel_schema(tmp_path)) as oracle:
            verdicts = oracle.check_many(text for _, text in texts)
        rejected = [(p, [e.message for e in v.errors][:2]) for (p, _), v in zip(texts, verdicts) if not v.ok]
    deep = [r for r in rejected if all("depth exceeds" in m for m in r[1])]  # no semantic pass there
    terminal_report(f"SigmaHQ rules Defender has no table for, on Windows Security / PowerShell / Sysmon: "
                    f"{candidates}; in sentinel {translated} translate (the others read a column "
                    f"SecurityEvent does not have), {len(rejected) - len(deep)} rejected by Microsoft's "
                    f"parser with Sentinel's schemas ({len(deep)} too deep for its semantic pass)")
    assert candidates > 350
    assert translated > 0.85 * candidates
    assert not [r for r in rejected if r not in deep], rejected[:5]


# ------------------------------------------------------------------ registry hives, verified


def test_sigmahq_registry_hives_are_defenders_and_verify_agrees(sigma_windows, terminal_report):
    pytest.importorskip("duckdb_kql")
    from rmmc.verify.runner import verify_rule

    hive = re.compile(r"'(HKLM|HKU|HKCU|HKCR)\\", re.IGNORECASE)
    checked = agree = naming = 0
    for doc in sigma_windows:
        logsource = doc.metadata.get("logsource") or {}
        if not str(logsource.get("category", "")).startswith("registry"):
            continue
        result = translate_document(doc, "kql", EmitOptions(), env="defender-xdr")
        if not result.ok:
            continue
        assert not re.search(r"RegistryKey (startswith|=~|==|contains)[^\n]*'(HKLM|HKU|HKCU|HKCR)\\\\",
                             result.text), result.text
        naming += bool(hive.search(doc.source.text))
        compiled = compile_document(doc)
        _, verdicts = verify_rule(compiled.rule, ["kql", "sigma"], sample=10)
        statuses = {v.target: v.status for v in verdicts}
        checked += 1
        assert "disagree" not in statuses.values(), (doc.path, verdicts)
        agree += statuses.get("kql") == "agree"
    terminal_report(f"SigmaHQ registry rules to kql: {checked} written ({naming} naming a hive), hives as "
                    f"Defender writes them; verify on Defender-shaped events (Sigma on Sysmon-shaped): "
                    f"{agree} agree, 0 disagree")
    assert checked > 200 and naming >= 6 and agree >= checked - 5


# ------------------------------------------------------------------ RMM to Splunk with Sysmon


def _sysmon_fields(reference: Path) -> set[str]:
    out: set[str] = set()
    for path in (reference / "splunk" / "data_sources").glob("sysmon_eventid_*.yml"):
        out.update(yaml.safe_load(path.read_text(encoding="utf-8")).get("fields") or ())
    return out


def test_rmm_to_splunk_sysmon_names_only_addon_fields_and_verifies(rmm_corpus, reference, monkeypatch,
                                                                   terminal_report):
    from rmmc.verify import engines
    from rmmc.verify.runner import verify_rule
    from spl_interp import selects

    def spl_engine(rule, text, events):
        lines = text.rstrip("\n").split("\n")
        first = lines[0].replace("`sysmon` ", "")  # the macro says where the events are: these
        detection = "\n".join([first, *[line for line in lines[1:2] if line.startswith("| where ")]])
        return [i for i, e in enumerate(events)
                if selects(detection, {k: v for k, v in e.items() if v is not None and not isinstance(v, dict)})]

    monkeypatch.setitem(engines.ENGINES, "splunk", [("tests/spl_interp.py", spl_engine)])
    addon = _sysmon_fields(reference)
    env = load_environment("splunk-sysmon")
    refused_naming, written, verified = 0, 0, 0
    for path in iter_rule_files([str(rmm_corpus)]):
        for doc in read_path(path).documents:
            compiled = compile_document(doc)
            if compiled.rule is None:
                continue
            strict = translate_document(doc, "splunk", EmitOptions(), env=env)
            if strict.ok:
                adapted = adapt(compiled.rule, env)
                assert _rule_fields(adapted.rule) <= addon
                written += 1
            else:
                # a missing group key is lossy (refused without --allow-lossy), naming the field too
                named = [d for d in strict.diagnostics if d.is_error and (d.code == "environment" or (
                    d.code == "lossy" and d.message.startswith(env.name + ":")))]
                assert named, (doc.path, [d.message for d in strict.diagnostics if d.is_error])
                assert all(re.search(r"\w+ (has no field|is written)|no field '\w+'|has no source", d.message)
                           for d in named), [d.message for d in named]
                refused_naming += 1
            _, verdicts = verify_rule(compiled.rule, ["splunk"], env=env)
            (v,) = verdicts
            assert v.status != "disagree", (doc.path, v)
            verified += v.status == "agree"
    terminal_report(f"RMM corpus to splunk in splunk-sysmon: {written} written with add-on fields only, "
                    f"{refused_naming} refused naming the fields (or table) Sysmon lacks; with them allowed, "
                    f"{verified} agree on Sysmon-shaped events (tests/spl_interp.py), 0 disagree")
    assert written + refused_naming == 359 and verified >= 240


def test_defender_conventions_reach_splunk_sysmon_verified(monkeypatch):
    """Registry, user and hash values of Defender rules rewritten to Sysmon's convention and
    checked on Sysmon-shaped events (the RMM corpus tests none of the three)."""
    from rmmc.compiler.kql.lower import lower_text
    from rmmc.verify import engines
    from rmmc.verify.runner import verify_rule
    from spl_interp import selects

    def spl_engine(rule, text, events):
        lines = text.rstrip("\n").split("\n")
        detection = "\n".join([lines[0].replace("`sysmon` ", ""),
                               *[line for line in lines[1:2] if line.startswith("| where ")]])
        return [i for i, e in enumerate(events) if selects(detection, {k: v for k, v in e.items() if v is not None})]

    monkeypatch.setitem(engines.ENGINES, "splunk", [("tests/spl_interp.py", spl_engine)])
    queries = [
        "DeviceRegistryEvents | where RegistryKey startswith @'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run' and ActionType == 'RegistryValueSet'",
        "DeviceRegistryEvents | where RegistryKey startswith @'HKEY_USERS\\' and RegistryValueData has 'powershell'",
        "DeviceProcessEvents | where AccountName != 'system' and AccountDomain =~ 'NT AUTHORITY' and FileName =~ 'cmd.exe'",
        "DeviceProcessEvents | where SHA1 =~ '0489a9d0b4342f9c87c03510e0073898864946a5' or SHA256 =~ '" + "a" * 64 + "'",
    ]
    env = load_environment("splunk-sysmon")
    for query in queries:
        rule = lower_text(query).rule
        _, verdicts = verify_rule(rule, ["splunk", "sigma"], env=env)
        assert {v.target: v.status for v in verdicts} == {"splunk": "agree", "sigma": "agree"}, (query, verdicts)


def _rule_fields(rule) -> set[str]:
    from rmmc.compiler import ir

    names = {f.name for f in ir.expr_fields(rule.condition)}
    for stage in rule.stages:
        if isinstance(stage, ir.Summarize):
            names.update(f.name for _, e in stage.group_by for f in ir.expr_fields(e))
            names.update(f.name for a in stage.aggregates for x in a.args for f in ir.expr_fields(x))
    return names
