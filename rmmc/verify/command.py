"""`rmmc verify RULE...`: the click command (registered in `rmmc.cli`)."""

from __future__ import annotations

import json

import click

from rmmc.backends import targets as _targets

_ALL = _targets()


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--to", "to", default=",".join(_ALL), show_default=True,
              help="Targets to check, comma-separated.")
@click.option("--loose", is_flag=True, help="Check the --loose translations (flagged widenings).")
@click.option("--apply-exclusions", is_flag=True, help="Check with the understood exclusions applied.")
@click.option("--sample", type=click.IntRange(0, 100_000), default=40, show_default=True,
              help="Random combinations of boundary values added to each rule's events.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--env", "env_option", default=None, metavar="NAME|FILE",
              help="Run the translations of the targets this environment serves in it, on events "
                   "written as it holds them (default: an rmmc.yml at the rules' root; other targets "
                   "use their default environment).")
def verify(paths: tuple[str, ...], to: str, loose: bool, apply_exclusions: bool, sample: int,
           output_format: str, env_option: str | None) -> None:
    """Run each rule and its translations on events generated around its values, and say
    per target whether they return the same rows (KQL) or alert on the same events and
    groups (Sigma, EQL) as the whole rule: detection, computed columns, filters, thresholds.

    Engines: duckdb-kql for KQL, pySigma's sqlite backend for Sigma, the eql package for EQL
    (`pip install 'rmmc[verify]'`); without them KQL and Sigma are read back by rmmc.  Splunk
    and ES|QL have no engine here and are reported unchecked.  Exit status 1 when a
    translation that claims to be exact selects differently (or a rule has an error).
    """
    from rmmc.backends.base import EmitOptions
    from rmmc.verify.runner import verify_paths

    wanted = [t.strip() for t in to.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in _ALL]
    if unknown or not wanted:
        raise click.UsageError(f"unknown target(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(_ALL)}")
    from rmmc.cli import load_env

    options = EmitOptions(loose=loose, apply_exclusions=apply_exclusions)
    env = load_env(env_option, paths)
    verdicts = list(verify_paths(paths, wanted, options, sample, env))
    if not verdicts:
        raise click.UsageError("no rule files found under " + ", ".join(paths))
    failed = any(v.failed or v.error for v in verdicts)
    counts = {status: 0 for status in ("agree", "disagree", "approximate", "refused", "unchecked")}
    for v in verdicts:
        for t in v.targets:
            counts[t.status] += 1
    if output_format == "json":
        click.echo(json.dumps({
            "rules": [{"rule": v.label, "path": v.path, "events": v.events, "error": v.error,
                       "targets": [{"target": t.target, "status": t.status, "engine": t.engine,
                                    "detail": t.detail, "counterexample": _jsonable(t.counterexample),
                                    "source_selects_it": t.expected} for t in v.targets]}
                      for v in verdicts],
            "summary": counts}, indent=2, ensure_ascii=False))
    else:
        for v in verdicts:
            if v.error:
                click.echo(f"{v.label}: error: {v.error}")
                continue
            click.echo(f"{v.label} ({v.events} events)")
            for t in v.targets:
                engine = f" [{t.engine}]" if t.engine else ""
                click.echo(f"  {t.target:<7} {t.status}{engine}: {t.detail}")
                if t.counterexample is not None:
                    side = "selects" if t.expected else "does not select"
                    click.echo(f"          counterexample (the source {side} it): "
                               f"{json.dumps(_jsonable(t.counterexample), ensure_ascii=False)}")
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        click.echo(f"{len(verdicts)} rules: {summary}")
    raise SystemExit(1 if failed else 0)


def _jsonable(event):
    if event is None:
        return None
    return {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v)) for k, v in event.items()}
