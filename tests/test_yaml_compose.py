"""The compiled YAML composer (`rmmc/compiler/sigma/_yaml_compose.c`) against PyYAML's, which it
stands in for: every node's value, type, span, style and key spans, the duplicate-key warnings
and the errors must be the same whichever composed the stream.  Over the YAML of the shared
corpora (every SigmaHQ rule), rmmc's own rules and environments, tricky snippets, and texts
made by breaking SigmaHQ rules at random (most of which PyYAML refuses or reads oddly)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rmmc.compiler.diagnostics import LineIndex
from rmmc.compiler.documents.sniff import classify
from rmmc.compiler.sigma import yaml_tree

ROOT = Path(__file__).resolve().parent.parent

TRICKY = [
    "a: ''\nb: ~\nc: null\nd: Null\ne: yes\nf: No\ng: on\nh: OFF\ni: true\nj: 0x1F\nk: 0o17\n"
    "l: 017\nm: 1_000\nn: 1:20\no: -1.5e3\np: .inf\nq: -.NaN\nr: 2020-01-01\n"
    "s: 2001-12-14t21:59:43.10-05:00\nt: '1'\nu: \"true\"\nw: [1, '2', x, ~, {y: n}]\n",
    "x: |\n  text\n  more\ny: >-\n  folded\n  text\nz: 'it''s'\n",
    "'<<': quoted merge\n<<: {z: 1}\n",
    "=: value key\na: 1\n",
    "? [complex, key]\n: 1\n? {a: b}\n: 2\n",
    "y: &anchor 'x'\nz: *anchor\n",
    "v: !!str 12\n",
    "a: 1\na: 2\nb:\n  c: 1\n  c: 2\n",
    "a: 1\na: 2\n---\nb: 1\n---\nc: 1\nc: 2\nc: 3\n",  # (each document's own duplicates)
    "yes: 1\n1: 2\n~: 3\n1.5: 4\n",
    "a: b\n---\nc: d\n...\n---\n- e\n",
    "",
    "---\n",
    "a:\n- 1\n- [2, 3]\n-\n  b: c\n",
    "title: x\ndetection:\n  sel:\n    A|contains:\n      - 'x'\n      - \"y\\tz\"\n  condition: sel\n",
    "a: multi\n  line plain\nb: \"multi\n  line quoted\"\n",
    "a: [\n",
    "a: b: c\n",
    "\ufeffa: 1\n",
    "a: 1\r\nb: 2\r\n",
    "a: 1\rb: 2\n",
    "a: \u00e9t\u00e9\nb: \"\\u00e9\\x41\\U0001F600\"\n",
    "a: \"\\ud800\"\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: 1 # comment\n# only a comment\nb: 2\n",
    "a:\t1\n",
    "- " * 300 + "x\n",
    "[" * 250 + "]" * 250 + "\n",
]


def _snapshot(node, out: list) -> list:
    """Everything a reader can ask of a `Y` tree, in order."""
    if node is None:
        out.append(None)
        return out
    out.append((type(node.value).__name__, node.value if not isinstance(node.value, (dict, list)) else None,
                node.span, node.plain_style))
    if node.is_map:
        for key, child in node.value.items():
            out.append(("key", key, node.key_span(key)))
            _snapshot(child, out)
        out.append(("missing", node.key_span("no such key")))
        out.append(("with_value", node.with_value({}).span))
    elif node.is_list:
        for child in node.value:
            _snapshot(child, out)
    return out


def _read(text: str, fast: bool, monkeypatch) -> tuple:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(yaml_tree, "_fast", None)
        source = LineIndex(text)
        composed, compose_problems = yaml_tree.compose_stream(text, None)
        # what `sniff` reads of the nodes (it takes the keys as a set; the compiled composer's
        # keys are resolved, which changes no key sniff looks for)
        kinds = [yaml_tree.is_mapping(n) for n in composed]
        kinds.append((classify(text, "x.yml").kind, classify(text, "x.txt").kind))
        documents, problems = yaml_tree.load_stream(text, source)
        again, _ = yaml_tree.load_stream(text, source, composed if not compose_problems else None)
        trees = [(_snapshot(d.root, []), d.duplicates) for d in documents]
        assert [(_snapshot(d.root, []), d.duplicates) for d in again] == trees
        return kinds, compose_problems, trees, problems


def _fast_or_skip():
    if yaml_tree._fast is None:
        pytest.skip("the compiled composer rmmc.compiler.sigma._yaml_compose is not installed "
                    "(pip install -e . with libyaml-dev, or RMMC_PURE_PYTHON is set)")


def _compiled(text: str) -> bool:
    """Whether the compiled composer reads `text` itself (does not give way to PyYAML)."""
    return yaml_tree._fast.build(text.encode("utf-8", "surrogatepass"), yaml_tree.MAX_DEPTH,
                                 LineIndex(text), yaml_tree._resolved, yaml_tree._resolved.known,
                                 yaml_tree._RESOLVABLE_TABLE) is not None


def _agree(text: str, monkeypatch) -> bool:
    """Both composers read `text` alike; whether the compiled one read it (not gave way)."""
    assert _read(text, True, monkeypatch) == _read(text, False, monkeypatch), repr(text[:300])
    return _compiled(text)


@pytest.mark.parametrize("text", TRICKY)
def test_compiled_composer_agrees_on_tricky_texts(text, monkeypatch):
    _fast_or_skip()
    _agree(text, monkeypatch)


def test_compiled_composer_gives_way_where_it_must():
    """Anchors, aliases, tags, merge keys, complex keys, errors and too deep nesting go to
    PyYAML."""
    _fast_or_skip()
    for text in ("a: &x 1\n", "a: *x\n", "a: !!str 1\n", "a: !t 1\n", "a: [\n", "a: b: c\n",
                 "[" * 201 + "]" * 201, "<<: {a: 1}\n", "=: 1\n", "? [a]\n: 1\n", "? {a: b}\n: 1\n"):
        assert not _compiled(text), text
    for text in ("a: 1\n", "'<<': 1\n", "a: <<\n", "- =\n", "[" * 200 + "]" * 200):
        assert _compiled(text), text
    (document,), _ = yaml_tree.compose_stream("a: 1\nb: [x, 'y']\n", None)
    assert document.root.value["a"].value == 1 and document.root.value["a"]._node == ("1", 1, 0, 3, 0, 4)
    assert [y.value for y in document.root.value["b"].value] == ["x", "y"]
    assert document.root._node == (None, 11, 0, 0, 2, 0) and document.root._keys["b"] == ("b", 1, 1, 0, 1, 1)


def _yaml_files(shared: Path | None) -> list[Path]:
    roots = [ROOT / "rules", ROOT / "rmmc" / "environments"]
    if shared is not None:
        roots.append(shared / "corpus")
    files = []
    for root in roots:
        files += [p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file()]
    return sorted(files)


def test_compiled_composer_agrees_on_every_yaml_file(shared_dir: Path, monkeypatch):
    _fast_or_skip()
    files = _yaml_files(shared_dir)
    assert len(files) > 2400
    composed = 0
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        assert _read(text, True, monkeypatch) == _read(text, False, monkeypatch), path
        composed += _compiled(text)
    # the comparison is not PyYAML against itself (many RMM files are not valid YAML)
    assert composed > 0.9 * len(files)


_BREAKERS = [":", "-", " ", "  ", "\n", "'", '"', "#", "&a", "*a", "!", "|", ">", "[", "]", "{", "}",
             ",", "?", "%", "@", "`", "\t", "\\", "<<: ", "---\n", "...\n", "\u00e9", "- ", ": ", "\r"]


def test_compiled_composer_agrees_on_broken_rules(shared_dir: Path, monkeypatch):
    """SigmaHQ rules with random edits: whatever PyYAML makes of them (a tree, a warning, an
    error), the compiled composer gives the same or gives way to it."""
    _fast_or_skip()
    rules = sorted((shared_dir / "corpus" / "sigma" / "rules").rglob("*.yml"))
    if not rules:
        pytest.skip("shared/corpus/sigma not present")
    rng = random.Random(16)
    composed = tried = 0
    for path in rng.sample(rules, 150):
        text = path.read_text(encoding="utf-8")
        for _ in range(6):
            edited = text
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(edited) + 1)
                if rng.random() < 0.3:
                    edited = edited[:at] + edited[at + rng.randint(1, 4):]
                else:
                    edited = edited[:at] + rng.choice(_BREAKERS) + edited[at:]
            composed += _agree(edited, monkeypatch)
            tried += 1
    assert composed > tried // 3, (composed, tried)


def test_pure_python_switch_turns_the_compiled_composer_off():
    """`RMMC_PURE_PYTHON=1` runs PyYAML's composer alone (as where the extension is not built),
    and a rule reads the same."""
    import json
    import os
    import subprocess
    import sys

    rule = ("title: t\nlogsource: {product: windows, category: process_creation}\n"
            "detection:\n  sel:\n    Image|endswith: '\\\\x.exe'\n    CommandLine: [a, 'b']\n"
            "  condition: sel\n")
    script = ("import json, sys\nfrom rmmc.compiler.sigma import yaml_tree, reader\n"
              "rules, problems = reader.read_sigma_text(sys.stdin.read())\n"
              "print(json.dumps([yaml_tree._fast is None, repr(rules[0].rule), "
              "[str(d) for d in rules[0].diagnostics]]))\n")
    outcomes = []
    for pure in ("1", "0"):
        env = dict(os.environ, RMMC_PURE_PYTHON=pure)
        done = subprocess.run([sys.executable, "-c", script], input=rule, capture_output=True,
                              text=True, env=env, cwd=ROOT, check=True)
        outcomes.append(json.loads(done.stdout))
    assert outcomes[0][0] is True
    assert outcomes[0][1:] == outcomes[1][1:]
    if yaml_tree._fast is not None:
        assert outcomes[1][0] is False
