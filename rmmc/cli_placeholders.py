"""`rmmc placeholders`: the pySigma pipeline that fills the placeholders of Sigma rules rmmc wrote
for KQL `externaldata` feeds (rmmc.backends.sigma.fill)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("rules", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--feed", "feeds", multiple=True, metavar="URI=FILE",
              help="The stored text of a feed's URI, read from FILE (repeat per URI).")
@click.option("--fetch", is_flag=True,
              help="Fetch each URI no --feed gives (http and https only) now.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Write the pipeline YAML here (default: standard output).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def placeholders(rules: tuple[str, ...], feeds: tuple[str, ...], fetch: bool, output: str | None,
                 force: bool) -> None:
    """Write the pySigma processing pipeline (vars + value_placeholders) that fills the
    placeholders of RULES (Sigma files rmmc wrote from KQL externaldata feeds).

    Each placeholder's subquery (in the rule's rmmc_placeholders) is run by rmmc's reference
    evaluator over the feed's rows, parsed as Kusto parses them; its values are written
    escaped, so each matches only itself.  Use it as `sigma convert -p PIPELINE ...`."""
    import yaml

    from rmmc.backends.sigma.fill import FillError, pipeline, pipeline_text, placeholders_of

    documents = []
    for path in rules:
        try:
            documents.extend(d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise click.ClickException(f"{path}: not a readable Sigma YAML file: {exc}") from None
    stored: dict[str, bytes] = {}
    for item in feeds:
        uri, sep, file = item.rpartition("=")
        if not sep or not uri:
            raise click.BadParameter(f"{item!r} is not URI=FILE", param_hint="--feed")
        try:
            stored[uri] = Path(file).read_bytes()
        except OSError as exc:
            raise click.ClickException(f"--feed {uri}: {exc}") from None
    try:
        wanted = [u for spec in placeholders_of(documents).values() for u in spec.get("uris") or ()]
        if fetch:
            for uri in dict.fromkeys(wanted):
                if uri not in stored:
                    stored[uri] = _fetch(uri)
        body, warnings = pipeline(documents, stored)
    except FillError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    text = pipeline_text(body)
    if output is None:
        sys.stdout.write(text)
        return
    from rmmc.output import write_files

    problem = write_files([(Path(output), text)], force)
    if problem is not None:
        raise click.ClickException(problem)
    click.echo(f"wrote {output}: {len(body['vars'])} placeholder(s)", err=True)


def _fetch(uri: str) -> bytes:
    """A URI's bytes, fetched as `rmmc lookups fetch` fetches (http/https, at most 100 MB)."""
    from rmmc.backends.sigma.fill import FillError
    from rmmc.lookups import FetchError, fetch_uri

    try:
        return fetch_uri(uri)
    except FetchError as exc:
        raise FillError(f"{exc} (give its text with --feed)") from None
