"""``winequality serve``: the prediction API under uvicorn (uvloop + httptools, no access log)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer


def register(root: typer.Typer) -> None:
    """Add this module's commands to the root command line."""
    root.command("serve")(serve)


Backend = Literal["onnx", "remote"]


def serve(
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Model bundle directory (default: WINEQ_MODEL_DIR or models/serving)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface (default: WINEQ_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: WINEQ_PORT).")] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="onnx: run the model in process; remote: proxy to the V2 server at "
            "WINEQ_REMOTE_URL (default: WINEQ_BACKEND or onnx)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve POST /predict, the V2 protocol, health, metadata and metrics over HTTP."""
    import gc
    import logging

    import uvicorn

    from winequality.serving.app import create_app
    from winequality.settings import Settings

    overrides: dict[str, object] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if backend is not None:
        if backend not in ("onnx", "remote"):
            raise typer.BadParameter("must be onnx or remote", param_hint="--backend")
        overrides["backend"] = backend
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # The ~70k objects created by the imports would otherwise be traversed by every full
    # collection (tens of ms, a latency spike); none of them is garbage.
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
    )
