"""`rmmc lookups fetch MANIFEST... --out DIR`: the CSV lookup files a Splunk package reads.

A Splunk package whose rule reads external tables (KQL `externaldata`) lists its lookups in
`<rule>.lookups.json` (`rmmc.packaging.splunk.lookup_manifest`): per URI the lookup file, the
URI, its format, columns and ignoreFirstRecord.  This command fetches each URI (http or https
only, at most 100 MB, as Kusto's externaldata reads at most that) and writes the lookup as
Kusto would read the text (`rmmc.compiler.external`: the format's records, the first skipped
with ignoreFirstRecord, each value as its column's type) with a header of the column names.
An entry marked `"terms": true` (a rule tests `has_any` against the feed) is the feed's terms
lookup (`..._terms.csv`): beside each string column c a column `rmmc_term_c`, the value's
case-insensitive term test as a PCRE (`rmmc.compiler.terms`), which the SPL tests at search
time.  A URI listed twice (its lookup and its terms lookup) is fetched once.

Nothing is overwritten without `--force` (each file is created exclusively, written beside and
renamed into place); a URI that cannot be fetched or a file that cannot be written is an error
for that lookup only: the others are still written, and the exit status is 1.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, Callable

import click

from rmmc.compiler import ir
from rmmc.compiler.external import lookup_text, rows_of_text

MAX_BYTES = 100 * 1024 * 1024
TIMEOUT = 60.0


class FetchError(Exception):
    """Why one lookup was not written (a message)."""


def _entries(manifest: Path) -> list[dict]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FetchError(f"{manifest}: not a lookups manifest ({exc})") from None
    entries = data.get("lookups") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise FetchError(f"{manifest}: no 'lookups' list")
    return entries


def _table(entry: Any) -> tuple[str, str, ir.ExternalTable]:
    """(file name, URI, the external table) of a manifest entry, checked."""
    from rmmc.backends.splunk.lookups import lookup_file

    if not isinstance(entry, dict):
        raise FetchError("a manifest entry is not an object")
    uri, name, fmt = entry.get("uri"), entry.get("file"), entry.get("format", "csv")
    columns = entry.get("columns")
    if not isinstance(uri, str) or not uri.lower().startswith(("http://", "https://")):
        raise FetchError(f"entry {name!r}: the URI must be http or https, not {uri!r}")
    terms = entry.get("terms", False) is True
    if name != lookup_file(uri, terms):  # never a path of the manifest's choosing
        raise FetchError(f"entry {name!r}: the file for {uri} is {lookup_file(uri, terms)}")
    if fmt not in ir.EXTERNAL_FORMATS:
        raise FetchError(f"{name}: format {fmt!r} is not one rmmc reads")
    if not isinstance(columns, list) or not columns or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
            for c in columns):
        raise FetchError(f"{name}: 'columns' must list {{name, type}} objects")
    table = ir.ExternalTable((uri,), tuple((c["name"], c["type"]) for c in columns), fmt,
                             bool(entry.get("ignoreFirstRecord", False)), bool(entry.get("format_given", True)))
    return name, uri, table


def fetch_uri(uri: str) -> bytes:
    """The bytes stored at an http or https URI (at most MAX_BYTES): the one fetcher of
    `rmmc lookups fetch` and `rmmc placeholders --fetch`."""
    if not uri.lower().startswith(("http://", "https://")):
        raise FetchError(f"{uri}: only http and https URIs are fetched")
    request = urllib.request.Request(uri, headers={"User-Agent": "rmmc-lookups"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (http/https checked)
            data = response.read(MAX_BYTES + 1)
    except Exception as exc:  # URLError, HTTPError, timeouts, resets: one lookup's failure
        raise FetchError(f"{uri}: cannot fetch it ({exc})") from None
    if len(data) > MAX_BYTES:
        raise FetchError(f"{uri}: larger than {MAX_BYTES // (1024 * 1024)} MB (Kusto's externaldata limit)")
    return data


def _write(path: Path, text: str, force: bool) -> None:
    """Write a lookup through rmmc's one file writer (`output.write_files`: an exclusive create
    unless `force`, links not followed, the whole file renamed into place)."""
    from rmmc.output import write_files

    problem = write_files([(path, text)], force)
    if problem is not None:
        raise FetchError(problem)


def fetch_lookups(manifests: list[Path], out: Path, force: bool = False,
                  fetch: Callable[[str], bytes] = fetch_uri) -> tuple[list[str], list[str]]:
    """Write every lookup the manifests list into `out`: (files written, error messages)."""
    from rmmc.backends.splunk.lookups import term_lookup

    written, errors = [], []
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    fetched: dict[str, bytes] = {}  # a URI listed twice (its lookup and its terms lookup) is fetched once
    for manifest in manifests:
        try:
            entries = _entries(manifest)
        except FetchError as exc:
            errors.append(str(exc))
            continue
        for entry in entries:
            try:
                name, uri, table = _table(entry)
                if name in seen:
                    continue
                seen.add(name)
                if uri not in fetched:
                    fetched[uri] = fetch(uri)
                rows = rows_of_text(table, fetched[uri], uri)
                columns = table.columns
                if entry.get("terms", False) is True:
                    try:
                        rows, columns = term_lookup(rows, columns)
                    except ValueError as exc:
                        raise FetchError(f"{name}: {exc}") from None
                _write(out / name, lookup_text(rows, columns), force)
                written.append(name)
            except FetchError as exc:
                errors.append(str(exc))
    return written, errors


@click.group()
def lookups() -> None:
    """CSV lookups for Splunk translations that read external tables (externaldata)."""


@lookups.command("fetch")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The directory to write the lookup files into (e.g. the app's lookups/).")
@click.option("--force", is_flag=True, help="Overwrite lookup files that exist.")
def fetch(manifests: tuple[Path, ...], out: Path, force: bool) -> None:
    """Fetch each URI a package's <rule>.lookups.json lists and write its lookup file, parsed as
    Kusto reads that format (a failed URI is reported; the others are still written)."""
    try:
        written, errors = fetch_lookups(list(manifests), out, force)
    except OSError as exc:
        raise click.ClickException(f"{out}: {exc.strerror or exc}")
    for name in written:
        click.echo(f"wrote {out / name}")
    for message in errors:
        click.echo(f"error: {message}", err=True)
    click.echo(f"{len(written)} lookup{'s' if len(written) != 1 else ''} written, {len(errors)} failed", err=True)
    if errors:
        raise SystemExit(1)
