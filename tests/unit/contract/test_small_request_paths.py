"""The plain-Python pass for small requests gives exactly what the numpy pass gives."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from winequality.contract import parsers, schema
from winequality.contract.features import rows_to_matrix
from winequality.contract.problems import FeatureError


def random_wines(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    wines = []
    for _ in range(n):
        wine: dict[str, Any] = {
            f.name: float(rng.uniform(f.minimum, f.maximum)) for f in schema.FEATURES
        }
        wine[schema.FEATURE_NAMES[0]] = int(rng.integers(4, 15))  # ints are numbers too
        wine[schema.WINE_TYPE] = str(rng.choice(schema.WINE_TYPES))
        wines.append(wine)
    return wines


@pytest.mark.parametrize("n", range(1, parsers.SMALL_ROWS + 1))
def test_small_wine_records_give_the_numpy_pass_matrix(n: int) -> None:
    wines = random_wines(np.random.default_rng(n), n)
    rows = parsers.records_to_rows(wines)
    assert rows is not None
    small = parsers.small_records_matrix(wines)
    assert small is not None
    assert small.dtype == np.float32
    assert np.array_equal(small, rows_to_matrix(*rows))


@pytest.mark.parametrize(
    "change",
    [
        {"alcohol": 1e9},
        {"alcohol": True},
        {"alcohol": None},
        {"wine_type": "rose"},
        {"wine_type": ["red"]},
        {"extra": 1},
    ],
)
def test_small_wine_records_refuse_what_the_numpy_pass_refuses(change: dict[str, Any]) -> None:
    wine = random_wines(np.random.default_rng(0), 1)[0] | change
    assert parsers.small_records_matrix([wine]) is None
    with pytest.raises(FeatureError):
        parsers.parse_wines({"wines": [wine]})


def v2_doc(wines: list[dict[str, Any]], binary: bool, nested: bool) -> tuple[Any, bytes | None]:
    n = len(wines)
    inputs: list[dict[str, Any]] = []
    raw = b""
    for name in (*schema.FEATURE_NAMES, schema.WINE_TYPE):
        values = [w[name] for w in wines]
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": "BYTES" if name == schema.WINE_TYPE else "FP32",
            "shape": [n, 1] if nested else [n],
        }
        if not binary:
            tensor["data"] = [[v] for v in values] if nested else values
        else:
            if name == schema.WINE_TYPE:
                chunk = b"".join(len(v).to_bytes(4, "little") + v.encode() for v in values)
            else:
                chunk = struct.pack(f"<{n}f", *values)
            raw += chunk
            tensor["parameters"] = {"binary_data_size": len(chunk)}
        inputs.append(tensor)
    return {"id": "x", "inputs": inputs}, (raw if binary else None)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("n", [1, 3, parsers.SMALL_ROWS])
def test_small_v2_requests_give_the_full_pass_request(
    n: int, binary: bool, nested: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, raw = v2_doc(random_wines(np.random.default_rng(n), n), binary, nested)
    small = parsers.v2_request(doc, 100, raw)
    monkeypatch.setattr(parsers, "_small_v2_request", lambda *_: None)
    full = parsers.v2_request(doc, 100, raw)
    assert np.array_equal(small.matrix, full.matrix)
    assert small.matrix.dtype == full.matrix.dtype
    assert np.array_equal(small.measurements, full.measurements)
    assert (small.id, small.column_shape, small.outputs) == (
        full.id,
        full.column_shape,
        full.outputs,
    )


def test_small_v2_pass_leaves_invalid_requests_to_the_full_pass() -> None:
    wines = random_wines(np.random.default_rng(1), 1)
    wines[0]["ph"] = 99.0
    doc, _ = v2_doc(wines, binary=False, nested=False)
    assert parsers._small_v2_request(doc, 100, None) is None
    with pytest.raises(FeatureError):
        parsers.v2_request(doc, 100)
