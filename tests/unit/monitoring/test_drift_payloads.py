"""Request bodies the detector accepts (app JSON, V2, Seldon) and the errors it gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.contract.problems import FeatureError
from winequality.monitoring.payloads import (
    PayloadError,
    rows_from_app_payloads,
    rows_from_payload,
)


@pytest.fixture(scope="module")
def sample(real_wines: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([real_wines.head(3), real_wines.tail(2)], ignore_index=True)


def _wines(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    return frame.loc[:, cols].to_dict(orient="records")  # type: ignore[return-value]


def _expected(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return (
        frame.loc[:, list(schema.FEATURE_NAMES)].to_numpy(np.float64),
        (frame[schema.WINE_TYPE] == "white").to_numpy(),
    )


def test_app_predict_body(sample: pd.DataFrame) -> None:
    x, white = rows_from_payload({"wines": _wines(sample)})
    ex, ewhite = _expected(sample)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(white, ewhite)


def test_v2_request_with_one_tensor_per_feature(sample: pd.DataFrame) -> None:
    inputs = [
        {"name": n, "shape": [len(sample), 1], "datatype": "FP64", "data": sample[n].tolist()}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "shape": [len(sample), 1],
            "datatype": "BYTES",
            "data": sample[schema.WINE_TYPE].tolist(),
        }
    )
    x, white = rows_from_payload({"id": "r1", "inputs": inputs})
    ex, ewhite = _expected(sample)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(white, ewhite)


def test_v2_request_with_the_model_matrix(sample: pd.DataFrame) -> None:
    ex, ewhite = _expected(sample)
    matrix = np.column_stack((ex, ewhite.astype(float)))
    body = {
        "inputs": [
            {
                "name": schema.ONNX_INPUT,
                "shape": [len(sample), schema.N_MODEL_COLUMNS],
                "datatype": "FP32",
                "data": matrix.reshape(-1).tolist(),
            }
        ]
    }
    x, white = rows_from_payload(body)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(white, ewhite)


def test_seldon_protocol_names_and_ndarray(sample: pd.DataFrame) -> None:
    names = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    body = {"data": {"names": names, "ndarray": sample.loc[:, names].to_numpy().tolist()}}
    x, white = rows_from_payload(body)
    ex, ewhite = _expected(sample)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(white, ewhite)


def test_missing_field_names_the_row(sample: pd.DataFrame) -> None:
    wines = _wines(sample)
    del wines[2]["alcohol"]
    with pytest.raises(FeatureError) as err:
        rows_from_payload({"wines": wines})
    # The app's /predict wording: one parser reads wine records everywhere.
    assert [(p.row, p.field, p.reason) for p in err.value.problems] == [
        (2, "alcohol", "field required")
    ]


def test_non_numeric_and_out_of_range_values_name_row_and_field(sample: pd.DataFrame) -> None:
    wines = _wines(sample)
    wines[0]["density"] = "heavy"
    wines[1]["ph"] = 15.0
    wines[3]["residual_sugar"] = True
    with pytest.raises(FeatureError) as err:
        rows_from_payload({"wines": wines})
    fields = {(p.row, p.field) for p in err.value.problems}
    assert fields == {(0, "density"), (1, "ph"), (3, "residual_sugar")}
    wines[0]["density"], wines[3]["residual_sugar"] = 0.99, 2.0
    with pytest.raises(FeatureError, match=r"row 1, ph: 15\.0 is outside the physical range"):
        rows_from_payload({"wines": wines})


def test_unknown_wine_type_is_refused(sample: pd.DataFrame) -> None:
    wines = _wines(sample)
    wines[4]["wine_type"] = "rosé"
    with pytest.raises(FeatureError, match="row 4, wine_type: must be one of"):
        rows_from_payload({"wines": wines})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"instances": []}, "unknown request format"),
        ({"wines": []}, "non-empty list"),
        ({"inputs": [{"name": "input", "shape": [2, 12], "data": [1.0]}]}, "do not fill shape"),
        ({"inputs": [{"name": "x", "shape": [1], "data": [1.0]}]}, "without the feature tensors"),
        (
            {"inputs": [{"name": "input", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]},
            "must have shape",
        ),
    ],
)
def test_unknown_shapes_are_payload_errors(body: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        rows_from_payload(body)


def test_many_app_bodies_are_read_at_once_as_they_would_be_one_by_one(
    real_wines: pd.DataFrame,
) -> None:
    bodies = [{"wines": _wines(real_wines.iloc[i : i + 1 + i % 3])} for i in range(0, 60, 4)]
    rows = rows_from_app_payloads(bodies)
    assert rows is not None
    one_by_one = [rows_from_payload(body) for body in bodies]
    np.testing.assert_array_equal(rows[0], np.concatenate([r[0] for r in one_by_one]))
    np.testing.assert_array_equal(rows[1], np.concatenate([r[1] for r in one_by_one]))


def _twisted(wine: dict[str, Any], how: str) -> dict[str, Any]:
    wine = dict(wine)
    if how == "out-of-range":
        wine["ph"] = 15.0
    elif how == "extra-field":
        wine["vintage"] = 1999
    elif how == "boolean":
        wine["alcohol"] = True
    elif how == "unknown-type":
        wine["wine_type"] = "rose"
    return wine


@pytest.mark.parametrize("how", ["out-of-range", "extra-field", "boolean", "unknown-type"])
def test_anything_but_well_formed_app_bodies_is_left_to_the_body_by_body_reader(
    sample: pd.DataFrame, how: str
) -> None:
    wines = _wines(sample)
    bodies = [{"wines": wines[:2]}, {"wines": [_twisted(wines[2], how)]}]
    assert rows_from_app_payloads(bodies) is None


@pytest.mark.parametrize(
    "body",
    [{"inputs": []}, {"wines": []}, {"wines": "x"}, {"wines": [], "extra": 1}, [1]],
    ids=["v2", "no-wines", "not-a-list", "extra-key", "not-an-object"],
)
def test_other_request_formats_are_left_to_the_body_by_body_reader(
    sample: pd.DataFrame, body: Any
) -> None:
    assert rows_from_app_payloads([{"wines": _wines(sample)}, body]) is None
