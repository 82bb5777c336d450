"""The SQLite feedback store: durable, validated, read back in the data contract's columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from winequality.contract import schema
from winequality.contract.problems import FeatureError
from winequality.feedback_store import FeedbackStore


def example_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {f.name: f.example for f in schema.FEATURES}
    row[schema.WINE_TYPE] = "red"
    return row | changes


def test_feedback_survives_reopening_and_reads_back_as_data_columns(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.add([example_row(), example_row(wine_type="white", alcohol=12.5)], [5, 7], "req-1")
    store.close()
    reopened = FeedbackStore(tmp_path / "fb.sqlite")
    frame = reopened.frame()
    assert reopened.count() == 2
    assert list(frame.columns) == list(schema.DATA_COLUMNS)
    assert frame[schema.TARGET].tolist() == [5, 7]
    assert frame[schema.WINE_TYPE].tolist() == ["red", "white"]
    assert frame["alcohol"].iloc[1] == pytest.approx(12.5)


def test_empty_store_gives_an_empty_frame_with_the_right_columns(tmp_path: Path) -> None:
    frame = FeedbackStore(tmp_path / "fb.sqlite").frame()
    assert frame.empty
    assert list(frame.columns) == list(schema.DATA_COLUMNS)
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize(
    ("row", "quality", "field", "reason"),
    [
        (example_row(ph=15.0), 5, "ph", "outside the physical range"),
        (example_row(wine_type="rose"), 5, "wine_type", "must be one of"),
        (example_row(alcohol="strong"), 5, "alcohol", "must be a number, got string"),
        ({k: v for k, v in example_row().items() if k != "density"}, 5, "density", "required"),
        (example_row(colour="red"), 5, "colour", "unknown field"),
        (example_row(), 11, "quality", "outside"),
        (example_row(), 5.5, "quality", "integer"),
        (example_row(), True, "quality", "integer"),
    ],
)
def test_bad_feedback_is_rejected_with_field_and_reason_and_nothing_is_stored(
    tmp_path: Path, row: dict[str, object], quality: object, field: str, reason: str
) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    with pytest.raises(FeatureError) as info:
        store.add([row], [quality])  # type: ignore[list-item]
    assert any(p.field == field and reason in p.reason for p in info.value.problems), info.value
    assert store.count() == 0
