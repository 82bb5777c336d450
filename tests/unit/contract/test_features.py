"""The feature rules: validated rows, the model matrix, post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from winequality.contract import schema
from winequality.contract.features import (
    columns_to_matrix,
    postprocess,
    rows_to_matrix,
    validate_rows,
)
from winequality.contract.problems import FeatureError


def test_validate_rows_names_row_and_field_of_bad_values() -> None:
    values = np.full((3, 11), 1.0)
    values[1, 8] = 15.0  # pH above 14
    values[2, 0] = np.nan
    with pytest.raises(FeatureError) as err:
        validate_rows(values, ["red", "rosé", "white"])
    problems = {(p.row, p.field) for p in err.value.problems}
    assert problems == {(1, "ph"), (1, "wine_type"), (2, "fixed_acidity")}


def test_validate_rows_refuses_wrong_shape_and_length() -> None:
    with pytest.raises(FeatureError, match="expected shape"):
        validate_rows(np.ones((2, 10)), ["red", "red"])
    with pytest.raises(FeatureError, match="1 values for 2 rows"):
        validate_rows(np.ones((2, 11)), ["red"])


def test_named_columns_become_the_model_matrix_in_schema_order() -> None:
    examples = {f.name: [f.example, f.example] for f in reversed(schema.FEATURES)}
    matrix = columns_to_matrix(examples, [b"red", "white"])
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(
        matrix, rows_to_matrix(np.array([[f.example for f in schema.FEATURES]] * 2), [0.0, 1.0])
    )


def test_missing_column_is_named() -> None:
    columns = {f.name: [f.example] for f in schema.FEATURES if f.name != "ph"}
    with pytest.raises(FeatureError, match="ph: missing"):
        columns_to_matrix(columns, ["red"])


def test_postprocess_clips_to_the_scale_and_rounds_to_the_class() -> None:
    quality, quality_class = postprocess([-1.0, 5.4, 5.6, 12.0])
    assert quality.tolist() == [0.0, 5.400000095367432, 5.599999904632568, 10.0]
    assert quality_class.tolist() == [0, 5, 6, 10]


def test_postprocess_keeps_what_np_clip_keeps_at_the_edges() -> None:
    # -0.0 stays negative zero (a comparison, not a max), NaN stays NaN, the infinities and the
    # float64 inputs just past the ends land on them; the input is never changed.
    raw = np.array([-0.0, 0.0, np.nan, -np.inf, np.inf, 10.0000001, -1e-300, 4.5, 5.5, 9.99999])
    before = raw.copy()
    with np.errstate(invalid="ignore"):  # NaN's class: the cast of NaN, as np.rint gives it
        quality, quality_class = postprocess(raw)
        expected = np.clip(raw.astype(np.float32), schema.QUALITY_MIN, schema.QUALITY_MAX)
        expected_class = np.rint(expected).astype(np.int32)
    assert quality.dtype == np.float32
    assert quality.tobytes() == expected.tobytes()
    assert quality_class.tolist() == expected_class.tolist()
    assert raw.tobytes() == before.tobytes()
