"""What the payload logger sends for a binary-tensor V2 request (the endpoint hands it the
matrix): a V2 JSON request of the model matrix, which the drift detector reads as the rows that
were served."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from winequality.contract import schema
from winequality.contract.parsers import SMALL_ROWS
from winequality.monitoring.payloads import rows_from_payload
from winequality.serving.payload_logger import matrix_request


def served_matrix(rows: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(rows)
    lows = [f.minimum for f in schema.FEATURES]
    highs = [f.maximum for f in schema.FEATURES]
    matrix = np.empty((rows, schema.N_MODEL_COLUMNS), dtype=np.float32)
    matrix[:, :-1] = rng.uniform(lows, highs, (rows, len(lows)))
    matrix[:, -1] = rng.integers(0, 2, rows)
    return matrix


@pytest.mark.parametrize("rows", [1, 2, SMALL_ROWS, SMALL_ROWS + 1, 100])
def test_the_logged_request_is_one_v2_tensor_holding_the_matrix(rows: int) -> None:
    matrix = served_matrix(rows)
    (tensor,) = orjson.loads(matrix_request(matrix))["inputs"]
    assert tensor["name"] == schema.ONNX_INPUT
    assert tensor["datatype"] == "FP32"
    assert tensor["shape"] == [rows, schema.N_MODEL_COLUMNS]
    # Each float32 value in a form that reads back as itself.
    assert np.array_equal(np.asarray(tensor["data"], dtype=np.float32), matrix)


@pytest.mark.parametrize("rows", [1, 3, 100])
def test_the_detector_reads_the_logged_request_as_the_served_rows(rows: int) -> None:
    matrix = served_matrix(rows)
    measurements, is_white = rows_from_payload(orjson.loads(matrix_request(matrix)))
    assert np.array_equal(measurements.astype(np.float32), matrix[:, :-1])
    assert np.array_equal(is_white, matrix[:, -1] == 1.0)


def test_a_matrix_in_column_order_is_logged_as_the_same_request() -> None:
    matrix = served_matrix(3)
    assert matrix_request(np.asfortranarray(matrix)) == matrix_request(matrix)


def test_a_few_rows_not_in_c_order_are_logged_as_in_c_order() -> None:
    # The head by shape is tried first; orjson's refusal of the strided view sends it the long way.
    matrix = served_matrix(2 * SMALL_ROWS)[::2]
    assert not matrix.flags.c_contiguous
    assert matrix_request(matrix) == matrix_request(np.ascontiguousarray(matrix))


@pytest.mark.parametrize("shape", [(1, schema.N_MODEL_COLUMNS - 1), (schema.N_MODEL_COLUMNS,)])
def test_an_array_that_is_no_model_matrix_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="not a model matrix"):
        matrix_request(np.zeros(shape, dtype=np.float32))
