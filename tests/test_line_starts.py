"""The compiled line starts (`rmmc/compiler/_line_starts.c`) against `line_starts_python`, which
they stand in for in every `LineIndex`: the same tuple on every file of the corpora and on
generated texts (every kind of string Python stores: ASCII, Latin-1, two- and four-byte
characters; `\\r\\n`, lone `\\r`, other Unicode line breaks, which do not start a line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rmmc.compiler import diagnostics
from rmmc.compiler.diagnostics import LineIndex, line_starts_python

try:
    from rmmc.compiler._line_starts import starts as compiled_starts
except ImportError:  # pragma: no cover - not built
    compiled_starts = None


def _compiled():
    if compiled_starts is None:
        pytest.skip("the compiled line starts rmmc.compiler._line_starts are not installed "
                    "(pip install -e . with a C compiler)")
    return compiled_starts


EDGES = ["", "\n", "\n\n", "a", "a\n", "\na", "a\r\nb\r\n", "a\rb", "\ufeffa\nb",
         "é\nx", "€\n\n€", "😀\n😀x\n", "a\u2028b\u2029c\x85d\x0be\x0cf\n", "\x00\n\x00"]


@pytest.mark.parametrize("text", EDGES)
def test_edges(text):
    assert _compiled()(text) == line_starts_python(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "\n", "\r", "\r\n", "é", "€", "😀", " ", "\u2028", "\x85"]),
                max_size=60).map("".join))
def test_generated(text):
    assert _compiled()(text) == line_starts_python(text)


def test_corpora(corpus_texts: list[tuple[Path, str]]):
    """Every file of the shared corpora, as read (UTF-8 text)."""
    starts = _compiled()
    for path, text in corpus_texts:
        assert starts(text) == line_starts_python(text), path
    assert len(corpus_texts) > 2000


def test_not_a_string():
    with pytest.raises(TypeError):
        _compiled()(b"a\nb")


def test_line_index_uses_them():
    """LineIndex's starts are what either gives, positions and line texts follow from them."""
    index = LineIndex("ab\r\ncd\n\nef")
    assert index.starts == line_starts_python(index.text) == (0, 4, 7, 8)
    assert index.position(5) == (2, 2)
    assert index.line_text(1) == "ab" and index.line_text(4) == "ef"
    if compiled_starts is not None:
        assert diagnostics.line_starts is compiled_starts


def test_pure_python_runs_without_them():
    """RMMC_PURE_PYTHON=1 (as where the extension is not built): the Python starts, same index."""
    script = ("from rmmc.compiler import diagnostics as d; "
              "print(d.line_starts is d.line_starts_python, d.LineIndex('a\\nb\\r\\nc').starts)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env=dict(os.environ, RMMC_PURE_PYTHON="1"))
    assert done.stdout.split() == ["True", "(0,", "2,", "5)"]


def test_slotted_line_index_behaves_as_the_dataclass_did():
    """LineIndex is slotted with its own `__init__` (each file read makes one): built from its
    text alone, equal and hashed by the text, frozen, copied by `replace` and pickled (results
    come back from worker processes) with its starts."""
    import dataclasses
    import pickle

    index = LineIndex("a\nb\r\nc")
    assert not hasattr(index, "__dict__")
    assert index == LineIndex(text="a\nb\r\nc") and hash(index) == hash(LineIndex("a\nb\r\nc"))
    assert index != LineIndex("a\nb")
    assert repr(index) == "LineIndex(text='a\\nb\\r\\nc')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        index.text = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(index)).starts == index.starts == (0, 2, 5)
    assert dataclasses.replace(index, text="x\ny").starts == (0, 2)
    assert [f.name for f in dataclasses.fields(LineIndex)] == ["text", "starts"]
