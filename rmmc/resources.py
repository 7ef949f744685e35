"""Data files shipped inside rmmc's packages (schemas, field profiles), read without
`importlib.resources` when they are plain files: importing it costs a cold start several
milliseconds (tempfile, shutil, zipfile), more than reading the file."""

from __future__ import annotations

import os
import sys


def package_text(package: str, name: str) -> str:
    """The text of data file `name` in `package` (say `rmmc.compiler.schema`)."""
    module = sys.modules.get(package)
    folder = os.path.dirname(getattr(module, "__file__", None) or "")
    if folder:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                return handle.read()
        except OSError:  # installed without real files (a zip): ask importlib
            pass
    from importlib.resources import files

    return files(package).joinpath(name).read_text(encoding="utf-8")
