"""The typed V2 decoder accepts only what the contract's parser accepts, with the same request;
everything else it leaves to that parser (None)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from tests.unit.serving.test_typed_decode import random_wines

from winequality.contract import parsers, schema
from winequality.contract.problems import FeatureError
from winequality.serving.v2_decode import decode_v2

MAX_ROWS = 100


# --- V2 infer, JSON tensors -------------------------------------------------------------------


def v2_doc(wines: list[dict[str, Any]], nested: bool = False) -> dict[str, Any]:
    n = len(wines)
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if name == schema.WINE_TYPE else "FP32",
            "shape": [n, 1] if nested else [n],
            "data": [[w[name]] for w in wines] if nested else [w[name] for w in wines],
        }
        for name in (*schema.FEATURE_NAMES, schema.WINE_TYPE)
    ]
    return {"id": "x", "inputs": inputs}


def v2_agrees(doc: Any) -> bool:
    """Whether the decoder took ``doc``, after checking it read it as the parser does."""
    body = orjson.dumps(doc)
    got = decode_v2(body, MAX_ROWS)
    try:
        expected = parsers.parse_v2_infer(body, MAX_ROWS)
    except FeatureError:
        assert got is None
        return False
    if got is None:
        return False
    assert got.matrix.dtype == np.float32
    assert np.array_equal(got.matrix, expected.matrix)
    assert np.array_equal(got.measurements, expected.measurements)
    assert got.measurements.dtype == expected.measurements.dtype
    assert (got.id, got.column_shape, got.outputs) == (
        expected.id,
        expected.column_shape,
        expected.outputs,
    )
    return True


@pytest.mark.parametrize("n", [1, 2, parsers.SMALL_ROWS])
@pytest.mark.parametrize("nested", [False, True])
def test_v2_valid_requests_give_the_parser_request(n: int, nested: bool) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(n), n), nested)
    # Nested rows ([[x], [y]]) are left to the parser, which accepts them.
    taken = not nested
    assert v2_agrees(doc) == taken
    doc["inputs"][3]["datatype"] = "FP64"
    doc["outputs"] = [{"name": "quality_class"}]
    del doc["id"]
    assert v2_agrees(doc) == taken
    doc["outputs"] = []
    doc["parameters"] = {"anything": [1]}
    doc["inputs"][0]["parameters"] = {"x": None}
    assert v2_agrees(doc) == taken
    doc["inputs"].reverse()
    doc["inputs"][1]["shape"] = [n] if nested else [n, 1]  # mixed shapes: outputs are [N]
    assert v2_agrees(doc) == (taken and not nested)


def test_v2_larger_requests_are_left_to_the_parser() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(7), parsers.SMALL_ROWS + 1))
    assert not v2_agrees(doc)  # accepted by the parser, declined here: both fine


V2_CHANGES: list[tuple[str, Any]] = [
    ("datatype", "FP16"),
    ("datatype", "BYTES"),
    ("datatype", None),
    ("shape", [1, 2]),
    ("shape", [2]),
    ("shape", [1, 1, 1]),
    ("shape", []),
    ("shape", [True]),
    ("shape", [-1]),
    ("shape", "1"),
    ("data", [True]),
    ("data", ["7.4"]),
    ("data", [None]),
    ("data", [[7.4, 1]]),
    ("data", [1e9]),
    ("data", []),
    ("data", 7.4),
    ("name", "alcohol"),
    ("name", "colour"),
    ("name", 3),
    ("parameters", []),
]


@pytest.mark.parametrize(("field", "value"), V2_CHANGES)
def test_v2_invalid_tensors_are_declined(field: str, value: Any) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(8), 1))
    doc["inputs"][0][field] = value
    assert not v2_agrees(doc)


@pytest.mark.parametrize(
    "wine_type", [["rose"], [1], [["red", "white"]], ["red", "red"], [None], "red"]
)
def test_v2_invalid_wine_types_are_declined(wine_type: Any) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(9), 1))
    doc["inputs"][-1]["data"] = wine_type
    assert not v2_agrees(doc)


@pytest.mark.parametrize(
    "change",
    [
        {"id": 3},
        {"parameters": 1},
        {"outputs": [{"name": "score"}]},
        {"outputs": [{}]},
        {"outputs": {"name": "quality"}},
        {"outputs": [{"name": "quality", "parameters": 1}]},
        {"inputs": []},
        {"inputs": None},
    ],
)
def test_v2_invalid_documents_are_declined(change: dict[str, Any]) -> None:
    doc = v2_doc(random_wines(np.random.default_rng(10), 1)) | change
    assert not v2_agrees(doc)


def test_v2_a_missing_or_repeated_tensor_is_declined() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(11), 1))
    doc["inputs"].pop(4)
    assert not v2_agrees(doc)
    doc["inputs"].append(doc["inputs"][0])
    assert not v2_agrees(doc)


def test_v2_unknown_members_are_ignored_as_the_parser_ignores_them() -> None:
    doc = v2_doc(random_wines(np.random.default_rng(12), 2))
    doc["extra"] = {"a": 1}
    doc["inputs"][2]["note"] = "x"
    assert v2_agrees(doc)
