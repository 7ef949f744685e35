"""Reading a Sigma rule's values in Defender's convention: the `sigma` environment's forms,
read the other way.

The Sigma reader maps a rule whose logsource has a Defender table onto that table's columns.
A column and its Sigma field can hold one thing in two conventions (`TargetObject:
HKLM\\...` is `RegistryKey: HKEY_LOCAL_MACHINE\\...`; `User: DOMAIN\\name` is `AccountDomain`
and `AccountName`; `Hashes: SHA256=...` is `SHA256`; `EventType: SetValue` is `ActionType:
RegistryValueSet`).  `sigma_readers(table)` gives, per Sigma field that needs it, the function
that rewrites a test on that field into the test on the table's columns that holds for the same
events, each written in its platform's convention (`rmmc.environments.forms`, each form's
`read`).  Everything else keeps the reader's plain field map.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Callable

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic

Reader = Callable[[ir.Predicate, list[Diagnostic]], ir.Condition]


@cache
def _sigma_source(table: str):
    from rmmc.environments import load_environment

    env = load_environment("sigma")
    return env.source_for(ir.Source(table))


def sigma_readers(table: Any) -> dict[str, Reader]:
    """Sigma field -> how a test on it reads as tests on `table`'s columns (`table` is the
    Defender `TableSchema`), for the fields the `sigma` environment holds in another form.
    Built once per table (a table and the `sigma` environment never change; the reader asks
    for every detection item): do not change the dict."""
    if table is None:
        return {}
    readers = _READERS.get(table)
    if readers is None:
        readers = _READERS[table] = _sigma_readers(table)
    return readers


_READERS: dict[Any, dict[str, Reader]] = {}


def _sigma_readers(table: Any) -> dict[str, Reader]:
    source = _sigma_source(table.name)
    if source is None:
        return {}
    from rmmc.environments.forms import Context, form_of, read_items

    def column(name: str) -> ir.Field:
        return ir.Field(name, table.column_type(name) or "string")

    def context(found: list[Diagnostic]) -> Context:
        return Context("sigma", lambda name, type_: ir.Field(name, type_), found.append)

    out: dict[str, Reader] = {}
    items: dict[str, dict[str, tuple[ir.Field | None, str, str]]] = {}
    for name, spec in source.fields.items():
        if spec.field is None or table.column_type(name) is None:
            continue
        if spec.form == "item":
            group = items.setdefault(spec.field, {})
            group[str(spec.options["item"]).upper()] = (column(name), spec.options.get("separator", ","),
                                                        spec.options.get("assign", "="))
            continue
        if spec.form in ("hives", "values") or (spec.form == "joined" and spec.options.get("part") == "last"):
            form = form_of(spec)
            columns = {name: column(name)}
            if spec.form == "joined":
                columns[spec.options["with"]] = column(spec.options["with"])

            def read(p: ir.Predicate, found: list[Diagnostic], form=form, columns=columns) -> ir.Condition:
                return form.read(p, columns, context(found))

            out[spec.field] = read
    for field_name, group in items.items():
        from rmmc.environments import conventions

        for algorithm in ("MD5", "SHA1", "SHA256", "IMPHASH"):  # digests a list can hold
            if conventions.digest_length(algorithm):
                group.setdefault(algorithm, (None, ",", "="))

        def read_list(p: ir.Predicate, found: list[Diagnostic], group=group) -> ir.Condition:
            return read_items(p, group, context(found))


        out[field_name] = read_list
    return out


def read_sigma_event(event: dict[str, Any], table: Any) -> dict[str, Any]:
    """An event as Sysmon writes it (Sigma's names and conventions) on `table`'s columns in
    Defender's convention: the `sigma` environment's forms read backwards (`Form.from_env`),
    other fields mapped as the Sigma reader maps rule fields (a field with no column keeps its
    name).  What SigmaHQ's recorded events are checked on (tests/test_sigma_regression.py)."""
    from rmmc.environments.forms import form_of

    out: dict[str, Any] = {}
    taken: set[str] = set()
    source = _sigma_source(table.name) if table is not None else None
    if source is not None:
        for name, spec in source.fields.items():
            if spec.field is None or spec.form == "rename" or table.column_type(name) is None:
                continue
            if spec.field in event:
                form_of(spec).from_env(event, out)
                if spec.form not in ("basename", "item"):  # a path still gives the path
                    taken.add(spec.field)  # column, a list the tests rmmc keeps on it
    for field_name, value in event.items():
        if field_name in taken:
            continue
        column = (table.column_for_sigma(field_name) if table is not None else None) or field_name
        out.setdefault(column, value)
    return out
