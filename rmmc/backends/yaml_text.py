"""YAML written so that every YAML reader reads back the same text.

PyYAML writes NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) raw inside
plain and single-quoted scalars.  YAML 1.1 readers take them for line breaks and fold them (PyYAML
itself reads `'a<NEL>b'` back as `a b`); YAML 1.2 readers take them for ordinary characters.
Either way a value holding one would not survive.  Here any string holding one of them is
written double-quoted, where they are the escapes `\\N`, `\\L` and `\\P` that both versions read
as the character.  Everything else is PyYAML's safe dumper.
"""

from __future__ import annotations

from typing import Any

_FOLDED = ("\x85", "\u2028", "\u2029")


def dump_all(documents: list[Any], literal_blocks: bool = False) -> str:
    """`yaml.safe_dump_all` (unicode, keys in order, block style, long lines) with the
    line-break characters above always escaped; `literal_blocks` writes multi-line strings as
    `|` blocks (where no such character forbids it)."""
    import yaml

    return yaml.dump_all(documents, Dumper=_dumper(literal_blocks), sort_keys=False,
                         allow_unicode=True, default_flow_style=False, width=4096)


_DUMPERS: dict[bool, type] = {}


def _dumper(literal_blocks: bool) -> type:
    if literal_blocks not in _DUMPERS:
        import yaml

        class Dumper(yaml.SafeDumper):
            pass

        def represent(dumper: yaml.SafeDumper, value: str) -> Any:
            style = None
            if any(ch in value for ch in _FOLDED):
                style = '"'
            elif literal_blocks and "\n" in value:
                style = "|"
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

        Dumper.add_representer(str, represent)
        _DUMPERS[literal_blocks] = Dumper
    return _DUMPERS[literal_blocks]
