"""Prepared splits built from the real UCI data (dedup + seeded stratified split), once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from winequality.contract import schema


@pytest.fixture(scope="session")
def splits(real_wines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    wines = real_wines.drop_duplicates().reset_index(drop=True)
    train, test = train_test_split(
        wines, test_size=0.2, random_state=42, stratify=wines[schema.TARGET]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture(scope="session")
def small_splits(splits: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A few hundred rows: enough for a meaningful fit, small enough for quick tests."""
    train, test = splits
    return train.sample(600, random_state=0).reset_index(drop=True), test.sample(
        200, random_state=0
    ).reset_index(drop=True)


@pytest.fixture
def prepared_dir(tmp_path: Path, small_splits: tuple[pd.DataFrame, pd.DataFrame]) -> Path:
    """data/prepared/{train,test,reference}.parquet in a fresh project folder."""
    train, test = small_splits
    folder = tmp_path / "data" / "prepared"
    folder.mkdir(parents=True)
    train.to_parquet(folder / "train.parquet")
    test.to_parquet(folder / "test.parquet")
    train.head(100).to_parquet(folder / "reference.parquet")
    return folder
