"""Reader for Markdown files: every fenced KQL block is one rule.

A block counts when its info string names KQL (`kql`, `kusto`, `csl`, ...), or is empty
and the content looks like a query; blocks in other languages are skipped.  The title is
the nearest heading above the block, prefixed by the document's H1.
"""

from __future__ import annotations

import re
from typing import Sequence

from rmmc.compiler.diagnostics import Diagnostic, LineIndex, warning
from rmmc.compiler.documents.lines import Line, dedent_pairs, join_pairs, split_lines, trim_blank
from rmmc.compiler.documents.model import DocumentKind, RuleDocument
from rmmc.compiler.documents.result import FileResult
from rmmc.compiler.documents.sniff import looks_like_kql

KQL_INFO = frozenset({"", "kql", "kusto", "csl", "kusto-query", "kql-query", "kustoql"})
FENCE_OPEN = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-{2,})[ \t]*")
SEP = " — "


def info_language(info: str) -> str:
    """The language word of a fence's info string (`{.kql}`, `KQL title=x` -> `kql`)."""
    word = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    return word.strip("{}.").lower()


def read_markdown(text: str, path: str, source: LineIndex) -> FileResult:
    """Zero or more `RuleDocument`s (kind MARKDOWN), one per KQL fenced block."""
    lines = split_lines(text)
    docs: list[RuleDocument] = []
    file_diags: list[Diagnostic] = []
    h1: str | None = None
    heading: tuple[int, str] | None = None
    seen_titles: dict[str, int] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _may_start_block(lines, i):
            i += 1
            continue
        opening = FENCE_OPEN.fullmatch(line.text)
        if opening and not (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            close = _closing(lines, i + 1, opening.group(2))
            notes: list[Diagnostic] = []
            if close is None:
                notes.append(warning("unterminated code fence; read to the end of the file",
                                     source.span(line.start + len(opening.group(1)),
                                                 line.end), "md-unterminated"))
            body = lines[i + 1:close if close is not None else len(lines)]
            language = info_language(opening.group(3))
            pairs = trim_blank(dedent_pairs(body, len(opening.group(1))))
            query, starts = join_pairs(pairs)
            wanted = language in KQL_INFO and (language != "" or looks_like_kql(query))
            if wanted and query.strip():
                title = _title(h1, heading)
                if title is not None:
                    seen_titles[title] = seen_titles.get(title, 0) + 1
                    if seen_titles[title] > 1:
                        title = f"{title} ({seen_titles[title]})"
                docs.append(RuleDocument(path, DocumentKind.MARKDOWN, query, starts, source,
                                         index=len(docs), title=title,
                                         metadata={"language": language} if language else {},
                                         warnings=tuple(notes)))
            else:
                if wanted:
                    notes.append(warning("empty KQL code block skipped",
                                         source.span(line.start), "md-empty-block"))
                file_diags.extend(notes)
            i = (close + 1) if close is not None else len(lines)
            continue
        found = _heading(lines, i)
        if found is not None:
            level, text_, used = found
            if level == 1 and h1 is None:
                h1 = text_
            heading = (level, text_)
            i += used
            continue
        i += 1
    return FileResult(path, tuple(docs), tuple(file_diags), DocumentKind.MARKDOWN)


def _may_start_block(lines: Sequence[Line], i: int) -> bool:
    """Cheap pre-check: could line i open a fence or a heading?  (Keeps big files fast.)"""
    line = lines[i]
    if line.indent > 3:
        return False
    if line.text[line.indent:line.indent + 1] in ("`", "~", "#"):
        return True
    if i + 1 < len(lines):
        nxt = lines[i + 1]
        return nxt.text[nxt.indent:nxt.indent + 1] in ("=", "-")
    return False


def _closing(lines: Sequence[Line], start: int, fence: str) -> int | None:
    """Index of the line closing a fence opened with `fence`, or None."""
    char, width = fence[0], len(fence)
    for k in range(start, len(lines)):
        line = lines[k]
        if line.indent > 3 or not line.text.startswith(char, line.indent):
            continue
        stripped = line.text.strip(" \t")
        if len(stripped) >= width and not stripped.strip(char):
            return k
    return None


def _heading(lines: Sequence[Line], i: int) -> tuple[int, str, int] | None:
    """(level, text, lines used) if line i starts a heading."""
    atx = ATX_HEADING.fullmatch(lines[i].text)
    if atx:
        return len(atx.group(1)), (atx.group(2) or "").strip(), 1
    if i + 1 < len(lines) and not lines[i].blank and lines[i].indent <= 3 \
            and not lines[i].text.lstrip().startswith(("|", "-", "*", ">", "#")):
        under = SETEXT_UNDERLINE.fullmatch(lines[i + 1].text)
        if under:
            return (1 if under.group(1)[0] == "=" else 2), lines[i].text.strip(), 2
    return None


def _title(h1: str | None, heading: tuple[int, str] | None) -> str | None:
    if heading is None or not heading[1]:
        return h1 or None
    level, text = heading
    if h1 is None or (level == 1 and text == h1):
        return text
    return f"{h1}{SEP}{text}"
