"""scikit-learn -> ONNX with a parity check: an export that disagrees with its source fails."""

from __future__ import annotations

from typing import Any

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.inference.predictor import open_onnx_session
from winequality.stages import StageError


class ParityError(StageError):
    """The ONNX model's predictions differ from scikit-learn's by more than the tolerance."""


def export_onnx(model: Any, opset: int = 17) -> bytes:
    """Convert a fitted regressor over ``schema.MODEL_COLUMNS`` to a serialized ONNX model."""
    onx = to_onnx(
        model,
        initial_types=[(schema.ONNX_INPUT, FloatTensorType([None, schema.N_MODEL_COLUMNS]))],
        final_types=[(schema.ONNX_OUTPUT, FloatTensorType([None, 1]))],
        target_opset=opset,
    )
    onx.doc_string = "wine-quality regressor; input columns: " + ",".join(schema.MODEL_COLUMNS)
    return bytes(onx.SerializeToString())


def onnx_predict(onnx_model: bytes, matrix: Matrix) -> np.ndarray:
    """Raw scores of a serialized model (``BundleError`` when it breaks the input contract)."""
    session, input_name = open_onnx_session(onnx_model, "exported ONNX model")
    out = session.run(None, {input_name: matrix.astype(np.float32, copy=False)})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def parity_max_abs_diff(onnx_model: bytes, model: Any, matrix: Matrix) -> float:
    """Largest |ONNX - scikit-learn| over the rows of ``matrix``."""
    expected = np.asarray(model.predict(matrix), dtype=np.float64).reshape(-1)
    return float(np.max(np.abs(onnx_predict(onnx_model, matrix) - expected)))


def check_parity(onnx_model: bytes, model: Any, matrix: Matrix, tolerance: float) -> float:
    """Return the parity figure, or raise ``ParityError`` when it exceeds ``tolerance``."""
    diff = parity_max_abs_diff(onnx_model, model, matrix)
    if not diff <= tolerance:  # also catches NaN
        raise ParityError(
            f"ONNX export disagrees with scikit-learn: max |diff| = {diff:.3g} > {tolerance:.3g}"
        )
    return diff


def export_with_parity(
    model: Any, matrix: Matrix, opset: int, tolerance: float
) -> tuple[bytes, dict[str, float | int]]:
    """What the export stage does: the ONNX model, parity-checked on ``matrix`` (``ParityError``
    above ``tolerance``, before anything is written), and its report."""
    onnx_model = export_onnx(model, opset=opset)
    parity = check_parity(onnx_model, model, matrix, tolerance)
    return onnx_model, {
        "parity_max_abs_diff": parity,
        "parity_tolerance": tolerance,
        "parity_rows": len(matrix),
        "opset": opset,
        "onnx_bytes": len(onnx_model),
    }
