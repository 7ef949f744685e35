"""The detection model (IR): what a rule means, independent of any query language.

Frontends (KQL lowering, later Sigma) only produce it; backends only consume it; the
reference evaluator (`rmmc.compiler.evaluator`) defines what every node means over one event.

A `Predicate` says exactly what it tests: one field, one operator, its values (any of them
must match, or all of them with `all_values`), case sensitivity and negation.  `has_any`
is a TERM predicate with several values, `has_all` the same with `all_values=True`, `in~`
a case-insensitive EQUALS with several values, `!has` a negated TERM, and so on.
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
    field: Field
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
    operands: tuple["Condition", ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple["Condition", ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Condition"


@dataclass(frozen=True, slots=True)
class InSubquery:
    """`field in (T | ...)` against another table: the field's value equals one of the values
    the KQL tabular expression `query` returns when the rule runs (case-insensitively for
    `in~`).  `query` is canonical KQL with the lets it used inlined; `table` is the table it
    reads.  Only a KQL target can run it; other backends say what they do instead."""

    field: Field
    query: str
    table: str | None = None
    case_sensitive: bool = True
    negated: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Const:
    """A condition known at compile time (`has_any ()` is false, an empty `where` true)."""

    value: bool


Condition = Union[Predicate, InSubquery, And, Or, Not, Const]


def all_of(conditions: list[Condition] | tuple[Condition, ...]) -> Condition:
    """AND of conditions, flattened; `Const(True)` when there are none."""
    flat: list[Condition] = []
    for c in conditions:
        if isinstance(c, And):
            flat.extend(c.operands)
        elif c == Const(True):
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
        elif c == Const(False):
            continue
        else:
            flat.append(c)
    if not flat:
        return Const(False)
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


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
    if isinstance(condition, (Predicate, InSubquery)):
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


@dataclass(frozen=True)
class Source:
    """Where the events come from: a table (Defender XDR / Sentinel) and what it holds,
    with the Sigma logsource it stands for when there is one."""

    table: str | None
    kind: EventKind = EventKind.UNKNOWN
    product: str | None = None
    category: str | None = None
    service: str | None = None
    taxonomy: str | None = None  # "sigma": fields are named in the Sigma taxonomy (no table)


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
    """One aggregation output: `name = function(field, ...)`."""

    name: str
    function: str  # count, countif, dcount, min, max, sum, avg, make_set, make_list, arg_max, arg_min, any, take_any
    field: str | None = None
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Aggregation:
    """`summarize aggregates by group_by` (or `distinct`: no aggregates)."""

    group_by: tuple[str, ...]
    aggregates: tuple[Aggregate, ...] = ()
    bin_field: str | None = None
    bin_size: timedelta | None = None


@dataclass(frozen=True)
class Output:
    """What the rule returns besides the matching events, in this order: constant and
    computed columns added to each event (`computed` keeps KQL expressions as KQL text, which
    only the KQL backend can carry), an aggregation, then a projection, renames, an order and
    a limit.  `post` holds further KQL operators after those (canonical KQL text) that the
    model does not describe; other backends report them as dropped."""

    constants: tuple[tuple[str, Value], ...] = ()
    computed: tuple[tuple[str, str], ...] = ()
    aggregation: Aggregation | None = None
    projection: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    sort: tuple[tuple[str, str], ...] = ()
    limit: int | None = None
    post: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Output()


@dataclass(frozen=True)
class Metadata:
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
    false_positives: tuple[str, ...] = ()
    source_path: str | None = None
    source_span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rule:
    metadata: Metadata
    source: Source
    condition: Condition
    lookback: Lookback | None = None
    exclusions: tuple[Exclusion, ...] = ()
    output: Output = Output()

    def with_exclusions_applied(self) -> "Rule":
        """The rule with its understood exclusions ANDed in as NOT(...)."""
        from dataclasses import replace

        extra = [Not(e.condition) for e in self.exclusions if e.condition is not None]
        return replace(self, condition=all_of([self.condition, *extra]))
