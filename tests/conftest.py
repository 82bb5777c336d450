"""Fixtures shared by all test layers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from winequality.data.ingest import read_uci_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "wine-quality"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real UCI files, read in place (never copied into the repository)."""
    if not (SHARED_DATA / "winequality-red.csv").exists():
        pytest.fail(f"the shared UCI data is missing at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_wines(shared_data_dir: Path) -> pd.DataFrame:
    """Red + white, snake_case, with duplicates (as published)."""
    return read_uci_dir(shared_data_dir)
