"""Python side of the test-only KQL oracle: Microsoft's own parser (Kusto.Language, npm
``@kusto/language-service-next``) run by ``tests/oracle/kqlcheck.js``.

One persistent ``node kqlcheck.js --serve`` process answers one JSON line per query line, so
thousands of queries can be checked in a few seconds::

    with KustoOracle() as oracle:
        res = oracle.check("T | where x has 'a'")
        assert res.ok
        results = oracle.check_many(queries)   # pipelined, same order as ``queries``

Tests reach it through the session-scoped ``kusto_oracle`` fixture (tests/conftest.py), which
skips with :func:`oracle_unavailable_reason` when node or the npm package is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

TESTS_DIR = Path(__file__).resolve().parent
ORACLE_DIR = TESTS_DIR / "oracle"
ORACLE_SCRIPT = ORACLE_DIR / "kqlcheck.js"
ORACLE_PACKAGE = ORACLE_DIR / "node_modules" / "@kusto" / "language-service-next"

__all__ = [
    "KustoOracle",
    "OracleDiagnostic",
    "OracleError",
    "OracleResult",
    "ORACLE_DIR",
    "oracle_unavailable_reason",
]


class OracleError(RuntimeError):
    """The oracle process failed (died, answered out of order, or could not start)."""


@dataclass(frozen=True)
class OracleDiagnostic:
    """One diagnostic of Kusto.Language. ``line``/``col`` are 1-based; ``start``/``end`` are
    0-based offsets into the query (UTF-16 code units, equal to Python indices for BMP text)."""

    severity: str
    code: str
    message: str
    start: int | None
    end: int | None
    line: int | None
    col: int | None
    syntax: bool = True
    category: str = ""
    text: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "Error"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "OracleDiagnostic":
        return cls(
            severity=d.get("severity", ""),
            code=d.get("code", ""),
            message=d.get("message", ""),
            start=d.get("start"),
            end=d.get("end"),
            line=d.get("line"),
            col=d.get("col"),
            syntax=bool(d.get("syntax", True)),
            category=d.get("category", ""),
            text=d.get("text"),
        )


@dataclass(frozen=True)
class OracleResult:
    """Verdict for one query.

    ``ok``: no Error diagnostic (syntax, plus semantic ones when a schema is loaded).
    ``syntax_ok``: no syntax Error diagnostic.
    ``error``: set (and ``ok``/``syntax_ok`` False) only when Kusto.Language itself threw on the
    query; that is a harness problem, not a rejection by Microsoft's parser.
    """

    ok: bool
    syntax_ok: bool
    diagnostics: tuple[OracleDiagnostic, ...] = ()
    semantic: bool = False
    result_type: str | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def errors(self) -> list[OracleDiagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def syntax_errors(self) -> list[OracleDiagnostic]:
        return [d for d in self.diagnostics if d.is_error and d.syntax]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "OracleResult":
        if "error" in d:
            return cls(ok=False, syntax_ok=False, error=str(d["error"]), raw=d)
        return cls(
            ok=bool(d["ok"]),
            syntax_ok=bool(d["syntax_ok"]),
            diagnostics=tuple(OracleDiagnostic.from_json(x) for x in d.get("diagnostics", ())),
            semantic=bool(d.get("semantic", False)),
            result_type=d.get("result_type"),
            raw=d,
        )


def oracle_unavailable_reason() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node not found on PATH"
    if not ORACLE_SCRIPT.is_file():
        return f"{ORACLE_SCRIPT} missing"
    if not (ORACLE_PACKAGE / "package.json").is_file():
        if shutil.which("npm") is None:
            return "tests/oracle/node_modules missing: run make test (needs npm, not found on PATH)"
        return "tests/oracle/node_modules missing: run make test"
    return None


class KustoOracle:
    """A persistent ``node tests/oracle/kqlcheck.js --serve`` process.

    Thread-safe (calls are serialized). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, schema: str | os.PathLike[str] | None = None, *, node: str | None = None,
                 literals: bool = False):
        reason = oracle_unavailable_reason()
        if reason is not None:
            raise OracleError(reason)
        node = node or shutil.which("node")
        assert node is not None
        cmd = [node, str(ORACLE_SCRIPT), "--serve"] + (["--literals"] if literals else [])
        if schema is not None:
            schema = Path(schema)
            if not schema.is_file():
                raise OracleError(f"schema file not found: {schema}")
            cmd += ["--schema", str(schema)]
        self.schema = schema
        self._lock = threading.Lock()
        self._next_id = 0
        self._stderr_tail: deque[str] = deque(maxlen=50)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(ORACLE_DIR),
            bufsize=1 << 16,
        )
        # Drain stderr continuously so a chatty or failing node never blocks on a full pipe.
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="kusto-oracle-stderr", daemon=True)
        self._stderr_thread.start()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "KustoOracle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        proc = self._proc
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout and not proc.stdout.closed:
            proc.stdout.close()
        self._stderr_thread.join(timeout=5)

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
        self._proc.stderr.close()

    def _failure(self, what: str) -> OracleError:
        rc = self._proc.poll()
        tail = "\n".join(self._stderr_tail)
        return OracleError(f"kusto oracle {what} (exit status {rc}); stderr:\n{tail}")

    # -- queries -----------------------------------------------------------------------------

    def check(self, query: str) -> OracleResult:
        """Parse one query with Microsoft's parser."""
        return self.check_many([query])[0]

    def check_many(self, queries: Iterable[str]) -> list[OracleResult]:
        """Check many queries in one pipelined round: a writer thread streams every query while
        this thread reads the answers, so neither pipe can fill up and deadlock. Results come
        back in the order of ``queries``."""
        queries = list(queries)
        if not queries:
            return []
        with self._lock:
            if not self.alive:
                raise self._failure("is not running")
            first = self._next_id
            self._next_id += len(queries)
            payload = [
                (json.dumps({"id": first + i, "query": q}) + "\n").encode("utf-8")
                for i, q in enumerate(queries)
            ]
            write_error: list[BaseException] = []

            def writer() -> None:
                stdin = self._proc.stdin
                assert stdin is not None
                try:
                    # A few large writes rather than thousands of small ones.
                    for k in range(0, len(payload), 256):
                        stdin.write(b"".join(payload[k : k + 256]))
                    stdin.flush()
                except BaseException as e:  # noqa: BLE001 - reported by the reader
                    write_error.append(e)

            if len(payload) == 1:
                writer()  # one line always fits in the pipe: no thread needed
                t = None
            else:
                t = threading.Thread(target=writer, name="kusto-oracle-writer", daemon=True)
                t.start()
            out: list[OracleResult] = []
            stdout = self._proc.stdout
            assert stdout is not None
            try:
                for i in range(len(queries)):
                    line = stdout.readline()
                    if not line:
                        raise self._failure(f"closed its output after {i} of {len(queries)} answers")
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise self._failure(f"answered a non-JSON line {line[:200]!r}") from e
                    if d.get("id") != first + i:
                        raise self._failure(f"answered id {d.get('id')!r}, expected {first + i}")
                    out.append(OracleResult.from_json(d))
            except BaseException:
                # The stream is out of step (or the caller was interrupted): the process cannot be
                # reused, and killing it also unblocks the writer thread.
                self._proc.kill()
                raise
            finally:
                if t is not None:
                    t.join(timeout=30)
            if write_error:
                raise self._failure(f"could not be written to: {write_error[0]!r}")
            return out

    def accepts(self, query: str) -> bool:
        """Shorthand: True when Microsoft's parser reports no error."""
        return self.check(query).ok
