#!/usr/bin/env python3
"""Generate the RMM pack (rules/rmm/) from the RMM hunting-rule corpus.

    python tools/rmm_pack.py [--corpus ../shared/corpus/rmm] [--out rules/rmm] [--check]

The corpus is a snapshot of jischell-msft/RemoteManagementMonitoringTools (commit 7bb251e,
MIT License, Copyright (c) 2023 J Schell): per remote-management tool, Sentinel/Defender hunting
rules as YAML (`rmm_<Tool>_<kind>.yaml`, kinds createproc, filesig, netconn) and the same queries
in Markdown (`RMM_AHQ_<Tool>.md`), plus one rule over every tool's network indicators.  This
script writes every tool and rule kind that has a query as a hunt document (the layout of
rules/*.txt: hypothesis, `KQL Query`, YAML metadata, the data-connector table, false-positive
scenarios), one file per rule under rules/rmm/<Tool>/, with:

- the YAML rule where there is one, else the Markdown query (its `let rmmX = ...; rmmX` wrapper
  and `extend rmmXName` column dropped, so it reads like the YAML rules);
- the corpus's own mistakes fixed, and each fix said in the file (a `Fixed:` line above the
  query): `AccountUpn` where the table has no such column (the schema's own column, e.g.
  InitiatingProcessAccountUpn), the syntax errors `rmmc check` reports (FIXES below), and the
  malformed YAML (the metadata is written as valid YAML);
- where the YAML rule and the Markdown query of one kind disagree, a `Note:` line (NOTES).

The output is deterministic (a fixed `date`, ids from the source or derived from the tool and
kind), so running the script again gives the committed pack byte for byte; `--check` says
whether it does (tests/test_rmm_pack.py runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus" / "rmm"
OUT = ROOT / "rules" / "rmm"
UPSTREAM = "jischell-msft/RemoteManagementMonitoringTools"
COMMIT = "7bb251e"
COPYRIGHT = "Copyright (c) 2023 J Schell"
PACK_DATE = "2026-12-06"  # the rules' `date`: fixed, so every output is the same run to run
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/{UPSTREAM}")

KINDS = {  # kind -> (Markdown heading, title part)
    "createproc": ("Create Process", "Create Process"),
    "filesig": ("File Signature", "File Signature"),
    "netconn": ("Network Connection", "Network Connection"),
}
DESCRIPTION = ("Remote Monitoring and Management (RMM) programs are IT to manage remote endpoints. "
               "Attackers have begun to abuse these programs to persist or provide C2 channels.\n"
               f"https://github.com/{UPSTREAM}")

# Syntax errors in the corpus (what `rmmc check ../shared/corpus/rmm` reports) and their fix:
# (tool, kind) -> [(text as written, text meant, what is said in the rule file)].
FIXES: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("DWService", "createproc"): [
        ("| distinct Sha1", "| distinct SHA1",
         "`distinct Sha1`: DeviceFileCertificateInfo's column is SHA1 (KQL names are case-sensitive)"),
        ("| Sha1 in (rmmInitialFileSet)", "| where SHA1 in (rmmInitialFileSet)",
         "`| Sha1 in (...)` is not an operator (a syntax error): `| where SHA1 in (...)`, "
         "DeviceProcessEvents' column being SHA1"),
    ],
    ("DWService", "netconn"): [
        ("| distinct Sha1", "| distinct SHA1",
         "`distinct Sha1`: DeviceFileCertificateInfo's column is SHA1 (KQL names are case-sensitive)"),
    ],
    ("Level", "createproc"): [
        ("FolderPath has_all has_any (", "FolderPath has_any (",
         "`has_all has_any (` is a syntax error: `has_any (` (either install folder), as the "
         "Markdown version of this query (RMM_AHQ_Level.md) writes it"),
    ],
    ("JumpCloud", "createproc"): [
        ("| where ( ProcessVersionInfoCompanyName has 'JumpCloud'\n    or isempty(ProcessVersionInfoCompanyName)\n",
         "| where ( ProcessVersionInfoCompanyName has 'JumpCloud'\n    or isempty(ProcessVersionInfoCompanyName) )\n",
         "an unclosed `(` (a syntax error): closed after the company test, as the JumpCloud "
         "network rule groups it (company is JumpCloud or empty)"),
    ],
}

# What the generator cannot tell by itself: said in the rule file as `Note:` lines.
NOTES: dict[tuple[str, str], list[str]] = {
    ("NetSupport", "filesig"): [
        "RMM_AHQ_NetSupport.md has a wider version of this query (Signer has_any ('NetSupport', "
        "'CrossTec')); the YAML rule is kept. CrossTec has its own rules in this pack.",
    ],
    ("RPort", "netconn"): [
        "the source tests InitiatingProcessVersionInfoCompanyName has 'RealVNC' for RPort, which "
        "looks copied from the RealVNC rule; kept as the source has it (unverified).",
    ],
}

HYPOTHESIS = {
    "netconn": ("The hypothesis is that an adversary is using {tool}, a remote monitoring and "
                "management (RMM) tool, to open network connections to its vendor's servers for "
                "remote control or command and control. SOC teams should hunt for these "
                "connections from {tool}'s own processes and confirm that each device's use of "
                "{tool} is sanctioned."),
    "createproc": ("The hypothesis is that an adversary is running {tool}, a remote monitoring "
                   "and management (RMM) tool, on endpoints to keep remote access or a command "
                   "and control channel. SOC teams should hunt for {tool}'s processes and confirm "
                   "that each device's use of {tool} is sanctioned."),
    "filesig": ("The hypothesis is that an adversary has brought {tool}, a remote monitoring and "
                "management (RMM) tool, onto endpoints: files signed by its publisher are a first "
                "sign of an installation for remote access. SOC teams should hunt for these files "
                "and confirm that each device's use of {tool} is sanctioned."),
}


@dataclass
class Rule:
    tool: str
    kind: str
    query: str
    source: str  # the corpus file the query comes from
    metadata: dict
    fixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    website: str | None = None
    context: str | None = None
    exclusion: str | None = None

    @property
    def path(self) -> str:
        if self.tool == "NetworkIndicators":
            return "NetworkIndicators/rmm_all_netconn.txt"
        return f"{self.tool}/rmm_{self.tool}_{self.kind}.txt"


# ------------------------------------------------------------------ reading the corpus


def yaml_rule(path: Path) -> tuple[dict, str, bool]:
    """The metadata, the query (dedented, lines right-trimmed) and whether the file was valid
    YAML.  Corpus files put `dataTypes:` at the level of the connector list's items (invalid
    YAML): re-indented under the item, which is what it means."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    head, _, body = text.partition("\nquery: |")
    try:
        yaml.safe_load(text)
        valid = True
    except yaml.YAMLError:
        valid = False
    fixed_head = re.sub(r"(?m)^(\s*)- connectorId: (.*)\n\1dataTypes:", r"\1- connectorId: \2\n\1  dataTypes:", head)
    metadata = yaml.safe_load(fixed_head)
    lines = body.split("\n")[1:]
    indent = min(len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip())
    query = "\n".join(ln[indent:].rstrip() for ln in lines).strip("\n")
    return metadata, query, valid


def markdown_queries(path: Path) -> dict[str, str]:
    """kind -> query of each `### <kind>` section of an RMM_AHQ_<Tool>.md (empty ones left out),
    unwrapped from `let rmmX = ...; rmmX` and without its `extend rmmXName` column."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    out = {}
    headings = {heading: kind for kind, (heading, _) in KINDS.items()}
    for match in re.finditer(r"(?ms)^### ([^\n]+?)[ \t]*\n(?:(?!```)[^\n]*\n)*?```[^\n]*\n(.*?)```", text):
        kind = headings.get(match.group(1).strip())
        body = match.group(2)
        if kind is None or not body.strip():
            continue
        if not re.search(r"(?m)^\s*Device\w+\s*$", body):  # prose where a query would be
            SKIPPED.append(f"{path.parent.name} {KINDS[kind][0].lower()}: the source has no query, "
                           f"only the words \"{' '.join(body.split())}\"")
            continue
        out[kind] = unwrap(body)
    return out


SKIPPED: list[str] = []  # sections of the corpus that hold no query (said in NOTICE)


def unwrap(body: str) -> str:
    lines = [ln.rstrip() for ln in body.strip("\n").split("\n")]
    name = None
    kept = []
    for ln in lines:
        wrapper = re.fullmatch(r"let (rmm\w+) =", ln.strip())
        if wrapper and name is None:
            name = wrapper.group(1)
            continue
        if re.fullmatch(r"\| extend rmm\w+Name = '[^']*'", ln.strip()):
            continue
        kept.append(ln)
    while kept and kept[-1].strip() in (";", name or "", ""):
        kept.pop()
    return "\n".join(kept)


def summary(tool_dir: Path) -> tuple[str | None, str | None]:
    """The tool's website and historical context from RMM_Summary_<Tool>.md, where given."""
    path = next(tool_dir.glob("RMM_Summary_*.md"), None)
    if path is None:
        return None, None
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")

    def items(heading: str) -> list[str]:
        section = re.search(rf"(?ms)^### {re.escape(heading)}[^\n]*\n(.*?)(?=^### |\Z)", text)
        if not section:
            return []
        return [m.group(1).strip() for m in re.finditer(r"(?m)^-\s*(.*)$", section.group(1))
                if m.group(1).strip()]

    sites = items("Company/ Project website:") or items("Company/ Project website")
    context = items("Historical context and detail")
    return (sites[0] if sites else None), ("; ".join(context) if context else None)


def normal(query: str) -> str:
    """A query with comments, spacing and trailing list commas ignored (to compare versions)."""
    text = re.sub(r"\s+", " ", re.sub(r"(?m)//.*$", "", query)).replace("( ", "(").replace(" )", ")")
    return text.replace(",)", ")").strip()


def corpus_rules(corpus: Path) -> list[Rule]:
    rules = []
    for tool_dir in sorted((corpus / "RMM").iterdir(), key=lambda p: p.name.lower()):
        tool = tool_dir.name
        md_path = next(tool_dir.glob("RMM_AHQ_*.md"), None)
        md = markdown_queries(md_path) if md_path else {}
        website, context = summary(tool_dir)
        for kind in KINDS:
            yaml_path = tool_dir / f"rmm_{tool}_{kind}.yaml"
            fixes = []
            if yaml_path.exists():
                metadata, query, valid = yaml_rule(yaml_path)
                source = yaml_path.relative_to(corpus).as_posix()
                if not valid:
                    fixes.append("the source's metadata is not valid YAML (`dataTypes:` at the level of "
                                 "the connector list's items): written as valid YAML, `dataTypes` under "
                                 "its connector")
            elif kind in md:
                query = md[kind]
                source = md_path.relative_to(corpus).as_posix()
                metadata = derived_metadata(tool, kind, query)
                fixes.append(f"the source has no YAML rule for this kind: the query is the "
                             f"{KINDS[kind][0]} section of {md_path.name}, without its `let rmmX = "
                             "...; rmmX` wrapper and `extend` of the tool's name; the metadata is "
                             "written as the YAML rules have it (id derived from tool and kind)")
            else:
                continue
            rule = Rule(tool, kind, query, source, metadata, fixes, list(NOTES.get((tool, kind), [])),
                        website, context)
            apply_fixes(rule)
            if yaml_path.exists() and kind in md and normal(md[kind]) != normal(query) \
                    and (tool, kind) not in NOTES and (tool, kind) not in FIXES:
                raise SystemExit(f"{tool} {kind}: the YAML and Markdown queries differ: say how in NOTES")
            rules.append(rule)
    metadata, query, valid = yaml_rule(corpus / "Network Indicators" / "rmm__all_netconn.yaml")
    rule = Rule("NetworkIndicators", "netconn", query, "Network Indicators/rmm__all_netconn.yaml",
                metadata, [] if valid else [
                    "the source's metadata is not valid YAML (`dataTypes:` at the level of the connector "
                    "list's items): written as valid YAML, `dataTypes` under its connector"],
                exclusion="remove the sanctioned tool's rows from rmm_networkSet (the source's advice: "
                          "\"If a tool is intentionally being used, it can be commented out or removed "
                          "from the listing.\")")
    apply_fixes(rule)
    rules.append(rule)
    return rules


def derived_metadata(tool: str, kind: str, query: str) -> dict:
    table = re.search(r"(?m)^(Device\w+)\s*$", query)
    return {
        "id": str(uuid.uuid5(NAMESPACE, f"{tool}/{kind}")),
        "name": f"Remote Management and Monitoring tool - {tool} - {KINDS[kind][1]}",
        "description": DESCRIPTION + "\n",
        "requiredDataConnectors": [{"connectorId": "MicrosoftThreatProtection",
                                    "dataTypes": [table.group(1)] if table else []}],
        "tactics": "CommandAndControl",
        "relevantTechniques": "T1219",
    }


def apply_fixes(rule: Rule) -> None:
    """The syntax fixes of FIXES, then `AccountUpn` where the table has no such column."""
    from rmmc.compiler.schema import load_schema

    for wrong, right, said in FIXES.get((rule.tool, rule.kind), []):
        if wrong not in rule.query:
            raise SystemExit(f"{rule.tool} {rule.kind}: {wrong!r} is not in the query any more")
        rule.query = rule.query.replace(wrong, right)
        rule.fixes.append(said)
    # a trailing comma before a list's `)` (MSP360_CloudBerry and ZohoAssist network rules)
    trailing = re.compile(r"(')[ \t]*,([ \t]*(?://[^\n]*)?\n[ \t]*\))")
    if trailing.search(rule.query):
        rule.query = trailing.sub(r"\1\2", rule.query)
        rule.fixes.append("a trailing comma after the last item of a list is a syntax error in KQL: removed")
    tables = re.findall(r"(?m)^(Device\w+)\s*$", rule.query)  # the last one is the query's own
    table = load_schema().table(tables[-1]) if tables else None
    if table is not None and not table.has_column("AccountUpn") and re.search(r"\bAccountUpn\b", rule.query):
        table_name = tables[-1]
        real = table.suggest("AccountUpn")
        rule.query = re.sub(r"(?<![\w.])AccountUpn\b", real, rule.query)
        rule.fixes.append(f"`summarize ... by AccountUpn`: {table_name} has no column AccountUpn; "
                          f"the account of the connecting process is {real}")


# ------------------------------------------------------------------ writing the pack


def scalar(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._()/&+-]*", value) and not value.endswith(" "):
        return value
    return json.dumps(value, ensure_ascii=False)


def block(text: str, indent: str = "  ") -> str:
    return "\n".join(indent + ln if ln else "" for ln in text.rstrip("\n").split("\n"))


def hunt_document(rule: Rule) -> str:
    meta = rule.metadata
    tool = meta["name"].split(" - ")[1] if " - " in meta["name"] else rule.tool
    tables = [t for c in meta.get("requiredDataConnectors", []) for t in c.get("dataTypes", [])]
    hypothesis = (HYPOTHESIS[rule.kind].format(tool=tool) if rule.tool != "NetworkIndicators" else
                  "The hypothesis is that an adversary is using one of the remote monitoring and "
                  "management (RMM) tools this list names to open network connections for remote "
                  "control or command and control. SOC teams should hunt for connections to any "
                  "RMM vendor's servers and confirm that each tool in use is sanctioned.")
    lines = [hypothesis,
             f"Source: {rule.source} of {UPSTREAM} (commit {COMMIT}), MIT License, {COPYRIGHT}; "
             "see rules/rmm/LICENSE. Generated by tools/rmm_pack.py."]
    lines += [f"Fixed: {fix}." for fix in rule.fixes]
    lines += [f"Note: {note}" for note in rule.notes]
    lines += ["KQL Query", rule.query]
    connectors = "\n".join(
        f"  - connectorId: {scalar(c['connectorId'])}\n    dataTypes:\n"
        + "\n".join(f"      - {scalar(t)}" for t in c.get("dataTypes", []))
        for c in meta.get("requiredDataConnectors", []))
    description = meta.get("description") or DESCRIPTION
    lines += [f"id: {scalar(str(meta['id']))}",
              f"name: {scalar(meta['name'])}",
              "description: |",
              block(description),
              "requiredDataConnectors:",
              connectors,
              f"tactics: {scalar(str(meta.get('tactics', 'CommandAndControl')))}",
              f"relevantTechniques: {scalar(str(meta.get('relevantTechniques', 'T1219')))}",
              f"date: {PACK_DATE}",
              "query: |",
              block(rule.query)]
    lines += ["| Sentinel Table | Notes |", "|---|---|"]
    lines += [f"{t} | Ensure this data connector is enabled |" for t in tables]
    scenario = f"Sanctioned use of {tool}" if rule.tool != "NetworkIndicators" else "Sanctioned RMM tools"
    description = (f"The organisation's IT or a managed service provider uses {tool}"
                   + (f" ({rule.website})" if rule.website else "")
                   + " to support these devices: confirm with the device owner and leave the "
                     "approved devices out of the hunt."
                   if rule.tool != "NetworkIndicators" else
                   "Some of these tools are in approved use in the organisation.")
    if rule.context:
        description += f" Context from the source: {rule.context}."
    lines += [f"Scenario: {scenario}", f"Description: {description}"]
    if rule.exclusion:
        lines.append(f"Filter/Exclusion: {rule.exclusion}")
    return "\n".join(lines) + "\n"


def check_metadata(rule: Rule, text: str) -> None:
    """The metadata block loads as YAML and says what was meant (a guard on `scalar`)."""
    start = text.index("\nid: ") + 1
    end = text.index("\n| Sentinel Table |")
    data = yaml.safe_load(text[start:end])
    assert data["id"] == str(rule.metadata["id"]) and data["name"] == rule.metadata["name"], rule.path
    assert data["query"].rstrip("\n") == rule.query, rule.path


NOTICE = f"""RMM pack: hunting rules for remote monitoring and management (RMM) tools

Derived from {UPSTREAM} (commit {COMMIT}), MIT License,
{COPYRIGHT}: the license is in LICENSE beside this file and applies to these rules.

Every file here is generated by tools/rmm_pack.py from the corpus copy in
../shared/corpus/rmm: one hunt document per tool and rule kind that has a query (create
process, file signature, network connection) and one over every tool's network indicators.
Each file says where its query comes from (a `Source:` line) and what was corrected from the
source (`Fixed:` lines): AccountUpn on tables without that column, the syntax errors
`rmmc check` reports in the corpus, and the metadata YAML that does not parse.
Build it for every environment: rmmc build rules/rmm -o dist
"""


def generate(corpus: Path) -> dict[str, str]:
    """relative path -> text of every file of the pack."""
    SKIPPED.clear()
    out = {}
    for rule in corpus_rules(corpus):
        text = hunt_document(rule)
        check_metadata(rule, text)
        out[rule.path] = text
    out["LICENSE"] = (corpus / "LICENSE").read_text(encoding="utf-8")
    out["NOTICE"] = NOTICE + "".join(f"\nNot in the pack: {s}." for s in SKIPPED) + ("\n" if SKIPPED else "")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the pack differs from what would be generated")
    args = parser.parse_args(argv)
    files = generate(args.corpus)
    existing = {p.relative_to(args.out).as_posix() for p in args.out.rglob("*") if p.is_file()} \
        if args.out.is_dir() else set()
    differs = sorted(p for p in files if not (args.out / p).is_file()
                     or (args.out / p).read_text(encoding="utf-8") != files[p])
    extra = sorted(existing - set(files))
    if args.check:
        for p in differs:
            print(f"{p}: differs from the generated pack")
        for p in extra:
            print(f"{p}: not generated")
        return 1 if differs or extra else 0
    for p in extra:
        (args.out / p).unlink()
    for p in differs:
        (args.out / p).parent.mkdir(parents=True, exist_ok=True)
        (args.out / p).write_text(files[p], encoding="utf-8")
    rules = sum(1 for p in files if p.endswith(".txt"))
    print(f"{rules} rules in {args.out} ({len(differs)} files written, {len(extra)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
