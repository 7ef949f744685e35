"""Environments: where a target's data lives and how it names and writes its fields.

An environment is one YAML file (`rmmc/environments/<name>.yml` for the built-ins, or the
user's own: `--env FILE`, or `rmmc.yml` at the root of the rules tree), checked with located
errors when read (`loader`).  `adapt(rule, env)` puts a rule into it below every backend:
field names, value conventions (`forms`), the source's own tests, the schema check; the
backend then writes what it is given.  See README.md, "Environments".

    list_environments()            the built-ins: name, target, description
    load_environment(name_or_path) one, by built-in name or file path (EnvironmentError)
    find_environment(paths)        the `rmmc.yml` at the root of a rules tree, if any
    default_environment(target)    the built-in a target uses when none is given
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Iterable

from rmmc.environments.errors import EnvironmentError
from rmmc.environments.model import Environment

__all__ = ["DEFAULTS", "Environment", "EnvironmentError", "EnvironmentInfo", "default_environment",
           "environment_for", "find_environment", "list_environments", "load_environment"]

BUILTINS = ("defender-xdr", "sentinel", "sigma", "splunk-sysmon", "splunk-cim", "splunk-defender", "elastic-endpoint",
            "elastic-winlogbeat")
DEFAULTS = {"kql": "defender-xdr", "sigma": "sigma", "splunk": "splunk-sysmon",
            "eql": "elastic-winlogbeat", "esql": "elastic-winlogbeat"}
"""The environment each target uses when none is given (KQL: Defender XDR, rmmc's default
since the start; SPL: Sysmon names, as the old default field profile; EQL and ES|QL: Sysmon
and the Windows channels through Winlogbeat, ECS)."""
PROJECT_FILE = "rmmc.yml"


def __getattr__(name: str):
    """`read_environment` comes from the loader, imported when first asked for: it brings the
    YAML reader, which `rmmc check` without an environment never needs (a third of its
    start-up), and a built-in environment is read from the user's cache without it."""
    if name == "read_environment":
        from rmmc.environments import loader

        return loader.read_environment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class EnvironmentInfo:
    """A built-in environment as `rmmc` lists it."""

    name: str
    target: str
    description: str


def _folder() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def list_environments() -> list[EnvironmentInfo]:
    """The built-in environments, in a stable order."""
    return [EnvironmentInfo(e.name, e.target, e.description) for e in map(_builtin, BUILTINS)]


@cache
def _builtin(name: str) -> Environment:
    """A built-in environment, read and checked once per version of its file and of this
    package's code, then kept in the user's cache (reading and checking the YAML was a tenth
    of a cold translation)."""
    from rmmc.resources import package_text

    text = package_text(__name__, f"{name}.yml")
    path = _cached_path(name, text)
    if path is not None:
        from rmmc.user_cache import read_bytes

        data = read_bytes(path)
        if data is not None:
            try:
                try:  # the C unpickler alone: `import pickle` (its Python half) is 1% of a cold start
                    from _pickle import loads
                except ImportError:  # pragma: no cover - another Python
                    from pickle import loads

                env = loads(data)
                if isinstance(env, Environment) and env.name == name:
                    return env
            except Exception:  # an unreadable or stale entry: read the file again
                pass
    from rmmc.environments.loader import read_environment

    env = read_environment(text, f"<builtin {name}>", builtin=True)
    if path is not None:
        import pickle

        from rmmc.user_cache import write_bytes

        write_bytes(path, pickle.dumps(env, protocol=pickle.HIGHEST_PROTOCOL))
    return env


def _cached_path(name: str, text: str) -> str | None:
    """Where built-in `name` is kept: keyed by its text, the Python version and every file of
    this package (size and modification time), so an edit to the loader or the model is
    never answered from an older build."""
    from rmmc.user_cache import cache_folder, digest

    folder = cache_folder()
    stamps = _package_stamps()
    if folder is None or stamps is None:
        return None
    return os.path.join(folder, f"env-{name}-{digest('|'.join([sys.version, text, *stamps]))}.pickle")


@cache
def _package_stamps() -> tuple[str, ...] | None:
    """Each file of this package and its data folder as `name:size:mtime` (None when a folder
    cannot be listed): listed once per process, not for each environment a run loads."""
    stamps = []
    for base in (_folder(), os.path.join(_folder(), "data")):
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            return None
        for entry in entries:
            if entry.name.endswith((".py", ".yml", ".json")) and entry.is_file():
                stat = entry.stat()
                stamps.append(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return tuple(stamps)


def load_environment(name_or_path: str) -> Environment:
    """A built-in environment by name, or an environment file by path; `EnvironmentError` with
    located diagnostics when the file is not a valid environment, or names nothing."""
    if name_or_path in BUILTINS:
        return _builtin(name_or_path)
    from rmmc.environments.loader import read_environment

    if os.path.isfile(name_or_path):
        try:
            with open(name_or_path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise EnvironmentError([_problem(f"cannot read environment file {name_or_path}: {exc}")]) from None
        return read_environment(text, name_or_path)
    raise EnvironmentError([_problem(
        f"no environment {name_or_path!r}: name a built-in ({', '.join(BUILTINS)}) or a YAML file")])


def default_environment(target: str) -> Environment:
    return _builtin(DEFAULTS[target])


def find_environment(paths: Iterable[str]) -> str | None:
    """The `rmmc.yml` at the root of the rules tree: in a directory given on the command line
    (the first that has one), or beside a file given; None when there is none."""
    for path in paths:
        if path == "-":
            continue
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        candidate = os.path.join(folder, PROJECT_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def environment_for(target: str, env: "Environment | str | None") -> Environment:
    """The environment a translation to `target` uses: `env` (a loaded one, a name or a path)
    or the target's default; `EnvironmentError` when it does not serve the target."""
    chosen = default_environment(target) if env is None else (
        env if isinstance(env, Environment) else load_environment(env))
    if not chosen.serves(target):
        from rmmc.environments.loader import EnvironmentError

        raise EnvironmentError([_problem(
            f"environment {chosen.name} is for {chosen.target}, not {target}")])
    return chosen


def _problem(message: str):
    from rmmc.compiler.diagnostics import Diagnostic, Severity

    return Diagnostic(Severity.ERROR, message, None, "environment")
