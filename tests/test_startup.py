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
                     "rmmc.compiler.kql.lower", "rmmc.verify.command", "rmmc.serve"):
        assert unwanted not in loaded and unwanted not in modules, unwanted


def test_sigma_condition_parser_uses_the_grammar_cache() -> None:
    from rmmc import grammar
    from rmmc.compiler.sigma.condition import _parser

    lexers = list(_parser().parser.lexer.lexers.values())
    assert lexers and all(lexer.re is grammar._lexer_re() for lexer in lexers)
