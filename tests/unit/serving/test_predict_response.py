"""A batch's ``predictions`` array is written without a dict per wine, byte for byte as before."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from winequality.contract.parsers import SMALL_ROWS
from winequality.serving.routes.predict import predictions_json, round4


def as_dicts(quality: np.ndarray, klass: np.ndarray) -> bytes:
    return orjson.dumps(
        [
            {"quality": q, "quality_class": c}
            for q, c in zip(round4(quality), klass.tolist(), strict=True)
        ]
    )


@pytest.mark.parametrize("n", [1, SMALL_ROWS + 1, 100, 1000])
def test_the_array_is_what_orjson_writes_for_the_dicts(n: int) -> None:
    rng = np.random.default_rng(n)
    quality = rng.uniform(0, 10, n).astype(np.float32)
    quality[: min(n, 6)] = [0.0, 10.0, 5.00005, 3.33335, 1e-5, 7.5][: min(n, 6)]
    klass = np.rint(quality).astype(np.int32)
    assert predictions_json(quality, klass) == as_dicts(quality, klass)


def test_nan_scores_are_written_as_orjson_writes_them() -> None:
    quality = np.array([np.nan, 5.0] * 5, dtype=np.float32)
    klass = np.array([0, 5] * 5, dtype=np.int32)
    assert predictions_json(quality, klass) == as_dicts(quality, klass)
