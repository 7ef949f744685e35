"""Content pipelines: a rules tree built for every environment (`rmmc build`), checked in CI
(`rmmc build --check`, reports for CI systems), and rule changes read as changes of detection
(`rmmc diff`).

- `environments`: an environment name -> the targets it builds and their translate arguments
  (the one place that knows what an environment is).
- `build`: every rule to every target of each environment, a manifest, a content-hash cache.
- `check`: a fresh build against the `dist/` on disk and its manifest.
- `reports`: the build or check as JSON, JUnit XML or SARIF 2.1.0.
- `diff`: what a rule change does to detection, with an example event per difference.
"""
