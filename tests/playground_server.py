"""A real `rmmc web` server for the tests that need one (a browser, concurrent clients).

`PlaygroundServer.start()` runs `python -m rmmc.cli web --port 0` in a subprocess (any free
port on 127.0.0.1), reads the URL it prints and returns; `stop()` ends that process (by its
own handle: SIGTERM, then SIGKILL after a grace period) and its workers with it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

START_TIMEOUT = 120  # seconds: a cold interpreter on a loaded shared machine


def web_unavailable_reason() -> str | None:
    """Why `rmmc web` cannot run here (its extra is not installed), else None."""
    for module in ("starlette", "uvicorn", "pebble"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'rmmc[web]')"
    return None


@dataclass
class PlaygroundServer:
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: dict[str, str] | None = None
    url: str = ""
    process: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)

    def start(self) -> "PlaygroundServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rmmc.cli", "web", "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            cwd=self.cwd, env=self.env)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        try:
            first = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            first = ""
        if "http://" not in first:
            self.stop()
            raise RuntimeError("rmmc web did not start: " + "".join(self.output))
        self.url = first[first.index("http://"):].split()[0]
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.process = None

    # -- a client of its own, standard library only -------------------------------------------

    def get(self, path: str, timeout: float = 120) -> tuple[int, bytes]:
        return self._send(urllib.request.Request(self.url + path.lstrip("/")), timeout)

    def post(self, path: str, body: dict, timeout: float = 300) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path.lstrip("/"), data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        status, data = self._send(request, timeout)
        return status, json.loads(data)

    @staticmethod
    def _send(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
