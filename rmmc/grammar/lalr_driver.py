"""A faster run of a Lark LALR parser over Lark's own tables, for text that parses.

Lark's LALR loop is general (interactive parsing, error recovery, a lexer thread and a
post-lexer generator per token, an `assert` and a rule hash per reduction), which makes
it most of the time rmmc spends parsing KQL.  `LalrDriver` runs the same automaton in one
tight loop: the same parse table, the same per-state lexers (their compiled expressions,
their keyword terminals, their ignored and multi-line terminals), the same tokens and the
same tree-building functions, called in the same order on the same children, so it builds
the same tree.  What Lark does around those functions is done here in fewer steps: the
child filters Lark puts in front of a rule's function (placeholders for `[x]`, splicing the
`_rule`s it makes for `x*`) become one small function per rule, generated from Lark's own
description of the filter; the keyword re-typing of a name (`UnlessCallback`) a dictionary
lookup; and the tree depth is counted on a stack beside the values, instead of by the
tree-building functions themselves (see `nesting`).
It knows nothing about errors: on anything unusual (no token matches, no action for a
token, brackets or the tree nested too deeply, a callback that raises) it raises
`Fallback`, and the caller parses the text again with Lark itself, which gives the error
exactly as it always has.  The grammar file stays the one source of syntax: this module
reads what Lark built from it.
"""

from __future__ import annotations

import re
from functools import partial
from operator import itemgetter
from sys import intern
from typing import Any, Callable, Collection


class Token(tuple):
    """A token of the fast loop: the fields of Lark's `Token` that tree-building reads
    (`type`, `value`, `start_pos`, `end_pos`, `line`, `column`, `end_line`, `end_column`),
    made in one step (a Lark token is a string with eight attributes set one by one).
    Not a string: its text is `value`."""

    __slots__ = ()
    type = property(itemgetter(0))
    value = property(itemgetter(1))
    start_pos = property(itemgetter(2))
    end_pos = property(itemgetter(3))
    line = property(itemgetter(4))
    column = property(itemgetter(5))
    end_line = property(itemgetter(6))
    end_column = property(itemgetter(7))

    def __repr__(self) -> str:
        return f"Token({self[0]!r}, {self[1]!r})"


def _lark_token(token: Token) -> Any:
    """`token` as Lark's `Token`, for a callback of Lark's."""
    from lark.lexer import Token as LarkToken

    kind, value, start, end, line, column, end_line, end_column = token
    return LarkToken(kind, value, start, line, column, end_line, end_column, end)


def _lark_callback(call: Callable[[Any], Any], token: Token) -> Token:
    """A lexer callback of Lark's (other than a keyword table) on `token`, as a `Token`."""
    done = call(_lark_token(token))
    return tuple.__new__(Token, (done.type, done.value, done.start_pos, done.end_pos, done.line,
                                 done.column, done.end_line, done.end_column))


class Fallback(Exception):
    """The fast loop stopped; parse with Lark to get its result or its error."""


def _raise_fallback(message: str) -> None:
    raise Fallback(message)


class _Rows(dict):
    """The action table, state -> {symbol: action}, each row converted on first use (a run
    meets a fraction of the states; converting all 615 of KQL's cost a cold start 10 ms).
    An action is an int (shift to that state) or a tuple (size, reduce, origin, steps):
    `reduce` is the rule's generated reduction and `steps` the same as data, for the compiled
    loop (`_reducer`); both None for a unit rule `?rule: x`, whose one child is its result."""

    def __init__(self, states: dict, make_reducer: Callable[[Any], tuple], shift: Any):
        super().__init__()
        self.states, self.make_reducer, self.shift = states, make_reducer, shift
        self.reductions: dict[int, tuple] = {}  # id(rule) -> its action (the rules live in `states`)

    def __missing__(self, state: int) -> dict:
        row: dict[str, Any] = {}
        reductions = self.reductions
        for symbol, (action, arg) in self.states[state].items():
            symbol = intern(symbol)  # as the lexer's match names it (`rmmc.grammar._LexerRe`)
            if action is self.shift:
                row[symbol] = arg
                continue
            reduce = reductions.get(id(arg))
            if reduce is None:  # one tuple per rule, however many states reduce it
                function, steps = self.make_reducer(arg)
                reduce = reductions[id(arg)] = (len(arg.expansion), function, intern(arg.origin.name), steps)
            row[symbol] = reduce
        self[state] = row
        return row


def _reducer(rule: Any, callback: Any, limit: int, unwrap: Callable[[Any], Any]) -> tuple:
    """The reduction of `rule` as one function `reduce(values, depths)`: it takes the rule's
    children off the value stack (and their depths off the depth stack), filters them as
    Lark's child filter would (placeholders, spliced `_rule` lists), calls the rule's
    function as Lark's `callback` would, and pushes the result and its depth.  A spliced
    `_rule` is kept as a plain list (Lark builds a `Tree` only to take its children again).
    Depth: a token 0, what a rule's function builds one more than its deepest child, a
    `_rule` list or a child passed through (`?rule` with one child) its deepest child's;
    over `limit`: `Fallback`.  With it, the same steps as data for the compiled loop:
    (include, append_none, inner, spliced, single, function, limit), `include` None or
    (child index, spliced, placeholders before it) per child kept, `inner` the indexes of the
    children that are rules (their depths count).  (None, None) for a unit rule (its value
    and depth stay)."""
    from lark.parse_tree_builder import (ChildFilterLALR, ChildFilterLALR_NoPlaceholders,
                                         ExpandSingleChild)
    from lark.tree import Tree

    size = len(rule.expansion)
    function = callback
    include: list[tuple[int, bool, int]] | None = None
    append_none = 0
    if function.__class__ is ExpandSingleChild and size == 1:
        return None, None
    if function.__class__ in (ChildFilterLALR, ChildFilterLALR_NoPlaceholders):
        include = [(entry[0], entry[1], entry[2] if len(entry) > 2 else 0) for entry in function.to_include]
        append_none = getattr(function, "append_none", 0)
        function = function.node_builder
    single = function.__class__ is ExpandSingleChild
    if single:
        function = function.node_builder
    spliced = rule.origin.name.startswith("_")
    if spliced:
        if not (isinstance(function, partial) and function.func is Tree and not single):
            raise TypeError(f"unexpected callback for {rule.origin.name}: {function!r}")
    else:
        function = unwrap(function)

    names = [f"c{i}" for i in range(size)]
    lines = ["def reduce(values, depths):"]
    if size:  # the result takes the first child's slot: the stacks shrink by size - 1
        if include is None:
            lines.append(f"    f = values[-{size}:]")
        else:
            lines.append(f"    {', '.join(names)}, = values[-{size}:]")
        inner = [i for i, symbol in enumerate(rule.expansion) if not symbol.is_term]
        if not inner:
            depth = "0"
        elif len(inner) == 1:
            depth = f"depths[{inner[0] - size}]"
        else:
            depth = "max(" + ", ".join(f"depths[{i - size}]" for i in inner) + ")"
        lines.append(f"    d = {depth}")
        if size > 1:
            lines.append(f"    del values[-{size - 1}:]")
            lines.append(f"    del depths[-{size - 1}:]")
    else:  # nothing to replace: a slot for the result
        lines.append("    d = 0")
        lines.append("    values.append(None)")
        lines.append("    depths.append(0)")
        if include is None:
            lines.append("    f = []")
    if include is not None:  # Lark's ChildFilter, unrolled: the same children in the same order
        parts: list[tuple[str, list[str] | str]] = []
        for i, expand, nones in include:
            if nones:
                parts.append(("items", ["None"] * nones))
            parts.append(("splice", names[i]) if expand else ("items", [names[i]]))
        if append_none:
            parts.append(("items", ["None"] * append_none))
        merged: list[tuple[str, list[str] | str]] = []
        for kind, what in parts:
            if kind == "items" and merged and merged[-1][0] == "items":
                merged[-1][1].extend(what)  # type: ignore[union-attr]
            else:
                merged.append((kind, list(what) if kind == "items" else what))
        for n, (kind, what) in enumerate(merged):
            text = f"[{', '.join(what)}]" if kind == "items" else what
            lines.append(f"    f {'=' if n == 0 else '+='} {text}")
        if not merged:
            lines.append("    f = []")
    if spliced:
        lines.append("    values[-1] = f")
        lines.append("    depths[-1] = d")
    else:
        if single:
            lines.append("    if len(f) == 1:")
            lines.append("        values[-1] = f[0]")
            lines.append("        depths[-1] = d")
            lines.append("        return")
        lines.extend(["    d += 1", f"    if d > {int(limit)}:", "        fallback('nested too deeply')",
                      "    values[-1] = function(f)", "    depths[-1] = d"])
    namespace = {"function": function, "fallback": _raise_fallback}
    exec("\n".join(lines), namespace)  # noqa: S102 -- built from the grammar's own rules
    inner = tuple(i for i, symbol in enumerate(rule.expansion) if not symbol.is_term)
    steps = (None if include is None else tuple((i, bool(expand), nones) for i, expand, nones in include),
             int(append_none), inner, spliced, single, function, int(limit))
    return namespace["reduce"], steps


def _no_match(text: str, pos: int, end: int) -> None:
    return None


class _Dispatch(dict):
    """One lexer state's alternation, narrowed by the character a token starts with: first
    character -> the `match` of an alternation of only the terminals that can start with it
    (`rmmc.grammar.first_chars`), in the state's order, so it finds what the whole one would.
    Built per character on first use; any character but ASCII gets the whole alternation."""

    def __init__(self, terminals: list, flags: int, whole: Callable, compiled: dict[str, Callable],
                 compiler: Any):
        from rmmc.grammar.first_chars import first_chars

        super().__init__()
        self.terminals = [(t.name, t.pattern.to_regexp()) for t in terminals]
        self.firsts = [first_chars(regexp, flags) for _, regexp in self.terminals]
        self.flags, self.whole, self.compiled, self.compiler = flags, whole, compiled, compiler

    def __missing__(self, char: str) -> Callable:
        match = self.whole
        if char < "\x80":
            chosen = [(name, regexp) for (name, regexp), first in zip(self.terminals, self.firsts)
                      if first is None or char in first]
            if not chosen:
                match = _no_match
            elif len(chosen) < len(self.terminals):  # the form of Lark's own alternation
                pattern = "|".join(f"(?P<{name}>{regexp})" for name, regexp in chosen)
                match = self.compiled.get(pattern)
                if match is None:
                    match = self.compiled[pattern] = self.compiler.compile(pattern, self.flags).match
        self[char] = match
        return match


class _Several(dict):
    """A lexer state whose terminals Lark split over several expressions: each in turn."""

    def __init__(self, matches: tuple):
        super().__init__()
        self.matches = matches

    def __missing__(self, char: str) -> Callable:
        return self.match

    def match(self, text: str, pos: int, end: int):
        for match in self.matches:
            found = match(text, pos, end)
            if found is not None:
                return found
        return None


class LalrDriver:
    """Parses like `lark_parser.parse(text)` for a `Lark(parser="lalr", lexer="contextual")`
    whose lexer state is only the parser state (no post-lexer that changes the stream;
    `brackets` does the one check the KQL post-lexer makes: nesting depth).

    `nesting`: (limit, unwrap): trees deeper than `limit` raise `Fallback` (the caller's
    Lark path says why), counted by the driver; `unwrap(function)` gives a rule's function
    without the depth bookkeeping it does on Lark's path.

    `skip_ignored`: skip runs of the ignored terminals (`%ignore`: spaces, comments) with one
    expression before lexing each token.  Only for a grammar where, in every lexer state,
    where an ignored terminal matches it is the one Lark picks (no other terminal can start
    with what an ignored one starts with): true of kql.lark, and tested there."""

    def __init__(self, lark_parser: Any, brackets: tuple[Collection[str], Collection[str], int] | None = None,
                 skip_ignored: bool = False,
                 nesting: tuple[int, Callable[[Any], Any]] | None = None):
        from lark.parsers.lalr_analysis import Shift

        frontend = lark_parser.parser
        lalr = frontend.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
        table = lalr.parse_table
        callbacks = lalr.callbacks
        (start,) = frontend.parser_conf.start
        self.start_state = table.start_states[start]
        self.end_state = table.end_states[start]
        count = max(table.states) + 1
        limit, unwrap = nesting or (1 << 62, lambda function: function)
        self.actions = _Rows(table.states, lambda rule: _reducer(rule, callbacks[rule], limit, unwrap), Shift)
        self.rows: list[dict | None] = [None] * count  # the compiled loop's index of `actions`
        self.terminal_callbacks = {k: v for k, v in callbacks.items() if isinstance(k, str)}
        lexer = frontend.lexer
        self.lexers = getattr(lexer, "lexer", lexer).lexers  # through the post-lexer connector
        # what the lexers compile their expressions with (the grammar's lexer cache, or `re`)
        self.compiler = getattr(next(iter(self.lexers.values()), None), "re", None) or re
        self.scanners: list[tuple | None] = [None] * count
        opening, closing, limit = brackets or ((), (), 0)
        self.opening, self.closing, self.limit = frozenset(opening), frozenset(closing), limit
        self.units: dict[tuple[int, int, str], int] = {}
        self.dispatches: dict[int, _Dispatch] = {}  # id(Lark's scanner) -> its dispatch
        self.compiled: dict[str, Callable] = {}  # expression -> its match (shared by states)
        self.skip = None
        # ASCII characters no ignored text starts with: no need to try `skip` there
        self.no_skip: frozenset[str] = frozenset()
        self.no_skip_table = bytes(128)  # the same as 128 flags, for the compiled loop
        ignored = [t for t in lark_parser.terminals if t.name in lark_parser.lexer_conf.ignore]
        if skip_ignored and ignored:  # one match for a run of ignored terminals, in Lark's order
            ignored.sort(key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
            pattern = "(?:" + "|".join(f"(?:{t.pattern.to_regexp()})" for t in ignored) + ")+"
            self.skip = self.compiler.compile(pattern, lark_parser.lexer_conf.g_regex_flags).match
            from rmmc.grammar.first_chars import ASCII, first_chars

            firsts = first_chars(pattern, lark_parser.lexer_conf.g_regex_flags)
            if firsts is not None:
                self.no_skip = frozenset(c for c in ASCII if c not in firsts)
                self.no_skip_table = bytes(c in self.no_skip for c in ASCII)

    def _scanner(self, state: int) -> tuple:
        """What the lexer of `state` matches with (built on first use, like Lark's): its
        expressions, the keyword re-typing of its callbacks as {terminal: {text: keyword}},
        its other callbacks, its multi-line and ignored terminals; `special`: the terminals
        that need any of these (or are brackets, or have a tree callback), the others being
        made into tokens directly."""
        from lark.lexer import PatternStr, UnlessCallback

        lexer = self.lexers[state]
        scanner = lexer.scanner  # builds Lark's scanner and its keyword callbacks
        retype: dict[str, dict[str, str]] = {}
        callbacks: dict[str, Any] = {}
        for kind, callback in lexer.callback.items():
            keywords = callback.scanner.terminals if callback.__class__ is UnlessCallback else None
            if (keywords is not None and not callback.scanner.g_regex_flags
                    and all(t.pattern.__class__ is PatternStr and not t.pattern.flags for t in keywords)):
                table: dict[str, str] = {}
                for terminal in keywords:  # the first that matches the whole text, as Lark's
                    table.setdefault(terminal.pattern.value, intern(terminal.name))
                retype[intern(kind)] = table
            else:
                callbacks[kind] = callback
        if len(scanner._mres) == 1 and not scanner.use_bytes:
            dispatch = self.dispatches.get(id(scanner))
            if dispatch is None:
                dispatch = self.dispatches[id(scanner)] = _Dispatch(
                    scanner.terminals, scanner.g_regex_flags, scanner._mres[0].match, self.compiled,
                    self.compiler)
        else:  # several expressions (Python's group limit): Lark's own, in turn
            dispatch = _Several(tuple(m.match for m in scanner._mres))
        special = {intern(kind) for kind in (set(retype) | set(callbacks) | set(lexer.newline_types)
                                             | set(lexer.ignore_types) | set(self.opening)
                                             | set(self.closing) | set(self.terminal_callbacks))}
        # how each terminal that is not plain here is handled: a name with keywords (their
        # table), a bracket (+1 / -1 to the depth), anything else 0 (each of Lark's steps)
        generic = set(callbacks) | set(lexer.newline_types) | set(lexer.ignore_types) | set(self.terminal_callbacks)
        after = set(self.opening) | set(self.closing) | set(self.terminal_callbacks)
        kinds: dict[str, Any] = {}
        for kind in special:
            if kind in generic:
                kinds[kind] = 0
            elif kind in retype:
                kinds[kind] = retype[kind] if not (set(retype[kind].values()) | {kind}) & after else 0
            elif kind in self.opening:
                kinds[kind] = 1
            elif kind in self.closing:
                kinds[kind] = -1
            else:
                kinds[kind] = 0
        entry = (dispatch, kinds, retype, callbacks, lexer.newline_types, lexer.ignore_types)
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
        """The tree-building callbacks' result for `text`, or `Fallback`: by the compiled
        loop when it is built and `use_compiled`, else by `parse_python`."""
        if self.use_compiled:
            return _compiled_parse(self, text)
        return self.parse_python(text)

    def parse_python(self, text: str) -> Any:
        """`parse` in Python: the reference for the compiled loop (`_lalr_loop.c` takes
        the same steps), and what runs where it is not built."""
        actions = self.actions
        units = self.units
        scanners = self.scanners
        terminal_callbacks = self.terminal_callbacks
        opening, closing, limit = self.opening, self.closing, self.limit
        new_token = tuple.__new__
        skip, no_skip = self.skip, self.no_skip
        top = self.start_state
        stack = [top]
        values: list[Any] = []
        depths: list[int] = []
        end = len(text)
        pos = 0
        line = 1
        line_start = 0
        depth = 0
        while pos < end:
            if skip is not None and text[pos] not in no_skip:
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
            dispatch, kinds = (scanners[top] or self._scanner(top))[:2]
            found = dispatch[text[pos]](text, pos, end)
            if found is None:
                raise Fallback("no token matches")
            kind = found.lastgroup
            start = pos
            pos = found.end()
            how = kinds.get(kind)
            if how is None:  # a plain token
                column = start - line_start + 1
                value = token = new_token(Token, (kind, found.group(0), start, pos, line, column, line,
                                                  column + pos - start))
            elif how.__class__ is dict:  # a name that may be a keyword here (Lark's UnlessCallback)
                value = found.group(0)
                kind = how.get(value, kind)
                column = start - line_start + 1
                value = token = new_token(Token, (kind, value, start, pos, line, column, line,
                                                  column + pos - start))
            elif how:  # a bracket
                depth += how
                if depth > limit:
                    raise Fallback("nested too deeply")
                column = start - line_start + 1
                value = token = new_token(Token, (kind, found.group(0), start, pos, line, column, line,
                                                  column + pos - start))
            else:  # anything else: each of Lark's lexer's steps
                retype, callbacks, newline_types, ignore_types = scanners[top][2:]
                value = found.group(0)
                token_line, column = line, start - line_start + 1
                if kind in newline_types:
                    newlines = value.count("\n")
                    if newlines:
                        line += newlines
                        line_start = start + value.rindex("\n") + 1
                call = None
                keywords = retype.get(kind)
                if keywords is not None:  # a name that may be a keyword here (Lark's UnlessCallback)
                    if kind in ignore_types:
                        continue
                    kind = keywords.get(value, kind)
                elif kind in callbacks:
                    call = callbacks[kind]
                elif kind in ignore_types:
                    continue
                token = new_token(Token, (kind, value, start, pos, token_line, column, line, pos - line_start + 1))
                if call is not None:  # a callback of Lark's (not a keyword table): on Lark's token
                    ignored = kind in ignore_types
                    token = _lark_callback(call, token)
                    if ignored:
                        continue
                    kind = token[0]
                if kind in opening:
                    depth += 1
                    if depth > limit:
                        raise Fallback("nested too deeply")
                elif kind in closing:
                    depth -= 1
                value = token if kind not in terminal_callbacks else terminal_callbacks[kind](_lark_token(token))
            while True:
                action = actions[top].get(kind)
                if action.__class__ is int:
                    stack.append(action)
                    top = action
                    values.append(value)
                    depths.append(0)
                    break
                if action is None:
                    raise Fallback("unexpected token")
                size, reduce, origin, _ = action
                if reduce is None:  # unit rules: the value stays, only the top state changes
                    key = (stack[-2], top, kind)
                    found_top = units.get(key)
                    top = stack[-1] = found_top if found_top is not None else self._units(*key)
                    continue
                reduce(values, depths)
                if size == 1:  # the new state takes the child's place
                    top = stack[-1] = actions[stack[-2]][origin]
                elif size:
                    del stack[1 - size:]
                    top = stack[-1] = actions[stack[-2]][origin]
                else:
                    top = actions[top][origin]
                    stack.append(top)
        end_state = self.end_state
        while True:
            action = actions[stack[-1]].get("$END")
            if action is None or action.__class__ is int:
                raise Fallback("unexpected end of input")
            size, reduce, origin, _ = action
            if reduce is None:
                del stack[-1]
            else:
                reduce(values, depths)
                if size:
                    del stack[-size:]
            stack.append(actions[stack[-1]][origin])
            if stack[-1] == end_state:
                return values[-1]


_LAYOUT = 3  # the tables as the compiled loop reads them; `LAYOUT` in _lalr_loop.c


def _load_compiled() -> Callable[[LalrDriver, str], Any] | None:
    """The compiled loop (`rmmc/grammar/_lalr_loop.c`, built by `pip install` where a C
    compiler is at hand), or None: not built, not loadable, or turned off with
    `RMMC_PURE_PYTHON=1`.  Either way the output is the same (`tests/test_kql_fast_path.py`
    compares the two loops)."""
    import os

    if os.environ.get("RMMC_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from rmmc.grammar import _lalr_loop  # type: ignore[attr-defined]

        if getattr(_lalr_loop, "LAYOUT", None) != _LAYOUT:  # built from other source
            return None
        _lalr_loop.setup(Token, Fallback, _lark_token, _lark_callback)
        return _lalr_loop.parse
    except Exception:  # ImportError, or a module built for another interpreter
        return None


_compiled_parse = _load_compiled()
LalrDriver.use_compiled = _compiled_parse is not None  # a driver may turn it off
