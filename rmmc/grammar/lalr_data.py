"""A Lark LALR parser as plain data, and a loop that runs it without importing Lark.

Importing Lark was a fifth of a cold `rmmc translate` of a Sigma rule (its modules pull in
logging, tempfile, pickle and hashlib), all to parse a condition such as `selection and not
filter`.  `export(parser)` reads what Lark built from a grammar file (the parse table, each
parser state's lexer as the alternation Lark matches, how each rule builds its tree node) into
a dict of plain values that `marshal` keeps in the user's cache; `run(data, text)` parses with
it: the same tokens, found by the same expressions in the same order, the same shifts and
reductions, and the same tree shape (`Node` for `lark.Tree`, `Leaf` for `lark.Token`).  It knows
nothing about errors: on any text Lark would reject it returns None and the caller asks Lark,
whose exceptions are the ones reported.  The grammar file stays the one source of syntax.

Only what rmmc's small grammars use is exported: a contextual lexer with no post-lexer and no
terminal callbacks, default tree building (no transformer, no `[x]` placeholders, no positions);
anything else exports as None, and Lark is used as before.
"""

from __future__ import annotations

from typing import Any

FORMAT = 1


class Leaf(str):
    """A token: its text, its terminal's name (`type`) and where it starts (`start_pos`)."""

    __slots__ = ("type", "start_pos")

    def __new__(cls, text: str, type_: str, start_pos: int) -> "Leaf":
        leaf = super().__new__(cls, text)
        leaf.type = type_
        leaf.start_pos = start_pos
        return leaf


class Node:
    """A tree node: its rule's (or alias's) name and its children, as `lark.Tree`."""

    __slots__ = ("data", "children")

    def __init__(self, data: str, children: list) -> None:
        self.data, self.children = data, children

    def __repr__(self) -> str:
        return f"Node({self.data!r}, {self.children!r})"


def export(parser: Any) -> dict | None:
    """The plain-data form of `lark.Lark(..., parser="lalr", lexer="contextual")`, or None
    when the parser uses something `run` does not do."""
    options = parser.options
    if options.postlex is not None or options.transformer is not None \
            or options.propagate_positions or options.lexer != "contextual" or options.parser != "lalr":
        return None
    frontend = parser.parser
    lalr = frontend.parser.parser
    if any(isinstance(key, str) for key in lalr.callbacks):  # terminal callbacks
        return None
    table = lalr.parse_table
    (start,) = frontend.parser_conf.start
    rules: list[tuple] = []
    rule_ids: dict[int, int] = {}

    def rule_id(rule: Any) -> int:
        if id(rule) not in rule_ids:
            if rule.options.template_source is not None or \
                    (options.maybe_placeholders and rule.options.empty_indices):  # `[x]` placeholders
                raise _Unsupported
            keep_all = rule.options.keep_all_tokens
            include = tuple((i, not sym.is_term and sym.name.startswith("_"))
                            for i, sym in enumerate(rule.expansion)
                            if keep_all or not (sym.is_term and sym.filter_out))
            filtered = len(include) < len(rule.expansion) or any(expand for _, expand in include)
            rules.append((str(rule.origin.name), len(rule.expansion), str(rule.alias or rule.origin.name),
                          bool(rule.options.expand1 and not rule.alias), include if filtered else None))
            rule_ids[id(rule)] = len(rules) - 1
        return rule_ids[id(rule)]

    from lark.parsers.lalr_analysis import Shift

    try:
        states = {int(state): {str(symbol): (1, int(arg)) if action is Shift else (0, rule_id(arg))
                          for symbol, (action, arg) in row.items()}
                  for state, row in table.states.items()}
    except _Unsupported:
        return None
    contextual = frontend.lexer
    contextual = getattr(contextual, "lexer", contextual)
    alternations: list[tuple] = []
    lexer_of: dict[int, int] = {}
    seen: dict[tuple, int] = {}
    for state, basic in contextual.lexers.items():
        scanner = basic.scanner
        if basic.callback or getattr(basic, "use_bytes", False):
            return None
        key = (tuple((str(m.pattern), int(m.flags)) for m in scanner._mres),
               tuple(sorted(str(t) for t in basic.ignore_types)))
        if key not in seen:
            seen[key] = len(alternations)
            alternations.append(key)
        lexer_of[int(state)] = seen[key]
    return {"format": FORMAT, "start": int(table.start_states[start]), "end": int(table.end_states[start]),
            "states": states, "rules": rules, "lexers": alternations, "lexer_of": lexer_of}


class _Unsupported(Exception):
    pass


class Automaton:
    """`run` with the lexers' expressions compiled once (per process, and what `re` compiles
    them to kept between runs by the grammar's lexer cache, as Lark's lexers are)."""

    def __init__(self, data: dict, grammar: str | None = None) -> None:
        """`data` as `export` gives it; `grammar`: the grammar file whose lexer cache compiles
        the expressions (None: `re` compiles them)."""
        if grammar is None:
            import re as compiler
        else:
            from rmmc.grammar import _lexer_re

            compiler = _lexer_re(grammar)
        self.data = data
        self.lexers = [([compiler.compile(pattern, flags) for pattern, flags in mres], frozenset(ignore))
                       for mres, ignore in data["lexers"]]

    def run(self, text: str) -> Any:
        """The tree Lark would build for `text`, or None where Lark would raise (or where this
        loop is unsure): the caller then parses with Lark."""
        data = self.data
        states, rules, lexer_of = data["states"], data["rules"], data["lexer_of"]
        end_state = data["end"]
        stack = [data["start"]]
        values: list = []
        pos, size_text = 0, len(text)
        while True:
            mres, ignore = self.lexers[lexer_of[stack[-1]]]
            token = None
            while pos < size_text:
                for mre in mres:
                    m = mre.match(text, pos)
                    if m:
                        break
                else:
                    return None
                kind, start, pos = m.lastgroup, pos, m.end()
                if kind not in ignore:
                    token = Leaf(m.group(0), kind, start)
                    break
            is_end = token is None
            kind = "$END" if is_end else token.type
            while True:
                action = states[stack[-1]].get(kind)
                if action is None:
                    return None
                shift, arg = action
                if shift:
                    if is_end:
                        return None
                    stack.append(arg)
                    values.append(token)
                    break
                origin, size, name, expand1, include = rules[arg]
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                if include is not None:
                    kept: list = []
                    for i, expand in include:
                        if expand:
                            kept.extend(children[i].children)
                        else:
                            kept.append(children[i])
                    children = kept
                value = children[0] if expand1 and len(children) == 1 else Node(name, children)
                goto = states[stack[-1]].get(origin)
                if goto is None or not goto[0]:
                    return None
                stack.append(goto[1])
                values.append(value)
                if is_end and stack[-1] == end_state:
                    return values[-1]
