"""Rows from two runs, made comparable: the reference evaluator's (KQL's meaning) and a
target's (the SPL interpreter's), whatever order each returns them in."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

import pytest

from rmmc.compiler import ir


def comparable(rows: list[dict], name: Callable[[str], str] = lambda k: k) -> list[tuple]:
    """Each row as sorted (name, value) pairs, the rows sorted: times as epoch seconds, numbers
    rounded to 3 places, empty and missing values left out (SPL has no null string), lists as
    sorted tuples; `name` renames a target's columns to the rule's."""
    out = []
    for row in rows:
        items = []
        for k, v in row.items():
            if isinstance(v, datetime):
                v = v.timestamp()
            if v is None or v == "":
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = round(float(v), 3)
            if isinstance(v, (list, tuple)):
                v = tuple(sorted(str(x) for x in v))
            items.append((name(k), v))
        out.append(tuple(sorted(items)))
    return sorted(out, key=repr)


def spl_time_as_timestamp(k: str) -> str:
    return "Timestamp" if k == "_time" else k


def spl_rows(text: str, adapted, events: list[dict], macros: tuple[str, ...],
             lookups: dict | None = None) -> list[dict]:
    """The SPL run (tests/spl_pipeline.py) over the events as the environment holds them
    (`adapted.target_event`); the macros name where the events are, which these already are."""
    spl_pipeline = pytest.importorskip("tests.spl_pipeline")
    shaped = []
    for event in events:
        row = adapted.target_event(event)
        row = {k: v for k, v in row.items() if v is not None and k != ir.TABLE and not isinstance(v, dict)}
        if isinstance(row.get("_time"), datetime):
            row["_time"] = row["_time"].timestamp()
        shaped.append(row)
    body = text
    for macro in macros:
        body = body.replace(macro + " ", "").replace(macro, "")
    return spl_pipeline.run(body, shaped, lookups)
