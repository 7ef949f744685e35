"""The service in worker processes: CPU-bound work off the server's event loop.

Each request runs in one of a few worker processes (Pebble's `ProcessPool`, chosen because it
stops a task that runs over its time limit by ending its worker and starting a fresh one,
which the standard library's pools cannot do).  A request that arrives while `queue`
requests are waiting or running is answered 503 at once; one that runs over its time limit
is stopped and answered 504; one whose client went away is dropped if it has not started.

Workers are started with `spawn` (a clean interpreter, not a fork of the threaded server),
warmed up (parsers built, backends and verify engines imported), capped in memory and then
locked down (`rmmc.web.sandbox`).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from dataclasses import dataclass

from rmmc.web import service

MEMORY_LIMIT = 4 * 1024 * 1024 * 1024  # address space per worker

_WARM_RULE = ("DeviceProcessEvents | where Timestamp > ago(1d)\n"
              "| where FileName =~ 'a.exe' and ProcessCommandLine has 'x' and not(FolderPath startswith 'c:')\n"
              "| summarize count() by DeviceName")
_WARM_SIGMA = ("title: warm\nlogsource:\n  category: process_creation\n  product: windows\n"
               "detection:\n  selection:\n    Image|endswith: '\\a.exe'\n  condition: selection\n")


@dataclass(frozen=True)
class Limits:
    workers: int = 2
    time_limit: float = 20.0         # seconds of work for a translate or explain request
    verify_time_limit: float = 60.0  # seconds of work for a verify request
    queue: int = 8                   # requests waiting or running at once

    def for_action(self, action: str) -> float:
        return self.verify_time_limit if action == "verify" else self.time_limit


def _warm_requests():
    from rmmc.backends import targets

    for target in targets():
        for package in (False, True):
            yield "translate", {"text": _WARM_RULE, "target": target, "package": package}
    yield "translate", {"text": _WARM_SIGMA, "target": "kql"}
    yield "explain", {"text": _WARM_RULE}
    yield "verify", {"text": _WARM_RULE}
    yield "verify", {"text": _WARM_SIGMA}


def start_worker() -> None:
    """The pool's initializer: cap memory, warm up, lock down.  Never raises (a worker that
    cannot warm up still serves, its requests reporting what fails)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    except (ImportError, ValueError, OSError):
        pass
    for action, request in _warm_requests():
        try:
            service.handle(action, json.dumps(request).encode())
        except Exception:
            pass
    from rmmc.web.sandbox import lock_down

    lock_down()


def _answer(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


class Workers:
    """A pool of service workers with limits; `start` and `close` around its use."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._pending = 0
        self._lock = threading.Lock()
        self._pool = None
        # requests dropped before they started (their client left), stopped at their time
        # limit, refused because the queue was full: for /api/health
        self.counts = {"dropped": 0, "stopped": 0, "refused": 0}

    @property
    def pending(self) -> int:
        """Requests waiting for a worker or running in one."""
        return self._pending

    def start(self) -> None:
        from pebble import ProcessPool

        self._pool = ProcessPool(max_workers=self.limits.workers, initializer=start_worker,
                                 context=multiprocessing.get_context("spawn"))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join(timeout=10)
            self._pool = None

    def _finished(self, future) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, action: str, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, JSON bytes) of one request.  Cancelling the call drops the request
        if it is still waiting; one already running finishes within its time limit (stopping
        it would cost a fresh worker's start-up, longer than most requests)."""
        from pebble import ProcessExpired

        if self._pool is None:
            return _answer(503, "the playground is not started")
        with self._lock:
            if self._pending >= self.limits.queue:
                self.counts["refused"] += 1
                return _answer(503, f"the playground is busy ({self._pending} requests at once): "
                                    "try again in a moment")
            self._pending += 1
        limit = self.limits.for_action(action)
        try:
            future = self._pool.schedule(service.handle, args=(action, body), timeout=limit)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        answer = asyncio.wrap_future(future)
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, even if abandoned
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            if not future.running() and future.cancel():
                self.counts["dropped"] += 1
            raise
        except TimeoutError:
            self.counts["stopped"] += 1
            return _answer(504, f"stopped after {limit:g} s: the rule takes longer than the "
                                "playground allows (use the CLI)")
        except ProcessExpired as exc:
            return _answer(500, f"the worker stopped while handling this request ({exc})")
