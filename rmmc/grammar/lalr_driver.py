"""A faster run of a Lark LALR parser over Lark's own tables, for text that parses.

Lark's LALR loop is general (interactive parsing, error recovery, a lexer thread and a
post-lexer generator per token, an `assert` and a rule hash per reduction), which makes
it most of the time rmmc spends parsing KQL.  `LalrDriver` runs the same automaton in one
tight loop: the same parse table, the same per-state lexers (their compiled expressions,
their keyword callbacks, their ignored and multi-line terminals), the same tokens and the
same tree-building callbacks, called in the same order, so it builds the same tree.  It
knows nothing about errors: on anything unusual (no token matches, no action for a token,
brackets nested too deeply, a callback that raises) it raises `Fallback`, and the caller
parses the text again with Lark itself, which gives the error exactly as it always has.
The grammar file stays the one source of syntax: this module reads what Lark built from it.
"""

from __future__ import annotations

from typing import Any, Collection


class Fallback(Exception):
    """The fast loop stopped; parse with Lark to get its result or its error."""


class _Rows(dict):
    """The action table, state -> {symbol: action}, each row converted on first use (a run
    meets a fraction of the states; converting all 615 of KQL's cost a cold start 10 ms).
    An action is an int (shift to that state) or a tuple (size, callback, origin) (reduce;
    callback None for a unit rule `?rule: x`, whose one child is its result)."""

    def __init__(self, states: dict, callbacks: dict, shift: Any, expand_single: type):
        super().__init__()
        self.states, self.callbacks, self.shift, self.expand_single = states, callbacks, shift, expand_single
        self.reductions: dict[int, tuple] = {}  # id(rule) -> its action (the rules live in `states`)

    def __missing__(self, state: int) -> dict:
        row: dict[str, Any] = {}
        reductions = self.reductions
        for symbol, (action, arg) in self.states[state].items():
            if action is self.shift:
                row[symbol] = arg
                continue
            reduce = reductions.get(id(arg))
            if reduce is None:  # one tuple per rule, however many states reduce it
                size, callback = len(arg.expansion), self.callbacks[arg]
                if callback.__class__ is self.expand_single:
                    callback = None if size == 1 else callback.node_builder
                reduce = reductions[id(arg)] = (size, callback, arg.origin.name)
            row[symbol] = reduce
        self[state] = row
        return row


class LalrDriver:
    """Parses like `lark_parser.parse(text)` for a `Lark(parser="lalr", lexer="contextual")`
    whose lexer state is only the parser state (no post-lexer that changes the stream;
    `brackets` does the one check the KQL post-lexer makes: nesting depth).

    `skip_ignored`: skip runs of the ignored terminals (`%ignore`: spaces, comments) with one
    expression before lexing each token.  Only for a grammar where, in every lexer state,
    where an ignored terminal matches it is the one Lark picks (no other terminal can start
    with what an ignored one starts with): true of kql.lark, and tested there."""

    def __init__(self, lark_parser: Any, brackets: tuple[Collection[str], Collection[str], int] | None = None,
                 skip_ignored: bool = False):
        from lark.lexer import Token
        from lark.parse_tree_builder import ExpandSingleChild
        from lark.parsers.lalr_analysis import Shift

        frontend = lark_parser.parser
        lalr = frontend.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
        table = lalr.parse_table
        callbacks = lalr.callbacks
        (start,) = frontend.parser_conf.start
        self.start_state = table.start_states[start]
        self.end_state = table.end_states[start]
        count = max(table.states) + 1
        self.actions = _Rows(table.states, callbacks, Shift, ExpandSingleChild)
        self.terminal_callbacks = {k: v for k, v in callbacks.items() if isinstance(k, str)}
        lexer = frontend.lexer
        self.lexers = getattr(lexer, "lexer", lexer).lexers  # through the post-lexer connector
        self.scanners: list[tuple | None] = [None] * count
        opening, closing, limit = brackets or ((), (), 0)
        self.opening, self.closing, self.limit = frozenset(opening), frozenset(closing), limit
        self.token_class = Token
        self.units: dict[tuple[int, int, str], int] = {}
        self.skip = None
        ignored = [t for t in lark_parser.terminals if t.name in lark_parser.lexer_conf.ignore]
        if skip_ignored and ignored:  # one match for a run of ignored terminals, in Lark's order
            from rmmc.grammar import _lexer_re

            ignored.sort(key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
            pattern = "(?:" + "|".join(f"(?:{t.pattern.to_regexp()})" for t in ignored) + ")+"
            self.skip = _lexer_re().compile(pattern, lark_parser.lexer_conf.g_regex_flags).match

    def _scanner(self, state: int) -> tuple:
        """What the lexer of `state` matches with (built on first use, like Lark's)."""
        lexer = self.lexers[state]
        scanner = lexer.scanner  # builds Lark's scanner and its keyword callbacks
        entry = (tuple(m.match for m in scanner._mres), lexer.callback,
                 lexer.newline_types, lexer.ignore_types)
        self.scanners[state] = entry
        return entry

    def _units(self, below: int, top: int, kind: str) -> int:
        """The top state after every unit reduction (`?rule: x`, which keeps its one child)
        on lookahead `kind`, from `top` over `below`: one step for a chain of them."""
        key = (below, top, kind)
        action = self.actions[top].get(kind)
        while action.__class__ is tuple and action[1] is None:
            top = self.actions[below][action[2]]
            action = self.actions[top].get(kind)
        self.units[key] = top
        return top

    def parse(self, text: str) -> Any:
        """The tree-building callbacks' result for `text`, or `Fallback`."""
        actions = self.actions
        units = self.units
        scanners = self.scanners
        terminal_callbacks = self.terminal_callbacks
        opening, closing, limit = self.opening, self.closing, self.limit
        token_class = self.token_class
        new_str = str.__new__
        skip = self.skip
        stack = [self.start_state]
        values: list[Any] = []
        end = len(text)
        pos = 0
        line = 1
        line_start = 0
        depth = 0
        while pos < end:
            if skip is not None:
                found = skip(text, pos)
                if found is not None:  # a run of ignored text (spaces, comments)
                    start = pos
                    pos = found.end()
                    newlines = text.count("\n", start, pos)
                    if newlines:
                        line += newlines
                        line_start = text.rindex("\n", start, pos) + 1
                    if pos >= end:
                        break
            state = stack[-1]
            matches, callbacks, newline_types, ignore_types = scanners[state] or self._scanner(state)
            for match in matches:
                found = match(text, pos, end)
                if found is not None:
                    break
            else:
                raise Fallback("no token matches")
            value = found.group(0)
            kind = found.lastgroup
            start, token_line, column = pos, line, pos - line_start + 1
            pos = found.end()
            if kind in newline_types:
                newlines = value.count("\n")
                if newlines:
                    line += newlines
                    line_start = start + value.rindex("\n") + 1
            if kind in ignore_types and kind not in callbacks:
                continue
            token = new_str(token_class, value)
            token.type = kind
            token.start_pos = start
            token.value = value
            token.line = token_line
            token.column = column
            token.end_line = line
            token.end_column = pos - line_start + 1
            token.end_pos = pos
            if kind in callbacks:
                token = callbacks[kind](token)
                if kind in ignore_types:
                    continue
                kind = token.type
            if kind in opening:
                depth += 1
                if depth > limit:
                    raise Fallback("nested too deeply")
            elif kind in closing:
                depth -= 1
            while True:
                action = actions[stack[-1]].get(kind)
                if action.__class__ is int:
                    stack.append(action)
                    values.append(token if kind not in terminal_callbacks
                                  else terminal_callbacks[kind](token))
                    break
                if action is None:
                    raise Fallback("unexpected token")
                size, callback, origin = action
                if callback is None:  # unit rules: the value stays, only the top state changes
                    key = (stack[-2], stack[-1], kind)
                    top = units.get(key)
                    stack[-1] = top if top is not None else self._units(*key)
                    continue
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(callback(children))
                stack.append(actions[stack[-1]][origin])
        end_state = self.end_state
        while True:
            action = actions[stack[-1]].get("$END")
            if action is None or action.__class__ is int:
                raise Fallback("unexpected end of input")
            size, callback, origin = action
            if callback is None:
                del stack[-1]
            else:
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(callback(children))
            stack.append(actions[stack[-1]][origin])
            if stack[-1] == end_state:
                return values[-1]
