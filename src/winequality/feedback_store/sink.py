"""The serving app's side of the feedback store: async, opened lazily, honest about its health.

Opening lazily keeps the app from creating the database (and its directory, or a connection
pool and the SQLAlchemy import) on machines that never receive feedback. Every call runs in a
worker thread so a slow disk or database never stalls predictions. ``status`` is the outcome of
the latest operation (``/health/ready`` shows it): a failed one does not poison the next, which
tries the database again.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from winequality.database import is_postgresql, normalize_url, redact, sqlite_file
from winequality.feedback_store.rows import ServedRequest, StoreError
from winequality.feedback_store.writer import AsyncServedRowWriter, ServedRowWriter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from winequality.feedback_store.store import FeedbackStore
    from winequality.settings import ServingSettings

T = TypeVar("T")

ROWS_PER_QUEUED_REQUEST = 10
"""Row budget per queued served request on average (as the recent cache's)."""


class FeedbackSink:
    """``add`` validates and stores labelled rows (``FeatureError`` on bad rows, ``StoreError``
    when the store cannot take them); ``served_rows`` (None unless the store is shared) writes
    the answered requests for the other replicas."""

    def __init__(
        self,
        url: str | Path,
        *,
        timeout_s: float = 5.0,
        share_served: bool = False,
        queue_size: int = 10_000,
        linger_s: float = 1.0,
        retention_s: float = 86_400.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.where = redact(self.url)
        self.path = self.where  # what the log lines name
        self.timeout_s = timeout_s
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()
        self._status: tuple[str, str | None, float] = ("unused", None, time.time())
        self.served_rows: ServedRowWriter | None = None
        if share_served:
            options: dict[str, Any] = {
                "max_requests": queue_size,
                "max_rows": queue_size * ROWS_PER_QUEUED_REQUEST,
                "linger_s": linger_s,
                "retention_s": retention_s,
                "registry": registry,
                "outcome": self._record,
            }
            if is_postgresql(self.url):
                from winequality.feedback_store.rows import pg_connect_args

                self.served_rows = AsyncServedRowWriter(
                    self._open,
                    conninfo=self.url.replace("postgresql+psycopg://", "postgresql://", 1),
                    connect=pg_connect_args(timeout_s),
                    where=self.where,
                    **options,
                )
            else:
                self.served_rows = ServedRowWriter(self._open, **options)

    @classmethod
    def from_settings(
        cls, settings: ServingSettings, registry: CollectorRegistry | None = None
    ) -> FeedbackSink:
        return cls(
            settings.store_url(),
            timeout_s=settings.database_timeout_s,
            share_served=settings.shares_served_rows(),
            queue_size=settings.served_rows_queue_size,
            linger_s=settings.served_rows_linger_s,
            retention_s=settings.served_rows_retention_s,
            registry=registry,
        )

    @property
    def shares_served_rows(self) -> bool:
        return self.served_rows is not None

    def _record(self, reason: str | None) -> None:
        state = "ok" if reason is None else "unavailable"
        if self._status[0] != state or self._status[1] != reason:
            self._status = (state, reason, time.time())

    def status(self) -> dict[str, Any]:
        """``state``: ``ok``, ``unavailable`` (``reason`` says why) or ``unused`` (not opened
        yet); ``since``: Unix time of the change; ``served_rows_pending`` when shared."""
        state, reason, since = self._status
        out: dict[str, Any] = {"state": state, "reason": reason, "since": since}
        if self.served_rows is not None:
            out["served_rows_pending"] = self.served_rows.pending()
        return out

    def _open(self) -> FeedbackStore:
        with self._lock:
            if self._store is None:
                from winequality.feedback_store.store import FeedbackStore

                try:
                    self._store = FeedbackStore(self.url, timeout_s=self.timeout_s)
                except StoreError as exc:
                    self._record(str(exc))
                    raise
            return self._store

    def _run(self, call: Callable[[FeedbackStore], T]) -> T:
        try:
            result = call(self._open())
        except StoreError as exc:
            self._record(str(exc))
            raise
        self._record(None)
        return result

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
        """Store labels; returns once they are committed."""

        def add(store: FeedbackStore) -> int:
            return store.add(
                rows, qualities, request_id, row_indices, served=served, model_version=model_version
            )

        return await anyio.to_thread.run_sync(self._run, add)

    def _labelled(self, model_version: str, limit: int) -> list[tuple[float, float]]:
        path = sqlite_file(self.url)
        if self._store is None and path is not None and not path.exists():
            return []  # no feedback yet: do not create the database just to read it
        return self._run(lambda store: store.labelled(model_version, limit))

    async def labelled(self, model_version: str, limit: int) -> list[tuple[float, float]]:
        """``FeedbackStore.labelled``, in a worker thread; empty when there is no database."""
        return await anyio.to_thread.run_sync(self._labelled, model_version, limit)

    async def served(self, request_id: str) -> ServedRequest | None:
        """What another replica (or this one, before a restart) served under ``request_id``."""
        lookup = functools.partial(self._run, lambda store: store.served(request_id))
        return await anyio.to_thread.run_sync(lookup)

    async def aclose(self) -> None:
        """``close`` from the app's event loop: the served rows' writer finishes the write in
        flight before the last one, so no request is written twice."""
        if self.served_rows is not None:
            await self.served_rows.aclose()
        await anyio.to_thread.run_sync(self._close_store)

    def close(self) -> None:
        """Write the queued served rows (one last attempt), then close the connections."""
        if self.served_rows is not None:
            self.served_rows.close()
        self._close_store()

    def _close_store(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
