"""Per-file batches on several cores, in input order, with an optional progress bar.

`run_batch(work, files, jobs)` calls `work(path)` for every file and returns the results in
the order of `files`, whatever order the workers finish in.  It runs in this process
(exactly the serial loop) when `jobs` is 1 or the batch is too small to pay for the worker
start-up; otherwise in a `ProcessPoolExecutor`, files sent in chunks (`chunk_size`): only the
paths go to a worker and only those files' results come back.

`work` must be a module-level function (picklable) that never raises for bad input; should
it raise anyway, or should a worker die (a crash, the OOM killer), `on_error(path, message)`
builds that file's result instead, so one file never stops the batch.  After a crash the
files whose results were lost are run again one at a time in a fresh worker, so only the
file that crashed its worker is reported.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence, TypeVar

R = TypeVar("R")

MIN_FILES = 16
"""A batch is run on several cores when it has at least this many files ..."""
MIN_BYTES = 1024 * 1024
"""... or at least two files and this many bytes in all.  Below both, starting the workers
(a fork each, and each worker building its own lexers) costs more than it saves."""

STDIN = "-"


def default_jobs() -> int:
    return os.cpu_count() or 1


def worth_parallel(files: Sequence[str], jobs: int) -> bool:
    """Whether `files` should be spread over `jobs` processes."""
    if jobs <= 1 or len(files) < 2 or STDIN in files:  # stdin can only be read here
        return False
    if len(files) >= MIN_FILES:
        return True
    total = 0
    for path in files:
        try:
            total += os.stat(path).st_size
        except OSError:
            pass
        if total >= MIN_BYTES:
            return True
    return False


def show_progress(files: Sequence[str], machine_output: bool = False) -> bool:
    """A progress bar only for people: stderr is a terminal, there is more than one file, and
    the output is not JSON going to a pipe."""
    if len(files) < 2 or not _isatty(sys.stderr):
        return False
    return not (machine_output and not _isatty(sys.stdout))


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def run_batch(work: Callable[[str], R], files: Sequence[str], jobs: int,
              on_error: Callable[[str, str], R], progress: bool = False,
              label: str = "", prepare: Callable[[], None] | None = None) -> list[R]:
    """`[work(f) for f in files]`, on up to `jobs` processes when worth it (see module doc)."""
    files = list(files)
    with _progress(len(files), label, progress) as bar:
        if not worth_parallel(files, jobs):
            results = []
            for path in files:
                results.append(_guarded(work, path, on_error))
                bar.update(1)
            return results
        if prepare is not None:
            prepare()  # build parsers once here, so forked workers inherit them
        return _parallel(work, files, min(jobs, len(files)), on_error, bar)


def _guarded(work: Callable[[str], R], path: str, on_error: Callable[[str, str], R]) -> R:
    try:
        return work(path)
    except Exception as exc:  # a bug of ours must not stop the batch
        return on_error(path, f"{type(exc).__name__}: {exc}")


MAX_CHUNK = 32
"""Files per task at most: one task per file made the pool's own traffic (a pickled call and
result per file) cost more than the work on small rules."""


def chunk_size(files: int, jobs: int) -> int:
    """About eight tasks per worker (so a slow file does not leave a core idle), 1..MAX_CHUNK."""
    return max(1, min(MAX_CHUNK, files // (jobs * 8)))


def _run_chunk(work, paths: list[str], on_error) -> list:
    return [_guarded(work, path, on_error) for path in paths]


def _parallel(work, files: list[str], jobs: int, on_error, bar) -> list:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    results: dict[int, object] = {}
    lost: list[int] = []
    size = chunk_size(len(files), jobs)
    chunks = [list(range(start, min(start + size, len(files)))) for start in range(0, len(files), size)]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_context()) as pool:
        futures = [_submit(pool, _run_chunk, work, [files[n] for n in chunk], on_error) for chunk in chunks]
        try:
            for chunk, future in zip(chunks, futures):  # in input order
                try:
                    for number, result in zip(chunk, future.result()):
                        results[number] = result
                except BrokenProcessPool:
                    lost.extend(chunk)
                    continue
                except Exception as exc:  # the results could not come back (unpicklable)
                    for number in chunk:
                        results[number] = on_error(files[number], f"{type(exc).__name__}: {exc}")
                bar.update(len(chunk))
        except BaseException:  # Ctrl-C: drop what has not started, do not wait for it
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    while lost:  # a worker died: run what was lost on one fresh worker, one file per task and
        pending, lost = lost, []  # in order, so the first file whose result is lost crashed it
        crashed = False
        with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as pool:
            retried = [(number, _submit(pool, _guarded, work, files[number], on_error))
                       for number in pending]
            for number, future in retried:
                try:
                    results[number] = future.result()
                except BrokenProcessPool as exc:
                    if crashed:
                        lost.append(number)
                        continue
                    crashed = True
                    results[number] = on_error(files[number], "the worker process handling "
                                               f"this file died ({type(exc).__name__}: {exc})")
                except Exception as exc:
                    results[number] = on_error(files[number], f"{type(exc).__name__}: {exc}")
                bar.update(1)
    return [results[number] for number in range(len(files))]


def _submit(pool, function, *args):
    """`pool.submit`, or a future holding the reason it could not be submitted."""
    from concurrent.futures import Future

    try:
        return pool.submit(function, *args)
    except Exception as exc:  # BrokenProcessPool: a worker died while we were submitting
        future: Future = Future()
        future.set_exception(exc)
        return future


def _context():
    """fork where there is one: workers start at once with what this process has loaded."""
    import multiprocessing

    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress(length: int, label: str, shown: bool):
    if not shown:
        return _NoBar()
    import click

    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True,
                             show_eta=False)
