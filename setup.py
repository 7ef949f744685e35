"""The optional compiled parts of rmmc: the fast LALR loop (`rmmc/grammar/_lalr_loop.c`), the
YAML composer over libyaml (`rmmc/compiler/sigma/_yaml_compose.c`) and the line starts of a
read file (`rmmc/compiler/_line_starts.c`).

Everything else is in pyproject.toml.  Every extension is `optional`: where one cannot be
built (no C compiler, no Python headers; for the composer, no libyaml headers: Debian's
`libyaml-dev`) the install goes on without it and rmmc runs the same steps in Python
(`rmmc.grammar.lalr_driver`; PyYAML's composer in `rmmc.compiler.sigma.yaml_tree`;
`rmmc.compiler.diagnostics.line_starts_python`), with the
same output.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("rmmc.grammar._lalr_loop", ["rmmc/grammar/_lalr_loop.c"], optional=True),
    Extension("rmmc.compiler.sigma._yaml_compose", ["rmmc/compiler/sigma/_yaml_compose.c"],
              libraries=["yaml"], optional=True),
    Extension("rmmc.compiler._line_starts", ["rmmc/compiler/_line_starts.c"], optional=True),
])
