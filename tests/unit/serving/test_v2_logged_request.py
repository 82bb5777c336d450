"""The V2 endpoint's encoding of small binary requests for the payload logger is the logger's."""

from __future__ import annotations

import numpy as np
import pytest

from winequality.contract.parsers import SMALL_ROWS
from winequality.inference.remote import encode_request
from winequality.serving.routes.v2 import logged_request


@pytest.mark.parametrize("rows", range(1, SMALL_ROWS + 1))
def test_small_matrices_encode_byte_for_byte_as_encode_request(rows: int) -> None:
    rng = np.random.default_rng(rows)
    matrix = rng.uniform(0, 300, (rows, 12)).astype(np.float32)
    matrix[:, -1] = rng.integers(0, 2, rows)
    assert logged_request(matrix) == encode_request(matrix)


def test_larger_matrices_are_left_to_the_logger() -> None:
    assert logged_request(np.zeros((SMALL_ROWS + 1, 12), dtype=np.float32)) is None


@pytest.mark.parametrize("rows", [1, 3])
def test_flags_other_than_0_and_1_encode_as_encode_request(rows: int) -> None:
    matrix = np.full((rows, 12), 2.5, dtype=np.float32)
    matrix[:, -1] = np.linspace(0.2, 0.9, rows)
    assert logged_request(matrix) == encode_request(matrix)
