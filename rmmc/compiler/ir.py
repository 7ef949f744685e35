"""The detection model (IR): what a rule means, independent of any query language.

Frontends (KQL lowering, the Sigma reader) only produce it; backends only consume it; the
reference evaluator (`rmmc.compiler.evaluator`) defines what every node means: a condition
over one row, a scalar expression over one row, and a stage over a list of rows.

A rule is its source table, a lookback, the *detection* (`condition`, a filter over the
table's events) and then its *stages* in order: computed columns (`Extend`), further filters
(`Filter`, e.g. on a computed column or after an aggregation), aggregation (`Summarize`),
projection (`Project`, `ProjectAway`, `Rename`, `Reorder`), order and limit (`Sort`,
`Limit`).  The order of stages is part of the meaning: a filter after an extend tests the
extended value, a filter after a summarize tests the aggregated rows.

A `Predicate` says exactly what it tests: one subject (a field, or a scalar expression over
the row), one operator, its constant values (any of them must match, or all of them with
`all_values`), case sensitivity and negation.  `has_any` is a TERM predicate with several
values, `has_all` the same with `all_values=True`, `in~` a case-insensitive EQUALS with several
values, `!has` a negated TERM, and so on.  `Compare` compares two expressions (a column with
another, or with `ago(1d)`).

Several sources.  A rule reads one table's events, or, with `union`, the rows of several
sub-rules one after the other (`Union`: each branch is a rule with its own source, detection
and stages).  A `Join` stage matches the rows so far with the rows of another sub-rule on
equal keys (KQL's join kinds, innerunique, the default, first keeping one row per left key);
`InSubquery` tests a value against another sub-rule's first column (a semi-join).  The
evaluator runs them over a *multi-table event set*: one list of events, each naming its table
under `TABLE` (an event without one belongs to the top rule's table).  `MvExpand` turns one
row into one per element of a dynamic array; `Parse` extracts columns from a string at
constant delimiters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Union

from rmmc.compiler.diagnostics import Span


class Op(str, Enum):
    EQUALS = "equals"            # whole value equals
    CONTAINS = "contains"        # substring
    STARTSWITH = "startswith"
    ENDSWITH = "endswith"
    TERM = "term"                # KQL `has`: a whole term (see the evaluator)
    TERM_PREFIX = "term_prefix"  # KQL `hasprefix`: a term starts with the value
    TERM_SUFFIX = "term_suffix"  # KQL `hassuffix`: a term ends with the value
    REGEX = "regex"              # unanchored search
    EMPTY = "empty"              # null or '' (KQL isempty); values unused
    EXISTS = "exists"            # the field is present (Sigma |exists); values unused
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    BETWEEN = "between"          # inclusive; values = (low, high)
    CIDR = "cidr"                # the value is an IP address inside one of the networks


STRING_OPS = frozenset({Op.EQUALS, Op.CONTAINS, Op.STARTSWITH, Op.ENDSWITH, Op.TERM,
                        Op.TERM_PREFIX, Op.TERM_SUFFIX, Op.REGEX})
COMPARISON_OPS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN})

Value = Union[str, int, float, bool, datetime, timedelta]


@dataclass(frozen=True, slots=True)
class Field:
    """A field of the event, by its name in the rule's source schema, with its type
    (`string`, `int`, `long`, `real`, `bool`, `datetime`, `timespan`, `dynamic`, `guid`)."""

    name: str
    type: str = "string"


@dataclass(frozen=True, slots=True)
class Predicate:
    """A test of one subject (a field or an expression) by `op` against `values` (any of them,
    or all with `all_values`)."""

    field: "Field | Expr"  # the subject: a column, or a scalar expression over the row
    op: Op
    values: tuple[Value, ...] = ()
    all_values: bool = False
    case_sensitive: bool = False
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)

    def negate(self) -> "Predicate":
        return Predicate(self.field, self.op, self.values, self.all_values,
                         self.case_sensitive, not self.negated, self.span)


@dataclass(frozen=True, slots=True)
class And:
    """True when every operand is."""

    operands: tuple["Condition", ...]


@dataclass(frozen=True, slots=True)
class Or:
    """True when any operand is."""

    operands: tuple["Condition", ...]


@dataclass(frozen=True, slots=True)
class Not:
    """True when its operand is false."""

    operand: "Condition"


@dataclass(frozen=True, slots=True)
class InSubquery:
    """`field in (T | ...)` against another table (a semi-join): the field's value equals one
    of the values in the first column of what the tabular expression returns when the rule
    runs (case-insensitively for `in~`); with `op` TERM (`has_any (T | ...)`) the field has
    one of them as a term; with CONTAINS / ENDSWITH it contains / ends with one of them (an
    environment's form of a column: `Hashes` contains `SHA256=<digest>`, written by
    `rmmc.environments.adapt` for Sigma placeholders only).  `query` is canonical KQL with the lets it used inlined; `table`
    is the table it reads; `rule` is its model when rmmc can lower it (the reference evaluator
    then runs it over the event set), else None (only a KQL target can say it, as written).
    Other backends say what they do instead."""

    field: "Field | Expr"
    query: str
    table: str | None = None
    case_sensitive: bool = True
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)
    rule: "Rule | None" = field(default=None, compare=False, repr=False)
    op: "Op" = Op.EQUALS
    column: str | None = field(default=None, compare=False, repr=False)  # the sub-rule's first column


@dataclass(frozen=True, slots=True)
class Const:
    """A condition known at compile time (`has_any ()` is false, an empty `where` true)."""

    value: bool


@dataclass(frozen=True, slots=True)
class Compare:
    """`left op right` between two expressions (neither a constant: that is a `Predicate`).
    `op` is one of `==` `!=` `<` `<=` `>` `>=` (`==` / `!=` case-sensitive on strings) or
    `=~` `!~` (case-insensitive string equality)."""

    left: "Expr"
    op: str
    right: "Expr"
    span: Span | None = field(default=None, compare=False, repr=False)


COMPARE_OPS = frozenset({"==", "!=", "<", "<=", ">", ">=", "=~", "!~"})

Condition = Union[Predicate, InSubquery, Compare, And, Or, Not, Const]


# ------------------------------------------------------------------ scalar expressions


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant value of a type (`None` is that type's null; a dynamic array is a tuple)."""

    value: Any
    type: str = "string"


@dataclass(frozen=True, slots=True)
class Call:
    """A scalar function of the model (`rmmc.compiler.functions` defines each one: its
    arguments, result type and meaning) applied to expressions.  Operators are functions too:
    `add`, `subtract`, `multiply`, `divide`, `modulo`, `negate`; member access on a dynamic
    value is `member(x, 'key')` and indexing `index(x, i)`."""

    function: str
    args: tuple["Expr", ...]
    type: str = "string"

    @property
    def name(self) -> str:  # what diagnostics call the subject (fields have a name)
        from rmmc.compiler.functions import describe

        return describe(self)


@dataclass(frozen=True, slots=True)
class Boolean:
    """A condition used as a boolean value (`iff(x has 'a', 1, 0)`, `extend Flag = x > 5`)."""

    condition: "Condition"
    type: str = "bool"

    @property
    def name(self) -> str:
        return "(condition)"


@dataclass(frozen=True, slots=True)
class Star:
    """`*` where an aggregate takes every column (`arg_max(Timestamp, *)`)."""

    type: str = "dynamic"
    name: str = "*"


Expr = Union[Field, Literal, Call, Boolean, Star]


def is_field(node: Any) -> bool:
    """Whether a predicate's subject is a plain column (what every backend names directly)."""
    return isinstance(node, Field)


def expr_fields(expr: Any) -> list[Field]:
    """Every column an expression (or condition) reads, in order, each once."""
    return list(expr_field_map(expr).values())


def expr_field_map(expr: Any) -> dict[str, Field]:
    """`expr_fields` by name (a new dict, in the same order): for callers that want them so."""
    seen: dict[str, Field] = {}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Predicate):  # the commonest node: its subject is what pops next
            node = node.field
        if isinstance(node, Field):
            seen.setdefault(node.name, node)
        elif isinstance(node, (And, Or)):
            stack.extend(reversed(node.operands))
        elif isinstance(node, Call):
            stack.extend(reversed(node.args))
        elif isinstance(node, Boolean):
            stack.append(node.condition)
        elif isinstance(node, Predicate):  # a subject that is itself a predicate (not in the model)
            stack.append(node.field)
        elif isinstance(node, InSubquery):
            stack.append(node.field)
        elif isinstance(node, Compare):
            stack.extend((node.right, node.left))
        elif isinstance(node, Not):
            stack.append(node.operand)
    return seen


_TRUE, _FALSE = Const(True), Const(False)  # built once: all_of / any_of test every operand


def all_of(conditions: list[Condition] | tuple[Condition, ...]) -> Condition:
    """AND of conditions, flattened; `Const(True)` when there are none."""
    flat: list[Condition] = []
    for c in conditions:
        if isinstance(c, And):
            flat.extend(c.operands)
        elif isinstance(c, Const) and c == _TRUE:
            continue
        else:
            flat.append(c)
    if not flat:
        return Const(True)
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def any_of(conditions: list[Condition] | tuple[Condition, ...]) -> Condition:
    """OR of conditions, flattened; `Const(False)` when there are none."""
    flat: list[Condition] = []
    for c in conditions:
        if isinstance(c, Or):
            flat.extend(c.operands)
        elif isinstance(c, Const) and c == _FALSE:
            continue
        else:
            flat.append(c)
    if not flat:
        return Const(False)
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def unchanged_operands(parts: list[Condition], operands: tuple[Condition, ...], kind: type) -> bool:
    """Whether `all_of` / `any_of` (`kind` And / Or) of `parts` would build a node equal to the
    one whose `operands` they were made from: they are those operands, at least two, none a
    constant (dropped or deciding) nor a nested node of the same kind (flattened).  A rewrite
    that changed nothing then keeps the node instead of building it again."""
    if len(parts) != len(operands) or len(parts) < 2:
        return False
    for part, operand in zip(parts, operands):
        if part is not operand or isinstance(part, (kind, Const)):
            return False
    return True


def walk(condition: Condition):
    """Every node of a condition tree, parents before children, left to right (iterative:
    trees may be wide and deep)."""
    stack = [condition]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (And, Or)):
            stack.extend(reversed(node.operands))
        elif isinstance(node, Not):
            stack.append(node.operand)


def walk_predicates(condition: Condition):
    """Every predicate of a condition tree, in order."""
    return [node for node in walk(condition) if isinstance(node, Predicate)]


def map_spans(condition: Condition, relocate) -> Condition:
    """The same condition with every span passed through `relocate` (e.g. from the query's
    coordinates to its file's)."""
    if isinstance(condition, (Predicate, InSubquery, Compare)):
        if condition.span is None:
            return condition
        from dataclasses import replace

        return replace(condition, span=relocate(condition.span))
    if isinstance(condition, And):
        return And(tuple(map_spans(c, relocate) for c in condition.operands))
    if isinstance(condition, Or):
        return Or(tuple(map_spans(c, relocate) for c in condition.operands))
    if isinstance(condition, Not):
        return Not(map_spans(condition.operand, relocate))
    return condition


# ------------------------------------------------------------------ the rule around it


class EventKind(str, Enum):
    PROCESS = "process"
    NETWORK = "network"
    FILE = "file"
    REGISTRY = "registry"
    IMAGE_LOAD = "image_load"
    DEVICE_EVENT = "device_event"
    LOGON = "logon"
    FILE_CERTIFICATE = "file_certificate"
    DEVICE_INFO = "device_info"
    DEVICE_NETWORK_INFO = "device_network_info"
    UNKNOWN = "unknown"


EXTERNAL_FORMATS = ("csv", "tsv", "psv", "scsv", "sohsv", "txt", "raw")
"""The storage formats an external table is read in (Kusto's ingestion formats of that name):
the delimited ones RFC 4180 style with their separator, `txt` one record per non-empty line
(the first column; the others null), `raw` the whole text as one record."""


@dataclass(frozen=True)
class ExternalTable:
    """A table read from storage when the query runs (KQL `externaldata`): the rows of each
    URI in turn, parsed as `format` (`EXTERNAL_FORMATS`; the first record of each skipped with
    `ignore_first_record`) into the declared `columns` (name, type), a value that does not
    read as its column's type being null (`rmmc.compiler.external` parses).  `properties`
    are the other `with (...)` properties as written (none is lowered today)."""

    uris: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    format: str = "csv"
    ignore_first_record: bool = False
    format_given: bool = True  # False: detected from the URI's extension, as Kusto does
    span: Span | None = field(default=None, compare=False)
    hidden: tuple[bool, ...] = field(default=(), compare=False)  # per URI: written h'...' (a secret)


@dataclass(frozen=True)
class Source:
    """Where the events come from: a table (Defender XDR / Sentinel) and what it holds,
    with the Sigma logsource it stands for when there is one; or an external table
    (`external`: `table` is then None), whose rows come from storage, not from events."""

    table: str | None
    kind: EventKind = EventKind.UNKNOWN
    product: str | None = None
    category: str | None = None
    service: str | None = None
    taxonomy: str | None = None  # "sigma": fields are named in the Sigma taxonomy (no table)
    external: ExternalTable | None = None


@dataclass(frozen=True)
class Lookback:
    """The time window scanned, ending now (`Timestamp > ago(5d)`)."""

    window: timedelta
    text: str = ""  # as the source wrote it, e.g. "5d"


@dataclass(frozen=True)
class Exclusion:
    """A false-positive scenario: its name, description and exclusion, as a condition when
    the exclusion is an expression rmmc understood, and always as the text written."""

    name: str
    text: str | None = None
    description: str | None = None
    condition: Condition | None = None
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Aggregate:
    """One aggregation: `name = function(args...)`.  `args` are expressions (a condition for
    `countif` / `dcountif` ... is a `Boolean`; `arg_max(Timestamp, *)` has a `Star`).  `name` is
    None only for `arg_max` / `arg_min`, which return the columns they name."""

    name: str | None
    function: str  # count countif dcount dcountif min max minif maxif sum sumif avg make_set make_set_if make_list make_list_if arg_max arg_min any take_any
    args: tuple[Expr, ...] = ()

    @property
    def field(self) -> str | None:
        """The column aggregated, when the first argument is a plain column."""
        return self.args[0].name if self.args and isinstance(self.args[0], Field) else None


@dataclass(frozen=True)
class Extend:
    """Add (or replace) columns, each computed from the row as it was before this stage."""

    columns: tuple[tuple[str, Expr], ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Filter:
    """Keep the rows where the condition is true (over the row as the stages so far made it)."""

    condition: Condition
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Summarize:
    """One row per distinct value of the group keys (name, expression; `bin(Timestamp, 1h)`
    is a `Call`) holding the aggregates; no keys: one row for all rows (even none, for
    aggregates).  No aggregates: `distinct`."""

    group_by: tuple[tuple[str, Expr], ...]
    aggregates: tuple[Aggregate, ...] = ()
    span: Span | None = field(default=None, compare=False)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.group_by)


@dataclass(frozen=True)
class Project:
    """Exactly these columns, in this order, each computed from the row before the stage."""

    columns: tuple[tuple[str, Expr], ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ProjectAway:
    """Drop the columns matching these names (`*` wildcards, as KQL's project-away)."""

    patterns: tuple[str, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rename:
    """Rename columns: (new, old) pairs."""

    pairs: tuple[tuple[str, str], ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Reorder:
    """Put these columns first (`*` wildcards), the others after: only the column order
    changes (KQL project-reorder)."""

    patterns: tuple[str, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SortKey:
    """One key of a Sort: an expression, its direction and where nulls go."""

    expr: Expr
    descending: bool = True  # KQL's default
    nulls_first: bool | None = None  # None: KQL's default (nulls last ascending, first descending)


@dataclass(frozen=True)
class Sort:
    """Rows ordered by `keys`, the first deciding first (KQL sort / order by)."""

    keys: tuple[SortKey, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Limit:
    """At most `count` rows (KQL take / limit; after a Sort, `top`)."""

    count: int
    span: Span | None = field(default=None, compare=False)


JOIN_KINDS = ("innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftsemi",
              "rightsemi", "leftanti", "rightanti")
LEFT_ONLY_JOINS = frozenset({"leftsemi", "leftanti"})
RIGHT_ONLY_JOINS = frozenset({"rightsemi", "rightanti"})


@dataclass(frozen=True)
class Join:
    """Match the rows so far (left) with the rows of `right` (a sub-rule with its own source,
    detection and stages) on equal keys, `(left column, right column)` pairs, as KQL's join
    `kind` says: `innerunique` (KQL's default) first keeps one left row per key value (the
    first) then pairs it with every matching right row; `inner` pairs every match; `leftouter`
    / `rightouter` / `fullouter` also keep the unmatched rows of a side (the other side's
    columns null); `leftsemi` / `leftanti` keep the left rows that have / have no match (left
    columns only), `rightsemi` / `rightanti` the same for the right rows.  Keys match when
    equal (strings case-sensitively; a null key matches a null key, as Kusto does).  With
    `lookup`, KQL's lookup: kind `leftouter` or `inner`, no de-duplication, and the right key
    columns are not output.

    Output columns: the left's, then the right's, a right column whose name is taken gets
    the first free `name1`, `name2` ...  `left_columns` / `right_columns` are the sides'
    columns in order when rmmc knows them (from the schema); None: the columns the rows
    hold (`join_output_names` decides the names)."""

    kind: str
    right: "Rule"
    keys: tuple[tuple[str, str], ...]
    left_columns: tuple[str, ...] | None = field(default=None, repr=False)
    right_columns: tuple[str, ...] | None = field(default=None, repr=False)
    lookup: bool = False
    span: Span | None = field(default=None, compare=False)


def join_output_names(left: list[str] | tuple[str, ...], right: list[str] | tuple[str, ...],
                      kind: str, right_keys: tuple[str, ...] = (), lookup: bool = False) -> list[str]:
    """The output name of each right column (in order) of a join whose left side has the
    columns `left`: '' for a column not output (semi / anti joins, a lookup's right keys)."""
    if kind in LEFT_ONLY_JOINS:
        return ["" for _ in right]
    if kind in RIGHT_ONLY_JOINS:
        return list(right)
    taken = set(left)
    out = []
    for name in right:
        if lookup and name in right_keys:
            out.append("")
            continue
        new, n = name, 0
        while new in taken:
            n += 1
            new = f"{name}{n}"
        taken.add(new)
        out.append(new)
    return out


@dataclass(frozen=True)
class MvExpand:
    """One row per element of dynamic arrays (KQL mv-expand): each `(name, expr, to_type)`
    expands the array `expr` into the column `name` (replacing a column of that name in
    place, else added), converted to `to_type` when given (`to typeof(string)`).  Several
    expand in lockstep (the longest sets the row count, the others pad with null).  An empty
    array gives no row; null or a scalar one row holding it; a property bag one row per key
    (a one-key bag).  `limit`: at most that many rows per input row.  `index`: a column
    holding each element's position (`with_itemindex=`)."""

    columns: tuple[tuple[str, "Expr", str | None], ...]
    limit: int | None = None
    index: str | None = None
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Parse:
    """Extract string columns from a string at constant delimiters (KQL `parse`, kind simple):
    `pattern` is a sequence of parts, each a literal (a `str`), `None` for `*` (skip any
    text) or `("column",)` for a column that takes the text up to the next literal; the
    literals are found left to right (the first place the whole pattern matches, a column
    taking as little as it can) and the pattern must reach the end of the text.  Where it
    does not match, every column is ''.  With `drop`, rows that do not match are dropped
    (`parse-where`)."""

    source: "Expr"
    pattern: tuple["str | None | tuple[str]", ...]
    drop: bool = False
    span: Span | None = field(default=None, compare=False)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(part[0] for part in self.pattern if isinstance(part, tuple))


Stage = Union[Extend, Filter, Summarize, Project, ProjectAway, Rename, Reorder, Sort, Limit, Join,
              MvExpand, Parse]
ROW_STAGES = (Extend, Project, ProjectAway, Rename, Reorder)
"""Stages that keep one row per event (they only change columns)."""


def stage_expressions(stage: "Stage") -> list[Any]:
    """The expressions and conditions a stage evaluates over each row: a filter's condition,
    the columns an extend or project computes, a summarize's keys and aggregate arguments, a
    sort's keys (plain copies `x = x` included)."""
    if isinstance(stage, Filter):
        return [stage.condition]
    if isinstance(stage, (Extend, Project)):
        return [e for _, e in stage.columns]
    if isinstance(stage, Summarize):
        return [*(e for _, e in stage.group_by),
                *(a for agg in stage.aggregates for a in agg.args if not isinstance(a, Star))]
    if isinstance(stage, Sort):
        return [k.expr for k in stage.keys]
    return []


def stage_reads(stage: "Stage") -> set[str]:
    """The columns a stage reads to decide which rows exist, their order or what they hold
    (a plain copy `x = x` reads nothing)."""
    exprs: list[Any] = []
    names: set[str] = set()
    if isinstance(stage, Filter):
        exprs.append(stage.condition)
    elif isinstance(stage, (Extend, Project)):
        exprs.extend(e for n, e in stage.columns if not (isinstance(e, Field) and e.name == n))
    elif isinstance(stage, Summarize):
        exprs.extend(e for _, e in stage.group_by)
        for agg in stage.aggregates:
            exprs.extend(a for a in agg.args if not isinstance(a, Star))
    elif isinstance(stage, Sort):
        exprs.extend(k.expr for k in stage.keys)
    elif isinstance(stage, Rename):
        names.update(old for _, old in stage.pairs)
    for expr in exprs:
        names.update(f.name for f in expr_fields(expr))
    return names


def summarize_of(stages: tuple[Stage, ...]) -> Summarize | None:
    """The first aggregation of a rule's stages, if any."""
    return next((s for s in stages if isinstance(s, Summarize)), None)


@dataclass(frozen=True, slots=True)  # (slots: built once per rule read, by `fast_init`'s __init__)
class Metadata:
    """A rule's descriptive facts (id, title, level, techniques, ...): what it says, not what
    it matches."""

    id: str | None = None
    title: str | None = None
    description: str | None = None
    author: str | None = None
    references: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    level: str | None = None
    status: str | None = None
    date: str | None = None
    modified: str | None = None
    false_positives: tuple[str, ...] = ()
    source_path: str | None = None
    source_span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Union:
    """The rows of several sub-rules one after the other (KQL `union`, outer: a column one
    branch lacks is null there).  `withsource` names a column holding, on each row, the table
    its branch reads (or `union_arg<i>` for a branch that is not a bare table, as Kusto names
    it: `labels` gives each branch's label); `fuzzy` is `isfuzzy=true` (a branch whose table is
    missing is skipped: over a given event set, a table with no events)."""

    branches: tuple["Rule", ...]
    withsource: str | None = None
    fuzzy: bool = False
    labels: tuple[str, ...] = ()
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)  # (slots: built and copied several times per rule)
class Rule:
    """A rule: its source's events (or, with `union`, its branches' rows; `source` then names
    no table, only the kind of event when the branches share one), the detection over them,
    then the stages in order."""

    metadata: Metadata
    source: Source
    condition: Condition
    lookback: Lookback | None = None
    exclusions: tuple[Exclusion, ...] = ()
    stages: tuple[Stage, ...] = ()
    union: Union | None = None

    def with_exclusions_applied(self) -> "Rule":
        """The rule with its understood exclusions ANDed in as NOT(...)."""
        from dataclasses import replace

        extra = [Not(e.condition) for e in self.exclusions if e.condition is not None]
        return replace(self, condition=all_of([self.condition, *extra]))


# ------------------------------------------------------------------ several sources

TABLE = "$table"
"""The key under which an event of a multi-table event set names its table."""

UNION, JOIN, SUBQUERY, MV_EXPAND, PARSE = "union", "join", "subquery", "mv-expand", "parse"
EXTERNAL = "externaldata"
"""A feature: a rule (or a join's side, a union's branch) reads an external table.  A subquery
over one is the SUBQUERY feature only: a backend that does not handle subqueries widens it."""
FEATURES = frozenset({UNION, JOIN, SUBQUERY, MV_EXPAND, PARSE, EXTERNAL})
"""Every name `features` can give."""


def sub_rules(rule: Rule) -> list[Rule]:
    """The rules inside a rule, directly: its union branches, its joins' right sides and the
    lowered subqueries of its conditions."""
    found: list[Rule] = []
    if rule.union is not None:
        found.extend(rule.union.branches)
    conditions = [rule.condition]
    for stage in rule.stages:
        if isinstance(stage, Join):
            found.append(stage.right)
        elif isinstance(stage, Filter):
            conditions.append(stage.condition)
    for condition in conditions:
        found.extend(node.rule for node in subqueries(condition) if node.rule is not None)
    return found


def subqueries(condition: Condition) -> list[InSubquery]:
    """The subquery tests of a condition tree, in `walk` order (a list built in one loop: each
    rule is asked for them several times, and most have none)."""
    out: list[InSubquery] = []
    stack = [condition]
    while stack:
        node = stack.pop()
        if type(node) is Predicate:  # the commonest node, and never one
            continue
        if isinstance(node, (And, Or)):
            stack.extend(reversed(node.operands))
        elif isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, InSubquery):
            out.append(node)
    return out


def features(rule: Rule) -> dict[str, Span | None]:
    """The multi-table and row-multiplying constructs a rule uses (anywhere, sub-rules
    included), each with the span of its first use: what a backend must handle or refuse."""
    found: dict[str, Span | None] = {}
    pending = [rule]
    in_subquery: set[int] = set()  # sub-rules read by a subquery (their source is its business)
    while pending:
        current = pending.pop()
        if current.source.external is not None and id(current) not in in_subquery:
            found.setdefault(EXTERNAL, current.source.external.span)
        if current.union is not None:
            found.setdefault(UNION, current.union.span)
        for stage in current.stages:
            if isinstance(stage, Join):
                found.setdefault(JOIN, stage.span)
            elif isinstance(stage, MvExpand):
                found.setdefault(MV_EXPAND, stage.span)
            elif isinstance(stage, Parse):
                found.setdefault(PARSE, stage.span)
        conditions = [current.condition] + [s.condition for s in current.stages if isinstance(s, Filter)]
        inner = [node for condition in conditions for node in subqueries(condition) if node.rule is not None]
        for node in inner:
            found.setdefault(SUBQUERY, node.span)
            in_subquery.add(id(node.rule))
        if current.union is None and not inner and not current.stages:
            continue  # no sub-rule (`sub_rules` would find none)
        pending.extend(sub_rules(current))
    return found


def _speed_up_construction() -> None:
    """The frozen, slotted node classes (fields, predicates, And / Or / Not ...) get an
    `__init__` that stores fields through their slots (`rmmc.compiler.slots_init`): a batch
    builds several per predicate, in the reader, each environment and each backend."""
    import dataclasses

    from rmmc.compiler.slots_init import fast_init

    fast_init(*(value for value in list(globals().values())
                if isinstance(value, type) and dataclasses.is_dataclass(value)
                and value.__module__ == __name__))


_speed_up_construction()
