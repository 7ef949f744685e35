"""`-j N`: a batch spread over worker processes gives exactly what the serial run gives.

The batches here are built in tmp_path (bare KQL rules, one that does not parse, one full of
quotes and backslashes, one that is not UTF-8) and are large enough (>= rmmc.parallel.MIN_FILES)
for `-j 2` to really use workers; `-j 1` is the in-process loop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmmc import parallel
from rmmc.cli import main

HOSTS = ["remotepc.com", "anydesk.com", "teamviewer.com", "splashtop.com", "x.com"]


def _batch(root: Path, copies: int = 6) -> Path:
    folder = root / "rules"
    folder.mkdir()
    n = 0
    for _ in range(copies):
        for host in HOSTS:
            n += 1
            (folder / f"r{n:03d}.kql").write_text(
                f'DeviceNetworkEvents | where RemoteUrl has "{host}" and RemotePort == {n}\n',
                encoding="utf-8")
    (folder / "broken.kql").write_text('DeviceNetworkEvents | where RemoteUrl has has "x"\n',
                                       encoding="utf-8")
    (folder / "hostile.kql").write_text(
        'DeviceProcessEvents | where ProcessCommandLine has @"C:\\\\Users\\\\\'q\'\\\\a\\"b" '
        "or FileName =~ 'it''s\\\\x.exe' or ProcessCommandLine contains \"\\\"\\\\\\\"\"\n",
        encoding="utf-8")
    (folder / "latin1.kql").write_bytes(b'DeviceNetworkEvents | where RemoteUrl has "caf\xe9"\n')
    (folder / "sub").mkdir()
    (folder / "sub" / "last.txt").write_text(
        "DeviceProcessEvents | where FileName in~ ('a.exe', 'b.exe') | summarize count() by DeviceId\n",
        encoding="utf-8")
    assert len(list(folder.rglob("*.*"))) >= parallel.MIN_FILES
    return folder


def _run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["sigma", "kql", "splunk"])
def test_translate_parallel_matches_serial_stdout(tmp_path: Path, target: str) -> None:
    folder = _batch(tmp_path)
    serial = _run(["translate", str(folder), "--to", target, "-j", "1"])
    spread = _run(["translate", str(folder), "--to", target, "-j", "2"])
    assert serial.exit_code == spread.exit_code == 1  # the broken rule fails, the rest go on
    assert serial.stdout_bytes == spread.stdout_bytes
    assert serial.stderr_bytes == spread.stderr_bytes
    assert "has has" not in serial.stdout  # the broken rule is reported, not translated
    assert "broken.kql:1:" in serial.stderr and "latin1.kql" in serial.stderr


def test_translate_parallel_writes_the_same_files(tmp_path: Path) -> None:
    folder = _batch(tmp_path)
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    serial = _run(["translate", str(folder), "--to", "sigma", "-o", str(out1), "-j", "1"])
    spread = _run(["translate", str(folder), "--to", "sigma", "-o", str(out2), "-j", "2"])
    assert serial.exit_code == spread.exit_code == 1
    assert serial.stdout_bytes == spread.stdout_bytes
    assert serial.stderr.replace(str(out1), "OUT") == spread.stderr.replace(str(out2), "OUT")
    files = _tree(out1)
    assert files and files == _tree(out2)
    # A second run without --force refuses to overwrite, the same way in both modes.
    again1 = _run(["translate", str(folder), "--to", "sigma", "-o", str(out1), "-j", "1"])
    again2 = _run(["translate", str(folder), "--to", "sigma", "-o", str(out2), "-j", "2"])
    assert again1.exit_code == again2.exit_code == 1
    assert "not overwritten" in again2.stderr
    assert again1.stderr.replace(str(out1), "OUT") == again2.stderr.replace(str(out2), "OUT")


def test_translate_parallel_json(tmp_path: Path) -> None:
    folder = _batch(tmp_path)
    serial = _run(["translate", str(folder), "--to", "eql", "--format", "json", "-j", "1"])
    spread = _run(["translate", str(folder), "--to", "eql", "--format", "json", "-j", "2"])
    assert serial.exit_code == spread.exit_code
    assert serial.stdout_bytes == spread.stdout_bytes
    from rmmc.compiler.documents import iter_rule_files

    paths = [entry["path"] for entry in json.loads(spread.stdout) if entry["path"]]
    assert paths == [p for p in iter_rule_files([str(folder)]) if not p.endswith("latin1.kql")]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_parallel_matches_serial(tmp_path: Path, fmt: str) -> None:
    folder = _batch(tmp_path)
    serial = _run(["check", str(folder), "--format", fmt, "-j", "1"])
    spread = _run(["check", str(folder), "--format", fmt, "-j", "2"])
    assert serial.exit_code == spread.exit_code == 1
    assert serial.stdout_bytes == spread.stdout_bytes
    assert serial.stderr_bytes == spread.stderr_bytes


def test_default_jobs_matches_serial(tmp_path: Path) -> None:
    folder = _batch(tmp_path)
    serial = _run(["check", str(folder), "-j", "1"])
    default = _run(["check", str(folder)])
    assert serial.exit_code == default.exit_code
    assert serial.stdout_bytes == default.stdout_bytes


def test_no_progress_bar_when_not_a_terminal(tmp_path: Path) -> None:
    folder = _batch(tmp_path)
    for args in (["translate", str(folder), "--to", "sigma", "-j", "2"],
                 ["check", str(folder), "-j", "2"],
                 ["check", str(folder), "-j", "1"]):
        result = _run(args)
        for text in (result.stdout, result.stderr):
            assert "checking" not in text and "translating" not in text
            assert "\r" not in text and "%" not in text.replace("%%", "")


def test_show_progress_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr("sys.stderr", Stream(False))
    monkeypatch.setattr("sys.stdout", Stream(True))
    assert not parallel.show_progress(["a", "b"])
    monkeypatch.setattr("sys.stderr", Stream(True))
    assert parallel.show_progress(["a", "b"])
    assert not parallel.show_progress(["a"])
    assert parallel.show_progress(["a", "b"], machine_output=True)
    monkeypatch.setattr("sys.stdout", Stream(False))
    assert not parallel.show_progress(["a", "b"], machine_output=True)
    assert parallel.show_progress(["a", "b"])


def test_worth_parallel_threshold(tmp_path: Path) -> None:
    small = [str(tmp_path / f"{n}.kql") for n in range(parallel.MIN_FILES - 1)]
    for path in small:
        Path(path).write_text("T | where A == 1\n")
    assert not parallel.worth_parallel(small, 4)
    assert parallel.worth_parallel(small + [small[0] + "x"], 4)
    assert not parallel.worth_parallel(small + [small[0] + "x"], 1)
    assert not parallel.worth_parallel(small + ["-"], 4)  # stdin is read in this process
    big = tmp_path / "big.kql"
    big.write_text("T | where A == 1\n" + "//" + "x" * parallel.MIN_BYTES + "\n")
    assert parallel.worth_parallel([small[0], str(big)], 2)


def _boom(path: str) -> str:
    if path.endswith("crash"):
        os._exit(3)  # the worker dies without a word
    if path.endswith("raise"):
        raise ValueError("bad " + path)
    return "ok " + path


def _failed(path: str, message: str) -> str:
    return f"failed {path}: {message}"


def test_run_batch_survives_errors_and_dead_workers() -> None:
    files = [f"f{n}" for n in range(parallel.MIN_FILES)] + ["g.raise", "h.crash", "i"]
    results = parallel.run_batch(_boom, files, 2, _failed)
    assert len(results) == len(files)
    assert results[0] == "ok f0" and results[-1] == "ok i"
    assert results[-3] == "failed g.raise: ValueError: bad g.raise"
    assert results[-2].startswith("failed h.crash: the worker process handling this file died")
    assert all(r == "ok " + f for f, r in zip(files, results) if not f.startswith(("g", "h")))
    serial = parallel.run_batch(_boom, [f for f in files if not f.endswith("crash")], 1, _failed)
    assert serial == [r for f, r in zip(files, results) if not f.endswith("crash")]


@pytest.mark.skipif(parallel._context() is None, reason="needs fork: workers inherit the patch")
def test_internal_error_in_a_worker_is_reported_for_that_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _batch(tmp_path)
    import rmmc.translation as translation

    real = translation.translate_document

    def flaky(document, *args, **kwargs):
        if document.path.endswith("r003.kql"):
            raise RuntimeError("boom")
        return real(document, *args, **kwargs)

    monkeypatch.setattr(translation, "translate_document", flaky)  # forked workers inherit it
    for jobs in ("1", "2"):
        result = _run(["translate", str(folder), "--to", "sigma", "-j", jobs])
        assert result.exit_code == 1
        assert "r003.kql: error: internal error while translating this file: RuntimeError: boom" \
            in result.stderr
        assert "remotepc" in result.stdout  # the other rules were still translated


def test_corpus_parallel_matches_serial(rmm_corpus: Path, tmp_path: Path) -> None:
    serial = _run(["check", str(rmm_corpus), "-j", "1", "--format", "json"])
    spread = _run(["check", str(rmm_corpus), "-j", "2", "--format", "json"])
    assert serial.exit_code == spread.exit_code
    assert serial.stdout_bytes == spread.stdout_bytes


def test_chunk_size_bounds():
    from rmmc.parallel import MAX_CHUNK, chunk_size

    assert chunk_size(10, 2) == 1            # small batches: one file per task
    assert chunk_size(160, 2) == 10          # about eight tasks per worker
    assert chunk_size(100_000, 2) == MAX_CHUNK
