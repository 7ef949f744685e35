"""Reader for Sentinel analytic / hunting rule YAML (one rule per file).

Strict first (`yaml.safe_load`), the tolerant reader when that fails (with a warning saying
why).  Either way the query's place in the file is found by the tolerant reader, so every
query line maps back to its file offset.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, error, warning
from rmmc.compiler.documents.lines import join_pairs, split_lines
from rmmc.compiler.documents.model import DocumentKind, RuleDocument
from rmmc.compiler.documents.result import FileResult
from rmmc.compiler.documents.tolerant_yaml import ScalarLocation, read_tolerant
from rmmc.compiler.sigma.yaml_tree import MIN_NODES, NODES_PER_CHAR

STRICT_LIMIT = 512_000   # characters; above this the strict check (~4 s/MB) is skipped
LIST_KEYS = ("tactics", "relevantTechniques")
_QUERY_KEY = re.compile(r"""^[ \t]*["']?query["']?[ \t]*:""", re.M)


def read_sentinel_yaml(text: str, path: str, source: LineIndex) -> FileResult:
    """One `RuleDocument` from a Sentinel YAML file, or an error if it has no query."""
    tolerant = read_tolerant(split_lines(text), source)
    data, problem = strict_load(text, source, "file")
    diagnostics: list[Diagnostic] = []
    if problem is not None or data is None:
        diagnostics.extend(d for d in (problem,) if d is not None)
        diagnostics.extend(tolerant.warnings)
        data = tolerant.data
    if "query" not in data:
        return FileResult(path, (), tuple(diagnostics) + (
            error("no query: key in Sentinel YAML", source.span(0), "doc-no-query"),),
            DocumentKind.SENTINEL_YAML)
    value = data["query"]
    problem_text = ("is empty" if value is None or (isinstance(value, str) and not value.strip())
                    else f"is a {type(value).__name__}, not text"
                    if isinstance(value, (list, dict)) else None)
    if problem_text is not None:
        location = tolerant.locations.get("query")
        where = location.start if location is not None else _key_offset(text)
        return FileResult(path, (), tuple(diagnostics) + (
            error(f"query: in Sentinel YAML {problem_text}", source.span(where),
                  "doc-no-query"),), DocumentKind.SENTINEL_YAML)
    query, starts, note = locate_query(value, tolerant.locations.get("query"), text, source)
    if note is not None:
        diagnostics.append(note)
    metadata = normalise_metadata(data)
    doc = RuleDocument(path, DocumentKind.SENTINEL_YAML, query, starts, source,
                       title=title_of(metadata), metadata=metadata,
                       warnings=tuple(diagnostics))
    return FileResult(path, (doc,), (), DocumentKind.SENTINEL_YAML)


def strict_load(text: str, source: LineIndex, what: str, base: int = 0
                ) -> tuple[dict[str, Any] | None, Diagnostic | None]:
    """`yaml.safe_load` the text; on failure (or a non-mapping) say why, located at the
    place PyYAML reported (`base` is the file offset of `text`)."""
    if len(text) > STRICT_LIMIT:
        return None, warning(f"{what} is larger than {STRICT_LIMIT // 1000} KB; strict YAML "
                             "check skipped; read with the tolerant reader",
                             source.span(base), "yaml-invalid")
    import yaml  # lazily: keeps `import rmmc` light

    offset = base
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            offset = base + _mark_offset(text, mark)
        reason = exc.problem or exc.context or type(exc).__name__
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            offset = base + max(0, min(position, len(text)))
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except Exception as exc:  # RecursionError and the like: any failure means "not strict"
        reason = type(exc).__name__
    else:
        surrogate = _lone_surrogate(data)
        too_large = _expands_past(data, MIN_NODES + NODES_PER_CHAR * len(text))
        if too_large:
            reason = ("its aliases expand it to more values than its size allows (an alias bomb?); "
                      "aliases are read as text")
        elif surrogate is not None:
            reason = (f"an escape gives U+{ord(surrogate):04X}, half of a UTF-16 surrogate pair: not "
                      "a character, which YAML text cannot hold")
            found = _SURROGATE_ESCAPE.search(text)
            offset = base + (found.start() if found else 0)
        elif isinstance(data, dict):
            return {str(k): v for k, v in data.items()}, None
        elif data is None:
            return {}, None
        else:
            reason = f"the top level is a {type(data).__name__}, not a mapping"
    return None, warning(f"{what} is not valid YAML ({reason}); read with the tolerant reader",
                         source.span(offset), "yaml-invalid")


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\(?:u[dD][89a-fA-F][0-9a-fA-F]{2}|U0000[dD][89a-fA-F][0-9a-fA-F]{2})")


def _lone_surrogate(data: Any) -> str | None:
    """A surrogate code point anywhere in the loaded YAML (PyYAML's pure-Python loader lets
    `\\ud800` escapes through; YAML excludes them from its characters), else None."""
    stack, seen = [data], set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found is not None:
                return found.group()
        elif isinstance(item, (dict, list, tuple)):
            if id(item) in seen:  # aliases share one object: each is looked at once
                continue
            seen.add(id(item))
            stack.extend(item.keys() if isinstance(item, dict) else ())
            stack.extend(item.values() if isinstance(item, dict) else item)
    return None


def _expands_past(data: Any, limit: int) -> bool:
    """Whether the loaded YAML, with every alias expanded, holds more than `limit` values.
    PyYAML shares one object per anchor, so a small text can stand for a huge tree; sizes are
    summed per object (memoised), so this costs one look at each distinct object."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        item, done = stack.pop()
        if not isinstance(item, (dict, list, tuple)):
            continue
        key = id(item)
        children = list(item.values()) if isinstance(item, dict) else list(item)
        if done:
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[key] > limit:
                return True
        elif key not in sizes:
            sizes[key] = 0  # a cycle back to an object on the way is not counted again
            stack.append((item, True))
            stack.extend((c, False) for c in children)
    return False


def _mark_offset(text: str, mark: Any) -> int:
    """File offset of a PyYAML mark: its character index (exact even where PyYAML counts
    line breaks differently, e.g. `\\x85`)."""
    index = getattr(mark, "index", None)
    if isinstance(index, int) and 0 <= index <= len(text):
        return index
    return 0


def locate_query(value: Any, location: ScalarLocation | None, text: str, source: LineIndex
                 ) -> tuple[str, tuple[int, ...], Diagnostic | None]:
    """The query text and its line starts; a warning when positions are approximate."""
    if location is not None and location.pairs:
        query, starts = join_pairs(location.pairs)
        if location.exact and location.style == "plain" and isinstance(value, (int, float)):
            return query, starts, None   # `query: 1` read as a number: the text is the query
        if isinstance(value, str):
            if location.exact and normalise_text(value) == normalise_text(query):
                return query, starts, None
            if location.style == ">" and value.split() == query.split():
                return query, starts, None   # folded: keep the lines as written
    if value is None:
        value = ""
    elif not isinstance(value, str):
        value = str(value)
    query = value.strip("\n")
    start = location.start if location is not None else _key_offset(text)
    starts = (start,) * (query.count("\n") + 1)
    style = location.style if location is not None else "non-scalar"
    note = warning(f"query: is a {style} scalar that does not map line by line to the file; "
                   "positions in it are approximate", source.span(start), "yaml-approximate")
    return query, starts, note


def _key_offset(text: str) -> int:
    """File offset just after the first `query:` key (0 if none)."""
    found = _QUERY_KEY.search(text)
    return found.end() if found else 0


def normalise_text(text: str) -> str:
    """Text for comparing queries: trailing spaces and blank edges ignored."""
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def normalise_metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as read, minus `query`; `tactics`/`relevantTechniques` always lists; a
    `dataTypes:` that slipped out of its `requiredDataConnectors` item is put back."""
    meta = {str(k): v for k, v in data.items() if k != "query"}
    for key in LIST_KEYS:
        meta[key] = as_list(meta.get(key))
    connectors = meta.get("requiredDataConnectors")
    if "dataTypes" in meta and isinstance(connectors, list) and connectors \
            and isinstance(connectors[-1], dict) and "dataTypes" not in connectors[-1]:
        connectors[-1] = {**connectors[-1], "dataTypes": as_list(meta.pop("dataTypes"))}
    return meta


def as_list(value: Any) -> list[str]:
    """A scalar, comma list or list of scalars as a list of non-empty strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def title_of(metadata: Mapping[str, Any]) -> str | None:
    """The rule's title: `name`, else `title`."""
    for key in ("name", "title", "displayName"):
        value = metadata.get(key)
        if isinstance(value, (str, int, float)) and str(value).strip():
            return str(value).strip()
    return None
