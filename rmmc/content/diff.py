"""`rmmc diff`: what a rule change does to detection, not to text.

For each rule that changed, both versions are compiled to the detection model and run by the
reference evaluator over the same events: the boundary events `verify` generates around each
version's values (plus, per version, one event joining the values of tests that share a field),
and, for rules that aggregate, groups sized around each threshold (`verify.whole.group_events`).
What differs is said as a change of detection, each with one example event the evaluator
checked:

- `gain` / `loss`: the detection now also selects / no longer selects events where ... (the
  clause is the part of the condition that changed, read off the two condition trees against
  the example: an added or removed value of a list, a test added, removed or replaced);
- `alerts-gain` / `alerts-loss`: rows the whole query now also / no longer returns although
  the detection selects the same events (a threshold, a filter after `summarize`, a `take`);
- `output`: the same alerts with other columns or values;
- `lookback`, `source`: the time window or the table read changed.

A change that shows none of these on any event is "same detection" (said "the same model"
when both versions lower to the same model; otherwise it is a finding on the events tried,
not a proof).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from typing import Any

from rmmc.compiler import ir

MAX_EXAMPLES = 5  # differences of one kind shown per rule (the rest are counted)


@dataclass(frozen=True)
class Difference:
    kind: str  # gain | loss | alerts-gain | alerts-loss | output | lookback | source | exclusions
    text: str
    examples: tuple[dict[str, Any], ...] = ()  # one event, or the events of one alert row

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "examples": [_jsonable(e) for e in self.examples]}


@dataclass(frozen=True)
class RuleDiff:
    name: str  # the rule file ('' for two single files)
    index: int
    title: str | None
    status: str  # changed | same | added | removed | error
    summary: str
    query: tuple[str, ...] = ()  # the stages that changed, as KQL: "- ...", "+ ..."
    differences: tuple[Difference, ...] = ()
    events: int = 0  # events both versions ran on
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.name, "index": self.index, "title": self.title, "status": self.status,
                "summary": self.summary, "query": list(self.query), "events": self.events,
                "differences": [d.to_json() for d in self.differences], "errors": list(self.errors)}

    def text(self) -> str:
        where = self.name or "rule"
        if self.index:
            where += f" #{self.index + 1}"
        lines = [f"{where}: {self.title or '(untitled)'}", f"  {self.summary}"]
        lines += [f"  query: {q}" for q in self.query]
        for d in self.differences:
            lines.append(f"  {d.text}")
            if len(d.examples) == 1:
                lines.append(f"    e.g. {_event_text(d.examples[0])}")
            elif d.examples:
                lines.append(f"    e.g. {len(d.examples)} events like {_event_text(d.examples[0])}")
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class DiffResult:
    old: str
    new: str
    rules: list[RuleDiff] = field(default_factory=list)
    unchanged_files: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "unchanged_files": self.unchanged_files,
                "rules": [r.to_json() for r in self.rules]}

    def text(self) -> str:
        blocks = [r.text() for r in self.rules]
        changed = sum(1 for r in self.rules if r.status != "same")
        tail = (f"{len(self.rules)} rule{'s' * (len(self.rules) != 1)} changed in text, {changed} in "
                f"detection or output; {self.unchanged_files} file{'s' * (self.unchanged_files != 1)} unchanged")
        return "\n\n".join(blocks + [tail]) + "\n"


def diff(old: str, new: str, paths: tuple[str, ...] | list[str] = ()) -> DiffResult:
    """Compare two rule files, two directories, or a rules tree at two git revisions (`paths`
    limits the tree, as after `--`)."""
    from rmmc.content.sources import read_sides

    sides = read_sides(old, new, tuple(paths))
    result = DiffResult(old, new, unchanged_files=sides.unchanged)
    for name in sorted(sides.old.keys() | sides.new.keys()):
        result.rules += diff_texts(sides.old.get(name), sides.new.get(name), name)
    return result


def diff_texts(old_text: str | None, new_text: str | None, name: str = "") -> list[RuleDiff]:
    """Every rule of two versions of one file, matched by position in the file."""
    from rmmc.compiler.documents import read_text
    from rmmc.compiler.pipeline import compile_document

    def compiled(text: str | None) -> list:
        if text is None:
            return []
        return [compile_document(d) for d in read_text(text, name or "<rule>").documents]

    before, after = compiled(old_text), compiled(new_text)
    out = []
    for index in range(max(len(before), len(after))):
        a = before[index] if index < len(before) else None
        b = after[index] if index < len(after) else None
        out.append(diff_compiled(a, b, name, index))
    return out


def diff_compiled(a, b, name: str = "", index: int = 0) -> RuleDiff:
    """Two compiled versions of one rule (None: absent on that side)."""
    title = (b or a).document.title if (b or a) is not None else None
    if a is None:
        return RuleDiff(name, index, title, "added", "a new rule")
    if b is None:
        return RuleDiff(name, index, title, "removed", "the rule was removed")
    errors = tuple(f"{side} version: {d.message}" for side, c in (("old", a), ("new", b))
                   for d in c.diagnostics if d.is_error)
    if a.rule is None or b.rule is None:
        return RuleDiff(name, index, title, "error", "cannot compare: a version does not compile",
                        errors=errors)
    return compare_rules(a.rule, b.rule, name, index, title)


def compare_rules(old: ir.Rule, new: ir.Rule, name: str = "", index: int = 0,
                  title: str | None = None) -> RuleDiff:
    """What changing `old` into `new` does, with example events from the reference evaluator."""
    title = title or new.metadata.title
    query = _stage_changes(old, new)
    differences: list[Difference] = []
    if old.source.table != new.source.table:
        differences.append(Difference("source", f"now reads {new.source.table} (was "
                                      f"{old.source.table}): it selects other events altogether"))
        return RuleDiff(name, index, title, "changed", "other events: the table changed", query,
                        tuple(differences))
    if _window(old) != _window(new):
        differences.append(Difference("lookback", f"lookback {_window_text(old)} -> {_window_text(new)}"))
    events = _events(old, new)
    differences += _detection(old, new, events)
    differences += _alerts(old, new, events)
    differences += _exclusions(old, new)
    same_model = _model(old) == _model(new)
    if any(d.kind in ("gain", "loss", "lookback") for d in differences):
        summary = "detection changed"
    elif any(d.kind in ("alerts-gain", "alerts-loss") for d in differences):
        summary = "same detection; the query's alerts changed"
    elif any(d.kind == "output" for d in differences):
        summary = "same detection; the output changed"
    elif same_model:
        summary = "same detection (the same model: only text or metadata changed)"
    else:
        summary = f"same detection (no difference on {len(events)} events around both versions' values)"
    status = "same" if summary.startswith("same detection") and not differences else "changed"
    return RuleDiff(name, index, title, status, summary, query, tuple(differences), len(events))


# ------------------------------------------------------------------ events


def _events(old: ir.Rule, new: ir.Rule) -> list[dict[str, Any]]:
    """The events both versions run on: around each version's values, a joined event per
    version, and groups around each version's thresholds; deduplicated, in a fixed order."""
    from rmmc.verify.events import boundary_events

    base = _unique(boundary_events(old) + boundary_events(new) + _joined(old) + _joined(new))
    groups = {**_groups(new, base), **_groups(old, base)}  # one group per size
    return base + [e for n in sorted(groups) for e in groups[n]]


GROUP_LIMIT = 60


def _groups(rule: ir.Rule, events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """For a rule that aggregates: groups of copies of an event its detection selects, sized one
    below, at and one above each number its later filters compare with (and 1 and 2), each group
    under its own values of the group keys the detection does not test (as `verify`'s
    `group_events`, but keeping a key the detection tests, so the copies stay selected)."""
    from rmmc.compiler.evaluator import evaluate

    summarize = ir.summarize_of(rule.stages)
    if summarize is None:
        return {}
    seed = next((e for e in events if evaluate(rule.condition, e) is True), None)
    if seed is None:
        return {}
    after = rule.stages[rule.stages.index(summarize) + 1:]
    bounds = {int(v) for stage in after if isinstance(stage, ir.Filter)
              for p in ir.walk_predicates(stage.condition) for v in p.values
              if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 10 * GROUP_LIMIT}
    sizes = sorted({1, 2, *(b + d for b in bounds for d in (-1, 0, 1) if 0 < b + d <= GROUP_LIMIT)})
    tested = {f.name for f in ir.expr_fields(rule.condition)}
    free = [e for _, e in summarize.group_by if isinstance(e, ir.Field) and e.name not in tested]
    distinct = [a.args[0] for a in summarize.aggregates
                if a.function in ("dcount", "dcountif") and a.args and isinstance(a.args[0], ir.Field)
                and a.args[0].name not in tested]
    out: dict[int, list[dict[str, Any]]] = {}
    for n in sizes:
        for j in range(n):
            event = dict(seed)
            for key in free:
                event[key.name] = n if key.type in ("int", "long", "real") else f"group{n}"
            for f in distinct:
                event[f.name] = j if f.type in ("int", "long", "real") else f"value{j}"
            out.setdefault(n, []).append(event)
    return out


def _joined(rule: ir.Rule) -> list[dict[str, Any]]:
    """One event meeting every positive test at once where tests share a field: their values
    joined by spaces (each a whole term, so `has`, `contains` and the rest all hold)."""
    from rmmc.verify.events import MISSING, satisfying_value

    values: dict[str, list[str]] = {}
    plain: dict[str, Any] = {}
    for p in _positive_tests(rule.condition):
        if not ir.is_field(p.field):
            continue
        v = satisfying_value(p)
        if v is MISSING:
            continue
        if isinstance(v, str) and p.op in (ir.Op.TERM, ir.Op.CONTAINS, ir.Op.TERM_PREFIX,
                                           ir.Op.TERM_SUFFIX, ir.Op.REGEX):
            values.setdefault(p.field.name, [])
            if v not in values[p.field.name]:
                values[p.field.name].append(v)
        else:
            plain.setdefault(p.field.name, v)
    if not any(len(v) > 1 for v in values.values()):
        return []
    event = dict(plain)
    event.update({name: " ".join(vs) for name, vs in values.items() if name not in plain})
    return [event]


def _positive_tests(condition: ir.Condition) -> list[ir.Predicate]:
    """The predicates that must hold for the condition to (top-level AND, not negated)."""
    out = []
    for c in _conjuncts(condition):
        if isinstance(c, ir.Predicate) and not c.negated:
            out.append(c)
    return out


def _unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, seen = [], set()
    for e in events:
        key = repr(sorted(e.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


# ------------------------------------------------------------------ detection


def _detection(old: ir.Rule, new: ir.Rule, events: list[dict[str, Any]]) -> list[Difference]:
    from rmmc.compiler.evaluator import evaluate

    out: list[Difference] = []
    for kind, before, after, verb in (("gain", old.condition, new.condition, "now also selects"),
                                      ("loss", new.condition, old.condition, "no longer selects")):
        found: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            if evaluate(after, event) is True and evaluate(before, event) is not True:
                clause = " and ".join(dict.fromkeys(_why(before, after, event))) or _render(after)
                found.setdefault(clause, []).append(event)
        shown = list(found.items())
        for clause, witnesses in shown[:MAX_EXAMPLES]:
            out.append(Difference(kind, f"{verb} events where {clause}", (witnesses[0],)))
        if len(shown) > MAX_EXAMPLES:
            out.append(Difference(kind, f"... and {len(shown) - MAX_EXAMPLES} other ways"))
    return out


def _why(old: ir.Condition, new: ir.Condition, event: dict[str, Any]) -> list[str]:
    """Why `new` holds on `event` and `old` does not: the changed parts of the condition, as
    KQL clauses that hold on the event."""
    from rmmc.compiler.evaluator import evaluate

    def holds(c: ir.Condition) -> bool:
        return evaluate(c, event) is True

    news = _disjuncts(new)
    if len(news) > 1:  # the new version selects it through one of its alternatives
        olds = _disjuncts(old)
        for n in news:
            if n in olds or not holds(n):
                continue
            o = next((o for o in olds if _related(o, n)), None)
            if o is not None:
                return _why(o, n, event)
            # a new alternative: it, and what fails the old version
            return [_render(n)] + (_why(old, n, event) if len(olds) == 1 else [])
        return [_render(new)]
    olds = _disjuncts(old)
    if len(olds) > 1:  # it fails every alternative of the old one: say it against the closest
        o = next((o for o in olds if _related(o, new)), None)
        return _why(o, new, event) if o is not None else [_render(new), _render(_negation(old))]
    olds, news = _conjuncts(old), _conjuncts(new)
    if len(olds) > 1 or len(news) > 1:
        only_old = [c for c in olds if c not in news]
        only_new = [c for c in news if c not in olds]
        clauses: list[str] = []
        paired: set[int] = set()
        partner: dict[int, int] = {}  # a changed test of the old version -> the new test it became
        for i, o in enumerate(only_old):
            k = next((k for k, n in enumerate(only_new) if k not in paired and _related(o, n)), None)
            if k is not None:
                paired.add(k)
                partner[i] = k
        replaced = False
        for i, o in enumerate(only_old):
            if holds(o):
                continue  # not what stops the old version
            if i in partner:
                clauses += _why(o, only_new[partner[i]], event)
            else:
                replaced = True
                clauses.append(_render(_negation(o)))
        if replaced:  # a test removed or replaced: say what the new version asks instead
            clauses = [_render(n) for k, n in enumerate(only_new) if k not in paired] + clauses
        return clauses
    if isinstance(old, ir.Predicate) and isinstance(new, ir.Predicate) and _same_test(old, new):
        if not new.negated and not new.all_values:
            added = [v for v in new.values if v not in old.values]
            hit = [v for v in added if holds(replace(new, values=(v,)))]
            if hit:
                return [_render(replace(new, values=(hit[0],)))]
        if old.negated and not old.all_values:  # a value taken off an exclusion list
            removed = [v for v in old.values if v not in new.values]
            hit = [v for v in removed if holds(replace(old, values=(v,), negated=False))]
            if hit:
                return [_render(replace(old, values=(hit[0],), negated=False))]
    if isinstance(old, ir.Not) and isinstance(new, ir.Not):
        return _why(new.operand, old.operand, event) if not holds(old.operand) else [_render(new)]
    return [_render(new), _render(_negation(old))]


def _conjuncts(c: ir.Condition) -> list[ir.Condition]:
    return list(c.operands) if isinstance(c, ir.And) else [c]


def _disjuncts(c: ir.Condition) -> list[ir.Condition]:
    return list(c.operands) if isinstance(c, ir.Or) else [c]


def _related(a: ir.Condition, b: ir.Condition) -> bool:
    """Two tests that read as one test changed: the same subject, or lists sharing a member."""
    if isinstance(a, ir.Predicate) and isinstance(b, ir.Predicate):
        return a.field == b.field
    if isinstance(a, ir.Compare) and isinstance(b, ir.Compare):
        return a.left == b.left
    if isinstance(a, (ir.And, ir.Or)) and type(a) is type(b):
        return any(x in b.operands for x in a.operands)
    if isinstance(a, ir.Not) and isinstance(b, ir.Not):
        return _related(a.operand, b.operand)
    return False


def _same_test(a: ir.Predicate, b: ir.Predicate) -> bool:
    return (a.field, a.op, a.case_sensitive, a.negated, a.all_values) == \
           (b.field, b.op, b.case_sensitive, b.negated, b.all_values)


def _negation(c: ir.Condition) -> ir.Condition:
    if isinstance(c, ir.Predicate):
        return c.negate()
    if isinstance(c, ir.Not):
        return c.operand
    return ir.Not(c)


def _render(c: ir.Condition) -> str:
    """A condition as KQL (the language rules are reviewed in), or as `explain` words."""
    from rmmc.backends.kql import ConditionEmitter
    from rmmc.compiler.kql.printer import to_kql

    try:
        text = to_kql(ConditionEmitter().emit(c))
        return f"({text})" if isinstance(c, ir.Or) else text  # clauses are joined with `and`
    except Exception:  # noqa: BLE001 - a text for people only
        from rmmc.compiler.explain import condition_lines

        return " ".join(line.strip() for line in condition_lines(c))


# ------------------------------------------------------------------ whole query


def _alerts(old: ir.Rule, new: ir.Rule, events: list[dict[str, Any]]) -> list[Difference]:
    """Rows one version returns and the other does not although both detections select their
    events (what a threshold or a later filter decides), then rows that differ in content."""
    from rmmc.compiler.evaluator import evaluate
    from rmmc.compiler.rows import run

    if not old.stages and not new.stages:
        return []
    # Only the events both detections select: what differs then is what the stages decide
    # (a difference the detection explains is said there).
    kept = [i for i, e in enumerate(events)
            if evaluate(old.condition, e) is True and evaluate(new.condition, e) is True]
    shared = [events[i] for i in kept]
    by_old = {frozenset(kept[i] for i in r.sources): r for r in run(old, shared)}
    by_new = {frozenset(kept[i] for i in r.sources): r for r in run(new, shared)}
    fields = _changed_stage_fields(old, new)
    out: list[Difference] = []
    for kind, mine, theirs, verb in (("alerts-gain", by_new, by_old, "now also returns"),
                                     ("alerts-loss", by_old, by_new, "no longer returns")):
        found: list[Difference] = []
        for sources, row in mine.items():
            if sources in theirs or not sources:
                continue
            described = ", ".join(f"{c} = {_value_text(row[c])}" for c in fields if c in row)
            size = len(sources)
            text = (f"{verb} the row where {described}" if described else f"{verb} a row")
            text += f" (from {size} event{'s' * (size != 1)})"
            found.append(Difference(kind, text, tuple(events[i] for i in sorted(sources))))
        found = _dedupe(found)
        out += found[:MAX_EXAMPLES]
        if len(found) > MAX_EXAMPLES:
            out.append(Difference(kind, f"... and {len(found) - MAX_EXAMPLES} other rows"))
    changed = [(by_old[s], by_new[s], s) for s in by_old.keys() & by_new.keys()
               if _normal(by_old[s]) != _normal(by_new[s])]
    if changed:
        before, after, sources = sorted(changed, key=lambda t: sorted(t[2]))[0]
        if list(before) != list(after):
            text = f"returns other columns: {', '.join(before)} -> {', '.join(after)}"
        else:
            column = next(c for c in before if _normal_value(before[c]) != _normal_value(after[c]))
            text = (f"returns other values of {column}: e.g. {_value_text(before[column])} -> "
                    f"{_value_text(after[column])}")
        out.append(Difference("output", text, tuple(events[i] for i in sorted(sources))[:1]))
    return out


def _dedupe(found: list[Difference]) -> list[Difference]:
    seen, out = set(), []
    for d in found:
        if d.text not in seen:
            seen.add(d.text)
            out.append(d)
    return out


def _changed_stage_fields(old: ir.Rule, new: ir.Rule) -> list[str]:
    """The columns the changed filter stages test (what names an alert that moved), else the
    group keys."""
    names: list[str] = []
    matcher = SequenceMatcher(a=[repr(s) for s in old.stages], b=[repr(s) for s in new.stages],
                              autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for stage in list(old.stages[i1:i2]) + list(new.stages[j1:j2]):
            if isinstance(stage, ir.Filter):
                names += [f.name for f in ir.expr_fields(stage.condition)]
    if not names:
        summarize = ir.summarize_of(new.stages) or ir.summarize_of(old.stages)
        names = list(summarize.keys) if summarize is not None else []
    return list(dict.fromkeys(names))


def _stage_changes(old: ir.Rule, new: ir.Rule) -> tuple[str, ...]:
    """The stages that differ, as KQL operators (`- | where Count > 5`, `+ | where Count > 3`)."""
    from rmmc.backends.base import stage_text

    a = [stage_text(s) for s in old.stages]
    b = [stage_text(s) for s in new.stages]
    lines = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        lines += [f"- | {t}" for t in a[i1:i2]] + [f"+ | {t}" for t in b[j1:j2]]
    return tuple(lines)


def _exclusions(old: ir.Rule, new: ir.Rule) -> list[Difference]:
    before = {e.name: e for e in old.exclusions}
    after = {e.name: e for e in new.exclusions}
    out = [Difference("exclusions", f"adds the false-positive scenario {n!r}") for n in after if n not in before]
    out += [Difference("exclusions", f"drops the false-positive scenario {n!r}") for n in before if n not in after]
    out += [Difference("exclusions", f"changes the exclusion of {n!r}: {before[n].text!r} -> {after[n].text!r}")
            for n in after if n in before and before[n].text != after[n].text]
    return out


def _model(rule: ir.Rule) -> tuple:
    return (rule.source, rule.condition, rule.lookback, rule.stages)


def _window(rule: ir.Rule):
    return rule.lookback.window if rule.lookback is not None else None


def _window_text(rule: ir.Rule) -> str:
    from rmmc.compiler.constants import timespan_text

    return timespan_text(rule.lookback.window) if rule.lookback is not None else "none"


# ------------------------------------------------------------------ values


def _normal(row: dict[str, Any]) -> tuple:
    return tuple((k, _normal_value(v)) for k, v in row.items())


def _normal_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return json.dumps([_jsonable(x) for x in v], sort_keys=True, default=str)
    return v


def _value_text(v: Any) -> str:
    return repr(v) if isinstance(v, str) else json.dumps(_jsonable(v), default=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _event_text(event: dict[str, Any]) -> str:
    return json.dumps(_jsonable(event), ensure_ascii=False)
