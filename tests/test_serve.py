"""`rmmc serve`: JSON lines in, one JSON line out per request, the same results as the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rmmc.backends.base import EmitOptions
from rmmc.compiler.render import to_json
from rmmc.translation import translate_file

ROOT = Path(__file__).resolve().parent.parent
RULES = [ROOT / "rules" / "rmm_distantdesktop_netconn.txt", ROOT / "rules" / "rmm_remotepc_netconn.txt"]


def _serve(lines: list[str | bytes]) -> list[dict]:
    data = b"\n".join(x if isinstance(x, bytes) else x.encode("utf-8") for x in lines) + b"\n"
    done = subprocess.run([sys.executable, "-m", "rmmc", "serve"], input=data,
                          capture_output=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    return [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]


def test_translate_answers_like_the_cli() -> None:
    requests = [json.dumps({"id": i, "command": "translate", "to": target, "path": str(rule),
                            "text": rule.read_text(encoding="utf-8")})
                for i, (rule, target) in enumerate((r, t) for r in RULES for t in ("sigma", "splunk"))]
    answers = _serve(requests)
    assert [a["id"] for a in answers] == list(range(len(requests)))
    for answer, (rule, target) in zip(answers, ((r, t) for r in RULES for t in ("sigma", "splunk"))):
        expected = translate_file(str(rule), target, EmitOptions())
        assert [r["text"] for r in answer["results"]] == [e.stream or None for e in expected]
        assert [r["diagnostics"] for r in answer["results"]] == \
            [[to_json(d) for d in e.diagnostics] for e in expected]
        assert all(r["ok"] == e.ok for r, e in zip(answer["results"], expected))


def test_check_and_bad_requests_each_get_one_line() -> None:
    answers = _serve([
        json.dumps({"id": "a", "command": "check", "text": "T | where x ==", "path": "q.kql"}),
        "not json",
        "",
        json.dumps([1, 2]),
        json.dumps({"id": "b", "command": "translate", "text": "T", "to": "cobol"}),
        json.dumps({"id": "c", "command": "explain", "text": "T"}),
        json.dumps({"id": "d", "command": "check", "text": 5}),
        json.dumps({"id": "e", "command": "check", "text": "DeviceEvents | take 5"}),
        b'{"id": "f", "text": "\xff"}',
    ])
    assert len(answers) == 8  # the blank line is skipped
    first = answers[0]
    assert first["id"] == "a" and first["ok"] is False and first["rules"] == 1
    (diagnostic,) = first["diagnostics"]
    assert (diagnostic["path"], diagnostic["line"], diagnostic["column"]) == ("q.kql", 1, 15)
    assert diagnostic["message"].startswith("unexpected end of query")
    assert answers[1]["id"] is None and answers[1]["error"].startswith("not a JSON request")
    assert answers[2] == {"id": None, "error": "a request must be a JSON object"}
    assert answers[3]["id"] == "b" and "'to' must be one of" in answers[3]["error"]
    assert answers[4]["id"] == "c" and answers[4]["error"].startswith("unknown command")
    assert answers[5]["id"] == "d" and "'text' must be a string" in answers[5]["error"]
    assert answers[6] == {"id": "e", "ok": True, "rules": 1, "diagnostics": []}
    assert answers[7] == {"id": None, "error": "request is not UTF-8 (byte 21)"}
