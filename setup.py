"""The optional compiled part of rmmc: the fast LALR loop (`rmmc/grammar/_lalr_loop.c`).

Everything else is in pyproject.toml.  The extension is `optional`: where it cannot be
built (no C compiler, no Python headers) the install goes on without it and
`rmmc.grammar.lalr_driver` runs the same loop in Python, with the same output.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("rmmc.grammar._lalr_loop", ["rmmc/grammar/_lalr_loop.c"], optional=True)])
