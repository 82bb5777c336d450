"""Ingestion of the UCI Wine Quality CSVs (``;``-separated, quoted header)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from winequality import schema

UCI_FILES: dict[schema.WineType, str] = {
    "red": "winequality-red.csv",
    "white": "winequality-white.csv",
}


def read_uci_file(path: Path, wine_type: schema.WineType) -> pd.DataFrame:
    """One UCI file -> snake_case columns plus ``wine_type``."""
    frame = pd.read_csv(path, sep=";")
    frame = frame.rename(columns=schema.UCI_TO_SNAKE)
    frame[schema.WINE_TYPE] = wine_type
    return frame.loc[:, list(schema.DATA_COLUMNS)]


def read_uci_dir(folder: Path) -> pd.DataFrame:
    """Both UCI files of a folder, red first, as one frame."""
    frames = [read_uci_file(folder / UCI_FILES[t], t) for t in schema.WINE_TYPES]
    return pd.concat(frames, ignore_index=True)
