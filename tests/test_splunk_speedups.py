"""The Splunk writer's shortcuts, each against what it stands in for (issue 16): the same SPL
and the same diagnostics, in the same order, over random rules and the shared corpora.

* `_terms` writes a detection of plain tests at once (`_written_at_once`) instead of first
  asking of each test whether SPL can say it (`Emitter.expressible`, which writes it and
  throws the text away) and widening;
* `Emitter._warned_of` remembers the predicate last found among those warned of, instead of
  hashing all its values again for each non-ASCII value;
* and, below the backends, what the tests further down name."""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

import pytest

from rmmc.backends.base import EmitOptions
from rmmc.backends.splunk import backend
from rmmc.compiler import ir


def _outcome(run):
    try:
        return run()
    except Exception as exc:  # what the slower path raises, the shortcut must raise
        return type(exc), str(exc)


def _both(monkeypatch, run):
    """`run()` with the shortcuts, then with each replaced by the path it stands in for (a
    result, or the exception raised)."""
    ours = _outcome(run)
    with monkeypatch.context() as m:
        m.setattr(backend, "_plain_tests", lambda condition: False)
        m.setattr(backend.Emitter, "_warned_of", lambda self, p: p in self._non_ascii_warned)
        theirs = _outcome(run)
    return ours, theirs


_FIELDS = [ir.Field("CommandLine"), ir.Field("Image"), ir.Field("EventID", "long"),
           ir.Field("DestinationPort", "int"), ir.Field("NoSuchColumn"), ir.Field("bad name|x"),
           ir.Field("Amount", "real"), ir.Field("Flag", "bool"), ir.Field("Bag", "dynamic"),
           ir.Field("When", "datetime")]
_TEXTS = ["cmd.exe", "a*b", "C:\\Windows\\", "", "\u00e9t\u00e9", "tab\there", "x\"y", "ÄB", "123",
          "10.0.0.0/8", "::ffff:1.2.3.4/128"]
_OPS = list(ir.Op)


def _predicate(rng: random.Random) -> ir.Predicate:
    field = rng.choice(_FIELDS)
    op = rng.choice(_OPS)
    if field.type in ("long", "int", "real") and rng.random() < 0.8:
        values = tuple(rng.choice([1, 4688, 2.5, "x", True]) for _ in range(rng.randint(0, 3)))
    else:
        values = tuple(rng.choice(_TEXTS) for _ in range(rng.randint(0, 4)))
    return ir.Predicate(field, op, values, all_values=rng.random() < 0.2,
                        case_sensitive=rng.random() < 0.2, negated=rng.random() < 0.3)


def _condition(rng: random.Random, depth: int) -> ir.Condition:
    pick = rng.random()
    if depth <= 0 or pick < 0.4:
        return _predicate(rng)
    operands = tuple(_condition(rng, depth - 1) for _ in range(rng.randint(1, 4)))
    if pick < 0.7:
        return ir.And(operands)
    return ir.Or(operands) if pick < 0.93 else ir.Not(operands[0])


def test_detection_written_at_once_as_after_widening_random_rules(monkeypatch):
    """Random detections of plain tests (refusals, lossy widenings, unmapped and unsafe names,
    non-ASCII and control characters, numbers and texts on either kind of column): the same
    text and diagnostics with the shortcut as through `expressible` and `widen`."""
    rng = random.Random(23)
    shortcut_taken = widened = 0
    for i in range(1500):
        rule = ir.Rule(ir.Metadata(title=f"r{i}"), ir.Source("DeviceProcessEvents"), _condition(rng, 3))
        for fields in ("defender", "cim"):
            ours, theirs = _both(monkeypatch, lambda: backend.emit_splunk(rule, EmitOptions(), fields=fields))
            assert ours == theirs, rule.condition
            if isinstance(ours, tuple):
                continue
            shortcut_taken += bool(ours.text) and not any("cannot be said exactly" in d.message
                                                         for d in ours.diagnostics)
            widened += any("cannot be said exactly" in d.message for d in ours.diagnostics)
    assert shortcut_taken > 300 and widened > 300  # both paths were exercised


def test_written_at_once_puts_the_emitter_back_when_a_test_cannot_be_written():
    """A conjunct SPL cannot say (ordering strings) after one that named an unmapped field
    (a diagnostic and a field name recorded): the emitter is as it was, None says to widen."""
    emitter = backend.Emitter("DeviceProcessEvents", "cim")
    emitter.diagnostics.append("before")
    unmapped = ir.Predicate(ir.Field("NoSuchColumn"), ir.Op.REGEX, ("a.b",))
    ordered = ir.Predicate(ir.Field("CommandLine"), ir.Op.LT, ("x",))
    assert backend._plain_tests(ir.And((unmapped, ordered)))
    assert backend._written_at_once(emitter, ir.And((unmapped, ordered))) is None
    assert emitter.diagnostics == ["before"] and emitter._fields == {} and not emitter._non_ascii_warned
    written = backend._written_at_once(emitter, unmapped)
    assert written == ([], ['match(coalesce(NoSuchColumn, ""), "(?i)a.b")'])
    assert len(emitter.diagnostics) == 2 and "NoSuchColumn" in emitter._fields


def test_plain_tests_are_predicates_on_plain_columns_only():
    from rmmc.compiler.paths import PathField

    p = ir.Predicate(ir.Field("A"), ir.Op.EQUALS, ("x",))
    assert backend._plain_tests(ir.Or((p, ir.Not(ir.And((p, p))))))
    assert not backend._plain_tests(ir.And((p, ir.Const(True))))
    assert not backend._plain_tests(ir.Or((p, ir.Compare(ir.Field("A"), "==", ir.Field("B")))))
    assert not backend._plain_tests(ir.Predicate(ir.Call("tolower", (ir.Field("A"),)), ir.Op.EQUALS, ("x",)))
    assert not backend._plain_tests(ir.Predicate(PathField("A.b", "dynamic", base="A", keys=("b",)),
                                                 ir.Op.EQUALS, ("x",)))


@functools.lru_cache(maxsize=None)
def _compiled_corpus(root: Path) -> tuple:
    """Every rule of a shared corpus compiled (of the KQL corpus, the files reading a Defender
    Device* table, as bench/exactness.py counts); () when the corpus is absent."""
    from rmmc.compiler.documents import iter_rule_files, read_path
    from rmmc.compiler.pipeline import compile_document

    if not root.is_dir():
        return ()
    files = [Path(f) for f in iter_rule_files([str(root)])]
    if root.name == "kql":
        device = re.compile(r"\bDevice[A-Z][A-Za-z]*(Events|Info|Tvm[A-Za-z]*)\b")
        files = [f for f in files if f.suffix == ".kql" and device.search(f.read_text(errors="replace"))]
    out = []
    for path in files:
        for document in read_path(str(path)).documents:
            compiled = compile_document(document, "default")
            if compiled.rule is not None:
                out.append(compiled)
    return tuple(out)


@pytest.mark.parametrize("corpus, env", [("sigma/rules/windows", "splunk-sysmon"), ("rmm", "splunk-sysmon"),
                                         ("rmm", "splunk-defender"), ("kql", "splunk-defender")])
def test_corpora_translate_to_splunk_as_through_widening(monkeypatch, shared_dir: Path, corpus: str, env: str):
    """Every rule of the shared corpora to Splunk: the same translation with the shortcut as
    without it (the whole result: text, diagnostics, verdict)."""
    from rmmc.translation import translate_compiled

    compiled = _compiled_corpus(shared_dir / "corpus" / corpus)
    if not compiled:
        pytest.skip(f"{shared_dir / 'corpus' / corpus} not found")
    for c in compiled:
        ours, theirs = _both(monkeypatch, lambda: translate_compiled(c, "splunk", env=env))
        assert (ours.text, ours.diagnostics) == (theirs.text, theirs.diagnostics), c.document.path


def _walked_features(rule: ir.Rule) -> dict:
    """`ir.features` as it was: `walk` over every condition, then `sub_rules` of every rule."""
    found: dict = {}
    pending = [rule]
    in_subquery: set[int] = set()
    while pending:
        current = pending.pop()
        if current.source.external is not None and id(current) not in in_subquery:
            found.setdefault(ir.EXTERNAL, current.source.external.span)
        if current.union is not None:
            found.setdefault(ir.UNION, current.union.span)
        for stage in current.stages:
            if isinstance(stage, ir.Join):
                found.setdefault(ir.JOIN, stage.span)
            elif isinstance(stage, ir.MvExpand):
                found.setdefault(ir.MV_EXPAND, stage.span)
            elif isinstance(stage, ir.Parse):
                found.setdefault(ir.PARSE, stage.span)
        conditions = [current.condition] + [s.condition for s in current.stages if isinstance(s, ir.Filter)]
        for condition in conditions:
            for node in ir.walk(condition):
                if isinstance(node, ir.InSubquery) and node.rule is not None:
                    found.setdefault(ir.SUBQUERY, node.span)
                    in_subquery.add(id(node.rule))
        pending.extend(_walked_sub_rules(current))
    return found


def _walked_sub_rules(rule: ir.Rule) -> list:
    found = list(rule.union.branches) if rule.union is not None else []
    conditions = [rule.condition]
    for stage in rule.stages:
        if isinstance(stage, ir.Join):
            found.append(stage.right)
        elif isinstance(stage, ir.Filter):
            conditions.append(stage.condition)
    for condition in conditions:
        found.extend(n.rule for n in ir.walk(condition) if isinstance(n, ir.InSubquery) and n.rule is not None)
    return found


def _walked_late_feed_tests(rule: ir.Rule):
    """`_late_feed_tests` as it was: the detection in negation normal form, every conjunct walked."""
    condition = backend._nnf(rule.condition)
    conjuncts = list(condition.operands) if isinstance(condition, ir.And) else [condition]
    late = [c for c in conjuncts if not backend._is_feed_test(c)
            and any(backend._is_feed_test(n) for n in ir.walk(c))]
    if not late:
        return rule, []
    return (backend.replace(rule, condition=ir.all_of([c for c in conjuncts if not any(c is x for x in late)])),
            late)


def _all_rules(rule: ir.Rule):
    pending = [rule]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(_walked_sub_rules(current))


def _check_walks(rule: ir.Rule) -> None:
    assert ir.features(rule) == _walked_features(rule)
    assert list(ir.features(rule)) == list(_walked_features(rule))  # first use first
    for current in _all_rules(rule):
        assert [id(r) for r in ir.sub_rules(current)] == [id(r) for r in _walked_sub_rules(current)]
        assert [id(n) for n in ir.subqueries(current.condition)] == \
            [id(n) for n in ir.walk(current.condition) if isinstance(n, ir.InSubquery)]
        ours, theirs = backend._late_feed_tests(current), _walked_late_feed_tests(current)
        assert ours[1] == theirs[1] and (ours[0] is current) == (theirs[0] is current) and ours[0] == theirs[0]


def test_features_and_sub_rules_in_one_loop_as_walked(shared_dir: Path):
    """`ir.features`, `ir.sub_rules`, `ir.subqueries` and `_late_feed_tests` (which now skips
    a detection without a feed test) against the walks they replace, over the RMM and KQL
    corpora (joins, unions, subqueries, feeds) and hand-made subqueries under `not` / `or`."""
    checked = 0
    for corpus in ("rmm", "kql"):
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            _check_walks(compiled.rule)
            checked += 1
    feed = ir.Rule(ir.Metadata(), ir.Source(None, external=ir.ExternalTable(("https://x/feed.csv",), (("ip", "string"),))),
                   ir.Const(True))
    table = ir.Rule(ir.Metadata(), ir.Source("DeviceNetworkEvents"), ir.Const(True))
    p = ir.Predicate(ir.Field("A"), ir.Op.EQUALS, ("x",))
    for sub in (feed, table):
        test = ir.InSubquery(ir.Field("RemoteIP"), "feed", rule=sub)
        for condition in (test, ir.Not(test), ir.And((p, ir.Or((p, test)))), ir.And((ir.Not(ir.And((test, p))), test)),
                          ir.And((ir.Const(False), ir.Or((p, test))))):
            _check_walks(ir.Rule(ir.Metadata(), ir.Source("DeviceProcessEvents"), condition,
                                 stages=(ir.Filter(ir.Or((p, test))),)))
            checked += 1
    assert checked > 10


def test_adapter_roles_and_spans_as_worked_out_before(shared_dir: Path):
    """The adapter's shortcuts against what they replace, on every rule of the corpora and
    their sub-rules: a rule without stages reads each column decisively (what `column_roles`
    says of it), and the first spans worked out when first asked are those `_first_spans`
    gave at once (after a `reset` too)."""
    from rmmc.environments import environment_for
    from rmmc.environments.adapt import Adapter, _adapter, _event_columns, _first_spans
    from rmmc.environments.reads import DECISIVE, column_roles

    checked = 0
    for corpus, env in (("sigma/rules/windows", "splunk-sysmon"), ("rmm", "splunk-sysmon"),
                        ("kql", "splunk-defender"), ("kql", "sentinel")):
        environment = environment_for("splunk" if env != "sentinel" else "kql", env)
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            for rule in _all_rules(compiled.rule):
                if not rule.stages:
                    assert column_roles(rule) == {c: {DECISIVE} for c in _event_columns(rule)}
                made = _adapter(rule, environment, False)
                if type(made) is Adapter:
                    assert made.spans == _first_spans(rule)
                    made.reset(backend.replace(rule, condition=ir.Const(True)))
                    assert made.spans == {}
                    checked += 1
    assert checked > 100


def _rebuilding_paths_as_fields(condition):
    """`paths.paths_as_fields` as it was: every And / Or / Not rebuilt."""
    from rmmc.compiler.paths import field_path

    found = []

    def visit(node):
        if isinstance(node, ir.Predicate) and not isinstance(node.field, ir.Field) \
                and node.op in ir.STRING_OPS | {ir.Op.EMPTY}:
            path = field_path(node.field)
            if path is not None:
                if path not in found:
                    found.append(path)
                return backend.replace(node, field=path)
            return node
        if isinstance(node, (ir.And, ir.Or)):
            return type(node)(tuple(visit(o) for o in node.operands))
        if isinstance(node, ir.Not):
            return ir.Not(visit(node.operand))
        return node

    return visit(condition), found


def test_paths_as_fields_keeping_unchanged_subtrees_gives_what_rebuilding_gives(shared_dir: Path):
    """`paths_as_fields` / `with_paths` keep a subtree (and a rule) with no path test as it is:
    equal to what rebuilding every node gave, on random trees with path tests and on every
    detection and filter of the corpora."""
    from rmmc.compiler.paths import paths_as_fields, with_paths

    def check(condition):
        ours, theirs = paths_as_fields(condition), _rebuilding_paths_as_fields(condition)
        assert ours == theirs and type(ours[0]) is type(theirs[0])
        if ours[1]:
            assert ours[0] is not condition
        else:
            assert ours[0] is condition

    rng = random.Random(7)
    bag = ir.Field("AdditionalFields", "dynamic")
    subjects = [ir.Field("A"), ir.Call("tostring", (ir.Call("member", (bag, ir.Literal("x")), "dynamic"),), "string"),
                ir.Call("member", (bag, ir.Literal("y")), "dynamic"), ir.Call("tolower", (ir.Field("B"),), "string")]

    def tree(depth):
        pick = rng.random()
        if depth <= 0 or pick < 0.35:
            return ir.Predicate(rng.choice(subjects), rng.choice([ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.GT]), ("v",))
        operands = tuple(tree(depth - 1) for _ in range(rng.randint(1, 3)))
        return ir.And(operands) if pick < 0.6 else ir.Or(operands) if pick < 0.9 else ir.Not(operands[0])

    for _ in range(2000):
        check(tree(4))
    for corpus in ("sigma/rules/windows", "rmm", "kql"):
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            for rule in _all_rules(compiled.rule):
                check(rule.condition)
                new, paths = with_paths(rule)
                conditions = [new.condition] + [s.condition for s in new.stages if isinstance(s, ir.Filter)]
                rebuilt = [_rebuilding_paths_as_fields(c)[0] for c in
                           [rule.condition] + [s.condition for s in rule.stages if isinstance(s, ir.Filter)]]
                assert conditions == rebuilt and new.stages == tuple(
                    backend.replace(s, condition=_rebuilding_paths_as_fields(s.condition)[0])
                    if isinstance(s, ir.Filter) else s for s in rule.stages)
                assert (new is rule) == (not paths and all(_rebuilding_paths_as_fields(c)[1] == [] for c in rebuilt))


def test_joined_pairs_from_the_forms_as_from_the_specs(shared_dir: Path):
    """`Adapter._joined_pairs` reads each column's spec from the form `prepare` made of it
    instead of asking `spec_for` again: the same pairs on every rule of the corpora, in the
    environments with joined fields (sigma: `User` = domain\\name) and without."""
    from rmmc.environments import environment_for
    from rmmc.environments.adapt import Adapter, _adapter

    def by_spec(made):
        pairs = {}
        for column in made.columns:
            spec = made.spec_for(column)
            if spec is not None and spec.form == "joined" and spec.options.get("part") == "first":
                pairs[column] = (column, spec.options.get("separator", "\\"), spec.options["with"])
        return pairs

    joined = 0
    for corpus, target, env in (("kql", "sigma", "sigma"), ("rmm", "sigma", "sigma"),
                                ("sigma/rules/windows", "splunk", "splunk-sysmon"),
                                ("rmm", "eql", "elastic-winlogbeat")):
        environment = environment_for(target, env)
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            for rule in _all_rules(compiled.rule):
                made = _adapter(rule, environment, False)
                if type(made) is not Adapter:
                    continue
                made.prepare()
                assert made._joined_pairs() == by_spec(made)
                joined += bool(made._joined_pairs())
    assert joined > 0  # joined fields were read


def test_target_init_stores_what_the_dataclass_init_stored():
    import dataclasses
    import inspect

    from rmmc.environments.adapt import Target

    assert Target.__init__.__code__.co_name != "__init__"  # slots_init's
    names = [f.name for f in dataclasses.fields(Target)]
    assert list(inspect.signature(Target.__init__).parameters)[1:] == names
    t = Target("index=x", None, "i", "T", "_time", ir.Const(True), (("T", Target()),))
    assert [getattr(t, n) for n in names] == ["index=x", None, "i", "T", "_time", ir.Const(True), (("T", Target()),)]
    assert Target() == Target(None, None, None, None, None, None, ()) and hash(t) == hash(backend.replace(t))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.table = "U"  # type: ignore[misc]


def _rebuilding_simplify(condition):
    """`rewrite.simplify` as it was: every And / Or / Not built again."""
    from rmmc.compiler.rewrite import simplify_predicate

    if isinstance(condition, ir.Predicate):
        return simplify_predicate(condition)
    if isinstance(condition, ir.And):
        return ir.all_of([_rebuilding_simplify(o) for o in condition.operands])
    if isinstance(condition, ir.Or):
        return ir.any_of([_rebuilding_simplify(o) for o in condition.operands])
    if isinstance(condition, ir.Not):
        inner = _rebuilding_simplify(condition.operand)
        return ir.Const(not inner.value) if isinstance(inner, ir.Const) else ir.Not(inner)
    return condition


def test_simplify_keeping_unchanged_subtrees_gives_what_rebuilding_gives(shared_dir: Path):
    """`simplify` (and `push_filters` over a rule without filters) keep what they would build
    again: equal to rebuilding on random trees (constants, nested And / Or, one-operand nodes,
    tests it rewrites: `tolower(x) == "v"`, `tostring(x)`) and on every detection of the corpora."""
    from rmmc.compiler.pushdown import push_filters
    from rmmc.compiler.rewrite import simplify

    rng = random.Random(11)
    a = ir.Field("A")
    leaves = [ir.Predicate(a, ir.Op.EQUALS, ("v",)), ir.Predicate(ir.Call("tolower", (a,), "string"), ir.Op.EQUALS, ("v",)),
              ir.Predicate(ir.Call("tolower", (a,), "string"), ir.Op.EQUALS, ("V",), case_sensitive=True),
              ir.Predicate(ir.Call("tostring", (a,), "string"), ir.Op.CONTAINS, ("x",)), ir.Const(True), ir.Const(False)]

    def tree(depth):
        pick = rng.random()
        if depth <= 0 or pick < 0.3:
            return rng.choice(leaves)
        operands = tuple(tree(depth - 1) for _ in range(rng.randint(1, 3)))
        return ir.And(operands) if pick < 0.6 else ir.Or(operands) if pick < 0.9 else ir.Not(operands[0])

    for _ in range(3000):
        condition = tree(4)
        ours, theirs = simplify(condition), _rebuilding_simplify(condition)
        assert ours == theirs and type(ours) is type(theirs)
    for corpus in ("sigma/rules/windows", "rmm", "kql"):
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            for rule in _all_rules(compiled.rule):
                assert simplify(rule.condition) == _rebuilding_simplify(rule.condition)
                if not any(isinstance(s, ir.Filter) for s in rule.stages):
                    pushed = push_filters(rule)
                    assert pushed == backend.replace(rule, condition=_rebuilding_simplify(rule.condition))


def test_adapting_keeps_what_it_does_not_change_as_rebuilding_did(monkeypatch, shared_dir: Path):
    """The adapter keeps a test on a column the environment names as the rule does
    (`forms.renamed`) and an And / Or / Not nothing below changed (`ir.unchanged_operands`):
    the same adapted rules, placements and diagnostics as copying them, on the corpora in
    several environments."""
    from rmmc.compiler.fast_replace import replace
    from rmmc.environments import environment_for, forms
    from rmmc.environments.adapt import adapt

    def adapted(rule, environment):
        made = _outcome(lambda: adapt(rule, environment))
        if isinstance(made, tuple):
            return made
        return made.rule, made.placement, made.diagnostics, made.names, sorted(made.unknown)

    kept = 0
    for corpus, target, env in (("sigma/rules/windows", "splunk", "splunk-sysmon"), ("rmm", "splunk", "splunk-sysmon"),
                                ("kql", "sigma", "sigma"), ("rmm", "eql", "elastic-winlogbeat"),
                                ("sigma/rules/windows", "kql", "defender-xdr")):
        environment = environment_for(target, env)
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            ours = adapted(compiled.rule, environment)
            with monkeypatch.context() as m:
                m.setattr(forms, "renamed", lambda p, subject: replace(p, field=subject))
                m.setattr(ir, "unchanged_operands", lambda parts, operands, kind: False)
                theirs = adapted(compiled.rule, environment)
            assert ours == theirs, compiled.document.path
            kept += isinstance(ours[0], ir.Rule)
    assert kept > 1000


def _every_field(node):
    """A condition as nested tuples of every dataclass field, spans included (`==` on IR nodes
    leaves spans out)."""
    import dataclasses

    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__, *(_every_field(getattr(node, f.name)) for f in dataclasses.fields(node)))
    if isinstance(node, tuple):
        return tuple(_every_field(x) for x in node)
    return node


def _spanned_predicate(rng: random.Random) -> ir.Predicate:
    from rmmc.compiler.diagnostics import Span

    p = _predicate(rng)
    span = Span(rng.randint(1, 9), rng.randint(1, 9), 1, 2) if rng.random() < 0.7 else None
    return ir.Predicate(p.field, p.op, p.values, p.all_values, p.case_sensitive, p.negated, span)


def test_predicate_copied_on_another_subject_as_replace_copies_it():
    """`forms.on_subject` builds the copy from `ir.Predicate`'s fields in order: it passes every
    field (a field added to `Predicate` fails here), and each copy equals `replace`'s, spans
    included."""
    import dataclasses

    from rmmc.compiler.fast_replace import replace
    from rmmc.environments.forms import on_subject

    assert [f.name for f in dataclasses.fields(ir.Predicate)] == \
        ["field", "op", "values", "all_values", "case_sensitive", "negated", "span"]
    rng = random.Random(23)
    for _ in range(2000):
        p, subject = _spanned_predicate(rng), rng.choice(_FIELDS)
        assert _every_field(on_subject(p, subject)) == _every_field(replace(p, field=subject))
        assert _every_field(on_subject(p, subject)) == _every_field(dataclasses.replace(p, field=subject))


def test_per_value_splits_as_replace_split():
    """`forms.per_value` builds each value's predicate from the fields in order: the same
    conditions, spans included, as copying with `replace` did, for random predicates."""
    from rmmc.compiler.fast_replace import replace
    from rmmc.environments import forms

    def per_value_by_replace(p, one):
        if p.negated:
            return forms.negated(per_value_by_replace(p.negate(), one))
        if len(p.values) <= 1:
            return one(p)
        parts = [one(replace(p, values=(v,), all_values=False)) for v in p.values]
        return ir.all_of(parts) if p.all_values else ir.any_of(parts)

    rng = random.Random(16)
    ones = [lambda q: q, lambda q: forms.on_subject(q, ir.Field("Other")), lambda q: q.negate()]
    for _ in range(2000):
        p, one = _spanned_predicate(rng), rng.choice(ones)
        assert _every_field(forms.per_value(p, one)) == _every_field(per_value_by_replace(p, one))
