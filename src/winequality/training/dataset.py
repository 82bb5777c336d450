"""Reading a prepared split (``data/prepared/*.parquet``) into the model matrix and target.

The split files follow ``schema.DATA_COLUMNS``; anything else is refused here with the column or
row at fault, before an estimator sees it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import frame_to_matrix


class DatasetError(ValueError):
    """A prepared split that cannot be used for training or evaluation."""


def read_split(path: Path) -> pd.DataFrame:
    """Load a prepared split and check it has every column of ``schema.DATA_COLUMNS`` and rows."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (run the prepare stage first)")
    frame = pd.read_parquet(path)
    check_frame(frame, str(path))
    return frame


def check_frame(frame: pd.DataFrame, name: str = "frame") -> None:
    """Refuse frames without rows, with missing columns, or with a missing/non-integer target."""
    missing = [c for c in schema.DATA_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{name}: missing column(s) {missing}")
    if frame.empty:
        raise DatasetError(f"{name}: no rows")
    target = pd.to_numeric(frame[schema.TARGET], errors="coerce")
    bad = target.isna() | (target != target.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{name}: row {row}, {schema.TARGET}: must be an integer score, "
            f"got {frame[schema.TARGET].iloc[row]!r} ({int(bad.sum())} such row(s))"
        )


def to_xy(frame: pd.DataFrame) -> tuple[Matrix, npt.NDArray[np.float64]]:
    """The model matrix (``schema.MODEL_COLUMNS``, float32) and the quality target (float64)."""
    check_frame(frame)
    return frame_to_matrix(frame), frame[schema.TARGET].to_numpy(dtype=np.float64)
