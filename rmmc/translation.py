"""Translation as a library: rule documents in, target text and located diagnostics out.

`translate_document` runs one document through lowering and one backend; `translate_text`
does it for the text of a file (any document kind, or bare KQL).  The CLI and content
pipelines use the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

# Imported here rather than in the functions that use them: each runs once per rule, and a
# `from package import name` in a function body runs the import machinery every time.
from rmmc.backends import FIELD_PROFILE_TARGETS, _unhandled, backend
from rmmc.backends.base import LOSSY_CODES, EmitOptions, placed_options, refuse_lossy
from rmmc.compiler.diagnostics import Diagnostic, Severity, has_error
from rmmc.compiler.documents import read_path, read_text
from rmmc.compiler.documents.model import RuleDocument
from rmmc.compiler.documents.sigma_yaml import SIGMA_KEY
from rmmc.compiler.fast_replace import replace
from rmmc.compiler.pipeline import compile_document
from rmmc.compiler.schema.profiles import identity
from rmmc.compiler.slots_init import fast_init
from rmmc.environments import environment_for
from rmmc.environments.adapt import adapt


EXACT, LOSSY, REFUSED = "exact", "lossy", "refused"
CORRELATION_SUFFIX = ".correlation.yml"


@dataclass(frozen=True, slots=True)
class RuleTranslation:
    """One rule translated to one target: `text` is empty when it could not be.  Its
    `verdict` is exact (written, nothing changes which alerts fire), lossy (written with
    `allow_lossy`, flagged), or refused (not written: it cannot be said, or it would fire
    differently and lossy translations were not allowed)."""

    document: RuleDocument | None
    target: str
    text: str
    diagnostics: tuple[Diagnostic, ...]
    companions: tuple[tuple[str, str], ...] = ()  # (file suffix, text) written beside the rule
    suffix: str | None = None  # the output file's suffix when not the target's usual one

    @property
    def ok(self) -> bool:
        return bool(self.text) and not has_error(self.diagnostics)

    @property
    def title(self) -> str | None:
        return self.document.title if self.document is not None else None

    @property
    def stream(self) -> str:
        """The text with its correlation companion after it (one Sigma YAML stream): what goes
        to standard output, where there is one stream."""
        extra = [t for suffix, t in self.companions if suffix == CORRELATION_SUFFIX]
        return "---\n".join([self.text, *extra]) if self.text and extra else self.text

    @property
    def verdict(self) -> str:
        if not self.ok:
            return REFUSED
        for d in self.diagnostics:  # a loop, not any() over a generator: asked of every rule
            if d.code in LOSSY_CODES:
                return LOSSY
        return EXACT


def translate_document(document: RuleDocument, to: str, options: EmitOptions = EmitOptions(),
                       schema: Any = "default", fields: str | None = None,
                       package: bool = False, env: Any = None,
                       allow_unknown_fields: bool = False, schedule: Any = None) -> RuleTranslation:
    """One rule to one target; with `package`, wrapped as a ready-to-import rule (Elastic
    ndjson, Splunk savedsearches.conf stanza, Sentinel analytic-rule YAML).

    The rule is first put into `env` (an `rmmc.environments.Environment`, a built-in's name or
    a file path; None: the target's default environment): the environment's names, value
    conventions and schema (`rmmc.environments.adapt`).  A field the environment lacks is an
    error unless `allow_unknown_fields`.  `fields` (a field profile, the old `--fields`) skips
    environments and names fields by that profile, with a note that it is deprecated."""
    return translate_compiled(compile_document(document, schema), to, options, fields, package,
                              env, allow_unknown_fields, schedule)


def translate_compiled(compiled, to: str, options: EmitOptions = EmitOptions(),
                       fields: str | None = None, package: bool = False, env: Any = None,
                       allow_unknown_fields: bool = False, schedule: Any = None) -> RuleTranslation:
    """`translate_document` for a document compiled already (`rmmc build` compiles each rule
    once and translates it to every target).  With `package`, the query is written over the
    package's window (`rmmc.packaging.schedule`: `schedule`, a `Schedule` or its text, else
    the environment's, else 5m + 1m)."""
    document = compiled.document
    diagnostics = list(compiled.diagnostics)
    if compiled.rule is None:
        return RuleTranslation(document, to, "", tuple(diagnostics))
    rule, plan = compiled.rule, None
    if package and to != "sigma":
        rule, plan = _planned(rule, to, env if fields is None else None, schedule)

    def attempt(candidate) -> _Outcome:
        return _attempt(candidate, to, options, fields, env, allow_unknown_fields, document, plan)

    try:
        outcome = attempt(rule)
        if has_error(outcome.found):
            outcome = _without_output_columns(rule, to, attempt, outcome, document.path)
    except Exception as exc:  # a backend bug must not stop a batch
        diagnostics.append(Diagnostic(Severity.ERROR, f"internal error in the {to} backend: "
                                      f"{type(exc).__name__}: {exc}", document.query_span,
                                      "internal", document.path))
        return RuleTranslation(document, to, "", tuple(diagnostics))
    diagnostics.extend(outcome.found)
    text = outcome.text if not has_error(diagnostics) else ""
    placement, emitted, entities = outcome.placement, outcome.emitted, outcome.entities
    companions: tuple[tuple[str, str], ...] = ()
    if text and to == "sigma":
        text, correlation = split_correlation(text)
        if correlation:
            companions += ((CORRELATION_SUFFIX, correlation),)
        companions += _sigma_filters(compiled.rule, options, diagnostics, document)
    suffix = None
    if package and text:
        from rmmc.packaging import package as wrap

        suffix, text, notes = wrap(emitted, to, text, index=getattr(placement, "index", None),
                                   plan_=plan, table=getattr(placement, "table", None),
                                   entities=entities)
        diagnostics.extend(d if d.path else d.with_path(document.path) for d in notes)
        if has_error(notes):  # a package its platform would not import
            text = ""
        elif to == "splunk":  # the lookups it reads: their definitions and manifest beside it
            from rmmc.packaging.splunk import lookup_companions

            companions += lookup_companions(emitted)
    return RuleTranslation(document, to, text, tuple(diagnostics), companions, suffix)


def _planned(rule, to: str, env: Any, schedule: Any):
    """(the rule over its package window, the package plan): `schedule` (a `Schedule` or its
    `INTERVAL[+OVERLAP]` text), else the environment's `schedule:`, else the default."""
    from rmmc.environments.model import parse_schedule
    from rmmc.packaging import plan, scheduled_rule

    if isinstance(schedule, str):
        parsed = parse_schedule(schedule)
        if isinstance(parsed, str):
            raise ValueError(parsed)
        schedule = parsed
    if schedule is None:
        try:
            schedule = environment_for(to, env).schedule
        except Exception:  # a bad environment is reported where it is adapted
            schedule = None
    chosen = plan(rule, schedule)
    return scheduled_rule(rule, chosen), chosen


class _Outcome(NamedTuple):
    """One rule put into the environment and emitted: its diagnostics, its text (empty when a
    diagnostic is an error), where the events are, the rule as emitted, its entity fields."""

    found: list[Diagnostic]
    text: str
    placement: Any
    emitted: Any
    entities: tuple


def _attempt(rule, to: str, options: EmitOptions, fields: str | None, env: Any,
             allow_unknown_fields: bool, document: RuleDocument, plan: Any = None) -> _Outcome:
    """`rule` put into the environment and emitted (lossy diagnostics are errors unless allowed)."""
    found: list[Diagnostic] = []
    placement, emitted, entities = None, rule, ()
    if fields is not None and env is None:
        result = _emit_with_profile(to, rule, options, fields)
    else:
        adapted = _adapt(rule, to, env, allow_unknown_fields)
        emitted = adapted.rule
        if plan is not None and adapted.ok and to in ("splunk", "eql", "esql"):
            from rmmc.packaging.columns import entity_fields

            entities = entity_fields(rule, adapted.environment)
        found.extend(_located(adapted.diagnostics, document.path, options))
        if not adapted.ok:
            return _Outcome(found, "", None, emitted, entities)
        placement = adapted.placement
        result = emit_adapted(to, adapted, options)
    found.extend(_located(result.diagnostics, document.path, options))
    return _Outcome(found, result.text if not has_error(found) else "", placement,
                    emitted, entities)


def _located(diagnostics, path: str | None, options: EmitOptions) -> list[Diagnostic]:
    """The diagnostics of adapting or emitting a rule, about its file (the compiled rule's spans
    are in file coordinates already: only the path is added), each lossy warning an error
    unless lossy translations are allowed.  Most rules have none: nothing to copy then."""
    if not diagnostics:
        return []
    said = [d if d.path else d.with_path(path) for d in diagnostics]
    return said if options.allow_lossy else refuse_lossy(said)


def _without_output_columns(rule, to: str, attempt, refused, path: str | None = None):
    """A refused rule retried without columns it computes or keeps only for output
    (`rmmc.compiler.outputs`): when the target can then write it, the same alerts fire and only
    the output lacks those columns, each named in a `shape` warning with why it was dropped.
    All such columns are dropped at once (a Project keeps one of its own), then given back one by one
    where the target can write them.  Else it is refused for what stops it then.

    A rule without stages or union (every Sigma rule but a correlation) has no column of its
    own, so there is nothing to drop and it stays refused as it is, without the retry's
    imports and walks (`_dropping_output_columns` finds no column and gives `refused` back)."""
    if rule.union is None and not rule.stages:
        return refused
    return _dropping_output_columns(rule, to, attempt, refused, path)


def _dropping_output_columns(rule, to: str, attempt, refused, path: str | None = None):
    """`_without_output_columns` for a rule that may have columns of its own."""
    from rmmc.backends.base import shape
    from rmmc.compiler.outputs import closure, definitions, drop, widest

    def errors(outcome) -> tuple[str, ...]:
        return tuple(d.message for d in outcome.found if d.is_error)

    if rule.union is not None:  # a union's only output-only column: its withsource label
        from rmmc.compiler.outputs import without_union_label

        smaller = without_union_label(rule)
        current = attempt(smaller) if smaller is not None else refused
        if errors(current):
            return refused
        note = shape(to, f"the output column {rule.union.withsource} (each row's table) is dropped "
                         f"({errors(refused)[0]}): no filter, key, count or sort reads it, so the same "
                         "alerts fire; only the output lacks it", rule.union.span)
        return current._replace(found=[*current.found, note.with_path(path) if path and not note.path else note])
    defs = definitions(rule)
    first = None
    for choice in range(3):  # which column a Project keeps: its first plain one, else the next
        dropped = widest(rule, defs, choice)
        if dropped is None:
            break
        current = attempt(drop(rule, defs, dropped))
        if not errors(current):
            break
        first = first or current
    else:
        dropped = None
    if dropped is None or errors(current):  # still refused: say what stops it without them
        return first if first is not None and errors(first) != errors(refused) else refused
    why: dict[int, str] = {}
    for i in sorted(dropped):
        kept = dropped - {i}
        if closure(defs, kept) != kept:
            continue  # computed from a column still dropped
        smaller = drop(rule, defs, kept)
        outcome = attempt(smaller) if smaller is not None else refused
        if errors(outcome):
            why[i] = errors(outcome)[0]
        else:
            dropped, current = kept, outcome
    notes = []
    for i in sorted(j for j in dropped if j in why):
        d = defs[i]
        what = d.text
        also = sorted({defs[j].name for j in closure(defs, [i]) & dropped if j not in why} - {d.name})
        with_it = f", and with it {', '.join(also)}" if also else ""
        notes.append(shape(to, f"the output column {what} is dropped ({why[i]}){with_it}: no "
                               "filter, key, count or sort reads it, so the same alerts fire; only "
                               "the output lacks it", getattr(rule.stages[d.stage], "span", None)))
    notes = [n.with_path(path) if path and not n.path else n for n in notes]
    return current._replace(found=[*current.found, *notes])


def _adapt(rule, to: str, env: Any, allow_unknown_fields: bool):
    return adapt(rule, environment_for(to, env), allow_unknown_fields)


def emit_adapted(to: str, adapted: Any, options: EmitOptions):
    """Run the backend on a rule an environment has put into its names: every column is written
    as it is (the identity naming), the time column is the environment's, and the backend gets
    where the events are (`EmitOptions.placement`)."""
    refused = _unhandled(to, adapted.rule)  # a construct the backend does not declare it writes
    if refused is not None:
        return refused
    options = placed_options(options, adapted.placement, adapted.environment.external)
    function = backend(to)
    if to == "splunk":
        return function(adapted.rule, options, fields="defender")
    if to in FIELD_PROFILE_TARGETS:
        return function(adapted.rule, options, fields=identity(adapted.placement.time_field))
    return function(adapted.rule, options)


FIELD_ALIASES = {("splunk", "sigma"): "splunk-sysmon", ("splunk", "cim"): "splunk-cim",
                 ("eql", "ecs"): "elastic-endpoint", ("esql", "ecs"): "elastic-endpoint"}


def _emit_with_profile(to: str, rule, options: EmitOptions, fields: str):
    """The deprecated `--fields PROFILE`: names from a field profile, no environment."""
    from dataclasses import replace as copy

    from rmmc.backends import emit
    from rmmc.backends.base import note

    result = emit(to, rule, options, fields)
    instead = FIELD_ALIASES.get((to, fields))
    advice = f"--env {instead}" if instead else "--env (see `rmmc translate --help`)"
    deprecated = note(to, f"--fields {fields} is deprecated: field names, value conventions and "
                          f"where the data lives now come from an environment ({advice})")
    return copy(result, diagnostics=(*result.diagnostics, deprecated))


def translate_file(path: str, to: str, options: EmitOptions = EmitOptions(),
                   fields: str | None = None, package: bool = False, env: Any = None,
                   allow_unknown_fields: bool = False, schedule: Any = None) -> list[RuleTranslation]:
    """Every rule of one file (`-` is standard input) translated, in file order.  A file
    that cannot be read gives one failed result holding why; one that simply holds no query
    (a Markdown summary) gives none.  `rmmc translate` runs this once per file, in this
    process or in a worker (`rmmc.parallel`)."""
    read = read_path(path)
    results = []  # one loop (a list comprehension is a frame of its own, per file)
    for document in read.documents:
        results.append(translate_document(document, to, options, fields=fields, package=package,
                                          env=env, allow_unknown_fields=allow_unknown_fields,
                                          schedule=schedule))
        _drop_read_rule(document)
    if not read.documents and has_error(read.diagnostics):
        results.append(RuleTranslation(None, to, "", tuple(read.diagnostics)))
    return results


def _drop_read_rule(document: RuleDocument) -> None:
    """A Sigma document carries its read rule for compilation; once translated it is dead
    weight (and would travel back from a worker process).  It is taken out of the document's
    own metadata: the Sigma reader makes that dict for the document alone and the file's read
    result goes no further than `translate_file`, so no copy of the document (and of the result
    holding it) is needed."""
    if SIGMA_KEY in document.metadata:
        del document.metadata[SIGMA_KEY]


def file_failed(path: str, message: str, to: str) -> list[RuleTranslation]:
    """The result of a file whose translation failed unexpectedly (a bug, a dead worker)."""
    return [RuleTranslation(None, to, "", (Diagnostic(
        Severity.ERROR, f"internal error while translating this file: {message}", None,
        "internal", path),))]


def split_correlation(stream: str) -> tuple[str, str]:
    """A Sigma stream rmmc wrote (the rule, then its correlation when it has one) as (rule,
    correlation): the correlation goes to its own file, `<rule>.correlation.yml`, so a Sigma
    backend without correlations still converts the rule, and pySigma loads both files together
    (the correlation names the rule).  Our dumper writes each document as a top-level mapping,
    so a line `---` is always a document separator."""
    head, sep, tail = stream.partition("\n---\n")
    return (head + "\n", tail) if sep else (stream, "")


def _sigma_filters(rule, options: EmitOptions, diagnostics: list[Diagnostic],
                   document: RuleDocument) -> tuple[tuple[str, str], ...]:
    """Understood exclusions as a Sigma filter file beside the rule (pySigma applies the
    filters it loads, so they must not share the rule's stream unless asked to apply)."""
    if options.apply_exclusions or not any(e.condition is not None for e in rule.exclusions):
        return ()
    from rmmc.backends.sigma.backend import emit_sigma_filters

    filters = emit_sigma_filters(rule, options)
    if not filters.text or has_error(filters.diagnostics):
        diagnostics.extend(d.with_path(document.path) for d in filters.diagnostics if d.is_error)
        return ()
    return ((".filters.yml", filters.text),)


def translate_text(text: str, to: str = "sigma", path: str = "<text>", loose: bool = False,
                   apply_exclusions: bool = False, schema: Any = "default",
                   fields: str | None = None, package: bool = False,
                   allow_lossy: bool = False, env: Any = None,
                   allow_unknown_fields: bool = False) -> list[RuleTranslation]:
    """Translate every rule of a text (bare KQL or a rule document), one result per rule."""
    options = EmitOptions(loose=loose, apply_exclusions=apply_exclusions, allow_lossy=allow_lossy)
    result = read_text(text, path)
    if env is not None and not hasattr(env, "sources"):
        env = environment_for(to, env)  # once for the text (EnvironmentError: a bad environment)
    out = [translate_document(doc, to, options, schema, fields, package, env, allow_unknown_fields)
           for doc in result.documents]
    if not result.documents:
        out.append(RuleTranslation(None, to, "", tuple(result.diagnostics)))
    return out


@dataclass(frozen=True)
class TranslationResult:
    """All the rules of one text translated: the output text (Sigma documents separated by
    `---`, KQL queries by a blank line), every diagnostic, and the per-rule results."""

    text: str
    diagnostics: tuple[Diagnostic, ...]
    rules: tuple[RuleTranslation, ...]

    @property
    def ok(self) -> bool:
        return bool(self.rules) and all(r.ok for r in self.rules)

    @property
    def counts(self) -> dict[str, int]:
        """How many rules translated exactly, lossily (only with `allow_lossy`), or were refused."""
        return verdict_counts(self.rules)


def verdict_counts(results) -> dict[str, int]:
    counts = {EXACT: 0, LOSSY: 0, REFUSED: 0}
    for r in results:
        counts[r.verdict] += 1
    return counts


def translate(text: str, to: str = "sigma", *, path: str = "<text>", loose: bool = False,
              apply_exclusions: bool = False, fields: str | None = None,
              package: bool = False, allow_lossy: bool = False, env: Any = None,
              allow_unknown_fields: bool = False) -> TranslationResult:
    """Translate the rule(s) in `text` to `to` (see `rmmc.backends.targets()`): the library's
    entry point.  `env` is the environment (`rmmc.environments`: a built-in's name, a file
    path or a loaded one; None: the target's default); `fields` the deprecated field profile;
    `package` wraps each query as a ready-to-import rule (as `rmmc translate --package`).  A
    translation that would change which alerts fire is refused unless `allow_lossy` (then
    written, flagged); one that reads a field the environment lacks unless
    `allow_unknown_fields` (then written, warned)."""
    rules = tuple(translate_text(text, to, path, loose, apply_exclusions, fields=fields,
                                 package=package, allow_lossy=allow_lossy, env=env,
                                 allow_unknown_fields=allow_unknown_fields))
    separator = "\n---\n" if to == "sigma" else "\n\n"
    body = separator.join(r.stream.rstrip("\n") for r in rules if r.text)
    diagnostics = tuple(d for r in rules for d in r.diagnostics)
    return TranslationResult(body + "\n" if body else "", diagnostics, rules)


fast_init(RuleTranslation)  # made per rule: fields stored through their slots (`rmmc.compiler.slots_init`)
