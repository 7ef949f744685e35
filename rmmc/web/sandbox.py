"""What a playground worker may not do once it is warmed up, enforced with an audit hook.

The service never turns a request into a path, a command or an address; this makes that a
property of the worker process rather than of every code path below it.  After
`lock_down()`:

* `open` for writing (any mode that writes, creates, truncates or appends) is refused, and
  so are deleting, renaming, linking and creating files or folders and changing their modes;
* `open` and directory listings for reading are refused outside the Python installation and
  the places modules were imported from (`sys.path`, the loaded packages), plus rmmc's cache
  folder: nothing a rule can name, such as /etc/passwd or a home directory, can be read;
* starting programs (`subprocess`, `os.system`, `exec*`, `spawn*`, `fork`) and sockets are
  refused, and SQLite opens in-memory databases only.

A refusal raises PermissionError inside the worker; the service reports it as the
request's internal error.  Python's audit hooks are not a defence against code that sets
out to escape them (ctypes could); they are one against our own code being led, by a rule,
into touching a file.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

# Events refused outright once locked down (their names as `sys.audit` raises them).
DENIED = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod", "os.chown",
    "os.chflags", "os.link", "os.symlink", "os.utime", "os.setxattr", "os.removexattr",
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile",
    "subprocess.Popen", "pty.spawn", "shutil.copyfile", "shutil.copymode", "shutil.copystat",
    "shutil.copytree", "shutil.move", "shutil.rmtree", "shutil.make_archive", "shutil.chown",
    "shutil.unpack_archive", "tempfile.mkstemp", "tempfile.mkdtemp",
    "socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "urllib.Request", "ftplib.connect",
    "smtplib.connect", "http.client.connect", "webbrowser.open", "ctypes.dlopen",
})
_LISTING = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.walk"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

_locked = False


def read_roots() -> list[str]:
    """Folders a locked-down worker may still read: the Python installation, every import
    location, the folders of the modules already loaded, and rmmc's cache folder."""
    places: set[str] = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    here = os.path.realpath(os.getcwd())
    # not the working folder ("" or, under `python -m`, its full path): a user's files
    places.update(p for p in sys.path if p and os.path.isabs(p) and os.path.realpath(p) != here)
    for module in list(sys.modules.values()):
        location = getattr(module, "__file__", None)
        if isinstance(location, str):
            places.add(os.path.dirname(location))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    places.add(os.path.join(cache, "rmmc"))
    roots = {os.path.realpath(p) for p in places}
    # Keep the outermost of nested roots; "/" would make the rule pointless.
    ordered = sorted(r for r in roots if r != os.sep)
    kept: list[str] = []
    for root in ordered:
        if not any(root == k or root.startswith(k + os.sep) for k in kept):
            kept.append(root)
    return kept


def _inside(path: Any, roots: Iterable[str]) -> bool:
    if isinstance(path, int):  # an open file descriptor (a pipe the worker already has)
        return True
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return False
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def _writes(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def lock_down(roots: Iterable[str] | None = None) -> None:
    """Install the hook (once per process; audit hooks cannot be removed)."""
    global _locked
    if _locked:
        return
    allowed = tuple(read_roots() if roots is None else roots)
    sys.dont_write_bytecode = True

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if _writes(mode, flags):
                raise PermissionError(f"the playground does not write files ({path!r})")
            if not _inside(path, allowed):
                raise PermissionError(f"the playground does not read {path!r}")
        elif event in _LISTING:
            if args and not _inside(args[0] if args[0] is not None else ".", allowed):
                raise PermissionError(f"the playground does not list {args[0]!r}")
        elif event == "sqlite3.connect":
            if args and args[0] not in (":memory:", b":memory:", ""):
                raise PermissionError("the playground opens in-memory databases only")
        elif event in DENIED:
            raise PermissionError(f"the playground does not do {event}")

    sys.addaudithook(hook)
    _locked = True
