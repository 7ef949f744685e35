"""The `rmmc` command (and `python -m rmmc`): `--version` is answered without loading the CLI
(click alone costs a cold start about 20 ms); everything else goes to `rmmc.cli`, and the
process ends without the interpreter's teardown (`_end`)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from rmmc import __version__

        print(f"rmmc, version {__version__}")  # what click's version option prints
        sys.exit(0)
    _put_off_collection()
    from rmmc import regex_code

    regex_code.install()
    from rmmc.cli import main as cli

    try:
        cli()
    except SystemExit as done:
        _end(done.code)
        raise


START_UP_OBJECTS = 50_000
"""About what a cold `rmmc translate` allocates before its first rule is done (some 30,000
objects that live as long as the process: modules, classes, tables), with room to spare."""


def _put_off_collection() -> None:
    """Put the garbage collector's first run off until START_UP_OBJECTS allocations; from its
    end on the usual thresholds apply.  Run every 700 allocations, it scanned the objects of
    start-up some fifty times and found nothing to free (3% of a cold translation)."""
    import gc

    usual = gc.get_threshold()

    def restore(phase: str, info: dict) -> None:
        if phase == "stop":
            gc.set_threshold(*usual)
            gc.callbacks.remove(restore)  # (a callback after this one skips this stop)

    gc.set_threshold(START_UP_OBJECTS, *usual[1:])
    gc.callbacks.append(restore)


def _end(code: object) -> None:
    """End the process now with exit status `code`, as the interpreter would, but without its
    teardown: freeing every module and object one by one and a last garbage collection were
    7% of a cold `rmmc translate`, and a finished command needs neither.  What the teardown
    does that matters is done first: the exit functions run (the user cache is saved) and the
    standard streams are flushed.  Returns, leaving the exit to the interpreter as before,
    when the status is not a number, while another thread runs, or when a stream cannot be
    flushed (a closed pipe: the interpreter reports it as it always did)."""
    if code is None:
        code = 0
    if not isinstance(code, int):
        return
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    if not _flushed():
        return
    import atexit

    atexit._run_exitfuncs()  # each runs once: they are unregistered as they run
    if _flushed():
        import os

        os._exit(code)


def _flushed() -> bool:
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:
        return False
    return True


if __name__ == "__main__":  # pragma: no cover
    main()
