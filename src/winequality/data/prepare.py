"""Preparation: deduplicate, split train/test stratified on quality, draw the drift reference.

Exact duplicates are dropped *before* splitting: the UCI files repeat many wines (240 red and 937
white rows repeat an earlier one), and a repeat on both sides of the split would leak test rows
into training and flatter the test score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import train_test_split

from winequality.contract import schema


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows that repeat an earlier row on every data column removed; returns (rows, dropped)."""
    repeated = frame.duplicated(subset=list(schema.DATA_COLUMNS), keep="first")
    return frame.loc[~repeated].reset_index(drop=True), int(repeated.sum())


def stratification_labels(
    quality: pd.Series, n_test: int, n_train: int
) -> npt.NDArray[np.int64] | None:
    """Quality levels usable as strata, rare levels merged into their neighbours.

    Stratifying needs at least two rows per stratum and no more strata than rows on either side
    of the split; a level that breaks this (quality 9 has five wines) joins its smaller adjacent
    level until the constraint holds. ``None`` when a single stratum is left.
    """
    counts = quality.value_counts().sort_index()
    groups: list[list[int]] = [[int(level)] for level in counts.index]
    sizes: list[int] = [int(c) for c in counts.to_numpy()]
    limit = min(n_test, n_train)
    while len(groups) > 1 and (min(sizes) < 2 or len(groups) > limit):
        i = int(np.argmin(sizes))
        if i == 0:
            j = 1
        elif i == len(groups) - 1:
            j = i - 1
        else:
            j = i - 1 if sizes[i - 1] <= sizes[i + 1] else i + 1
        lo, hi = min(i, j), max(i, j)
        groups[lo] = groups[lo] + groups[hi]
        sizes[lo] += sizes[hi]
        del groups[hi], sizes[hi]
    if len(groups) == 1:
        return None
    label_of = {level: g for g, levels in enumerate(groups) for level in levels}
    return np.asarray([label_of[int(q)] for q in quality.to_numpy()], dtype=np.int64)


def split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split stratified on quality (rare levels merged, see above)."""
    n = len(frame)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    n_test = math.ceil(test_size * n)  # how scikit-learn sizes the test side
    if n < 2 or n_test >= n:
        raise ValueError(f"cannot split {n} row(s) with test_size={test_size}")
    labels = stratification_labels(frame[schema.TARGET], n_test, n - n_test)
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=labels)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def reference_sample(train: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """``size`` training rows drawn without replacement (all of them if there are fewer)."""
    n = min(size, len(train))
    return train.sample(n=n, random_state=seed).reset_index(drop=True)


def data_metrics(
    rows_in: pd.DataFrame,
    unique: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    reference: pd.DataFrame,
) -> dict[str, Any]:
    """The figures written to ``metrics/data.json``."""

    def per_type(frame: pd.DataFrame) -> dict[str, int]:
        counts = frame[schema.WINE_TYPE].value_counts()
        return {t: int(counts.get(t, 0)) for t in schema.WINE_TYPES}

    inputs, uniques = per_type(rows_in), per_type(unique)
    trains, tests, refs = per_type(train), per_type(test), per_type(reference)
    return {
        "rows_in": len(rows_in),
        "duplicates_dropped": len(rows_in) - len(unique),
        "rows_unique": len(unique),
        "train_rows": len(train),
        "test_rows": len(test),
        "reference_rows": len(reference),
        "per_wine_type": {
            t: {
                "rows_in": inputs[t],
                "duplicates_dropped": inputs[t] - uniques[t],
                "train_rows": trains[t],
                "test_rows": tests[t],
                "reference_rows": refs[t],
            }
            for t in schema.WINE_TYPES
        },
    }


def prepare(
    frame: pd.DataFrame, test_size: float, reference_size: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Validated rows -> (train, test, reference, metrics)."""
    unique, _ = drop_duplicates(frame)
    train, test = split(unique, test_size, seed)
    reference = reference_sample(train, reference_size, seed)
    columns = list(schema.DATA_COLUMNS)
    train, test, reference = (f.loc[:, columns] for f in (train, test, reference))
    return train, test, reference, data_metrics(frame, unique, train, test, reference)
