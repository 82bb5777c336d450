"""Shared types of the drift tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from winequality.monitoring.detector import Reference

REFERENCE_ROWS = 1000


@dataclass(frozen=True)
class RedSplit:
    reference_frame: pd.DataFrame
    """1000 red wines (the reference sample)."""
    held_out: pd.DataFrame
    """The other 599 red wines, disjoint from the reference."""
    white: pd.DataFrame
    reference: Reference
