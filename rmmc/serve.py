"""`rmmc serve`: one rmmc process answering requests as JSON lines on standard input and output,
for editors (a check on every keystroke) and pipelines (many small jobs), which would otherwise
pay a cold start for each.

A request is one JSON object per line:

    {"id": 1, "command": "translate", "text": "<rule document>", "to": "splunk",
     "path": "rule.yml", "loose": false, "apply_exclusions": false, "allow_lossy": false,
     "fields": null}
    {"id": 2, "command": "check", "text": "<rule document>", "path": "rule.kql"}

`id` is echoed back (any JSON value); `path` only names the text in diagnostics (nothing is read
from disk).  Each request gets one line back, in order: for `translate`, `results` as in
`rmmc translate --format json` (`title`, `target`, `ok`, `text`, `diagnostics`); for `check`,
`ok`, `rules` and `diagnostics` as in `rmmc check --format json`.  A request that cannot be
understood gets `{"id": ..., "error": "..."}` and the server goes on; end of input stops it.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

MAX_LINE = 16 * 1024 * 1024 + 65536
"""A request line longer than this is refused (the largest document rmmc reads, plus JSON)."""


def handle(request: Any) -> dict:
    """The response to one decoded request (never raises for bad input)."""
    if not isinstance(request, dict):
        return {"id": None, "error": "a request must be a JSON object"}
    ident = request.get("id")
    command = request.get("command")
    text = request.get("text")
    path = request.get("path") or "<serve>"
    if not isinstance(text, str):
        return {"id": ident, "error": "'text' must be a string (the rule document)"}
    if not isinstance(path, str):
        return {"id": ident, "error": "'path' must be a string"}
    try:
        if command == "translate":
            return {"id": ident, **_translate(request, text, path)}
        if command == "check":
            return {"id": ident, **_check(text, path)}
    except _BadRequest as exc:
        return {"id": ident, "error": str(exc)}
    except Exception as exc:  # a bug of ours: reported for this request, the server goes on
        return {"id": ident, "error": f"internal error: {type(exc).__name__}: {exc}"}
    return {"id": ident, "error": f"unknown command {command!r}: use 'translate' or 'check'"}


class _BadRequest(Exception):
    pass


def _translate(request: dict, text: str, path: str) -> dict:
    from rmmc.backends import targets
    from rmmc.compiler.render import to_json
    from rmmc.translation import translate_text

    to = request.get("to")
    if to not in targets():
        raise _BadRequest(f"'to' must be one of {', '.join(targets())}")
    fields = request.get("fields")
    if fields is not None and fields not in ("sigma", "cim", "ecs", "defender"):
        raise _BadRequest("'fields' must be sigma, cim, ecs or defender")
    env = request.get("env")
    if env is not None:
        from rmmc.environments import BUILTINS

        if env not in BUILTINS:
            raise _BadRequest(f"'env' must be a built-in environment: {', '.join(BUILTINS)}")
        if not _serves(env, to):
            raise _BadRequest(f"environment {env} does not serve {to}")
    results = translate_text(text, to, path, loose=request.get("loose") is True,
                             apply_exclusions=request.get("apply_exclusions") is True, fields=fields,
                             allow_lossy=request.get("allow_lossy") is True, env=env,
                             allow_unknown_fields=request.get("allow_unknown_fields") is True)
    return {"results": [{"title": r.title, "target": r.target, "ok": r.ok, "verdict": r.verdict,
                         "text": r.stream or None, "diagnostics": [to_json(d) for d in r.diagnostics]}
                        for r in results]}


def _serves(env: str, target: str) -> bool:
    from rmmc.environments import load_environment

    return load_environment(env).serves(target)


def _check(text: str, path: str) -> dict:
    from rmmc.compiler.check import check_file
    from rmmc.compiler.diagnostics import has_error
    from rmmc.compiler.documents import read_text
    from rmmc.compiler.render import to_json

    checked = check_file(read_text(text, path))
    diagnostics = checked.all_diagnostics()
    return {"ok": not has_error(diagnostics), "rules": len(checked.rules),
            "diagnostics": [to_json(d) for d in diagnostics]}


def serve(stdin: IO[bytes], stdout: IO[str]) -> None:
    """Answer every request line of `stdin` (bytes, UTF-8) on `stdout`, one line each, flushed."""
    while True:
        raw = stdin.readline(MAX_LINE + 1)
        if not raw:
            return
        response: dict | None = None
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the oversized line
                raw = stdin.readline(MAX_LINE + 1)
            response = {"id": None, "error": "request line too long"}
        else:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                response = {"id": None, "error": f"request is not UTF-8 (byte {exc.start})"}
            else:
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    response = {"id": None, "error": f"not a JSON request: {exc}"}
                else:
                    response = handle(request)
        stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
        stdout.flush()


def main() -> None:
    try:
        serve(sys.stdin.buffer, sys.stdout)
    except (BrokenPipeError, KeyboardInterrupt):  # the client went away: no traceback
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
