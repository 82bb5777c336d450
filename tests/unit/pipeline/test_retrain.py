"""The retraining job: feedback split, new reference, data refresh, trigger and evidence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from winequality.contract import schema
from winequality.params import RetrainParams
from winequality.pipeline.retrain import (
    RetrainResult,
    new_bundle_dir,
    refresh_data,
    split_feedback,
    training_reference,
)


@pytest.fixture
def red(real_wines: pd.DataFrame) -> pd.DataFrame:
    return real_wines[real_wines[schema.WINE_TYPE] == "red"].reset_index(drop=True)


@pytest.fixture
def white(real_wines: pd.DataFrame) -> pd.DataFrame:
    return real_wines[real_wines[schema.WINE_TYPE] == "white"].reset_index(drop=True)


def test_split_feedback_is_seeded_disjoint_and_complete(white: pd.DataFrame) -> None:
    feedback = white.iloc[:100]
    train, holdout = split_feedback(feedback, 0.3, seed=7)
    again_train, again_holdout = split_feedback(feedback, 0.3, seed=7)
    assert (len(train), len(holdout)) == (70, 30)
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(holdout, again_holdout)
    together = pd.concat([train, holdout]).sort_values(list(schema.DATA_COLUMNS))
    expected = feedback.sort_values(list(schema.DATA_COLUMNS))
    pd.testing.assert_frame_equal(together.reset_index(drop=True), expected.reset_index(drop=True))
    other, _ = split_feedback(feedback, 0.3, seed=8)
    assert not other.equals(train)


def test_split_feedback_keeps_a_row_on_each_side_when_small(white: pd.DataFrame) -> None:
    train, holdout = split_feedback(white.iloc[:2], 0.01, seed=0)
    assert (len(train), len(holdout)) == (1, 1)
    train, holdout = split_feedback(white.iloc[:0], 0.3, seed=0)
    assert train.empty
    assert holdout.empty


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_feedback_refuses_a_fraction_outside_0_1(
    white: pd.DataFrame, fraction: float
) -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        split_feedback(white.iloc[:10], fraction, seed=0)


def test_refresh_adds_feedback_to_both_train_and_holdout(
    red: pd.DataFrame, white: pd.DataFrame
) -> None:
    params = RetrainParams(holdout_fraction=0.25, seed=1, reference_size=1000)
    data = refresh_data(red.iloc[:800], red.iloc[800:1000], white.iloc[:400], params)
    assert (data.feedback_train_rows, data.feedback_holdout_rows) == (300, 100)
    assert len(data.train) == 1100
    assert len(data.holdout) == 300
    assert (data.train[schema.WINE_TYPE] == "white").sum() == 300
    assert (data.holdout[schema.WINE_TYPE] == "white").sum() == 100
    assert list(data.train.columns) == list(schema.DATA_COLUMNS)
    # The new drift reference is a sample of the new training set: red base and white feedback.
    assert len(data.reference) == 1000
    assert data.reference.merge(data.train.drop_duplicates(), how="inner").shape[0] == 1000
    assert (data.reference[schema.WINE_TYPE] == "white").sum() == pytest.approx(
        1000 * 300 / 1100, abs=40
    )


def test_training_reference_is_a_seeded_sample_of_all_training_rows(
    red: pd.DataFrame, white: pd.DataFrame
) -> None:
    train = pd.concat([red.iloc[:700], white.iloc[:300]], ignore_index=True)
    reference = training_reference(train, 500, seed=3)
    pd.testing.assert_frame_equal(reference, training_reference(train, 500, seed=3))
    assert len(reference) == 500
    assert set(reference[schema.WINE_TYPE]) == {"red", "white"}
    assert len(training_reference(train.iloc[:80], 500, seed=3)) == 80
    with pytest.raises(ValueError, match="positive"):
        training_reference(train, 0, seed=3)


def test_new_bundle_dirs_are_fresh_siblings_of_the_pointer(tmp_path: Path) -> None:
    first = new_bundle_dir(tmp_path / "current", "3")
    second = new_bundle_dir(tmp_path / "current", "3")
    assert first != second
    assert first.parent == tmp_path / "bundles"
    assert first.name.startswith("v3-")


def test_result_json_has_the_contract_fields() -> None:
    line = RetrainResult(False, "4", "refused: worse", 12, outcome="refused").as_json()
    assert "\n" not in line
    assert {"promoted", "version", "reason", "feedback_rows"} <= set(__import__("json").loads(line))
