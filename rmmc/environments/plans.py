"""What adapting a rule needs that does not depend on the rule: worked out once per source.

`adapt` puts each rule into the first source of the environment that takes it, and most of what
it looks up there depends only on that source and the rule's table: where the events are (the
placement, a `Target`), the field sets checked against, the field profile, each column's spec
and form, which of a form's field names the field sets lack, the IR expression reading a field,
the source's own tests (its `filter`).  A batch (2,392 SigmaHQ rules) meets a dozen logsources,
so a `SourcePlan` answers each of those once and every rule over the logsource reads the answer.

Nothing here reports: a plan holds values only (forms are stateless, IR nodes immutable), and
the adapter still reports per rule what it reported before (an unknown field, a column with no
field), in the same order.  `plan_for` keeps the plans of the last few environments, each keyed
on everything its answers depend on: the environment object (by identity: a frozen value; an
environment read again is another object) and the rule's logsource (`ir.Source`: table, kind,
product, category, service), which decides the source (`Environment.source_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from rmmc.compiler import ir
from rmmc.compiler.fast_replace import replace
from rmmc.environments.fieldsets import FieldSchema, schema_for
from rmmc.environments.forms import Form, form_of
from rmmc.environments.model import TIME_COLUMNS, Environment, FieldSpec, SourceMap

_CONVERT = {"string": "tostring", "guid": "tostring", "int": "toint", "long": "tolong", "real": "todouble",
            "bool": "tobool", "datetime": "todatetime"}
_UNSEEN = object()
_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})  # a plain rename's (one for all: a plan keeps each spec)
_KEPT = 8  # environments whose plans are kept (a batch uses one; `rmmc build` a few in turn)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the events are and their time field: what a backend needs besides the rule."""

    search: str | None = None
    datamodel: str | None = None
    index: str | None = None
    table: str | None = None
    time_field: str | None = None
    filter: Any = None   # the source's own tests (`EventCode=1`), in the environment's names
    parts: tuple[tuple[str, "Target"], ...] = ()  # (table as written, placement) per sub-rule source

    def part(self, table: str | None) -> "Target":
        """The placement of the sub-rule reading `table` (this one when none is recorded)."""
        return next((t for name, t in self.parts if name == table), self)


class _Planned:
    """One environment's plans by logsource and by (source, table) (logsources a source takes
    share its plan for a table), and what it reads (for a refusal's message)."""

    __slots__ = ("env", "plans", "by_source", "reads")

    def __init__(self, env: Environment):
        self.env = env
        self.plans: dict[tuple, SourcePlan | None] = {}
        self.by_source: dict[tuple[int, str | None], SourcePlan] = {}  # (id of a source of env, table)
        self.reads: str | None = None


_PLANS: dict[int, _Planned] = {}


def _planned(env: Environment) -> _Planned:
    entry = _PLANS.get(id(env))
    if entry is None or entry.env is not env:
        if len(_PLANS) >= _KEPT:
            _PLANS.clear()
        entry = _PLANS[id(env)] = _Planned(env)
    return entry


def plan_for(env: Environment, logsource: ir.Source) -> "SourcePlan | None":
    """The plan of the source of `env` that takes rules with this logsource (made once), None
    when no source does."""
    entry = _planned(env)
    key = (logsource.table, logsource.kind, logsource.product, logsource.category, logsource.service)
    plan = entry.plans.get(key, _UNSEEN)
    if plan is _UNSEEN:
        source, plan = env.source_for(logsource), None
        if source is not None:
            plan = entry.by_source.get((id(source), logsource.table))
            if plan is None:
                plan = entry.by_source[(id(source), logsource.table)] = SourcePlan(
                    source, logsource.table, placement(env, source))
        entry.plans[key] = plan
    return plan


def placement(env: Environment, source: SourceMap) -> Target:
    """Where a source's events are and their time field."""
    place = env.place.merged(source.place)
    return Target(place.search, place.datamodel, place.index, place.table, source.time_field or env.time_field)


def environment_reads(env: Environment) -> str:
    """What the environment's sources take (its tables, or their logsources), for the message
    refusing a rule none of them takes."""
    entry = _planned(env)
    if entry.reads is None:
        takes: list[str] = []
        for s in env.sources:
            for item in (s.match.table or ()) if s.match.by_table else [s.match.describe()]:
                if item not in takes:
                    takes.append(item)
        entry.reads = ", ".join(takes)
    return entry.reads


class SourcePlan:
    """One source's answers for rules over one table (see the module docstring).

    `target`: the placement (without the source's filter) and `filtered`: with it;
    `filters`: the source's own tests, each (field name, predicate), in the source's order
    (`tests`: the predicates; `unknown_filter_fields`: the names the field sets lack)."""

    def __init__(self, source: SourceMap, table: str | None, target: Any):
        self.source, self.table, self.target = source, table, target
        self.schema: FieldSchema = schema_for(source.schema, source.declare, source.members, source.dynamic, table)
        self.profile = None
        if source.names:
            from rmmc.compiler.schema.profiles import load_profile

            self.profile = load_profile(source.names)
        self._forms: dict[str, Form | None] = {}
        self._known: dict[str, bool] = {}
        self._unknown_fields: dict[str, tuple[str, ...]] = {}
        self._subjects: dict[str, dict[str, Any]] = {}  # type -> field name -> expression
        self.filters = tuple((name, self._filter(name, values)) for name, values in source.filter)
        self.filter = ir.all_of([p for _, p in self.filters]) if self.filters else None
        self.filtered = replace(target, filter=self.filter)
        self.tests = tuple(p for _, p in self.filters)
        self.unknown_filter_fields = tuple(name for name, _ in self.filters if not self.knows(name))
        # the columns that are the first part of a field joining two, as `merge_joined` takes them
        # (only `fields` give a column a joined form: the profile and `others` only rename)
        self.first_parts = {column: (column, spec.options.get("separator", "\\"), spec.options["with"])
                            for column, spec in source.fields.items()
                            if spec.form == "joined" and spec.options.get("part") == "first"}

    def _filter(self, name: str, values: tuple[Any, ...]) -> ir.Predicate:
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        return ir.Predicate(self.subject(name, "long" if numeric else "string"), ir.Op.EQUALS, values,
                            case_sensitive=numeric)

    def spec(self, column: str) -> FieldSpec | None:
        """How the source holds `column` (its `fields`, then the profile's name, then `others`),
        None: not at all (asked when a form is first made, or of a column with no field)."""
        if column in TIME_COLUMNS:
            return FieldSpec(column, self.target.time_field, options=_NO_OPTIONS)
        spec = self.source.fields.get(column)
        if spec is not None:
            return spec
        if self.profile is not None:
            mapped = self.profile.field(self.table, column)
            if mapped is not None:
                return FieldSpec(column, mapped, options=_NO_OPTIONS)
        if self.source.others is not None:
            return FieldSpec(column, self.source.others.replace("{name}", column), options=_NO_OPTIONS)
        return None

    def form(self, column: str) -> Form | None:
        """The form `column` is held in, None when it has no field here (`spec` says why)."""
        found = self._forms.get(column, _UNSEEN)
        if found is _UNSEEN:
            found = self._forms[column] = self._form(column)
        return found

    def _form(self, column: str) -> Form | None:
        spec = self.spec(column)
        if spec is None or spec.field is None:
            return None
        if isinstance(spec.field, str) and spec.form == "basename":
            path = next((c for c, s in self.source.fields.items() if s.field == spec.field and s.form in ("rename", "hives")),
                        None) or _profile_column(self.profile, self.table, spec.field)
            spec = replace(spec, options={**spec.options, "path": path})
        return form_of(spec)

    def unknown_fields(self, column: str) -> tuple[str, ...]:
        """The names the form of `column` is written with that the field sets lack (in order)."""
        found = self._unknown_fields.get(column)
        if found is None:
            form = self.form(column)
            found = self._unknown_fields[column] = tuple(n for n in (form.fields() if form else ())
                                                         if not self.knows(n))
        return found

    def knows(self, name: str) -> bool:
        """Whether the source's field sets have `name`."""
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = self.schema.knows(name)
        return known

    def subject(self, name: str, type_: str) -> Any:
        """The IR expression reading environment field `name` (a member of a dynamic column is
        `tostring(EventData.Image)`): one value per (name, type), shared by every rule."""
        of_type = self._subjects.get(type_)
        if of_type is None:
            of_type = self._subjects[type_] = {}
        found = of_type.get(name)
        if found is None:
            found = of_type[name] = self._subject(name, type_)
        return found

    def _subject(self, name: str, type_: str) -> Any:
        for column in self.source.dynamic:
            if name.startswith(column + "."):
                member = ir.Call("member", (ir.Field(column, "dynamic"), ir.Literal(name[len(column) + 1:])),
                                 "dynamic")
                function = _CONVERT.get(type_)
                return ir.Call(function, (member,), "string" if function == "tostring" else type_) if function else member
        return ir.Field(name, type_)

def _profile_column(profile: Any, table: str | None, field_name: str) -> str | None:
    if profile is None or table is None:
        return None
    return next((c for c, f in profile.columns(table).items() if f == field_name), None)


def _speed_up_construction() -> None:
    """`Target` is made and copied a few times per rule: its `__init__` stores fields through
    their slots (`rmmc.compiler.slots_init`), as the IR's nodes do."""
    from rmmc.compiler.slots_init import fast_init

    fast_init(Target)


_speed_up_construction()
