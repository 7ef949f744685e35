"""`rmmc web`'s API through Starlette's test client: the answers are the library's (and the
CLI's files, byte for byte), bad requests are refused with a reason, and only this origin
and host are served.  The browser test is tests/test_web_e2e.py; load and limits are in
tests/test_web_limits.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="rmmc web needs the web extra: pip install 'rmmc[web]'")
pytest.importorskip("pebble", reason="rmmc web needs the web extra: pip install 'rmmc[web]'")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")

from click.testing import CliRunner  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import rmmc  # noqa: E402
from rmmc.backends import targets  # noqa: E402
from rmmc.cli import main  # noqa: E402
from rmmc.environments import DEFAULTS, list_environments  # noqa: E402
from rmmc.web.app import MAX_BODY_BYTES, create_app  # noqa: E402
from rmmc.web.service import MAX_TEXT_CHARS  # noqa: E402
from rmmc.web.workers import Limits  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEED_PATH = REPO / "rules" / "rmm_remotepc_netconn.txt"
SEED = SEED_PATH.read_text(encoding="utf-8")
ORIGIN = "http://127.0.0.1:8765"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Limits(workers=2)), base_url=ORIGIN) as test_client:
        yield test_client


def post(client, action: str, body: dict, **headers):
    return client.post(f"/api/{action}", content=json.dumps(body), headers={**JSON, **headers})


def cli_files(tmp_path: Path, *args: str) -> dict[str, str]:
    """The files `rmmc translate SEED -o DIR ...` writes, by name."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["translate", str(SEED_PATH), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir())}


# ------------------------------------------------------------------ the page


def test_page_and_assets_are_served_from_memory_with_no_external_reference(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/app.js"' in page.text and 'href="/app.css"' in page.text
    for path in ("/", "/app.js", "/app.css", "/favicon.svg"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        body = answer.text
        # no CDN, no font service: every asset is this server's own (works offline)
        assert "https://" not in body and "//cdn" not in body and "@import" not in body, path
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_nothing_but_the_page_is_served(client):
    for path in ("/static/app.js", "/..%2f..%2fpyproject.toml", "/app.js/../../pyproject.toml",
                 "/rules/rmm_remotepc_netconn.txt", "/index.html", "/etc/passwd"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "root:" not in answer.text and "[project]" not in answer.text


def test_options_offer_every_target_its_package_form_and_every_environment(client):
    options = client.get("/api/options").json()
    assert [t["name"] for t in options["targets"]] == targets()
    packaged = {t["name"] for t in options["targets"] if t["package"]}
    assert packaged == {"kql", "splunk", "eql", "esql"}  # sigma is a complete rule already
    assert [e["name"] for e in options["environments"]] == [e.name for e in list_environments()]
    serving = {e["name"]: e["targets"] for e in options["environments"]}
    assert serving["sentinel"] == ["kql"] and serving["elastic-endpoint"] == ["eql", "esql"]
    defaults = {t["name"]: t["environment_default"] for t in options["targets"]}
    assert defaults == DEFAULTS


# ------------------------------------------------------------------ translate


def test_seed_to_splunk_is_the_library_answer_and_the_cli_file(client, tmp_path):
    # By default the Sysmon environment refuses the seed: its network events carry no version
    # information and no device id; the page says which, and allows them when asked.
    refused = post(client, "translate", {"text": SEED, "target": "splunk"}).json()
    [rule] = refused["rules"]
    assert rule["status"] == "refused"
    assert any("InitiatingProcessVersionInfoCompanyName" in d["message"] and d["severity"] == "error"
               for d in rule["diagnostics"])
    answer = post(client, "translate", {"text": SEED, "target": "splunk", "allow_unknown_fields": True})
    assert answer.status_code == 200
    data = answer.json()
    library = rmmc.translate(SEED, to="splunk", allow_unknown_fields=True)
    assert data["text"] == library.text
    [rule] = data["rules"]
    assert rule["kind"] == "hunt" and rule["status"] == "exact"
    assert rule["title"] == "Remote Management and Monitoring tool - RemotePC - Network Connection"
    assert rule["text"].startswith("search `sysmon` earliest=-5d latest=now")
    assert [d["message"] for d in rule["diagnostics"]] == [d.message for d in library.diagnostics]
    files = {f["name"]: f["text"] for f in rule["files"]}
    assert files == cli_files(tmp_path, "--to", "splunk", "--allow-unknown-fields")


@pytest.mark.parametrize("target", ["sigma", "kql", "eql", "esql", "splunk"])
def test_package_forms_download_what_the_cli_writes(client, tmp_path, target):
    data = post(client, "translate", {"text": SEED, "target": target, "package": True,
                                      "allow_unknown_fields": True}).json()
    [rule] = data["rules"]
    files = {f["name"]: f["text"] for f in rule["files"]}
    expected = cli_files(tmp_path, "--to", target, "--package", "--allow-unknown-fields")
    assert files == expected
    if target == "sigma":  # the seed's exclusions travel as a Sigma filter file beside the rule
        assert any(name.endswith(".filters.yml") for name in files)


def test_environment_picks_the_environment(client):
    for env in list_environments():
        for target in (["eql", "esql"] if env.target == "elastic" else [env.target]):
            data = post(client, "translate", {"text": SEED, "target": target, "environment": env.name,
                                              "allow_unknown_fields": True}).json()
            assert data["text"] == rmmc.translate(SEED, to=target, env=env.name, allow_unknown_fields=True).text
    defend = post(client, "translate", {"text": SEED, "target": "esql", "environment": "elastic-endpoint",
                                        "allow_unknown_fields": True}).json()
    beat = post(client, "translate", {"text": SEED, "target": "esql", "environment": "elastic-winlogbeat",
                                      "allow_unknown_fields": True}).json()
    assert defend["text"].startswith("FROM logs-endpoint.events.network-*") and "destination.domain" in defend["text"]
    assert beat["text"].startswith("FROM winlogbeat-*")
    default = post(client, "translate", {"text": SEED, "target": "esql", "environment": None,
                                         "allow_unknown_fields": True}).json()
    assert default["text"] == beat["text"]
    unknown = post(client, "translate", {"text": SEED, "target": "esql", "environment": "../ecs"})
    assert unknown.status_code == 400 and "unknown environment" in unknown.json()["error"]
    wrong = post(client, "translate", {"text": SEED, "target": "esql", "environment": "sentinel"})
    assert wrong.status_code == 400 and "not esql" in wrong.json()["error"]


def test_syntax_error_is_located_at_its_line_and_column(client):
    broken = SEED.replace("has_any (\n'remotepc'", "has_any has_any (\n'remotepc'", 1)
    data = post(client, "translate", {"text": broken, "target": "splunk"}).json()
    [rule] = data["rules"]
    assert rule["status"] == "refused" and rule["text"] == "" and rule["files"] == []
    [error] = [d for d in rule["diagnostics"] if d["severity"] == "error"]
    assert error["message"] == "expected '(' after has_any, found 'has_any'"
    assert (error["line"], error["column"]) == (10, 53)
    assert broken.splitlines()[9][52:59] == "has_any"
    assert broken[error["from"]:error["to"]] == "has_any"


def test_offsets_count_utf16_units_as_the_editor_does(client):
    text = "DeviceProcessEvents\n| where FileName == '\U0001F600\U0001F600' and and"
    data = post(client, "translate", {"text": text, "target": "kql"}).json()
    [error] = [d for d in data["rules"][0]["diagnostics"] if d["severity"] == "error"]
    units = text.encode("utf-16-le")
    assert units[2 * error["from"]:2 * error["to"]].decode("utf-16-le") == "and"
    assert error["line"] == 2 and text.splitlines()[1][error["column"] - 1:].startswith("and")


def test_lossy_and_refused_are_labelled_with_their_reasons(client):
    lossy = post(client, "translate", {"text": "DeviceNetworkEvents | where RemoteUrl has 'x.com'",
                                       "target": "sigma", "loose": True}).json()["rules"][0]
    assert lossy["status"] == "lossy" and lossy["text"]
    assert any(d["code"] == "loose" and "|contains" in d["message"] for d in lossy["diagnostics"])
    exact = post(client, "translate", {"text": "DeviceNetworkEvents | where RemoteUrl has 'x.com'",
                                       "target": "sigma"}).json()["rules"][0]
    assert exact["status"] == "exact"
    refused = post(client, "translate", {"text": "DeviceNetworkEvents | evaluate bag_unpack(AdditionalFields)",
                                         "target": "splunk"}).json()["rules"][0]
    assert refused["status"] == "refused" and refused["text"] == ""
    [error] = [d for d in refused["diagnostics"] if d["severity"] == "error"]
    assert error["message"].startswith("unsupported operator: evaluate") and (error["line"], error["column"]) == (1, 23)


def test_a_text_with_several_rules_gives_one_result_and_file_each(client):
    markdown = ("# two rules\n\n```kql\nDeviceProcessEvents | where FileName =~ 'a.exe'\n```\n\n"
                "```kql\nDeviceProcessEvents | where FileName =~ 'b.exe'\n```\n")
    data = post(client, "translate", {"text": markdown, "target": "kql"}).json()
    assert [r["kind"] for r in data["rules"]] == ["markdown", "markdown"]
    names = [f["name"] for r in data["rules"] for f in r["files"]]
    assert len(names) == 2 and len(set(names)) == 2


# ------------------------------------------------------------------ explain and verify


def test_explain_is_what_rmmc_explain_prints(client):
    data = post(client, "explain", {"text": SEED}).json()
    [rule] = data["rules"]
    printed = CliRunner().invoke(main, ["explain", str(SEED_PATH)]).output
    assert rule["text"] and rule["text"] in printed
    assert "RemoteUrl has the term 'remotepc.com' [case-insensitive]" in rule["text"]
    assert rule["model"]["node"] == "Rule"


def test_verify_seed_agrees_on_every_engine_here(client):
    data = post(client, "verify", {"text": SEED}).json()
    [rule] = data["rules"]
    statuses = {t["target"]: t["status"] for t in rule["targets"]}
    assert set(statuses) == set(targets())
    _, direct = rmmc.verify_rule(rmmc.lower_text(_seed_query()).rule, targets())
    # the seed's three checkable targets agree here (their engines are test dependencies)
    assert statuses["kql"] == statuses["sigma"] == statuses["eql"] == "agree"
    assert statuses["splunk"] == statuses["esql"] == "unchecked"
    assert rule["events"] > 0 and all(t["counterexample"] is None for t in rule["targets"])
    assert {v.target: v.status for v in direct} == statuses


def test_verify_shows_the_counterexample_of_a_difference(client):
    text = "DeviceNetworkEvents | where InitiatingProcessVersionInfoCompanyName has 'DWSNET OÜ'"
    [rule] = post(client, "verify", {"text": text}).json()["rules"]
    [kql] = [t for t in rule["targets"] if t["target"] == "kql"]
    assert kql["status"] == "approximate" and "as flagged" in kql["detail"]
    event = kql["counterexample"]["InitiatingProcessVersionInfoCompanyName"]
    assert rmmc.matches(rmmc.lower_text(text).rule, {"InitiatingProcessVersionInfoCompanyName": event}) \
        is kql["source_selects_it"]


def test_verify_and_explain_report_a_rule_that_does_not_compile(client):
    text = "DeviceProcessEvents | where FileName == 'x' and and"
    [rule] = post(client, "verify", {"text": text}).json()["rules"]
    assert rule["error"] and "targets" not in rule
    [rule] = post(client, "explain", {"text": text}).json()["rules"]
    assert rule["text"] == "" and any(d["severity"] == "error" and d["line"] == 1 for d in rule["diagnostics"])


def _seed_query() -> str:
    """The seed's `KQL Query` section (what the hunt-document reader compiles)."""
    from rmmc.compiler.documents import read_text

    document = read_text(SEED, "<seed>").documents[0]
    span = document.query_span
    return SEED[span.offset:span.end]


# ------------------------------------------------------------------ refusals


def test_bad_requests_are_refused_with_a_reason(client):
    cases = [
        (b"not json", 400, "not UTF-8 JSON"),
        (b"\xff\xfe", 400, "not UTF-8 JSON"),
        (b"[]", 400, "JSON object"),
        (json.dumps({"target": "kql"}).encode(), 400, "no 'text'"),
        (json.dumps({"text": 1}).encode(), 400, "wrong type"),
        (json.dumps({"text": "x", "package": "yes"}).encode(), 400, "wrong type"),
        (json.dumps({"text": "x", "path": "/etc/passwd"}).encode(), 400, "unknown request field 'path'"),
        (json.dumps({"text": "x", "target": "../../etc/passwd"}).encode(), 400, "unknown target"),
        (json.dumps({"text": "x" * (MAX_TEXT_CHARS + 1)}).encode(), 413, "characters"),
    ]
    for body, status, reason in cases:
        answer = client.post("/api/translate", content=body, headers=JSON)
        assert answer.status_code == status, body[:60]
        assert reason in answer.json()["error"], body[:60]


def test_oversized_body_is_refused_before_it_reaches_a_worker(client):
    answer = client.post("/api/translate", content=b" " * (MAX_BODY_BYTES + 1), headers=JSON)
    assert answer.status_code == 413 and "bytes" in answer.json()["error"]


def test_only_this_origin_and_this_host_are_served(client):
    body = {"text": SEED, "target": "kql"}
    assert post(client, "translate", body, Origin=ORIGIN).status_code == 200
    assert post(client, "translate", body, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999", "https://127.0.0.1:8765"):
        answer = post(client, "translate", body, Origin=origin)
        assert answer.status_code == 403 and "origin" in answer.json()["error"]
    answer = post(client, "translate", body, **{"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    # a form post (no preflight) cannot be JSON
    answer = client.post("/api/translate", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415
    # no CORS: a preflight is not answered with permission
    preflight = client.options("/api/translate", headers={"Origin": "http://evil.example",
                                                          "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
    # DNS rebinding: a page of another name resolved to 127.0.0.1 sends its own Host
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example"):
        answer = client.get("/", headers={"Host": host})
        assert answer.status_code == 421, host
        assert post(client, "translate", body, Host=host, Origin=f"http://{host}").status_code == 421
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    assert client.get("/api/translate").status_code == 405


# ------------------------------------------------------------------ the command


def test_other_commands_do_not_import_the_web_stack():
    code = ("import sys, rmmc.cli; from click.testing import CliRunner; "
            "CliRunner().invoke(rmmc.cli.main, ['check', '--help']); "
            "print(sorted({'starlette', 'uvicorn', 'pebble', 'rmmc.web'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_web_without_its_extra_says_how_to_install_it():
    code = ("import sys; sys.modules['uvicorn'] = None; from rmmc.cli import main; "
            "main(['web', '--port', '0'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert "pip install 'rmmc[web]'" in out.stderr and "uvicorn" in out.stderr
