"""The Splunk writer's speed-ups of issue 16 (the writing layer), each against what it replaces:
the same SPL and the same diagnostics, in the same order, over random detections and the
shared corpora.  The replaced code is kept here, as it was, to compare with.

* `Emitter.search` finds whether search can say a condition while writing it (None when it
  cannot), instead of `searchable` walking it first; it checks and quotes a predicate's
  values once over the values joined (`_search_values`) instead of value by value (`quote`);
* `_nnf` keeps an And / Or nothing below changed instead of building it again;
* the detection of a rule with no exclusion applied is its condition (`_detection`), not
  `all_of` of it alone; `_check_prefix` is memoised; the backend registry keeps each emit
  function once imported (`backends.backend`);
* the networks of a `cidr` test are parsed once per text (`base._network`) and each written
  once (`_network_literal`);
* `prefilter._predicate` stops at the first value with no needle when any value's test would
  do (the emoji rule: 3,700 values, none writable);
* `Emitter.field` remembers the names found safe across rules (`_SAFE_NAMES`);
* `Emitter.alternation` takes the needles `needle` made of the values instead of folding them
  again;
* the backend registry does not look for the constructs over several sources (`ir.features`)
  in a rule for a backend that declares it writes every one (`backends._handles_all`);
* `emit_adapted` copies the options with each rule's placement through `base.placed_options`,
  which remembers the copies it made;
* `Emitter.numeric` writes an int value as its repr without asking `number` (what it gives),
  and its test of the values so written is remembered (`_numeric_test`);
* `_split_terms` writes a where conjunct's prefilter with `search` alone (None: search cannot
  say it), not asking `searchable` first: its fields are the conjunct's, named already;
* `expr.eval_name` remembers the names it wrote;
* a rule that is one source's detection of plain tests (`_settled`) skips `features`,
  `push_filters`, `with_paths` and `_late_feed_tests`, which give it back as it is; and its
  detection is known to be `_plain_tests` (written at once) without a second look, and one
  holding no Not (`_PLAIN_NNF`) is not put into negation normal form (it is its own).
"""

from __future__ import annotations

import random
import string
from contextlib import contextmanager
from pathlib import Path

import pytest

from rmmc import backends
from rmmc.backends.base import EmitOptions
from rmmc.backends.splunk import backend
from rmmc.compiler import ir
from rmmc.compiler.ir import And, Const, Field, InSubquery, Not, Op, Or, Predicate, all_of, any_of
from tests.test_splunk_speedups import _compiled_corpus

# ------------------------------------------------------------------ what the speed-ups replace


def _matches_empty(p: Predicate) -> bool:
    if p.op in (Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.EQUALS):
        return any(str(v) == "" for v in p.values)
    return True


def _old_searchable(self, node) -> bool:
    if isinstance(node, (And, Or)):
        return all(_old_searchable(self, o) for o in node.operands)
    if not isinstance(node, Predicate):
        return False
    p = node
    if isinstance(p.field, backend.PathField):
        self.paths.setdefault(p.field.name, p.field)
    return (isinstance(p.field, Field) and p.field.name not in self.columns
            and p.field.type == "string" and p.op in backend._SEARCH_OPS and not p.case_sensitive
            and bool(p.values) and not _matches_empty(p)
            and all(isinstance(v, str) and v.isascii() and "*" not in v and not backend.has_control(v)
                    for v in p.values))


def _old_search_text(self, node) -> str:
    if isinstance(node, (And, Or)):
        word = " AND " if isinstance(node, And) else " OR "
        return "(" + word.join(_old_search_text(self, o) for o in node.operands) + ")"
    p = node
    name = self.field(p.field.name, p.span)
    pattern = {Op.EQUALS: "{}", Op.CONTAINS: "*{}*", Op.STARTSWITH: "{}*", Op.ENDSWITH: "*{}"}[p.op]
    values = [backend.quote(pattern.format(v)) for v in p.values]
    if len(values) == 1:
        text = f"{name}={values[0]}"
    elif p.all_values:
        text = "(" + " AND ".join(f"{name}={v}" for v in values) + ")"
    else:
        text = f"{name} IN ({', '.join(values)})"
    return f"NOT {text}" if p.negated else text


def _old_search(self, node):
    """`search` as `searchable` then the old writer: the whole condition asked first."""
    return _old_search_text(self, node) if _old_searchable(self, node) else None


def _old_nnf(node, positive=True):
    if isinstance(node, Not):
        return _old_nnf(node.operand, not positive)
    if isinstance(node, Predicate):
        return node if positive else node.negate()
    if isinstance(node, ir.Compare):
        return node if positive else ir.Compare(node.left, backend._COMPLEMENT[node.op], node.right, node.span)
    if isinstance(node, InSubquery):
        return node if positive else backend.replace(node, negated=not node.negated)
    if isinstance(node, Const):
        return Const(node.value == positive)
    if isinstance(node, (And, Or)):
        parts = [_old_nnf(o, positive) for o in node.operands]
        if isinstance(node, And) == positive:
            return Const(False) if Const(False) in parts else all_of(parts)
        return Const(True) if Const(True) in parts else any_of(parts)
    raise TypeError(f"not expected here: {node!r}")


def _old_alternation(self, p, x, needles=None):
    """`alternation` as it was: each value read and folded again (the needles passed ignored)."""
    from rmmc.compiler.evaluator import fold_to_ascii, is_term_char

    groups = {}
    for v in p.values:
        value = str(v)
        if not p.case_sensitive:
            value = fold_to_ascii(value)
        head, tail = backend._EDGES[p.op]
        start = head if head != "term" else ("(^|[^0-9A-Za-z])" if value and is_term_char(value[0]) else "")
        end = tail if tail != "term" else ("($|[^0-9A-Za-z])" if value and is_term_char(value[-1]) else "")
        groups.setdefault((start, end), []).append(backend.regex_literal(value))
    flags = "" if p.case_sensitive else "(?i)"
    return [f"match({x}, {backend.regex_string(flags + start + (ls[0] if len(ls) == 1 else '(?:' + '|'.join(ls) + ')') + end)})"
            for (start, end), ls in groups.items()]


def _old_split_terms(emitter, condition, in_nnf=False):
    """`_split_terms` asking whether search can say a conjunct's prefilter before writing it."""
    if not in_nnf:
        condition = backend._nnf(condition)
    conjuncts = list(condition.operands) if isinstance(condition, And) else [condition]
    search_terms, where_terms = [], []
    for c in conjuncts:
        if c.__class__ is Const and c == backend._TRUE:
            continue
        term = emitter.search(c)
        if term is not None:
            search_terms.append(term)
            continue
        where_terms.append(emitter.where(c))
        prefilter = backend.superset(c, backend._search_char)
        if (prefilter.__class__ is not Const or not prefilter.value) and emitter.searchable(prefilter):
            term = emitter.search(prefilter)
            if term not in search_terms:
                search_terms.append(term)
    return search_terms, where_terms


def _old_detection(rule, options, found):
    return ir.all_of([rule.condition, *backend._exclusions(rule, options, found)]), True


@contextmanager
def _replaced(monkeypatch):
    """The writer with every speed-up of this file replaced by what it stands in for."""
    with monkeypatch.context() as m:
        m.setattr(backend.Emitter, "searchable", _old_searchable)
        m.setattr(backend.Emitter, "search", _old_search)
        m.setattr(backend, "_nnf", _old_nnf)
        m.setattr(backend, "_detection", _old_detection)
        m.setattr(backend, "_split_terms", _old_split_terms)
        m.setattr(backend, "_numeric_test", backend._numeric_test.__wrapped__)
        m.setattr(backend.Emitter, "alternation", _old_alternation)
        m.setattr(backend, "_settled", lambda rule: False)
        m.setattr(backend, "_plain_tests", lambda condition: False)  # (the path through widening)
        m.setattr(backends, "_handles_all", lambda module: False)
        yield


def _outcome(run):
    try:
        return run()
    except Exception as exc:  # what the replaced path raises, the new one must raise
        return type(exc), str(exc)


def _both(monkeypatch, run):
    ours = _outcome(run)
    with _replaced(monkeypatch):
        theirs = _outcome(run)
    return ours, theirs


# ------------------------------------------------------------------ random detections

_FIELDS = [Field("CommandLine"), Field("Image"), Field("EventID", "long"), Field("NoSuchColumn"),
           Field("bad name|x"), Field("Amount", "real"), Field("Bag", "dynamic")]
_FIELD_WEIGHTS = [8, 8, 2, 2, 0.2, 1, 1]
_TEXTS = ["cmd.exe", "a*b", "C:\\Windows\\", "", "\u00e9t\u00e9", "tab\there", 'x"y', "\\\"", "a b", "ÄB",
          "123", "-enc ", "\x00", "~!@#$%^&()_+{}|:<>?`-=[]\\;',./", "\x7f", "10.0.0.0/8"]
_PLAIN_TEXTS = ["cmd.exe", "\\rundll32.exe", "-enc ", 'say "hi"', "C:\\", "whoami"]
_OPS = [Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM, Op.REGEX, Op.EXISTS, Op.CIDR, Op.GT]
_OP_WEIGHTS = [4, 4, 2, 2, 1, 1, 0.5, 0.2, 0.5]


def _value(rng: random.Random):
    pick = rng.random()
    if pick < 0.5:
        return rng.choice(_PLAIN_TEXTS)
    if pick < 0.8:
        return rng.choice(_TEXTS)
    if pick < 0.93:
        return "".join(rng.choice(string.printable + "\x01\u00e9*") for _ in range(rng.randint(0, 6)))
    return rng.choice([1, 4688, 2.5, True, None])


def _predicate(rng: random.Random) -> Predicate:
    field, op = rng.choices(_FIELDS, _FIELD_WEIGHTS)[0], rng.choices(_OPS, _OP_WEIGHTS)[0]
    return Predicate(field, op, tuple(_value(rng) for _ in range(rng.randint(0, 4))),
                     all_values=rng.random() < 0.2, case_sensitive=rng.random() < 0.15, negated=rng.random() < 0.3)


def _condition(rng: random.Random, depth: int):
    pick = rng.random()
    if depth <= 0 or pick < 0.4:
        return _predicate(rng) if rng.random() < 0.97 else Const(rng.random() < 0.5)
    operands = tuple(_condition(rng, depth - 1) for _ in range(rng.randint(1, 4)))
    if pick < 0.7:
        return And(operands)
    return Or(operands) if pick < 0.92 else Not(operands[0])


def test_random_detections_written_as_before(monkeypatch):
    """Random detections (values search cannot quote: `*`, control and non-ASCII characters,
    '', numbers; unmapped and unsafe names; nested and one-operand And / Or, constants): the
    same SPL and diagnostics (or the same exception) as with the replaced code."""
    rng = random.Random(16)
    searched = 0
    for i in range(2000):
        exclusions = () if i % 3 else (ir.Exclusion("fp", "x", condition=_condition(rng, 1)), ir.Exclusion("unread"))
        rule = ir.Rule(ir.Metadata(title=f"r{i}"), ir.Source("DeviceProcessEvents"), _condition(rng, rng.randint(0, 3)),
                       exclusions=exclusions)
        options = EmitOptions(apply_exclusions=i % 2 == 0)
        for fields in ("defender", "cim"):
            ours, theirs = _both(monkeypatch, lambda: backend.emit_splunk(rule, options, fields=fields))
            assert ours == theirs, rule.condition
            searched += not isinstance(ours, tuple) and '="' in ours.text.split("\n")[0]
    assert searched > 600  # search terms were written


def test_search_values_as_checked_value_by_value():
    """`_search_values` (over the values joined) against the per-value test it replaces."""
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(0, 130)] + ["\u00e9", "\u212a", "\u2028"]

    def value_by_value(values):
        return bool(values) and not any(str(v) == "" for v in values) and all(
            isinstance(v, str) and v.isascii() and "*" not in v and not backend.has_control(v) for v in values)

    for _ in range(20000):
        values = tuple("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))) if rng.random() < 0.95
                       else rng.choice([0, 1.5, None, False]) for _ in range(rng.randint(0, 3)))
        assert backend._search_values(values) == value_by_value(values), values


@pytest.mark.parametrize("corpus, env", [("sigma/rules/windows", "splunk-sysmon"), ("sigma/rules/windows", "splunk-cim"),
                                         ("rmm", "splunk-sysmon"), ("kql", "splunk-defender")])
def test_corpora_translate_to_splunk_as_before(monkeypatch, shared_dir: Path, corpus: str, env: str):
    """Every rule of the shared corpora to Splunk: the same text and diagnostics as with the
    replaced code."""
    from rmmc.translation import translate_compiled

    compiled = _compiled_corpus(shared_dir / "corpus" / corpus)
    if not compiled:
        pytest.skip(f"{shared_dir / 'corpus' / corpus} not found")
    for c in compiled:
        ours, theirs = _both(monkeypatch, lambda: translate_compiled(c, "splunk", env=env))
        if isinstance(ours, tuple):
            assert ours == theirs, c.document.path
            continue
        assert (ours.text, ours.diagnostics) == (theirs.text, theirs.diagnostics), c.document.path


def test_check_prefix_memoised_as_checked_each_time():
    """`_check_prefix` remembers what it returned (a refusal is raised again each time)."""
    check = backend._check_prefix.__wrapped__
    prefixes = ["index=edr sourcetype=x", "`sysmon`", "`m(a, b)` index=x", "a | b", "`bad|`", "x\x01", " y ", "[z]"]
    for _ in range(2):
        for prefix in prefixes:
            for macros in (False, True):
                assert _outcome(lambda: backend._check_prefix(prefix, macros)) == _outcome(lambda: check(prefix, macros))


def test_backend_registry_gives_each_emit_function_as_importing_it():
    from importlib import import_module

    from rmmc import backends

    for target, (module, name) in backends._BACKENDS.items():
        assert backends.backend(target) is getattr(import_module(module), name)
        assert backends.backend(target) is backends.backend(target)
    from rmmc.backends.splunk import backend as splunk_module

    original = splunk_module.emit_splunk
    try:  # what the module holds when asked (a patched function too), as importing it gave
        splunk_module.emit_splunk = lambda *a, **k: None
        assert backends.backend("splunk") is splunk_module.emit_splunk
    finally:
        splunk_module.emit_splunk = original
    with pytest.raises(ValueError, match="unknown target"):
        backends.backend("nope")


def _normalized(rng: random.Random, depth: int):
    """A random detection as the readers build them (`all_of` / `any_of`), now and then with a
    test on a path or a computed subject, a constant or a subquery."""
    pick = rng.random()
    if depth <= 0 or pick < 0.35:
        odd = rng.random()
        if odd < 0.03:
            return Predicate(ir.Call("tolower", (Field("Image"),), "string"), Op.EQUALS, ("x",))
        if odd < 0.06:
            bag = Field("AdditionalFields", "dynamic")
            return Predicate(ir.Call("tostring", (ir.Call("member", (bag, ir.Literal("x")), "dynamic"),), "string"),
                             Op.EQUALS, ("v",))
        if odd < 0.08:
            return InSubquery(Field("Image"), "T | project Image", table="T")
        return _predicate(rng)
    operands = [_normalized(rng, depth - 1) for _ in range(rng.randint(1, 4))]
    if pick < 0.7:
        return all_of(operands)
    return any_of(operands) if pick < 0.93 else Not(operands[0])


def test_plain_tests_are_what_the_skipped_steps_give_back(shared_dir: Path):
    """Of a `_plain_tests` detection, `simplify`, `paths_as_fields` and `subqueries` give back
    the condition itself and nothing found, and a `_settled` rule is what `push_filters`,
    `with_paths` and `_late_feed_tests` give back, the same object, with no `features`: on
    random detections (normalized or not) and on every rule of the corpora."""
    from rmmc.compiler.paths import paths_as_fields, with_paths
    from rmmc.compiler.pushdown import push_filters
    from rmmc.compiler.rewrite import simplify

    def check(rule: ir.Rule) -> bool:
        condition = rule.condition
        if backend._plain_tests(condition):
            assert simplify(condition) is condition
            in_nnf = not any(isinstance(node, Not) for node in ir.walk(condition))
            assert backend._plain_tests(condition) is (backend._PLAIN_NNF if in_nnf else backend._PLAIN)
            assert (backend._nnf(condition) is condition) == in_nnf  # (what `_split_terms` skips)
            assert paths_as_fields(condition) == (condition, []) and paths_as_fields(condition)[0] is condition
            assert ir.subqueries(condition) == []
        if not backend._settled(rule):
            return False
        assert ir.features(rule) == {}
        assert push_filters(rule) is rule and with_paths(rule)[0] is rule and backend._late_feed_tests(rule) == (rule, [])
        return True

    rng = random.Random(24)
    settled = 0
    for i in range(3000):
        condition = _normalized(rng, rng.randint(0, 3)) if i % 2 else _condition(rng, rng.randint(0, 3))
        settled += check(ir.Rule(ir.Metadata(), ir.Source("DeviceProcessEvents"), condition))
    corpus_settled = 0
    for corpus in ("sigma/rules/windows", "rmm", "kql"):
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            corpus_settled += check(compiled.rule)
    assert settled > 500 and corpus_settled > 1000


def test_random_rules_as_readers_build_them_written_as_before(monkeypatch):
    """Normalized random detections (where `_settled` holds most often), with and without a
    filter stage: the same SPL and diagnostics as through every step the shortcut skips."""
    rng = random.Random(25)
    for i in range(1500):
        condition = _normalized(rng, rng.randint(0, 3))
        stages = (ir.Filter(_normalized(rng, 1)),) if i % 4 == 0 else ()
        rule = ir.Rule(ir.Metadata(title=f"r{i}"), ir.Source("DeviceProcessEvents"), condition, stages=stages)
        ours, theirs = _both(monkeypatch, lambda: backend.emit_splunk(rule, EmitOptions(), fields="defender"))
        assert ours == theirs, rule


def test_printable_ascii_but_writes_a_text_as_each_character():
    """`PrintableAsciiBut.writes` (the string's C tests) against asking it of each character,
    and `superset` with it against `superset` with the same test as a plain function (which
    goes character by character), on random texts and detections."""
    from rmmc.compiler.prefilter import PrintableAsciiBut, printable_ascii, superset

    rng = random.Random(9)
    alphabet = [chr(c) for c in range(0, 130)] + ["\u00e9", "\u212a", "\u017f", "\u2028"]
    writables = [printable_ascii, backend._search_char, PrintableAsciiBut(""), PrintableAsciiBut("ab\\")]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
        for w in writables:
            assert w.writes(text) == all(w(ch) for ch in text), (w, text)
    for i in range(3000):
        condition = _condition(rng, rng.randint(0, 3))
        for w in writables:
            assert superset(condition, w) == superset(condition, lambda ch, w=w: w(ch)), condition


def test_networks_remembered_as_parsed_and_written_each_time():
    """`cidr_networks` (through the remembered `_network`) gives what `ip_network(strict=False)`
    gives, and raises the same refusal each time for a text that is no network; each network
    is written as `quote(str(network))`."""
    import ipaddress

    from rmmc.backends.base import cidr_networks

    texts = ["10.0.0.0/8", "10.1.2.3/8", "::ffff:0:0/96", "fe80::1/10", "192.168.0.1", "2001:db8::/32",
             "10.0.0.0/33", "nope", "", "::1"]
    for _ in range(2):
        for text in texts:
            p = Predicate(Field("IpAddress"), Op.CIDR, (text,))
            ours = _outcome(lambda: cidr_networks(p))
            try:
                theirs = [ipaddress.ip_network(text, strict=False)]
            except ValueError as exc:
                refusal = ValueError(f"{text!r} is not an IP network (cidr on IpAddress): {exc}", None)
                assert ours == (ValueError, str(refusal))
                continue
            assert ours == theirs and [type(n) for n in ours] == [type(n) for n in theirs]
            assert backend._network_literal(ours[0]) == backend.quote(str(theirs[0]))


def _old_prefilter_predicate(p, writable):
    """`prefilter._predicate` as it was: every value's needle first."""
    from rmmc.compiler import prefilter as pf

    if p.negated or not pf._plain_field(p) or not p.values:
        return pf._TRUE
    if not all(isinstance(v, str) for v in p.values):
        return pf._TRUE
    if p.op is Op.REGEX:
        if not p.case_sensitive:
            return pf._TRUE
        tests = [pf._needle(Op.CONTAINS, pf.regex_literal(v), writable) for v in p.values]
    else:
        op = pf._TO_CONTAINS.get(p.op, p.op)
        if op not in pf._PLAIN:
            return pf._TRUE
        tests = [pf._needle(op, v, writable) for v in p.values]
    if p.all_values:
        return all_of([Predicate(p.field, o, (n,), span=p.span) for o, n in tests if n])
    if any(not n for _, n in tests):
        return pf._TRUE
    ops = {o for o, _ in tests}
    if len(ops) == 1:
        return Predicate(p.field, ops.pop(), tuple(dict.fromkeys(n for _, n in tests)), span=p.span)
    return any_of([Predicate(p.field, o, (n,), span=p.span) for o, n in tests])


def test_prefilter_stops_at_a_value_without_needle_as_computing_them_all(monkeypatch, shared_dir: Path):
    """`superset` with the `_predicate` that stops early against the one computing every needle,
    on random detections (regexes, values with no writable run) and every rule of the corpora,
    for two writables."""
    from rmmc.compiler import prefilter as pf

    rng = random.Random(31)
    regexes = ["a.b", "[jJ]ava", "^x$", "(", "\\x", "😀+"]
    conditions = []
    for _ in range(3000):
        condition = _condition(rng, rng.randint(0, 3))
        if rng.random() < 0.3:
            condition = all_of([condition, Predicate(Field("CommandLine"), Op.REGEX, tuple(rng.sample(regexes, 2)),
                                                     case_sensitive=True, all_values=rng.random() < 0.3)])
        conditions.append(condition)
    for corpus in ("sigma/rules/windows", "rmm", "kql"):
        conditions.extend(c.rule.condition for c in _compiled_corpus(shared_dir / "corpus" / corpus))
    for condition in conditions:
        for writable in (pf.printable_ascii, backend._search_char):
            ours = pf.superset(condition, writable)
            with monkeypatch.context() as m:
                m.setattr(pf, "_predicate", _old_prefilter_predicate)
                theirs = pf.superset(condition, writable)
            assert ours == theirs, condition


def test_safe_names_remembered_as_checked_each_time(monkeypatch):
    """A name `Emitter.field` found safe is kept and taken again; an unsafe one is refused every
    time: the same answers as checking each name with the two patterns, asked twice, with
    the set empty and full."""
    def checked(name):
        if not backend._SEARCH_NAME.match(name) or not backend._EVAL_NAME.match(name):
            return ValueError, f"field name {name!r} cannot be written safely in SPL"
        return name

    names = ["Image", "process.pe.company", "a b", "bad name|x", "@x", "x\"y", "1abc", "_x-y", "é", "a.b c"]
    monkeypatch.setattr(backend, "_SAFE_NAMES", set())
    for _ in range(2):
        for name in names:
            emitter = backend.Emitter(None, "defender")
            assert _outcome(lambda: emitter.field(name)) == checked(name), name
    assert backend._SAFE_NAMES == {n for n in names if not isinstance(checked(n), tuple)}


def test_unhandled_skips_the_walk_only_for_backends_writing_every_construct(monkeypatch, shared_dir: Path):
    """`_unhandled` of every corpus rule (unions, joins, subqueries, mv-expand, parse, feeds
    among them) for every target: the same refusal (or None) when the registry knows the
    backend writes every construct as when it walks the rule to find them."""
    from importlib import import_module

    assert backends._handles_all(import_module("rmmc.backends.splunk.backend"))
    assert not backends._handles_all(import_module("rmmc.backends.esql.backend"))
    rules = [c.rule for corpus in ("kql", "rmm", "sigma/rules/windows")
             for c in _compiled_corpus(shared_dir / "corpus" / corpus) if c.rule is not None]
    if not rules:
        pytest.skip("no shared corpus")
    assert sum(bool(ir.features(r)) for r in rules) > 20
    for target in backends.targets():
        backends.backend(target)  # (loaded: the registry may ask its module)
        ours = [backends._unhandled(target, r) for r in rules]
        with monkeypatch.context() as m:
            m.setattr(backends, "_handles_all", lambda module: False)
            assert ours == [backends._unhandled(target, r) for r in rules], target


def test_placed_options_as_replacing_them_each_time():
    """`placed_options` gives what `replace` gives, for options, placements and external modes
    asked again and again (interleaved, past the memo's bound), and never the copy made for
    other (equal but distinct) options or placement."""
    from dataclasses import replace

    from rmmc.backends.base import _PLACED, placed_options
    placements = [{"search": "index=a"}, {"search": "index=a"}, {"datamodel": "Endpoint.Processes"}, None]  # (equal, distinct)
    options = [EmitOptions(), EmitOptions(), EmitOptions(allow_lossy=True), EmitOptions(splunk_form="tstats")]
    rng = random.Random(26)
    for _ in range(400):
        o, p, e = rng.choice(options), rng.choice(placements), rng.choice([None, "lookup"])
        placed = placed_options(o, p, e)
        assert placed == replace(o, placement=p, external=e)
        assert placed.placement is p and placed.external == e
        assert all(getattr(placed, f) == getattr(o, f) for f in ("loose", "apply_exclusions", "allow_lossy", "splunk_form"))
    many = [EmitOptions(loose=bool(i % 2)) for i in range(200)]
    for o in many:
        assert placed_options(o, None, None) == replace(o, placement=None, external=None)
    assert len(_PLACED) <= 64


def test_int_values_written_as_number_writes_them():
    """`numeric`'s shortcut for a value of class int gives what `number(_seconds_of(v))` gives;
    every other value (bool, an int subclass, float, datetime, timespan, text) still goes
    there; and the SPL of a test on them is unchanged (the numbers appear as `number` says)."""
    import datetime as dt
    import enum

    class Small(enum.IntEnum):
        ONE = 1

    values = [0, 1, -5, 4688, 2 ** 70, -(2 ** 64), True, False, Small.ONE, 1.5, -0.0, float("inf"), 1e20,
              dt.timedelta(seconds=90), dt.datetime(2024, 1, 2, 3, 4, 5), "7", None]
    for v in values:
        if v.__class__ is int:
            assert repr(v) == backend.number(backend._seconds_of(v)), v
    for v in values:
        p = Predicate(Field("EventID", "long"), Op.EQUALS, (v, 4688))
        expected = backend.number(backend._seconds_of(v))
        out = _outcome(lambda: backend.Emitter("DeviceProcessEvents", "defender").where(p))
        if expected is None:
            assert isinstance(out, tuple) and "not a number" in out[1], (v, out)
        else:
            assert out == f"(EventID=={expected} OR EventID==4688)" or f"=={expected}" in out, (v, out)


def test_eval_names_remembered_as_written_each_time(monkeypatch):
    """`eval_name` gives what it gave before remembering (each name asked twice, the memo
    full or not)."""
    from rmmc.backends.splunk import expr

    def written(name):
        return name if expr._PLAIN.match(name) else f"'{name}'"

    names = ["Image", "process.name", "a b", "_time", "x-y", "9lives", "Ünï", "CommandLine", "", "a'b"]
    for full in (False, True):
        with monkeypatch.context() as m:
            m.setattr(expr, "_EVAL_NAMES", {f"n{i}": f"n{i}" for i in range(4096)} if full else {})
            for _ in range(2):
                for name in names:
                    assert expr.eval_name(name) == written(name)
            assert len(expr._EVAL_NAMES) <= 4096
    assert expr.eval_name("process.name") == "'process.name'" and expr.eval_name("Image") == "Image"


def test_prefilter_regex_literal_remembered_as_parsed_each_time(shared_dir: Path):
    """`prefilter.regex_literal` (remembered per pattern) gives what parsing the pattern again
    gives, twice over, for random patterns (unreadable ones too) and every regex value of the
    SigmaHQ rules."""
    from rmmc.compiler import prefilter as pf

    parsed_each_time = pf.regex_literal.__wrapped__
    rng = random.Random(41)
    pieces = ["a", "b", "[jJ]", "[ab]", ".", "\\", "(", ")", "(?i)", "*", "+", "x{2}", "|", "$", "^", "é", "\\d", "\\."]
    patterns = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(3000)]
    for compiled in _compiled_corpus(shared_dir / "corpus" / "sigma" / "rules" / "windows"):
        for p in ir.walk_predicates(compiled.rule.condition) if compiled.rule is not None else ():
            if p.op is Op.REGEX:
                patterns.extend(v for v in p.values if isinstance(v, str))
    assert len(patterns) > 3050
    for _ in range(2):
        for pattern in patterns:
            assert pf.regex_literal(pattern) == parsed_each_time(pattern), pattern


def test_emitter_freed_with_its_rule_not_by_the_collector():
    """`Emitter.writer` is made when asked, so an emitter that has written tests is no reference
    cycle: it is freed when its rule is done, without the garbage collector.  The writer holds
    nothing but the emitter (so one made per use writes what a kept one wrote)."""
    import gc
    import weakref

    enabled = gc.isenabled()
    gc.disable()
    try:
        emitter = backend.Emitter("DeviceProcessEvents", "defender")
        text = emitter.where(all_of([Predicate(Field("EventID", "long"), Op.EQUALS, (1,)),
                                     Predicate(Field("FileName"), Op.TERM, ("cmd",))]))
        assert text == '((isnotnull(EventID) AND EventID==1) AND match(coalesce(FileName, ""), "(?i)(^|[^0-9A-Za-z])cmd($|[^0-9A-Za-z])"))'
        assert vars(emitter.writer) == {"context": emitter}
        freed = weakref.ref(emitter)
        del emitter
        assert freed() is None
    finally:
        if enabled:
            gc.enable()


def test_emitter_made_by_its_init_as_the_dataclass_made_it():
    """`Emitter` (a plain class with its own `__init__`) holds what the dataclass it replaces
    held when made: every attribute the dataclass set, equal and of its type; each container
    its own (never shared between emitters); the same profile.  The corpora tests above
    compare the SPL written through it."""
    from dataclasses import dataclass, field

    from rmmc.compiler.schema.profiles import load_profile

    @dataclass
    class AsBefore:  # the replaced dataclass's fields and __post_init__
        table: str | None
        profile_name: str
        taxonomy: str | None = None
        diagnostics: list = field(default_factory=list)
        columns: dict = field(default_factory=dict)
        _fields: dict = field(default_factory=dict)
        _non_ascii_warned: set = field(default_factory=set)
        paths: dict = field(default_factory=dict)
        aliases: dict = field(default_factory=dict)
        subsearch: object = None
        options: object = None
        sets: dict = field(default_factory=dict)

        def __post_init__(self):
            self.profile = load_profile(self.profile_name)
            self._last_warned = None

    for cls in (backend.Emitter, backend.UnionEmitter):
        for args in [("DeviceProcessEvents", "defender"), (None, "sigma", "sigma"), ("T", "cim", None)]:
            before, now, other = AsBefore(*args), cls(*args), cls(*args)
            expected = vars(before) if cls is backend.Emitter else {**vars(before), "branches": []}
            assert set(vars(now)) == set(expected)
            for name, value in expected.items():
                assert getattr(now, name) == value and type(getattr(now, name)) is type(value), name
                if isinstance(value, (list, dict, set)):
                    assert getattr(now, name) is not getattr(other, name), name
            assert now.profile is before.profile
