"""What `rmmc verify` runs: does each translation select the events its source selects?

For each rule: events are generated around its values (`events.boundary_events`); the source
rule's meaning is the reference evaluator's; each translation runs on its target's engine
(`engines`).  The verdict per target:

* agree: the same events are selected;
* disagree: some event is selected by one and not the other, and the translation claimed to
  be exact (no lossy diagnostic): a bug, with the event that shows it;
* approximate: the translation differs, as its lossy diagnostics said it would;
* refused: the backend could not express the rule (its error says why);
* unchecked: no engine for the target here, the engine cannot run the rule (engine error:
  never replaced by rmmc's own reading), or the rule reads another table.

Only the detection is checked (lookback and output shaping are left out of both sides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from rmmc.backends.base import EmitOptions
from rmmc.compiler.ir import InSubquery, Rule, walk
from rmmc.verify.engines import ENGINES, EngineError, EngineUnavailable, condition_only
from rmmc.verify.events import boundary_events

STATUSES = ("agree", "disagree", "approximate", "refused", "unchecked")
# Field names for the targets that take a profile: the rule's own names (Defender columns,
# or Sigma names for a rule without a Defender table), so the generated events fit as they are.
VERIFY_FIELDS = {"eql", "esql", "splunk"}


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
                sample: int = 40) -> tuple[int, list[TargetVerdict]]:
    """(number of events, one verdict per target) for an IR rule."""
    from rmmc.backends import emit
    from rmmc.compiler.evaluator import matches

    checked = condition_only(rule)
    if options.apply_exclusions:
        checked = condition_only(rule.with_exclusions_applied())
    events = boundary_events(checked, sample=sample)
    subquery = any(isinstance(node, InSubquery) for node in walk(checked.condition))
    expected = [i for i, e in enumerate(events) if matches(checked, e)]
    verdicts = []
    for target in targets:
        fields = ("sigma" if checked.source.taxonomy == "sigma" else "defender") if target in VERIFY_FIELDS else None
        translation = emit(target, checked, EmitOptions(loose=options.loose), fields)
        if not translation.ok:
            reasons = "; ".join(d.message for d in translation.diagnostics if d.is_error)
            verdicts.append(TargetVerdict(target, "refused", detail=reasons))
            continue
        if subquery:
            verdicts.append(TargetVerdict(target, "unchecked", detail="the rule reads another table "
                                          "(in (T | ...)): its events cannot be generated here"))
            continue
        lossy = [d.message for d in translation.diagnostics if d.code == "lossy"]
        verdicts.append(_run(target, checked, translation.text, events, expected, lossy))
    return len(events), verdicts


def _run(target: str, rule: Rule, text: str, events: list[dict[str, Any]], expected: list[int],
         lossy: list[str]) -> TargetVerdict:
    reasons = []
    for engine, runner in ENGINES.get(target, []):
        try:
            got = runner(rule, text, events)
        except EngineUnavailable as exc:  # not installed: the next runner may stand in
            reasons.append(f"{engine}: {exc}")
            continue
        except EngineError as exc:  # installed but cannot run this rule: never guess
            return TargetVerdict(target, "unchecked", engine, f"engine error: {exc}")
        except Exception as exc:  # the engine itself failed
            return TargetVerdict(target, "unchecked", engine,
                                 f"engine error: {type(exc).__name__}: {str(exc)[:160]}")
        if got == expected:
            return TargetVerdict(target, "agree", engine, f"{len(events)} events, {len(expected)} selected")
        diff = sorted(set(got) ^ set(expected))
        example = events[diff[0]]
        status = "approximate" if lossy else "disagree"
        detail = (f"{len(diff)} of {len(events)} events differ"
                  + (f" (as flagged: {lossy[0]})" if lossy else ""))
        return TargetVerdict(target, status, engine, detail, example, diff[0] in expected)
    why = "; ".join(reasons) if reasons else f"no engine for {target} can run here"
    return TargetVerdict(target, "unchecked", detail=why)


def verify_paths(paths: Iterable[str], targets: Iterable[str], options: EmitOptions = EmitOptions(),
                 sample: int = 40) -> Iterator[RuleVerdict]:
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
                count, verdicts = verify_rule(compiled.rule, targets, options, sample)
            except Exception as exc:  # never a traceback: the rule is reported, the batch goes on
                yield RuleVerdict(label, path, error=f"internal error: {type(exc).__name__}: {exc}")
                continue
            yield RuleVerdict(label, path, count, tuple(verdicts))


__all__ = ["RuleVerdict", "STATUSES", "TargetVerdict", "verify_paths", "verify_rule"]
