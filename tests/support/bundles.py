"""Real model bundles for the serving tests and benchmark, trained on the real UCI data.

A StandardScaler + ElasticNet over ``frame_to_matrix(real_wines)``, exported with the project's
ONNX export and written with ``artifacts.write_bundle``, plus deliberately broken variants for
the hot-swap refusal tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import ElasticNet, LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from winequality import artifacts
from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.export.onnx import export_onnx


def train_model(wines: pd.DataFrame, alpha: float = 0.01) -> Pipeline:
    matrix = frame_to_matrix(wines)
    target = wines[schema.TARGET].to_numpy(dtype=np.float64)
    return make_pipeline(StandardScaler(), ElasticNet(alpha=alpha)).fit(matrix, target)


def write_model_bundle(
    dest: Path,
    model: Any,
    version: str = "1",
    run_id: str | None = None,
    metrics: dict[str, float] | None = None,
    reference: Path | None = None,
) -> Path:
    metadata = artifacts.ModelMetadata(
        version=version,
        run_id=run_id or f"run-{version}",
        metrics={"rmse": 0.74, "r2": 0.28} if metrics is None else metrics,
        parity_max_abs_diff=1e-6,
    )
    return artifacts.write_bundle(dest, export_onnx(model), metadata, reference)


def bundle_with_wrong_width(dest: Path, wines: pd.DataFrame) -> Path:
    """A valid ONNX regressor over the 11 measurements only (no is_white column)."""
    matrix = frame_to_matrix(wines)[:, : len(schema.FEATURE_NAMES)]
    model = LinearRegression().fit(matrix, wines[schema.TARGET].to_numpy(dtype=np.float64))
    onx = to_onnx(
        model,
        initial_types=[(schema.ONNX_INPUT, FloatTensorType([None, matrix.shape[1]]))],
        target_opset=17,
    )
    return artifacts.write_bundle(
        dest, bytes(onx.SerializeToString()), artifacts.ModelMetadata(version="wrong-width")
    )


def bundle_with_absurd_scores(dest: Path, wines: pd.DataFrame) -> Path:
    """Loads and runs, but scores typical wines in the thousands."""
    matrix = frame_to_matrix(wines)
    model = LinearRegression().fit(matrix, wines[schema.TARGET].to_numpy(dtype=np.float64) * 1000)
    return artifacts.write_bundle(
        dest, export_onnx(model), artifacts.ModelMetadata(version="absurd")
    )


def corrupt_onnx(bundle: Path) -> Path:
    (bundle / artifacts.MODEL_FILE).write_bytes(b"\x08\x07this is not a protobuf model")
    return bundle


def corrupt_metadata(bundle: Path, payload: dict[str, Any] | str) -> Path:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    (bundle / artifacts.METADATA_FILE).write_text(text)
    return bundle
