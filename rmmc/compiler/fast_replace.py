"""`dataclasses.replace`, made cheap for the classes copied once or more per rule.

`dataclasses.replace` walks the class's field objects on every call (kind, `init`, defaults)
before calling `__init__`; a batch translation copies rules, sources, placements, documents
and diagnostics some 27,000 times over the SigmaHQ rules, and that walk was most of the cost.
`replace` here reads the names `__init__` takes once per class, then fills the unchanged ones
from the object and calls the class: the same `__init__`, so the same checks
(`__post_init__`) and the same object.  A class with pseudo-fields (`InitVar`, `ClassVar`),
or a change naming a field `__init__` does not take, goes to `dataclasses.replace`, which
handles (or refuses) them as it always did.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_INIT_NAMES: dict[type, frozenset[str] | None] = {}


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the dataclass instance `obj` with `changes` (as `dataclasses.replace`)."""
    cls = obj.__class__
    try:
        names = _INIT_NAMES[cls]
    except KeyError:
        names = _INIT_NAMES[cls] = _init_names(cls)
    if names is None or not names.issuperset(changes):
        return dataclasses.replace(obj, **changes)  # refuses what it refuses
    for name in names:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return cls(**changes)


def _init_names(cls: type) -> frozenset[str] | None:
    """The fields `__init__` takes; None when `dataclasses.replace` must decide."""
    declared = getattr(cls, "__dataclass_fields__", None)
    if declared is None:
        raise TypeError("replace() should be called on dataclass instances")
    real = dataclasses.fields(cls)
    if len(real) != len(declared):  # InitVar or ClassVar pseudo-fields
        return None
    return frozenset(f.name for f in real if f.init)
