"""Shortcuts on the way a rule file is read, each against what it stands in for: the lean YAML
resolver against PyYAML's own safe loader (every node's tag, on tricky scalars and on every
SigmaHQ rule), the hunt-marker pre-check against the marker's own regex."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rmmc.compiler.sigma import yaml_tree

try:
    from yaml import CSafeLoader as StockLoader
except ImportError:  # pragma: no cover - pure-Python PyYAML
    from yaml import SafeLoader as StockLoader  # type: ignore[assignment]

TRICKY = """\
a: ''
b: ~
c: null
d: Null
e: yes
f: No
g: on
h: OFF
i: true
j: 0x1F
k: 0o17
l: 017
m: 1_000
n: 1:20
o: -1.5e3
p: .inf
q: -.NaN
r: 2020-01-01
s: 2001-12-14t21:59:43.10-05:00
t: '1'
u: "true"
v: !!str 12
w: [1, '2', x, ~, {y: n}]
x: |
  text
'<<': quoted merge
<<: {z: 1}
=: value key
? [complex, key]
: 1
y: &anchor 'x'
z: *anchor
"""


def _tags(node, out: list) -> list:
    out.append((type(node).__name__, node.tag, node.value if isinstance(node, yaml.ScalarNode) else None))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _tags(key, out)
            _tags(value, out)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _tags(item, out)
    return out


def _all_tags(text: str, loader) -> list:
    return [_tags(node, []) for node in yaml.compose_all(text, Loader=loader)]


@pytest.mark.parametrize("base", sorted({StockLoader, yaml.SafeLoader}, key=str))
def test_lean_resolver_tags_tricky_scalars_as_pyyaml_does(base):
    class Lean(base):
        resolve = staticmethod(yaml_tree._lean_resolver(base))
        descend_resolver = yaml_tree._Loader.descend_resolver
        ascend_resolver = yaml_tree._Loader.ascend_resolver

    assert _all_tags(TRICKY, Lean) == _all_tags(TRICKY, base)
    values = {k.value: v.tag.rsplit(":", 1)[1] for k, v in next(yaml.compose_all(TRICKY, Loader=Lean)).value
              if isinstance(k, yaml.ScalarNode)}
    assert values["a"] == values["t"] == "str" and values["b"] == values["c"] == "null" and values["e"] == values["g"] == "bool"
    assert values["j"] == values["n"] == "int" and values["p"] == "float" and values["t"] == "str"


def test_lean_resolver_tags_every_sigmahq_rule_as_pyyaml_does(shared_dir: Path):
    rules = shared_dir / "corpus" / "sigma" / "rules"
    if not rules.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    files = sorted(rules.rglob("*.yml"))
    assert len(files) > 2000
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert _all_tags(text, yaml_tree._Loader) == _all_tags(text, StockLoader), path


def test_hunt_marker_precheck_misses_no_marker():
    """`classify` looks for the hunt marker only in texts holding `kql` once lower-cased: every
    character the marker's `(?i)` letters match lower-cases to that letter (the Kelvin sign too),
    so no marker is missed."""
    import re

    from rmmc.compiler.documents.model import DocumentKind
    from rmmc.compiler.documents.sniff import _HUNT_MARKER, classify

    for letter in "kql":
        pattern = re.compile("(?i)" + letter)
        assert all(chr(c).lower() == letter for c in range(0x110000) if pattern.fullmatch(chr(c)))
    body = "\n- Scenario: a\n\nDeviceProcessEvents | take 1\n"
    for marker in ("KQL Query", "## kql query:", "\u212aQL Query", "**KqL Query**"):
        assert _HUNT_MARKER.search(marker + body)
        assert classify(marker + body, "x.txt").kind is DocumentKind.HUNT, marker


def _nodes(y, out: list) -> list:
    """Every node tuple of a compiled composer's tree (keys' too)."""
    out.append(y._node)
    if isinstance(y.value, dict):
        out.extend(y._keys.values())
        for child in y.value.values():
            _nodes(child, out)
    elif isinstance(y.value, list):
        for child in y.value:
            _nodes(child, out)
    return out


def test_compiled_spans_are_the_python_spans_of_every_node(shared_dir: Path):
    """`_yaml_compose.span` gives every node of every SigmaHQ rule (and of texts whose nodes
    end past the last line start, or on CR line breaks) the Span `_tuple_span` computes."""
    if yaml_tree._fast is None:
        pytest.skip("the compiled composer is not installed")
    from rmmc.compiler.diagnostics import LineIndex, Span

    texts = ["a: 1", "a: [x, y]", "a:\r  b: c\r", "\ufeffa: 1\n", "- a\n- b: |\n    x\n    y\n",
             "a: 'x\n\n  y'\nb: c\n\n\n"]
    rules = shared_dir / "corpus" / "sigma" / "rules"
    if rules.is_dir():
        texts += [p.read_text(encoding="utf-8") for p in sorted(rules.rglob("*.yml"))]
    compared = 0
    for text in texts:
        source = LineIndex(text)
        composed, problems = yaml_tree.compose_stream(text, source)
        if problems or not composed or not isinstance(composed[0], yaml_tree.YamlDocument):
            continue
        for document in composed:
            for node in _nodes(document.root, []):
                fast = yaml_tree._fast.span(node, source.starts)
                assert type(fast) is Span and fast == yaml_tree._tuple_span(node, source), (text[:80], node)
                compared += 1
    assert compared > 50
