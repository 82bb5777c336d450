"""Request bodies the detector accepts (app JSON, V2, Seldon) and the errors it gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from winequality import schema
from winequality.inference.features import FeatureError
from winequality.monitoring.payloads import PayloadError, rows_from_payload


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
    assert err.value.problems == [(2, "alcohol", "missing")]


def test_non_numeric_and_out_of_range_values_name_row_and_field(sample: pd.DataFrame) -> None:
    wines = _wines(sample)
    wines[0]["density"] = "heavy"
    wines[1]["ph"] = 15.0
    wines[3]["residual_sugar"] = True
    with pytest.raises(FeatureError) as err:
        rows_from_payload({"wines": wines})
    fields = {(r, f) for r, f, _ in err.value.problems}
    assert fields == {(0, "density"), (3, "residual_sugar")}
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
        ({"inputs": [{"name": "x", "shape": [2], "data": [1.0]}]}, "do not fill shape"),
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
