"""`winequality summary`: what the last pipeline run produced and where to look next.

Reads only files the pipeline wrote (no MLflow import), so it is instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from winequality import artifacts
from winequality.settings import PORTS, TrackingSettings


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summarize(settings: TrackingSettings, model_dir: Path, console: Console) -> bool:
    """Print the summary of the bundle in ``model_dir`` (the app's, relative to the project);
    returns False when there is no pulled champion model yet."""
    root = settings.project_dir
    bundle = root / model_dir
    source = _read_json(root / "data/raw/source.json")
    promotion = _read_json(root / "reports/promotion.json")
    if not (bundle / artifacts.METADATA_FILE).exists():
        console.print(
            f"[red]No model bundle at {bundle}[/red]: run `make run` "
            "(or `dvc repro` then `winequality registry pull --alias champion`)."
        )
        return False
    meta = artifacts.read_metadata(bundle)

    table = Table(title=f"{meta.name} v{meta.version} ({meta.alias or 'no alias'})")
    table.add_column("test metric")
    table.add_column("value", justify="right")
    for key, value in sorted(meta.metrics.items()):
        table.add_row(key, f"{value:.4f}")
    if meta.parity_max_abs_diff is not None:
        table.add_row("onnx parity (max |diff|)", f"{meta.parity_max_abs_diff:.2e}")
    console.print(table)

    if source:
        kind, where, rows = source.get("kind"), source.get("source"), source.get("rows")
        console.print(f"data: {kind} ({where}), {rows} rows")
        if source.get("reason"):
            console.print(f"  [yellow]note:[/yellow] {source['reason']}")
    if promotion:
        verdict = "promoted" if promotion.get("promoted") else "refused"
        console.print(f"promotion: {verdict}: {promotion.get('reason', '')}")
    console.print(f"model bundle: [bold]{bundle.resolve()}[/bold] (model.onnx, metadata.json)")
    console.print(f"MLflow run: {meta.run_id}, family {meta.family}")
    uri = settings.tracking_uri()
    ui = (
        f"uv run mlflow ui --backend-store-uri {uri} --port {PORTS.mlflow}"
        if uri.startswith("sqlite:")
        else f"open {uri}"
    )
    console.print(f"MLflow UI: [bold]{ui}[/bold]")
    console.print("serve it: [bold]uv run winequality serve[/bold]")
    return True


def bundle_notice(model_dir: Path) -> str:
    """Which model version a bundle holds and how to move it to the registry's champion.

    The bundle is a copy made by ``registry pull``: it does not follow the registry by itself
    (the app never talks to MLflow), so the command says what it serves.
    """
    from pydantic import ValidationError

    update = f"winequality registry pull --alias champion --dest {model_dir}"
    try:
        meta = artifacts.read_metadata(model_dir)
    except (OSError, ValueError, ValidationError):
        return f"no model bundle at {model_dir}: run `{update}` first"
    pulled = f"{meta.alias} when pulled" if meta.alias else f"run {meta.run_id}"
    return (
        f"serving {meta.name} v{meta.version} ({pulled}, created {meta.created_at}) from "
        f"{model_dir}; the bundle does not follow the registry: to serve the current champion, "
        f"`{update}`, then restart or POST /admin/reload"
    )
