"""What `rmmc verify` runs: does each translation return what its source returns?

For each rule: events are generated around its values (`events.boundary_events`), and, when it
aggregates, in groups sized around its thresholds (`whole.group_events`); the source rule's
meaning is the reference evaluator's, over the whole query (`rmmc.compiler.rows`); each
translation runs on its target's engine.  KQL must return the same rows; Sigma and EQL, which
return events, must alert on the same events (or, for a correlation, the same groups)
(`whole`).  The verdict per target:

* agree: the same events are selected;
* disagree: some event is selected by one and not the other, and the translation claimed to
  be exact (no lossy diagnostic): a bug, with the event that shows it;
* approximate: the translation differs, as its lossy diagnostics said it would;
* refused: the backend could not express the rule (its error says why);
* unchecked: no engine for the target here, the engine cannot run the rule (engine error:
  never replaced by rmmc's own reading), or the rule reads another table.

The lookback is left out of both sides (it is the schedule's window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from rmmc.backends.base import EmitOptions
from dataclasses import replace

from rmmc.compiler.ir import InSubquery, Rule, summarize_of, walk
from rmmc.verify.engines import ENGINES, EngineError, EngineUnavailable
from rmmc.verify.whole import INDEX
from rmmc.verify.verdicts import events_verdict, groups_verdict
from rmmc.verify.events import boundary_events

STATUSES = ("agree", "disagree", "approximate", "refused", "unchecked")


@dataclass(frozen=True)
class TargetVerdict:
    target: str
    status: str
    engine: str = ""
    detail: str = ""
    counterexample: dict[str, Any] | None = None
    expected: bool | None = None  # the source's verdict on the counterexample

    @property
    def failed(self) -> bool:
        return self.status == "disagree"


@dataclass(frozen=True)
class RuleVerdict:
    label: str
    path: str | None
    events: int = 0
    targets: tuple[TargetVerdict, ...] = ()
    error: str | None = None

    @property
    def failed(self) -> bool:
        return any(t.failed for t in self.targets)


def verify_rule(rule: Rule, targets: Iterable[str], options: EmitOptions = EmitOptions(),
                sample: int = 40, env: Any = None) -> tuple[int, list[TargetVerdict]]:
    """(number of events, one verdict per target) for an IR rule.

    Each target runs in an environment (`env` for the targets it serves, else the target's
    default, `rmmc.environments`): the translation is written there and run on the events
    written as that environment holds them (its names, its value conventions: a Sysmon-shaped
    event for a Sysmon environment), while the source reads the events in its own convention.
    The events are first put into the domain of the environment's conventions, which is where
    its rewrites claim to be exact.  A field the environment lacks is written under its own
    name (the schema is `rmmc check --env` / `translate`'s business; here, meaning is checked)."""
    from rmmc.compiler.pushdown import push_filters
    from rmmc.compiler.rows import run
    from rmmc.environments import environment_for
    from rmmc.environments.adapt import adapt
    from rmmc.translation import emit_adapted
    from rmmc.verify.whole import NOW, group_events, with_time

    from rmmc.verify.multi import is_multi, multi_events, nest_paths

    source = rule.with_exclusions_applied() if options.apply_exclusions else rule
    # Translated with its lookback, which every event falls inside (the reference, `run`, never
    # applies a lookback: events carry no notion of now).
    checked = replace(source, exclusions=())
    pushed = push_filters(checked)
    multi = is_multi(checked)
    if multi:  # several sources: tagged events per table (rmmc.verify.multi)
        events = multi_events(checked, sample=sample)
    else:
        events = [nest_paths(e) for e in with_time(group_events(pushed, boundary_events(pushed, sample=sample)),
                                                   checked)]
    subquery = any(isinstance(node, InSubquery) and (node.rule is None or not multi)
                   for node in walk(pushed.condition))
    expected = [] if subquery else run(checked, events, now=NOW)
    verdicts = []
    for target in targets:
        chosen = env if env is not None and env.serves(target) else None
        adapted = adapt(checked, environment_for(target, chosen), allow_unknown_fields=True)
        if not adapted.ok:
            reasons = "; ".join(d.message for d in adapted.diagnostics if d.is_error)
            verdicts.append(TargetVerdict(target, "refused", detail=reasons))
            continue
        translation = emit_adapted(target, adapted, EmitOptions(loose=options.loose))
        if not translation.ok:
            reasons = "; ".join(d.message for d in translation.diagnostics if d.is_error)
            verdicts.append(TargetVerdict(target, "refused", detail=reasons))
            continue
        if subquery:
            verdicts.append(TargetVerdict(target, "unchecked", detail="the rule reads another table "
                                          "(in (T | ...)): its events cannot be generated here"))
            continue
        # `model`: where rmmc's model and the engine may read the same operator differently
        lossy = [d.message for d in (*adapted.diagnostics, *translation.diagnostics)
                 if d.code in ("lossy", "loose", "model")]
        # events in the environment's conventions, each table's as its own source holds them
        normalized = [adapted.normalize(e) for e in events]
        wanted = expected if normalized == events or subquery else run(checked, normalized, now=NOW)
        shaped = [adapted.target_event(e) for e in normalized]
        pushed_here = push_filters(adapted.rule)
        verdict = _run(target, adapted, checked, pushed_here, translation.text,
                       normalized, shaped, wanted, lossy, multi)
        verdicts.append(verdict)
    return len(events), verdicts


def _run(target: str, adapted: Any, source: Rule, pushed: Rule, text: str, events: list[dict[str, Any]],
         shaped: list[dict[str, Any]], expected: list[Any], lossy: list[str],
         multi: bool = False) -> TargetVerdict:
    """Run one translation on its engine(s), over the events as its environment holds them
    (`shaped`, one for one with `events`), and judge it against the source's rows."""
    from rmmc.compiler.rows import Row
    from rmmc.verify import multi as several
    from rmmc.verify.whole import (alerting_events, correlation_groups, read_kql_rows, run_kql_rows,
                                   run_sigma_correlation)

    rule = adapted.rule
    aggregates = summarize_of(rule.stages) is not None
    if multi and target != "kql":
        engine = {"sigma": "pySigma sqlite", "eql": "eql package"}.get(target, target)
        time_field = adapted.placement.time_field or "Timestamp"
        checks = [(engine, lambda: several.check(target, source, rule, text, events, shaped, expected,
                                                 time_field))]
        if target not in ("sigma", "eql"):
            return TargetVerdict(target, "unchecked", detail=f"no engine for {target} can run here")
    elif target == "kql":
        renamed = [Row({adapted.output_name(k): v for k, v in row.items()}, row.sources) for row in expected]
        checks = [("duckdb-kql", lambda: _rows(rule, run_kql_rows(rule, text, shaped), renamed, shaped)),
                  ("rmmc read-back", lambda: _rows(rule, read_kql_rows(text, shaped), renamed, shaped))]
    elif target == "sigma" and aggregates:
        checks = [("pySigma sqlite", lambda: groups_verdict(correlation_groups(source, events),
                                                     run_sigma_correlation(rule, text, shaped)))]
    else:
        wanted = alerting_events(expected)
        checks = [(engine, (lambda runner=runner: events_verdict(wanted, runner(pushed, text, shaped), shaped)))
                  for engine, runner in ENGINES.get(target, [])]
    reasons = []
    for engine, check in checks:
        try:
            outcome = check()
            if outcome is None:
                return TargetVerdict(target, "unchecked", engine, "no check of this rule's form here")
            agree, detail, example, in_source = outcome
        except EngineUnavailable as exc:  # not installed: the next runner may stand in
            reasons.append(f"{engine}: {exc}")
            continue
        except EngineError as exc:  # installed but cannot run this rule: never guess
            return TargetVerdict(target, "unchecked", engine, f"engine error: {exc}")
        except Exception as exc:  # the engine itself failed
            return TargetVerdict(target, "unchecked", engine,
                                 f"engine error: {type(exc).__name__}: {str(exc)[:160]}")
        if agree:
            return TargetVerdict(target, "agree", engine, f"{len(events)} events, {detail}")
        if multi and target == "kql":
            from rmmc.verify.multi import caveats

            known = caveats(rule)
            if known:  # where the engine may rightly answer otherwise: no verdict
                return TargetVerdict(target, "unchecked", engine, f"{detail}; engine difference: {known[0]}")
        status = "approximate" if lossy else "disagree"
        detail += f" (as flagged: {lossy[0]})" if lossy else ""
        return TargetVerdict(target, status, engine, detail, example, in_source)
    why = "; ".join(reasons) if reasons else f"no engine for {target} can run here"
    return TargetVerdict(target, "unchecked", detail=why)


def _rows(rule: Rule, got: list[dict[str, Any]], expected: list[Any], events: list[dict[str, Any]]):
    from rmmc.verify.whole import same_rows

    agree, why = same_rows(rule, expected, got, events)
    if agree:
        return True, f"{len(expected)} rows alike", None, None
    # The event that shows it: one behind a row only one side has, when the rows still carry
    # the events' index (no project dropped it), else one behind the rule's first row.
    want = {i for row in expected for i in getattr(row, "sources", ())}
    have = {row[INDEX] for row in got if isinstance(row.get(INDEX), int)}
    if have or not expected:
        diff = sorted(want ^ have)
        if diff:
            return False, why, events[diff[0]], diff[0] in want
    example = next((events[i] for row in expected for i in sorted(getattr(row, "sources", ()))), None)
    return False, why, example, None




def verify_paths(paths: Iterable[str], targets: Iterable[str], options: EmitOptions = EmitOptions(),
                 sample: int = 40, env: Any = None) -> Iterator[RuleVerdict]:
    """One verdict per rule of every file under `paths` (a rule with errors gets `error`)."""
    from rmmc.compiler.documents import iter_rule_files, read_path
    from rmmc.compiler.pipeline import compile_document

    targets = list(targets)
    for path in iter_rule_files(paths):
        result = read_path(path)
        for d in result.diagnostics:
            if d.is_error:
                yield RuleVerdict(path, path, error=d.message)
        for document in result.documents:
            compiled = compile_document(document)
            label = document.label
            if compiled.rule is None:
                first = next((d.message for d in compiled.diagnostics if d.is_error), "not compiled")
                yield RuleVerdict(label, path, error=first)
                continue
            try:
                count, verdicts = verify_rule(compiled.rule, targets, options, sample, env)
            except Exception as exc:  # never a traceback: the rule is reported, the batch goes on
                yield RuleVerdict(label, path, error=f"internal error: {type(exc).__name__}: {exc}")
                continue
            yield RuleVerdict(label, path, count, tuple(verdicts))


__all__ = ["RuleVerdict", "STATUSES", "TargetVerdict", "verify_paths", "verify_rule"]
