"""Durable store of labelled production data: the true quality of wines the app scored.

SQLite (standard library, WAL mode) so it needs no server and survives restarts. The serving app
writes to it from ``POST /feedback``; the retraining job reads it back as a data frame with
``schema.DATA_COLUMNS``. Rows are validated with the same rules as every other input.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

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
    features TEXT NOT NULL,
    served_quality REAL,
    model_version TEXT
)
"""
_ADDED_COLUMNS: Final = (("served_quality", "REAL"), ("model_version", "TEXT"))
"""Columns added after the first release: a database written before them gains them (NULL for
its old rows, which were labelled without the served score) when it is opened."""
_INDEX = "CREATE INDEX IF NOT EXISTS feedback_by_version ON feedback (model_version, id)"


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
    """Append-only SQLite table of (features, true quality), safe to share between threads.

    A label given by request id is joined to what was served for that row: the score and the
    model version are stored beside it, so realized quality is known per model version.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_DDL)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(feedback)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in present:
                    self._conn.execute(f"ALTER TABLE feedback ADD COLUMN {name} {kind}")
            self._conn.execute(_INDEX)

    def add(
        self,
        rows: Sequence[Mapping[str, Any]],
        qualities: Sequence[int],
        request_id: str | None = None,
        row_indices: Sequence[int] | None = None,
        *,
        served: Sequence[float] | None = None,
        model_version: str | None = None,
    ) -> int:
        """Store validated rows with their labels; raises ``FeatureError`` on bad input.

        ``served``: the score the app answered for each row, by ``model_version`` (labels given
        with the wines themselves have neither).
        """
        problems = validate_labelled_rows(rows, qualities)
        if problems:
            raise FeatureError(problems)
        now = datetime.now(UTC).isoformat()
        indices = list(row_indices) if row_indices is not None else [None] * len(rows)
        scores = [float(s) for s in served] if served is not None else [None] * len(rows)
        records = [
            (
                now,
                request_id,
                idx,
                int(q),
                json.dumps({k: row[k] for k in sorted(row)}),
                score,
                model_version if score is not None else None,
            )
            for row, q, idx, score in zip(rows, qualities, indices, scores, strict=True)
        ]
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO feedback (received_at, request_id, row_index, quality, features,"
                " served_quality, model_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                records,
            )
            self._conn.execute("COMMIT")
        return len(records)

    def labelled(self, model_version: str, limit: int) -> list[tuple[float, float]]:
        """The latest ``limit`` (true quality, served score) pairs of a version, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT quality, served_quality FROM feedback"
                " WHERE model_version = ? AND served_quality IS NOT NULL"
                " ORDER BY id DESC LIMIT ?",
                (model_version, limit),
            ).fetchall()
        return [(float(q), float(s)) for q, s in reversed(rows)]

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
        *,
        served: Sequence[float] | None,
        model_version: str | None,
    ) -> int:
        return self._open().add(
            rows, qualities, request_id, row_indices, served=served, model_version=model_version
        )

    async def add(
        self,
        rows: Sequence[Mapping[str, Any]],
        qualities: Sequence[int],
        request_id: str | None = None,
        row_indices: Sequence[int] | None = None,
        *,
        served: Sequence[float] | None = None,
        model_version: str | None = None,
    ) -> int:
        add = functools.partial(self._add, served=served, model_version=model_version)
        return await anyio.to_thread.run_sync(add, rows, qualities, request_id, row_indices)

    def _labelled(self, model_version: str, limit: int) -> list[tuple[float, float]]:
        if self._store is None and not self.path.exists():
            return []  # no feedback yet: do not create the database just to read it
        return self._open().labelled(model_version, limit)

    async def labelled(self, model_version: str, limit: int) -> list[tuple[float, float]]:
        """``FeedbackStore.labelled``, in a worker thread; empty when there is no database."""
        return await anyio.to_thread.run_sync(self._labelled, model_version, limit)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
