"""What a cold start keeps in the user's cache (`rmmc/user_cache.py`): the code generated for
rmmc's dataclasses (`rmmc/dataclass_code.py`) and the built-in environments, read and checked.
Each only spares work: the outputs and the objects are the same with or without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "rules" / "rmm_remotepc_netconn.txt"

PROBE = """
import json, sys
from rmmc import dataclass_code
dataclass_code.install()
from dataclasses import FrozenInstanceError, dataclass
from rmmc.compiler import ir

@dataclass(frozen=True)
class Outside:  # not rmmc's: compiled as always, never kept
    x: int

a, b = ir.Field("FileName"), ir.Field("FileName")
try:
    a.name = "x"
    frozen = False
except FrozenInstanceError:
    frozen = True
print(json.dumps({"compiled": dataclass_code.compiled_this_run(), "equal": a == b,
                  "hash": hash(a) == hash(b), "repr": repr(a), "frozen": frozen,
                  "outside": Outside(1) == Outside(1),
                  "kept": sum(1 for m in dataclass_code._new for k in dataclass_code._new[m] if "Outside" in k),
                  "slots_init": any(k.startswith("def init_") for k in dataclass_code._new.get("rmmc.compiler.ir", {}))}))
"""


def _run(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)


def test_dataclass_code_is_compiled_once_then_read_and_behaves_the_same(tmp_path):
    first = json.loads(_run(PROBE, tmp_path).stdout)
    second = json.loads(_run(PROBE, tmp_path).stdout)
    assert first["compiled"] > 50  # the model's classes, generated and compiled the first time
    assert second["compiled"] == 0  # ... and read from the cache the second
    assert first["slots_init"] and not second["slots_init"]  # slots_init's __init__s too
    plain = json.loads(_run(PROBE.replace("dataclass_code.install()", "pass"), tmp_path / "none").stdout)
    for run in (first, second):
        assert run["equal"] and run["hash"] and run["frozen"] and run["outside"]
        assert run["repr"] == plain["repr"] == "Field(name='FileName', type='string')"
        assert run["kept"] == 0


def test_a_damaged_dataclass_cache_is_compiled_again(tmp_path):
    _run(PROBE, tmp_path)
    kept = list((tmp_path / "rmmc").glob("dataclass-code-*/rmmc.compiler.ir.marshal"))
    assert len(kept) == 1  # one file per module
    kept[0].write_bytes(b"\x00not marshal")
    again = json.loads(_run(PROBE, tmp_path).stdout)
    assert again["compiled"] > 50 and again["equal"] and again["frozen"]  # ir's classes, compiled again
    assert json.loads(_run(PROBE, tmp_path).stdout)["compiled"] == 0  # ... and kept again


def test_a_cold_translation_prints_the_same_with_and_without_the_caches(tmp_path):
    command = [sys.executable, "-m", "rmmc", "translate", str(SEED), "--to", "kql"]
    outputs = []
    for cache in (tmp_path / "a", tmp_path / "a", tmp_path / "b"):
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120,
                              env={**os.environ, "XDG_CACHE_HOME": str(cache)})
        outputs.append((done.returncode, done.stdout, done.stderr))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][0] == 0 and "DeviceNetworkEvents" in outputs[0][1]


def test_a_builtin_environment_from_the_cache_is_the_one_read_from_its_file(tmp_path, monkeypatch):
    from rmmc import environments
    from rmmc.environments.loader import read_environment
    from rmmc.resources import package_text

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in environments.BUILTINS:
        environments._builtin.cache_clear()
        written = environments._builtin(name)  # read, checked, and kept
        environments._builtin.cache_clear()
        kept = environments._builtin(name)  # from the cache
        fresh = read_environment(package_text("rmmc.environments", f"{name}.yml"), f"<builtin {name}>", builtin=True)
        assert kept == written == fresh and kept is not written
    assert len(list((tmp_path / "rmmc").glob("env-*.pickle"))) == len(environments.BUILTINS)
    for kept_file in (tmp_path / "rmmc").glob("env-*.pickle"):
        kept_file.write_bytes(b"not a pickle")
    environments._builtin.cache_clear()
    assert environments._builtin("sigma").name == "sigma"  # a damaged entry is read again
    environments._builtin.cache_clear()


def test_json_members_from_the_cache_are_the_file_s_members(tmp_path, monkeypatch):
    from rmmc.resources import package_json_members, package_text

    for package, name, key in (("rmmc.environments", "data/fields.json", "sets"),
                               ("rmmc.environments", "data/log_analytics.json", "tables")):
        whole = json.loads(package_text(package, name))[key]
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        written = package_json_members(package, name, key)  # decoded whole, and split into the cache
        kept = package_json_members(package, name, key)     # each member from its record
        assert type(written) is dict and type(kept) is not dict
        assert len(kept) == len(whole) and list(kept) == list(whole)
        for member, value in whole.items():
            assert kept[member] == value and written[member] == value
            assert kept[member] is kept[member]  # decoded once
        assert kept.get("no such member") is None
        for record in (tmp_path / "cache" / "rmmc").glob("json-*.marshal"):
            record.write_bytes(b"\x00damaged")
        assert dict(package_json_members(package, name, key)) == whole  # read from the file again
        monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-cache-here")
        assert package_json_members(package, name, key) == whole  # no cache folder: the file


def test_field_sets_read_from_the_cache_are_the_file_s(tmp_path, monkeypatch):
    from rmmc.environments import fieldsets

    whole = json.loads((REPO / "rmmc" / "environments" / "data" / "fields.json").read_text(encoding="utf-8"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for run in range(2):  # the first splits the file into the cache, the second reads it
        fieldsets._sets.cache_clear()
        fieldsets.set_names.cache_clear()
        assert fieldsets.set_names() == frozenset(whole["sets"]) | frozenset(fieldsets.TABLE_SETS)
        for name, fields in whole["sets"].items():
            assert fieldsets.field_set(name) == fields
    fieldsets._sets.cache_clear()
    fieldsets.set_names.cache_clear()


REGEX_PROBE = """
import json, re
from rmmc import regex_code
regex_code.install()
import yaml, rmmc.compiler.sigma.reader  # modules that compile patterns when imported
outside = re.compile("compiled-outside-an-import-([0-9]+)")
print(json.dumps({"added": regex_code.kept_this_run(), "outside": outside.match("compiled-outside-an-import-42").group(1)}))
"""


def test_regex_code_keeps_what_re_compiles_when_modules_are_imported(tmp_path):
    import marshal
    import re

    from rmmc import regex_code

    first = json.loads(_run(REGEX_PROBE, tmp_path).stdout)
    second = json.loads(_run(REGEX_PROBE, tmp_path).stdout)
    assert first["added"] > 20 and second["added"] == 0  # compiled once, then read
    assert first["outside"] == second["outside"] == "42"
    (kept_file,) = (tmp_path / "rmmc").glob("regex-code-*.marshal")
    kept = marshal.loads(kept_file.read_bytes())
    assert not any(isinstance(pattern, str) and pattern.startswith("compiled-outside") for pattern, _ in kept)  # per-rule: not kept
    for (pattern, flags), args in kept.items():
        made = regex_code._made(args)
        assert made == re._compiler.compile(pattern, flags), pattern  # the object re makes
        assert made.pattern == pattern and made.groupindex == re.compile(pattern, flags).groupindex
    kept_file.write_bytes(b"\x00damaged")
    again = json.loads(_run(REGEX_PROBE, tmp_path).stdout)
    assert again["added"] > 20 and again["outside"] == "42"  # compiled as always, and kept again


def test_json_members_are_split_again_when_the_file_changes(tmp_path, monkeypatch):
    """The cache entry is keyed by the file's path, size and modification time: an edited file
    is read again, never answered with the members of its former text."""
    import os
    import sys
    import types

    from rmmc.resources import package_json_members

    folder = tmp_path / "pkg"
    folder.mkdir()
    package = types.ModuleType("rmmc_test_json_pkg")
    package.__file__ = str(folder / "__init__.py")
    monkeypatch.setitem(sys.modules, package.__name__, package)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = folder / "data.json"
    data.write_text(json.dumps({"sets": {"a": [1, 2], "b": ["x"]}}))
    os.utime(data, ns=(1_000_000_000, 1_000_000_000))
    assert dict(package_json_members(package.__name__, "data.json", "sets")) == {"a": [1, 2], "b": ["x"]}
    assert package_json_members(package.__name__, "data.json", "sets")["a"] == [1, 2]  # kept
    data.write_text(json.dumps({"sets": {"a": [3, 4], "b": ["y"]}}))  # the same size
    os.utime(data, ns=(2_000_000_000, 2_000_000_000))
    assert dict(package_json_members(package.__name__, "data.json", "sets")) == {"a": [3, 4], "b": ["y"]}


def test_json_files_from_the_cache_are_the_files(tmp_path, monkeypatch):
    """Every JSON data file shipped in rmmc's packages reads the same through its cache record
    (written, then read, then damaged and decoded again) as decoded from the file."""
    import importlib

    import rmmc
    from rmmc.resources import package_json, package_text

    root = Path(rmmc.__file__).parent
    files = []
    for path in sorted(root.rglob("*.json")):
        folder = path.parent
        while not (folder / "__init__.py").exists():  # a data folder inside a package
            folder = folder.parent
        package = ".".join(folder.relative_to(root.parent).parts)
        importlib.import_module(package)
        files.append((package, path.relative_to(folder).as_posix()))
    assert ("rmmc.compiler.schema", "defender_xdr.json") in files
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for package, name in files:
        whole = json.loads(package_text(package, name))
        assert package_json(package, name) == whole  # decoded, and kept
        kept = package_json(package, name)
        assert kept == whole and type(kept) is type(whole)
    records = list((tmp_path / "cache" / "rmmc").glob("json-*.whole-*.marshal"))
    assert len(records) == len(files)
    for record in records:
        record.write_bytes(b"\x00damaged")
    for package, name in files:
        assert package_json(package, name) == json.loads(package_text(package, name))


def test_the_cache_folder_follows_its_base_folder(tmp_path, monkeypatch):
    """The folder is made once per base folder and process; another base gives its own, and a
    base where nothing can be made gives None (asked again next time)."""
    from rmmc.user_cache import cache_folder

    for base in (tmp_path / "one", tmp_path / "two"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(base))
        assert cache_folder() == str(base / "rmmc") and (base / "rmmc").is_dir()
        assert cache_folder() == str(base / "rmmc")
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-cache-here")
    assert cache_folder() is None and cache_folder() is None
