"""Commands of the continuous-training loop: the webhook, the retraining job, the local stack
(``up``) and the traffic simulator (``simulate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from winequality import simulate, stack
from winequality.pipeline.trigger import TRIGGER_FILE_ENV
from winequality.stages import PATHS

app = typer.Typer()
"""The loop's top-level commands: webhook, retrain, up, simulate."""
app.command("up")(stack.up)
app.command("simulate")(simulate.simulate)


@app.command("webhook")
def webhook(
    port: Annotated[int | None, typer.Option(help="Port (default: WINEQ_WEBHOOK_PORT).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: WINEQ_WEBHOOK_HOST).")
    ] = None,
    log_dir: Annotated[Path, typer.Option(help="Where each retraining run logs.")] = Path(
        "logs/retrain"
    ),
) -> None:
    """Serve the Alertmanager webhook that starts retraining (token: WINEQ_WEBHOOK_TOKEN)."""
    from winequality.http_server import serve
    from winequality.pipeline.webhook import Retrainer, create_app
    from winequality.settings import WebhookSettings

    settings = WebhookSettings()
    if not settings.token:
        typer.echo("WINEQ_WEBHOOK_TOKEN is not set: every alert would be refused (401).", err=True)
        raise typer.Exit(2)
    retrainer = Retrainer(settings.command, settings.cooldown_s, log_dir)
    try:
        application = create_app(settings, retrainer)
        host, port = host or settings.host, port or settings.port
        serve(application, host=host, port=port, settings=settings, log_level="warning")
    finally:
        retrainer.stop()


@app.command("retrain")
def retrain(
    *,
    train_path: Annotated[
        Path | None,
        typer.Option("--train", help=f"Base training split (default: {PATHS.train})."),
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(help=f"Base test split (default: {PATHS.test})."),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where this run's data, model and reports go (default: data/retrain/<time>)."
        ),
    ] = None,
    trigger: Annotated[
        str, typer.Option(help="The run's `trigger` tag when no trigger file names the alert.")
    ] = "manual",
    trigger_file: Annotated[
        Path | None,
        typer.Option(
            envvar=TRIGGER_FILE_ENV,
            help="The alerts that started this run (JSON written by the webhook); their names "
            "become the `trigger` tag, the file an artifact of the run.",
        ),
    ] = None,
    notify: Annotated[
        bool,
        typer.Option(
            help="Tell the app (WINEQ_APP_URL) and detector (WINEQ_DETECTOR_URL) to reload."
        ),
    ] = True,
    n_jobs: Annotated[int, typer.Option(help="Parallel cross-validation fits.")] = 1,
) -> None:
    """Retrain on the base data + labelled feedback, gate, promote, and deploy the new champion.

    The last line printed is one JSON object: {"promoted", "version", "reason", "feedback_rows",
    ...}. A refused challenger is a normal outcome (exit 0); errors print a JSON line with the
    reason and exit 1.
    """
    import sqlite3
    from datetime import UTC, datetime

    from mlflow.exceptions import MlflowException

    from winequality.commands import settings_and_params
    from winequality.pipeline.retrain import RetrainResult
    from winequality.pipeline.retrain import retrain as do_retrain
    from winequality.pipeline.trigger import read_trigger
    from winequality.settings import RetrainSettings
    from winequality.stages import StageError

    settings, params = settings_and_params(RetrainSettings)
    root = settings.project_dir
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    try:
        alerts = read_trigger(trigger_file) if trigger_file is not None else None
        result = do_retrain(
            settings,
            params,
            base_train=train_path or root / PATHS.train,
            base_test=test or root / PATHS.test,
            work_dir=work_dir or root / "data" / "retrain" / stamp,
            trigger=alerts,
            fallback_trigger=trigger,
            notify=notify,
            n_jobs=n_jobs,
        )
    # What a retraining can meet: missing or bad data (OSError, ValueError, TypeError), a
    # refused export or registry state (StageError), an unreadable feedback store, the tracking
    # server failing (MlflowException; a refused connection is an OSError).
    except (OSError, ValueError, TypeError, StageError, sqlite3.Error, MlflowException) as exc:
        # The webhook records the last JSON line of the job: a failure must leave one too.
        reason = f"error: {type(exc).__name__}: {exc}"
        typer.secho(reason, err=True, fg=typer.colors.RED)
        typer.echo(RetrainResult(False, None, reason, None, outcome="error").as_json())
        raise typer.Exit(1) from exc
    typer.echo(f"{result.outcome}: {result.reason}", err=True)
    typer.echo(result.as_json())
