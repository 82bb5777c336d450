"""The ``winequality`` command line: one sub-app or command group per stage.

Sub-modules import their heavy dependencies (MLflow, DVC, scikit-learn) inside the commands, so
``winequality --help`` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="winequality",
    help="Wine-quality prediction from raw data to a monitored production service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Wine-quality prediction from raw data to a monitored production service."""


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("winequality"))


if __name__ == "__main__":  # pragma: no cover
    app()
