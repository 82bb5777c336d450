"""Preparation: duplicates out before the split, disjoint stratified splits, train reference."""

from __future__ import annotations

import pandas as pd
import pytest

from winequality.contract import schema
from winequality.data.prepare import (
    drop_duplicates,
    prepare,
    reference_sample,
    split,
    stratification_labels,
)


def row_keys(frame: pd.DataFrame) -> set[tuple[object, ...]]:
    return set(frame.loc[:, list(schema.DATA_COLUMNS)].itertuples(index=False, name=None))


def tiny(qualities: list[int]) -> pd.DataFrame:
    n = len(qualities)
    frame = pd.DataFrame({name: [0.5 + i / 100 for i in range(n)] for name in schema.FEATURE_NAMES})
    frame["density"] = 0.99
    frame[schema.WINE_TYPE] = ["red" if i % 2 else "white" for i in range(n)]
    frame[schema.TARGET] = qualities
    return frame.loc[:, list(schema.DATA_COLUMNS)]


def test_the_uci_files_hold_240_red_and_937_white_duplicates(real_wines: pd.DataFrame) -> None:
    for wine_type, expected in (("red", 240), ("white", 937)):
        _, dropped = drop_duplicates(real_wines[real_wines[schema.WINE_TYPE] == wine_type])
        assert dropped == expected
    unique, dropped = drop_duplicates(real_wines)
    assert dropped == 240 + 937
    assert len(unique) == 6497 - 1177
    assert not unique.duplicated().any()


def test_same_measurements_of_different_wine_types_are_not_duplicates() -> None:
    frame = tiny([5, 5])
    frame.loc[:, list(schema.FEATURE_NAMES)] = 1.0
    assert drop_duplicates(frame)[1] == 0


def test_split_is_disjoint_after_deduplication(real_wines: pd.DataFrame) -> None:
    unique, _ = drop_duplicates(real_wines)
    train, test = split(unique, test_size=0.2, seed=42)
    assert len(train) + len(test) == len(unique)
    assert len(test) == 1064
    assert not row_keys(train) & row_keys(test)


def test_split_without_deduplication_would_leak(real_wines: pd.DataFrame) -> None:
    # Why deduplication comes first: the raw data puts identical wines on both sides.
    train, test = split(real_wines, test_size=0.2, seed=42)
    assert row_keys(train) & row_keys(test)


def test_split_is_stratified_on_quality(real_wines: pd.DataFrame) -> None:
    unique, _ = drop_duplicates(real_wines)
    _, test = split(unique, test_size=0.2, seed=1)
    shares = unique[schema.TARGET].value_counts(normalize=True)
    test_shares = test[schema.TARGET].value_counts(normalize=True)
    for level in (5, 6, 7):
        assert test_shares[level] == pytest.approx(shares[level], abs=0.005)


def test_split_is_seeded(real_wines: pd.DataFrame) -> None:
    unique, _ = drop_duplicates(real_wines)
    a_train, a_test = split(unique, 0.2, seed=7)
    b_train, b_test = split(unique, 0.2, seed=7)
    _, c_test = split(unique, 0.2, seed=8)
    pd.testing.assert_frame_equal(a_test, b_test)
    pd.testing.assert_frame_equal(a_train, b_train)
    assert not a_test.equals(c_test)


def test_a_quality_level_with_a_single_wine_is_merged_into_its_neighbour() -> None:
    frame = tiny([5] * 10 + [6] * 10 + [9])
    labels = stratification_labels(frame[schema.TARGET], n_test=5, n_train=16)
    assert labels is not None
    assert labels[-1] == labels[10]  # the lone 9 joins the 6s
    train, test = split(frame, test_size=0.25, seed=0)
    assert len(train) + len(test) == len(frame)


def test_more_levels_than_test_rows_are_merged_until_stratification_works() -> None:
    frame = tiny([3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8])
    train, test = split(frame, test_size=0.25, seed=0)
    assert len(test) == 3
    assert not row_keys(train) & row_keys(test)


def test_a_single_quality_level_splits_without_strata() -> None:
    frame = tiny([6] * 10)
    assert stratification_labels(frame[schema.TARGET], n_test=2, n_train=8) is None
    train, test = split(frame, test_size=0.2, seed=0)
    assert (len(train), len(test)) == (8, 2)


@pytest.mark.parametrize(("rows", "test_size"), [(1, 0.2), (5, 1.0), (5, 0.0)])
def test_impossible_splits_are_rejected(rows: int, test_size: float) -> None:
    with pytest.raises(ValueError, match=r"test_size|cannot split"):
        split(tiny([5] * rows), test_size=test_size, seed=0)


def test_reference_is_a_seeded_sample_of_train(real_wines: pd.DataFrame) -> None:
    unique, _ = drop_duplicates(real_wines)
    train, _ = split(unique, 0.2, seed=42)
    reference = reference_sample(train, 1000, seed=42)
    assert len(reference) == 1000
    assert row_keys(reference) <= row_keys(train)
    pd.testing.assert_frame_equal(reference, reference_sample(train, 1000, seed=42))


def test_reference_larger_than_train_takes_all_of_train() -> None:
    train = tiny([5, 6, 7])
    assert len(reference_sample(train, 1000, seed=0)) == 3


def test_prepare_returns_data_columns_and_counts(real_wines: pd.DataFrame) -> None:
    train, test, reference, metrics = prepare(real_wines, 0.2, 500, seed=42)
    for part in (train, test, reference):
        assert list(part.columns) == list(schema.DATA_COLUMNS)
    assert metrics["rows_in"] == 6497
    assert metrics["duplicates_dropped"] == 1177
    assert metrics["train_rows"] + metrics["test_rows"] == 5320
    assert metrics["reference_rows"] == 500
    red = metrics["per_wine_type"]["red"]
    assert (red["rows_in"], red["duplicates_dropped"]) == (1599, 240)
    assert red["train_rows"] + red["test_rows"] == 1359
