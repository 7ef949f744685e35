"""Decide what kind of rule document a text is, by content first.

Extensions lie (the hunt seeds are `.txt`; a `.txt` may be bare KQL), so the text decides
when it can.  A `KQL Query` line with scenarios or YAML keys after it is a hunt document.
Otherwise the text is parsed as YAML: a stream of mappings with a top-level `query` key is
Sentinel YAML, one with `detection`, `correlation`, `filter` or `logsource` is Sigma, in any
YAML style (flow mappings too).  Only a text that is not valid YAML falls back to line shapes:
many real Sentinel files are not (a top-level `query:` line: read by the tolerant reader), and
a broken Sigma rule (`detection:` and `title:` lines) goes to the Sigma reader, which says where
the YAML breaks.  Then code fences (unless a query comes before the first one) or headings are
Markdown.  The extension only breaks ties; what is left is bare KQL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from rmmc.compiler.documents.model import DocumentKind
from rmmc.compiler.slots_init import fast_init

_HUNT_MARKER = re.compile(r"(?im)^\ufeff?(?:#{1,6}[ \t]*)?(?:\*\*)?KQL[ \t]+Query(?:\*\*)?"
                          r"[ \t]*:?[ \t]*\r?$")
_HUNT_BODY = re.compile(r"(?im)^[ \t]*(?:[-*+][ \t]+|\d+[.)][ \t]+)?(?:\*\*)?Scenario(?:\*\*)?"
                        r"[ \t]*:"
                        r"|^(?:query|id|name|tactics)[ \t]*:")
_QUERY_KEY = re.compile(r"""(?m)^["']?query["']?[ \t]*:(?:[ \t]|\r?$)""")
_SIGMA_BODY = re.compile(r"(?m)^(?:detection|correlation|filter)[ \t]*:[ \t]*(?:#.*)?\r?$")
_SIGMA_HEAD = re.compile(r"(?m)^(?:title|logsource|name|id)[ \t]*:")
_FENCE = re.compile(r"(?m)^ {0,3}(?:```|~~~)")
_HEADING = re.compile(r"(?m)^#{1,6}[ \t]+\S")
_KQL_HINTS = re.compile(
    r"(?im)^[ \t]*\|[ \t]*[a-z][\w-]*"                       # a pipe operator line
    r"|\|[ \t]*(?:where|project|extend|summarize|take|limit|join|distinct|count|sort|order|"
    r"top|parse|mv-expand|union|render|lookup|invoke|evaluate|make-series|sample)\b"
    r"|^[ \t]*let[ \t]+\w+[ \t]*="
    r"|^[ \t]*(?:union|search|print|datatable|find|range|externaldata|evaluate)\b")
_TABLE_ONLY = re.compile(r"[ \t]*[A-Z][A-Za-z0-9_]*[ \t]*")

MARKDOWN_EXT = frozenset({".md", ".markdown"})
YAML_EXT = frozenset({".yaml", ".yml"})
KQL_EXT = frozenset({".kql", ".csl"})


_SIGMA_KEYS = ("detection", "correlation", "filter", "logsource")

_yaml_tree: Any = None
"""`rmmc.compiler.sigma.yaml_tree` once a text needed it: it loads PyYAML, which a bare query
never needs, and an import statement run per file costs two raised AttributeErrors inside
the import machinery even when the module is loaded."""


@dataclass(frozen=True, slots=True)
class Classified:
    """A text's kind and, when YAML decided it, the stream's composed nodes (so the Sigma
    reader does not parse the text twice)."""

    kind: DocumentKind
    yaml_nodes: list[Any] | None = None


def sniff(text: str, path: str = "") -> DocumentKind:
    """The kind of `text`; `path`'s extension is only a tiebreak."""
    return classify(text, path).kind


def classify(text: str, path: str = "", source: Any = None,
             encoded: bytes | None = None) -> Classified:
    """The kind of `text` (see the module doc), with the YAML nodes it was decided on
    (`source`: the text's `LineIndex`, when the caller has it, for those nodes' spans;
    `encoded`: the text's UTF-8 bytes, when the caller has them)."""
    # each expression is searched for only where the words it needs are in the text (a
    # search of a whole file for a line start costs tens of times a substring test)
    # The hunt marker holds the letters KQL, and every character `(?i)k`, `q`, `l` matches is that
    # letter once lower-cased: a text without them is no hunt document, and the test costs a
    # fifth of the marker's search, which looks at every line of every file.
    marker = _HUNT_MARKER.search(text) if _holds_kql(text) else None
    if marker and _HUNT_BODY.search(text, marker.end()):
        return Classified(DocumentKind.HUNT)
    mappings = _yaml_mappings(text, source, encoded)
    if mappings is not None:
        nodes, keys = mappings
        if "query" in keys:
            return Classified(DocumentKind.SENTINEL_YAML)
        if keys.intersection(_SIGMA_KEYS):
            return Classified(DocumentKind.SIGMA, nodes)
        ext = _extension(path)
        if ext in YAML_EXT:
            return Classified(DocumentKind.SENTINEL_YAML)
        return Classified(_by_lines(text, ext, False))
    has_query_key = "query" in text and _QUERY_KEY.search(text) is not None
    if not has_query_key and _might_be_sigma(text) and _SIGMA_BODY.search(text) and _SIGMA_HEAD.search(text):
        return Classified(DocumentKind.SIGMA)
    return Classified(_by_lines(text, _extension(path), has_query_key))


def _extension(path: str) -> str:
    """`path`'s extension, lower-cased, only compared with the extensions above (a name ending
    in "." has none of them, as with PurePath, which cost several times as much per file).
    Asked only where the content did not decide: a Sigma file never needs it (splitext is three
    Python calls)."""
    return os.path.splitext(path)[1].lower() if path else ""


_K = "kK\u212a"
"""Every character whose `lower()` is `k` (the Kelvin sign too)."""


def _holds_kql(text: str) -> bool:
    """`"kql" in text.lower()`, found at each `q` or `Q` of the text (a rule file holds about
    one) instead of lower-casing a copy of the whole file.  Exact: the characters that lower-case
    to `q` or `l` are those letters in either case, those that do to `k` are `_K`, and the one
    character whose lower case is two characters (`\u0130`: `i` and a dot above) gives none
    of them."""
    for q in "qQ":
        at = text.find(q, 1)
        while at != -1:
            if text[at - 1] in _K and text[at + 1:at + 2] in ("l", "L"):
                return True
            at = text.find(q, at + 1)
    return False


def _might_be_sigma(text: str) -> bool:
    """Whether `_SIGMA_BODY` can match: one of its keys is in the text."""
    return "detection" in text or "correlation" in text or "filter" in text


def _yaml_mappings(text: str, source: Any = None,
                   encoded: bytes | None = None) -> tuple[list[Any], set[str]] | None:
    """The stream's document nodes and their top-level keys when the text is valid YAML
    whose documents are all mappings (at least one), else None.  Aliases stay shared:
    composing is linear."""
    global _yaml_tree
    if ":" not in text:  # no rule mapping without a colon (a bare query, most Markdown)
        return None
    if _yaml_tree is None:
        from rmmc.compiler.sigma import yaml_tree as _yaml_tree
    nodes, problems = _yaml_tree.compose_stream(text, source, encoded)
    if problems or not nodes:
        return None
    # one loop (a generator for `all` and a nested set comprehension were two frames and a
    # generator per file, for the one document a rule file holds)
    keys: set[str] = set()
    for node in nodes:
        if not _yaml_tree.is_mapping(node):
            return None
        keys.update(_yaml_tree.top_keys(node))
    return nodes, keys


def _by_lines(text: str, ext: str, has_query_key: bool) -> DocumentKind:
    """What is left when YAML did not decide: Sentinel YAML that is not valid YAML, Markdown,
    bare KQL."""
    fence = _FENCE.search(text) if "```" in text or "~~~" in text else None
    if has_query_key and fence is None:
        return DocumentKind.SENTINEL_YAML
    if fence is not None:
        if has_query_key and ext in YAML_EXT:
            return DocumentKind.SENTINEL_YAML
        if ext not in MARKDOWN_EXT and looks_like_kql(text[:fence.start()]):
            return DocumentKind.KQL   # a query with stray fences after it (a pasted extract)
        return DocumentKind.MARKDOWN
    if ext in MARKDOWN_EXT:
        return DocumentKind.MARKDOWN
    if ext in YAML_EXT:
        return DocumentKind.SENTINEL_YAML
    if ext in KQL_EXT:
        return DocumentKind.KQL
    if "#" in text and _HEADING.search(text):
        return DocumentKind.MARKDOWN
    return DocumentKind.KQL


def looks_like_kql(text: str) -> bool:
    """A cheap guess that a text holds a query rather than prose or a path."""
    if not text.strip():
        return False
    return bool(_KQL_HINTS.search(text)) or bool(_TABLE_ONLY.fullmatch(text.strip()))


fast_init(Classified)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
