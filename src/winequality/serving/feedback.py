"""The app's handle on the feedback store: opened on first use, written off the event loop.

Opening lazily keeps the app from creating ``settings.feedback_db`` (and its directory) on
machines that never receive feedback; SQLite writes run in a worker thread so a slow disk never
stalls predictions.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from winequality.feedback import FeedbackStore


class FeedbackSink:
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
