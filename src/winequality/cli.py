"""The ``winequality`` command line: one sub-app or command group per stage.

Sub-modules import their heavy dependencies (MLflow, DVC, scikit-learn) inside the commands, so
``winequality --help`` stays fast.
"""

from __future__ import annotations

import typer

from winequality.data.cli import app as data_app
from winequality.export.cli import app as export_app
from winequality.monitoring.cli import app as drift_app
from winequality.pipeline import cli as pipeline_cli
from winequality.serving import cli as serving_cli
from winequality.training import cli as training_cli

app = typer.Typer(
    name="winequality",
    help="Wine-quality prediction from raw data to a monitored production service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


app.add_typer(data_app, name="data")
app.add_typer(drift_app, name="drift")
app.add_typer(export_app, name="export")


@app.callback()
def main() -> None:
    """Wine-quality prediction from raw data to a monitored production service."""


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("winequality"))


@app.command()
def summary() -> None:
    """Print where the champion model is, its metrics, and how to open the MLflow UI."""
    from rich.console import Console

    from winequality.settings import Settings
    from winequality.summary import summarize

    if not summarize(Settings(), Console()):
        raise typer.Exit(1)


pipeline_cli.register(app)
serving_cli.register(app)
training_cli.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
