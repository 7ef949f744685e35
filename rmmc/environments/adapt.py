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
  index, KQL table) and the time field.

`Adapted.target_event(event)` writes a generated event (in the rule's own convention, put into
the forms' domains first by `normalize`) as the environment would hold it, which is what
`rmmc verify` runs the translation on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from rmmc.compiler import ir
from rmmc.compiler.diagnostics import Diagnostic, Severity, Span
from rmmc.environments.fieldsets import FieldSchema, schema_for
from rmmc.environments.forms import (Basename, Context, Form, Hives, Joined, form_of, joined_parts,
                                     merge_joined, split_joined)
from rmmc.environments.model import TIME_COLUMNS, Environment, FieldSpec, Placement, SourceMap

CODE = "environment"
_CONVERT = {"string": "tostring", "guid": "tostring", "int": "toint", "long": "tolong", "real": "todouble",
            "bool": "tobool", "datetime": "todatetime"}


@dataclass(frozen=True)
class Target:
    """Where the events are and their time field: what a backend needs besides the rule."""

    search: str | None = None
    datamodel: str | None = None
    index: str | None = None
    table: str | None = None
    time_field: str | None = None


@dataclass
class Adapted:
    rule: ir.Rule | None                      # None: refused (see diagnostics)
    environment: Environment
    source: SourceMap | None
    placement: Target = Target()
    diagnostics: list[Diagnostic] = field(default_factory=list)
    forms: dict[str, Form] = field(default_factory=dict)   # column -> its form (renames too)
    unknown: set[str] = field(default_factory=set)          # columns kept under their own name
    names: dict[str, str] = field(default_factory=dict)     # output column -> its name here

    @property
    def ok(self) -> bool:
        return self.rule is not None and not any(d.is_error for d in self.diagnostics)

    def output_name(self, name: str) -> str:
        """The name a column of the rule's output has here (`DeviceName` -> `Computer`)."""
        return self.names.get(name, name)

    # ---------------------------------------------------------------- events (verify)

    def normalize(self, event: dict[str, Any]) -> dict[str, Any]:
        """A generated event put into the domain of every form (see `forms`)."""
        out = dict(event)
        for form in self.forms.values():
            form.normalize(out)
        return out

    def target_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as the environment holds it: its fields under the environment's names and
        values in its conventions, the source's filter fields set."""
        from rmmc.verify.whole import INDEX

        out: dict[str, Any] = {}
        if INDEX in event:
            out[INDEX] = event[INDEX]
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
    source = env.source_for(rule.source)
    where = rule.metadata.source_span
    if source is None:
        what = (f"table {rule.source.table}" if rule.source.table else
                "logsource " + ", ".join(f"{k}: {v}" for k, v in (("product", rule.source.product),
                                                                   ("category", rule.source.category),
                                                                   ("service", rule.source.service)) if v))
        takes = []
        for s in env.sources:
            for item in (s.match.table or ()) if s.match.by_table else [s.match.describe()]:
                if item not in takes:
                    takes.append(item)
        message = f"environment {env.name} has no source for {what} (it reads: {', '.join(takes)})"
        return Adapted(None, env, None, diagnostics=[Diagnostic(Severity.ERROR, message, where, CODE)])
    place = env.place.merged(source.place)
    target = Target(place.search, place.datamodel, place.index, place.table, source.time_field or env.time_field)
    return _Adapter(rule, env, source, target, allow_unknown_fields).run()


class _Adapter:
    def __init__(self, rule: ir.Rule, env: Environment, source: SourceMap, target: Target,
                 allow_unknown: bool):
        self.rule, self.env, self.source, self.target = rule, env, source, target
        self.allow_unknown = allow_unknown or env.unknown_fields == "warning"
        self.found: list[Diagnostic] = []
        self.table = rule.source.table
        self.schema: FieldSchema = schema_for(source.schema, source.declare, source.members,
                                              source.dynamic, self.table)
        self.columns = _event_columns(rule)
        self.forms: dict[str, Form] = {}
        self.unknown: set[str] = set()
        self.missing: dict[str, str | None] = {}   # column -> why (explicitly absent) / None
        self.checked: set[str] = set()
        self.spans: dict[str, Span] = _first_spans(rule)
        self.names: dict[str, str] = {}
        self.ctx = Context(env.name, self.subject, self.found.append)
        self.profile = None
        if source.names:
            from rmmc.compiler.schema.profiles import load_profile

            self.profile = load_profile(source.names)

    # ---------------------------------------------------------------- names

    def spec_for(self, column: str) -> FieldSpec | None:
        if column in TIME_COLUMNS:
            return FieldSpec(column, self.target.time_field)
        spec = self.source.fields.get(column)
        if spec is not None:
            return spec
        if self.profile is not None:
            mapped = self.profile.field(self.table, column)
            if mapped is not None:
                return FieldSpec(column, mapped)
        if self.source.others is not None:
            return FieldSpec(column, self.source.others.replace("{name}", column))
        return None

    def form(self, column: str) -> Form | None:
        """The form of a column, or None when it has no field here (reported once)."""
        if column in self.forms:
            return self.forms[column]
        if column in self.unknown or column in self.missing:
            return None
        spec = self.spec_for(column)
        if spec is None or spec.field is None:
            self.missing[column] = spec.absent if spec is not None else None
            if self.allow_unknown:
                self.unknown.add(column)
            return None
        if isinstance(spec.field, str) and spec.form == "basename":
            path = next((c for c, s in self.source.fields.items() if s.field == spec.field and s.form in ("rename", "hives")),
                        None) or _profile_column(self.profile, self.table, spec.field)
            spec = replace(spec, options={**spec.options, "path": path})
        form = form_of(spec)
        self.forms[column] = form
        for name in form.fields():
            self.check(name, column)
        if isinstance(form, Joined):
            self.form(form.other)
        return form

    def check(self, name: str, column: str | None) -> None:
        if name in self.checked:
            return
        self.checked.add(name)
        if self.schema.knows(name):
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
        for column in self.source.dynamic:
            if name.startswith(column + "."):
                member = ir.Call("member", (ir.Field(column, "dynamic"), ir.Literal(name[len(column) + 1:])),
                                 "dynamic")
                function = _CONVERT.get(type_)
                return ir.Call(function, (member,), "string" if function == "tostring" else type_) if function else member
        return ir.Field(name, type_)

    def rename(self, name: str) -> str:
        """An output column's name: a renamed column's takes the environment's name."""
        form = self.forms.get(name) or (self.form(name) if name in self.columns or name in TIME_COLUMNS
                                        or self._table_has(name) else None)
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
        if isinstance(c, ir.And):
            return ir.all_of([self.condition(o) for o in c.operands])
        if isinstance(c, ir.Or):
            return ir.any_of([self.condition(o) for o in c.operands])
        if isinstance(c, ir.Not):
            inner = self.condition(c.operand)
            return ir.Const(not inner.value) if isinstance(inner, ir.Const) else ir.Not(inner)
        if isinstance(c, ir.InSubquery):
            form = self.form(c.field.name)
            if form is None:
                return c
            if type(form) not in (Form, Hives):
                self.found.append(Diagnostic(Severity.ERROR, f"{self.env.name}: {c.field.name} in (...) "
                                             f"against another query: {c.field.name} has no plain field here",
                                             c.span, CODE))
                return c
            return replace(c, field=ir.Field(form.field, c.field.type))
        if isinstance(c, ir.Compare):
            return replace(c, left=self.expr(c.left), right=self.expr(c.right))
        return c

    def predicate(self, p: ir.Predicate) -> ir.Condition:
        subject = p.field
        if isinstance(subject, ir.Field):
            form = self.form(subject.name)
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
        return c

    # ---------------------------------------------------------------- stages

    def stages(self, stages: Iterable[ir.Stage]) -> tuple[ir.Stage, ...]:
        out: list[ir.Stage] = []
        made: set[str] = set()      # names the stages so far produced (they shadow columns)
        events = True               # whether event columns are still readable
        for stage in stages:
            def ex(e: Any) -> Any:
                return self.produced(e, made) if (made or not events) else self.expr(e)

            if isinstance(stage, ir.Filter):
                cond = self.produced_condition(stage.condition, made) if (made or not events) else \
                    self.condition(stage.condition)
                out.append(replace(stage, condition=cond))
            elif isinstance(stage, ir.Extend):
                out.append(replace(stage, columns=tuple((self.rename(n), ex(e)) for n, e in stage.columns)))
                made |= {n for n, _ in stage.columns}
            elif isinstance(stage, ir.Project):
                out.append(replace(stage, columns=tuple((self.rename(n), ex(e)) for n, e in stage.columns)))
                made, events = {n for n, _ in stage.columns}, False
            elif isinstance(stage, ir.Summarize):
                keys = tuple((self.rename(n), ex(e)) for n, e in stage.group_by)
                aggs = tuple(replace(a, name=self.rename(a.name) if a.name else a.name,
                                     args=tuple(ex(x) for x in a.args)) for a in stage.aggregates)
                out.append(replace(stage, group_by=keys, aggregates=aggs))
                star = any(isinstance(x, ir.Star) for a in stage.aggregates for x in a.args)
                made = {n for n, _ in stage.group_by} | {a.name for a in stage.aggregates if a.name}
                made |= {x.name for a in stage.aggregates if not a.name for x in a.args if isinstance(x, ir.Field)}
                events = star
            elif isinstance(stage, ir.Rename):
                out.append(replace(stage, pairs=tuple((self.rename(new), self.rename(old)) for new, old in stage.pairs)))
                made |= {new for new, _ in stage.pairs}
            elif isinstance(stage, (ir.ProjectAway, ir.Reorder)):
                out.append(replace(stage, patterns=tuple(self.rename(p) for p in stage.patterns)))
            elif isinstance(stage, ir.Sort):
                out.append(replace(stage, keys=tuple(replace(k, expr=ex(k.expr)) for k in stage.keys)))
            else:
                out.append(stage)
        return tuple(out)

    # ---------------------------------------------------------------- the rule

    def filters(self) -> list[ir.Condition]:
        out = []
        for name, values in self.source.filter:
            self.check(name, None)
            numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            subject = self.subject(name, "long" if numeric else "string")
            out.append(ir.Predicate(subject, ir.Op.EQUALS, values, case_sensitive=numeric))
        return out

    def run(self) -> Adapted:
        rule = self.rule
        pairs = self._joined_pairs()
        condition = self.condition(merge_joined(rule.condition, pairs))
        stages = self.stages(rule.stages)
        exclusions = tuple(replace(e, condition=self.condition(merge_joined(e.condition, pairs)))
                           if e.condition is not None else e for e in rule.exclusions)
        filters = self.filters()
        if filters:
            condition = ir.all_of([*filters, condition])
        for column, why in self.missing.items():
            if column in self.unknown:
                why = f" ({self.missing[column]})" if self.missing.get(column) else ""
                self.say(f"{column} has no field in {self.where()}{why}: written under its own name",
                         column)
                continue
            reason = f" ({why})" if why else ""
            suggestion = self.schema.suggest(column)
            hint = f" (did you mean {suggestion!r}?)" if suggestion and suggestion != column and not why else ""
            self.found.append(Diagnostic(Severity.ERROR, f"{self.env.name}: {column} has no field in "
                                         f"{self.where()}{reason}{hint} "
                                         "(--allow-unknown-fields writes it under its own name)",
                                         self.spans.get(column, rule.metadata.source_span), CODE))
        taxonomy = "sigma" if self.env.target == "sigma" else None
        table = self.target.table or rule.source.table
        adapted = replace(rule, condition=condition, stages=stages, exclusions=exclusions,
                          source=replace(rule.source, table=table, taxonomy=taxonomy))
        result = Adapted(adapted, self.env, self.source, self.target, self.found, dict(self.forms),
                         set(self.unknown), dict(self.names))
        return result

    def where(self) -> str:
        """What the rule reads, for messages: its table, or its Sigma logsource."""
        src = self.rule.source
        if src.table:
            return f"{src.table} events"
        return "logsource " + ", ".join(f"{k}: {v}" for k, v in (("product", src.product),
                                        ("category", src.category), ("service", src.service)) if v)

    def _joined_pairs(self) -> dict[str, tuple[str, str, str]]:
        pairs = {}
        for column in self.columns:
            spec = self.spec_for(column)
            if spec is not None and spec.form == "joined" and spec.options.get("part") == "first":
                pairs[column] = (column, spec.options.get("separator", "\\"), spec.options["with"])
        return pairs


def _profile_column(profile: Any, table: str | None, field_name: str) -> str | None:
    if profile is None or table is None:
        return None
    return next((c for c, f in profile.columns(table).items() if f == field_name), None)


def _event_columns(rule: ir.Rule) -> dict[str, ir.Field]:
    """Every event column the rule reads (detection, exclusions, and stages where no earlier
    stage made a column of that name), by name."""
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
            # with arg_max(.., *) the event columns stay, beside the keys and aggregates it made
            made.update(n for n, _ in stage.group_by)
            made.update(a.name for a in stage.aggregates if a.name)
        elif isinstance(stage, ir.Sort):
            read(*(k.expr for k in stage.keys))
        elif isinstance(stage, ir.Rename):
            made.update(new for new, _ in stage.pairs)
    return out


def _first_spans(rule: ir.Rule) -> dict[str, Span]:
    out: dict[str, Span] = {}
    for p in ir.walk_predicates(rule.condition):
        if p.span is None:
            continue
        for f in ir.expr_fields(p.field):
            out.setdefault(f.name, p.span)
    return out
