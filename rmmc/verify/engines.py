"""Run a translation on events with a real engine, where one is installed.

* kql: `duckdb-kql` (a KQL engine on DuckDB) over a table holding the events, missing strings
  stored as '' (Defender's strings are never null);
* sigma: pySigma's sqlite backend converts the rule and SQLite runs it (columns `TEXT COLLATE
  NOCASE`, a Python REGEXP function), missing fields stored as NULL (Sigma's model);
* eql: the `eql` package's parser, the query evaluated with Elasticsearch's documented
  semantics (`rmmc.verify.eql_elastic`: cased and case-insensitive tests, wildcards, Lucene
  regexes, cidrMatch on ip fields).

Verify never guesses: an engine that is installed but cannot run a rule (it refuses it, lacks a
function, or fails) raises `EngineError`, and the target is `unchecked (engine error: ...)`.
Only when an engine is not installed at all (`EngineUnavailable`; `pip install rmmc[verify]`
brings all three) are KQL and Sigma outputs read back by rmmc itself and run by the reference
evaluator, reported under the engine name "rmmc read-back" (the text rmmc wrote against its
own reading, not an engine); EQL is then not checked.  Splunk and ES|QL have no engine that can
run here.  Each runner returns the indexes of the events selected.

The adapters that bend an engine are each one function, tested against the engine's own
behaviour (tests/test_verify.py): `sqlite_nocase` and `sqlite_like` (SQLite's NOCASE and LIKE
fold ASCII only) and, for EQL, `rmmc.verify.lucene` (tests/test_lucene.py).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from typing import Any, Callable

from rmmc.compiler.ir import STRING_OPS, Field, Op, Rule, walk_predicates


class EngineUnavailable(Exception):
    """The engine for a target is not installed here (another runner may stand in)."""


class EngineError(Exception):
    """The engine is installed but cannot run this rule: the target is unchecked."""


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
    from rmmc.compiler.ir import InSubquery, walk

    out: dict[str, Field] = {}
    for p in walk_predicates(rule.condition):
        out.setdefault(p.field.name, p.field)
        if not isinstance(p.field, Field):  # a computed value: the fields inside it too (a backend may test them)
            pending = [p.field]
            while pending:
                e = pending.pop()
                if isinstance(e, Field):
                    out.setdefault(e.name, e)
                pending.extend(a for a in getattr(e, "args", ()) or () if not isinstance(a, str))
    for node in walk(rule.condition):  # `x in (feed ...)`: x is read too
        if isinstance(node, InSubquery) and isinstance(node.field, Field):
            out.setdefault(node.field.name, node.field)
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
        raise EngineError(f"duckdb-kql cannot run it: {type(exc).__name__}: {str(exc)[:200]}") from None
    at = relation.columns.index(INDEX)
    return sorted(row[at] for row in relation.fetchall())


def run_kql_readback(rule: Rule, text: str, events: list[dict[str, Any]]) -> list[int]:
    from rmmc.compiler.evaluator import matches
    from rmmc.compiler.kql.lower import lower_text

    lowered = lower_text(text)
    if lowered.rule is None:
        raise EngineUnavailable("rmmc cannot read its own KQL back: " +
                                "; ".join(d.message for d in lowered.diagnostics if d.is_error))
    return [i for i, e in enumerate(events) if matches(lowered.rule, e)]


def _first_word(text: str) -> str | None:
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\n|\||$)", text)
    return m.group(1) if m else None


# ------------------------------------------------------------------ Sigma


def run_sigma_engine(rule: Rule, text: str, events: list[dict[str, Any]], pipeline: Any = None) -> list[int]:
    """`pipeline`: a pySigma processing pipeline to convert with (placeholders' values)."""
    try:
        from sigma.backends.sqlite import sqliteBackend
        from sigma.collection import SigmaCollection
    except ImportError:
        raise EngineUnavailable("pySigma and pysigma-backend-sqlite are not installed") from None
    if any(p.op is Op.CIDR for p in walk_predicates(rule.condition)):
        raise EngineError("pySigma's sqlite backend matches |cidr as text prefixes, not as networks")
    try:
        queries = sqliteBackend(pipeline).convert(SigmaCollection.from_yaml(text))
    except Exception as exc:
        raise EngineError(f"pySigma's sqlite backend refuses it: {str(exc)[:200]}") from None
    if len(queries) != 1 or not str(queries[0]).startswith("SELECT * FROM "):
        raise EngineError("pySigma's sqlite backend gave no single query")
    query = str(queries[0])
    table = query.split()[3]
    names = _sigma_names(rule)
    conn = sigma_sqlite()
    try:
        spec = ", ".join([f'"{INDEX}" INTEGER'] + [f'"{s}" {_SQLITE_TYPES.get(f.type, "TEXT COLLATE NOCASE")}'
                                                     for s, f in names.values()])
        conn.execute(f"CREATE TABLE {table} ({spec})")
        for i, event in enumerate(events):
            row = [i] + [_sqlite_value(event.get(column)) for column in names]
            conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
        return sorted(r[0] for r in conn.execute(query.replace("SELECT *", f'SELECT "{INDEX}"', 1)))
    except sqlite3.Error as exc:
        raise EngineError(f"SQLite cannot run pySigma's query: {exc}") from None
    finally:
        conn.close()


def sigma_sqlite() -> sqlite3.Connection:
    """An in-memory SQLite database as pySigma's sqlite backend's queries expect it: a Python
    REGEXP, and NOCASE / LIKE folding case as the model does (`sqlite_nocase`, `sqlite_like`)."""
    conn = sqlite3.connect(":memory:")
    conn.create_function("regexp", 2, _regexp, deterministic=True)
    conn.create_collation("NOCASE", sqlite_nocase)
    conn.create_function("like", 2, sqlite_like, deterministic=True)
    conn.create_function("like", 3, sqlite_like, deterministic=True)
    return conn


def _sigma_names(rule: Rule) -> dict[str, tuple[str, Field]]:
    """Column -> (Sigma field, Field) as the Sigma backend names them."""
    from rmmc.backends.sigma.fields import FieldMapper
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


def unicode_fold(text: str) -> str:
    """Each character lower-cased where its lower case is one character ('ß' stays 'ß', 'İ'
    stays 'İ'): the case-insensitive matching Sigma specifies ("case-insensitive" without an
    ASCII limit), extended from SQLite's, which folds the 26 ASCII letters only."""
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def sqlite_nocase(a: str, b: str) -> int:
    """SQLite's NOCASE collation with `unicode_fold` for its ASCII-only folding (the only
    change: on ASCII text it orders exactly as the built-in does)."""
    fa, fb = unicode_fold(a), unicode_fold(b)
    return (fa > fb) - (fa < fb)


def sqlite_like(pattern: Any, value: Any, escape: Any = None) -> int | None:
    """SQLite's `value LIKE pattern [ESCAPE e]` (called as like(pattern, value, e)) with
    `unicode_fold` for its ASCII-only folding: `%` any run, `_` one character, both crossing
    line breaks, null on a null (on ASCII text it answers exactly as the built-in does)."""
    if pattern is None or value is None:
        return None
    out, i, text = [], 0, str(pattern)
    while i < len(text):
        ch = text[i]
        if escape is not None and ch == escape:
            if i + 1 == len(text):
                return 0  # SQLite: an escape character that ends the pattern matches nothing
            out.append(re.escape(unicode_fold(text[i + 1])))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(unicode_fold(ch)))
        i += 1
    return 1 if re.fullmatch("".join(out), unicode_fold(str(value)), re.S) is not None else 0


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
    """The EQL text parsed by the `eql` package and evaluated as Elasticsearch does
    (`rmmc.verify.eql_elastic`)."""
    try:
        import eql  # noqa: F401
    except ImportError:
        raise EngineUnavailable("the eql package is not installed") from None
    from rmmc.verify.eql_elastic import select

    try:
        return select(text, [{k: v for k, v in e.items() if v is not None} for e in events])
    except Exception as exc:
        raise EngineError(f"the eql package cannot parse or run it: {type(exc).__name__}: "
                          f"{str(exc)[:200]}") from None


ENGINES: dict[str, list[tuple[str, Runner]]] = {
    "kql": [("duckdb-kql", run_kql_engine), ("rmmc read-back", run_kql_readback)],
    "sigma": [("pySigma sqlite", run_sigma_engine), ("rmmc read-back", run_sigma_readback)],
    "eql": [("eql package", run_eql_engine)],
    "splunk": [],
    "esql": [],
}
