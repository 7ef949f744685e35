"""A faster `__init__` for frozen, slotted dataclasses built in bulk (syntax-tree nodes, spans).

The `__init__` that `dataclasses` writes for a frozen class sets each field with
`object.__setattr__(self, name, value)`, which looks the attribute up by name on every call;
the parser builds one node and one span per rule it reduces, so that is a visible part of
parsing.  `fast_init` gives such a class an `__init__` with the same parameters (names,
order, defaults, keyword-only fields) that stores each field through its slot descriptor
instead: the same object, fields and behaviour (equality, hashing, immutability), made in
about half the time.  A field with a default factory gets it as `dataclasses` does (a marker
default, the factory called when the marker is passed).  A class it cannot copy exactly (a
`__post_init__`, a field left out of `__init__`, no slots) keeps the `__init__` `dataclasses`
gave it.  The
code is compiled once and kept in the user's cache with the code `dataclasses` generates
(`rmmc.dataclass_code`), so a cold start does not compile it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def fast_init(*classes: type) -> None:
    """Replace the `__init__` of each frozen slotted dataclass in `classes` (one compile for
    all of them)."""
    lines: list[str] = []
    namespace: dict[str, Any] = {"__name__": classes[0].__module__ if classes else __name__}
    done: list[tuple[type, str]] = []
    for number, cls in enumerate(classes):
        source = _init_source(cls, number, namespace)
        if source is not None:
            lines.append(source)
            done.append((cls, f"init_{number}"))
    if not done:
        return
    from rmmc.dataclass_code import run

    run("\n".join(lines), namespace)  # compiled once and kept, as dataclasses' own code
    for cls, name in done:
        function = namespace[name]
        function.__qualname__ = f"{cls.__qualname__}.__init__"
        function.__module__ = cls.__module__
        cls.__init__ = function


def _init_source(cls: type, number: int, namespace: dict[str, Any]) -> str | None:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        return None
    if hasattr(cls, "__post_init__"):
        return None
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            return None
        descriptor = _slot(cls, field.name)
        if descriptor is None:
            return None
        setter = f"_set_{number}_{field.name}"
        namespace[setter] = descriptor.__set__
        parameter = field.name
        if field.default is not dataclasses.MISSING:
            default = f"_default_{number}_{field.name}"
            namespace[default] = field.default
            parameter += f"={default}"
        elif field.default_factory is not dataclasses.MISSING:
            factory = f"_factory_{number}_{field.name}"
            namespace[factory] = field.default_factory
            namespace["_NO_VALUE"] = _NO_VALUE
            parameter += "=_NO_VALUE"
            body.append(f"    if {field.name} is _NO_VALUE: {field.name} = {factory}()")
        (keyword if field.kw_only else positional).append(parameter)
        body.append(f"    {setter}(self, {field.name})")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    return "\n".join([f"def init_{number}({signature}):", *(body or ["    pass"])])


class _NoValue:
    """The default of a field with a default factory: not passed, so the factory is called."""

    def __repr__(self) -> str:
        return "<factory>"


_NO_VALUE = _NoValue()


def _slot(cls: type, name: str):
    """The slot descriptor of field `name` (on `cls` or the base that declares it)."""
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            return descriptor if type(descriptor).__name__ == "member_descriptor" else None
    return None
