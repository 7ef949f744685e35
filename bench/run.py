"""rmmc benchmark harness: `make bench` (or `.venv/bin/python bench/run.py`).

Sections, each catching its own failure: (1) rmmc per stage over the real KQL corpus and the
RMM corpus, (2) growth with input size, (3) cold CLI start beside `python -c pass` (the floor),
(3b) CLI throughput (`check` over the KQL corpus, `verify` over the RMM corpus), (4) the
sigma-cli/pySigma peer.
Prints a table and writes every figure to out/bench.json.  Timings are one core, wall clock
(time.perf_counter); nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import traceback
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT / ".." / "shared").resolve()
KQL_CORPUS = SHARED / "corpus" / "kql"
RMM_CORPUS = SHARED / "corpus" / "rmm"
SIGMA_RULES = SHARED / "corpus" / "sigma" / "rules" / "windows"
ALL_TOOLS = RMM_CORPUS / "Network Indicators" / "rmm__all_netconn.yaml"
CLI_RULE = ROOT / "rules" / "rmm_remotepc_netconn.txt"
PEER_VENV = ROOT / "bench" / ".venv"
OUT = ROOT / "out" / "bench.json"

RESULTS: dict = {}
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def rate(n: int, seconds: float) -> float | None:
    return n / seconds if seconds > 0 else None


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}/s"


def maxrss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / (1024 * 1024) if sys.platform == "darwin" else raw / 1024


def section(name: str):
    """Run a section; its failure is printed and recorded, never fatal."""
    def wrap(function):
        def run(*args, **kwargs):
            say()
            say(f"== {name} ==")
            started = time.perf_counter()
            try:
                function(*args, **kwargs)
            except Exception as exc:
                RESULTS.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                say(f"  FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc(limit=3)
            say(f"  (section took {time.perf_counter() - started:.1f}s)")
        return run
    return wrap


# ---------------------------------------------------------------- 1. rmmc per stage

def _pipeline_stages(paths: list[str], label: str) -> dict:
    """Time read, parse, lower and each emit over `paths`, one stage at a time."""
    from rmmc import backends
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.kql.parser import parse_kql
    from rmmc.compiler.kql.lower import lower_query
    from rmmc.compiler.pipeline import metadata_of

    figures: dict = {"files": len(paths)}
    t0 = time.perf_counter()
    documents = [doc for p in paths for doc in read_path(p).documents]
    t_read = time.perf_counter() - t0
    figures["read"] = {"items": len(paths), "seconds": t_read, "per_s": rate(len(paths), t_read),
                       "documents": len(documents)}

    parsed, parse_failed = [], 0
    t0 = time.perf_counter()
    for doc in documents:
        try:
            parsed.append((doc, parse_kql(doc.query)))
        except Exception:
            parse_failed += 1
    t_parse = time.perf_counter() - t0
    figures["parse"] = {"items": len(documents), "seconds": t_parse,
                        "per_s": rate(len(documents), t_parse), "ok": len(parsed),
                        "failed": parse_failed}

    rules, lower_failed = [], 0
    t0 = time.perf_counter()
    for doc, query in parsed:
        try:
            lowered = lower_query(query, metadata_of(doc))
        except Exception:
            lower_failed += 1
            continue
        if lowered.rule is not None:
            rules.append(lowered.rule)
        else:
            lower_failed += 1
    t_lower = time.perf_counter() - t0
    figures["lower"] = {"items": len(parsed), "seconds": t_lower, "per_s": rate(len(parsed), t_lower),
                        "ok": len(rules), "failed": lower_failed}

    options = EmitOptions()
    for target in backends.targets():
        ok = failed = 0
        t0 = time.perf_counter()
        for rule in rules:
            try:
                ok += 1 if backends.emit(target, rule, options).ok else 0
            except Exception:
                failed += 1
        seconds = time.perf_counter() - t0
        figures[f"emit_{target}"] = {"items": len(rules), "seconds": seconds,
                                     "per_s": rate(len(rules), seconds), "ok": ok, "raised": failed}

    # Peak Python heap of the streaming pipeline (one document at a time), a second pass
    # under tracemalloc so its overhead does not touch the timings above.
    tracemalloc.start()
    for doc in documents:
        try:
            lowered = lower_query(parse_kql(doc.query), metadata_of(doc))
            if lowered.rule is not None:
                for target in backends.targets():
                    backends.emit(target, lowered.rule, options)
        except Exception:
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    figures["tracemalloc_peak_mb_streaming"] = peak / (1024 * 1024)
    figures["maxrss_mb_after"] = maxrss_mb()

    say(f"  {label}: {len(paths)} files, {len(documents)} queries, "
        f"{len(parsed)} parsed, {len(rules)} lowered")
    say(f"  {'stage':<14}{'items':>8}{'seconds':>10}{'rate':>14}{'ok':>8}")
    for stage, fig in figures.items():
        if isinstance(fig, dict):
            say(f"  {stage:<14}{fig['items']:>8}{fig['seconds']:>10.3f}{fmt_rate(fig['per_s']):>14}"
                f"{fig.get('ok', fig.get('documents', '')):>8}")
    say(f"  peak heap (tracemalloc, streaming pass): {figures['tracemalloc_peak_mb_streaming']:.1f} MB;"
        f" process max RSS so far: {figures['maxrss_mb_after']:.0f} MB")
    return figures


@section("1a. rmmc per stage: KQL corpus")
def bench_kql_corpus(sample: int) -> None:
    index = KQL_CORPUS / "index.jsonl"
    if not index.is_file():
        say(f"  skipped: {index} not found (../shared is absent)")
        RESULTS["kql_corpus"] = {"skipped": "corpus absent"}
        return
    files = [json.loads(line)["file"] for line in index.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    if sample and sample < len(files):
        say(f"  sampling: the first {sample} of {len(files)} files (--sample)")
        files = files[:sample]
    RESULTS["kql_corpus"] = _pipeline_stages([str(KQL_CORPUS / f) for f in files], "kql corpus")


@section("1b. rmmc per stage: RMM corpus")
def bench_rmm_corpus() -> None:
    if not RMM_CORPUS.is_dir():
        say(f"  skipped: {RMM_CORPUS} not found (../shared is absent)")
        RESULTS["rmm_corpus"] = {"skipped": "corpus absent"}
        return
    from rmmc.compiler.documents import iter_rule_files
    paths = list(iter_rule_files([str(RMM_CORPUS)]))
    RESULTS["rmm_corpus"] = _pipeline_stages(paths, "rmm corpus")


# ---------------------------------------------------------------- 2. growth

def _has_any_rule(n: int) -> str:
    values = ",\n    ".join(f"'host{i}.example{i % 97}.com'" for i in range(n))
    return f"DeviceNetworkEvents\n| where RemoteUrl has_any (\n    {values}\n)\n"


def _datatable_rows() -> list[tuple[str, str]]:
    """The all-tools rule's (URI, tool) rows when the corpus is here, else synthetic ones."""
    if ALL_TOOLS.is_file():
        from rmmc.compiler.documents import read_path
        import re
        query = read_path(str(ALL_TOOLS)).documents[0].query
        body = query[query.index("[") + 1:query.index("]")]
        strings = re.findall(r"'((?:[^'\\]|\\.)*)'", body)
        rows = list(zip(strings[0::2], strings[1::2]))
        if rows:
            return rows
    return [(f"tool{i}.example.com", f"tool{i % 40}") for i in range(187)]


def _datatable_rule(rows: list[tuple[str, str]], copies: int) -> str:
    lines = []
    for k in range(copies):
        prefix = "" if k == 0 else f"r{k}."   # unique URIs so `distinct` keeps every copy
        lines.extend(f"    '{prefix}{uri}','{tool}'," for uri, tool in rows)
    lines[-1] = lines[-1].rstrip(",")
    table = "\n".join(lines)
    return ("let rmm_networkSet = datatable(URI:string,RMM_Tool:string)[\n" + table + "\n];\n"
            "DeviceNetworkEvents\n| where RemoteUrl has_any ((rmm_networkSet | distinct URI))\n")


def _time_steps(text: str) -> dict:
    from rmmc import backends
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.kql.parser import parse_kql
    from rmmc.compiler.kql.lower import lower_query

    out = {}
    t0 = time.perf_counter()
    query = parse_kql(text)
    out["parse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lowered = lower_query(query)
    out["lower"] = time.perf_counter() - t0
    if lowered.rule is None:
        raise RuntimeError("the synthetic rule did not lower: "
                           + "; ".join(d.message for d in lowered.diagnostics[:2]))
    for target in ("sigma", "kql"):
        t0 = time.perf_counter()
        backends.emit(target, lowered.rule, EmitOptions())
        out[f"emit_{target}"] = time.perf_counter() - t0
    out["total"] = sum(out.values())
    return out


def _growth(name: str, unit: str, sizes: list[tuple[str, int]], build) -> dict:
    rows = {}
    say(f"  {name}")
    say(f"  {'size':<6}{unit:>10}{'chars':>11}{'parse s':>10}{'lower s':>10}{'sigma s':>10}"
        f"{'kql s':>9}{'total s':>10}{'us/item':>10}")
    for label, n in sizes:
        text = build(n)
        steps = _time_steps(text)
        per_item = steps["total"] / n * 1e6
        rows[label] = {unit: n, "chars": len(text), **steps, "us_per_item": per_item}
        say(f"  {label:<6}{n:>10,}{len(text):>11,}{steps['parse']:>10.3f}{steps['lower']:>10.3f}"
            f"{steps['emit_sigma']:>10.3f}{steps['emit_kql']:>9.3f}{steps['total']:>10.3f}"
            f"{per_item:>10.1f}")
    first, last = rows[sizes[0][0]], rows[sizes[-1][0]]
    ratio = last["us_per_item"] / first["us_per_item"] if first["us_per_item"] else None
    rows["per_item_ratio_last_vs_1x"] = ratio
    say(f"  per-item cost {sizes[-1][0]} / 1x = {ratio:.2f}  (1.0 = linear)")
    return rows


@section("2. growth with input size (parse + lower + emit sigma, kql)")
def bench_growth(max_factor: int) -> None:
    factors = [f for f in (1, 10, 100) if f <= max_factor]
    if max_factor < 100:
        say(f"  reduced: factors {factors} only (--max-factor {max_factor})")
    RESULTS["growth"] = {}
    RESULTS["growth"]["has_any_values"] = _growth(
        "has_any list (1x = 1,000 values)", "values",
        [(f"{f}x", 1000 * f) for f in factors], _has_any_rule)
    base = _datatable_rows()
    say(f"  (datatable base: {len(base)} rows"
        f"{' from rmm__all_netconn.yaml' if ALL_TOOLS.is_file() else ', synthetic'})")
    RESULTS["growth"]["datatable_rows"] = _growth(
        "all-tools datatable replicated", "rows",
        [(f"{f}x", len(base) * f) for f in factors],
        lambda n: _datatable_rule(base, n // len(base)))


# ---------------------------------------------------------------- 3. cold CLI start

COLD_RUNS = 11


def _run_once(argv: list[str]) -> tuple[float, float, int, float]:
    """Wall seconds, CPU seconds (user + system), exit status and max RSS (MB) of one run,
    measured by bench/spawn.py (see there why not by this process)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "spawn.py"), str(ROOT), *argv],
                          capture_output=True, text=True, timeout=1800)
    fig = json.loads(done.stdout)
    return fig["wall"], fig["cpu"], fig["exit"], fig["maxrss_mb"]


def _cold(argv: list[str], runs: int = COLD_RUNS) -> dict:
    """Median (and best) of `runs` runs after one warm-up, which fills rmmc's grammar cache."""
    _run_once(argv)
    walls, cpus, code, rss = [], [], 0, 0.0
    for _ in range(runs):
        wall, cpu, code, peak = _run_once(argv)
        walls.append(wall)
        cpus.append(cpu)
        rss = max(rss, peak)
    walls.sort()
    cpus.sort()
    return {"argv": argv[1:], "runs": runs, "median_seconds": walls[runs // 2], "best_seconds": walls[0],
            "median_cpu_seconds": cpus[runs // 2], "exit": code, "maxrss_mb": rss}


def _sigma_one_rule() -> Path | None:
    """A process-creation rule both tools translate (the first in name order)."""
    if not SIGMA_RULES.is_dir():
        return None
    return next(iter(sorted((SIGMA_RULES / "process_creation").glob("*.yml"))), None) or \
        next(iter(sorted(SIGMA_RULES.rglob("*.yml"))), None)


def _say_cold(label: str, fig: dict, floor: dict | None = None) -> None:
    over = (f", {fig['median_seconds'] / floor['median_seconds']:.1f}x the floor"
            if floor and floor["median_seconds"] else "")
    say(f"  {label:<52}{fig['median_seconds'] * 1000:>7.0f} ms median (best {fig['best_seconds'] * 1000:.0f},"
        f" CPU {fig['median_cpu_seconds'] * 1000:.0f}; exit {fig['exit']}){over}")


@section(f"3. cold CLI start (median of {COLD_RUNS} runs after one warm-up)")
def bench_cli() -> None:
    rmmc_bin = Path(sys.executable).parent / "rmmc"
    rule = _sigma_one_rule()
    cli: dict = {}
    RESULTS["cli"] = cli
    cli["python_floor"] = _cold([sys.executable, "-c", "pass"])
    _say_cold("python -c pass (the floor)", cli["python_floor"])
    cli["rmmc_version"] = _cold([str(rmmc_bin), "--version"])
    _say_cold("rmmc --version", cli["rmmc_version"], cli["python_floor"])
    if rule is not None:
        same = [str(rmmc_bin), "translate", str(rule), "--to", "splunk"]
        cli["rmmc_same_rule"] = _cold(same)
        _say_cold(f"rmmc translate {rule.name[:24]}.. --to splunk", cli["rmmc_same_rule"], cli["python_floor"])
    seed = [str(rmmc_bin), "translate", str(CLI_RULE.relative_to(ROOT)), "--to", "sigma"]
    cli["rmmc"] = _cold(seed)
    _say_cold(f"rmmc translate {CLI_RULE.name} --to sigma", cli["rmmc"], cli["python_floor"])
    sigma_bin = PEER_VENV / "bin" / "sigma"
    if not sigma_bin.exists() or rule is None:
        say("  sigma-cli: n/a (" + ("bench/.venv not installed" if not sigma_bin.exists()
                                    else "no Sigma rules") + ")")
        return
    peer = [str(sigma_bin), "convert", "-t", "splunk", "-p", "splunk_windows", str(rule)]
    cli["sigma_cli"] = _cold(peer, runs=5)
    _say_cold("sigma convert -t splunk -p splunk_windows (same rule)", cli["sigma_cli"])
    if "rmmc_same_rule" in cli:
        ratio = cli["rmmc_same_rule"]["median_seconds"] / cli["sigma_cli"]["median_seconds"]
        cli["ratio_rmmc_over_sigma_cli"] = ratio
        say(f"  ratio rmmc / sigma-cli, same rule: {ratio:.2f} (<1 means rmmc starts faster)")


# ---------------------------------------------------------------- 3b. CLI throughput

@section("3b. CLI throughput, one core, process start included")
def bench_throughput() -> None:
    rmmc_bin = Path(sys.executable).parent / "rmmc"
    RESULTS["throughput"] = entry = {}
    if KQL_CORPUS.is_dir():
        argv = [str(rmmc_bin), "check", str(KQL_CORPUS), "-j", "1", "-q"]
        runs = [_run_once(argv) for _ in range(3)]
        wall = sorted(r[0] for r in runs)[1]
        cpu = sorted(r[1] for r in runs)[1]
        queries = sum(1 for line in (KQL_CORPUS / "index.jsonl").read_text(encoding="utf-8").splitlines()
                      if line.strip())
        entry["check_kql"] = {"argv": argv[1:], "queries": queries, "median_seconds": wall,
                              "median_cpu_seconds": cpu, "queries_per_s": rate(queries, wall),
                              "maxrss_mb": max(r[3] for r in runs)}
        say(f"  rmmc check ../shared/corpus/kql -j 1: {queries} queries, {wall:.2f} s median of 3 "
            f"(CPU {cpu:.2f} s): {fmt_rate(rate(queries, wall))}, max RSS {entry['check_kql']['maxrss_mb']:.0f} MB")
    else:
        say("  check: skipped (../shared is absent)")
    if SIGMA_RULES.is_dir():
        entry["serve_sigma"] = _serve_row(rmmc_bin)
    if RMM_CORPUS.is_dir():
        argv = [str(rmmc_bin), "verify", str(RMM_CORPUS), "--format", "json"]
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=1800)
        wall = time.perf_counter() - started
        try:
            reported = json.loads(done.stdout).get("rules", [])
        except (ValueError, AttributeError):
            reported = []
        rules = sum(1 for r in reported if not r.get("error"))
        entry["verify_rmm"] = {"argv": argv[1:], "seconds": wall, "exit": done.returncode,
                               "rules": rules, "entries": len(reported), "rules_per_s": rate(rules, wall)}
        say(f"  rmmc verify ../shared/corpus/rmm: {rules} rules verified ({len(reported)} read) in "
            f"{wall:.1f} s: {fmt_rate(rate(rules, wall))} (exit {done.returncode})")
    else:
        say("  verify: skipped (../shared is absent)")


def _serve_row(rmmc_bin: Path, count: int = 300) -> dict:
    """`rmmc serve`: one process, SigmaHQ rules sent one request at a time (as an editor
    would), each answer read before the next request; the process start is not counted."""
    files = sorted(SIGMA_RULES.rglob("*.yml"))[:count]
    child = subprocess.Popen([str(rmmc_bin), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    latencies, ok = [], 0
    try:
        for i, path in enumerate(files):
            request = json.dumps({"id": i, "command": "translate", "to": "splunk", "path": str(path),
                                  "text": path.read_text(encoding="utf-8")})
            started = time.perf_counter()
            child.stdin.write(request + "\n")
            child.stdin.flush()
            answer = json.loads(child.stdout.readline())
            latencies.append(time.perf_counter() - started)
            ok += all(r.get("ok") for r in answer.get("results", [])) and "results" in answer
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    first, rest = latencies[0], sorted(latencies[1:])
    figure = {"requests": len(files), "ok": ok, "first_ms": first * 1000,
              "median_ms": rest[len(rest) // 2] * 1000 if rest else None,
              "rules_per_s_after_first": rate(len(rest), sum(rest))}
    say(f"  rmmc serve, {len(files)} SigmaHQ rules -> splunk one request at a time: first "
        f"{figure['first_ms']:.0f} ms, then {figure['median_ms']:.2f} ms median per rule "
        f"({fmt_rate(figure['rules_per_s_after_first'])} after the first; {ok} ok)")
    return figure


# ---------------------------------------------------------------- 4. the peer

def _peer_versions() -> dict:
    pip = PEER_VENV / "bin" / "pip"
    done = subprocess.run([str(pip), "list", "--format=json", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=60)
    wanted = {"sigma-cli", "pysigma", "pysigma-backend-splunk", "pysigma-backend-kusto"}
    return {p["name"]: p["version"] for p in json.loads(done.stdout or "[]")
            if p["name"].lower() in wanted}


_TRANSLATED = re.compile(r"(\d+) of (\d+) rules? translated")


def _children_cpu() -> float:
    """CPU seconds (user + system) of every child process waited for so far: the difference
    around one run is that run's CPU time, which other load on a shared machine disturbs much
    less than its wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rmmc_cli_batch(target: str, jobs: int) -> dict:
    """`rmmc translate <SigmaHQ windows> --to target -j jobs` to standard output: the same job as
    `sigma convert` on the directory (process start included, queries printed, nothing written
    to disk)."""
    rmmc_bin = Path(sys.executable).parent / "rmmc"
    argv = [str(rmmc_bin), "translate", str(SIGMA_RULES), "--to", target, "-j", str(jobs)]
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    found = _TRANSLATED.search(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
    return {"argv": argv[1:], "seconds": seconds, "cpu_seconds": _children_cpu() - cpu0, "exit": done.returncode,
            "translated": int(found.group(1)) if found else None,
            "rules": int(found.group(2)) if found else None}


def _rmmc_in_process(target: str, sample: int) -> dict:
    """Read, compile and emit each Sigma rule in this process, one core, rule by rule."""
    from rmmc.backends import emit
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.documents import read_path
    from rmmc.compiler.pipeline import compile_document

    files = sorted(SIGMA_RULES.rglob("*.yml"))[: sample or None]
    options = EmitOptions()

    def run() -> int:
        converted = 0
        for path in files:
            for document in read_path(str(path)).documents:
                compiled = compile_document(document)
                if compiled.rule is not None and emit(target, compiled.rule, options).ok:
                    converted += 1
        return converted

    run()  # warm: grammars loaded, caches filled (the peer's run is warm the same way)
    t0 = time.perf_counter()
    converted = run()
    seconds = time.perf_counter() - t0
    return {"rules": len(files), "converted": converted, "seconds": seconds,
            "rules_per_s": rate(len(files), seconds)}


@section("4. peer: sigma-cli vs rmmc over the SigmaHQ windows rules")
def bench_peer(sample: int) -> None:
    sigma_bin = PEER_VENV / "bin" / "sigma"
    if not SIGMA_RULES.is_dir():
        say(f"  skipped: {SIGMA_RULES} not found (../shared is absent)")
        RESULTS["peer"] = {"skipped": "corpus absent"}
        return
    have_peer = sigma_bin.exists()
    if not have_peer:
        say("  sigma-cli not installed (run `make bench`): rmmc alone, no ratios")
    n_rules = sum(1 for _ in SIGMA_RULES.rglob("*.yml"))
    versions = _peer_versions() if have_peer else {}
    cores = os.cpu_count() or 1
    RESULTS["peer"] = {"versions": versions, "rules": n_rules}
    if versions:
        say("  versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    say(f"  {'target':<22}{'who / how':<26}{'rules':>7}{'ok':>7}{'seconds':>9}{'rate':>10}{'x peer':>8}"
        f"{'CPU s':>8}{'x CPU':>7}")
    for key, backend, pipeline, target in (("splunk", "splunk", "splunk_windows", "splunk"),
                                           ("kusto_microsoft_xdr", "kusto", "microsoft_xdr", "kql")):
        entry = RESULTS["peer"][key] = {}
        peer_cli_rate = peer_lib_rate = peer_cli_cpu = None
        if have_peer:
            # (a) the CLI over the whole directory, process start included
            argv = [str(sigma_bin), "convert", "-t", backend, "-p", pipeline, "-s", str(SIGMA_RULES)]
            cpu0 = _children_cpu()
            t0 = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            seconds = time.perf_counter() - t0
            cli = {"argv": argv[1:], "seconds": seconds, "cpu_seconds": _children_cpu() - cpu0,
                   "exit": done.returncode,
                   "output_lines": sum(1 for line in done.stdout.splitlines() if line.strip()),
                   "rules_per_s": rate(n_rules, seconds)}
            if done.returncode != 0:
                cli["stopped"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
            else:
                peer_cli_rate, peer_cli_cpu = cli["rules_per_s"], cli["cpu_seconds"]
            entry["cli"] = cli
            shown = fmt_rate(cli["rules_per_s"]) if done.returncode == 0 else "stopped"
            say(f"  {key:<22}{'sigma-cli, cli':<26}{n_rules:>7}{'':>7}{seconds:>9.2f}{shown:>10}{'':>8}"
                f"{cli['cpu_seconds']:>8.2f}")
            if done.returncode != 0:
                say(f"    sigma convert exited {done.returncode} despite -s: {cli['stopped']}")
            # (b) pySigma in-process, rule by rule, each failure caught (bench/sigma_peer.py)
            helper = [str(PEER_VENV / "bin" / "python"), str(ROOT / "bench" / "sigma_peer.py"),
                      str(SIGMA_RULES), backend, pipeline, str(sample or 0)]
            done = subprocess.run(helper, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                say(f"    in-process run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            else:
                lib = json.loads(done.stdout.strip().splitlines()[-1])
                entry["in_process"] = lib
                peer_lib_rate = lib["rules_per_s"]
                say(f"  {key:<22}{'pySigma, in-process':<26}{lib['rules']:>7}{lib['converted']:>7}"
                    f"{lib['seconds']:>9.2f}{fmt_rate(lib['rules_per_s']):>10}")
                if lib["failure_kinds"]:
                    say("    failures by kind: " + ", ".join(f"{k} {v}" for k, v in lib["failure_kinds"].items()))
        # (c) rmmc, the same jobs
        for jobs in sorted({1, cores}):
            run = _rmmc_cli_batch(target, jobs)
            run["rules_per_s"] = rate(n_rules, run["seconds"])
            run["ratio_over_peer_cli"] = (run["rules_per_s"] / peer_cli_rate
                                          if peer_cli_rate and run["rules_per_s"] else None)
            run["cpu_ratio_over_peer_cli"] = (peer_cli_cpu / run["cpu_seconds"]
                                              if peer_cli_cpu and run["cpu_seconds"] else None)
            entry[f"rmmc_cli_j{jobs}"] = run
            ratio = f"{run['ratio_over_peer_cli']:.1f}x" if run["ratio_over_peer_cli"] else "n/a"
            cpu_ratio = f"{run['cpu_ratio_over_peer_cli']:.1f}x" if run["cpu_ratio_over_peer_cli"] else "n/a"
            say(f"  {key:<22}{f'rmmc, cli -j {jobs}':<26}{n_rules:>7}{run['translated'] or 0:>7}"
                f"{run['seconds']:>9.2f}{fmt_rate(run['rules_per_s']):>10}{ratio:>8}"
                f"{run['cpu_seconds']:>8.2f}{cpu_ratio:>7}")
        lib = _rmmc_in_process(target, sample)
        lib["ratio_over_peer_in_process"] = (lib["rules_per_s"] / peer_lib_rate
                                             if peer_lib_rate and lib["rules_per_s"] else None)
        entry["rmmc_in_process"] = lib
        ratio = f"{lib['ratio_over_peer_in_process']:.1f}x" if lib["ratio_over_peer_in_process"] else "n/a"
        say(f"  {key:<22}{'rmmc, in-process, 1 core':<26}{lib['rules']:>7}{lib['converted']:>7}"
            f"{lib['seconds']:>9.2f}{fmt_rate(lib['rules_per_s']):>10}{ratio:>8}")
    say("  x peer: rmmc's rules/s over sigma-cli's (cli rows: over sigma-cli's cli row; in-process:"
        " over pySigma in-process); the peer's cli runs on one core.  x CPU: sigma-cli's CPU"
        " seconds over rmmc's (user + system, all processes): steadier than wall time when"
        " other work shares the machine")


# ---------------------------------------------------------------- main

def _compiled_loop() -> bool:
    """Whether the CLI parses KQL with the compiled loop (rmmc/grammar/_lalr_loop.c, built by
    pip where a C compiler is at hand) or the Python one: the KQL figures depend on it."""
    done = subprocess.run([sys.executable, "-c", "from rmmc.grammar.lalr_driver import LalrDriver as D; "
                           "print(D.use_compiled)"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() == "True"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0,
                        help="use only the first N files of the KQL corpus / Sigma rules (0 = all)")
    parser.add_argument("--max-factor", type=int, default=100, choices=(1, 10, 100),
                        help="largest growth factor (default 100)")
    parser.add_argument("--out", default=str(OUT), help="JSON output (default out/bench.json)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    # Bytecode ready, as a pip install leaves it (an editable install under
    # PYTHONDONTWRITEBYTECODE would otherwise compile every module on every cold start).
    import compileall
    compileall.compile_dir(str(ROOT / "rmmc"), quiet=1)
    RESULTS["machine"] = {"cores": os.cpu_count(), "python": platform.python_version(),
                          "implementation": platform.python_implementation(),
                          "platform": platform.platform(), "rmmc_commit": _commit(),
                          "sample": args.sample or None, "compiled_loop": _compiled_loop()}
    m = RESULTS["machine"]
    say(f"rmmc bench: commit {m['rmmc_commit']}, Python {m['python']}, {m['cores']} cores, "
        f"{m['platform']}; KQL parsing loop {'compiled' if m['compiled_loop'] else 'in Python'}")
    say("timings are wall clock on one core; rates are items per second; on a shared machine"
        " take medians of several runs")
    try:
        say(f"load average {os.getloadavg()[0]:.1f} at the start")
        RESULTS["machine"]["loadavg_start"] = os.getloadavg()[0]
    except OSError:
        pass

    bench_kql_corpus(args.sample)
    bench_rmm_corpus()
    bench_growth(args.max_factor)
    bench_cli()
    bench_throughput()
    bench_peer(args.sample)

    RESULTS["total_seconds"] = time.perf_counter() - started
    RESULTS["maxrss_mb"] = maxrss_mb()
    say()
    say(f"total {RESULTS['total_seconds']:.1f}s, process max RSS {RESULTS['maxrss_mb']:.0f} MB")
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(RESULTS, indent=2, default=str) + "\n", encoding="utf-8")
        say(f"figures written to {out}")
    except OSError as exc:
        say(f"could not write {out}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
