"""Turn Lark's parse exceptions into diagnostics that say what was expected, and where.

A message names the expectation in the reader's terms ("expected '(' after has_any",
"expected a query operator after '|'") rather than listing grammar terminals.
"""

from __future__ import annotations

import re
from typing import Any

from rmmc.compiler.diagnostics import Diagnostic, Severity, Span

# Terminals that can start an expression: when one of them is expected, say "an expression".
_EXPRESSION_STARTS = {"NAME", "STRING", "NUMBER", "TIMESPAN", "TYPED_LITERAL", "TRUE",
                      "FALSE", "NULL", "DYNAMIC", "LPAR", "LSQB", "ADD_OP", "DATATABLE", "EXTERNALDATA", "UNION",
                      "GENERIC_SOURCE", "SEARCH", "STAR"}
# Terminals that continue an expression: binary operators, member access, calls.
_CONTINUATIONS = {"ADD_OP", "STAR", "SLASH", "PERCENT", "REL_OP", "EQ_OP", "STR_OP", "LIST_OP",
                  "BETWEEN_OP", "MATCHES_REGEX", "DOT", "LSQB", "LPAR", "AND", "OR"}
# Terminals that start a query operator after `|`.
_OPERATOR_STARTS = {"WHERE", "FILTER", "EXTEND", "SUMMARIZE", "PROJECT", "PROJECT_AWAY",
                    "PROJECT_KEEP", "PROJECT_RENAME", "PROJECT_REORDER", "DISTINCT", "SORT",
                    "ORDER", "TOP", "TAKE", "LIMIT", "COUNT", "AS", "JOIN", "LOOKUP", "UNION",
                    "MV_EXPAND", "PARSE", "GENERIC_OPERATOR"}

_DISPLAY = {
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'",
    "RBRACE": "'}'", "COMMA": "','", "SEMI": "';'", "PIPE": "'|'", "COLON": "':'",
    "EQUAL": "'='", "DOT": "'.'", "DOTDOT": "'..'", "STAR": "'*'", "NAME": "a name",
    "NAME_PATTERN": "a name pattern", "STRING": "a string", "NUMBER": "a number",
    "PARAM_NAME": "a parameter such as kind=", "EQ_OP": "a comparison",
    "REL_OP": "a comparison", "STR_OP": "a string operator", "LIST_OP": "in or has_any",
    "BETWEEN_OP": "between", "MATCHES_REGEX": "matches regex", "ADD_OP": "'+' or '-'",
    "SLASH": "'/'", "PERCENT": "'%'", "RAW_CHAR": "a character",
    "GENERIC_SOURCE": "a tabular source", "TYPED_LITERAL": "a typed literal",
    "TIMESPAN": "a timespan", "$END": "the end of the query",
}


def _display_terminal(name: str) -> str:
    if name in _DISPLAY:
        return _DISPLAY[name]
    return "'" + name.lower().replace("_", "-") + "'"


def describe_expected(expected: set[str]) -> str:
    """A short phrase for a set of acceptable terminals."""
    expected = {e for e in expected if not e.startswith("__")}
    if expected & _OPERATOR_STARTS and len(expected & _OPERATOR_STARTS) > 3:
        return "a query operator (where, extend, summarize, project, ...)"
    if "LET" in expected:
        return "a statement (a let, or a query)" + (" or the end of the query" if "$END" in expected else "")
    parts: list[str] = []
    if len(expected & _EXPRESSION_STARTS) >= 4:
        parts.append("an expression")
        expected = expected - _EXPRESSION_STARTS
    if len(expected & _CONTINUATIONS) >= 4:
        parts.append("an operator")
        expected = expected - _CONTINUATIONS
    named = sorted(_display_terminal(e) for e in expected)
    if len(named) > 6:
        named = named[:6] + ["..."]
    parts.extend(dict.fromkeys(named))
    if not parts:
        return "something else"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _token_text(token: Any) -> str:
    if token is None:
        return "the start of the query"
    if token.type == "$END":
        return "the end of the query"
    text = str(token)
    if len(text) > 40:
        text = text[:37] + "..."
    if token.type in ("STRING",):
        return f"string {text}"
    return f"'{text}'"


def _after(previous: Any) -> str:
    if previous is None:
        return ""
    text = str(previous)
    if len(text) > 40:
        text = text[:37] + "..."
    if previous.type in ("NAME", "STRING", "NUMBER"):
        return f" after {text}"
    return f" after '{text}'" if not text.isalpha() and "_" not in text else f" after {text}"


_BAD_ESCAPE = re.compile(r"\\(?!['\"\\abfnrtv]|[0-7]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def _string_problem(text: str, pos: int) -> tuple[str, int] | None:
    """Why a string starting at `pos` did not lex: an unknown escape or no closing quote."""
    start = pos
    if text[pos:pos + 1] in "hH":
        pos += 1
    verbatim = text[pos:pos + 1] == "@"
    if verbatim:
        pos += 1
    quote = text[pos:pos + 1]
    if quote not in ("'", '"'):
        return None
    line_end = text.find("\n", pos + 1)
    line_end = len(text) if line_end == -1 else line_end
    i = pos + 1
    while i < line_end:
        ch = text[i]
        if ch == "\\" and not verbatim:
            if _BAD_ESCAPE.match(text, i):
                shown = text[i:i + 2]
                return f"invalid escape sequence '{shown}' in string literal", i
            i += 2
            continue
        if ch == quote:
            if verbatim and text[i + 1:i + 2] == quote:
                i += 2
                continue
            return None
        i += 1
    return "unterminated string literal (a string cannot span lines; use ``` for that)", start


def _offered(expected: set[str], previous: Any) -> set[str]:
    """The terminals a message names.  Kusto reads `left:right` after any operand (search's
    Column:"term", parsed as a string operator), but search documents it after a column name
    only: ':' is offered only right after a bare name (one a call could still follow), as the
    messages did before the general form was read."""
    if ("COLON" in expected and len(expected & _CONTINUATIONS) >= 4
            and (previous is None or previous.type != "NAME" or "LPAR" not in expected)):
        return expected - {"COLON"}
    return expected


def describe_syntax_error(exc: Any, text: str, previous: Any) -> Diagnostic:
    """A located diagnostic for one of Lark's UnexpectedInput exceptions."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        expected = set(exc.accepts or exc.expected or ())
        problem = _string_problem(text, token.start_pos) if token.type != "STRING" else None
        offered = describe_expected(_offered(expected, previous))
        message = f"expected {offered}{_after(previous)}, found {_token_text(token)}"
        if previous is not None and previous.type == "COMMA" and token.type in ("RPAR", "RSQB"):
            message += " (KQL does not allow a trailing comma here)"
        if problem is not None:
            message, offset = problem
            line, column = _line_col(text, offset)
            return Diagnostic(Severity.ERROR, message, Span(offset, offset + 1, line, column), "syntax")
        span = Span(token.start_pos, token.end_pos, token.line, token.column)
        return Diagnostic(Severity.ERROR, message, span, "syntax")
    if isinstance(exc, (UnexpectedEOF, UnexpectedToken)):
        expected = set(getattr(exc, "expected", None) or ())
        if isinstance(exc, UnexpectedToken):
            expected = set(exc.accepts or exc.expected or ())
        end = len(text.rstrip())
        line, column = _line_col(text, end)
        offered = describe_expected(_offered(expected, previous))
        message = f"unexpected end of query: expected {offered}{_after(previous)}"
        return Diagnostic(Severity.ERROR, message, Span(end, end, line, column), "syntax")
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        problem = _string_problem(text, pos)
        if problem is not None:
            message, pos = problem
        else:
            char = text[pos:pos + 1]
            allowed = set(exc.allowed or ())
            message = f"unexpected character {char!r}"
            if allowed:
                message += f": expected {describe_expected(_offered(allowed, previous))}{_after(previous)}"
        line, column = _line_col(text, pos)
        return Diagnostic(Severity.ERROR, message, Span(pos, pos + 1, line, column), "syntax")
    line, column = _line_col(text, 0)
    return Diagnostic(Severity.ERROR, f"syntax error: {exc}", Span(0, 0, line, column), "syntax")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column
