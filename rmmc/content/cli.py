"""`rmmc build` and `rmmc diff`: the content-pipeline commands (loaded only when used)."""

from __future__ import annotations

import sys

import click

_REPORTS = ["json", "junit", "sarif"]


@click.command()
@click.argument("rules_dir", type=click.Path(exists=True))
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False), default="dist",
              show_default=True, help="The tree to build (one directory per environment and target).")
@click.option("--env", "envs", multiple=True, metavar="NAME",
              help="An environment to build (repeatable; default: every built-in one).")
@click.option("--check", is_flag=True,
              help="Write nothing: exit 1 when the tree is stale, a translation got worse than "
                   "the manifest records, or a rule's errors grew.")
@click.option("--report", "report", type=click.Choice(_REPORTS), default=None,
              help="A report for CI systems on standard output (or --report-file): json, junit "
                   "(a test per rule and target) or sarif (2.1.0, located in the rule files).")
@click.option("--report-file", type=click.Path(dir_okay=False), default=None,
              help="Write the report to this file instead of standard output.")
@click.option("--allow-lossy", is_flag=True,
              help="Build translations that would fire on different events (flagged lossy).")
@click.option("--force", is_flag=True,
              help="Overwrite files in the tree that an earlier build did not write.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where compiled results are cached (default: .rmmc_cache).")
@click.option("--no-cache", is_flag=True, help="Compile every rule; use and store no cache.")
@click.option("--schedule", default=None, metavar="INTERVAL[+OVERLAP]",
              help="Packaged rules run every INTERVAL over INTERVAL + OVERLAP (e.g. 5m+1m; "
                   "default: each environment's schedule, else 5m+1m).")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None, metavar="N",
              help="Files compiled at once (default: every core; 1: in this process).")
def build(rules_dir: str, outdir: str, envs: tuple[str, ...], check: bool, report: str | None,
          report_file: str | None, allow_lossy: bool, force: bool, cache_dir: str | None,
          no_cache: bool, schedule: str | None, jobs: int | None) -> None:
    """Build every rule of RULES_DIR for every target of each environment into a tree with a
    manifest (dist/<env>/<target>/..., dist/manifest.json).

    Incremental: a rule whose source, environment and rmmc are unchanged is taken from the
    cache; a file is rewritten only when its bytes change.  Exit status 0 when every rule was
    read and every file written (a target refusing a rule is a verdict, not a failure), 1
    otherwise; with --check, 1 when the check found something.
    """
    from rmmc.compiler.documents import iter_rule_files
    from rmmc.content import build as building
    from rmmc.content.cache import DEFAULT_DIRECTORY
    from rmmc.content.environments import UnknownEnvironment
    from rmmc.environments.model import parse_schedule
    from rmmc.parallel import show_progress

    if schedule is not None and isinstance(parse_schedule(schedule), str):
        raise click.BadParameter(parse_schedule(schedule), param_hint="--schedule")
    try:
        files = list(iter_rule_files([rules_dir]))
        result = building.build(
            rules_dir, outdir, list(envs), jobs=jobs, check=check, allow_lossy=allow_lossy,
            schedule=schedule,
            force=force, cache_dir=None if no_cache else (cache_dir or DEFAULT_DIRECTORY),
            progress=show_progress(files, report is not None and report_file is None))
    except UnknownEnvironment as exc:
        raise click.UsageError(str(exc))
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc))
    to_stderr = report is not None and report_file is None
    for line in _lines(result, rules_dir):
        click.echo(line, err=to_stderr)
    if report is not None:
        from rmmc.content.reports import render

        text = render(report, result)
        if report_file:
            try:
                with open(report_file, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                raise click.ClickException(f"cannot write {report_file}: {exc.strerror or exc}")
        else:
            click.echo(text, nl=False)
    sys.exit(0 if result.ok else 1)


def _lines(result, rules_dir: str) -> list[str]:
    import os

    from rmmc.content.build import summary_lines

    lines = []
    for rule in result.rules:
        for d in rule.diagnostics:
            if d["severity"] == "error":
                where = os.path.join(rules_dir, rule.path)
                if d.get("line"):
                    where += f":{d['line']}:{d.get('column') or 1}"
                lines.append(f"{where}: error: {d['message']}")
    for problem in result.problems:
        lines.append(f"{problem['path'] or result.outdir}: error: {problem['message']}")
    if result.findings is not None:
        from dataclasses import replace

        for finding in result.findings:
            shown = replace(finding, path=os.path.join(rules_dir, finding.path)) if finding.path else finding
            lines.append(shown.text())
    lines += summary_lines(result)
    if result.findings is not None:
        rules = len({(f.path, f.index) for f in result.findings if f.path is not None})
        lines.append(f"check: {len(result.findings)} finding{'s' * (len(result.findings) != 1)}"
                     + (f" in {rules} rule{'s' * (rules != 1)}" if rules else "")
                     if result.findings else f"check: {result.outdir} is up to date")
    return lines


@click.command()
@click.argument("old")
@click.argument("new")
@click.argument("paths", nargs=-1)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="For people (text) or machines (json).")
@click.option("--exit-code", is_flag=True,
              help="Exit 1 when some rule's detection or output changed (as `git diff --exit-code`).")
def diff(old: str, new: str, paths: tuple[str, ...], output_format: str, exit_code: bool) -> None:
    """Say what changing rules does to detection: for each changed rule, the events it now also
    selects or no longer selects (one example event each, checked by the reference evaluator),
    the rows a threshold or later filter now adds or drops, or "same detection".

    OLD and NEW are two rule files, two rules directories, or two git revisions of the
    repository in the current directory, optionally limited to PATHS:
    `rmmc diff HEAD~1 HEAD -- rules/`.
    """
    from rmmc.content.diff import diff as semantic_diff
    from rmmc.content.sources import SourceError

    try:
        result = semantic_diff(old, new, paths)
    except SourceError as exc:
        raise click.UsageError(str(exc))
    if output_format == "json":
        import json

        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(result.text(), nl=False)
    changed = any(r.status != "same" for r in result.rules)
    sys.exit(1 if exit_code and changed else 0)
