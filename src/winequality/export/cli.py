"""The ``export`` command group: turn the fitted pipeline into deployable model formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from winequality.commands import project_params, stage_errors
from winequality.stages import PATHS

app = typer.Typer(name="export", help="Export the trained model.", no_args_is_help=True)


@app.command("onnx")
def onnx(
    model: Annotated[Path, typer.Option(help="Fitted pipeline.")] = PATHS.model,
    test: Annotated[Path, typer.Option(help="Rows the parity check runs on.")] = PATHS.test,
    out: Annotated[Path, typer.Option(help="ONNX model file.")] = PATHS.onnx,
    metrics: Annotated[Path, typer.Option(help="Parity figure (JSON).")] = PATHS.export_metrics,
) -> None:
    """Convert to ONNX and refuse the export if it disagrees with scikit-learn on the test set.

    The tolerance is export.parity_tolerance in params.yaml (largest |ONNX - sklearn|).
    """
    from winequality.files import write_json

    with stage_errors():
        from winequality.export.onnx import export_with_parity
        from winequality.training.dataset import read_split, to_xy
        from winequality.training.train import load_model

        params = project_params()
        x, _ = to_xy(read_split(test))
        # Checked before anything is written: a failed parity check leaves no model behind.
        onnx_model, report = export_with_parity(
            load_model(model), x, params.export.opset, params.export.parity_tolerance
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(onnx_model)
        write_json(metrics, report)
    parity = report["parity_max_abs_diff"]
    typer.echo(f"{out}: {len(onnx_model)} bytes, parity max |diff| {parity:.2e} on {len(x)} rows")


@app.command("triton")
def triton(
    out: Annotated[Path, typer.Option(help="Model repository folder (replaced atomically).")],
    bundle: Annotated[
        Path | None, typer.Option(help="Model bundle (model.onnx + metadata.json).")
    ] = None,
    variant: Annotated[
        str,
        typer.Option(help="onnxruntime: official Triton image; python: onnxruntime in Python."),
    ] = "onnxruntime",
    max_batch_size: Annotated[
        int | None,
        typer.Option(help="Triton max_batch_size (default: WINEQ_TRITON_MAX_BATCH_SIZE, 1024)."),
    ] = None,
) -> None:
    """Write the Triton ensemble (preprocess -> model -> postprocess) for a model bundle.

    The bundle defaults to WINEQ_MODEL_DIR, the folder ``winequality registry pull`` writes.
    """
    from winequality.export.triton_repository import (
        VARIANTS,
        TritonExportError,
        write_model_repository,
    )
    from winequality.settings import ServingSettings
    from winequality.summary import bundle_notice

    settings = ServingSettings()
    typer.echo(bundle_notice(bundle or settings.model_dir), err=True)
    if variant not in VARIANTS:
        raise typer.BadParameter(f"must be one of {list(VARIANTS)}", param_hint="--variant")
    try:
        repo = write_model_repository(
            bundle or settings.model_dir,
            out,
            "python" if variant == "python" else "onnxruntime",
            max_batch_size=max_batch_size or settings.triton_max_batch_size,
        )
    except (TritonExportError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{repo}: Triton model repository ({variant})")
