"""rmmc's Lark grammars (`kql.lark`, `exclusion.lark`): the only place syntax is defined.

`load_parser(name, **options)` builds the LALR parser of one of them, keeping its analysed
form (parse tables, terminals) and what its lexers' regular expressions compile to in the
user's cache directory between runs, so that a cold start loads them instead of building the
tables and compiling the expressions again.
"""

from __future__ import annotations

import os
import sys

from rmmc import regex_code

_HERE = os.path.dirname(os.path.abspath(__file__))


def grammar_text(name: str) -> str:
    """The text of grammar file `name` (say `kql.lark`)."""
    try:
        with open(os.path.join(_HERE, name), encoding="utf-8") as handle:
            return handle.read()
    except OSError:  # installed somewhere without real files (a zip): ask importlib
        from importlib.resources import files

        return files(__name__).joinpath(name).read_text(encoding="utf-8")


def cache_file(name: str, grammar: str) -> str | bool:
    """Where Lark keeps the analysed grammar between runs; per grammar file, grammar text
    and Lark version, in the user's cache directory.  Without a writable one, Lark's own
    temporary-file cache."""
    import lark

    from rmmc.user_cache import cache_folder, digest

    folder = cache_folder()
    if folder is None:
        return True
    stem = name[: -len(".lark")] if name.endswith(".lark") else name
    return os.path.join(folder, f"{stem}-grammar-{digest(grammar + lark.__version__)}.lark-cache")


def load_automaton(name: str, **options):
    """The parser of grammar file `name` with `options` as a `lalr_data.Automaton`, which runs
    without importing Lark: kept in the user's cache, and built (by Lark, once) when it is not
    there; None when Lark's parser for it uses what the automaton does not do."""
    import marshal

    from rmmc.grammar.lalr_data import FORMAT, Automaton, export
    from rmmc.user_cache import cache_folder, digest, read_dict, write_bytes

    grammar = grammar_text(name)
    folder = cache_folder()
    path = None
    if folder is not None:
        key = f"{FORMAT}|{sys.version}|{sorted(options.items())!r}|{grammar}"
        stem = name[: -len(".lark")] if name.endswith(".lark") else name
        path = os.path.join(folder, f"{stem}-lalr-{digest(key)}.marshal")
        data = read_dict(path)
        if data is not None and data.get("format") == FORMAT:
            try:
                return Automaton(data, name)
            except (ValueError, TypeError, KeyError):
                pass
    data = export(load_parser(name, **options))
    if data is None:
        return None
    if path is not None:
        write_bytes(path, marshal.dumps(data))
    return Automaton(data, name)


def load_parser(name: str, **options):
    """A `lark.Lark` for grammar file `name` with `options`, through the cache; an
    unreadable cache never stops the parser (it is removed and rebuilt)."""
    from lark import Lark

    grammar = grammar_text(name)
    cache = cache_file(name, grammar)
    try:
        parser = Lark(grammar, cache=cache, **options)
    except Exception:
        if isinstance(cache, str):
            try:
                os.remove(cache)
            except OSError:
                pass
        try:
            parser = Lark(grammar, cache=cache, **options)
        except Exception:
            parser = Lark(grammar, **options)
    _use_cached_re(parser, name)
    return parser


# ------------------------------------------------------------------ compiled lexer regexes
#
# Lark's contextual lexer compiles one large regular expression per parser state it meets,
# on first use: in a cold run that is most of the time spent parsing the first query.  Python
# cannot keep a compiled expression between runs, but it can keep what `re` compiles it to:
# `_LexerRe.compile` stores, per (pattern, flags), the arguments `re` gives `_sre.compile`
# (checked to give an equal pattern object before they are kept), in the user's cache
# directory, per grammar file and Python build: a run reads only its grammars' expressions
# (the Sigma condition lexer's three, not KQL's 750 KB).  Anything unexpected falls back to
# plain `re.compile`.

_RE_CACHE_MAX = 1000  # the KQL grammar's lexer states number about 160


class _LexerRe:
    """Stands for the `re` module in Lark's lexers; only `compile` differs."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.known: dict | None = None
        self.added = 0

    def __getattr__(self, name: str):
        import re

        return getattr(re, name)

    def _load(self) -> dict:
        if self.known is None:
            from rmmc.user_cache import read_dict

            self.known = (read_dict(self.path) if self.path is not None else None) or {}
        return self.known

    def compile(self, pattern, flags=0):
        import re

        if not isinstance(pattern, str) or self.path is None:
            return re.compile(pattern, flags)
        kept = self._load().get((pattern, int(flags)))
        if kept is not None:
            # group names interned: the fast loop looks the terminal a match names up in
            # tables keyed by the same interned names (identity, no comparison)
            made = regex_code.made(kept, intern=True)
            if made is not None:
                return made
        compiled = re.compile(pattern, flags)
        self._remember(pattern, int(flags), compiled)
        return compiled

    def _remember(self, pattern: str, flags: int, compiled) -> None:
        args = regex_code.engine_args(pattern, flags, compiled)
        if args is None:  # another Python's internals: just do not cache
            return
        known = self._load()
        if len(known) >= _RE_CACHE_MAX:
            known.clear()
        known[(pattern, flags)] = args
        if not self.added:
            import atexit

            atexit.register(self.save)
        self.added += 1

    def save(self) -> None:
        """Write what this run added (merged with what another run may have written)."""
        if not self.added or self.path is None:
            return
        import marshal

        from rmmc.user_cache import write_bytes

        mine, self.known, self.added = self.known or {}, None, 0
        merged = self._load()
        merged.update(mine)
        write_bytes(self.path, marshal.dumps(merged))
        self.known = merged


_LEXER_RES: dict[str, _LexerRe] = {}  # grammar file -> its lexers' expressions


def _lexer_re(grammar: str) -> _LexerRe:
    """The expressions of grammar file `grammar`'s lexers (one cache file per grammar)."""
    shim = _LEXER_RES.get(grammar)
    if shim is None:
        path = None
        if sys.implementation.name == "cpython":
            import _sre

            from rmmc.user_cache import cache_folder, digest

            folder = cache_folder()
            build = digest(f"2|{sys.version}|{_sre.MAGIC}|{_sre.CODESIZE}")
            if folder is not None:
                stem = grammar[: -len(".lark")] if grammar.endswith(".lark") else grammar
                path = os.path.join(folder, f"lexer-re-{stem}-{build}.marshal")
        shim = _LEXER_RES[grammar] = _LexerRe(path)
    return shim


def _use_cached_re(parser, grammar: str) -> None:
    """Point every lexer of a Lark LALR parser of grammar file `grammar` at its `_LexerRe`
    (their scanners are built lazily, so none has compiled anything yet)."""
    shim = _lexer_re(grammar)
    frontend = getattr(parser, "parser", None)
    lexer = getattr(frontend, "lexer", None)
    lexer = getattr(lexer, "lexer", lexer)  # through the postlexer connector
    found = list(getattr(lexer, "lexers", {}).values())
    found.append(getattr(lexer, "root_lexer", None))
    for basic in found:
        if basic is not None and getattr(basic, "_scanner", True) is None and hasattr(basic, "re"):
            basic.re = shim
