"""The `rmmc` command line.

Exit status everywhere: 0 all good, 1 some rule has an error (the others are still done),
2 usage error.  No traceback ever reaches the user: an unexpected failure is reported as an
internal error with the rule it happened on.
"""

from __future__ import annotations

import json
import sys

import click

from rmmc import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rmmc")
def main() -> None:
    """rmmc: compile detection rules between KQL, Sigma, SPL and EQL, keeping their meaning."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report for people (text) or machines (json).")
@click.option("-q", "--quiet", is_flag=True, help="Report errors only (and the summary line).")
def check(paths: tuple[str, ...], output_format: str, quiet: bool) -> None:
    """Read rule documents and report what is wrong with them.

    PATHS are files, directories (searched for .kql .csl .txt .yaml .yml .md) or `-` for
    standard input.  Each problem is reported as `path:line:col: severity: message` with the
    source line and a caret, positions being in the original file.
    """
    from rmmc.compiler.check import check_paths
    from rmmc.compiler.diagnostics import LineIndex, Severity
    from rmmc.compiler.render import render_text, to_json

    report = check_paths(paths)
    if not report.files:
        raise click.UsageError("no rule files found under " + ", ".join(paths))

    if output_format == "json":
        payload = {
            "files": [
                {"path": f.path,
                 "rules": [{"index": r.document.index, "title": r.document.title,
                            "kind": r.document.kind.value, "ok": r.ok} for r in f.rules]}
                for f in report.files
            ],
            "diagnostics": [to_json(d) for d in report.diagnostics()
                            if not quiet or d.severity is Severity.ERROR],
            "summary": {"files": len(report.files), "rules": report.rule_count,
                        "errors": report.count(Severity.ERROR),
                        "warnings": report.count(Severity.WARNING)},
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        for checked in report.files:
            source = LineIndex(checked.source_text) if checked.source_text is not None else None
            for diagnostic in checked.all_diagnostics():
                if quiet and diagnostic.severity is not Severity.ERROR:
                    continue
                click.echo(render_text(diagnostic, source))
        click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
