"""A YAML stream as values that remember where they are in the file.

Sigma rules are strict YAML, so this is a thin layer over PyYAML's composer (the C one when
libyaml is there: it is several times faster): each document becomes a tree of `Y` nodes, a
mapping's keys keep their own spans, and scalars are resolved the way `yaml.safe_load` would
resolve them, except that timestamps stay text (Sigma dates are read as written).  A YAML
error comes back as a located message, never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Span, error, warning

try:  # the C composer when PyYAML was built with libyaml
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - pure-Python PyYAML
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class Y:
    """One YAML node: `value` is a dict (str -> Y), a list of Y, or a plain scalar.
    `span` (computed when asked: most are never needed) is where the node sits; `key_span`
    where a mapping's key does.  `plain_style` says a scalar was written unquoted on one line
    (so a column inside it is a column in the file)."""

    __slots__ = ("value", "_node", "_source", "_keys")

    def __init__(self, value: Any, node: Any, source: LineIndex, keys: dict[str, Any] | None = None):
        self.value = value
        self._node = node
        self._source = source
        self._keys = keys

    @property
    def plain_style(self) -> bool:
        node = self._node
        return (isinstance(node, yaml.ScalarNode) and not node.style
                and node.start_mark.line == node.end_mark.line)

    @property
    def span(self) -> Span:
        return _node_span(self._node, self._source)

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> "Y | None":
        return self.value.get(key) if isinstance(self.value, dict) else None

    def key_span(self, key: str) -> Span:
        node = self._keys.get(key) if self._keys else None
        return _node_span(node, self._source) if node is not None else self.span

    def with_value(self, value: Any) -> "Y":
        """The same place holding another value (a mapping with some keys left out)."""
        return Y(value, self._node, self._source, self._keys)


@dataclass(frozen=True)
class YamlDocument:
    """One document of the stream: its root node (None for an empty document)."""

    root: Y | None
    duplicates: tuple[Diagnostic, ...] = ()


def load_stream(text: str, source: LineIndex) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Every document of a YAML stream, or the first YAML error, located."""
    documents: list[YamlDocument] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            duplicates: list[Diagnostic] = []
            root = _convert(node, source, duplicates)
            documents.append(YamlDocument(root, tuple(duplicates)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = _mark_span(mark, source) if mark is not None else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return documents, [error(f"not valid YAML: {problem}{context}", span, "sigma-yaml")]
    except yaml.YAMLError as exc:
        return documents, [error(f"not valid YAML: {exc}", None, "sigma-yaml")]
    except RecursionError:
        return documents, [error("YAML nesting is too deep", None, "sigma-yaml")]
    return documents, []


def _mark_span(mark: Any, source: LineIndex) -> Span:
    line = min(mark.line, len(source.starts) - 1)
    offset = source.starts[line] + mark.column
    return Span(offset, offset, line + 1, mark.column + 1)


def _node_span(node: yaml.Node, source: LineIndex) -> Span:
    start = _mark_span(node.start_mark, source)
    end = _mark_span(node.end_mark, source)
    return Span(start.offset, max(start.offset, end.offset), start.line, start.column)


def _convert(node: yaml.Node, source: LineIndex, duplicates: list[Diagnostic]) -> Y:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Y] = {}
        keys: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            key_text = "" if key is None else str(key)
            if key_text in out:
                duplicates.append(warning(
                    f"duplicate key {key_text!r}: the last one is used (as YAML loaders do)",
                    _node_span(key_node, source), "sigma-duplicate-key"))
            out[key_text] = _convert(value_node, source, duplicates)
            keys[key_text] = key_node
        return Y(out, node, source, keys)
    if isinstance(node, yaml.SequenceNode):
        return Y([_convert(item, source, duplicates) for item in node.value], node, source)
    return Y(_scalar(node), node, source)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag = node.tag
    if tag == _STR:
        return node.value
    if tag == _NULL:
        return None
    if tag in (_INT, _FLOAT, _BOOL):
        return _CONSTRUCTOR.construct_object(node, deep=True)
    if tag.startswith("tag:yaml.org,2002:"):  # timestamps, binary ...: kept as written
        return node.value
    return node.value  # an application tag: the text


def plain(node: Y | None) -> Any:
    """The node as plain Python values (what `yaml.safe_load` gives, timestamps as text)."""
    if node is None:
        return None
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [plain(v) for v in node.value]
    return node.value


def walk(node: Y) -> Iterator[Y]:
    """Every node under `node`, itself first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current.value, dict):
            stack.extend(current.value.values())
        elif isinstance(current.value, list):
            stack.extend(current.value)
