"""``winequality drift ...``: run the detector service, test a file, build the Alibi venv.

Heavy imports happen inside the commands so ``winequality --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from winequality.params import DriftParams

app = typer.Typer(name="drift", help="Data-drift detection and its service.", no_args_is_help=True)

ReferenceOpt = Annotated[
    Path | None,
    typer.Option("--reference", help="Reference parquet (schema.DATA_COLUMNS).", dir_okay=False),
]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        help="Model bundle whose reference.parquet is used (default: WINEQ_DRIFT_MODEL_DIR).",
    ),
]
ParamsOpt = Annotated[
    Path | None, typer.Option("--params", help="params.yaml (default: WINEQ_DRIFT_PARAMS_FILE).")
]


def _reference_path(reference: Path | None, model_dir: Path | None) -> Path:
    from winequality.artifacts import REFERENCE_FILE
    from winequality.settings import DetectorSettings

    if reference is not None and model_dir is not None:
        raise typer.BadParameter("give either --reference or --model-dir, not both")
    if reference is not None:
        return reference
    return (model_dir or DetectorSettings().model_dir) / REFERENCE_FILE


def _drift_params(params_file: Path | None) -> DriftParams:
    from winequality.params import load_params
    from winequality.settings import DetectorSettings

    return load_params(params_file or DetectorSettings().params_file).drift


@app.command()
def serve(
    reference: ReferenceOpt = None,
    model_dir: ModelDirOpt = None,
    params_file: ParamsOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: WINEQ_DRIFT_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to bind (default: WINEQ_DRIFT_PORT, 8010).")
    ] = None,
) -> None:
    """Run the drift detector service (CloudEvents on POST /, metrics on /metrics)."""
    from winequality.http_server import serve as serve_http
    from winequality.monitoring.service import create_app
    from winequality.settings import DetectorSettings

    settings = DetectorSettings()
    path = _reference_path(reference, model_dir)
    application = create_app(settings, _drift_params(params_file), path, freeze_gc=True)
    host, port = host or settings.host, port or settings.port
    serve_http(application, host=host, port=port, settings=settings, log_level="info")


@app.command()
def check(
    data: Annotated[Path, typer.Argument(help="Window to test: parquet or CSV with the features.")],
    reference: ReferenceOpt = None,
    model_dir: ModelDirOpt = None,
    params_file: ParamsOpt = None,
    backend: Annotated[str, typer.Option(help="ks (built in) or alibi (its own venv).")] = "ks",
) -> None:
    """Test one file of rows against the reference; print the result as JSON.

    Exits with 1 when the rows drifted, 0 otherwise (usable as a pipeline gate).
    """
    import pandas as pd

    from winequality.monitoring.detector import detect_frame, load_reference

    frame = pd.read_parquet(data) if data.suffix == ".parquet" else pd.read_csv(data)
    params = _drift_params(params_file)
    ref_path = _reference_path(reference, model_dir)
    if backend == "ks":
        result = detect_frame(load_reference(ref_path), frame, params)
    elif backend == "alibi":
        from winequality.monitoring.alibi_backend import detect_alibi

        result = detect_alibi(pd.read_parquet(ref_path), frame, params)
    else:
        raise typer.BadParameter(f"unknown backend {backend!r}: use ks or alibi")
    typer.echo(result.model_dump_json(indent=2))
    raise typer.Exit(1 if result.is_drift else 0)


@app.command("alibi-venv")
def alibi_venv() -> None:
    """Create the separate virtual env with Alibi Detect (numpy<2) used by --backend alibi."""
    from winequality.monitoring.alibi_backend import ensure_alibi_venv

    typer.echo(str(ensure_alibi_venv()))
