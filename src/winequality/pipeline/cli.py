"""Commands of the continuous-training loop: the webhook, the retraining job, the local stack
(``up``) and the traffic simulator (``simulate``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from winequality import simulate
from winequality.pipeline.trigger import TRIGGER_FILE_ENV
from winequality.settings import Ports
from winequality.stages import PATHS

app = typer.Typer()
"""The loop's top-level commands: webhook, retrain, up, simulate."""
app.command("simulate")(simulate.simulate)


def _parse_ports(values: Sequence[int | None]) -> Ports:
    names = ("app", "detector", "webhook", "mlflow", "prometheus", "alertmanager")
    return Ports(**{n: v for n, v in zip(names, values, strict=True) if v is not None})


@app.command("up")
def up(
    *,
    run_dir: Annotated[Path, typer.Option(help="Run folder (configs, logs, data).")] = Path(
        ".stack"
    ),
    app_port: Annotated[int | None, typer.Option(help="Serving app (default 8000).")] = None,
    detector_port: Annotated[int | None, typer.Option(help="Drift detector (default 8010).")] = (
        None
    ),
    webhook_port: Annotated[int | None, typer.Option(help="Retraining webhook (8082).")] = None,
    mlflow_port: Annotated[int | None, typer.Option(help="MLflow UI (default 5000).")] = None,
    prometheus_port: Annotated[int | None, typer.Option(help="Prometheus (9090).")] = None,
    alertmanager_port: Annotated[int | None, typer.Option(help="Alertmanager (9093).")] = None,
    postgres_port: Annotated[
        int | None, typer.Option(help="PostgreSQL of --compose-config's stack (5432).")
    ] = None,
    scrape_interval: Annotated[str, typer.Option(help="Prometheus scrape interval.")] = "5s",
    evaluation_interval: Annotated[str, typer.Option(help="Rule evaluation interval.")] = "5s",
    drift_for: Annotated[str, typer.Option(help="`for:` of the WineQualityDrift alert.")] = "10s",
    degraded_for: Annotated[
        str | None, typer.Option(help="`for:` of WineQualityDegraded (default: the rules').")
    ] = None,
    group_wait: Annotated[str, typer.Option(help="Alertmanager group_wait.")] = "5s",
    group_interval: Annotated[str, typer.Option(help="Alertmanager group_interval.")] = "1m",
    window_size: Annotated[
        int | None, typer.Option(help="Detector window (default: drift.window_size).")
    ] = None,
    cooldown: Annotated[float, typer.Option(help="Retraining cool-down, seconds.")] = 120.0,
    params_file: Annotated[
        Path | None, typer.Option("--params", help="Base params (default: params.yaml).")
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="Start the MLflow UI.")] = True,
    compose_config: Annotated[
        Path | None,
        typer.Option(
            "--compose-config",
            help="Start nothing: write this stack's configs for deploy/compose.yaml into this "
            "folder (its run folder, instead of --run-dir), with the docker-compose commands.",
        ),
    ] = None,
) -> None:
    """Start the local stack (MLflow, app, detector, webhook, Prometheus, Alertmanager).

    Needs a champion model in the registry (run the pipeline first) and the prometheus and
    prometheus-alertmanager binaries. Prints the URLs; Ctrl-C stops everything. With
    --compose-config, writes the same stack's configs for the containers of deploy/compose.yaml.
    """
    from winequality.settings import (
        DetectorSettings,
        RetrainSettings,
        ServingSettings,
        WebhookSettings,
    )
    from winequality.stack import StackConfig, StackError, StackRunningError, run_stack

    settings = RetrainSettings()
    config = StackConfig(
        run_dir=compose_config or run_dir,
        ports=_parse_ports(
            [
                app_port or ServingSettings().port,
                detector_port or DetectorSettings().port,
                webhook_port or WebhookSettings().port,
                mlflow_port,
                prometheus_port,
                alertmanager_port,
            ]
        ),
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
        drift_for=drift_for,
        degraded_for=degraded_for,
        group_wait=group_wait,
        group_interval=group_interval,
        window_size=window_size,
        cooldown_s=cooldown,
        params_file=params_file,
        mlflow=mlflow,
    )
    try:
        if compose_config is not None:
            from winequality.compose import write_compose_config

            files = write_compose_config(config, settings, postgres_port=postgres_port)
            typer.echo(f"wrote the compose stack's configs into {compose_config}; run it with")
            for action in ("up -d", "down"):
                typer.echo("  " + " ".join(files.command(*action.split())))
            raise typer.Exit(0)
        code = run_stack(config, settings)
    except StackError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2 if isinstance(exc, StackRunningError) else 1) from exc
    raise typer.Exit(code)


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
