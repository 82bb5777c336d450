"""The one ONNX contract check and the predictor's self check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from tests.support.bundles import (
    bundle_with_absurd_scores,
    bundle_with_wrong_width,
    train_model,
    write_model_bundle,
)

from winequality import artifacts
from winequality.contract import schema
from winequality.inference.predictor import BundleError, OnnxPredictor, open_onnx_session


def test_a_model_of_the_contract_opens_with_its_input_name(
    tmp_path: Path, real_wines: pd.DataFrame
) -> None:
    bundle = write_model_bundle(tmp_path / "b", train_model(real_wines.iloc[::10]), "1")
    _, name = open_onnx_session((bundle / artifacts.MODEL_FILE).read_bytes(), "here")
    assert name == schema.ONNX_INPUT


def test_a_model_of_the_wrong_width_is_refused_naming_where(
    tmp_path: Path, real_wines: pd.DataFrame
) -> None:
    bundle = bundle_with_wrong_width(tmp_path / "b", real_wines.iloc[::10])
    with pytest.raises(BundleError, match=r"^run 7: expected one float input with 12 columns"):
        open_onnx_session(bundle / artifacts.MODEL_FILE, "run 7")


def test_bytes_that_are_not_onnx_are_refused() -> None:
    with pytest.raises(BundleError, match="not a loadable ONNX model"):
        open_onnx_session(b"not onnx", "upload")


def test_self_check_refuses_a_model_with_absurd_raw_scores(
    tmp_path: Path, real_wines: pd.DataFrame
) -> None:
    predictor = OnnxPredictor(bundle_with_absurd_scores(tmp_path / "b", real_wines.iloc[::10]))
    with pytest.raises(BundleError, match="not finite scores within"):
        asyncio.run(predictor.self_check())


def test_self_check_passes_a_trained_model(tmp_path: Path, real_wines: pd.DataFrame) -> None:
    bundle = write_model_bundle(tmp_path / "b", train_model(real_wines.iloc[::10]), "1")
    asyncio.run(OnnxPredictor(bundle).self_check())


def test_every_batch_size_scores_as_a_plain_session_run(
    tmp_path: Path, real_wines: pd.DataFrame
) -> None:
    import numpy as np
    import onnxruntime as ort

    from winequality.contract.parsers import frame_to_matrix
    from winequality.inference.predictor import BOUND_ROWS

    bundle = write_model_bundle(tmp_path / "b", train_model(real_wines.iloc[::10]), "1")
    predictor = OnnxPredictor(bundle)
    session = ort.InferenceSession(str(bundle / artifacts.MODEL_FILE))
    matrix = frame_to_matrix(real_wines.iloc[: BOUND_ROWS + 2])
    for rows in (*range(1, 12), 37, BOUND_ROWS, BOUND_ROWS + 1):
        part = np.ascontiguousarray(matrix[:rows])
        expected = session.run(None, {schema.ONNX_INPUT: part})[0].reshape(-1)
        # Twice: the second run of a size reuses the binding its first made.
        for _ in range(2):
            got = predictor.scores(part)
            assert got.dtype == np.float32
            assert np.array_equal(got, expected)
    assert len(predictor._bound) <= BOUND_ROWS
