"""Commands of the continuous-training loop: the Alertmanager webhook and the retraining job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(root: typer.Typer) -> None:
    """Add this module's commands to the root command line."""
    root.command("webhook")(webhook)


def webhook(
    port: Annotated[int | None, typer.Option(help="Port (default: WINEQ_WEBHOOK_PORT).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    log_dir: Annotated[Path, typer.Option(help="Where each retraining run logs.")] = Path(
        "logs/retrain"
    ),
) -> None:
    """Serve the Alertmanager webhook that starts retraining (token: WINEQ_WEBHOOK_TOKEN)."""
    import uvicorn

    from winequality.monitoring.alerts import Retrainer, create_app
    from winequality.settings import Settings

    settings = Settings()
    if not settings.webhook_token:
        typer.echo("WINEQ_WEBHOOK_TOKEN is not set: every alert would be refused (401).", err=True)
        raise typer.Exit(2)
    retrainer = Retrainer(settings.retrain_command, settings.retrain_cooldown_s, log_dir)
    try:
        uvicorn.run(
            create_app(settings, retrainer),
            host=host,
            port=port or settings.webhook_port,
            log_level="warning",
        )
    finally:
        retrainer.stop()
