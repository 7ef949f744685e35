"""External tables (KQL `externaldata`): what their rows are, given the text stored at each URI.

rmmc never fetches a URI while it translates or evaluates: the reference evaluator reads an
external table's rows from the event set (events tagged with the URI as their table) or from the
stored text of each URI given to it (`Context.external`), parsed here.  `rmmc lookups fetch`
uses the same parser to write a Splunk lookup, so a lookup holds exactly the rows Kusto reads.

How each format reads (Kusto's ingestion formats, "Data formats supported for ingestion"):

* `csv` (`,`), `tsv` (tab), `psv` (`|`), `scsv` (`;`), `sohsv` (U+0001): RFC 4180 records with
  that separator: a field in double quotes may hold the separator, line breaks and `""` (one
  quote); records end at a line break (LF or CRLF).  The n-th field fills the n-th declared
  column; a record with fewer fields leaves the other columns null, extra fields are ignored.
  A blank line is no record (rmmc's reading; Kusto's documentation does not say).
* `txt`: each non-empty line (LF-separated, a trailing CR dropped) is one record; the whole line
  is the first column, the other columns null (Kusto maps only ordinal 0 for TXT).
* `raw`: the whole text is one record (the first column).

`ignoreFirstRecord=true` skips the first record of each URI.  A field is converted to its
column's type as `to<type>()` converts text: a value that does not read as that type is null;
a string is never null (a missing string is '', as everywhere in Kusto).  Text is read as UTF-8
(a leading byte-order mark dropped; an invalid byte read as U+FFFD).

Without a `format` property Kusto detects the format from the URI's extension (`.csv`, `.tsv`,
`.txt` ...), defaulting to CSV: `detect_format`.
"""

from __future__ import annotations

import re
import io
from typing import Any, Iterable, Mapping

from rmmc.compiler import ir
from rmmc.compiler.functions import convert

SEPARATORS = {"csv": ",", "tsv": "\t", "psv": "|", "scsv": ";", "sohsv": "\x01"}
_STRING_TYPES = ("string", "guid")


def urlsplit(uri: str):
    """`urllib.parse.urlsplit`, imported when a rule reads a feed (a cold start does without
    the module)."""
    from urllib.parse import urlsplit as split

    return split(uri)


def detect_format(uri: str) -> str:
    """The format Kusto reads a URI in when the query names none: its path's extension when it
    is a format rmmc reads, else CSV (Kusto's default)."""
    path = urlsplit(uri).path
    name = path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return extension if extension in ir.EXTERNAL_FORMATS else "csv"


def decode(data: bytes | str) -> str:
    """Stored bytes as text: UTF-8, a leading byte-order mark dropped."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text[1:] if text.startswith("\ufeff") else text


def records(text: str, format: str) -> list[list[str]]:
    """The records of a text in a format, each a list of field texts (see the module docstring)."""
    if format == "raw":
        return [[text]]
    if format == "txt":
        lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
        return [[line] for line in lines if line]
    separator = SEPARATORS.get(format)
    if separator is None:
        raise ValueError(f"format {format!r} is not one rmmc reads ({', '.join(ir.EXTERNAL_FORMATS)})")
    import csv  # here, not at the top: SPL imports this module for every translation

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, quotechar='"',
                        doublequote=True, strict=False)
    return [row for row in reader if row]


def typed(fields: list[str], columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """One record's fields as a row of the declared columns."""
    row: dict[str, Any] = {}
    for i, (name, type_name) in enumerate(columns):
        text = fields[i] if i < len(fields) else None
        if type_name in _STRING_TYPES:
            row[name] = text if text is not None else ""
        else:
            row[name] = convert(text, type_name) if text not in (None, "") else None
    return row


def rows_of_text(table: ir.ExternalTable, data: bytes | str, uri: str | None = None) -> list[dict[str, Any]]:
    """The rows one URI's stored text gives (the first record dropped with ignoreFirstRecord)."""
    fmt = table.format if table.format_given or uri is None else detect_format(uri)
    found = records(decode(data), fmt)
    if table.ignore_first_record:
        found = found[1:]
    return [typed(fields, table.columns) for fields in found]


def rows_of(table: ir.ExternalTable, stored: Mapping[str, bytes | str]) -> list[dict[str, Any]] | None:
    """The table's rows: each URI's, in order; None when the text of some URI is not given."""
    out: list[dict[str, Any]] = []
    for uri in table.uris:
        if uri not in stored:
            return None
        out.extend(rows_of_text(table, stored[uri], uri))
    return out


def lookup_text(rows: Iterable[Mapping[str, Any]], columns: tuple[tuple[str, str], ...]) -> str:
    """Rows as the CSV a Splunk lookup reads: a header of the column names, then each row, each
    value as text (`tostring()`), null as an empty field, quoted where CSV needs it."""
    import csv

    from rmmc.compiler.functions import to_text

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([name for name, _ in columns])
    for row in rows:
        writer.writerow(["" if row.get(name) is None else to_text(row.get(name)) for name, _ in columns])
    return out.getvalue()


def uri_slug(uri: str) -> str:
    """A name part for a feed: the URI's host and last path segment in lower-case letters, digits
    and `_` (at most 40).  The query and fragment are left out: they often hold an access token
    (a SAS signature), which must not become part of a lookup's or a placeholder's name."""
    parts = urlsplit(uri.lower())
    host = (parts.hostname or "") if parts.scheme else uri.lower().partition("/")[0]
    path = parts.path if parts.scheme else uri.lower().partition("/")[2].split("?")[0].split("#")[0]
    last = [p for p in path.split("/") if p][-1:]
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join([host, *last])).strip("_")[:40].strip("_")
    return slug or "feed"


def shown_uri(table: ir.ExternalTable, uri: str) -> str:
    """A URI as a diagnostic may print it: one written `h'...'` (Kusto keeps those out of its
    logs, as they usually carry a secret) is shown as its scheme and host only."""
    index = table.uris.index(uri) if uri in table.uris else -1
    if 0 <= index < len(table.hidden) and table.hidden[index]:
        parts = urlsplit(uri)
        return f"{parts.scheme}://{parts.hostname or ''}/... (written h'...': the rest not shown)"
    return uri


def reads_only_feeds(rule: ir.Rule | None) -> bool:
    """Whether every source a rule reads (its own, its branches', its sub-rules') is an
    external table: a subquery that is a feed list, whatever stages shape it."""
    pending, seen = ([rule] if rule is not None else []), 0
    while pending:
        current = pending.pop()
        if current.union is None and current.source.external is None:
            return False
        seen += 1
        pending.extend(ir.sub_rules(current))
    return seen > 0


def external_tables(rule: ir.Rule) -> list[ir.ExternalTable]:
    """Every external table a rule reads (its own source, its sub-rules'), each once, in order:
    what a package's lookup list and a Sigma placeholder's definition are made from."""
    found: list[ir.ExternalTable] = []
    pending = [rule]
    while pending:
        current = pending.pop(0)
        table = current.source.external
        if table is not None and table not in found:
            found.append(table)
        pending.extend(ir.sub_rules(current))
    return found


def term_tested_tables(rule: ir.Rule) -> list[ir.ExternalTable]:
    """The external tables a `has_any (feed ...)` test reads anywhere in a rule: a Splunk package
    lists a terms lookup for each (each value's term pattern beside it)."""
    found: list[ir.ExternalTable] = []
    pending = [rule]
    while pending:
        current = pending.pop(0)
        conditions = [current.condition, *(s.condition for s in current.stages if isinstance(s, ir.Filter))]
        for condition in conditions:
            for node in ir.walk(condition):
                if isinstance(node, ir.InSubquery) and node.op is ir.Op.TERM and node.rule is not None:
                    found.extend(t for t in external_tables(node.rule) if t not in found)
        pending.extend(ir.sub_rules(current))
    return found
