"""`rmmc web` under load and abuse, on a real server (a subprocess on a free loopback port):
a 1 MB paste, a rule at the parser's full nesting depth and 20 concurrent requests leave it
answering; a request over its time limit is stopped; and no request reads or writes a file
(path-like inputs, checked three ways: the answers, the folders the server could write to,
and an audit of every file the service opens)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="rmmc web needs the web extra: pip install 'rmmc[web]'")
pytest.importorskip("pebble", reason="rmmc web needs the web extra: pip install 'rmmc[web]'")

from playground_server import PlaygroundServer  # noqa: E402

import rmmc  # noqa: E402
from rmmc.compiler.kql.parser import MAX_NESTING, KqlSyntaxError, parse_kql  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEED = (REPO / "rules" / "rmm_remotepc_netconn.txt").read_text(encoding="utf-8")
MEGABYTE_RULE = ("DeviceNetworkEvents | where RemoteUrl has_any ("
                 + ",".join(f"'host{i}.example.com'" for i in range(46_000)) + ")")
PASSWD = Path("/etc/passwd")

PATH_LIKE = [
    "/etc/passwd", "../../../../../../../etc/passwd", "file:///etc/passwd", "~/.ssh/id_rsa",
    "-", "<stdin>", "/dev/zero", "/proc/self/environ", "C:\\Windows\\win.ini",
    "\\\\server\\share\\rule.yml", "$(cat /etc/passwd)", "`touch pwned`", "; touch pwned",
    "externaldata (line: string) [@'file:///etc/passwd'] | where line has 'root'",
    "DeviceProcessEvents | where FolderPath == '/etc/passwd' | extend f = '../../etc/shadow'",
    ("title: ../../../etc/passwd\nid: ../x\nlogsource:\n  product: windows\n  category: process_creation\n"
     "detection:\n  selection:\n    Image: /etc/passwd\n  condition: selection\n"),
    "# [rule](/etc/passwd)\n\n```kql\nDeviceProcessEvents | where FileName == '/etc/passwd'\n```\n",
    ("id: ../../etc/passwd\nname: /etc/passwd\ndescription: x\nseverity: High\n"
     "query: |\n  DeviceProcessEvents | where FolderPath startswith '/etc/'\n"),
]


def _deepest(make) -> int:
    """The deepest `make(n)` the parser accepts (its limit, whatever it is today)."""
    n = MAX_NESTING
    while n > 0:
        try:
            parse_kql(make(n))
            return n
        except KqlSyntaxError:
            n -= 1
    raise AssertionError("no nesting depth parses")


def _nested(n: int) -> str:
    return "DeviceProcessEvents | where " + "(" * n + "FileName == 'x.exe'" + ")" * n


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server whose working folder, home and temporary folder are empty folders of the
    test's own (the grammar cache stays where it is, so workers start warm)."""
    root = tmp_path_factory.mktemp("playground")
    watched = {name: root / name for name in ("cwd", "home", "tmp")}
    for folder in watched.values():
        folder.mkdir()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    env = {**os.environ, "HOME": str(watched["home"]), "TMPDIR": str(watched["tmp"]),
           "XDG_CACHE_HOME": cache}
    playground = PlaygroundServer(cwd=str(watched["cwd"]), env=env).start()
    playground.watched = watched
    try:
        yield playground
    finally:
        playground.stop()


def _tree(folders) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in folders for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------ size, depth, load


def test_a_megabyte_paste_is_translated(server):
    assert len(MEGABYTE_RULE.encode()) > 1_000_000
    status, data = server.post("/api/translate", {"text": MEGABYTE_RULE, "target": "splunk"})
    assert status == 200
    [rule] = data["rules"]
    assert rule["status"] == "exact" and "host45999\\\\.example\\\\.com" in rule["text"]


def test_a_rule_at_the_parsers_full_depth_is_translated_and_one_deeper_is_located(server):
    depth = _deepest(_nested)
    status, data = server.post("/api/translate", {"text": _nested(depth), "target": "kql"})
    assert status == 200 and data["rules"][0]["status"] == "exact"
    assert data["text"] == rmmc.translate(_nested(depth), to="kql").text
    status, data = server.post("/api/verify", {"text": _nested(depth)})
    assert status == 200 and {t["status"] for t in data["rules"][0]["targets"]} <= {"agree", "unchecked"}
    status, data = server.post("/api/translate", {"text": _nested(depth + 1), "target": "kql"})
    assert status == 200
    [error] = [d for d in data["rules"][0]["diagnostics"] if d["severity"] == "error"]
    assert error["code"] == "too-deep" and error["line"] == 1


def test_twenty_concurrent_requests_leave_the_server_responsive(server):
    depth = _deepest(_nested)
    heavy = [("translate", {"text": MEGABYTE_RULE, "target": "splunk"})] * 3
    others = ([("verify", {"text": _nested(depth)})] * 8
              + [("translate", {"text": SEED, "target": "splunk"})] * 9)
    requests = heavy + others
    answers: list[tuple[str, int, dict] | None] = [None] * len(requests)

    def send(i: int) -> None:
        action, body = requests[i]
        answers[i] = (action, *server.post(f"/api/{action}", body))

    def health() -> int:
        status, body = server.get("/api/health", timeout=30)
        assert status == 200
        return json.loads(body)["pending"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    # Three megabyte pastes first (seconds of work each), then the seventeen others at once.
    for thread in threads[:len(heavy)]:
        thread.start()
    while health() < len(heavy) and any(t.is_alive() for t in threads[:len(heavy)]):
        pass
    for thread in threads[len(heavy):]:
        thread.start()
    # While they are queued or running, the server still answers at once: each health answer
    # kept below was given while some of the 20 were pending (it says how many).
    busy = []
    while any(t.is_alive() for t in threads) and len(busy) < 3:
        pending = health()
        if pending > 0:
            page_status, page = server.get("/", timeout=30)
            assert page_status == 200 and b"rmmc playground" in page
            busy.append(pending)
    for thread in threads:
        thread.join(timeout=600)
    assert len(busy) == 3, "the server was not seen busy (did the requests run at all?)"
    assert all(a is not None for a in answers)
    assert [a[1] for a in answers[:len(heavy)]] == [200] * len(heavy)  # the queue had room for them
    served = [a for a in answers if a[1] == 200]
    refused = [a for a in answers if a[1] == 503]
    assert len(served) + len(refused) == len(requests)
    assert all("busy" in body["error"] for _, _, body in refused)  # told at once to try again
    assert json.loads(server.get("/api/health")[1])["refused"] >= len(refused)
    for action, _, body in served:
        rule = body["rules"][0]
        if action == "verify":
            assert {t["status"] for t in rule["targets"]} <= {"agree", "unchecked"}
        else:
            assert rule["status"] == "exact" and rule["text"].startswith("search ")
    status, data = server.post("/api/translate", {"text": SEED, "target": "splunk"})
    assert status == 200 and data["text"] == rmmc.translate(SEED, to="splunk").text
    assert health() == 0


def test_a_waiting_request_whose_client_leaves_is_dropped(server):
    """Both workers busy with megabyte pastes, a third request waits; its client hangs up and
    the request is dropped without running (the server counts it)."""
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    answers = []

    def health() -> dict:
        return json.loads(server.get("/api/health", timeout=30)[1])

    before = health()
    heavy = [threading.Thread(target=lambda: answers.append(
        server.post("/api/translate", {"text": MEGABYTE_RULE, "target": "splunk"}))) for _ in range(2)]
    for thread in heavy:
        thread.start()
    while health()["pending"] < 2 and all(t.is_alive() for t in heavy):
        pass
    body = json.dumps({"text": SEED, "target": "kql"}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as leaving:
        leaving.sendall(f"POST /api/translate HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        # three unfinished on two workers: the third is waiting
        while health()["pending"] < 3 and all(t.is_alive() for t in heavy):
            pass
    for thread in heavy:
        thread.join(timeout=600)
    after = health()
    assert [status for status, _ in answers] == [200, 200]
    assert after["dropped"] == before["dropped"] + 1
    assert after["pending"] == 0


def test_a_request_over_its_time_limit_is_stopped_and_the_worker_replaced():
    pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")
    from starlette.testclient import TestClient

    from rmmc.web.app import create_app
    from rmmc.web.workers import Limits

    # 0.2 s of work allowed; the megabyte rule takes over a second on any machine
    app = create_app(Limits(workers=1, time_limit=0.2, verify_time_limit=0.2))
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        headers = {"Content-Type": "application/json"}
        answer = client.post("/api/translate", headers=headers,
                             content=json.dumps({"text": MEGABYTE_RULE, "target": "sigma"}))
        assert answer.status_code == 504 and "stopped after 0.2 s" in answer.json()["error"]
        assert client.get("/api/health").json()["stopped"] == 1
        answer = client.post("/api/translate", headers=headers,
                             content=json.dumps({"text": "DeviceProcessEvents | where FileName == 'a'",
                                                 "target": "kql"}))
        assert answer.status_code == 200 and answer.json()["rules"][0]["status"] == "exact"


# ------------------------------------------------------------------ no file is read or written


def test_path_like_inputs_read_and_write_no_file(server):
    assert server.post("/api/translate", {"text": SEED, "target": "kql"})[0] == 200
    before = _tree(server.watched.values())
    secret = PASSWD.read_text().splitlines()[0] if PASSWD.is_file() else "root:x:0:0:"
    for text in PATH_LIKE:
        for action, extra in [("translate", {"target": "sigma"}), ("translate", {"target": "kql", "package": True}),
                              ("translate", {"target": "splunk", "package": True}), ("explain", {}),
                              ("verify", {})]:
            status, data = server.post(f"/api/{action}", {"text": text, **extra})
            assert status == 200, (text, action, data)
            dumped = json.dumps(data)
            assert secret not in dumped and "root:x:0" not in dumped, (text, action)
            assert "internal error" not in dumped and "PermissionError" not in dumped, (text, action)
            for rule in data["rules"]:
                for file in rule.get("files", []):
                    assert "/" not in file["name"] and "\\" not in file["name"]
                    assert not file["name"].startswith(".")
    for field, value in [("target", "/etc/passwd"), ("environment", "../../etc/passwd"),
                         ("path", "/etc/passwd"), ("output", "/tmp/x")]:
        status, data = server.post("/api/translate", {"text": SEED, field: value})
        assert status == 400 and "root:" not in json.dumps(data)
    assert _tree(server.watched.values()) == before
    assert not any((folder / "pwned").exists() for folder in server.watched.values())


def test_the_service_itself_opens_no_file_outside_the_python_installation():
    """Every file the service opens while handling path-like inputs, recorded with an audit
    hook in this process: only modules and rmmc's cache, and nothing for writing."""
    from rmmc.web import sandbox, service, workers

    for action, request in workers._warm_requests():
        service.handle(action, json.dumps(request).encode())
    roots = sandbox.read_roots()
    seen: list[tuple[str, object, object]] = []
    recording = [True]

    def record(event: str, args: tuple) -> None:
        if recording[0] and (event == "open" or event in sandbox.DENIED or event in ("os.listdir", "os.scandir")):
            seen.append((event, args[0] if args else None, args[1] if len(args) > 1 else None))

    sys.addaudithook(record)  # cannot be removed: it stops recording below
    try:
        for text in PATH_LIKE:
            for action, extra in [("translate", {"target": "sigma"}), ("translate", {"target": "eql", "package": True}),
                                  ("explain", {}), ("verify", {})]:
                status, _ = service.handle(action, json.dumps({"text": text, **extra}).encode())
                assert status == 200
    finally:
        recording[0] = False
    outside = [(event, path, mode) for event, path, mode in seen
               if event != "open" or not sandbox._inside(path, roots) or sandbox._writes(mode, None)]
    assert outside == []


def test_a_locked_down_worker_can_translate_but_not_touch_files(tmp_path):
    """The lock-down a worker runs under, in a process of its own."""
    target = tmp_path / "written.txt"
    code = f"""
import json, os, socket, subprocess
from rmmc.web import service, workers
workers.start_worker()
status, body = service.handle("translate", json.dumps({{"text": "DeviceProcessEvents | where FileName == 'a'", "target": "splunk"}}).encode())
print("translate", status, json.loads(body)["rules"][0]["status"])
attempts = {{
    "read": lambda: open("/etc/passwd").read(),
    "write": lambda: open({str(target)!r}, "w"),
    "list": lambda: os.listdir({str(tmp_path)!r}),
    "remove": lambda: os.remove({str(tmp_path)!r}),
    "run": lambda: subprocess.run(["true"]),
    "shell": lambda: os.system("true"),
    "connect": lambda: socket.create_connection(("127.0.0.1", 9)),
}}
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, "allowed")
    except PermissionError:
        print(name, "refused")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["translate 200 exact", "read refused", "write refused", "list refused",
                                      "remove refused", "run refused", "shell refused", "connect refused", ""]
    assert not target.exists()
