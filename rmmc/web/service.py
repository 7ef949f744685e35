"""What the playground's requests do: plain functions from a JSON request to a JSON answer.

A thin layer over the library: `rmmc.translate` (with the CLI's options), the document
readers and `compile_document` (what `rmmc explain` and `rmmc verify` run per rule),
`explain`, `verify_rule`, and the CLI's own output file names.  Nothing here translates,
and the request's text never becomes a path: it is read as the text of a document named
`<playground>`, and the "file the CLI would write" is built in memory.

`handle(action, body)` is what a worker process runs (`rmmc.web.workers`): bytes in, an
HTTP status and JSON bytes out, never an exception.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any, Callable

SOURCE_NAME = "<playground>"
MAX_TEXT_CHARS = 2_000_000        # a rule text; a 1 MB paste fits
MAX_ANSWER_BYTES = 16 * 1024 * 1024
VERIFY_SAMPLE = 40                # as `rmmc verify`'s default --sample

TARGET_LABELS = {"sigma": "Sigma", "kql": "KQL (Defender XDR / Sentinel)", "splunk": "Splunk SPL",
                 "eql": "Elastic EQL", "esql": "Elastic ES|QL"}
PACKAGE_LABELS = {"kql": "Sentinel analytic rule", "splunk": "savedsearches.conf stanza",
                  "eql": "Elastic detection rule", "esql": "Elastic detection rule"}
_FIELDS = {"text": str, "target": str, "environment": (str, type(None)), "package": bool,
           "loose": bool, "apply_exclusions": bool, "allow_lossy": bool, "allow_unknown_fields": bool}


class RequestError(Exception):
    """A request the playground will not run, with the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ the pickers


def environments() -> list[dict[str, Any]]:
    """The environment picker's entries, in order: the built-in environments
    (`rmmc.environments.list_environments`) and the targets each serves."""
    from rmmc.environments import list_environments

    out = []
    for env in list_environments():
        serves = ["eql", "esql"] if env.target == "elastic" else [env.target]
        out.append({"name": env.name, "label": f"{env.name}: {env.description}", "targets": serves})
    return out


def environment_options(name: str | None, target: str | None = None) -> dict[str, Any]:
    """The `rmmc.translate` keyword arguments for a picked environment (None: the target's
    default, as the CLI without `--env`); a built-in only (no request names a file)."""
    if not name:
        return {}
    picked = next((e for e in environments() if e["name"] == name), None)
    if picked is None:
        raise RequestError(f"unknown environment {name!r}")
    if target is not None and target not in picked["targets"]:
        raise RequestError(f"environment {name} is for {', '.join(picked['targets'])}, not {target}")
    return {"env": name}


def options() -> dict[str, Any]:
    """What the page's pickers offer: every target, its `--package` form, the environments."""
    from rmmc.backends import targets
    from rmmc.environments import DEFAULTS
    from rmmc.packaging import SUFFIXES

    return {
        "targets": [{"name": t, "label": TARGET_LABELS.get(t, t),
                     "package": (f"{PACKAGE_LABELS.get(t, 'packaged rule')} ({SUFFIXES[t]})"
                                 if t in SUFFIXES and t != "sigma" else None),
                     "environment_default": DEFAULTS.get(t)}
                    for t in targets()],
        "environments": environments(),
        "limits": {"text_chars": MAX_TEXT_CHARS},
    }


# ------------------------------------------------------------------ requests


def parse_request(body: bytes) -> dict[str, Any]:
    """The request's JSON object, checked: known keys of the right types, a bounded text."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError("the request is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise RequestError("the request must be a JSON object")
    for key, value in data.items():
        if key not in _FIELDS:
            raise RequestError(f"unknown request field {key!r}")
        if not isinstance(value, _FIELDS[key]):
            raise RequestError(f"request field {key!r} has the wrong type")
    text = data.get("text")
    if not isinstance(text, str):
        raise RequestError("the request has no 'text'")
    if len(text) > MAX_TEXT_CHARS:
        raise RequestError(f"the text has {len(text):,} characters; the playground takes "
                           f"{MAX_TEXT_CHARS:,} at most (use the CLI)", 413)
    return data


def translate(request: dict[str, Any]) -> dict[str, Any]:
    """`rmmc translate`: every rule of the text, its status, diagnostics and output files."""
    import rmmc
    from rmmc.backends import targets
    from rmmc.output import file_text, output_names

    target = request.get("target", "sigma")
    if target not in targets():
        raise RequestError(f"unknown target {target!r}")
    text = request["text"]
    result = rmmc.translate(text, to=target, path=SOURCE_NAME, loose=request.get("loose", False),
                            apply_exclusions=request.get("apply_exclusions", False),
                            package=request.get("package", False),
                            allow_lossy=request.get("allow_lossy", False),
                            allow_unknown_fields=request.get("allow_unknown_fields", False),
                            **environment_options(request.get("environment"), target))
    names = output_names(result.rules)
    where = Positions(text)
    rules = []
    for rule in result.rules:
        files = []
        if id(rule) in names:
            name, extension = names[id(rule)]
            files.append({"name": name, "text": file_text(rule.text)})
            stem = name[: -len(extension)]
            files.extend({"name": stem + suffix, "text": file_text(companion)}
                         for suffix, companion in rule.companions)
        rules.append({"title": rule.title, "kind": _kind(rule.document), "status": _status(rule),
                      "text": rule.text, "files": files,
                      "diagnostics": [located(d, where) for d in rule.diagnostics]})
    return {"target": target, "text": result.text, "rules": rules}


def explain(request: dict[str, Any]) -> dict[str, Any]:
    """`rmmc explain`: each rule's detection model as rmmc understood it."""
    from rmmc.compiler.explain import explain as explain_rule, to_jsonable

    rules = []
    where = Positions(request["text"])
    for document, compiled, diagnostics in _compiled(request["text"]):
        rule = compiled.rule if compiled is not None else None
        rules.append({"title": _title(document), "kind": _kind(document),
                      "text": explain_rule(rule) if rule is not None else "",
                      "model": to_jsonable(rule) if rule is not None else None,
                      "diagnostics": [located(d, where) for d in diagnostics]})
    return {"rules": rules}


def verify(request: dict[str, Any]) -> dict[str, Any]:
    """`rmmc verify` to every target: per rule and target agree / disagree / approximate /
    refused / unchecked, with the counterexample event of a difference."""
    from rmmc import verify_rule
    from rmmc.backends import targets
    from rmmc.backends.base import EmitOptions

    options = EmitOptions(loose=request.get("loose", False),
                          apply_exclusions=request.get("apply_exclusions", False))
    env = None
    if request.get("environment"):
        from rmmc.environments import load_environment

        environment_options(request["environment"])  # a built-in, or a RequestError
        env = load_environment(request["environment"])
    rules = []
    where = Positions(request["text"])
    for document, compiled, diagnostics in _compiled(request["text"]):
        entry: dict[str, Any] = {"title": _title(document), "kind": _kind(document),
                                 "diagnostics": [located(d, where) for d in diagnostics]}
        if compiled is None or compiled.rule is None:
            entry["error"] = next((d.message for d in diagnostics if d.is_error), "not compiled")
        else:
            count, verdicts = verify_rule(compiled.rule, targets(), options, VERIFY_SAMPLE, env)
            entry["events"] = count
            entry["targets"] = [{"target": v.target, "status": v.status, "engine": v.engine,
                                 "detail": v.detail, "counterexample": v.counterexample,
                                 "source_selects_it": v.expected} for v in verdicts]
        rules.append(entry)
    return {"rules": rules}


ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "translate": translate, "explain": explain, "verify": verify}


def handle(action: str, body: bytes) -> tuple[int, bytes]:
    """Run one request: (HTTP status, JSON answer).  Bad requests and failures are answers
    with an `error`, never exceptions (a library bug is reported as an internal error)."""
    try:
        answer = ACTIONS[action](parse_request(body))
        status = 200
    except RequestError as exc:
        status, answer = exc.status, {"error": str(exc)}
    except RecursionError:
        status, answer = 422, {"error": "the rule is nested too deeply to handle"}
    except MemoryError:
        status, answer = 422, {"error": "the rule needs more memory than the playground allows"}
    except Exception as exc:  # a library bug: say so, keep serving
        status, answer = 500, {"error": f"internal error: {type(exc).__name__}: {exc}"}
    data = json.dumps(answer, ensure_ascii=False, default=str).encode("utf-8")
    if len(data) > MAX_ANSWER_BYTES:
        status, data = 422, json.dumps({"error": f"the answer is {len(data):,} bytes; the playground "
                                                  f"shows {MAX_ANSWER_BYTES:,} at most (use the CLI)"}).encode()
    return status, data


# ------------------------------------------------------------------ helpers


def _compiled(text: str):
    """(document, compiled rule or None, diagnostics) for every rule of the text, as `rmmc
    explain` and `rmmc verify` read it; a text with no rule gives one entry holding why."""
    from rmmc.compiler.documents import read_text
    from rmmc.compiler.pipeline import compile_document

    read = read_text(text, SOURCE_NAME)
    if not read.documents:
        yield None, None, tuple(read.diagnostics)
        return
    for document in read.documents:
        compiled = compile_document(document)
        yield document, compiled, tuple(read.diagnostics) + tuple(compiled.diagnostics)


def _kind(document) -> str | None:
    return document.kind.value if document is not None else None


def _title(document) -> str | None:
    return document.title if document is not None else None


def _status(rule) -> str:
    """How the page labels a translation: refused, lossy (a flagged approximation, written
    only when allowed) or exact."""
    return rule.verdict


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class Positions:
    """Maps the library's offsets (code points) to JavaScript's (UTF-16 code units)."""

    def __init__(self, text: str) -> None:
        self.astral = [] if text.isascii() else [m.start() for m in _ASTRAL.finditer(text)]

    def utf16(self, offset: int) -> int:
        return offset + bisect.bisect_left(self.astral, offset)


def located(diagnostic, where: Positions) -> dict[str, Any]:
    """A diagnostic for the page: line and column as the CLI prints them, and the span as
    UTF-16 offsets into the editor's text (None when it has no place)."""
    span = diagnostic.span
    return {"severity": diagnostic.severity.value, "message": diagnostic.message,
            "code": diagnostic.code,
            "line": span.line if span else None, "column": span.column if span else None,
            "from": where.utf16(span.offset) if span else None,
            "to": where.utf16(span.end) if span else None}
