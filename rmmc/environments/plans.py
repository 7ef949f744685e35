"""What adapting a rule needs that does not depend on the rule: worked out once per source.

`adapt` puts each rule into the first source of the environment that takes it, and most of what
it looks up there depends only on that source and the rule's table: where the events are (the
placement), the field sets checked against, the field profile, each column's spec and form,
whether a field name is known, the IR expression reading a field, the source's own tests (its
`filter`).  A batch (2,392 SigmaHQ rules) meets a dozen (source, table) pairs, so a
`SourcePlan` answers each of those once and every rule over the pair reads the answer.

Nothing here reports: a plan holds values only (forms are stateless, IR nodes immutable), and
the adapter still reports per rule what it reported before (an unknown field, a column with no
field), in the same order.  `plan_for` keeps the plans of the last few environments, each keyed
on everything its answers depend on: the environment and source objects (by identity: both are
frozen values, and an environment read again is another object) and the table.
"""

from __future__ import annotations

from typing import Any, Callable

from rmmc.compiler import ir
from rmmc.compiler.fast_replace import replace
from rmmc.environments.fieldsets import FieldSchema, schema_for
from rmmc.environments.forms import Form, form_of
from rmmc.environments.model import TIME_COLUMNS, Environment, FieldSpec, SourceMap

_CONVERT = {"string": "tostring", "guid": "tostring", "int": "toint", "long": "tolong", "real": "todouble",
            "bool": "tobool", "datetime": "todatetime"}
_UNSEEN = object()
_KEPT = 8  # environments whose plans are kept (a batch uses one; `rmmc build` a few in turn)
_PLANS: dict[int, tuple[Environment, dict[tuple[int, str | None], "SourcePlan"]]] = {}


def plan_for(env: Environment, source: SourceMap, table: str | None, target: Callable[[], Any]) -> "SourcePlan":
    """The plan of `source` of `env` for rules over `table` (made once; `target()` gives the
    placement a new plan starts from)."""
    entry = _PLANS.get(id(env))
    if entry is None or entry[0] is not env:
        if len(_PLANS) >= _KEPT:
            _PLANS.clear()
        entry = _PLANS[id(env)] = (env, {})
    plans = entry[1]
    plan = plans.get((id(source), table))
    if plan is None or plan.source is not source:
        plan = plans[(id(source), table)] = SourcePlan(source, table, target())
    return plan


class SourcePlan:
    """One source's answers for rules over one table (see the module docstring).

    `target`: the placement (without the source's filter) and `filtered`: with it;
    `filters`: the source's own tests, each (field name, predicate), in the source's order."""

    def __init__(self, source: SourceMap, table: str | None, target: Any):
        self.source, self.table, self.target = source, table, target
        self.schema: FieldSchema = schema_for(source.schema, source.declare, source.members, source.dynamic, table)
        self.profile = None
        if source.names:
            from rmmc.compiler.schema.profiles import load_profile

            self.profile = load_profile(source.names)
        self._specs: dict[str, FieldSpec | None] = {}
        self._forms: dict[str, Form | None] = {}
        self._known: dict[str, bool] = {}
        self._subjects: dict[tuple[str, str], Any] = {}
        self._pairs: dict[str, tuple[str, str, str] | None] = {}
        self.filters = tuple((name, self._filter(name, values)) for name, values in source.filter)
        self.filter = ir.all_of([p for _, p in self.filters]) if self.filters else None
        self.filtered = replace(target, filter=self.filter)

    def _filter(self, name: str, values: tuple[Any, ...]) -> ir.Predicate:
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        return ir.Predicate(self.subject(name, "long" if numeric else "string"), ir.Op.EQUALS, values,
                            case_sensitive=numeric)

    def spec(self, column: str) -> FieldSpec | None:
        """How the source holds `column` (its `fields`, then the profile's name, then `others`),
        None: not at all."""
        found = self._specs.get(column, _UNSEEN)
        if found is _UNSEEN:
            found = self._specs[column] = self._spec(column)
        return found

    def _spec(self, column: str) -> FieldSpec | None:
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

    def knows(self, name: str) -> bool:
        """Whether the source's field sets have `name`."""
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = self.schema.knows(name)
        return known

    def subject(self, name: str, type_: str) -> Any:
        """The IR expression reading environment field `name` (a member of a dynamic column is
        `tostring(EventData.Image)`): one value per (name, type), shared by every rule."""
        key = (name, type_)
        found = self._subjects.get(key)
        if found is None:
            found = self._subjects[key] = self._subject(name, type_)
        return found

    def _subject(self, name: str, type_: str) -> Any:
        for column in self.source.dynamic:
            if name.startswith(column + "."):
                member = ir.Call("member", (ir.Field(column, "dynamic"), ir.Literal(name[len(column) + 1:])),
                                 "dynamic")
                function = _CONVERT.get(type_)
                return ir.Call(function, (member,), "string" if function == "tostring" else type_) if function else member
        return ir.Field(name, type_)

    def joined_pair(self, column: str) -> tuple[str, str, str] | None:
        """(column, separator, the other column) when `column` is the first part of a field
        joining two (`merge_joined`), else None."""
        found = self._pairs.get(column, _UNSEEN)
        if found is _UNSEEN:
            form = self.form(column)
            spec = form.spec if form is not None else self.spec(column)
            found = None
            if spec is not None and spec.form == "joined" and spec.options.get("part") == "first":
                found = (column, spec.options.get("separator", "\\"), spec.options["with"])
            self._pairs[column] = found
        return found


def _profile_column(profile: Any, table: str | None, field_name: str) -> str | None:
    if profile is None or table is None:
        return None
    return next((c for c, f in profile.columns(table).items() if f == field_name), None)
