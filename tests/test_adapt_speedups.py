"""The adapter's shortcuts (issue 16), each against what it stands in for: the same adapted
rules, placements and diagnostics, in the same order, over the shared corpora in several
environments, and the same answers over random inputs.

* `plans.SourcePlan`: what a source answers for any rule over a table (placement, specs,
  forms, known names, field expressions, the source's own tests), worked out once per
  (environment, source, table) instead of once per rule;
* `Adapter.result` without sub-rules, `Adapter.prepare` without stages, and what the tests
  further down name;
* `forms.rewrite_hives` folds each value and each style's names once, not per name test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rmmc.compiler import ir
from rmmc.compiler.fast_replace import replace
from rmmc.environments import plans
from rmmc.environments.adapt import Adapted, Adapter, Target, _adapter, _merged, adapt
from rmmc.environments.fieldsets import schema_for
from rmmc.environments.forms import form_of
from rmmc.environments.model import TIME_COLUMNS, FieldSpec
from rmmc.environments.reads import DECISIVE, column_roles

from test_splunk_speedups import _all_rules, _compiled_corpus

CASES = [("sigma/rules/windows", "splunk", "splunk-sysmon"), ("rmm", "splunk", "splunk-sysmon"),
         ("kql", "splunk", "splunk-defender"), ("kql", "sigma", "sigma"), ("rmm", "eql", "elastic-winlogbeat"),
         ("kql", "kql", "sentinel"), ("sigma/rules/windows", "kql", "defender-xdr")]


def _corpus(shared_dir: Path, corpus: str) -> tuple:
    compiled = _compiled_corpus(shared_dir / "corpus" / corpus)
    if not compiled:
        pytest.skip(f"{shared_dir / 'corpus' / corpus} not found")
    return compiled


# ------------------------------------------------------------------ as it was, per rule


def _spec_as_before(made: Adapter, column: str) -> FieldSpec | None:
    if column in TIME_COLUMNS:
        return FieldSpec(column, made.target.time_field)
    spec = made.source.fields.get(column)
    if spec is not None:
        return spec
    if made.profile is not None:
        mapped = made.profile.field(made.table, column)
        if mapped is not None:
            return FieldSpec(column, mapped)
    if made.source.others is not None:
        return FieldSpec(column, made.source.others.replace("{name}", column))
    return None


def _form_spec_as_before(made: Adapter, column: str) -> FieldSpec | None:
    """The spec `Adapter.form` made its form of (None: no field)."""
    spec = _spec_as_before(made, column)
    if spec is None or spec.field is None:
        return None
    if isinstance(spec.field, str) and spec.form == "basename":
        path = next((c for c, s in made.source.fields.items() if s.field == spec.field and s.form in ("rename", "hives")),
                    None)
        if path is None and made.profile is not None and made.table is not None:
            path = next((c for c, f in made.profile.columns(made.table).items() if f == spec.field), None)
        spec = replace(spec, options={**spec.options, "path": path})
    return spec


def _subject_as_before(made: Adapter, name: str, type_: str):
    convert = {"string": "tostring", "guid": "tostring", "int": "toint", "long": "tolong", "real": "todouble",
               "bool": "tobool", "datetime": "todatetime"}
    for column in made.source.dynamic:
        if name.startswith(column + "."):
            member = ir.Call("member", (ir.Field(column, "dynamic"), ir.Literal(name[len(column) + 1:])), "dynamic")
            function = convert.get(type_)
            return ir.Call(function, (member,), "string" if function == "tostring" else type_) if function else member
    return ir.Field(name, type_)


def _filters_as_before(made: Adapter) -> list:
    out = []
    for name, values in made.source.filter:
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        subject = _subject_as_before(made, name, "long" if numeric else "string")
        out.append(ir.Predicate(subject, ir.Op.EQUALS, values, case_sensitive=numeric))
    return out


def _prepare_as_before(self: Adapter) -> None:
    if self.rule.stages:
        self.roles = column_roles(self.rule)
    else:
        self.roles = {column: {DECISIVE} for column in self.columns}
    for column, roles in self.forced.items():
        self.roles.setdefault(column, set()).update(roles)
    for column in self.columns:
        self.form(column)
    self.dropped = {c for c in self.missing if c not in self.unknown and self.roles.get(c)
                    and DECISIVE not in self.roles[c]}


def _result_as_before(self: Adapter, adapted: ir.Rule) -> Adapted:
    parts: dict = {}
    placed: list = []
    for part in self.parts:
        for table, sub in [(part.table, part), *part.parts.items()]:
            if table is None:
                continue
            parts[table] = _merged(parts[table], sub) if table in parts else sub
    for part in self.parts:
        for entry in [(part.rule.source.table, replace(part.placement, parts=())), *part.placement.parts]:
            if entry[0] and entry not in placed:
                placed.append(entry)
    if self.table and adapted.source.table:
        own = (adapted.source.table, replace(self.target, parts=()))
        placed = [own, *[p for p in placed if p != own]] if placed else []
    target = replace(self.target, parts=tuple(placed))
    forms, unknown = dict(self.forms), set(self.unknown)
    if self.table in parts:
        same = parts.pop(self.table)
        forms, unknown = {**same.forms, **forms}, unknown | same.unknown
    return Adapted(adapted, self.env, self.source, target, self.found, forms, unknown,
                   dict(self.names), parts, self.table)


def _run_as_before(self: Adapter, outputs: tuple[str, ...] = ()) -> Adapted:
    """`Adapter.run` calling every step, whatever the rule has (`pairs` from `_joined_pairs`,
    `stages`, the exclusions, `widen_unplaced`, `report_missing`), and `prepare` as before."""
    from rmmc.environments.forms import merge_joined

    rule = self.rule
    _prepare_as_before(self)
    pairs = self._joined_pairs()
    condition = self.condition(merge_joined(rule.condition, pairs) if pairs else rule.condition)
    stages = self.stages(rule.stages)
    exclusions = tuple(replace(e, condition=self.condition(merge_joined(e.condition, pairs)))
                       if e.condition is not None else e for e in rule.exclusions)
    for name in outputs:
        self.rename(name)
    condition, stages = self.widen_unplaced(condition, stages)
    filters = self.filters()
    if filters:
        condition = ir.all_of([*filters, condition])
    self.target = self.plan.filtered if self.target is self.plan.target else \
        replace(self.target, filter=self.plan.filter)
    self.report_missing()
    taxonomy = "sigma" if self.env.target == "sigma" else None
    table = self.target.table or rule.source.table
    source = replace(rule.source, table=table, taxonomy=taxonomy)
    return self.result(replace(rule, source=source, condition=condition, exclusions=exclusions, stages=stages))


# ------------------------------------------------------------------ the tests


def test_source_plans_answer_as_worked_out_per_rule(shared_dir: Path):
    """Every rule (and sub-rule) of the corpora: the plan's placement, schema, specs, forms,
    known names, field expressions, joined pairs and the source's tests are what the adapter
    worked out per rule; one plan serves every rule of a (source, table), and an environment
    read again (another object) gets plans of its own."""
    from rmmc.environments import environment_for

    checked = refused = 0
    shared: dict = {}  # one plan per (environment, source, table), whatever the logsource
    for corpus, target, env in CASES:
        environment = environment_for(target, env)
        for compiled in _corpus(shared_dir, corpus):
            for rule in _all_rules(compiled.rule):
                made = _adapter(rule, environment, False)
                if isinstance(made, Adapted) and made.rule is None and rule.union is None:
                    takes = []  # the refusal names what the environment reads, as it did
                    for s in environment.sources:
                        for item in (s.match.table or ()) if s.match.by_table else [s.match.describe()]:
                            if item not in takes:
                                takes.append(item)
                    assert made.diagnostics[0].message.endswith(f"(it reads: {', '.join(takes)})")
                    refused += 1
                if type(made) is not Adapter:
                    continue
                plan, source = made.plan, made.source
                if rule.source.external is None:
                    assert source is environment.source_for(rule.source)
                    place = environment.place.merged(source.place)
                    assert made.target == Target(place.search, place.datamodel, place.index, place.table,
                                                 source.time_field or environment.time_field)
                    assert _adapter(rule, environment, False).plan is plan
                    assert shared.setdefault((id(environment), id(source), made.table), plan) is plan
                assert plan.schema == schema_for(source.schema, source.declare, source.members, source.dynamic,
                                                 made.table)
                assert list(plan.tests) == [p for _, p in plan.filters] == _filters_as_before(made)
                assert plan.unknown_filter_fields == tuple(n for n, _ in source.filter if not made.schema.knows(n))
                assert plan.filtered == replace(made.target, filter=ir.all_of(_filters_as_before(made))
                                                if source.filter else None)
                for column in [*made.columns, *sorted(TIME_COLUMNS)]:
                    assert plan.spec(column) == _spec_as_before(made, column)
                    form, spec = plan.form(column), _form_spec_as_before(made, column)
                    assert (type(form), form.spec if form else None) == \
                        ((type(form_of(spec)), spec) if spec is not None else (type(None), None))
                    for name in (form.fields() if form is not None else ()):
                        assert plan.knows(name) == made.schema.knows(name)
                    assert plan.unknown_fields(column) == tuple(n for n in (form.fields() if form else ())
                                                                if not made.schema.knows(n))
                    old, pair = _spec_as_before(made, column), None
                    if old is not None and old.form == "joined" and old.options.get("part") == "first":
                        pair = (column, old.options.get("separator", "\\"), old.options["with"])
                    assert plan.first_parts.get(column) == pair
                    for type_ in ("string", "long", "dynamic", "guid"):
                        name = spec.field if spec is not None and isinstance(spec.field, str) else column
                        assert plan.subject(name, type_) == _subject_as_before(made, name, type_)
                checked += 1
        again = replace(environment)  # equal, but another object: planned anew
        rule = next(r for c in _corpus(shared_dir, corpus) for r in _all_rules(c.rule)
                    if type(_adapter(r, environment, False)) is Adapter and r.source.external is None)
        assert _adapter(rule, again, False).plan is not _adapter(rule, environment, False).plan
    assert checked > 5000 and refused > 100


def test_adapted_rule_built_as_replace_builds_it():
    """`Adapter.run` builds the adapted `ir.Rule` from its fields in order: it passes every
    field (a field added to `Rule` fails here), and `forms.renamed` compares an `ir.Field`
    by its fields as `==` does."""
    import dataclasses

    assert [f.name for f in dataclasses.fields(ir.Rule)] == \
        ["metadata", "source", "condition", "lookback", "exclusions", "stages", "union"]
    assert [f.name for f in dataclasses.fields(ir.Field) if f.compare] == ["name", "type"]
    from rmmc.environments.forms import renamed

    p = ir.Predicate(ir.Field("A", "long"), ir.Op.EQUALS, (1,))
    for subject in (ir.Field("A", "long"), ir.Field("A"), ir.Field("B", "long"),
                    ir.Call("tostring", (ir.Field("A", "long"),), "string")):
        assert (renamed(p, subject) is p) == (type(subject) is ir.Field and subject == p.field)
        assert renamed(p, subject) == replace(p, field=subject)


@pytest.mark.parametrize("corpus, target, env", CASES)
def test_adapting_with_the_shortcuts_as_without(monkeypatch, shared_dir: Path, corpus: str, target: str, env: str):
    """Every rule of the corpora adapted with the shortcuts, and with each replaced by what it
    stands in for (a plan made afresh for every rule, so nothing one rule leaves in a plan
    reaches the next; `prepare` and `result` as they were): the same adapted rules,
    placements, diagnostics, names, forms and unknown columns."""
    from rmmc.environments import environment_for

    environment = environment_for(target, env)

    def adapted(rule):
        try:
            made = adapt(rule, environment)
        except Exception as exc:  # what the slower path raises, the shortcut must raise
            return type(exc), str(exc)
        forms = {c: (type(f), f.spec) for c, f in made.forms.items()}
        parts = {t: (p.rule, p.placement, p.diagnostics) for t, p in made.parts.items()}
        return made.rule, made.placement, made.diagnostics, made.names, sorted(made.unknown), forms, parts

    compiled = _corpus(shared_dir, corpus)
    ours = [adapted(c.rule) for c in compiled]
    with monkeypatch.context() as m:
        m.setattr(plans, "_KEPT", 0)  # every plan made anew
        m.setattr(Adapter, "prepare", _prepare_as_before)
        m.setattr(Adapter, "result", _result_as_before)
        m.setattr(Adapter, "run", _run_as_before)
        theirs = [adapted(c.rule) for c in compiled]
    for c, a, b in zip(compiled, ours, theirs):
        assert a == b, c.document.path


def _rewrite_hives_as_before(p, subject, source, target, ctx, what):
    """`forms.rewrite_hives` as it was: every name folded again for each test."""
    from rmmc.compiler.functions import fold
    from rmmc.environments import conventions
    from rmmc.environments.forms import _overlaps, _starts, _text, leading_hive, on_subject, per_value

    src, dst = conventions.hives(source), conventions.hives(target)
    if source == target:
        return replace(p, field=subject)
    every = [*src.values(), *dst.values()]

    def one(q):
        value = _text(q.values[0]) if q.values else None
        same = on_subject(q, subject)
        if value is None or q.op in (ir.Op.EMPTY, ir.Op.EXISTS):
            return same
        cased = q.case_sensitive
        lead = leading_hive(value, src, cased)
        if q.op is ir.Op.REGEX:
            text = fold(value)
            if text.startswith("^") or "\\a" in text or any(fold(t) in text for t in every):
                ctx.lossy(f"the regex {value!r} on {what} may read the hive name, which is not "
                          f"rewritten inside a regex for {ctx.env}", q)
            return same
        if lead:
            hive, n = lead
            if hive not in dst:
                ctx.lossy(f"{what} {value!r} names hive {src[hive]}, which {ctx.env} has no "
                          f"{target} name for: written unchanged", q)
                return same
            moved = dst[hive] + value[n:]
            op = {ir.Op.CONTAINS: ir.Op.STARTSWITH, ir.Op.ENDSWITH: ir.Op.EQUALS}.get(q.op, q.op)
            return replace(same, op=op, values=(moved,))
        if q.op is ir.Op.STARTSWITH:
            hits = [h for h, token in src.items() if len(value) < len(token) and _starts(token, value, cased)]
            if hits:
                if any(h not in dst for h in hits):
                    ctx.lossy(f"{what} starts with {value!r}, the start of a hive {ctx.env} "
                              "has no name for: written unchanged", q)
                    return same
                return ir.any_of([replace(same, values=(dst[h],)) for h in hits])
        if leading_hive(value, dst, cased):
            ctx.note(f"{what} {value!r} already names its hive as {ctx.env} does: kept", q)
            return same
        if q.op is not ir.Op.EQUALS and (_overlaps(value, list(src.values()), cased, skip_zero=True)
                                         or _overlaps(value, list(dst.values()), cased, skip_zero=True)):
            ctx.lossy(f"{what} test {q.op.value} {value!r} may match across the hive name, which "
                      f"{ctx.env} writes otherwise: written unchanged", q)
        return same

    return per_value(p, one)


def test_rewrite_hives_as_when_every_name_was_folded_for_each_test():
    """`forms.rewrite_hives` folds each value once and each style's names once
    (`_HiveStyles`): the same conditions and the same diagnostics, in order, as folding them
    for each name test, over random registry tests between every pair of hive styles, cased
    and not, one value or several, negated or not, with characters whose case folding is not
    one for one."""
    from rmmc.environments import conventions, forms

    rng = random.Random(5)
    pieces = ["HKLM", "HKEY_LOCAL_MACHINE", "\\REGISTRY\\MACHINE", "hkcu", "HKU", "HKEY_USERS", "\\", "İ",
              "\u212a", "x", "Software", "^", "\\a", "LM", "EY_", "",
              "HKEY_L", "hkey_loc", "\\registry\\ma", "HK", "hk", "Hkey_Current"]
    ops = [ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.ENDSWITH, ir.Op.REGEX, ir.Op.TERM, ir.Op.EMPTY,
           ir.Op.EXISTS]
    subject = ir.Field("TargetObject")
    compared = 0
    for _ in range(6000):
        values = tuple("".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 3)))
        p = ir.Predicate(ir.Field("RegistryKey"), rng.choice(ops), values, rng.random() < 0.2, rng.random() < 0.3,
                         rng.random() < 0.2)
        source, target = rng.choice(conventions.HIVE_STYLES), rng.choice(conventions.HIVE_STYLES)
        said = ([], [])
        ours = forms.rewrite_hives(p, subject, source, target, forms.Context("env", ir.Field, said[0].append),
                                   "RegistryKey")
        theirs = _rewrite_hives_as_before(p, subject, source, target, forms.Context("env", ir.Field, said[1].append),
                                          "RegistryKey")
        assert (ours, said[0]) == (theirs, said[1]), p
        compared += ours != p
    assert compared > 1000


def test_close_match_counting_ascii_names_at_once_as_difflib():
    """`fieldsets._close_match` counts the characters ASCII names share with the word a length
    at a time (bytes joined by NULs): the same answer as difflib over every name, with names
    beyond ASCII and holding NULs in the pool (counted one by one) and words beyond ASCII,
    with NULs, with surrogates."""
    import difflib

    from rmmc.environments.fieldsets import _by_length, _close_match

    rng = random.Random(29)
    alphabet = "aAbeEiImnNoOrstT._-xyzQ0é\0İ\udc80K"
    ascii_names = ["ProcessId", "Image", "CommandLine", "ParentImage", "TargetObject", "EventType", "User",
                   "Hashes", "event.code", "process.name", "winlog.event_data.Image"]
    for names in (ascii_names, [*ascii_names, "Imagé", "Usér", "Tar\0get"],
                  ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12))) for _ in range(60)]):
        names = sorted(set(names))
        by_length = _by_length(names)
        words = ["", "\0", "é", "Image\0", *names]
        for name in names:  # close to a name, with a NUL or a character beyond ASCII in it
            at = rng.randrange(len(name) + 1)
            words += [name[:at] + "\0" + name[at:], name[:at] + "é" + name[at + 1:]]
        for _ in range(150):
            words.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14))))
        for word in words:
            for cutoff in (0.6, 0.75, 0.8):
                close = difflib.get_close_matches(word, names, n=1, cutoff=cutoff)
                assert _close_match(word, by_length, cutoff) == (close[0] if close else None), (word, cutoff)



def test_conventions_kept_in_the_user_cache_as_read(monkeypatch, tmp_path: Path):
    """`conventions._data` keeps the file's data in the user's cache: read there, it is what
    PyYAML reads from the file; an unreadable entry is read from the file again (and kept
    anew); without a cache folder the file is read."""
    import yaml

    from rmmc import user_cache
    from rmmc.environments import conventions
    from rmmc.resources import package_text

    expected = yaml.safe_load(package_text("rmmc.environments", "data/conventions.yml"))
    monkeypatch.setattr(user_cache, "cache_folder", lambda: str(tmp_path))
    for prepare in (lambda: None, lambda: None, lambda: Path(conventions._cached_path(
            package_text("rmmc.environments", "data/conventions.yml"))).write_bytes(b"not a pickle")):
        prepare()
        conventions._data.cache_clear()
        assert conventions._data() == expected
        assert list(tmp_path.glob("conventions-*.pickle"))
    monkeypatch.setattr(user_cache, "cache_folder", lambda: None)
    conventions._data.cache_clear()
    assert conventions._data() == expected
    conventions._data.cache_clear()


def test_values_forms_table_worked_out_once_as_each_time():
    """`forms.Values` keeps `table` and `env_type`, worked out when it is made: the same as
    the properties that worked them out at each test, for every `values:` field of every
    environment (and a numbers-only and a mixed table)."""
    from rmmc.environments import environment_for
    from rmmc.environments.forms import Values

    def table_as_before(spec):
        return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in spec.options["values"].items()}

    def env_type_as_before(spec):
        numbers = [v for vs in table_as_before(spec).values() for v in vs]
        return "long" if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers) else "string"

    specs = [FieldSpec("A", "B", form="values", options={"values": {"X": 1, "Y": [2, 3]}}),
             FieldSpec("A", "B", form="values", options={"values": {"X": 1, "Y": "true", "Z": True}})]
    for target, name in [("splunk", "splunk-sysmon"), ("splunk", "splunk-cim"), ("eql", "elastic-winlogbeat"),
                         ("eql", "elastic-endpoint"), ("sigma", "sigma"), ("kql", "sentinel")]:
        env = environment_for(target, name)
        specs += [spec for source in env.sources for spec in source.fields.values() if spec.form == "values"]
    assert len(specs) > 4
    for spec in specs:
        form = form_of(spec)
        assert isinstance(form, Values)
        assert form.table == table_as_before(spec) and form.env_type == env_type_as_before(spec), spec
    assert [form_of(s).env_type for s in specs[:2]] == ["long", "string"]


def test_values_forms_loops_as_any_over_generators():
    """`forms._names_key` and `forms._holds_for_any` (loops, one probe predicate for every key
    or value) answer as the `any(...)` over a generator, with a probe copied per value, that
    they replace: for every `values:` field of the built-in environments, values that are and
    are not keys (folded, cased), and tests of every string operator."""
    from rmmc.compiler.evaluator import evaluate_predicate
    from rmmc.environments import environment_for
    from rmmc.environments.forms import Values, _holds_for_any, _names_key, _same

    forms = []
    for target, name in [("splunk", "splunk-sysmon"), ("splunk", "splunk-cim"), ("eql", "elastic-winlogbeat"),
                         ("eql", "elastic-endpoint"), ("sigma", "sigma"), ("kql", "sentinel")]:
        env = environment_for(target, name)
        forms += [form_of(spec) for source in env.sources for spec in source.fields.values()
                  if spec.form == "values"]
    assert forms and all(isinstance(f, Values) for f in forms)
    rng = random.Random(16)
    checked = 0
    for form in forms:
        keys = list(form.table)
        values = [v for vs in form.table.values() for v in vs]
        candidates = keys + [k.upper() for k in keys if isinstance(k, str)] + values + ["", "nothing", 0]
        for value in candidates:
            for cased in (True, False):
                assert _names_key(value, form.table, cased) == any(_same(value, k, cased) for k in form.table)
        for _ in range(40):
            op = rng.choice([ir.Op.EQUALS, ir.Op.CONTAINS, ir.Op.STARTSWITH, ir.Op.ENDSWITH])
            picked = rng.choice(candidates)
            needle = str(picked)[:rng.randint(0, 4)] if op is not ir.Op.EQUALS else str(picked)
            p = ir.Predicate(ir.Field("A", "string"), op, (needle,), negated=rng.random() < 0.3,
                             case_sensitive=rng.random() < 0.3)
            probe = ir.Field("v", "string")
            for env_values in form.table.values():
                expected = any(evaluate_predicate(replace(p, field=probe), {"v": v}) is True for v in env_values)
                assert _holds_for_any(replace(p, field=probe), env_values) == expected, (p, env_values)
                checked += 1
    assert checked > 100


def test_event_columns_from_the_field_map_as_from_the_list(shared_dir: Path):
    """`ir.expr_field_map` (the dict `expr_fields` lists) is what building a dict of the list
    gave, in the same order, for every condition, exclusion and stage expression of the
    shared corpora's rules; `_event_columns` of a rule without stages or exclusions uses it."""
    from rmmc.environments.adapt import _event_columns

    checked = 0
    for corpus in ("sigma/rules/windows", "rmm", "kql"):
        for compiled in _compiled_corpus(shared_dir / "corpus" / corpus):
            if compiled.rule is None:
                continue
            for rule in _all_rules(compiled.rule):
                nodes = [rule.condition, *(e.condition for e in rule.exclusions if e.condition is not None),
                         *(s for s in rule.stages)]
                for node in nodes:
                    as_list = {f.name: f for f in ir.expr_fields(node)}
                    as_map = ir.expr_field_map(node)
                    assert list(as_map.items()) == list(as_list.items())
                if not rule.stages and not rule.exclusions:
                    assert list(_event_columns(rule).items()) == \
                        list({f.name: f for f in ir.expr_fields(rule.condition)}.items())
                checked += 1
    if not checked:
        pytest.skip("shared corpora not found")
    assert checked > 2000
