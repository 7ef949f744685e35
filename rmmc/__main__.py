"""The `rmmc` command (and `python -m rmmc`): `--version` is answered without loading the CLI
(click alone costs a cold start about 20 ms); everything else goes to `rmmc.cli`."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from rmmc import __version__

        print(f"rmmc, version {__version__}")  # what click's version option prints
        sys.exit(0)
    from rmmc.cli import main as cli

    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
