"""`rmmc web`: bind, say where, and serve the playground with uvicorn until interrupted."""

from __future__ import annotations

import socket
from typing import Callable

import uvicorn

from rmmc.web.app import LOOPBACK_HOSTS, create_app
from rmmc.web.workers import Limits

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def allowed_hosts(host: str) -> set[str]:
    """The Host header values the server answers to: loopback names, the host it was bound
    to, and for a wildcard bind this machine's name."""
    allowed = set(LOOPBACK_HOSTS)
    if host in WILDCARD_HOSTS:
        allowed.add(socket.gethostname().lower())
    else:
        allowed.add(host.lower())
    return allowed


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port); connections wait in its backlog until
    the server accepts them, so the URL can be printed before the server runs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def serve(host: str = "127.0.0.1", port: int = 8765, limits: Limits = Limits(),
          announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C); the workers stop with the server."""
    sock = bind(host, port)
    app = create_app(limits, allowed_hosts(host))
    announce(f"rmmc playground: {url_of(sock, host)}  (Ctrl-C stops it)")
    if host not in LOOPBACK_HOSTS:
        announce(f"warning: bound to {host or 'every address'}: other machines can reach it")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            limit_concurrency=64, timeout_keep_alive=5, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
