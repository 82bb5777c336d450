"""Real-data splits for the drift tests: a red-only reference and disjoint held-out rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from drift_data import REFERENCE_ROWS, RedSplit

from winequality.contract import schema
from winequality.monitoring.detector import reference_from_frame


@pytest.fixture(scope="session")
def red_split(real_wines: pd.DataFrame) -> RedSplit:
    red = real_wines[real_wines[schema.WINE_TYPE] == "red"].sample(frac=1.0, random_state=7)
    reference_frame = red.iloc[:REFERENCE_ROWS].reset_index(drop=True)
    return RedSplit(
        reference_frame=reference_frame,
        held_out=red.iloc[REFERENCE_ROWS:].reset_index(drop=True),
        white=real_wines[real_wines[schema.WINE_TYPE] == "white"].reset_index(drop=True),
        reference=reference_from_frame(reference_frame, "red-reference"),
    )


@pytest.fixture
def reference_parquet(tmp_path: Path, red_split: RedSplit) -> Path:
    """The red reference written as a bundle's reference.parquet."""
    path = tmp_path / "bundle" / "reference.parquet"
    path.parent.mkdir()
    red_split.reference_frame.to_parquet(path)
    return path
