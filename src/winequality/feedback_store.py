"""Durable store of labelled production data: the true quality of wines the app scored.

SQLite (standard library, WAL mode) so it needs no server and survives restarts. The serving app
writes to it from ``POST /feedback``; the retraining job reads it back as a data frame with
``schema.DATA_COLUMNS``. Rows are validated with the same rules as every other input.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np

from winequality.contract import schema
from winequality.contract.parsers import NUMBER_TYPES, wine_problems
from winequality.contract.problems import FeatureError, Problem, in_order

if TYPE_CHECKING:
    import pandas as pd

_DDL = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    request_id TEXT,
    row_index INTEGER,
    quality INTEGER NOT NULL,
    features TEXT NOT NULL
)
"""


def validate_labelled_rows(
    rows: Sequence[Mapping[str, Any]], qualities: Sequence[Any]
) -> list[Problem]:
    """Problems with feature rows (the contract's wine records) and their true qualities."""
    if len(rows) != len(qualities):
        return [
            Problem(
                None,
                schema.TARGET,
                f"{len(qualities)} labels for {len(rows)} rows",
                "length_mismatch",
                ("body", schema.TARGET),
            )
        ]
    problems = wine_problems(list(rows))
    span = f"[{schema.QUALITY_MIN}, {schema.QUALITY_MAX}]"
    for i, q in enumerate(qualities):
        loc = ("body", schema.TARGET, i)
        if type(q) not in NUMBER_TYPES or (type(q) is float and not q.is_integer()):
            problems.append(
                Problem(i, schema.TARGET, f"must be an integer, got {q!r}", "int_type", loc)
            )
        elif not schema.QUALITY_MIN <= q <= schema.QUALITY_MAX:
            problems.append(Problem(i, schema.TARGET, f"{q} is outside {span}", "value_error", loc))
    return in_order(problems)


class FeedbackStore:
    """Append-only SQLite table of (features, true quality), safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_DDL)

    def add(
        self,
        rows: Sequence[Mapping[str, Any]],
        qualities: Sequence[int],
        request_id: str | None = None,
        row_indices: Sequence[int] | None = None,
    ) -> int:
        """Store validated rows with their labels; raises ``FeatureError`` on bad input."""
        problems = validate_labelled_rows(rows, qualities)
        if problems:
            raise FeatureError(problems)
        now = datetime.now(UTC).isoformat()
        indices = list(row_indices) if row_indices is not None else [None] * len(rows)
        records = [
            (now, request_id, idx, int(q), json.dumps({k: row[k] for k in sorted(row)}))
            for row, q, idx in zip(rows, qualities, indices, strict=True)
        ]
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO feedback (received_at, request_id, row_index, quality, features)"
                " VALUES (?, ?, ?, ?, ?)",
                records,
            )
            self._conn.execute("COMMIT")
        return len(records)

    def count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()
        return int(n)

    def frame(self) -> pd.DataFrame:
        """All feedback as a frame with ``schema.DATA_COLUMNS`` (oldest first)."""
        import pandas as pd

        with self._lock:
            rows = self._conn.execute(
                "SELECT features, quality FROM feedback ORDER BY id"
            ).fetchall()
        records = [json.loads(features) | {schema.TARGET: quality} for features, quality in rows]
        frame = pd.DataFrame.from_records(records, columns=list(schema.DATA_COLUMNS))
        frame = frame.astype(dict.fromkeys(schema.FEATURE_NAMES, np.float64))
        return frame.astype({schema.TARGET: np.int64, schema.WINE_TYPE: str})

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class FeedbackSink:
    # Opening lazily keeps the app from creating the database (and its directory) on machines
    # that never receive feedback; writes run in a worker thread so a slow disk never stalls
    # predictions.
    """``add`` validates and stores labelled rows (``FeatureError`` on bad rows)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    def _open(self) -> FeedbackStore:
        with self._lock:
            if self._store is None:
                self._store = FeedbackStore(self.path)
            return self._store

    def _add(
        self,
        rows: Sequence[Mapping[str, Any]],
        qualities: Sequence[int],
        request_id: str | None,
        row_indices: Sequence[int] | None,
    ) -> int:
        return self._open().add(rows, qualities, request_id, row_indices)

    async def add(
        self,
        rows: Sequence[Mapping[str, Any]],
        qualities: Sequence[int],
        request_id: str | None = None,
        row_indices: Sequence[int] | None = None,
    ) -> int:
        return await anyio.to_thread.run_sync(self._add, rows, qualities, request_id, row_indices)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
