"""The playground's Starlette application: one page, its assets, and a JSON API.

Routes (nothing else is served; no request names a file):

* `GET /`, `/app.js`, `/app.css`, `/favicon.svg`: the page, held in memory from start-up;
* `GET /api/options`: what the pickers offer (`service.options`);
* `GET /api/health`: `{"ok": true, "pending": N, "workers": N, "dropped": N, "stopped": N,
  "refused": N}` (requests waiting or running; dropped when their client left before they
  started, stopped at their time limit, refused with the queue full);
* `POST /api/translate`, `/api/explain`, `/api/verify`: JSON in, JSON out, run by the workers.

Guards: the Host header must name this server (a loopback name, or the host it was bound to),
which stops DNS rebinding; a POST must be `application/json`, and its `Origin` (and
`Sec-Fetch-Site`), when the browser sends them, must be this server's own, which stops other
pages from using it (there are no CORS headers, so no other origin can read an answer);
bodies over `MAX_BODY_BYTES` are refused while they are read.  Every answer carries a
Content-Security-Policy that allows this origin's scripts and styles only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib.resources import files
from typing import Iterable

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rmmc.web.workers import Limits, Workers

MAX_BODY_BYTES = 8 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8"),
          "/favicon.svg": ("favicon.svg", "image/svg+xml")}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class TooLarge(Exception):
    pass


def host_name(header: str) -> str:
    """The host of a Host header, without its port (`[::1]:8000` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """Pure ASGI middleware: the Host check for every request, and the security headers on
    every answer."""

    def __init__(self, app, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() not in {name for name, _ in SECURITY_HEADERS}]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        if host_name(host) not in self.allowed:
            response = JSONResponse({"error": "this server answers to its own host name only"},
                                    status_code=421)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def cross_origin(request: Request) -> tuple[int, str] | None:
    """Why a POST is refused as not coming from this server's own page, else None."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        return 403, "requests from other origins are refused"
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return 403, "requests from other sites are refused"
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return 415, "send the request as application/json"
    return None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (TooLarge) as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise TooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (after the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(limits: Limits = Limits(), allowed_hosts: Iterable[str] = LOOPBACK_HOSTS) -> Guard:
    """The playground application; its workers start and stop with its lifespan."""
    from rmmc.web import service

    workers = Workers(limits)
    static = files("rmmc.web") / "static"
    assets = {path: (static.joinpath(name).read_bytes(), media) for path, (name, media) in ASSETS.items()}
    options = json.dumps(service.options()).encode()

    async def asset(request: Request) -> Response:
        body, media = assets[request.url.path]
        return Response(body, media_type=media, headers={"cache-control": "no-cache"})

    async def get_options(request: Request) -> Response:
        return Response(options, media_type="application/json")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "pending": workers.pending, "workers": limits.workers,
                             **workers.counts}, headers={"cache-control": "no-store"})

    def action(name: str):
        async def endpoint(request: Request) -> Response:
            refused = cross_origin(request)
            if refused is not None:
                return JSONResponse({"error": refused[1]}, status_code=refused[0])
            try:
                body = await read_body(request)
            except TooLarge:
                return JSONResponse({"error": f"the request is over {MAX_BODY_BYTES:,} bytes"},
                                    status_code=413)
            except ClientDisconnect:
                return Response(status_code=400)
            work = asyncio.ensure_future(workers.run(name, body))
            gone = asyncio.ensure_future(_disconnected(request))
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not work.done():  # the client left: stop its work
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                return Response(status_code=499)
            status, data = work.result()
            return Response(data, status_code=status, media_type="application/json",
                            headers={"cache-control": "no-store"})

        endpoint.__name__ = f"api_{name}"
        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(app):
        workers.start()
        try:
            yield
        finally:
            await asyncio.to_thread(workers.close)

    routes = [Route(path, asset, methods=["GET"]) for path in ASSETS]
    routes += [Route("/api/options", get_options, methods=["GET"]),
               Route("/api/health", health, methods=["GET"])]
    routes += [Route(f"/api/{name}", action(name), methods=["POST"]) for name in service.ACTIONS]
    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, allowed_hosts)
