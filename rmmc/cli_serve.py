"""`rmmc serve`: the click command (registered lazily in `rmmc.cli`); the work is `rmmc.serve`."""

from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Answer translate and check requests as JSON lines on standard input and output (one
    process for an editor or a pipeline: no start-up per rule).  See rmmc/serve.py."""
    from rmmc.serve import main

    main()
