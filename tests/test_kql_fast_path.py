"""The fast LALR loop (`rmmc.grammar.lalr_driver`) against Lark's own: the same trees, spans
included, and the same errors, on hand-picked queries and on the whole KQL corpus."""

from __future__ import annotations

import dataclasses
import re

import pytest

from rmmc.compiler.kql import parser as kql_parser
from rmmc.compiler.kql.parser import KqlSyntaxError, parse_kql

QUERIES = [
    "T",
    "T | where x == 1",
    "let a = 5d;\n// a comment\nDeviceNetworkEvents\n| where Timestamp > ago(a) // trailing\n"
    "| where RemoteUrl has_any ('a', \"b\", @'c\\d', h'e')\n| summarize count() by DeviceName",
    "T\r\n| project-away  Init*\r\n| extend y = x[0], z = x['k'], w = dynamic({\"a\": [1, 2.5e3]})",
    "T | where a between (1 .. 5) and not(b in~ ('x')) or c matches regex '[a-z]+'",
    "datatable(a:string, b:long)['x', 1, 'y', 2] | join kind=inner (U) on a",
    "T | evaluate bag_unpack(x) | mv-expand y to typeof(string) limit 5",
    "T | where x == ```multi\nline```\n\n\t| take 5",
    "T | where " + "(" * 150 + "x" + ")" * 150,
    "T | where " + " + ".join(["x"] * 150) + " > 0",
    # errors: each must read exactly as Lark's own path reports it
    "",
    "T | where",
    "T | where x ==",
    "T | where x has_all has_any ('a')",
    "T | where x == 'unterminated",
    "T | where x == 1 )",
    "T | where " + "(" * 205 + "x" + ")" * 205,
    "T | where " + " + ".join(["x"] * 205) + " > 0",
    "T | project a, | take 1",
    "T | where x == #",
    "let x = ;\nT",
    "T // only a comment",
    "// nothing but a comment",
]


def _full(value):
    """A value with every dataclass field, spans included (equality leaves spans out)."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__,) + tuple(
            (f.name, _full(getattr(value, f.name))) for f in dataclasses.fields(value))
    if isinstance(value, (tuple, list)):
        return tuple(_full(v) for v in value)
    return value


def _outcome(text: str, fast: bool, monkeypatch):
    monkeypatch.setattr(kql_parser, "FAST", fast)
    try:
        return "tree", _full(parse_kql(text))
    except KqlSyntaxError as exc:
        return "error", [(d.severity, d.message, d.span, d.code) for d in exc.diagnostics]


@pytest.mark.parametrize("text", QUERIES)
def test_fast_and_lark_agree(text, monkeypatch):
    assert _outcome(text, True, monkeypatch) == _outcome(text, False, monkeypatch)


def test_fast_path_is_taken(monkeypatch):
    """A valid query is parsed by the fast loop, not by Lark's fallback."""
    from rmmc.grammar.lalr_driver import LalrDriver

    calls = []
    original = LalrDriver.parse
    monkeypatch.setattr(LalrDriver, "parse", lambda self, text: calls.append(text) or original(self, text))
    parser, _, _ = kql_parser._lark()
    monkeypatch.setattr(parser, "parse", lambda text: pytest.fail("Lark's loop was used"))
    parse_kql("T | where x == 1")
    assert calls == ["T | where x == 1"]


def test_ignored_terminals_are_what_lark_picks():
    """The driver skips spaces and comments with one expression (`skip_ignored`): right only
    if, wherever an ignored terminal matches, no terminal Lark tries first also matches."""
    parser, _, _ = kql_parser._lark()
    terminals = sorted(parser.terminals, key=lambda t: (-t.priority, -t.pattern.max_width,
                                                        -len(t.pattern.value), t.name))
    ignored = set(parser.lexer_conf.ignore)
    assert ignored == {"WS", "COMMENT"}
    for probe in (" x", "\tx", "\nx", "\r\nx", "\fx", "//x", "// x\n", "///", "//\n"):
        for follow in ("", "a", "1", "(", "'s'", "/", "*", "-"):
            text = probe + follow
            first = next(t for t in terminals
                         if re.match(t.pattern.to_regexp(), text, parser.lexer_conf.g_regex_flags))
            assert first.name in ignored, (text, first.name)


def test_corpus_fast_and_lark_agree(kql_corpus_queries, monkeypatch):
    differ = [q.file for q in kql_corpus_queries
              if _outcome(q.text, True, monkeypatch) != _outcome(q.text, False, monkeypatch)]
    assert not differ, differ[:10]


# -- the compiled loop (rmmc/grammar/_lalr_loop.c) against the Python one it stands for -----------

def _compiled_or_skip():
    from rmmc.grammar import lalr_driver

    if lalr_driver._compiled_parse is None:
        pytest.skip("the compiled loop rmmc.grammar._lalr_loop is not installed (pip install -e . "
                    "builds it with a C compiler): only the Python loop ran")
    return lalr_driver


def _driver_outcome(driver, text: str, compiled: bool):
    """What the loop itself gives: the tree (spans included), or the exception it stopped with."""
    builder = kql_parser._lark()[1]
    builder._reset(text)
    driver.use_compiled = compiled
    try:
        return "tree", _full(driver.parse(text)), tuple(builder.warnings)
    except Exception as exc:  # noqa: BLE001 -- which exception, and its words, must agree
        return "raised", type(exc).__name__, str(exc)
    finally:
        builder._reset("")
        del driver.use_compiled


@pytest.mark.parametrize("text", QUERIES)
def test_compiled_and_python_loops_agree(text, monkeypatch):
    lalr_driver = _compiled_or_skip()
    driver = kql_parser._driver()
    assert _driver_outcome(driver, text, True) == _driver_outcome(driver, text, False)
    monkeypatch.setattr(lalr_driver.LalrDriver, "use_compiled", True)
    compiled = _outcome(text, True, monkeypatch)
    monkeypatch.setattr(lalr_driver.LalrDriver, "use_compiled", False)
    assert compiled == _outcome(text, True, monkeypatch)


def test_corpus_compiled_and_python_loops_agree(kql_corpus_queries):
    """Trees and spans, warnings, and where the loop gives up (the errors then come from Lark,
    the same way on both)."""
    _compiled_or_skip()
    driver = kql_parser._driver()
    differ, raised = [], 0
    for q in kql_corpus_queries:
        compiled = _driver_outcome(driver, q.text, True)
        raised += compiled[0] == "raised"
        if compiled != _driver_outcome(driver, q.text, False):
            differ.append(q.file)
    assert not differ, differ[:10]
    assert 0 < raised < len(kql_corpus_queries) // 10  # both paths were met


def test_without_the_compiled_loop_the_python_loop_runs():
    """RMMC_PURE_PYTHON=1 (as where the extension could not be built): the Python loop parses,
    with the same result as this process."""
    import os
    import subprocess
    import sys

    script = ("from rmmc.grammar import lalr_driver as d; from rmmc.compiler.kql.parser import parse_kql; "
              "print(d._compiled_parse is None, d.LalrDriver.use_compiled); "
              "print(repr(parse_kql(\"T | where x has 'a' | take 5\")))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env=dict(os.environ, RMMC_PURE_PYTHON="1"))
    first, tree = done.stdout.splitlines()
    assert first == "True False"
    assert tree == repr(parse_kql("T | where x has 'a' | take 5"))


def test_a_compiled_loop_of_another_layout_is_not_used(monkeypatch):
    """A copy built from older source (its tables' layout differs) is left alone: the Python
    loop runs instead of one that would read the tables wrongly."""
    import sys
    import types

    from rmmc.grammar import lalr_driver

    stale = types.ModuleType("rmmc.grammar._lalr_loop")
    stale.LAYOUT = lalr_driver._LAYOUT - 1
    stale.setup = lambda *args: pytest.fail("a stale compiled loop was set up")
    monkeypatch.setitem(sys.modules, "rmmc.grammar._lalr_loop", stale)
    monkeypatch.setattr(sys.modules["rmmc.grammar"], "_lalr_loop", stale, raising=False)
    monkeypatch.delenv("RMMC_PURE_PYTHON", raising=False)
    assert lalr_driver._load_compiled() is None
