"""A YAML stream as values that remember where they are in the file.

Sigma rules are strict YAML, so this is a thin layer over libyaml's parser: rmmc's compiled
composer (`_yaml_compose.c`, optional) builds the tree from its events, and PyYAML's composer
(the C one when PyYAML has libyaml) does for anything else and wherever that is not built;
each document becomes a tree of `Y` nodes, a
mapping's keys keep their own spans, and scalars are resolved the way `yaml.safe_load` would
resolve them, except that timestamps stay text (Sigma dates are read as written); `<<` merge
keys are applied as the safe loader applies them.  What the safe loader would not give is
bounded or refused: tags it does not know (a warning), nesting deeper than MAX_DEPTH, aliases
expanding far past the text's size (an alias bomb), lone surrogates.  A YAML error comes back
as a located message, never as an exception.
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, Span, error, warning
from rmmc.compiler.slots_init import fast_init

try:  # the C composer when PyYAML was built with libyaml
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - pure-Python PyYAML
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

if os.environ.get("RMMC_PURE_PYTHON", "") not in ("", "0"):  # PyYAML alone (tests compare)
    _fast = None
else:
    try:  # the Y tree built from libyaml's events in C (optional: built by setup.py where
        # libyaml's headers are; `tests/test_yaml_compose.py` compares it with PyYAML's path)
        from rmmc.compiler.sigma import _yaml_compose as _fast  # type: ignore[attr-defined]
    except ImportError:
        _fast = None
    else:
        if getattr(_fast, "LAYOUT", None) != 4:  # built from other source
            _fast = None

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _lean_resolver(loader: type) -> Any:
    """`Resolver.resolve` as PyYAML's safe loader runs it, made cheap: the composer asks it
    for every node (160,000 times over the SigmaHQ rules), and PyYAML's method looks up path
    resolvers (none here), builds two lists and concatenates them each time.  The implicit
    resolvers are PyYAML's own (read from `loader` once, in its order), so the tags are the
    same (`tests/test_yaml_tree.py` compares them with the stock loader's)."""
    wildcard = tuple(loader.yaml_implicit_resolvers.get(None, ()))
    table = {first: tuple(found) + wildcard
             for first, found in loader.yaml_implicit_resolvers.items() if first is not None}
    lookup, scalar, sequence = table.get, yaml.ScalarNode, yaml.SequenceNode
    text, seq, mapping = loader.DEFAULT_SCALAR_TAG, loader.DEFAULT_SEQUENCE_TAG, loader.DEFAULT_MAPPING_TAG

    def resolve(kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is scalar:
            if implicit[0]:
                for tag, regexp in lookup(value[:1], wildcard):
                    if regexp.match(value):
                        return tag
            return text
        return seq if kind is sequence else mapping

    return resolve


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader (the C one when there) with the lean resolver.  No path resolvers
    are ever added, so descending into and out of a node has nothing to record: the composer's
    two calls per node go to C built-ins that do nothing (`operator.is_` takes the two
    arguments, `tuple` none) instead of Python methods that return at once."""

    resolve = staticmethod(_lean_resolver(_BaseLoader))
    descend_resolver = staticmethod(operator.is_)
    ascend_resolver = staticmethod(tuple)


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


class _TupleY(Y):
    """A `Y` whose node is one of `_yaml_compose`'s tuples (text or items, style or kind,
    start line, start column, end line, end column): the same span and style as the PyYAML
    node it stands for."""

    __slots__ = ()

    @property
    def plain_style(self) -> bool:
        node = self._node
        return node[1] == 1 and node[2] == node[4]

    @property
    def span(self) -> Span:
        return _fast.span(self._node, self._source.starts)

    def key_span(self, key: str) -> Span:
        node = self._keys.get(key) if self._keys else None
        return _fast.span(node, self._source.starts) if node is not None else self.span

    def with_value(self, value: Any) -> "Y":
        return _TupleY(value, self._node, self._source, self._keys)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One document of the stream: its root node (None for an empty document) and the
    warnings found while reading it (duplicate keys, tags the safe loader does not know)."""

    root: Y | None
    duplicates: tuple[Diagnostic, ...] = ()


MAX_DEPTH = 200
"""Mappings and lists nested deeper than this are refused (real rules nest less than 10)."""
MIN_NODES = 10_000
NODES_PER_CHAR = 4
"""Aliases may repeat a node, so a small text can stand for a huge tree (an "alias bomb":
nine anchors of nine aliases each, eight deep, are 43 million nodes from 460 bytes).  A text
without aliases has fewer nodes than characters; a stream may expand to MIN_NODES +
NODES_PER_CHAR per character before it is refused."""

# The tags PyYAML's safe loader constructs (what pySigma reads rules with); any other tag makes
# it refuse the document.
_SAFE_TAGS = frozenset("tag:yaml.org,2002:" + t for t in (
    "null", "bool", "int", "float", "binary", "timestamp", "omap", "pairs", "set", "str", "seq",
    "map", "merge", "value"))
_MERGE = "tag:yaml.org,2002:merge"
_SCALAR = yaml.ScalarNode
_VALUE = "tag:yaml.org,2002:value"  # a `=` key, which flatten_mapping reads as text
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """The stream cannot be read into a tree: too deep, too large, or not text."""

    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.message = message
        self.node = node


def compose_stream(text: str, source: LineIndex | None, encoded: bytes | None = None
                   ) -> tuple[list[Any], list[Diagnostic]]:
    """The root node of each non-empty document (aliases still shared), or the first YAML
    error, located in `source` (when given).  Cheap: the document kind is decided on this
    (`documents.sniff`).  Where the compiled composer (`_yaml_compose`) reads the stream
    (no anchors, aliases, tags, merge keys or errors) these are already `load_stream`'s
    documents, built with `source` (or the text's own LineIndex); else PyYAML's nodes.
    `is_mapping` and `top_keys` read either.  `encoded`: `text`'s UTF-8 bytes, when the
    caller decoded it from them (the compiled composer reads those)."""
    if _fast is not None:
        data = encoded
        if data is None:
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: PyYAML says what it says
                pass
        if data is not None:
            lines = source if source is not None else LineIndex(text)
            built = _fast.build(data, MAX_DEPTH, lines, _resolved, _resolved.known, _RESOLVABLE_TABLE)
            if built is not None:
                return _built_documents(built, lines), []
    return _compose_pyyaml(text, source)


def is_mapping(node: Any) -> bool:
    """Whether a node of `compose_stream` is a mapping."""
    if node.__class__ is YamlDocument:
        return node.root.is_map
    return isinstance(node, yaml.MappingNode)


def top_keys(node: Any) -> list[str]:
    """The texts of a mapping node's scalar keys (of `compose_stream`'s either kind; the
    compiled composer's are resolved, `yes` read as 'True', which only changes keys that are
    no Sigma or Sentinel key)."""
    if node.__class__ is YamlDocument:
        return list(node.root.value)
    return [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]


def _compose_pyyaml(text: str, source: LineIndex | None) -> tuple[list[Any], list[Diagnostic]]:
    """`compose_stream` by PyYAML (the reference; the only way for anchors, tags, errors)."""
    nodes: list[Any] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is not None:
                nodes.append(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = _mark_span(mark, source) if mark is not None and source is not None else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return nodes, [error(f"not valid YAML: {problem}{context}", span, "sigma-yaml")]
    except yaml.YAMLError as exc:
        return nodes, [error(f"not valid YAML: {exc}", None, "sigma-yaml")]
    except RecursionError:
        return nodes, [error("YAML nesting is too deep", None, "sigma-yaml")]
    return nodes, []


def load_stream(text: str, source: LineIndex, composed: list[Any] | None = None
                ) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Every document of a YAML stream as `Y` trees (merge keys applied as PyYAML's safe
    loader applies them), or the first problem, located: a YAML error, nesting deeper than
    MAX_DEPTH, aliases expanding past the budget, a lone surrogate.  `composed`: the stream's
    nodes when `compose_stream` already read them."""
    if composed is None:
        composed, problems = compose_stream(text, source)
        if problems:
            return [], problems
    if composed and composed[0].__class__ is YamlDocument:  # the compiled composer's
        return composed, []
    documents: list[YamlDocument] = []
    budget = [MIN_NODES + NODES_PER_CHAR * len(text)]
    for node in composed:
        notes: list[Diagnostic] = []
        try:
            root = _convert(node, source, notes, budget, 0)
        except _Refused as exc:
            return documents, [error(exc.message, _node_span(exc.node, source), "sigma-yaml")]
        except RecursionError:
            return documents, [error("YAML nesting is too deep", _node_span(node, source), "sigma-yaml")]
        documents.append(YamlDocument(root, tuple(notes)))
    return documents, []


def _mark_span(mark: Any, source: LineIndex) -> Span:
    line = min(mark.line, len(source.starts) - 1)
    offset = source.starts[line] + mark.column
    return Span(offset, offset, line + 1, mark.column + 1)


def _node_span(node: yaml.Node, source: LineIndex) -> Span:
    """`_mark_span` of the start, ending at the end mark (never before the start); one Span
    made instead of three (every detection item's key asks for one)."""
    starts = source.starts
    last = len(starts) - 1
    start, end = node.start_mark, node.end_mark
    line = start.line if start.line < last else last
    offset = starts[line] + start.column
    end_offset = starts[end.line if end.line < last else last] + end.column
    return Span(offset, end_offset if end_offset > offset else offset, line + 1, start.column + 1)


class _Always:
    """Holds everything (`_RESOLVABLE` when a resolver looks at every scalar)."""

    def __contains__(self, item: object) -> bool:
        return True


_ALWAYS = _Always()


def _tuple_span(node: tuple, source: LineIndex) -> Span:
    """`_node_span` of a `_yaml_compose` tuple (its marks at 2..5).  `_yaml_compose.span`
    computes the same in C (what `_TupleY` asks; `tests/test_yaml_speedups.py` compares both on
    every node of the corpora)."""
    starts = source.starts
    last = len(starts) - 1
    line = node[2] if node[2] < last else last
    offset = starts[line] + node[3]
    end_offset = starts[node[4] if node[4] < last else last] + node[5]
    return Span(offset, end_offset if end_offset > offset else offset, line + 1, node[3] + 1)


def _built_documents(built: tuple[list[Y], list[tuple[int, tuple, str]]], source: LineIndex
                     ) -> list[YamlDocument]:
    """`load_stream`'s documents from `_yaml_compose.build`: its roots, and a warning for each
    duplicate key it found.  What `_convert` checks on PyYAML's nodes cannot happen there: the
    compiled composer gives way to PyYAML for tags (so no unknown tag), aliases (so no alias
    bomb: a stream without them has at most about two nodes per character, far within the
    budget), merge keys, mappings or lists as keys, nesting deeper than MAX_DEPTH, and text
    that is not strict UTF-8 (so no lone surrogate)."""
    roots, duplicates = built
    notes: dict[int, list[Diagnostic]] = {}  # (a document's index -> its warnings; most: none)
    for index, key_node, key_text in duplicates:
        notes.setdefault(index, []).append(warning(
            f"duplicate key {key_text!r}: the last one is used (as YAML loaders do)",
            _tuple_span(key_node, source), "sigma-duplicate-key"))
    documents = []
    for index, root in enumerate(roots):  # (a loop: a comprehension is a call of its own)
        documents.append(YamlDocument(root, tuple(notes.get(index, ()))))
    return documents


def _resolve_plain() -> Any:
    """A plain scalar's value as the safe loader gives it (timestamps as text, as `_scalar`
    keeps them): the lean resolver's tag, then PyYAML's own constructor for that tag."""
    resolve = _Loader.resolve
    constructors = _CONSTRUCTOR.yaml_constructors
    typed = {_INT, _FLOAT, _BOOL}
    known: dict[str, Any] = {}  # text -> value: the same keys and words recur in every rule
    missing = known  # (a value no text resolves to)

    def resolved(text: str) -> Any:
        value = known.get(text, missing)
        if value is not missing:
            return value
        tag = resolve(_SCALAR, text, (True, False))
        if tag == _NULL:
            value = None
        elif tag in typed:  # (values of immutable types: one may be shared)
            value = constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, text))
        else:
            value = text
        if len(known) > 8192:
            known.clear()
        known[text] = value
        return value

    resolved.known = known  # type: ignore[attr-defined]  # (read by `_yaml_compose.build`)
    return resolved


_resolved = _resolve_plain()
# The first characters some implicit resolver is registered for ('' is the empty scalar):
# a plain scalar starting otherwise is text, with no resolver to ask (PyYAML looks its
# resolvers up by the first character the same way).  All of them if one is registered for
# any first character (None), which the safe loader has not.
_RESOLVABLE = (frozenset(k for k in _BaseLoader.yaml_implicit_resolvers if k is not None)
               if not _BaseLoader.yaml_implicit_resolvers.get(None) else _ALWAYS)
# The same for `_yaml_compose.build`: a flag per ASCII character, then the empty scalar's,
# then any other first character's.
_RESOLVABLE_TABLE = bytes([chr(c) in _RESOLVABLE for c in range(128)]
                          + ["" in _RESOLVABLE, any(len(k) == 1 and not k.isascii() for k in _RESOLVABLE)
                             or _RESOLVABLE is _ALWAYS])
if _fast is not None:
    _fast.set_node_class(_TupleY)
    _fast.set_span_class(Span)


def _convert(node: yaml.Node, source: LineIndex, notes: list[Diagnostic], budget: list[int],
             depth: int) -> Y:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Refused("YAML aliases expand this stream to more nodes than its size allows "
                       f"({MIN_NODES:,} + {NODES_PER_CHAR} per character): refused (an alias bomb?)",
                       node)
    if depth > MAX_DEPTH:
        raise _Refused(f"YAML nesting is too deep (more than {MAX_DEPTH} levels)", node)
    tag = node.tag
    if tag not in _SAFE_TAGS:
        notes.append(warning(f"tag {node.tag!r} is not a YAML type the safe loader knows (pySigma "
                             "refuses the file): read as plain YAML", _node_span(node, source),
                             "sigma-yaml-tag"))
    if isinstance(node, yaml.ScalarNode):  # most nodes: the plain text case first
        value = node.value if tag == _STR else _scalar(node)
        if isinstance(value, str) and not value.isascii():
            _check_text(value, node)
        return Y(value, node, source)
    if isinstance(node, yaml.MappingNode):
        own = None  # the keys written here, not merged in (None: all of them)
        for k, _ in node.value:  # (a loop, not any(): no generator per mapping)
            if k.tag == _MERGE or k.tag == _VALUE:
                break
        else:
            k = None
        if k is not None:
            own = {id(k) for k, _ in node.value if k.tag != _MERGE}
            try:  # `<<` merge keys, by PyYAML's own code: pySigma loads rules with it
                _CONSTRUCTOR.flatten_mapping(node)
            except yaml.constructor.ConstructorError as exc:
                raise _Refused(f"YAML merge key: {exc.problem}", node) from None
        out: dict[str, Y] = {}
        keys: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value if key_node.tag == _STR else _scalar(key_node)
                key_text = "" if key is None else str(key)
                if not key_text.isascii():
                    _check_text(key_text, key_node)
            else:
                key_text = ""
            if key_text in out and (own is None or (id(key_node) in own and id(keys[key_text]) in own)):
                notes.append(warning(
                    f"duplicate key {key_text!r}: the last one is used (as YAML loaders do)",
                    _node_span(key_node, source), "sigma-duplicate-key"))
            # A later key wins, in the first one's place (as in the dict PyYAML builds).
            if value_node.__class__ is _SCALAR and value_node.tag == _STR and budget[0] > 0 \
                    and depth < MAX_DEPTH:  # the commonest node, as `_convert` reads it, inline
                budget[0] -= 1
                text = value_node.value
                if not text.isascii():
                    _check_text(text, value_node)
                out[key_text] = Y(text, value_node, source)
            else:
                out[key_text] = _convert(value_node, source, notes, budget, depth + 1)
            keys[key_text] = key_node
        return Y(out, node, source, keys)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for item in node.value:
            if item.__class__ is _SCALAR and item.tag == _STR and budget[0] > 0 and depth < MAX_DEPTH:
                budget[0] -= 1
                text = item.value
                if not text.isascii():
                    _check_text(text, item)
                items.append(Y(text, item, source))
            else:
                items.append(_convert(item, source, notes, budget, depth + 1))
        return Y(items, node, source)
    value = _scalar(node)
    if isinstance(value, str):
        _check_text(value, node)
    return Y(value, node, source)


def _check_text(text: str, node: yaml.Node) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        raise _Refused(f"U+{ord(found.group()):04X} is half of a UTF-16 surrogate pair: not a "
                       "character, and YAML text cannot hold it", node)


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
    value = node.value
    # (a Y's collection is a plain dict or list: both composers and `with_value`'s callers
    # make them so; a scalar child is its value, looked at without a call; loops, as a
    # comprehension is a call of its own: every rule's tags, references ... come here)
    if value.__class__ is dict:
        out = {}
        for k, v in value.items():
            child = v.value
            out[k] = child if child.__class__ not in _COLLECTIONS else plain(v)
        return out
    if value.__class__ is list:
        items = []
        for v in value:
            child = v.value
            items.append(child if child.__class__ not in _COLLECTIONS else plain(v))
        return items
    return value


_COLLECTIONS = (dict, list)


def plain_mapping(node: Y, leave_out: str) -> dict[str, Any]:
    """`plain(node)` of a mapping node without the key `leave_out` (a rule's metadata: every
    key but its detection, which is read as nodes), without building that key's value."""
    out = {}
    for k, v in node.value.items():
        if k != leave_out:
            child = v.value
            out[k] = child if child.__class__ not in _COLLECTIONS else plain(v)
    return out


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


fast_init(YamlDocument)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
