"""The `rmmc` command line.

Exit status everywhere: 0 all good, 1 some rule has an error (the others are still done),
2 usage error.  No traceback ever reaches the user: an unexpected failure is reported as an
internal error with the rule it happened on.
"""

from __future__ import annotations

import sys

import click

from rmmc import __version__
from rmmc.dataclass_code import install as _install_dataclass_code

_install_dataclass_code()  # before any command imports the modules that define dataclasses


class _Group(click.Group):
    """The `rmmc` group; commands defined in other modules are imported when used, so a run of
    `check` or `translate` does not load them."""

    lazy = {"verify": "rmmc.verify.command", "serve": "rmmc.cli_serve",
            "build": "rmmc.content.cli", "diff": "rmmc.content.cli", "lookups": "rmmc.lookups",
            "placeholders": "rmmc.cli_placeholders"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            from importlib import import_module

            self.add_command(getattr(import_module(self.lazy[name]), name))
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rmmc")
def main() -> None:
    """rmmc: compile detection rules between KQL, Sigma, SPL and EQL, keeping their meaning."""
    _tolerant_streams()


def _tolerant_streams() -> None:
    """Text that cannot be encoded (a file name with bytes that are not UTF-8, which Python
    holds as lone surrogates) is printed escaped rather than ending the run in a traceback."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (tests, pipes)
            pass


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report for people (text) or machines (json).")
@click.option("-q", "--quiet", is_flag=True, help="Report errors only (and the summary line).")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None, metavar="N",
              help="Files handled at once (default: every core; 1: one after another in this "
                   "process). Small batches always run in this process.")
@click.option("--env", "env_option", default=None, metavar="NAME|FILE",
              help="Also put each rule into this environment and report what it lacks (a "
                   "built-in name or a YAML file; default: an rmmc.yml at the rules' root).")
@click.option("--allow-lossy", is_flag=True,
              help="With an environment: report what would make other alerts fire there as a "
                   "warning, as `translate --allow-lossy` writes it (default: an error, as "
                   "`translate` refuses it).")
def check(paths: tuple[str, ...], output_format: str, quiet: bool, jobs: int | None,
          env_option: str | None, allow_lossy: bool) -> None:
    """Read rule documents and report what is wrong with them.

    PATHS are files, directories (searched for .kql .csl .txt .yaml .yml .md) or `-` for
    standard input.  Each problem is reported as `path:line:col: severity: message` with the
    source line and a caret, positions being in the original file.
    """
    from rmmc.compiler.check import check_paths
    from rmmc.compiler.diagnostics import LineIndex, Severity
    from rmmc.compiler.documents import iter_rule_files
    from rmmc.compiler.render import render_text, to_json
    from rmmc.parallel import show_progress

    files = list(iter_rule_files(paths))
    if not files:
        raise click.UsageError("no rule files found under " + ", ".join(paths))
    env = load_env(env_option, paths)
    report = check_paths(files, _jobs(jobs), show_progress(files, output_format == "json"), env=env,
                         allow_lossy=allow_lossy)

    if output_format == "json":
        import json

        payload = {
            "files": [
                {"path": f.path,
                 "rules": [{"index": r.document.index, "title": r.document.title,
                            "kind": r.document.kind.value, "ok": r.ok} for r in f.rules]}
                for f in report.files
            ],
            "diagnostics": [to_json(d) for d in report.diagnostics()
                            if not quiet or d.severity is Severity.ERROR],
            "summary": {"files": len(report.files), "rules": report.rule_count,
                        "errors": report.count(Severity.ERROR),
                        "warnings": report.count(Severity.WARNING)},
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        from rmmc.cli_echo import stream_echo

        echo = stream_echo()  # a text per diagnostic: what click.echo asks, asked once
        for checked in report.files:
            shown = [d for d in checked.all_diagnostics()
                     if not quiet or d.severity is Severity.ERROR]
            if not shown:  # most files: no line index needed
                continue
            source = LineIndex(checked.source_text) if checked.source_text is not None else None
            for diagnostic in shown:
                echo(render_text(diagnostic, source))
        echo(report.summary())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Readable text, or the model as JSON.")
@click.option("--cost", "with_cost", is_flag=True,
              help="Also say, per target, which tests the engine answers from an index and which "
                   "it runs on every event (why one output is slower than another).")
def explain(paths: tuple[str, ...], output_format: str, with_cost: bool) -> None:
    """Print the detection model (IR) of each rule: source, lookback, condition tree,
    output and exclusions, as rmmc understood them."""
    from rmmc.compiler.diagnostics import LineIndex
    from rmmc.compiler.documents import iter_rule_files, read_path
    from rmmc.compiler.explain import explain as explain_rule, to_jsonable
    from rmmc.compiler.pipeline import compile_document
    from rmmc.compiler.render import render_text

    files = list(iter_rule_files(paths))
    if not files:
        raise click.UsageError("no rule files found under " + ", ".join(paths))
    ok, rules = True, []
    for path in files:
        read = read_path(path)
        for d in read.diagnostics:
            click.echo(render_text(d, None), err=True)
            ok = ok and not d.is_error
        for doc in read.documents:
            compiled = compile_document(doc)
            index = LineIndex(doc.source.text)
            for d in compiled.diagnostics:
                if d.severity.value != "note":
                    click.echo(render_text(d, index), err=True)
            if compiled.rule is None:
                ok = False
                continue
            if output_format == "json":
                rules.append({"path": doc.path, "index": doc.index, "rule": to_jsonable(compiled.rule)})
                if with_cost:
                    from rmmc.explain_cost import cost_json

                    rules[-1]["cost"] = cost_json(compiled)
            else:
                click.echo(f"# {doc.path}" + (f" #{doc.index + 1}" if doc.index else ""))
                click.echo(explain_rule(compiled.rule))
                if with_cost:
                    from rmmc.explain_cost import cost_text

                    click.echo(cost_text(compiled))
                click.echo("")
    if output_format == "json":
        import json

        click.echo(json.dumps(rules, indent=2, ensure_ascii=False))
    sys.exit(0 if ok else 1)


_TARGETS = ["sigma", "kql", "splunk", "eql", "esql"]
_PROFILES = ["sigma", "cim", "ecs", "defender"]


def load_env(option: str | None, paths, target: str | None = None):
    """The environment `--env` names (or the rmmc.yml at the rules' root), loaded once; None
    when there is neither.  A file that is not a valid environment is a usage error printed
    with its located diagnostics (exit status 2)."""
    from rmmc.environments import find_environment

    chosen = option or find_environment(paths)
    if chosen is None:  # the usual `check`: no environment, no YAML reader to import
        return None
    from rmmc.environments import EnvironmentError, load_environment

    try:
        env = load_environment(chosen)
    except EnvironmentError as exc:
        from rmmc.compiler.diagnostics import LineIndex
        from rmmc.compiler.render import render_text

        for d in exc.diagnostics:
            source = None
            if d.path and d.span is not None:
                try:
                    with open(d.path, encoding="utf-8") as handle:
                        source = LineIndex(handle.read())
                except (OSError, UnicodeDecodeError):
                    pass
            click.echo(render_text(d, source), err=True)
        raise click.exceptions.Exit(2)
    if target is not None and not env.serves(target):
        if option:
            raise click.UsageError(f"environment {env.name} is for {env.target}, not {target}")
        click.echo(f"rmmc: {chosen} (environment {env.name}) is for {env.target}: {target} uses its "
                   "default environment", err=True)
        return None
    if not option:
        click.echo(f"rmmc: environment {env.name} from {chosen}", err=True)
    return env


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--to", "target", type=click.Choice(_TARGETS), required=True, help="Target language.")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False), default=None,
              help="Write one file per rule into this directory (named from the rule's title).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--loose", is_flag=True,
              help="Sigma: write KQL `has` as |contains (each widening is reported) instead of the exact term regex.")
@click.option("--apply-exclusions", is_flag=True,
              help="AND the false-positive exclusions into the detection (they always travel with the rule).")
@click.option("--allow-lossy", is_flag=True,
              help="Write translations that would fire on different events than the rule (each "
                   "difference is reported); without it they are refused.")
@click.option("--env", "env_option", default=None, metavar="NAME|FILE",
              help="Where the rules run: a built-in environment (defender-xdr, sentinel, sigma, "
                   "splunk-sysmon, splunk-cim, splunk-defender, elastic-endpoint, elastic-winlogbeat) or a YAML "
                   "file. "
                   "Default: an rmmc.yml at the rules' root, else the target's default "
                   "(kql: defender-xdr, sigma: sigma, splunk: splunk-sysmon, eql/esql: elastic-winlogbeat).")
@click.option("--allow-unknown-fields", is_flag=True,
              help="Write a field the environment does not have (under the rule's own name, with a "
                   "warning) instead of refusing the rule.")
@click.option("--fields", type=click.Choice(_PROFILES), default=None,
              help="Deprecated (use --env): field names from a profile for SPL / EQL / ES|QL, "
                   "without an environment.")
@click.option("--package", "package", is_flag=True,
              help="Wrap each query as a ready-to-import rule: Elastic detection rule (ndjson) for "
                   "eql/esql, a savedsearches.conf stanza for splunk, a Sentinel analytic rule for kql.")
@click.option("--schedule", "schedule", default=None, metavar="INTERVAL[+OVERLAP]",
              callback=lambda ctx, param, value: _schedule(value),
              help="With --package: run every INTERVAL, each run looking back INTERVAL + OVERLAP "
                   "(e.g. 5m+1m, 1h+10m; default: the environment's schedule, else 5m+1m). Rules "
                   "whose meaning needs their whole lookback are packaged as hunting queries.")
@click.option("--splunk-form", type=click.Choice(["search", "tstats"]), default="search", show_default=True,
              help="SPL: a search over the environment's raw events, or `| tstats` over its CIM data "
                   "model's summaries (--env splunk-cim; refused, saying why, where the rule reads "
                   "anything the model lacks).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Translations and diagnostics as text, or one JSON document.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None, metavar="N",
              help="Files handled at once (default: every core; 1: one after another in this "
                   "process). Small batches always run in this process.")
def translate(paths: tuple[str, ...], target: str, outdir: str | None, force: bool, loose: bool,
              apply_exclusions: bool, allow_lossy: bool, env_option: str | None,
              allow_unknown_fields: bool, fields: str | None, package: bool,
              schedule, splunk_form: str, output_format: str, jobs: int | None) -> None:
    """Translate rules to another language, keeping their meaning.

    PATHS are rule files, directories or `-` for standard input.  Without -o the
    translations go to standard output; diagnostics always go to standard error.  A
    translation that would change which alerts fire is refused unless --allow-lossy.  Exit
    status 0 when every rule translated, 1 when some did not (the others are still written).
    """
    from functools import partial

    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.documents import iter_rule_files
    from rmmc.parallel import run_batch, show_progress
    from rmmc.translation import RuleTranslation, file_failed, translate_file

    options = EmitOptions(loose=loose, apply_exclusions=apply_exclusions, allow_lossy=allow_lossy,
                          splunk_form=splunk_form)
    files = list(iter_rule_files(paths))
    if not files:
        raise click.UsageError("no rule files found under " + ", ".join(paths))
    if fields and env_option:
        raise click.UsageError("--fields and --env: choose --env (--fields is deprecated)")
    if schedule is not None and not package:
        raise click.UsageError("--schedule says how packaged rules run: use it with --package")
    env = None if fields else load_env(env_option, paths, target)
    per_file = run_batch(partial(translate_file, to=target, options=options, fields=fields,
                                 package=package, env=env, allow_unknown_fields=allow_unknown_fields,
                                 schedule=schedule),
                         files, _jobs(jobs), partial(file_failed, to=target),
                         progress=show_progress(files, output_format == "json"),
                         label="translating", prepare=_prepare_translate)
    results: list[RuleTranslation] = [r for file_results in per_file for r in file_results]
    sources: dict = {}  # path -> the LineIndex its reader built (not built again)
    for r in results:
        if r.document is not None:
            sources.setdefault(r.document.path, r.document.source)
    if not results:
        raise click.UsageError("no rules found under " + ", ".join(paths))
    written = {}
    if outdir:
        from rmmc.output import write_translations

        written = write_translations(results, outdir, force)
    _report(results, sources, written, outdir, output_format)
    sys.exit(0 if all(r.ok and not written.get(id(r), (None, None))[1] for r in results) else 1)


def _schedule(value: str | None):
    """`--schedule INTERVAL[+OVERLAP]` as a Schedule (None when not given); a usage error when
    it is not one a platform can run."""
    if value is None:
        return None
    from rmmc.environments.model import parse_schedule

    found = parse_schedule(value)
    if isinstance(found, str):
        raise click.BadParameter(found, param_hint="--schedule")
    return found


def _jobs(jobs: int | None) -> int:
    from rmmc.parallel import default_jobs

    return jobs if jobs else default_jobs()


def _prepare_translate() -> None:
    """Build the parsers and load the backends before workers fork, so each inherits them."""
    from rmmc.backends import emit  # noqa: F401
    from rmmc.compiler import exclusions
    from rmmc.compiler.kql import parser as kql_parser

    kql_parser._lark()
    exclusions._lark()


def _report(results, sources, written, outdir, output_format) -> None:
    from rmmc.compiler.render import render_text, to_json

    if output_format == "json":
        import json

        payload = [{
            "path": r.document.path if r.document else None,
            "index": r.document.index if r.document else None,
            "title": r.title,
            "target": r.target,
            "ok": r.ok and not written.get(id(r), (None, None))[1],
            "verdict": r.verdict if not written.get(id(r), (None, None))[1] else "refused",
            "output": written.get(id(r), (None, None))[0],
            "text": None if outdir else (r.stream or None),
            "diagnostics": [to_json(d) for d in r.diagnostics]
                           + ([to_json(written[id(r)][1])] if written.get(id(r), (None, None))[1] else []),
        } for r in results]
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    from rmmc.cli_echo import stream_echo

    indexes = sources
    shown = 0
    echo, echo_err = stream_echo(), stream_echo(err=True)  # thousands of texts: decided once
    for r in results:
        for d in r.diagnostics:
            echo_err(render_text(d, indexes.get(d.path or "")))
        problem = written.get(id(r), (None, None))[1]
        if problem is not None:
            echo_err(render_text(problem, None))
        if not outdir and r.text:
            if shown:
                echo("---" if r.target == "sigma" else "")
            echo(r.stream.rstrip("\n"))
            shown += 1
    echo_err(translation_summary(results, written, outdir))


def _refused_as_lossy(diagnostics) -> bool:
    """Whether a lossy diagnostic is among the errors: `any(d.code == "lossy" and d.is_error
    ...)` as a loop (a generator `any` stops at the first, closing the generator by raising
    GeneratorExit into it: for each such refused rule)."""
    for d in diagnostics:
        if d.code == "lossy" and d.is_error:
            return True
    return False


def translation_summary(results, written, outdir) -> str:
    """`N of M rules translated to T: A exact, B lossy, C refused` (lossy ones are written only
    with --allow-lossy; refused ones that only a lossy translation could say are counted)."""
    counts = {"exact": 0, "lossy": 0, "refused": 0}
    blocked = 0
    for r in results:
        verdict = r.verdict if not written.get(id(r), (None, None))[1] else "refused"
        counts[verdict] += 1
        if verdict == "refused" and _refused_as_lossy(r.diagnostics):
            blocked += 1
    ok = counts["exact"] + counts["lossy"]
    text = (f"{ok} of {len(results)} rule{'s' * (len(results) != 1)} translated to {results[0].target}"
            + (f" into {outdir}" if outdir else "")
            + f": {counts['exact']} exact, {counts['lossy']} lossy, {counts['refused']} refused")
    if blocked:
        text += f" ({blocked} only lossily: --allow-lossy writes them)"
    return text


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (another than loopback lets other machines in).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes that run the requests.")
@click.option("--time-limit", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="Seconds of work per translate or explain request (verify: three times it).")
def web(host: str, port: int, workers: int, time_limit: float) -> None:
    """Serve the translation playground: a local page to paste a rule, pick a target and an
    environment, and see the translation, its diagnostics, explain and verify.

    Needs the web extra: pip install 'rmmc[web]'.
    """
    try:
        from rmmc.web.server import serve
        from rmmc.web.workers import Limits
    except ImportError as exc:
        raise click.UsageError(f"rmmc web needs the web extra ({exc.name} is not installed): "
                               "pip install 'rmmc[web]'")
    limits = Limits(workers=workers, time_limit=time_limit, verify_time_limit=3 * time_limit)
    try:
        serve(host, port, limits, announce=click.echo)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


if __name__ == "__main__":  # pragma: no cover
    main()
