"""Field profiles: Defender column -> field name in another naming (rmmc.compiler.schema.profiles)."""

from __future__ import annotations

from importlib.resources import files

import pytest

from rmmc.compiler.schema import load_schema
from rmmc.compiler.schema.profiles import PROFILES, Profile, load_profile


def test_profiles_listed_and_shipped():
    assert PROFILES == ("sigma", "cim", "ecs", "defender")
    for name in PROFILES:
        assert files("rmmc.compiler.schema.profiles").joinpath(f"{name}.json").is_file()
        assert isinstance(load_profile(name), Profile)


def test_cached_and_unknown():
    assert load_profile("ecs") is load_profile("ecs")
    with pytest.raises(ValueError, match="unknown field profile"):
        load_profile("ocsf")


@pytest.mark.parametrize("name", PROFILES)
def test_only_real_tables_and_columns_and_no_clash(name):
    schema = load_schema()
    profile = load_profile(name)
    for table, columns in profile.tables.items():
        assert schema.table(table) is not None, table
        for column in columns:
            assert schema.table(table).has_column(column), (table, column)
        # two columns on one field would merge two different tests
        assert len(set(columns.values())) == len(columns), table


def test_sigma_is_the_schema_to_sigma_map_without_name_only_columns():
    profile = load_profile("sigma")
    for table in load_schema().tables.values():
        expected = {c: f for c, f in table.to_sigma.items() if c not in table.name_only and c != "Timestamp"}
        assert dict(profile.columns(table.name)) == expected
    assert profile.field("DeviceNetworkEvents", "RemoteUrl") == "DestinationHostname"
    assert profile.field("DeviceProcessEvents", "ProcessCommandLine") == "CommandLine"
    # bare file name vs Sysmon's full ParentImage path: left unmapped on purpose
    assert profile.field("DeviceNetworkEvents", "InitiatingProcessParentFileName") is None


def test_defender_is_identity():
    profile = load_profile("defender")
    for table in load_schema().tables.values():
        for column in table.columns:
            assert profile.field(table.name, column) == (column if column != "Timestamp" else "Timestamp")
    assert profile.field(None, "AnyColumn") == "AnyColumn"


def test_ecs_process_roles():
    ecs = load_profile("ecs")
    net = "DeviceNetworkEvents"
    assert ecs.field(net, "InitiatingProcessFileName") == "process.name"
    assert ecs.field(net, "InitiatingProcessVersionInfoCompanyName") == "process.pe.company"
    assert ecs.field(net, "InitiatingProcessVersionInfoProductName") == "process.pe.product"
    assert ecs.field(net, "InitiatingProcessSHA1") == "process.hash.sha1"
    assert ecs.field(net, "RemoteUrl") == "destination.domain"
    assert ecs.field(net, "RemoteIP") == "destination.ip"
    assert ecs.field(net, "RemotePort") == "destination.port"
    assert ecs.field(net, "LocalIP") == "source.ip"
    assert ecs.field(net, "DeviceName") == "host.name"
    proc = "DeviceProcessEvents"
    assert ecs.field(proc, "FileName") == "process.name"
    assert ecs.field(proc, "FolderPath") == "process.executable"
    assert ecs.field(proc, "ProcessCommandLine") == "process.command_line"
    assert ecs.field(proc, "InitiatingProcessFileName") == "process.parent.name"
    assert ecs.field(proc, "InitiatingProcessCommandLine") == "process.parent.command_line"
    assert ecs.field(proc, "AccountName") == "user.name"
    assert ecs.field("DeviceFileEvents", "FolderPath") == "file.path"
    assert ecs.field("DeviceFileEvents", "FileOriginUrl") == "url.original"
    assert ecs.field("DeviceRegistryEvents", "RegistryKey") is None  # registry.path/key differ in meaning


def test_cim_fields():
    cim = load_profile("cim")
    proc = "DeviceProcessEvents"
    assert [cim.field(proc, c) for c in ("FileName", "FolderPath", "ProcessCommandLine", "InitiatingProcessFileName",
                                         "AccountName", "DeviceName")] == \
        ["process_name", "process_path", "process", "parent_process_name", "user", "dest"]
    net = "DeviceNetworkEvents"
    assert [cim.field(net, c) for c in ("RemoteIP", "RemotePort", "LocalIP", "LocalPort", "RemoteUrl")] == \
        ["dest_ip", "dest_port", "src_ip", "src_port", "dest"]
    assert cim.field(net, "InitiatingProcessVersionInfoCompanyName") is None


def test_time_field_and_unknowns():
    assert [load_profile(n).time_field("DeviceNetworkEvents") for n in PROFILES] == \
        ["_time", "_time", "@timestamp", "Timestamp"]
    assert load_profile("ecs").field("DeviceNetworkEvents", "Timestamp") == "@timestamp"
    assert load_profile("ecs").field("NoSuchTable", "RemoteUrl") is None
    assert load_profile("cim").field(None, "RemoteUrl") is None
    assert load_profile("sigma").field("DeviceNetworkEvents", "NoSuchColumn") is None


# ------------------------------------------------------------------ rules named in the Sigma taxonomy


def _sigma_taxonomy_rule():
    from rmmc.compiler.ir import And, EventKind, Field, Metadata, Op, Predicate, Rule, Source

    condition = And((Predicate(Field("Image"), Op.ENDSWITH, ("\\cmd.exe",)),
                     Predicate(Field("Hashes"), Op.CONTAINS, ("abc",))))
    return Rule(Metadata(title="t", description="d"),
                Source(None, EventKind.PROCESS, "windows", "process_creation", taxonomy="sigma"), condition)


def test_field_for_sigma():
    from rmmc.compiler.schema.profiles import field_for_sigma, load_profile

    assert field_for_sigma(load_profile("sigma"), "Image") == "Image"
    assert field_for_sigma(load_profile("ecs"), "Image") == "process.executable"
    assert field_for_sigma(load_profile("cim"), "DestinationIp") == "dest_ip"
    assert field_for_sigma(load_profile("ecs"), "NoSuchSigmaField") is None
    # Image is FolderPath in one table and InitiatingProcessFolderPath in others: no one answer
    assert field_for_sigma(load_profile("defender"), "Image") is None
    assert field_for_sigma(load_profile("defender"), "DestinationIp") == "RemoteIP"


def test_backends_keep_or_map_sigma_names():
    from rmmc.backends.eql import emit_eql
    from rmmc.backends.esql.backend import emit_esql
    from rmmc.backends.sigma.backend import emit_sigma
    from rmmc.backends.splunk.backend import emit_splunk

    rule = _sigma_taxonomy_rule()
    sigma = emit_sigma(rule)
    assert "Image|endswith" in sigma.text and "Hashes|contains" in sigma.text
    assert not [d for d in sigma.diagnostics if "Image" in d.message or "Hashes" in d.message]
    spl = emit_splunk(rule, fields="sigma")
    assert "Image" in spl.text and not [d for d in spl.diagnostics if d.code == "lossy"]
    spl = emit_splunk(rule, fields="cim")
    assert "process_path" in spl.text
    assert [d for d in spl.diagnostics if d.code == "lossy"] and \
        all("Hashes" in d.message for d in spl.diagnostics if d.code == "lossy")
    eql = emit_eql(rule, fields="ecs")
    assert "process.executable" in eql.text
    assert [d.message for d in eql.diagnostics if d.code == "lossy" and "Image" in d.message] == []
    assert any("Hashes" in d.message for d in eql.diagnostics if d.code == "lossy")
    esql = emit_esql(rule, fields="ecs")
    assert "process.executable" in esql.text
    assert [d.message for d in esql.diagnostics if "Image" in d.message] == []
    assert any("Hashes" in d.message for d in esql.diagnostics)
