"""Defender XDR schema data: columns, types, suggestions, logsources, and agreement of our
Sigma field maps with pySigma's microsoft_xdr pipeline (converted for real when installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from rmmc.compiler.schema import KQL_TYPES, Schema, TableSchema, load_schema

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "tools" / "defender_schema.json"
TABLES = {
    "DeviceProcessEvents": "process", "DeviceNetworkEvents": "network", "DeviceFileEvents": "file",
    "DeviceRegistryEvents": "registry", "DeviceImageLoadEvents": "image_load", "DeviceEvents": "device_event",
    "DeviceLogonEvents": "logon", "DeviceFileCertificateInfo": "file_certificate",
    "DeviceInfo": "device_info", "DeviceNetworkInfo": "device_network_info",
}
NO_LOGSOURCE = {"DeviceEvents", "DeviceFileCertificateInfo", "DeviceInfo", "DeviceNetworkInfo"}
# Columns with no Sigma field at all (the pipeline's generic mapping sends ProcessId elsewhere).
NO_SIGMA_FIELD = {("DeviceEvents", "ProcessId")}
# Added to the Microsoft docs after the shared reference list was taken (docs revision 09/06/2024).
NEWER_THAN_REFERENCE = {
    "DeviceProcessEvents": {
        "InitiatingProcessSessionId", "IsInitiatingProcessRemoteSession", "InitiatingProcessRemoteSessionDeviceName",
        "InitiatingProcessRemoteSessionIP", "CreatedProcessSessionId", "IsProcessRemoteSession",
        "ProcessRemoteSessionDeviceName", "ProcessRemoteSessionIP",
    },
}


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def test_every_table_loads_with_known_types(schema: Schema) -> None:
    assert set(schema.tables) == set(TABLES)
    for name, kind in TABLES.items():
        table = schema.table(name)
        assert isinstance(table, TableSchema) and table.name == name and table.event_kind == kind
        assert len(table.columns) >= 15
        assert set(table.columns.values()) <= KQL_TYPES, name
        assert set(table.sentinel_columns.values()) <= KQL_TYPES, name
        assert not set(table.sentinel_columns) & set(table.columns)
    assert schema.table("devicenetworkevents") is None  # table names are case-sensitive
    assert load_schema() is schema


def test_device_tables_share_identity_columns(schema: Schema) -> None:
    for table in schema.tables.values():
        assert table.column_type("Timestamp") == "datetime"
        assert table.column_type("DeviceId") == "string"
        assert table.column_type("DeviceName") == "string"
        assert table.column_type("ReportId") == "long"


def test_documented_types(schema: Schema) -> None:
    net = schema.tables["DeviceNetworkEvents"]
    assert (net.column_type("RemotePort"), net.column_type("InitiatingProcessId")) == ("int", "long")
    assert net.column_type("IsInitiatingProcessRemoteSession") == "bool"
    assert net.column_type("AdditionalFields") == "dynamic"
    assert schema.tables["DeviceLogonEvents"].column_type("IsLocalAdmin") == "bool"  # docs: boolean
    assert schema.tables["DeviceInfo"].column_type("LoggedOnUsers") == "dynamic"
    assert schema.tables["DeviceFileCertificateInfo"].column_type("CrlDistributionPointUrls") == "string"
    assert net.column_type("NoSuchColumn") is None


def test_column_names_are_case_sensitive(schema: Schema) -> None:
    proc = schema.tables["DeviceProcessEvents"]
    assert proc.has_column("SHA1") and not proc.has_column("Sha1") and not proc.has_column("sha1")
    net = schema.tables["DeviceNetworkEvents"]
    assert not net.has_column("AccountUpn") and net.has_column("InitiatingProcessAccountUpn")


def test_suggest_real_corpus_mistakes(schema: Schema) -> None:
    assert schema.tables["DeviceNetworkEvents"].suggest("AccountUpn") == "InitiatingProcessAccountUpn"
    assert schema.tables["DeviceProcessEvents"].suggest("Sha1") == "SHA1"
    assert schema.tables["DeviceFileCertificateInfo"].suggest("Sha1") == "SHA1"


def test_suggest_other_cases(schema: Schema) -> None:
    net = schema.tables["DeviceNetworkEvents"]
    assert net.suggest("RemoteUrl") is None  # an existing column needs no suggestion
    assert net.suggest("RemoteIp") == "RemoteIP"
    assert net.suggest("DeviceNme") == "DeviceName"
    assert net.suggest("ProcessCommandLine") == "InitiatingProcessCommandLine"
    assert net.suggest("SHA256") == "InitiatingProcessSHA256"
    assert net.suggest("TimeGenerated") == "Timestamp"  # Sentinel's name for it
    assert net.suggest("Qwertyuiop") is None
    assert schema.tables["DeviceProcessEvents"].suggest("AccountUpn") is None  # it exists there
    assert schema.suggest_table("DeviceNetworksEvents") == "DeviceNetworkEvents"
    assert schema.suggest_table("deviceprocessevents") == "DeviceProcessEvents"
    assert schema.suggest_table("SigninLogs") is None


def test_sentinel_only_columns(schema: Schema) -> None:
    for table in schema.tables.values():
        assert table.has_sentinel_column("TimeGenerated") and not table.has_column("TimeGenerated")
        assert table.column_type("TimeGenerated") == "datetime"
    # DeviceInfo documents MachineGroup itself; elsewhere it is Sentinel-only.
    assert schema.tables["DeviceInfo"].has_column("MachineGroup")
    assert schema.tables["DeviceEvents"].has_sentinel_column("MachineGroup")


def test_logsources(schema: Schema) -> None:
    t = schema.tables
    assert t["DeviceNetworkEvents"].logsource == {"product": "windows", "category": "network_connection"}
    assert t["DeviceProcessEvents"].logsource == {"product": "windows", "category": "process_creation"}
    for name in NO_LOGSOURCE:
        assert t[name].logsource is None and t[name].logsources == ()
    cases = {
        "process_creation": "DeviceProcessEvents", "network_connection": "DeviceNetworkEvents",
        "image_load": "DeviceImageLoadEvents", "file_event": "DeviceFileEvents", "file_delete": "DeviceFileEvents",
        "file_rename": "DeviceFileEvents", "file_access": "DeviceFileEvents", "file_change": "DeviceFileEvents",
        "registry_event": "DeviceRegistryEvents", "registry_set": "DeviceRegistryEvents",
        "registry_add": "DeviceRegistryEvents", "registry_delete": "DeviceRegistryEvents",
    }
    for category, name in cases.items():
        assert schema.table_for_logsource("windows", category).name == name
        assert schema.table_for_logsource(None, category).name == name
    assert schema.table_for_logsource("windows", "dns_query") is None
    assert schema.table_for_logsource("linux", "process_creation") is None
    assert schema.table_for_logsource("windows", None, "security") is None  # needs a logon EventID
    assert schema.table_for_logsource("windows", None, "security", [4688]) is None
    assert schema.table_for_logsource("windows", None, "security", [4624, 4625]).name == "DeviceLogonEvents"
    for table in t.values():
        if table.logsource is not None:
            primary = dict(table.logsource)
            assert any({k: v for k, v in e.items() if k != "event_ids"} == primary for e in table.logsources)


def test_maps_are_consistent(schema: Schema) -> None:
    for name, table in schema.tables.items():
        assert set(table.to_sigma) <= set(table.columns), name
        missing = {c for c in table.columns if c not in table.to_sigma}
        assert missing == {c for (t, c) in NO_SIGMA_FIELD if t == name}, name
        for column, field in table.to_sigma.items():
            assert table.column_for_sigma(field) == column, (name, column, field)
            assert table.sigma_field(column) == field
        assert set(table.from_sigma.values()) <= set(table.columns), name
        assert table.non_taxonomy <= set(table.to_sigma), name
        for column in table.non_taxonomy:
            assert table.to_sigma[column] == column and not table.is_taxonomy_field(column)
        assert table.name_only <= set(table.to_sigma) - table.non_taxonomy, name
        for short, full in table.basename_of.items():
            assert table.has_column(short) and table.has_column(full)
        if table.logsource is None:  # no SigmaHQ logsource, so no taxonomy field either
            assert table.non_taxonomy == set(table.to_sigma), name


def test_taxonomy_choices(schema: Schema) -> None:
    proc = schema.tables["DeviceProcessEvents"]
    assert proc.sigma_field("FolderPath") == "Image"
    assert proc.sigma_field("InitiatingProcessFolderPath") == "ParentImage"
    assert proc.sigma_field("ProcessVersionInfoCompanyName") == "Company"
    assert proc.sigma_field("ProcessVersionInfoProductName") == "Product"
    assert proc.sigma_field("SHA1") == "sha1"
    net = schema.tables["DeviceNetworkEvents"]
    assert net.sigma_field("InitiatingProcessFolderPath") == "Image"
    assert net.sigma_field("RemoteUrl") == "DestinationHostname"
    assert net.sigma_field("RemoteIP") == "DestinationIp"
    for column in ("InitiatingProcessVersionInfoCompanyName", "InitiatingProcessVersionInfoProductName"):
        assert net.sigma_field(column) == column and column in net.non_taxonomy
    assert net.column_for_sigma("Company") == "InitiatingProcessVersionInfoCompanyName"  # pipeline's generic map
    cert = schema.tables["DeviceFileCertificateInfo"]
    for column in ("DeviceId", "DeviceName", "ReportId", "Signer"):
        assert cert.sigma_field(column) == column and column in cert.non_taxonomy
    files = schema.tables["DeviceFileEvents"]
    assert files.column_for_sigma("User") == "RequestAccountName"  # what the pipeline does ...
    assert files.sigma_field("RequestAccountName") == "RequestAccountName"  # ... but not what User means
    assert schema.tables["DeviceRegistryEvents"].sigma_field("RegistryKey") == "TargetObject"


def test_shared_reference_agrees() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"shared reference list not present: {REFERENCE}")
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))["tables"]
    schema = load_schema()
    compared = 0
    for name, spec in reference.items():
        table = schema.table(name)
        if table is None:
            continue
        ref_cols = dict(part.strip().split(":") for part in spec.strip().strip("()").split(","))
        ours = list(table.columns)
        assert [c for c in ours if c in ref_cols] == list(ref_cols), f"{name}: columns or order differ"
        assert {c: table.columns[c] for c in ref_cols} == ref_cols, f"{name}: types differ"
        assert set(ours) - set(ref_cols) == NEWER_THAN_REFERENCE.get(name, set()), name
        compared += 1
    assert compared >= 8


# --- pySigma's microsoft_xdr pipeline ---------------------------------------------------------

@pytest.fixture(scope="module")
def xdr():
    mappings = pytest.importorskip(
        "sigma.pipelines.microsoftxdr.mappings",
        reason="pySigma Kusto backend not installed (pip install pysigma-backend-kusto)")
    tables = pytest.importorskip("sigma.pipelines.microsoftxdr.tables")
    return mappings, tables


def _convert(logsource: dict | None, selection: dict, table: str | None = None) -> str:
    """Convert one Sigma rule with pySigma's Kusto backend and microsoft_xdr pipeline."""
    from sigma.backends.kusto import KustoBackend
    from sigma.collection import SigmaCollection
    from sigma.pipelines.microsoftxdr import microsoft_xdr_pipeline

    rule = {"title": "schema probe", "status": "test", "logsource": logsource or {"product": "windows"},
            "detection": {"sel": selection, "condition": "sel"}}
    backend = KustoBackend(processing_pipeline=microsoft_xdr_pipeline(query_table=table))
    return backend.convert(SigmaCollection.from_yaml(yaml.safe_dump(rule)))[0]


def _probe(table: TableSchema, selection: dict) -> str:
    """Convert a selection the way lowering would for this table (logsource, EventID or query_table)."""
    if table.logsource is None:
        return _convert(None, selection, table=table.name)
    entry = table.logsources[0]
    if "event_ids" in entry:
        return _convert(dict(table.logsource), {"EventID": entry["event_ids"][0], **selection})
    return _convert(dict(table.logsource), selection)


def _columns(query: str) -> tuple[str, list[str]]:
    head, _, body = query.partition("\n")
    return head, re.findall(r"\b([A-Za-z_]\w*)\s*(?:=~|==|!=|has|contains|startswith|endswith)", body)


def test_pipeline_mappings_agree_with_from_sigma(schema: Schema, xdr) -> None:
    mappings, _ = xdr
    field_maps = mappings.MICROSOFT_XDR_FIELD_MAPPINGS
    checked = 0
    for name, table in schema.tables.items():
        own = field_maps.table_mappings.get(name, {})
        for field, target in own.items():
            target = target[0] if isinstance(target, list) else target
            assert table.column_for_sigma(field) == target, (name, field)
            checked += 1
        for field, target in field_maps.generic_mappings.items():
            if field not in own and target in table.columns:
                assert table.column_for_sigma(field) == target, (name, field)
                checked += 1
    assert checked > 100


def test_pipeline_routes_categories_like_us(schema: Schema, xdr) -> None:
    mappings, _ = xdr
    for category, name in mappings.CATEGORY_TO_TABLE_MAPPINGS.items():
        assert schema.table_for_logsource("windows", category).name == name


def test_pipeline_table_columns_match_docs(schema: Schema, xdr) -> None:
    _, tables = xdr
    for name, table in schema.tables.items():
        theirs = {k.strip(): ("bool" if v["data_type"] == "boolean" else v["data_type"])
                  for k, v in tables.MICROSOFT_XDR_TABLES[name].items()}
        assert list(theirs) == list(table.columns), name
        for column, kind in theirs.items():
            # JSON-valued columns: the Defender pages say string, Microsoft's Sentinel copy says dynamic
            assert table.columns[column] == kind or table.columns[column] == "dynamic", (name, column)


def test_every_emitted_field_converts_back_to_its_column(schema: Schema, xdr) -> None:
    converted = 0
    for name, table in schema.tables.items():
        for column, field in table.to_sigma.items():
            if column in table.pysigma_rejects:
                continue
            head, cols = _columns(_probe(table, {field: "probe-value"}))
            assert (head, cols) == (name, [column]), (name, column, field)
            converted += 1
    assert converted > 400


def test_category_rules_land_on_our_table_and_columns(schema: Schema, xdr) -> None:
    for table in schema.tables.values():
        for entry in table.logsources:
            logsource = {k: v for k, v in entry.items() if k != "event_ids"}
            picked = [c for c in table.to_sigma if c not in table.non_taxonomy][:3]
            picked += [c for c in table.to_sigma if c in table.non_taxonomy][:2]
            selection = {table.to_sigma[c]: f"v{i}" for i, c in enumerate(picked)}
            if "event_ids" in entry:
                selection = {"EventID": entry["event_ids"][0], **selection}
            head, cols = _columns(_convert(logsource, selection))
            assert head == table.name, entry
            assert sorted(cols) == sorted(picked), entry
            routed = schema.table_for_logsource(logsource.get("product"), logsource.get("category"),
                                                logsource.get("service"), entry.get("event_ids"))
            assert routed is table


def test_non_taxonomy_columns_pass_through_unchanged(schema: Schema, xdr) -> None:
    from sigma.exceptions import SigmaTransformationError

    logsource = {"product": "windows", "category": "network_connection"}
    head, cols = _columns(_convert(logsource, {
        "InitiatingProcessVersionInfoCompanyName": "idrive", "InitiatingProcessVersionInfoProductName": "remotepc",
        "DestinationHostname": "remotepc.com"}))
    assert head == "DeviceNetworkEvents"
    assert sorted(cols) == ["InitiatingProcessVersionInfoCompanyName", "InitiatingProcessVersionInfoProductName",
                            "RemoteUrl"]
    # The pass-through is checked against the table's columns: a name that is no column is refused,
    # so the names we emit must be real columns of the routed table.
    with pytest.raises(SigmaTransformationError):
        _convert(logsource, {"AccountUpn": "x"})
    head, cols = _columns(_convert(None, {"Signer": "Microsoft", "IsTrusted": "true"},
                                   table="DeviceFileCertificateInfo"))
    assert (head, sorted(cols)) == ("DeviceFileCertificateInfo", ["IsTrusted", "Signer"])
