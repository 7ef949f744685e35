"""The per-file glue's shortcuts, each against what it stands in for: reading a regular file in
one `read` when fstat's size is right (every SigmaHQ file, and files that grew, shrank or are
too large), the blank-file test without stripping the text, the rule-file walk's names and
extensions without `os.path.join` / `splitext`, a backend found in `sys.modules`, the caret
line of a printable source line, the slot-storing `__init__` of the per-rule classes, and the
read Sigma rule taken out of each translated document instead of a copy without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmmc.compiler import documents, render
from rmmc.compiler.diagnostics import LineIndex, Span, error


def _read(path: Path, size: int | None = None) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return documents._read_regular(fd, os.fstat(fd).st_size if size is None else size)
    finally:
        os.close(fd)


def test_one_read_gives_every_sigmahq_file_whole(shared_dir: Path) -> None:
    rules = shared_dir / "corpus" / "sigma" / "rules"
    if not rules.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    paths = sorted(rules.rglob("*.yml"))
    assert len(paths) > 1000
    for path in paths:
        assert _read(path) == path.read_bytes(), path


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 500])
def test_a_size_fstat_got_wrong_still_reads_the_whole_file(tmp_path: Path, size: int) -> None:
    """As if the file grew (size too small) or shrank (too large) between fstat and read."""
    path = tmp_path / "rule.kql"
    path.write_bytes(b"0123456789")
    assert _read(path, size) == b"0123456789"


def test_a_file_larger_than_the_limit_reads_one_byte_past_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(documents, "MAX_BYTES", 16)
    path = tmp_path / "big.kql"
    path.write_bytes(b"x" * 100)
    for size in (0, 10, 16, 17, 100, 200):
        assert _read(path, size) == b"x" * 17
    assert documents.read_path(path).diagnostics[0].code == "doc-too-large"


def test_blank_test_agrees_with_strip() -> None:
    """`not body or body.isspace()` is `not body.strip()` for every character."""
    for code in range(0x3100):
        for text in (chr(code), chr(code) * 3, " " + chr(code), chr(code) + "\n"):
            assert (not text or text.isspace()) == (not text.strip()), hex(code)
    for text in ("", "\ufeff", "\ufeff \n", "\ufeff\ufeff", " \t\r\n\x0b\x0c\x1c\u2028\u3000"):
        code = documents.read_text(text, "t.kql").diagnostics[0].code
        assert code == "doc-empty", repr(text)
    assert documents.read_text("\ufeff x", "t.kql").documents


def _walk_in_full(root: str) -> list[str]:
    """`documents._walk` as written with `os.path.join` and `os.path.splitext`."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in documents.SKIP_DIRS)
        for name in sorted(filenames):
            if name == "rmmc.yml" and directory == root:
                continue
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in documents.RULE_EXTENSIONS:
                found.append(os.path.join(directory, name))
    return found


def test_the_walk_finds_what_join_and_splitext_find(tmp_path: Path, shared_dir: Path) -> None:
    names = ["a.", "a.b.YML", "noext", ".hidden.yml", "x..kql", "y.kql.", "z.Md", "rmmc.yml",
             "w.yaml", "v.txt.bak", "u.csl", "..kql", "t.KQL"]
    for folder in ("", "sub", "sub/deep", "other"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (tmp_path / folder / name).write_text("T")
    for root in (str(tmp_path), str(tmp_path) + "/", str(tmp_path) + "//", str(tmp_path / "sub")):
        assert list(documents._walk(root)) == _walk_in_full(root), root
    assert len(_walk_in_full(str(tmp_path))) == 4 * 7 - 1
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        for root in (".", "sub", "./sub/"):
            assert list(documents._walk(root)) == _walk_in_full(root), root
    finally:
        os.chdir(here)
    rules = shared_dir / "corpus" / "sigma" / "rules"
    if rules.is_dir():
        assert list(documents._walk(str(rules))) == _walk_in_full(str(rules))


def test_a_loaded_backend_is_the_one_import_module_gives() -> None:
    from importlib import import_module

    from rmmc import backends

    for target, (module, function) in backends._BACKENDS.items():
        assert backends.backend(target) is getattr(import_module(module), function)


_LINE_CHARS = st.sampled_from(list("ab \t\x1b\x00\x7f\u00e9\u200b\u2028\U0001f600\ufeff~-"))


@settings(max_examples=400, deadline=None)
@given(st.text(_LINE_CHARS, min_size=1, max_size=12), st.integers(1, 14), st.integers(0, 4))
def test_the_caret_line_is_drawn_as_in_full(line: str, column: int, width: int) -> None:
    """A printable line is shown as it is, with a space under each character before the caret."""
    source = LineIndex("x\n" + line + "\n")
    offset = source.offset_of(2, min(column, len(line) + 1))
    diagnostic = error("m", Span(offset, offset + width, *source.position(offset))).with_path("p")
    text = render.render_text(diagnostic, source)
    if not line.strip():
        assert "\n" not in text
        return
    span = diagnostic.span
    prefix = "".join("\t" if ch == "\t" else " " * len(render._printable(ch)) for ch in line[: span.column - 1])
    shown = render._printable(line)
    assert text.split("\n", 1)[1] == f"    {shown}\n    {prefix}^" + "~" * (
        max(1, min(span.end - span.offset, len(line) - (span.column - 1))) - 1)


def _glue_classes():
    from rmmc.backends.base import EmitOptions, Translation
    from rmmc.compiler.diagnostics import Diagnostic
    from rmmc.compiler.documents.model import FalsePositiveScenario, RuleDocument
    from rmmc.compiler.documents.result import FileResult
    from rmmc.compiler.documents.sniff import Classified
    from rmmc.compiler.pipeline import Compiled
    from rmmc.compiler.sigma.yaml_tree import YamlDocument
    from rmmc.translation import RuleTranslation

    return [RuleDocument, FalsePositiveScenario, FileResult, Classified, Compiled, YamlDocument,
            RuleTranslation, EmitOptions, Translation, Diagnostic]


def _dataclass_twin(cls):
    """The class as `dataclasses` writes it (frozen, slotted), without `fast_init`."""
    import dataclasses

    fields = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory,
                                                 compare=f.compare, repr=f.repr, kw_only=f.kw_only))
              for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, slots=True)


@pytest.mark.parametrize("index", range(10))
def test_per_rule_classes_get_the_slot_storing_init_with_the_same_parameters(index: int) -> None:
    """Documents, results, options and diagnostics get `slots_init.fast_init`'s `__init__`
    (a default factory included): the same parameters and defaults as `dataclasses`' own, the
    same fields set, a new default-factory value per object, and they still pickle (worker
    processes send results back) and refuse assignment."""
    import dataclasses
    import inspect
    import pickle

    cls = _glue_classes()[index]
    assert cls.__init__.__code__.co_name != "__init__"  # slots_init's
    twin = _dataclass_twin(cls)
    ours = list(inspect.signature(cls.__init__).parameters.values())
    theirs = list(inspect.signature(twin.__init__).parameters.values())
    assert [(p.name, p.kind) for p in ours] == [(p.name, p.kind) for p in theirs]
    fields = dataclasses.fields(cls)
    required = [f for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    values = {f.name: object() for f in required}
    made, expected = cls(**values), twin(**values)
    assert [getattr(made, f.name) for f in fields] == [getattr(expected, f.name) for f in fields]
    again = cls(**values)
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(again, f.name) is not getattr(made, f.name)
    everything = {f.name: f"value of {f.name}" for f in fields}
    assert dataclasses.astuple(cls(**everything)) == dataclasses.astuple(twin(**everything))
    copied = pickle.loads(pickle.dumps(cls(**everything)))
    assert copied == cls(**everything)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, None)
    with pytest.raises(TypeError):
        cls(*values.values(), *([None] * (len(fields) + 1)))


def test_translate_file_drops_the_read_rule_as_a_copy_did(shared_dir: Path) -> None:
    """`translate_file` takes the read Sigma rule out of each document's own metadata instead
    of copying the document and its result without it: the same results, on SigmaHQ files
    (every 7th)."""
    from rmmc.compiler.documents.sigma_yaml import SIGMA_KEY
    from rmmc.compiler.fast_replace import replace
    from rmmc.translation import translate_document, translate_file

    def as_copied(path: str):
        results = [translate_document(doc, "splunk") for doc in documents.read_path(path).documents]
        return [replace(r, document=replace(r.document, metadata={k: v for k, v in r.document.metadata.items()
                                                                  if k != SIGMA_KEY}))
                if r.document is not None and SIGMA_KEY in r.document.metadata else r for r in results]

    rules = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    if not rules.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    paths = sorted(rules.rglob("*.yml"))[::7]
    assert len(paths) > 300
    for path in paths:
        now = translate_file(str(path), "splunk")
        assert now == as_copied(str(path)), path
        assert all(SIGMA_KEY not in r.document.metadata for r in now if r.document is not None)


def _stageless_rules(shared_dir: Path) -> list:
    """Every compiled SigmaHQ Windows rule (every 3rd file) without stages or union."""
    from rmmc.compiler.pipeline import compile_document

    rules = shared_dir / "corpus" / "sigma" / "rules" / "windows"
    if not rules.is_dir():
        pytest.skip("shared/corpus/sigma not present")
    found = []
    for path in sorted(rules.rglob("*.yml"))[::3]:
        for doc in documents.read_path(str(path)).documents:
            rule = compile_document(doc).rule
            if rule is not None and not rule.stages and rule.union is None:
                found.append(rule)
    assert len(found) > 500
    return found


def test_a_rule_without_stages_is_refused_as_the_retry_would_refuse_it(shared_dir: Path) -> None:
    """`_without_output_columns` gives a rule without stages or union back refused at once:
    the retry it skips (`_dropping_output_columns`) finds no column to drop in any of them, so
    it tries nothing and gives back the same refusal."""
    from rmmc import translation

    refused = object()
    for rule in _stageless_rules(shared_dir):
        tried = []

        def attempt(candidate):
            tried.append(candidate)
            return refused

        assert translation._dropping_output_columns(rule, "splunk", attempt, refused, "x") is refused
        assert translation._without_output_columns(rule, "splunk", attempt, refused, "x") is refused
        assert not tried


_KQL_ALPHABET = ["k", "K", "\u212a", "q", "Q", "l", "L", "\u0130", "x", "\n", "é"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_KQL_ALPHABET), max_size=12).map("".join))
def test_holds_kql_is_kql_in_the_lower_cased_text(text: str) -> None:
    """`sniff._holds_kql` (the hunt marker's pre-check, at each q) against the lower-cased
    copy it stands in for, on texts of the letters that lower-case to k, q or l."""
    from rmmc.compiler.documents.sniff import _holds_kql

    assert _holds_kql(text) == ("kql" in text.lower())


def test_holds_kql_on_the_corpora(corpus_texts: list[tuple[Path, str]]) -> None:
    from rmmc.compiler.documents.sniff import _holds_kql

    seen = {True: 0, False: 0}
    for path, text in corpus_texts:
        held = _holds_kql(text)
        assert held == ("kql" in text.lower()), path
        seen[held] += 1
    assert seen[True] > 10 and seen[False] > 2000


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["error", "warning", "note"]), st.text(max_size=5),
       st.none() | st.builds(Span, st.integers(0, 9), st.integers(0, 9), st.integers(1, 9), st.integers(1, 9)),
       st.text(max_size=4), st.none() | st.text(max_size=4), st.none() | st.text(max_size=3),
       st.none() | st.text(max_size=4))
def test_with_path_is_replace(severity, message, span, code, path, subject, new_path) -> None:
    """`Diagnostic.with_path` (made directly) against `dataclasses.replace` it stands in for."""
    import dataclasses

    from rmmc.compiler.diagnostics import Diagnostic, Severity

    d = Diagnostic(Severity(severity), message, span, code, path, subject)
    made, replaced = d.with_path(new_path), dataclasses.replace(d, path=new_path)
    assert made == replaced and made.__class__ is replaced.__class__
    assert made.subject is replaced.subject and made.path == new_path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["error", "warning", "note"]), max_size=6))
def test_has_error_is_any_is_error(severities) -> None:
    """`diagnostics.has_error` (a loop) against the `any` over a generator it stands in for."""
    from rmmc.compiler.diagnostics import Diagnostic, Severity, has_error

    found = [Diagnostic(Severity(s), s) for s in severities]
    assert has_error(found) == any(d.is_error for d in found) == has_error(iter(found))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["error", "warning", "note"]),
                          st.sampled_from(["lossy", "loose", "shape", "x"]),
                          st.none() | st.just("given.yml"), st.none() | st.just("subject")),
                max_size=4),
       st.booleans())
def test_located_is_what_adapting_and_emitting_did(specs, allow_lossy) -> None:
    """`translation._located` (one way for the diagnostics of adapting and of emitting, nothing
    copied for none) against the two ways it replaces: adapting's refused lossy warnings, then
    added the path; emitting's added the path, then refused lossy warnings."""
    from rmmc.backends.base import EmitOptions
    from rmmc.compiler.diagnostics import Diagnostic, Severity, refuse_lossy
    from rmmc.translation import _located

    found = tuple(Diagnostic(Severity(s), f"m {code}", None, code, path, subject)
                  for s, code, path, subject in specs)
    options = EmitOptions(allow_lossy=allow_lossy)
    relaxed = refuse_lossy(list(found)) if not allow_lossy else list(found)
    adapting = [d if d.path else d.with_path("file.yml") for d in relaxed]
    said = [d if d.path else d.with_path("file.yml") for d in found]
    emitting = said if allow_lossy else refuse_lossy(said)
    located = _located(found, "file.yml", options)
    for before in (adapting, emitting):
        assert located == before
        assert [d.subject for d in located] == [d.subject for d in before]
        assert [d.path for d in located] == [d.path for d in before]


_PATHS = st.sampled_from(["a.yml", "b.yml"])


@settings(max_examples=300, deadline=None)
@given(_PATHS, st.lists(_PATHS, max_size=2),
       st.lists(st.tuples(_PATHS, st.lists(_PATHS, max_size=2)), max_size=3), _PATHS)
def test_file_result_about_is_the_generators_it_replaces(path, diagnostic_paths, documents_, asked) -> None:
    """`FileResult._about` (loops) against the `all` over generators it replaces in `with_path`."""
    from rmmc.compiler.documents.model import DocumentKind, RuleDocument
    from rmmc.compiler.documents.result import FileResult

    source = LineIndex("q")
    docs = tuple(RuleDocument(doc_path, DocumentKind.KQL, "q", (0,), source,
                              warnings=tuple(error("w").with_path(p) for p in warnings))
                 for doc_path, warnings in documents_)
    result = FileResult(path, docs, tuple(error("d").with_path(p) for p in diagnostic_paths))
    before = (result.path == asked and all(d.path == asked for d in result.diagnostics)
              and all(doc.path == asked and all(w.path == asked for w in doc.warnings)
                      for doc in result.documents))
    assert result._about(asked) == before
    assert (result.with_path(asked) is result) == before


def _read_both_ways(data: bytes, path: str) -> None:
    """`read_bytes` hands the composer the file's own bytes; `read_text` of the decoded text
    (no bytes) lets it encode the text again, as it did for every file before: the same
    result."""
    assert documents.read_bytes(data, path) == documents.read_text(data.decode("utf-8"), path), path


def test_the_read_bytes_reach_the_composer_unchanged(shared_dir: Path) -> None:
    """On the corpora (SigmaHQ every 3rd file, the rmm and KQL corpora whole)."""
    corpus = shared_dir / "corpus"
    if not corpus.is_dir():
        pytest.skip("shared/corpus not present")
    paths = sorted((corpus / "sigma" / "rules" / "windows").rglob("*.yml"))[::3]
    paths += sorted(p for p in (corpus / "rmm").rglob("*") if p.is_file())
    paths += sorted(p for p in (corpus / "kql").rglob("*") if p.is_file())
    read = 0
    for path in paths:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if b"\x00" not in data:
            _read_both_ways(data, str(path))
            read += 1
    assert read > 1000


_YAML_PIECES = ["title: a\n", "detection:\n", "  sel:\n", "    Image|endswith: 'é\u2028x'\n",
                "  condition: sel\n", "logsource: {product: windows}\n", "query: |\n  T | take 1\n",
                "\ufeff", "\r", "\r\n", "\n", "- x\n", "&a b: *a\n", "---\n", "é: ü\n", "\t", "  "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_YAML_PIECES), max_size=10).map("".join))
def test_the_read_bytes_reach_the_composer_unchanged_on_generated_texts(text: str) -> None:
    """Texts of Sigma and Sentinel pieces, with BOMs, lone carriage returns (read as line
    breaks: then the text is no longer what the bytes say, and the composer gets none),
    non-ASCII characters, anchors."""
    _read_both_ways(text.encode("utf-8"), "gen.yml")


def _yaml_mappings_as_before(text: str):
    """`sniff._yaml_mappings` as it was written: `all` over a generator, a set comprehension."""
    from rmmc.compiler.sigma import yaml_tree

    if ":" not in text:
        return None
    nodes, problems = yaml_tree.compose_stream(text, None)
    if problems or not nodes or not all(yaml_tree.is_mapping(n) for n in nodes):
        return None
    return {key for node in nodes for key in yaml_tree.top_keys(node)}


def _keys_now(text: str):
    from rmmc.compiler.documents.sniff import _yaml_mappings

    found = _yaml_mappings(text)
    return None if found is None else found[1]


def test_yaml_mappings_loop_is_the_generators_it_replaces(shared_dir: Path) -> None:
    corpus = shared_dir / "corpus"
    if not corpus.is_dir():
        pytest.skip("shared/corpus not present")
    paths = sorted((corpus / "sigma" / "rules" / "windows").rglob("*.yml"))[::3]
    paths += sorted(p for p in (corpus / "rmm").rglob("*") if p.is_file())
    seen = {True: 0, False: 0}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        before = _yaml_mappings_as_before(text)
        assert _keys_now(text) == before, path
        seen[before is None] += 1
    assert seen[True] > 10 and seen[False] > 500


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_YAML_PIECES + ["---\n- a\n", "--- x\n", "...\n"]), max_size=10).map("".join))
def test_yaml_mappings_loop_on_generated_streams(text: str) -> None:
    """Streams of several documents, some not mappings, some empty."""
    assert _keys_now(text) == _yaml_mappings_as_before(text)


_STREAM = """\
title: Base
name: base_rule
id: 6f1d2c7e-0000-4000-8000-000000000002
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        CommandLine|contains: evil
    condition: selection
---
title: Other
name: other_rule
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image|endswith: '\\\\x.exe'
    condition: selection
---
title: Many evil
correlation:
    type: event_count
    rules: [base_rule, other_rule]
    generate: true
    group-by: [User]
    timespan: 1h
    condition:
        gte: 10
"""


@pytest.mark.parametrize("to", ["sigma", "splunk", "kql", "esql"])
def test_translate_file_drops_each_read_rule_once_translated(tmp_path: Path, to: str) -> None:
    """`translate_file` takes each document's read rule out right after translating it (one
    loop), not after translating them all: a stream whose correlation names the rules before
    it translates as each document translated on its own (the read rules refer to each other,
    not to the documents' metadata)."""
    from rmmc.compiler.documents.sigma_yaml import SIGMA_KEY
    from rmmc.compiler.fast_replace import replace
    from rmmc.translation import translate_document, translate_file

    path = tmp_path / "stream.yml"
    path.write_text(_STREAM, encoding="utf-8")
    every = [translate_document(doc, to) for doc in documents.read_path(str(path)).documents]
    assert len(every) == 3 and sum(bool(r.text) for r in every) >= 2
    expected = [replace(r, document=replace(r.document, metadata={
        k: v for k, v in r.document.metadata.items() if k != SIGMA_KEY})) for r in every]
    assert translate_file(str(path), to) == expected


_CODES = ["lossy", "shape", "loose", "unsupported", "note", "sigma-yaml"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["error", "warning", "note"]), st.sampled_from(_CODES)),
                max_size=5), st.booleans())
def test_verdict_and_the_lossy_count_loops_are_the_any_they_replace(specs, text) -> None:
    """`RuleTranslation.verdict` and the summary's `_refused_as_lossy` (loops) against the
    generator `any` expressions they stand in for."""
    from rmmc.cli import _refused_as_lossy
    from rmmc.compiler.diagnostics import Diagnostic, Severity
    from rmmc.translation import EXACT, LOSSY, LOSSY_CODES, REFUSED, RuleTranslation

    diagnostics = tuple(Diagnostic(Severity(s), "m", None, c) for s, c in specs)
    r = RuleTranslation(None, "splunk", "q" if text else "", diagnostics)
    before = (REFUSED if not r.ok else
              LOSSY if any(d.code in LOSSY_CODES for d in diagnostics) else EXACT)
    assert r.verdict == before
    assert _refused_as_lossy(diagnostics) == any(d.code == "lossy" and d.is_error for d in diagnostics)
