"""A rule put into an environment: its columns under the environment's names and its values in
the environment's conventions, checked against the environment's schema, below every backend.

`adapt(rule, env)` takes the first source of `env` that fits the rule and returns the rule
rewritten so that a backend only writes what it is given:

* every test on a column becomes the environment's test (`forms`: a plain rename, or a value
  convention rewritten exactly, or flagged);
* the source's `filter` (e.g. Sysmon `EventCode: 1`) is ANDed into the detection;
* stages read the environment's fields; an output column named after a renamed column takes
  the environment's name (`summarize ... by DeviceName` -> `by Computer`), and one held in
  another form is computed from its field (`FileName` from `Image`);
* every field the result reads is checked against the source's `schema`: a field the target
  lacks, or a column the environment has no field for, is an error at the rule (with a "did
  you mean"), or, with `allow_unknown_fields`, a warning and the column's own name;
* `Adapted.placement` says where the events are (Splunk search prefix or data model, Elastic
  index, KQL table) and the time field;
* a field the environment lacks costs what the rule reads it for (`reads`): read by the
  detection, a filter, a key or a threshold, an error as above; read only as a summarize's
  group key, a lossy warning (written without that key with `--allow-lossy`); read only by the
  output (a `project` column, `make_set(ReportId)`), a shape warning, and the output column is
  left out.

Several sources (`ir.sub_rules`: union branches, a join's right side, a subquery) are adapted
the same way, each by its own source (its names, forms, filter, placement), recursively.  A
union's detection and filters read each branch's field where the branches name a column
alike, else they are moved into every branch; a later stage reads a column named alike in
every branch, else each branch computes it under the rule's own name (`extend C = ...`): see
`rmmc.environments.union`.  Join keys, mv-expand and parse columns are renamed.  `Target.parts` gives each sub-rule's
placement by its table, for the backends that place each source on its own (a Splunk search
per branch).

`Adapted.target_event(event)` writes a generated event (in the rule's own convention, put into
the forms' domains first by `normalize`) as the environment would hold it, which is what
`rmmc verify` runs the translation on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span, has_error
from rmmc.compiler.fast_replace import replace
from rmmc.environments.fieldsets import FieldSchema
from rmmc.environments.forms import (Basename, Context, Form, Hives, Joined, joined_parts,
                                     merge_joined, split_joined)
from rmmc.environments.model import TIME_COLUMNS, Environment, FieldSpec, Match, SourceMap
from rmmc.environments.plans import SourcePlan, Target, environment_reads, plan_for
from rmmc.compiler.extremes import aggregate_names, renamed_columns
from rmmc.environments.reads import (DECISIVE, GROUP, _table_columns, column_roles, joined_names, names_read,
                                    needed_after, output_names, right_outputs)

CODE = "environment"


@dataclass
class Adapted:
    """A rule put into an environment, with where it runs and what was said on the way."""

    rule: ir.Rule | None                      # None: refused (see diagnostics)
    environment: Environment
    source: SourceMap | None
    placement: Target = Target()
    diagnostics: list[Diagnostic] = field(default_factory=list)
    forms: dict[str, Form] = field(default_factory=dict)   # column -> its form (renames too)
    unknown: set[str] = field(default_factory=set)          # columns kept under their own name
    names: dict[str, str] = field(default_factory=dict)     # output column -> its name here
    parts: dict[str, "Adapted"] = field(default_factory=dict)  # table -> its sub-rules, adapted
    table: str | None = None                                # the table the rule itself reads

    @property
    def ok(self) -> bool:
        return self.rule is not None and not has_error(self.diagnostics)  # (a loop, see has_error)

    def output_name(self, name: str) -> str:
        """The name a column of the rule's output has here (`DeviceName` -> `Computer`)."""
        return self.names.get(name, name)

    # ---------------------------------------------------------------- events (verify)

    def _for(self, event: dict[str, Any]) -> "Adapted":
        """The adaptation that holds an event of a multi-table event set (tagged `ir.TABLE`)."""
        table = event.get(ir.TABLE)
        if table is None or table == self.table or table not in self.parts:
            return self
        return self.parts[table]

    def normalize(self, event: dict[str, Any]) -> dict[str, Any]:
        """A generated event put into the domain of every form (see `forms`)."""
        if self._for(event) is not self:
            return self._for(event).normalize(event)
        out = dict(event)
        for form in self.forms.values():
            form.normalize(out)
        return out

    def target_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as the environment holds it: its fields under the environment's names and
        values in its conventions, the source's filter fields set."""
        from rmmc.verify.whole import INDEX

        if self._for(event) is not self:
            return self._for(event).target_event(event)
        out: dict[str, Any] = {}
        if INDEX in event:
            out[INDEX] = event[INDEX]
        if ir.TABLE in event:
            out[ir.TABLE] = self.placement.table or event[ir.TABLE]
        for column in TIME_COLUMNS:
            if column in event:
                out[self.placement.time_field or self.environment.time_field] = event[column]
        for column, form in self.forms.items():
            form.to_env(event, out)
        for column in self.unknown:
            if column in event:
                out[column] = event[column]
        for name, values in self.source.filter if self.source else ():
            out.setdefault(name, values[0])  # a form may have said which of them
        dynamic = self.source.dynamic if self.source else ()
        for name in [n for n in out if any(n.startswith(d + ".") for d in dynamic)]:
            column, _, member = name.partition(".")
            out.setdefault(column, {})[member] = out.pop(name)
        return out


def adapt(rule: ir.Rule, env: Environment, allow_unknown_fields: bool = False) -> Adapted:
    """The rule in `env` (see the module docstring)."""
    said = []
    if env.external == "placeholder":  # a join with a feed as the feed test it is (feed_joins)
        from rmmc.environments.feed_joins import feed_joins

        rule, said = feed_joins(rule)
    made = _adapter(rule, env, allow_unknown_fields)
    result = made if isinstance(made, Adapted) else made.run()
    if said:
        result.diagnostics[:0] = said
    return result


def _adapter(rule: ir.Rule, env: Environment, allow_unknown: bool) -> "Adapter | Adapted":
    """The adapter of a (sub-)rule, or a refused `Adapted` when `env` has no source for it."""
    if rule.union is not None:
        branches = [_adapter(b, env, allow_unknown) for b in rule.union.branches]
        refused = [b for b in branches if isinstance(b, Adapted)]
        if refused:
            return Adapted(None, env, None, diagnostics=[d for b in refused for d in b.diagnostics])
        from rmmc.environments.union import UnionAdapter

        return UnionAdapter(rule, env, branches, allow_unknown)
    if rule.source.external is not None:  # its columns are its own: nothing to rename or check
        if not ir.sub_rules(rule):
            return Adapted(rule, env, None, Target(time_field=env.time_field))
        # a feed joined with (or testing) a table: the feed's columns as they are, the
        # table's sub-rule put into the environment as any
        columns = [name for name, _ in rule.source.external.columns]
        own = SourceMap(Match(), fields={n: FieldSpec(n, n) for n in columns}, declare=tuple(columns))
        target = Target(time_field=env.time_field)
        return Adapter(rule, env, own, target, allow_unknown, SourcePlan(own, rule.source.table, target))
    plan = plan_for(env, rule.source)
    if plan is None:
        what = (f"table {rule.source.table}" if rule.source.table else
                "logsource " + ", ".join(f"{k}: {v}" for k, v in (("product", rule.source.product),
                                                                   ("category", rule.source.category),
                                                                   ("service", rule.source.service)) if v))
        message = f"environment {env.name} has no source for {what} (it reads: {environment_reads(env)})"
        return Adapted(None, env, None, diagnostics=[Diagnostic(Severity.ERROR, message, rule.metadata.source_span,
                                                                CODE)])
    return Adapter(rule, env, plan.source, plan.target, allow_unknown, plan)


class Adapter:
    def __init__(self, rule: ir.Rule, env: Environment, source: SourceMap, target: Target,
                 allow_unknown: bool, plan: SourcePlan | None = None):
        """`plan`: what the rule's source (`source`, None for a union) answers for any rule over
        its table (`plans`)."""
        self.rule, self.env, self.source, self.target, self.plan = rule, env, source, target, plan
        self.allow_unknown = allow_unknown or env.unknown_fields == "warning"
        self.found: list[Diagnostic] = []
        self.table = rule.source.table
        self.schema: FieldSchema | None = plan.schema if plan is not None else None
        self.columns = _event_columns(rule)
        self.keep: set[str] = set()                # columns a union reads under the rule's name
        self.forced: dict[str, set[str]] = {}      # roles a union above reads columns in
        self.roles: dict[str, set[str]] = {}
        self.dropped: set[str] = set()             # missing columns only the output reads
        self.aliases: dict[str, str] = {}          # a join's right columns -> their names here
        self.parts: list[Adapted] = []
        self.unplaced: list[ir.InSubquery] = []    # subqueries over a source the environment lacks
        self.forms: dict[str, Form] = {}
        self.unknown: set[str] = set()
        self.missing: dict[str, str | None] = {}   # column -> why (explicitly absent) / None
        self.checked: set[str] = set()
        self._spans: dict[str, Span] | None = None  # `spans`, worked out when first asked
        self.names: dict[str, str] = {}
        self.ctx = Context(env.name, plan.subject if plan is not None else self.subject, self.found.append)
        self.profile = plan.profile if plan is not None else None

    @property
    def spans(self) -> dict[str, Span]:
        """Each column's first span in the detection (where a diagnostic about it points),
        worked out when a diagnostic first needs one: most rules need none."""
        if self._spans is None:
            self._spans = _first_spans(self.rule)
        return self._spans

    # ---------------------------------------------------------------- names

    def spec_for(self, column: str) -> FieldSpec | None:
        return self.plan.spec(column)

    def form(self, column: str) -> Form | None:
        """The form of a column, or None when it has no field here (reported once)."""
        if column in self.forms:
            return self.forms[column]
        if column in self.unknown or column in self.missing:
            return None
        form = self.plan.form(column)
        if form is None:
            spec = self.plan.spec(column)
            self.missing[column] = spec.absent if spec is not None else None
            if self.allow_unknown:
                self.unknown.add(column)
            return None
        self.forms[column] = form
        for name in self.plan.unknown_fields(column):  # (a name the field sets have: nothing to say)
            self.check(name, column)
        if isinstance(form, Joined):
            self.form(form.other)
        return form

    def check(self, name: str, column: str | None) -> None:
        if name in self.checked:
            return
        self.checked.add(name)
        if self.plan.knows(name):
            return
        suggestion = self.schema.suggest(name)
        hint = f" (did you mean {suggestion!r}?)" if suggestion and suggestion != name else ""
        if column and column != name:
            self.say(f"{column} is written {name!r}, which {self.where()} here do not have{hint}", column)
        else:
            self.say(f"no field {name!r} in {self.where()} here{hint}", column)

    def say(self, message: str, column: str | None) -> None:
        span = self.spans.get(column or "", self.rule.metadata.source_span)
        severity = Severity.WARNING if self.allow_unknown or self.env.unknown_fields == "warning" else Severity.ERROR
        suffix = " (written anyway: --allow-unknown-fields)" if severity is Severity.WARNING else \
            " (--allow-unknown-fields writes it anyway)"
        self.found.append(Diagnostic(severity, f"{self.env.name}: {message}{suffix}", span, CODE))

    def subject(self, name: str, type_: str) -> Any:
        """The IR expression reading environment field `name` (a member of a dynamic column is
        `tostring(EventData.Image)`)."""
        return self.plan.subject(name, type_)

    def rename(self, name: str) -> str:
        """An output column's name: a renamed column's takes the environment's name."""
        if name in self.aliases:
            return self.aliases[name]
        if name in self.keep:
            return name
        form = self.forms.get(name)
        if form is None and (name in self.columns or name in TIME_COLUMNS):
            form = self.form(name)
        elif form is None and self._table_has(name):
            # a column the rule makes, named like one of its table's (`extend Type = ...`): named
            # as the environment names that column, never looked up as a field the rule reads
            spec = self.spec_for(name)
            form = Form(spec) if spec is not None and spec.field is not None and spec.form == "rename" else None
        if form is not None and type(form) in (Form, Hives) and not self._member(form.field):
            self.names[name] = form.field
            return form.field
        return name

    def _table_has(self, name: str) -> bool:
        if self.table is None:
            return False
        from rmmc.compiler.schema import load_schema

        table = load_schema().table(self.table)
        return table is not None and table.column_type(name) is not None

    def _member(self, name: str) -> bool:
        return any(name.startswith(c + ".") for c in self.source.dynamic)

    # ---------------------------------------------------------------- conditions

    def condition(self, c: ir.Condition) -> ir.Condition:
        if isinstance(c, ir.Predicate):
            return self.predicate(c)
        if isinstance(c, ir.And):  # a node nothing below changed is kept (`ir.unchanged_operands`)
            parts = self.operands(c.operands)
            return c if ir.unchanged_operands(parts, c.operands, ir.And) else ir.all_of(parts)
        if isinstance(c, ir.Or):
            parts = self.operands(c.operands)
            return c if ir.unchanged_operands(parts, c.operands, ir.Or) else ir.any_of(parts)
        if isinstance(c, ir.Not):
            inner = self.condition(c.operand)
            if inner is c.operand and not isinstance(inner, ir.Const):
                return c
            return ir.Const(not inner.value) if isinstance(inner, ir.Const) else ir.Not(inner)
        if isinstance(c, ir.InSubquery):
            return self.subquery(c, set())
        if isinstance(c, ir.Compare):
            return replace(c, left=self.expr(c.left), right=self.expr(c.right))
        return c

    def operands(self, operands: tuple[ir.Condition, ...]) -> list[ir.Condition]:
        """`condition` of each operand (a predicate, most of them, straight to `predicate`)."""
        predicate, condition = self.predicate, self.condition
        return [predicate(o) if type(o) is ir.Predicate else condition(o) for o in operands]

    def subquery(self, c: ir.InSubquery, names: set[str]) -> ir.InSubquery:
        """`x in (T | ...)`: the subquery adapted by its own source, `x` renamed (a plain field)."""
        rule, column, table = c.rule, c.column, c.table
        if c.rule is not None and c.rule.union is None and c.rule.source.external is None \
                and self.env.source_for(c.rule.source) is None:
            self.unplaced.append(c)  # widened below, as a backend widens a subquery it cannot say
            return c
        entries = self.feed_entries(c) if c.rule is not None and getattr(c.field, "name", None) not in names else None
        if entries is not None:
            c = entries
            rule, column = c.rule, c.column
        if c.rule is not None:
            sub = self.child(c.rule, [c.column] if c.column else [], decisive=[c.column] if c.column else [])
            if sub is not None:
                rule, table = sub.rule, sub.rule.source.table
                column = sub.names.get(c.column, c.column) if c.column else None
        subject = c.field
        if entries is not None:
            pass  # already the field holding the column (feed_entries)
        elif isinstance(subject, ir.Field) and subject.name in names:
            subject = replace(subject, name=self.rename(subject.name))
        elif isinstance(subject, ir.Field):
            form = self.form(subject.name)
            if form is not None and type(form) in (Form, Hives) and not self._member(form.field):
                subject = ir.Field(form.field, subject.type)
            elif form is not None:
                self.found.append(Diagnostic(Severity.ERROR, f"{self.env.name}: {subject.name} in (...) "
                                             f"against another query: {subject.name} has no plain field here",
                                             c.span, CODE))
        else:
            subject = self.produced(subject, names) if names else self.expr(subject)
        return replace(c, field=subject, rule=rule, column=column, table=table)

    def feed_entries(self, c: ir.InSubquery) -> ir.InSubquery | None:
        """`x in (<feed>)` where the environment holds `x` inside a field (`Hashes` holds
        SHA256 as `SHA256=...`, `Image` the file name after its last `\\`): the test on that
        field against the feed's values written as the field holds them (`Form.feed_entries`:
        the subquery gains the stages that write them, so the reference evaluator, `rmmc
        placeholders` and `rmmc verify` all read the same list).  Only in an environment whose
        feeds are placeholders (its backend says such a test: `InSubquery.op`), only for a
        feed (a subquery over external tables), `in` / `in~`; None otherwise."""
        from rmmc.compiler.external import external_tables, reads_only_feeds
        from rmmc.compiler.kql.lower import lower_text
        from rmmc.compiler.rows import output_column

        field = c.field
        if (self.env.external != "placeholder" or not isinstance(field, ir.Field) or c.op is not ir.Op.EQUALS
                or field.type != "string" or not reads_only_feeds(c.rule) or not external_tables(c.rule)):
            return None
        form = self.form(field.name)
        column = c.column or output_column(c.rule)
        made = form.feed_entries(column) if form is not None and column else None
        if made is None or self._member(form.field):
            return None
        op, stages = made
        query = f"{c.query} {stages}"
        lowered = lower_text(query)
        if lowered.rule is None or has_error(lowered.diagnostics):
            return None
        return replace(c, field=ir.Field(form.field, "string"), op=op, query=query, rule=lowered.rule,
                       column=column)

    def child(self, rule: ir.Rule, outputs: Iterable[str], decisive: Iterable[str] = ()) -> "Adapted | None":
        """A sub-rule (a join's right side, a subquery) adapted by its own source; its
        diagnostics join this rule's.  `outputs`: its columns this rule reads, `decisive` those
        read by a key or a later filter (a missing one is an error there, never left out).
        None when it is refused."""
        made = _adapter(rule, self.env, self.allow_unknown)
        if not isinstance(made, Adapted):
            for column in decisive:
                made.forced.setdefault(column, set()).add(DECISIVE)
        result = made if isinstance(made, Adapted) else made.run(tuple(outputs))
        self.found.extend(d for d in result.diagnostics if d not in self.found)
        if result.rule is None:
            return None
        self.parts.append(result)
        return result

    def predicate(self, p: ir.Predicate) -> ir.Condition:
        subject = p.field
        if isinstance(subject, ir.Field):
            form = self.forms.get(subject.name) or self.form(subject.name)
            if form is None:
                return p  # unknown (reported): kept under its own name
            self.ctx.origin = p
            try:
                return form.forward(p, subject.type, self.ctx)
            finally:
                self.ctx.origin = None
        parts = joined_parts(subject)
        if parts is not None:
            first, _, last = parts
            a, b = self.form(first.name), self.form(last.name)
            if isinstance(a, Joined) and isinstance(b, Joined) and a.field == b.field:
                return replace(p, field=self.subject(a.field, "string"))
            split = split_joined(p, self.ctx)
            if split is not p:
                return self.condition(split)
        return replace(p, field=self.expr(subject))

    def expr(self, e: Any) -> Any:
        """An expression over the events' columns as one over the environment's fields."""
        if isinstance(e, ir.Field):
            form = self.form(e.name)
            return form.value(e.type, self.ctx) if form is not None else e
        if isinstance(e, ir.Call):
            return replace(e, args=tuple(self.expr(a) for a in e.args))
        if isinstance(e, ir.Boolean):
            return replace(e, condition=self.condition(e.condition))
        return e

    def produced(self, e: Any, names: set[str]) -> Any:
        """An expression over columns a stage made: only their names change."""
        if isinstance(e, ir.Field):
            return replace(e, name=self.rename(e.name)) if e.name in names else self.expr(e)
        if isinstance(e, ir.Call):
            return replace(e, args=tuple(self.produced(a, names) for a in e.args))
        if isinstance(e, ir.Boolean):
            return replace(e, condition=self.produced_condition(e.condition, names))
        return e

    def produced_condition(self, c: ir.Condition, names: set[str]) -> ir.Condition:
        if isinstance(c, ir.Predicate):
            subject = c.field
            if isinstance(subject, ir.Field) and subject.name in names:
                form = self.forms.get(subject.name)
                if form is not None and type(form) is not Form:
                    self.found.append(Diagnostic(
                        Severity.ERROR, f"{self.env.name}: a test on {subject.name} after an aggregation "
                        f"or projection: its values are in {self.env.name}'s convention there, and the "
                        "test is not rewritten", c.span, CODE))
                return replace(c, field=replace(subject, name=self.rename(subject.name)))
            return replace(c, field=self.produced(subject, names))
        if isinstance(c, (ir.And, ir.Or)):
            return type(c)(tuple(self.produced_condition(o, names) for o in c.operands))
        if isinstance(c, ir.Not):
            return ir.Not(self.produced_condition(c.operand, names))
        if isinstance(c, ir.Compare):
            return replace(c, left=self.produced(c.left, names), right=self.produced(c.right, names))
        if isinstance(c, ir.InSubquery):
            return self.subquery(c, names)
        return c

    # ---------------------------------------------------------------- stages

    def stages(self, stages: Iterable[ir.Stage]) -> tuple[ir.Stage, ...]:
        stages = tuple(stages)
        if not stages:
            return stages
        out: list[ir.Stage] = []
        made: set[str] = set()      # names the stages so far produced (they shadow columns)
        events = True               # whether event columns are still readable
        gone: set[str] = set()      # made columns left out (they read a dropped column)

        def lost(*nodes: Any) -> bool:
            """Whether an expression reads a column left out of the output."""
            return any(f.name in gone or (events and f.name not in made and f.name in self.dropped)
                       for node in nodes for f in ir.expr_fields(node))

        after = needed_after(stages)
        for k, stage in enumerate(stages):
            def ex(e: Any) -> Any:
                return self.produced(e, made) if (made or not events) else self.expr(e)

            if isinstance(stage, ir.Filter):
                cond = self.produced_condition(stage.condition, made) if (made or not events) else \
                    self.condition(stage.condition)
                out.append(replace(stage, condition=cond))
            elif isinstance(stage, (ir.Extend, ir.Project)):
                kept = [(n, e) for n, e in stage.columns if not lost(e)]
                gone |= {n for n, e in stage.columns if (n, e) not in kept}
                out.append(replace(stage, columns=tuple((self.rename(n), ex(e)) for n, e in kept)))
                if isinstance(stage, ir.Project):
                    made, events = {n for n, _ in stage.columns}, False
                else:
                    made |= {n for n, _ in stage.columns}
            elif isinstance(stage, ir.Summarize):
                group = [(n, e) for n, e in stage.group_by if not lost(e)]
                aggregates = [a for a in stage.aggregates if not lost(*a.args)]
                gone |= {n for n, e in stage.group_by if (n, e) not in group}
                gone |= {n for a in stage.aggregates if a not in aggregates for n in output_names(a)}
                keys = tuple((self.rename(n), ex(e)) for n, e in group)
                aggs = tuple(replace(a, name=self.rename(a.name) if a.name else a.name,
                                     args=tuple(ex(x) for x in a.args)) for a in aggregates)
                adapted = replace(stage, group_by=keys, aggregates=aggs)
                if aggregates == list(stage.aggregates):
                    # arg_max's columns are named after the fields it reads (Timestamp1 beside a
                    # key Timestamp): a suffixed one takes its name here, as a join's do
                    columns = _table_columns(self.rule)
                    for names, here in zip(aggregate_names(stage, columns),
                                           aggregate_names(adapted, [self.rename(c) for c in columns])):
                        for name, name_here in zip(names, here):
                            if name_here != self.rename(name):
                                self.aliases[name] = name_here
                out.append(adapted)
                star = any(isinstance(x, ir.Star) for a in stage.aggregates for x in a.args)
                made = {n for n, _ in stage.group_by} | {a.name for a in stage.aggregates if a.name}
                made |= {x.name for a in stage.aggregates if not a.name for x in a.args if isinstance(x, ir.Field)}
                made |= renamed_columns(stage, _table_columns(self.rule))
                events = star
            elif isinstance(stage, ir.Rename):
                pairs = [(new, old) for new, old in stage.pairs if old not in gone and not
                         (events and old not in made and old in self.dropped)]
                gone |= {new for new, old in stage.pairs if (new, old) not in pairs}
                out.append(replace(stage, pairs=tuple((self.rename(new), self.rename(old)) for new, old in pairs)))
                made |= {new for new, _ in stage.pairs}
            elif isinstance(stage, (ir.ProjectAway, ir.Reorder)):
                out.append(replace(stage, patterns=tuple(self.rename(p) for p in stage.patterns
                                                         if p not in gone and p not in self.dropped)))
            elif isinstance(stage, ir.Sort):
                out.append(replace(stage, keys=tuple(replace(k, expr=ex(k.expr)) for k in stage.keys)))
            elif isinstance(stage, ir.Join):
                out.append(self.join(stage, made, events, after[k], names_read(stages[k + 1:])))
                made |= set(self.aliases)
            elif isinstance(stage, ir.MvExpand):
                out.append(replace(stage, columns=tuple((self.rename(n), ex(e), t) for n, e, t in stage.columns)))
                made |= {n for n, _, _ in stage.columns}
            elif isinstance(stage, ir.Parse):
                out.append(replace(stage, source=ex(stage.source)))
                made |= set(stage.columns)
            else:
                out.append(stage)
        return tuple(out)

    def join(self, stage: ir.Join, made: set[str], events: bool, later: set[str], read: set[str]) -> ir.Join:
        """A join: its right side adapted by its own source, the keys renamed on both sides, and
        the right side's columns the stages after it read (`read`; `later`: those read
        decisively) known by their names here."""
        right_keys = [r for _, r in stage.keys]
        joined = joined_names(stage, sorted(made) if not events else [])
        if not joined and stage.kind not in ir.LEFT_ONLY_JOINS:  # neither stages nor schema say the right columns
            joined = {n: n for n in read if n not in made and not self.left_has(n)}
        added = {n: c for n, c in joined.items() if n in read}
        decisive = [*right_keys, *(c for n, c in added.items() if n in later)]
        sub = self.child(stage.right, [*right_keys, *added.values()], decisive)
        if sub is None:
            return stage
        keys = []
        for left, right in stage.keys:
            keys.append((self.key(left, stage.span), self.key(right, stage.span, sub)))
        for name, column in added.items():
            self.aliases[name] = sub.names.get(column, column) + name[len(column):]
        def known(names: tuple[str, ...] | None, side: Any) -> tuple[str, ...] | None:
            """The sides' schema columns under the names this environment gave those the rule
            reads (the others are not looked up: the rule does not read them)."""
            if names is None:
                return None
            return tuple(side.names.get(n) or (side.forms[n].field if type(side.forms.get(n)) in (Form, Hives)
                                               else n) for n in names)

        return replace(stage, right=sub.rule, keys=tuple(keys), left_columns=known(stage.left_columns, self),
                       right_columns=known(stage.right_columns, sub))

    def key(self, name: str, span: Span | None, side: "Adapted | None" = None) -> str:
        """A join key's name here (on the right side: in the sub-rule's adaptation); a key held
        in another form than a plain field cannot be matched as written: an error."""
        if side is None:
            renamed, form = self.rename(name), self.forms.get(name)
        else:
            renamed, form = side.names.get(name, name), side.forms.get(name)
        if form is not None and renamed == name and type(form) not in (Form, Hives) and form.field != name:
            side_name = "right side's " if side is not None else ""
            self.found.append(Diagnostic(Severity.ERROR, f"{self.env.name}: the join's {side_name}key {name} has no plain "
                                         f"field here (it is computed from {', '.join(form.fields())})",
                                         span, CODE))
        return renamed

    # ---------------------------------------------------------------- the rule

    def filters(self) -> Sequence[ir.Condition]:
        """The source's own tests (each field the field sets lack reported once)."""
        for name in self.plan.unknown_filter_fields:
            self.check(name, None)
        return self.plan.tests

    def prepare(self) -> None:
        """Which columns the rule reads where (`reads`), and which of them this environment lacks
        and only the output reads (left out): before any is rewritten."""
        if self.rule.stages:
            self.roles = column_roles(self.rule)
        else:  # only the detection and exclusions read columns: each of them decisively (one
            # set shared by all, never changed: what a union forces makes a new one below)
            self.roles = dict.fromkeys(self.columns, _DECISIVE)
        for column, roles in self.forced.items():
            self.roles[column] = {*self.roles.get(column, ()), *roles}
        for column in self.columns:
            self.form(column)
        if self.missing:  # (else none is: `missing` only grows)
            self.dropped = {c for c in self.missing if c not in self.unknown and self.roles.get(c)
                            and DECISIVE not in self.roles[c]}

    def run(self, outputs: tuple[str, ...] = ()) -> Adapted:
        """The adapted rule; `outputs`: columns an enclosing rule reads from it (a join's keys)."""
        rule = self.rule
        self.prepare()
        pairs = self._joined_pairs() if self.plan.first_parts else {}
        condition = self.condition(merge_joined(rule.condition, pairs) if pairs else rule.condition)
        # (most rules have no stages, exclusions, subqueries nor missing columns: what would
        # make nothing of them is not called)
        stages = self.stages(rule.stages) if rule.stages else rule.stages
        exclusions = tuple(replace(e, condition=self.condition(merge_joined(e.condition, pairs)))
                           if e.condition is not None else e for e in rule.exclusions) \
            if rule.exclusions else rule.exclusions
        for name in outputs:
            self.rename(name)
        if self.unplaced:
            condition, stages = self.widen_unplaced(condition, stages)
        filters = self.filters()
        if filters:
            condition = ir.all_of([*filters, condition])
        self.target = self.plan.filtered if self.target is self.plan.target else \
            replace(self.target, filter=self.plan.filter)
        if self.missing:
            self.report_missing()
        taxonomy = "sigma" if self.env.target == "sigma" else None
        table = self.target.table or rule.source.table
        source = rule.source
        if source.table != table or source.taxonomy != taxonomy:  # else it is the source as it is
            source = replace(source, table=table, taxonomy=taxonomy)
        # `replace(rule, ...)`, built from the rule's fields in order (tests/test_adapt_speedups.py
        # holds `ir.Rule` to these fields)
        adapted = ir.Rule(rule.metadata, source, condition, rule.lookback, exclusions, stages, rule.union)
        return self.result(adapted)

    def result(self, adapted: ir.Rule) -> Adapted:
        """The `Adapted` of this rule, with its sub-rules' placements and adaptations by table."""
        if not self.parts:  # one source: no sub-rules, and no placements by table
            target = self.target if not self.target.parts else replace(self.target, parts=())
            return Adapted(adapted, self.env, self.source, target, self.found, dict(self.forms), set(self.unknown),
                           dict(self.names), {}, self.table)
        parts: dict[str, Adapted] = {}
        placed: list[tuple[str, Target]] = []
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
        if self.table in parts:  # a sub-rule over this rule's own table (a self-join)
            same = parts.pop(self.table)
            forms, unknown = {**same.forms, **forms}, unknown | same.unknown
        return Adapted(adapted, self.env, self.source, target, self.found, forms, unknown,
                       dict(self.names), parts, self.table)

    def widen_unplaced(self, condition: ir.Condition, stages: tuple[ir.Stage, ...]) \
            -> tuple[ir.Condition, tuple[ir.Stage, ...]]:
        """Subqueries over a table the environment has no source for: dropped so the query matches
        more events (never fewer), each reported lossy (a backend that cannot say a subquery
        does the same)."""
        if not self.unplaced:
            return condition, stages
        from rmmc.backends.base import lossy
        from rmmc.backends.widen import widen

        def unplaced(node: Any) -> bool:
            return any(node is u for u in self.unplaced)

        replaced: list[Any] = []
        condition, found = widen(condition, unplaced)
        replaced += found
        out = []
        for stage in stages:
            if isinstance(stage, ir.Filter):
                widened, found = widen(stage.condition, unplaced)
                replaced += found
                stage = replace(stage, condition=widened)
            out.append(stage)
        for node in replaced:
            self.found.append(lossy(self.env.name, f"environment {self.env.name} has no source for table "
                                    f"{node.rule.source.table}: the subquery `in ({node.query})` cannot run "
                                    "here and is dropped, so the query matches more events (never fewer)",
                                    node.span, subject=node))
        return condition, tuple(out)

    def report_missing(self) -> None:
        """Each column this environment has no field for, by what the rule reads it for."""
        if not self.missing:
            return
        from rmmc.backends.base import lossy, shape

        for column, why in self.missing.items():
            span = self.spans.get(column, self.rule.metadata.source_span)
            reason = f" ({why})" if why else ""
            if column in self.unknown:
                self.say(f"{column} has no field in {self.where()}{reason}: written under its own name",
                         column)
                continue
            if column in self.dropped:
                if GROUP in self.roles.get(column, ()):
                    self.found.append(lossy(self.env.name, f"{column} has no field in {self.where()}{reason}: "
                                            f"the rule groups by it, and without it the rows group by its "
                                            "other keys, so other alerts fire (written without that key)",
                                            span, subject=ir.Field(column)))
                else:
                    self.found.append(shape(self.env.name, f"{column} has no field in {self.where()}{reason}: "
                                            "only the output reads it, so the output leaves it out", span))
                continue
            suggestion = self.schema.suggest(column) if self.schema is not None else None
            hint = f" (did you mean {suggestion!r}?)" if suggestion and suggestion != column and not why else ""
            self.found.append(Diagnostic(Severity.ERROR, f"{self.env.name}: {column} has no field in "
                                         f"{self.where()}{reason}{hint} "
                                         "(--allow-unknown-fields writes it under its own name)", span, CODE))

    def push(self, condition: ir.Condition) -> None:
        """AND a condition an enclosing union applies to this rule's rows."""
        rule = self.rule
        if rule.stages:
            rule = replace(rule, stages=(*rule.stages, ir.Filter(condition)))
        else:
            rule = replace(rule, condition=ir.all_of([rule.condition, condition]))
        self.reset(rule)

    def extend_kept(self, column: str, type_: str) -> None:
        """Output `column` under the rule's own name (an enclosing union reads it so in every
        branch, which hold it differently)."""
        self.keep.add(column)
        self.reset(replace(self.rule, stages=(*self.rule.stages, ir.Extend(((column, ir.Field(column, type_)),)))))

    def reset(self, rule: ir.Rule) -> None:
        self.rule = rule
        self.columns = _event_columns(rule)
        self._spans = None

    def left_has(self, column: str) -> bool:
        """Whether this rule's own source has the column (rmmc's schema, else the environment's
        field sets under the column's own name): to tell a join's sides apart."""
        from rmmc.compiler.schema import load_schema

        table = load_schema().table(self.table) if self.table is not None else None
        if table is not None:
            return column in TIME_COLUMNS or table.column_type(column) is not None
        return self.schema is None or self.schema.knows(column)

    def has_column(self, column: str) -> bool:
        """Whether this rule's rows have the column in the rule's own terms: a column its stages
        make, the time, or one its table has (a table rmmc's schema does not know: assumed)."""
        if column in TIME_COLUMNS or column in right_outputs(self.rule) or column in self.keep:
            return True
        if self.table is None:
            return True
        from rmmc.compiler.schema import load_schema

        table = load_schema().table(self.table)
        return table is None or table.column_type(column) is not None

    def output_form(self, column: str) -> Form | None:
        """How this rule's output holds `column` (for an enclosing union): a column its stages
        make keeps a plain name, an event column its form."""
        if column in right_outputs(self.rule):
            return Form(FieldSpec(column, self.rename(column)))
        return self.form(column)

    def where(self) -> str:
        """What the rule reads, for messages: its table, or its Sigma logsource."""
        src = self.rule.source
        if src.table:
            return f"{src.table} events"
        return "logsource " + ", ".join(f"{k}: {v}" for k, v in (("product", src.product),
                                        ("category", src.category), ("service", src.service)) if v)

    def _joined_pairs(self) -> dict[str, tuple[str, str, str]]:
        """The rule's columns that are the first part of a joined field, each with its pair."""
        return {c: pair for c, pair in self.plan.first_parts.items() if c in self.columns}


_DECISIVE = frozenset({DECISIVE})


def _event_columns(rule: ir.Rule) -> dict[str, ir.Field]:
    """Every event column the rule reads (detection, exclusions, and stages where no earlier
    stage made a column of that name), by name."""
    if not rule.stages and not rule.exclusions:  # the detection's columns (each once, in order)
        return ir.expr_field_map(rule.condition)
    out: dict[str, ir.Field] = {}
    made: set[str] = set()
    closed = False

    def read(*nodes: Any) -> None:
        if closed:
            return
        for node in nodes:
            for f in ir.expr_fields(node):
                if f.name not in made:
                    out.setdefault(f.name, f)

    read(rule.condition, *(e.condition for e in rule.exclusions if e.condition is not None))
    for stage in rule.stages:
        if isinstance(stage, ir.Filter):
            read(stage.condition)
        elif isinstance(stage, ir.Extend):
            read(*(e for _, e in stage.columns))
            made.update(n for n, _ in stage.columns)
        elif isinstance(stage, ir.Project):
            read(*(e for _, e in stage.columns))
            closed = True
        elif isinstance(stage, ir.Summarize):
            read(*(e for _, e in stage.group_by), *(x for a in stage.aggregates for x in a.args))
            closed = not any(isinstance(x, ir.Star) for a in stage.aggregates for x in a.args)
            made.update(n for n, _ in stage.group_by)  # with arg_max(T, *) the events' columns stay
            made.update(n for a in stage.aggregates if a.name for n in output_names(a))
            made.update(renamed_columns(stage, _table_columns(rule)))  # Timestamp1 beside a key Timestamp
        elif isinstance(stage, ir.Sort):
            read(*(k.expr for k in stage.keys))
        elif isinstance(stage, ir.Rename):
            made.update(new for new, _ in stage.pairs)
        elif isinstance(stage, ir.Join):
            read(*(ir.Field(left) for left, _ in stage.keys))
            joined = joined_names(stage)
            made.update(joined)
            # right columns nobody can list: a later name may be either side's (the adapter asks)
            closed = closed or (not joined and stage.kind not in ir.LEFT_ONLY_JOINS)
        elif isinstance(stage, ir.MvExpand):
            read(*(e for _, e, _ in stage.columns))
            made.update(n for n, _, _ in stage.columns)
        elif isinstance(stage, ir.Parse):
            read(stage.source)
            made.update(stage.columns)
    return out


def _merged(a: Adapted, b: Adapted) -> Adapted:
    """Two adaptations of rules over one table, as one (for shaping that table's events)."""
    return replace(a, forms={**b.forms, **a.forms}, unknown=a.unknown | b.unknown)


def _first_spans(rule: ir.Rule) -> dict[str, Span]:
    out: dict[str, Span] = {}
    for p in ir.walk_predicates(rule.condition):
        if p.span is None:
            continue
        if isinstance(p.field, ir.Field):  # most predicates: one column, read at once
            out.setdefault(p.field.name, p.span)
            continue
        for f in ir.expr_fields(p.field):
            out.setdefault(f.name, p.span)
    return out

