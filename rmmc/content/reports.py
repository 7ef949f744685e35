"""A build or a check as a report for CI systems: JSON, JUnit XML or SARIF 2.1.0.

- json: `BuildResult.to_json()`: the manifest, what the run did, and the check's findings.
- junit: one `<testsuite>` per environment and target, one `<testcase>` per rule in it: a
  `<failure>` for each check finding about it (regression, errors, stale), `<skipped>` when the
  target refuses the rule (the reason as its message), passed otherwise; findings about the tree
  as a whole are one more suite, `dist`.
- sarif: one run of the tool `rmmc`; each result located in the rule file (its path as given
  plus the rule's path, `file:line:col`), so code scanning annotates the rule in the pull
  request: check findings are errors, the rule's own errors and warnings keep their level, a
  target's refusal is a note (its first error) and a lossy translation's differences warnings.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rmmc.content.build import BuildResult
from rmmc.content.records import RuleResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LOSSY_CODES = ("lossy", "loose")


def render(kind: str, result: BuildResult) -> str:
    if kind == "json":
        return json.dumps(result.to_json(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if kind == "junit":
        return junit(result)
    if kind == "sarif":
        return json.dumps(sarif(result), indent=1, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown report {kind!r}")


def _source_path(result: BuildResult, rule_path: str) -> str:
    """The rule file as the command named it (rules directory + path in it), POSIX."""
    base = result.manifest.get("rules_dir", ".")
    if os.path.isfile(base):
        return Path(base).as_posix()
    return Path(os.path.normpath(os.path.join(base, rule_path))).as_posix()


def _findings_of(result: BuildResult, rule: RuleResult, env: str, target: str) -> list:
    return [f for f in result.findings or ()
            if (f.path, f.index) == rule.key and f.target in (None, target)
            and f.env in (None, env)]


# ------------------------------------------------------------------ JUnit


def junit(result: BuildResult) -> str:
    suites = ET.Element("testsuites", name="rmmc build")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for env in result.manifest["environments"]:
        for build_target in env["targets"]:
            target = build_target["target"]
            suite = ET.SubElement(suites, "testsuite", name=f"{env['name']}/{target}")
            counts = {"tests": 0, "failures": 0, "skipped": 0}
            for rule in result.rules:
                t = next((t for t in rule.targets if (t.env, t.target) == (env["name"], target)), None)
                if t is None:
                    continue
                source = _source_path(result, rule.path)
                case = ET.SubElement(suite, "testcase", name=_case_name(rule),
                                     classname=f"{env['name']}.{target}", file=source,
                                     line=str(rule.query_line or 1))
                counts["tests"] += 1
                findings = _findings_of(result, rule, env["name"], target)
                for f in findings:
                    failure = ET.SubElement(case, "failure", message=f"{f.kind}: {f.message}", type=f.kind)
                    failure.text = f.text()
                if findings:
                    counts["failures"] += 1
                elif t.verdict == "refused":
                    errors = [d["message"] for d in rule.diagnostics + t.diagnostics if d["severity"] == "error"]
                    ET.SubElement(case, "skipped", message="refused: " + (errors[0] if errors else "not translated"))
                    counts["skipped"] += 1
                notes = [f"{d['severity']}: {d['message']}" for d in t.diagnostics]
                if notes:
                    ET.SubElement(case, "system-out").text = "\n".join(notes)
            for key, value in counts.items():
                suite.set(key, str(value))
                totals[key] += value
            suite.set("errors", "0")
    tree_findings = [f for f in result.findings or () if f.path is None]
    if tree_findings:
        suite = ET.SubElement(suites, "testsuite", name="dist", tests="1", failures="1",
                              skipped="0", errors="0")
        case = ET.SubElement(suite, "testcase", name="the built tree", classname="dist")
        for f in tree_findings:
            ET.SubElement(case, "failure", message=f"{f.kind}: {f.message}", type=f.kind).text = f.text()
        totals["tests"] += 1
        totals["failures"] += 1
    for key, value in totals.items():
        suites.set(key, str(value))
    suites.set("errors", "0")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _case_name(rule: RuleResult) -> str:
    where = rule.path + (f" #{rule.index + 1}" if rule.index else "")
    return f"{rule.title} ({where})" if rule.title else where


# ------------------------------------------------------------------ SARIF


_LEVELS = {"error": "error", "warning": "warning", "note": "note"}
_RULE_TEXT = {
    "check/regression": "A translation got worse than the manifest records",
    "check/errors": "A rule or a translation has more errors than the manifest records",
    "check/stale": "The built tree is not what the build would write",
    "target/refused": "A target cannot express the rule exactly",
    "target/lossy": "A translation fires on different events than the rule",
}


def sarif(result: BuildResult) -> dict[str, Any]:
    from rmmc import __version__

    results: list[dict[str, Any]] = []
    for f in result.findings or ():
        uri = _source_path(result, f.path) if f.path else None
        results.append(_result(f"check/{f.kind}", "error",
                               f.message + (f" [{f.env}/{f.target}]" if f.target else ""),
                               uri, f.line, f.column, env=f.env, target=f.target))
    for rule in result.rules:
        uri = _source_path(result, rule.path)
        for d in rule.diagnostics:
            if d["severity"] in ("error", "warning"):
                results.append(_diagnostic_result(d, "rule/" + (d.get("code") or "diagnostic"),
                                                  _LEVELS[d["severity"]], d["message"], uri))
        for t in rule.targets:
            scope = f"[{t.env}/{t.target}] "
            if t.verdict == "refused":
                first = next((d for d in t.diagnostics if d["severity"] == "error"), None)
                if first is not None:
                    results.append(_diagnostic_result(first, "target/refused", "note",
                                                      scope + first["message"], uri, t.env, t.target))
            for d in t.diagnostics:
                if d.get("code") in LOSSY_CODES and d["severity"] != "error":
                    results.append(_diagnostic_result(d, "target/lossy", "warning",
                                                      scope + d["message"], uri, t.env, t.target))
    rule_ids = sorted({r["ruleId"] for r in results})
    driver = {"name": "rmmc", "version": __version__, "semanticVersion": __version__,
              "rules": [{"id": rid, "shortDescription": {"text": _RULE_TEXT.get(rid, rid.split("/", 1)[1])}}
                        for rid in rule_ids]}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": driver}, "results": results,
                      "columnKind": "unicodeCodePoints"}]}


def _diagnostic_result(d: dict[str, Any], rule_id: str, level: str, message: str, uri: str,
                       env: str | None = None, target: str | None = None) -> dict[str, Any]:
    return _result(rule_id, level, message, uri, d.get("line"), d.get("column"),
                   d.get("end_line"), d.get("end_column"), env=env, target=target)


def _result(rule_id: str, level: str, message: str, uri: str | None, line: int | None,
            column: int | None, end_line: int | None = None, end_column: int | None = None,
            env: str | None = None, target: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ruleId": rule_id, "level": level, "message": {"text": message}}
    if uri is not None:
        location: dict[str, Any] = {"artifactLocation": {"uri": _uri(uri)}}
        if line:
            region: dict[str, Any] = {"startLine": line, "startColumn": column or 1}
            if end_line and end_column and (end_line, end_column) >= (line, column or 1):
                region["endLine"], region["endColumn"] = end_line, end_column
            location["region"] = region
        out["locations"] = [{"physicalLocation": location}]
    if env or target:
        out["properties"] = {"environment": env, "target": target}
    return out


def _uri(path: str) -> str:
    """A relative path stays relative (code scanning resolves it against the repository);
    an absolute one becomes a file URI.  Characters a URI cannot hold are escaped."""
    from urllib.parse import quote

    if os.path.isabs(path):
        return Path(path).as_uri()
    return quote(path, safe="/-._~")
