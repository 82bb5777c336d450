"""V2 request building and response parsing of RemoteV2Predictor (no server involved)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from winequality import schema
from winequality.inference.predictor import UpstreamBadResponse
from winequality.inference.remote import (
    RemoteV2Predictor,
    build_v2_request,
    encode_request,
    parse_v2_response,
)
from winequality.settings import Settings

RED = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4, 0.0]
WHITE = [7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8, 1.0]
MATRIX = np.array([RED, WHITE], dtype=np.float32)


def test_request_has_one_named_column_tensor_per_feature_and_wine_type() -> None:
    request = orjson.loads(encode_request(MATRIX))
    names = [i["name"] for i in request["inputs"]]
    assert names == [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    assert {tuple(i["shape"]) for i in request["inputs"]} == {(2, 1)}
    by_name = {i["name"]: i for i in request["inputs"]}
    assert by_name[schema.WINE_TYPE] == {
        "name": schema.WINE_TYPE,
        "shape": [2, 1],
        "datatype": "BYTES",
        "data": ["red", "white"],
    }
    assert by_name["alcohol"]["datatype"] == "FP32"


def test_request_values_survive_json_as_the_same_float32() -> None:
    request = orjson.loads(encode_request(MATRIX))
    decoded = np.column_stack(
        [np.asarray(i["data"], dtype=np.float32) for i in request["inputs"][:-1]]
    )
    np.testing.assert_array_equal(decoded, MATRIX[:, :-1])
    # Shortest float32 repr on the wire, not float64 noise like 7.400000095367432.
    assert request["inputs"][0]["data"] == [7.4, 7.0]


def test_request_rejects_a_matrix_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"expected a \[N, 12\] model matrix"):
        build_v2_request(np.zeros((2, 11), dtype=np.float32))


def test_response_outputs_are_parsed_by_name_in_any_order() -> None:
    body = {
        "outputs": [
            {"name": "quality_class", "datatype": "INT32", "shape": [2, 1], "data": [5, 7]},
            {"name": "quality", "datatype": "FP32", "shape": [2, 1], "data": [5.25, 6.5]},
        ]
    }
    prediction = parse_v2_response(body, rows=2)
    np.testing.assert_array_equal(prediction.quality, np.array([5.25, 6.5], np.float32))
    np.testing.assert_array_equal(prediction.quality_class, np.array([5, 7], np.int32))
    assert prediction.quality.dtype == np.float32
    assert prediction.quality_class.dtype == np.int32


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no 'outputs' list"),
        ({"outputs": [{"name": "quality", "data": [5.0]}]}, "no output 'quality_class'"),
        (
            {
                "outputs": [
                    {"name": "quality", "data": [5.0, 6.0]},
                    {"name": "quality_class", "data": [5]},
                ]
            },
            "'quality' has 2 values for 1 rows",
        ),
        (
            {
                "outputs": [
                    {"name": "quality", "data": ["x"]},
                    {"name": "quality_class", "data": [5]},
                ]
            },
            "'quality' is not numeric",
        ),
    ],
)
def test_malformed_responses_are_bad_responses(body: object, message: str) -> None:
    with pytest.raises(UpstreamBadResponse, match=message):
        parse_v2_response(body, rows=1)


def test_settings_configure_url_timeout_retries_and_chunk_size() -> None:
    settings = Settings(
        remote_url="http://127.0.0.1:9/",
        remote_model="m",
        remote_timeout_s=0.5,
        remote_retries=1,
        triton_max_batch_size=10,
    )
    predictor = RemoteV2Predictor.from_settings(settings)
    assert (predictor.base_url, predictor.model) == ("http://127.0.0.1:9", "m")
    assert (predictor.timeout_s, predictor.max_batch_rows) == (0.5, 10)
    assert predictor.metadata.name == "m"


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_rows must be >= 1"):
        RemoteV2Predictor("http://127.0.0.1:9", max_batch_rows=0)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RemoteV2Predictor("http://127.0.0.1:9", retries=-1)
