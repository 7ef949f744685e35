"""A seeded mutation fuzz of rule documents through check, translate and explain, in process.

Each round takes a real rule file (the corpora in ../shared, the bundled rules/), mutates its
text a few times with operators chosen for what broke before (quotes, escapes, lone
surrogates, YAML anchors, aliases, merge keys and tags, deep nesting, line-break and
case-folding characters, template placeholders, cut lines ...), and runs the result through
what `rmmc check`, `rmmc translate --to <every target>` and `rmmc explain` run, then checks
that every produced text can be written as UTF-8.  A round fails on a traceback (an exception
escaping rmmc), an internal error (a diagnostic saying so), or a hang (a watchdog alarm).

    python tests/fuzz.py --mutations 10000 --seed 11    # what `make fuzz` runs

prints the figures (rounds, tracebacks, internal errors, hangs over the limit, the slowest
round, peak memory) and exits 1 if any round failed or peak memory passed the limit.
`tests/test_fuzz.py` runs a few hundred rounds in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TARGETS = ("sigma", "kql", "splunk", "eql", "esql")
RULE_SUFFIXES = (".kql", ".csl", ".txt", ".yaml", ".yml", ".md")
WRITE_EVERY = 10  # one round in this many reads its text from a file and writes its translations

# Fragments that broke rmmc, or might: inserted at random places.
FRAGMENTS = (
    "'", '"', "\\", "\\'", '\\"', "\\u", "\\uD800", "\\uD83D\\uDE00", "\\U0001F600", "\\x4", "\\18",
    "\\777", "\\ud800", '"\\ud800"', "\x85", "\u2028", "\u2029", "\u212a", "\u0130", "\u017f", "\u00df",
    "\t", "\r", "\r\n", "\x0b", "\x1b", "\ufeff", "|", "||", "|contains", "|re", "|all", "*", "?",
    "{{StartTimeISO}}", "todatetime('{{x}}')", "['a|b']", "['Actor IP Address']", "&a ", "*a",
    "<<: *a", "!!python/object:os.system ", "!custom ", "---\n", "...\n", "{", "}", "[", "]",
    "[[[[[[[[", "]]]]]]]]", "((((((((", "))))))))", "not not not not ", " and ", " or ", " where and",
    ":", ": ", "- ", "#", "//", "```", "~~~", "\n", "\n\n", "query: |\n", "detection:\n",
    "condition: ", "keywords", "null", "~", "0x", "1e999", "-", "..", "@'", "h'", "```kql\n",
    "KQL Query", "Filter/Exclusion: ", "CON", "nul", "\\\\?\\", "../", "\u202e", "\x00",
)
UNICODE_EDGES = ("\u212a", "\u0130", "\u0131", "\u017f", "\x85", "\u2028", "\U0001F600", "\u00ad",
                 "\u200b", "\ufffd", "\u0663")


def corpus_files(limit_per_root: int | None = None) -> list[Path]:
    """Rule files to start from, in a stable order."""
    roots = [REPO / "rules", SHARED / "corpus" / "rmm", SHARED / "corpus" / "kql",
             SHARED / "corpus" / "sigma" / "rules"]
    files: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in RULE_SUFFIXES and p.is_file())
        files.extend(found[:limit_per_root] if limit_per_root else found)
    return files


def mutate(text: str, rng: random.Random) -> str:
    """`text` with one to four random edits."""
    for _ in range(rng.randint(1, 4)):
        text = rng.choice(_OPERATORS)(text, rng)
    return text


def _at(text: str, rng: random.Random) -> int:
    return rng.randint(0, len(text)) if text else 0


def _insert(text, rng):
    at = _at(text, rng)
    return text[:at] + rng.choice(FRAGMENTS) + text[at:]


def _delete(text, rng):
    at = _at(text, rng)
    return text[:at] + text[at + rng.randint(1, 40):]


def _duplicate(text, rng):
    at = _at(text, rng)
    piece = text[at:at + rng.randint(1, 200)]
    return text[:at] + piece * rng.randint(2, 6) + text[at:]


def _unicode(text, rng):
    at = _at(text, rng)
    return text[:at] + rng.choice(UNICODE_EDGES) + text[at + rng.randint(0, 1):]


def _lines(text, rng):
    lines = text.split("\n")
    if len(lines) < 2:
        return text + "\n" + text
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    choice = rng.randrange(4)
    if choice == 0:
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 1:
        del lines[i]
    elif choice == 2:
        lines[i] = " " * rng.randint(0, 6) + lines[i].lstrip()
    else:
        lines.insert(i, lines[j])
    return "\n".join(lines)


def _truncate(text, rng):
    return text[:_at(text, rng)]


def _line_ends(text, rng):
    return text.replace("\n", rng.choice(("\r", "\r\n", "\x85", "\u2028")))


def _nest(text, rng):
    at = _at(text, rng)
    depth = rng.choice((50, 250, 1200))
    opener, closer = rng.choice((("(", ")"), ("[", "]"), ("{a: ", "}"), ("not ", ""), ("- ", "")))
    return text[:at] + opener * depth + "x" + closer * depth + text[at:]


def _anchor(text, rng):
    """An alias bomb or a merge key somewhere YAML may see it."""
    if rng.random() < 0.5:
        bomb = ["b0: &b0 [x, x, x, x, x, x, x, x, x]"]
        bomb += [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]" for i in range(1, 8)]
        block = "\n".join(bomb) + "\n" + rng.choice(("description", "tactics", "title", "sel")) + ": *b7\n"
    else:
        block = "m: &m {Image: a.exe}\nsel2:\n  <<: *m\n"
    lines = text.split("\n")
    lines.insert(rng.randrange(len(lines) + 1), block)
    return "\n".join(lines)


STRING_PAYLOADS = ("\\uD800", "\\uDE00", "\\uD83D\\uDE00", "\\U0001F600", "\\18", "\\777", "\\x41",
                   "\\u212a", "\\u0085", "\\u2028", "\\t", "\\\t", "\\u0000", "\\", "'", '"', "*", "?",
                   "{{StartTimeISO}}", "|contains", "\x85", "\u212a", "\u0130")
VALUE_PAYLOADS = ('"x\\ud800"', '"a\\u0085b"', "*a", "&a x", "!!python/object:x y", "[[[[]]]]",
                  "{<<: *a}", "|\n  x", '"\\U0001F600"', "'it''s'", "todatetime('{{EndTimeISO}}')",
                  "CON", "nul.yml", "a|re", "keywords")


def _in_string(text, rng):
    """A payload just inside a quoted literal (KQL strings, YAML scalars, Sigma values)."""
    quotes = [i for i, ch in enumerate(text) if ch in "'\""]
    if not quotes:
        return _insert(text, rng)
    at = rng.choice(quotes) + 1
    return text[:at] + rng.choice(STRING_PAYLOADS) + text[at:]


def _yaml_value(text, rng):
    """A `key: value` line with its value (or key) replaced."""
    lines = text.split("\n")
    keyed = [i for i, line in enumerate(lines) if ": " in line]
    if not keyed:
        return _insert(text, rng)
    i = rng.choice(keyed)
    key, _, _ = lines[i].partition(": ")
    if rng.random() < 0.2:
        lines[i] = key + rng.choice(("|contains|all", "|re|i", "|fieldref", "|x", "|", "|cidr")) + ": " \
            + rng.choice(VALUE_PAYLOADS)
    else:
        lines[i] = key + ": " + rng.choice(VALUE_PAYLOADS)
    return "\n".join(lines)


def _column(text, rng):
    """A column name as a bracketed name holding what other languages read as syntax."""
    names = ["['ProcessCommandLine|contains']", "['Actor IP Address']", "['a\"b']", "['x\\u0085y']",
             "['and']", "[\"'\"]", "['\\uD800']"]
    for word in ("ProcessCommandLine", "FileName", "RemoteUrl", "DeviceName", "AccountName"):
        if word in text:
            return text.replace(word, rng.choice(names), 1)
    return _insert(text, rng)


def _case(text, rng):
    at = _at(text, rng)
    end = at + rng.randint(1, 30)
    return text[:at] + text[at:end].swapcase() + text[end:]


_OPERATORS = (_insert, _insert, _insert, _delete, _duplicate, _unicode, _lines, _lines, _truncate,
              _line_ends, _nest, _anchor, _case, _in_string, _in_string, _yaml_value, _column)


# ------------------------------------------------------------------ one round


class Hang(BaseException):
    """The watchdog's alarm: a round ran past the time limit (a BaseException, so rmmc's own
    "never a traceback" handlers do not take it for a bug of theirs)."""


@dataclass
class Failure:
    kind: str  # traceback, internal, hang
    source: str
    seed: int
    detail: str


@dataclass
class Report:
    rounds: int = 0
    rules: int = 0
    failures: list[Failure] = field(default_factory=list)
    slowest: float = 0.0
    slowest_source: str = ""
    peak_mb: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for f in self.failures if f.kind == kind)

    def summary(self, hang_limit: float) -> str:
        return (f"{self.rounds} mutations ({self.rules} rules) through check, translate "
                f"(every target) and explain: {self.count('traceback')} tracebacks, "
                f"{self.count('internal')} internal errors, {self.count('hang')} hangs over "
                f"{hang_limit:g} s (slowest round {self.slowest:.2f} s), peak memory "
                f"{self.peak_mb:.0f} MB")


def run_round(text: str, path: str, write_to: Path | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Everything `check`, `translate` (each target, then written as UTF-8) and `explain` do
    with one text: the number of rules, and (kind, detail) per problem found.  With
    `write_to`, the text is read from a file there and the translations are written there
    too, as `translate -o` writes them."""
    from rmmc.compiler.check import check_document
    from rmmc.compiler.documents import read_path, read_text
    from rmmc.compiler.explain import explain, to_jsonable
    from rmmc.compiler.pipeline import compile_document
    from rmmc.output import write_translations
    from rmmc.translation import translate_document

    problems: list[tuple[str, str]] = []

    def look(diagnostics, where: str) -> None:
        for d in diagnostics:
            if d.code in ("internal", "doc-internal") or d.message.startswith("internal error"):
                problems.append(("internal", f"{where}: {d.message}"))
            _utf8(d.message, where, problems)

    if write_to is not None:
        source = write_to / path
        source.write_bytes(text.encode("utf-8", "surrogateescape"))
        result = read_path(source)
    else:
        result = read_text(text, path)
    look(result.diagnostics, "read")
    written = []
    for document in result.documents:
        look(check_document(document).diagnostics, "check")
        compiled = compile_document(document)
        if compiled.rule is not None:
            _utf8(explain(compiled.rule), "explain", problems)
            _utf8(json.dumps(to_jsonable(compiled.rule), ensure_ascii=False), "explain json", problems)
        for target in TARGETS:
            translated = translate_document(document, target, package=target != "sigma")
            look(translated.diagnostics, f"translate --to {target}")
            _utf8(translated.text, f"translate --to {target}", problems)
            for _, companion in translated.companions:
                _utf8(companion, f"translate --to {target} (companion)", problems)
            written.append(translated)
    if write_to is not None and written:
        for force in (False, True):
            outcome = write_translations(written, str(write_to / "out"), force)
            look([d for _, d in outcome.values() if d is not None and "exists" not in d.message],
                 "translate -o")
    return len(result.documents), problems


def _utf8(text: str, where: str, problems: list[tuple[str, str]]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.append(("traceback", f"{where}: output cannot be written: {exc}"))


def fuzz(mutations: int, seed: int, hang_limit: float = 30.0, files: list[Path] | None = None,
         progress=None) -> Report:
    """`mutations` rounds from `files` (default: every corpus file), seeded."""
    rng = random.Random(seed)
    files = files if files is not None else corpus_files()
    if not files:
        raise RuntimeError("no corpus files found (../shared and rules/ are missing)")
    report = Report()
    texts: dict[Path, str] = {}
    previous = signal.signal(signal.SIGALRM, _alarm) if hasattr(signal, "SIGALRM") else None
    try:
        for number in range(mutations):
            source = rng.choice(files)
            if source not in texts:
                texts[source] = source.read_text(encoding="utf-8", errors="replace")
            round_seed = rng.randrange(2 ** 32)
            text = mutate(texts[source], random.Random(round_seed))
            label = f"{source.relative_to(source.parents[2]) if len(source.parents) > 2 else source}"
            started = time.perf_counter()
            _arm(hang_limit)
            workdir = None
            try:
                if number % WRITE_EVERY == 0:  # now and then through the file system too
                    import tempfile

                    workdir = Path(tempfile.mkdtemp(prefix="rmmc-fuzz-"))
                rules, problems = run_round(text, source.name, workdir)
            except Hang:
                problems, rules = [("hang", f"over {hang_limit:g} s")], 0
            except Exception as exc:  # an exception escaping rmmc: a traceback for a user
                problems, rules = [("traceback", "".join(
                    traceback.format_exception_only(type(exc), exc)).strip()
                    + "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:]))], 0
            finally:
                _arm(0)
                if workdir is not None:
                    import shutil

                    shutil.rmtree(workdir, ignore_errors=True)
            elapsed = time.perf_counter() - started
            report.rounds += 1
            report.rules += rules
            if elapsed > report.slowest:
                report.slowest, report.slowest_source = elapsed, label
            for kind, detail in problems:
                report.failures.append(Failure(kind, label, round_seed, detail))
            if progress is not None and (number + 1) % 500 == 0:
                progress(f"{number + 1} mutations, {len(report.failures)} failures, "
                         f"peak {_peak_mb():.0f} MB")
    finally:
        if previous is not None:
            signal.signal(signal.SIGALRM, previous)
    report.peak_mb = _peak_mb()
    return report


def _alarm(signum, frame):
    raise Hang()


def _arm(seconds: float) -> None:
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, seconds)


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def replay(source: Path, round_seed: int) -> str:
    """The text of one failed round (for a reproducer)."""
    text = source.read_text(encoding="utf-8", errors="replace")
    return mutate(text, random.Random(round_seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--hang-limit", type=float, default=30.0, help="seconds per round")
    parser.add_argument("--memory-limit", type=float, default=500.0, help="peak MB allowed")
    parser.add_argument("--address-space", type=float, default=4096.0,
                        help="MB of address space the run may map (a runaway round fails "
                             "with MemoryError instead of taking the machine)")
    args = parser.parse_args(argv)
    if hasattr(resource, "RLIMIT_AS"):
        limit = int(args.address_space * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    started = time.perf_counter()
    report = fuzz(args.mutations, args.seed, args.hang_limit,
                  progress=lambda line: print(line, file=sys.stderr, flush=True))
    for failure in report.failures[:20]:
        print(f"{failure.kind}: {failure.source} (round seed {failure.seed}): {failure.detail}")
    print(report.summary(args.hang_limit))
    print(f"seed {args.seed}, {time.perf_counter() - started:.0f} s in all; slowest round: "
          f"{report.slowest_source}")
    ok = not report.failures and report.peak_mb < args.memory_limit
    if report.peak_mb >= args.memory_limit:
        print(f"peak memory {report.peak_mb:.0f} MB is over the {args.memory_limit:g} MB limit")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
