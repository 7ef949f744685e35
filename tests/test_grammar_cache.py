"""The grammar loader's caches (`rmmc.grammar`): what they give back equals a fresh build."""

from __future__ import annotations

import re
from pathlib import Path

from rmmc import grammar

PATTERNS = [r"(?P<NAME>[A-Za-z_][A-Za-z_0-9]*)|(?P<STRING>\"(?:[^\"\\]|\\.)*\")",
            r"(?i:has_any|has)\b", r"(?P<A>\d+)|(?P<B>\.\.)"]


def test_lexer_re_cache_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "lexer-re.marshal"
    first = grammar._LexerRe(str(path))
    compiled = [first.compile(p, re.M) for p in PATTERNS]
    assert compiled == [re.compile(p, re.M) for p in PATTERNS]
    assert first.added == len(PATTERNS)
    first.save()
    assert path.exists()

    second = grammar._LexerRe(str(path))
    again = [second.compile(p, re.M) for p in PATTERNS]
    assert second.added == 0  # every one came from the cache
    assert again == compiled
    for pattern in again:
        assert pattern.groupindex == re.compile(pattern.pattern, re.M).groupindex
    assert again[0].match('"a\\"b" x').lastgroup == "STRING"
    assert second.error is re.error  # everything else is the re module's


def test_lexer_re_cache_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "lexer-re.marshal"
    path.write_bytes(b"\x00not marshal at all")
    shim = grammar._LexerRe(str(path))
    assert shim.compile(PATTERNS[0]) == re.compile(PATTERNS[0])
    shim.save()
    assert grammar._LexerRe(str(path)).compile(PATTERNS[0]) == re.compile(PATTERNS[0])


def test_parsers_use_the_cache_and_parse_alike() -> None:
    from rmmc.compiler.kql.parser import _lark, parse_kql

    parser, _, _ = _lark()
    lexers = list(parser.parser.lexer.lexer.lexers.values())
    assert lexers and all(lexer.re is grammar._lexer_re("kql.lark") for lexer in lexers)
    query = parse_kql('DeviceNetworkEvents | where RemoteUrl has "x.com" and RemotePort in (1, 2)')
    assert query.statements


def test_each_grammar_has_its_own_lexer_cache_file() -> None:
    """A run reads the expressions of the grammars it parses with, not every grammar's."""
    kql, sigma = grammar._lexer_re("kql.lark"), grammar._lexer_re("sigma_condition.lark")
    assert kql is grammar._lexer_re("kql.lark") and kql is not sigma
    if kql.path is not None:
        assert kql.path != sigma.path
        assert "lexer-re-kql-" in kql.path and "lexer-re-sigma_condition-" in sigma.path


def test_the_kql_driver_compiles_with_the_grammars_lexer_cache() -> None:
    from rmmc.compiler.kql.parser import _driver

    driver = _driver()
    assert driver.compiler is grammar._lexer_re("kql.lark")
