"""``winequality serve``: the prediction API under the project's server (``http_server``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from winequality.serving.model import Loader
    from winequality.settings import ServingSettings


app = typer.Typer()
"""The top-level ``serve`` command."""


@app.command("serve")
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
            "WINEQ_REMOTE_URL; triton: start the bundled Triton server on the model and proxy "
            "to it (default: WINEQ_BACKEND or onnx)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve POST /predict, the V2 protocol, health, metadata and metrics over HTTP.

    With --backend triton, Ctrl-C stops the app and then the Triton server it started.
    """
    import contextlib
    import logging

    from winequality.settings import ServingSettings

    overrides: dict[str, object] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if backend is not None and backend not in ("onnx", "remote", "triton"):
        raise typer.BadParameter("must be onnx, remote or triton", param_hint="--backend")
    if backend in ("onnx", "remote"):
        overrides["backend"] = backend
    settings = ServingSettings(**overrides)  # type: ignore[arg-type]
    from winequality.summary import bundle_notice

    typer.echo(bundle_notice(settings.model_dir), err=True)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        loader = None
        if backend == "triton":
            from winequality.bundled_triton import BundledTriton

            triton = stack.enter_context(BundledTriton(settings))
            settings, loader = triton.settings_for_app(), triton.loader()
        run(settings, log_level, loader)


def run(settings: ServingSettings, log_level: str, loader: Loader | None = None) -> None:
    """The app for ``settings`` under the project's server (``http_server``: uvloop +
    httptools, no access log, drains on SIGTERM)."""
    from winequality.http_server import serve
    from winequality.serving.app import create_app

    app = create_app(settings, loader, freeze_gc=True)
    serve(app, host=settings.host, port=settings.port, settings=settings, log_level=log_level)
