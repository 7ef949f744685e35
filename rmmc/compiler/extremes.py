"""The columns `arg_max()` / `arg_min()` return in a summarize, named as Kusto names them.

`summarize ..., arg_max(By, Col, ... | *) by Keys` returns, after the keys and the aggregates
before it, the row's `By` column, then each `Col` (or, for `*`, every input column but `By`
and the columns a key is (`by DeviceName`, `by D = DeviceName`: those are already in the
result)).  A name already in the result gets the first free numeric suffix: `Timestamp1` for
the latest time in `arg_max(Timestamp, *) by bin(Timestamp, 1h)`, whose key is `Timestamp`.
All of it checked on Microsoft's parser (tests/test_splunk_tail.py).
"""

from __future__ import annotations

from typing import Iterable

from rmmc.compiler import ir


def free_name(name: str, taken: Iterable[str]) -> str:
    """`name`, or with the first numeric suffix (1, 2, ...) no column has."""
    taken = set(taken)
    if name not in taken:
        return name
    n = 1
    while f"{name}{n}" in taken:
        n += 1
    return f"{name}{n}"


def extreme_columns(agg: ir.Aggregate, keys: tuple[tuple[str, ir.Expr], ...], taken: Iterable[str],
                    input_columns: Iterable[str]) -> list[tuple[str, str]]:
    """(result column, input column) for each column `agg` (an arg_max / arg_min whose
    arguments are columns or `*`) returns, in order; `taken` are the result's columns before
    it, `input_columns` the row's columns (what `*` stands for)."""
    result = list(taken)
    out: list[tuple[str, str]] = []
    by = agg.args[0]
    assert isinstance(by, ir.Field), "arg_max / arg_min by an expression has no column"
    key_sources = {e.name for _, e in keys if isinstance(e, ir.Field)}

    def add(source: str) -> None:
        name = free_name(source, result)
        result.append(name)
        out.append((name, source))

    add(by.name)
    for arg in agg.args[1:]:
        if isinstance(arg, ir.Star):
            listed = {a.name for a in agg.args[1:] if isinstance(a, ir.Field)}
            for column in input_columns:
                if column != by.name and column not in key_sources and column not in listed:
                    add(column)
        elif isinstance(arg, ir.Field):
            add(arg.name)
    return out


def aggregate_names(stage: ir.Summarize, input_columns: Iterable[str] = ()) -> list[list[str]]:
    """The result columns of each aggregate of a summarize, in order (an arg_max's as Kusto
    names them; `*` stands for `input_columns`)."""
    taken = [name for name, _ in stage.group_by]
    out = []
    for agg in stage.aggregates:
        if agg.function in ("arg_max", "arg_min") and agg.args and isinstance(agg.args[0], ir.Field):
            names = [name for name, _ in extreme_columns(agg, stage.group_by, taken, input_columns)]
        elif agg.name:
            names = [agg.name]
        else:
            names = [a.name for a in agg.args if isinstance(a, ir.Field)]
        taken += names
        out.append(names)
    return out


def renamed_columns(stage: ir.Summarize, input_columns: Iterable[str] = ()) -> set[str]:
    """The result columns of a summarize's arg_max / arg_min that hold a column under another
    name (`Timestamp1`): made by the summarize, no event field of that name."""
    taken = [name for name, _ in stage.group_by]
    out: set[str] = set()
    for agg, names in zip(stage.aggregates, aggregate_names(stage, input_columns)):
        if agg.function in ("arg_max", "arg_min") and agg.args and isinstance(agg.args[0], ir.Field):
            out |= {name for name, source in extreme_columns(agg, stage.group_by, taken, input_columns)
                    if name != source}
        taken += names
    return out
