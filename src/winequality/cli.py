"""The ``winequality`` command line, assembled in one place.

Each area's ``cli`` module holds a typer app; here each is added the same way, with
``add_typer``: with a name for a command group (``data``, ``drift``, ``export``), without one for
an area whose commands sit at the top level (``train``, ``serve``, ``retrain``, ...). Sub-modules
import their heavy dependencies (MLflow, DVC, scikit-learn) inside the commands, so
``winequality --help`` stays fast.
"""

from __future__ import annotations

import typer

from winequality.data.cli import app as data_app
from winequality.experiments import app as exp_app
from winequality.export.cli import app as export_app
from winequality.monitoring.cli import app as drift_app
from winequality.pipeline.cli import app as pipeline_app
from winequality.serving.cli import app as serving_app
from winequality.training.cli import app as training_app

app = typer.Typer(
    name="winequality",
    help="Wine-quality prediction from raw data to a monitored production service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# Command groups.
app.add_typer(data_app, name="data")
app.add_typer(drift_app, name="drift")
app.add_typer(export_app, name="export")
app.add_typer(exp_app, name="exp")
# Top-level commands: train, evaluate, register, promote (and the `registry` group); serve;
# webhook, retrain, up, simulate.
app.add_typer(training_app)
app.add_typer(serving_app)
app.add_typer(pipeline_app)


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

    from winequality.settings import ServingSettings, TrackingSettings
    from winequality.summary import summarize

    if not summarize(TrackingSettings(), ServingSettings().model_dir, Console()):
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
