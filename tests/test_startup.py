"""Start-up: a command loads only what it needs (a cold `rmmc translate` of one rule is mostly
imports).  Each check runs a fresh interpreter and looks at `sys.modules` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGMA_RULE = """title: Startup probe
id: 3f0a5e0e-0000-4000-8000-000000000016
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\\\\7z.exe'
        CommandLine|contains: '.dmp'
    condition: selection
level: medium
"""


def _modules_after(argv: list[str], tmp_path: Path, stdin: str | None = None) -> tuple[set[str], str]:
    """The modules loaded by the end of `rmmc ARGV` (through the console script's `main`)."""
    probe = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(tmp_path / 'modules.json')!r}, 'w').write("
        "json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['rmmc'] + {argv!r}\n"
        "from rmmc.__main__ import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    modules = set(json.loads((tmp_path / "modules.json").read_text(encoding="utf-8")))
    return modules, done.stdout


def test_version_does_not_load_the_cli(tmp_path: Path) -> None:
    modules, out = _modules_after(["--version"], tmp_path)
    assert out == "rmmc, version 0.1.0\n"
    assert "click" not in modules and "rmmc.cli" not in modules


def test_sigma_to_splunk_loads_neither_kql_nor_other_backends(tmp_path: Path) -> None:
    modules, out = _modules_after(["translate", "-", "--to", "splunk"], tmp_path, SIGMA_RULE)
    assert "7z.exe" in out  # it did translate
    assert "rmmc.backends.splunk.backend" in modules
    loaded = {m for m in modules if m.startswith("rmmc.")}
    for unwanted in ("rmmc.backends.sigma.backend", "rmmc.backends.kql", "rmmc.backends.eql",
                     "rmmc.backends.esql.backend", "rmmc.compiler.kql.ast", "rmmc.compiler.kql.parser",
                     "rmmc.compiler.kql.lower", "rmmc.verify.command", "rmmc.serve",
                     # SPL's writers of stages, feeds and several sources: a plain rule has none
                     "rmmc.backends.splunk.stages", "rmmc.backends.splunk.lookups",
                     "rmmc.backends.splunk.multi",
                     # the reference evaluator: a translation writes its text rules
                     # (compiler/text_rules.py), never evaluates
                     "rmmc.compiler.evaluator"):
        assert unwanted not in loaded and unwanted not in modules, unwanted


def test_the_dataclasses_a_translation_loads_have_docstrings(tmp_path: Path) -> None:
    """`dataclasses` writes a class without a docstring one from `inspect.signature` when the
    class is made: 27 such classes were 2% of a cold Sigma -> Splunk translation."""
    import dataclasses
    import importlib

    modules, _ = _modules_after(["translate", "-", "--to", "splunk"], tmp_path, SIGMA_RULE)
    undocumented = []
    for name in sorted(m for m in modules if m == "rmmc" or m.startswith("rmmc.")):
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (isinstance(value, type) and dataclasses.is_dataclass(value)
                    and value.__module__ == name and (value.__doc__ or "").startswith(f"{value.__name__}(")):
                undocumented.append(f"{name}.{value.__qualname__}")
    assert undocumented == []


def test_sigma_to_splunk_imports_no_module_it_does_not_use() -> None:
    """Modules a translation of a plain rule never calls (pathlib, ipaddress, urllib.parse; json
    when the data files are read from the user's cache) are not imported: each costs a cold
    start 1-5%.  Run without `site` (an editable install's import hook loads pathlib before
    rmmc does), the packages found as they are here."""
    import ast
    import sysconfig

    probe = (
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {sysconfig.get_paths()['purelib']!r}]\n"
        "sys.argv = ['rmmc', 'translate', '-', '--to', 'splunk']\n"
        "import atexit\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES' + repr(sorted(sys.modules))))\n"
        "from rmmc.__main__ import main\n"
        "main()\n"
    )
    for _ in range(2):  # the first run may fill the user's cache, the second reads it
        done = subprocess.run([sys.executable, "-S", "-c", probe], input=SIGMA_RULE, capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
    assert "7z.exe" in done.stdout  # it did translate
    modules = set(ast.literal_eval(done.stderr.split("MODULES", 1)[1]))
    assert "rmmc.backends.splunk.backend" in modules
    for unwanted in ("pathlib", "ipaddress", "urllib.parse", "json"):
        assert unwanted not in modules, unwanted


def test_sigma_condition_parser_uses_the_grammar_cache() -> None:
    from rmmc import grammar
    from rmmc.compiler.sigma.condition import _parser

    lexers = list(_parser().parser.lexer.lexers.values())
    assert lexers and all(lexer.re is grammar._lexer_re("sigma_condition.lark") for lexer in lexers)


def _both_exits(argv: list[str], cwd: Path, stdin: str | None = None) -> list[tuple[int, str, str]]:
    """`rmmc ARGV` through the console script's `main` (which ends the process without the
    interpreter's teardown) and through click's own `main` (the interpreter's usual exit)."""
    runs = []
    for entry in ("from rmmc.__main__ import main", "from rmmc.cli import main"):
        probe = f"import sys\nsys.argv = ['rmmc'] + {argv!r}\n{entry}\nmain()\n"
        done = subprocess.run([sys.executable, "-c", probe], input=stdin, capture_output=True, text=True,
                              cwd=cwd, timeout=120)
        runs.append((done.returncode, done.stdout, done.stderr))
    return runs


def test_the_quick_exit_prints_and_exits_as_the_interpreter_does(tmp_path: Path) -> None:
    rule = tmp_path / "rule.yml"
    rule.write_text(SIGMA_RULE, encoding="utf-8")
    bad = tmp_path / "bad.yml"
    bad.write_text(SIGMA_RULE.replace("condition: selection", "condition: selection and nothing"),
                   encoding="utf-8")
    cases = {
        "translated": (["translate", str(rule), "--to", "splunk"], 0),
        "from stdin": (["translate", "-", "--to", "kql"], 0),
        "one refused": (["translate", str(rule), str(bad), "--to", "splunk"], 1),
        "usage error": (["translate", str(rule), "--to", "nowhere"], 2),
        "check": (["check", str(bad)], 1),
    }
    for name, (argv, status) in cases.items():
        quick, usual = _both_exits(argv, ROOT, SIGMA_RULE)
        assert quick == usual, name
        assert quick[0] == status, name
    assert "7z.exe" in _both_exits(cases["translated"][0], ROOT)[0][1]


def test_the_quick_exit_writes_the_same_files(tmp_path: Path) -> None:
    rule = tmp_path / "rule.yml"
    rule.write_text(SIGMA_RULE, encoding="utf-8")
    written = []
    for entry in ("from rmmc.__main__ import main", "from rmmc.cli import main"):
        out = tmp_path / f"out-{len(written)}"
        probe = (f"import sys\nsys.argv = ['rmmc', 'translate', {str(rule)!r}, '--to', 'splunk', '-o', "
                 f"{str(out)!r}]\n{entry}\nmain()\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        written.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert written[0] == written[1] and written[0]


def test_the_first_collection_is_put_off_then_the_usual_thresholds_apply() -> None:
    probe = (
        "import gc, json\n"
        "from rmmc.__main__ import START_UP_OBJECTS, _put_off_collection\n"
        "usual = gc.get_threshold()\n"
        "_put_off_collection()\n"
        "during = gc.get_threshold()\n"
        "kept = [[] for _ in range(START_UP_OBJECTS // 2)]  # not enough for a collection\n"
        "before = gc.get_stats()[0]['collections']\n"
        "more = [[] for _ in range(START_UP_OBJECTS)]  # enough\n"
        "after = gc.get_stats()[0]['collections']\n"
        "print(json.dumps([usual, during, gc.get_threshold(), after > before, len(gc.callbacks)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    usual, during, now, collected, callbacks = json.loads(done.stdout)
    assert during[0] > usual[0] and during[1:] == usual[1:]
    assert collected and now == usual and callbacks == 0
