"""Where the real data comes from: the UCI archive and the names of its two files.

Shared by the ingest (which reads that layout) and the generator (which writes it), so neither
imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from winequality.contract import schema

UCI_URL: Final = "https://archive.ics.uci.edu/static/public/186/wine+quality.zip"
UCI_FILES: Final[Mapping[schema.WineType, str]] = {
    "red": "winequality-red.csv",
    "white": "winequality-white.csv",
}
"""File name per wine type, in the UCI archive and in any folder of that layout."""
