"""Run a translation on events with a real engine, where one is installed.

* kql: `duckdb-kql` (a KQL engine on DuckDB) over a table holding the events, missing strings
  stored as '' (Defender's strings are never null);
* sigma: pySigma's sqlite backend converts the rule and SQLite runs it (columns `TEXT COLLATE
  NOCASE`, a Python REGEXP function), missing fields stored as NULL (Sigma's model);
* eql: the `eql` package's Python engine, matching regexes and wildcards as Elasticsearch does
  (`elasticsearch_semantics`).

Without the engine (`pip install rmmc[verify]` brings all three), KQL and Sigma outputs are
read back by rmmc itself and run by the reference evaluator (this checks the text rmmc wrote
against its own reading, not an engine), and EQL is not checked.  Splunk and ES|QL have no
engine that can run here.  Each runner returns the indexes of the events selected.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable

from rmmc.compiler.ir import STRING_OPS, Field, Op, Rule, walk_predicates


class EngineUnavailable(Exception):
    """The engine for a target is not installed or cannot run this rule."""


Runner = Callable[[Rule, str, list[dict[str, Any]]], list[int]]
INDEX = "rmmc_event"
_DUCK_TYPES = {"string": "VARCHAR", "guid": "VARCHAR", "int": "INTEGER", "long": "BIGINT",
               "real": "DOUBLE", "double": "DOUBLE", "decimal": "DOUBLE", "bool": "BOOLEAN",
               "datetime": "TIMESTAMP", "dynamic": "VARCHAR", "timespan": "VARCHAR"}
_SQLITE_TYPES = {"string": "TEXT COLLATE NOCASE", "guid": "TEXT COLLATE NOCASE", "int": "INTEGER",
                 "long": "INTEGER", "real": "REAL", "double": "REAL", "decimal": "REAL", "bool": "INTEGER"}


def condition_only(rule: Rule) -> Rule:
    """The rule's detection alone: no lookback, no output shaping (what verification runs)."""
    return replace(rule, lookback=None, stages=(), exclusions=())


def fields_of(rule: Rule) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for p in walk_predicates(rule.condition):
        out.setdefault(p.field.name, p.field)
    return out


# ------------------------------------------------------------------ KQL


_UNICODE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\[ux][0-9A-Fa-f]")


def run_kql_engine(rule: Rule, text: str, events: list[dict[str, Any]]) -> list[int]:
    try:
        import duckdb_kql
    except ImportError:
        raise EngineUnavailable("duckdb-kql is not installed") from None
    if _UNICODE_ESCAPE.search(text):  # it reads `\u0001` as the text `u0001`: an engine gap
        raise EngineUnavailable("duckdb-kql does not read \\u / \\x escapes in string literals")
    table = _first_word(text) or rule.source.table or "T"
    fields = fields_of(rule)
    con = duckdb_kql.connect()
    columns = ", ".join([f'"{INDEX}" BIGINT'] + [f'"{n}" {_DUCK_TYPES.get(f.type, "VARCHAR")}'
                                                 for n, f in fields.items()])
    con.execute(f'CREATE TABLE "{table}" ({columns})')
    for i, event in enumerate(events):
        row = [i]
        for name, f in fields.items():
            value = event.get(name)
            if value is None and f.type == "string":
                value = ""
            row.append(str(value) if f.type in ("dynamic", "timespan") and value is not None else value)
        con.execute(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(row))})', row)
    try:
        relation = duckdb_kql.query(con, text)
    except Exception as exc:  # the engine's own limits (functions it lacks)
        raise EngineUnavailable(f"duckdb-kql cannot run it: {type(exc).__name__}: {str(exc)[:200]}") from None
    at = relation.columns.index(INDEX)
    return sorted(row[at] for row in relation.fetchall())


def run_kql_readback(rule: Rule, text: str, events: list[dict[str, Any]]) -> list[int]:
    from rmmc.compiler.evaluator import matches
    from rmmc.compiler.lower import lower_text

    lowered = lower_text(text)
    if lowered.rule is None:
        raise EngineUnavailable("rmmc cannot read its own KQL back: " +
                                "; ".join(d.message for d in lowered.diagnostics if d.is_error))
    return [i for i, e in enumerate(events) if matches(lowered.rule, e)]


def _first_word(text: str) -> str | None:
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\n|\||$)", text)
    return m.group(1) if m else None


# ------------------------------------------------------------------ Sigma


def run_sigma_engine(rule: Rule, text: str, events: list[dict[str, Any]]) -> list[int]:
    try:
        from sigma.backends.sqlite import sqliteBackend
        from sigma.collection import SigmaCollection
    except ImportError:
        raise EngineUnavailable("pySigma and pysigma-backend-sqlite are not installed") from None
    if any(p.op is Op.CIDR for p in walk_predicates(rule.condition)):
        raise EngineUnavailable("pySigma's sqlite backend matches |cidr as text prefixes, not as "
                                "networks")
    try:
        queries = sqliteBackend().convert(SigmaCollection.from_yaml(text))
    except Exception as exc:
        raise EngineUnavailable(f"pySigma's sqlite backend refuses it: {str(exc)[:200]}") from None
    if len(queries) != 1 or not str(queries[0]).startswith("SELECT * FROM "):
        raise EngineUnavailable("pySigma's sqlite backend gave no single query")
    query = str(queries[0])
    table = query.split()[3]
    names = _sigma_names(rule)
    conn = sqlite3.connect(":memory:")
    try:
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        # Sigma's case-insensitive matching folds every letter; SQLite's NOCASE and LIKE fold
        # ASCII only.  Both are redefined to fold as the model does (`fold`).
        conn.create_collation("NOCASE", _nocase)
        conn.create_function("like", 2, _like, deterministic=True)
        conn.create_function("like", 3, _like, deterministic=True)
        spec = ", ".join([f'"{INDEX}" INTEGER'] + [f'"{s}" {_SQLITE_TYPES.get(f.type, "TEXT COLLATE NOCASE")}'
                                                     for s, f in names.values()])
        conn.execute(f"CREATE TABLE {table} ({spec})")
        for i, event in enumerate(events):
            row = [i] + [_sqlite_value(event.get(column)) for column in names]
            conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
        return sorted(r[0] for r in conn.execute(query.replace("SELECT *", f'SELECT "{INDEX}"', 1)))
    except sqlite3.Error as exc:
        raise EngineUnavailable(f"SQLite cannot run pySigma's query: {exc}") from None
    finally:
        conn.close()


def _sigma_names(rule: Rule) -> dict[str, tuple[str, Field]]:
    """Column -> (Sigma field, Field) as the Sigma backend names them."""
    from rmmc.backends.sigma_fields import FieldMapper
    from rmmc.compiler.schema import load_schema

    table = load_schema().table(rule.source.table) if rule.source.table else None
    mapper = FieldMapper(rule.source.table, table)
    out = {}
    for name, f in fields_of(rule).items():
        sigma = name if rule.source.taxonomy == "sigma" else mapper.sigma(name)
        out[name] = (sigma, f)
    return out


def _regexp(pattern: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return 1 if re.search(pattern, str(value)) else 0
    except re.error:
        return None


def _nocase(a: str, b: str) -> int:
    from rmmc.compiler.evaluator import fold

    fa, fb = fold(a), fold(b)
    return (fa > fb) - (fa < fb)


def _like(pattern: Any, value: Any, escape: Any = None) -> int | None:
    """SQLite's `value LIKE pattern [ESCAPE e]` (called as like(pattern, value, e)), case folded
    as the model folds: `%` any run, `_` one character, both crossing line breaks."""
    from rmmc.compiler.evaluator import fold

    if pattern is None or value is None:
        return None
    out, i, text = [], 0, str(pattern)
    while i < len(text):
        ch = text[i]
        if escape is not None and ch == escape and i + 1 < len(text):
            out.append(re.escape(fold(text[i + 1])))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(fold(ch)))
        i += 1
    return 1 if re.fullmatch("".join(out), fold(str(value)), re.S) is not None else 0


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, (int, float, str)):
        return value
    return str(value)


def run_sigma_readback(rule: Rule, text: str, events: list[dict[str, Any]]) -> list[int]:
    from rmmc.compiler.evaluator import matches
    from rmmc.compiler.sigma import read_sigma_rules

    read = read_sigma_rules(text)
    rules = [r for r, _ in read if r is not None]
    if len(rules) != 1:
        raise EngineUnavailable("rmmc cannot read its own Sigma back")
    return [i for i, e in enumerate(events) if matches(rules[0], e)]


# ------------------------------------------------------------------ EQL


def run_eql_engine(rule: Rule, text: str, events: list[dict[str, Any]]) -> list[int]:
    try:
        import eql
        from eql.parser import (elasticsearch_syntax, ignore_missing_functions, parse_query,
                                skip_optimizations)
    except ImportError:
        raise EngineUnavailable("the eql package is not installed") from None
    if any(p.case_sensitive and p.op in STRING_OPS and p.field.type == "string"
           for p in walk_predicates(rule.condition)):
        raise EngineUnavailable("the eql package folds case in every string test (`like` and "
                                "`like~`, `regex` and `regex~` alike): a case-sensitive test "
                                "cannot be checked on it")
    try:
        # Without the package's optimizer: it rewrites `(f == 0 or f == 1) or f < 0` as
        # `f in (0, 1)`, dropping the last test (eql 1.0.1).
        with elasticsearch_syntax, ignore_missing_functions, skip_optimizations:
            query = parse_query(text)
    except Exception as exc:
        raise EngineUnavailable(f"the eql package cannot parse it: {str(exc)[:200]}") from None
    out: list[int] = []
    with elasticsearch_semantics():
        engine = eql.PythonEngine()
        engine.add_query(query)
        engine.add_output_hook(lambda result: out.extend(e.data[INDEX] for e in result.events))
        category = text.split()[0] if text.split() and text.split()[0] != "any" else "process"
        engine.stream_events([eql.Event(category, 0, {**{k: v for k, v in e.items() if v is not None},
                                                      INDEX: i}) for i, e in enumerate(events)])
    return sorted(set(out))


def lucene_to_python(pattern: str) -> str:
    """A Lucene regex (as Elasticsearch reads it) as a Python one for `re.fullmatch`: `^` and
    `$` are literals in Lucene.  Lucene's optional operators (`# @ & < > ~`) and quoting (`"`)
    never occur unescaped in what rmmc writes: ValueError if they do."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
        elif ch in "^$":
            out.append("\\" + ch)
        elif ch in '#@&<>~"':
            raise ValueError(f"unescaped Lucene operator {ch!r} in {pattern!r}")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


@contextmanager
def elasticsearch_semantics():
    """Within this block the `eql` package (1.0.x) matches as Elasticsearch does.  The package
    runs `regex` as a Python regex with `re.match` (anchored at the start only, `^`/`$` as
    anchors), and `like` as `^...$` with only `*` as a wildcard (`?` literal, `$` also before a
    final line break); Elasticsearch reads a Lucene regex (`lucene_to_python`) and a wildcard
    (`*` any run, `?` one character) against the whole value.  Both keep the package's flags
    (DOTALL: `.` and the wildcards match a line break)."""
    from eql import functions

    saved = functions.Match.get_callback, functions.Match.run, functions.Wildcard.to_regex

    def get_callback(cls, source_ast, *regex_literals):
        compiled = re.compile("|".join(f"(?:{lucene_to_python(r.value)})" for r in regex_literals),
                              functions.regex_flags())
        return lambda source, *_: compiled.fullmatch(source) is not None if isinstance(source, str) else None

    def run(cls, source, *patterns):
        if isinstance(source, str):
            pattern = "|".join(f"(?:{lucene_to_python(p)})" for p in patterns)
            return re.fullmatch(pattern, source, functions.regex_flags()) is not None
        return None

    def to_regex(cls, *wildcards):
        def one(w: str) -> str:
            return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
                           for ch in functions.fold_case(w)) + r"\Z"
        return "|".join(f"(?:{one(w)})" for w in wildcards)

    functions.Match.get_callback = classmethod(get_callback)
    functions.Match.run = classmethod(run)
    functions.Wildcard.to_regex = classmethod(to_regex)
    try:
        yield
    finally:
        (functions.Match.get_callback, functions.Match.run, functions.Wildcard.to_regex) = (
            classmethod(saved[0].__func__), classmethod(saved[1].__func__), classmethod(saved[2].__func__))


ENGINES: dict[str, list[tuple[str, Runner]]] = {
    "kql": [("duckdb-kql", run_kql_engine), ("rmmc read-back", run_kql_readback)],
    "sigma": [("pySigma sqlite", run_sigma_engine), ("rmmc read-back", run_sigma_readback)],
    "eql": [("eql package", run_eql_engine)],
    "splunk": [],
    "esql": [],
}
