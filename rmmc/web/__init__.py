"""`rmmc web`: a local translation playground (one page over the library).

Layers, each one job:

* `service`: what a request does, as plain functions of JSON values over the library
  (`rmmc.translate`, the document readers, `explain`, `verify_rule`): no translation logic.
* `workers`: runs those functions in worker processes with a time limit and a bounded
  queue, so CPU-bound work never blocks the server and a runaway request is stopped.
* `sandbox`: what a worker may not do once warmed up (write or delete files, read outside
  the Python installation, start processes, open sockets).
* `app`: the Starlette application: routes, size limits, host / origin checks, headers, the
  page's assets (held in memory).
* `server`: `serve(host, port, ...)`, run by `rmmc web`.

Starlette, uvicorn and Pebble come with the `web` extra (`pip install 'rmmc[web]'`) and are
imported only by `rmmc web`, so the other commands start as fast as before.
"""
