"""KQL string literals into text, exactly as Kusto reads them: the one place that does it.

The rules are those of Microsoft's parser (Kusto.Language, `KustoFacts.GetStringLiteralValue`
and `TokenParser.ScanStringEscape`, checked against the pinned npm build in `tests/oracle`):

- `'...'` and `"..."`: `\\'` `\\"` `\\\\` `\\a` `\\b` `\\f` `\\n` `\\r` `\\t` `\\v`; `\\xHH` (two hex
  digits); `\\uHHHH` (one UTF-16 code unit, so `\\uD83D\\uDE00` is one emoji); an octal escape
  `\\N`, read with up to three following *digits* (so `\\18` is U+0010: 1*8 + 8).  Any other
  escape the lexer lets through is the character itself without its backslash: `\\U0001F600`
  is the text `U0001F600` (the lexer accepts `\\U` and eight hex digits, the decoder does not
  know it).
- `@'...'` / `@"..."`: verbatim, the quote doubled; ```` ``` ```` / `~~~`: verbatim, several lines.
- `h` / `H` in front: the same text, obfuscated in logs.

Strings are UTF-16 in Kusto: adjacent surrogate escapes pair into one character
(`pair_surrogates`), and one left unpaired is not a character at all (`lone_surrogate`; the
parser refuses it).  `decode_literal` notes the readings of `\\U` and of over-long octal
escapes, which surprise authors, with their offsets in the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIMPLE_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "n": "\n",
                  "r": "\r", "t": "\t", "v": "\v"}
_HEX = frozenset("0123456789abcdefABCDEF")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class LiteralNote:
    """Something to tell about part of a literal: `start`/`end` are offsets in the token."""

    start: int
    end: int
    message: str


@dataclass(frozen=True)
class DecodedLiteral:
    value: str
    obfuscated: bool
    notes: tuple[LiteralNote, ...] = ()


def decode_literal(token: str) -> DecodedLiteral:
    """The value of one KQL string token (as the lexer cut it) and what to say about it."""
    prefix = 1 if token[:1] in ("h", "H") and len(token) > 1 and token[1] in "'\"@" else 0
    text = token[prefix:]
    if text.startswith(("```", "~~~")):
        return DecodedLiteral(text[3:-3], bool(prefix))
    if text.startswith("@"):
        quote = text[1]
        return DecodedLiteral(text[2:-1].replace(quote * 2, quote), bool(prefix))
    value, notes = _decode_escapes(text[1:-1], prefix + 1)
    return DecodedLiteral(value, bool(prefix), tuple(notes))


def plain_quoted(token: str) -> str | None:
    """The value of a token `'...'` or `"..."` with nothing to decode (no escape, no
    surrogate): what `decode_literal` gives it, found faster; None for any other token."""
    if token[:1] in ("'", '"') and "\\" not in token:
        body = token[1:-1]
        if _SURROGATE.search(body) is None:
            return body
    return None


def _decode_escapes(body: str, base: int) -> tuple[str, list[LiteralNote]]:
    """Kusto's `DecodeEscapes` over the text between the quotes (`base`: its offset in the
    token).  Code units become characters by `pair_surrogates` at the end."""
    if "\\" not in body:
        return body, []
    out: list[str] = []
    notes: list[LiteralNote] = []
    i, end = 0, len(body)
    while i < end:
        ch = body[i]
        if ch != "\\" or i + 1 >= end:
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in SIMPLE_ESCAPES:
            out.append(SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt in ("u", "x"):
            width = 4 if nxt == "u" else 2
            j = i + 2
            value = 0
            while j < end and j < i + 2 + width and body[j] in _HEX:
                value = value * 16 + int(body[j], 16)
                j += 1
            out.append(chr(value))
            i = j
        elif nxt.isdecimal():
            # Kusto's lexer takes one to three octal digits; its decoder then reads up to
            # three digits of any kind, each worth (digit - '0') in base 8.
            j = i + 1
            value = 0
            while j < end and j < i + 4 and _is_digit(body[j]):
                value = ((value << 3) + (ord(body[j]) - 48)) & 0xFFFFFFFF
                j += 1
            out.append(chr(value & 0xFFFF))
            lexed = _octal_length(body, i + 1)
            if j - (i + 1) > lexed:
                notes.append(LiteralNote(
                    base + i, base + j,
                    f"Kusto reads {body[i:j]} as one escape, U+{value & 0xFFFF:04X} (its "
                    "decoder takes every following digit as octal)"))
            i = j
        else:  # `\U` and its eight hex digits: the decoder keeps the letter, drops the backslash
            out.append(nxt)
            if nxt == "U":
                shown = body[i:i + 10]
                notes.append(LiteralNote(
                    base + i, base + i + len(shown),
                    f"Kusto reads {shown} as the text '{shown[1:]}': \\U is not an escape in "
                    "Kusto (write the character, or \\u with a surrogate pair)"))
            i += 2
    return pair_surrogates("".join(out)), notes


def _is_digit(ch: str) -> bool:
    """.NET's `char.IsDigit` (Unicode decimal digits), as the decoder uses it."""
    return ch.isdecimal()


def _octal_length(body: str, start: int) -> int:
    """How many characters of an octal escape Kusto's lexer takes (`ScanOctalCode`)."""
    digits = 0
    while digits < 3 and start + digits < len(body) and body[start + digits] in "01234567":
        digits += 1
    if digits == 3 and body[start] > "3":
        digits = 2
    return digits


def pair_surrogates(text: str) -> str:
    """Adjacent high and low surrogates joined into the character they encode (UTF-16's
    reading); a lone one is left as it is."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def lone_surrogate(text: str) -> str | None:
    """What is wrong when `text` holds a surrogate code point (after `pair_surrogates`, a
    lone one: half of a UTF-16 pair, which is not a character), else None."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (f"U+{ord(found.group()):04X} is half of a UTF-16 surrogate pair without its other "
            "half: not a character (no event can hold it, no target can say it)")
