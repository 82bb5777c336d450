"""Served requests to the shared store, off the request path: a bounded queue and one writer.

The request path (``RecentRequests.remember``) calls ``put``: a length check and a deque append
of references to the arrays it already holds, nothing else. Once per linger the writer thread
takes what accumulated and inserts it in one transaction (one row per request, batches of at most
``batch_max``). A pass writes only what was queued when it began: what arrives while it waits for
the database waits for the next linger, so a busy app sends one batch a linger, not a stream of
small transactions (each a few round trips and event-loop wakeups for a handful of rows). While
the store cannot be written the requests wait in the queue and the thread retries after a
short, growing pause; once the queue holds ``max_requests`` requests or
``max_rows`` wines, new ones are dropped and counted (``winequality_served_rows_dropped_total``),
so a slow or dead database never holds memory or time of a prediction. A dropped request can
still be labelled on the replica that served it (its recent cache), and with its wines.

Two writers share that queue. ``ServedRowWriter`` is a thread (SQLite, or a caller without an
event loop). ``AsyncServedRowWriter`` (PostgreSQL, in the app) is a task on the app's event loop
with an async psycopg connection: once per linger it takes everything queued and sends it as one
binary ``COPY`` (one transaction), formatted a slice of requests at a time between turns of the
loop (``rows.served_copy_rows``), like the payload logger: a thread doing the same I/O made the
loop hand the GIL back and forth, which cost the app several times the writer's own CPU, and a
``write_row`` a request cost more than the whole rest of the writer (``benchmarks/served_rows.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge

from winequality.contract.features import Matrix
from winequality.feedback_store.rows import (
    COPY_SIGNATURE,
    COPY_TRAILER,
    SERVED_COPY,
    ServedRequest,
    StoreError,
    served_copy_rows,
)

log = logging.getLogger(__name__)

DROP_REASONS: Final = ("queue_full", "shutdown", "error")
"""Why served rows never reached the store: the queue was full (store slow or down), the app
stopped while the store could not take them, or writing them failed other than by the store
being unavailable (logged with its traceback; retrying would fail again)."""
BACKOFF_MIN_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0
PRUNE_EVERY_S: Final = 60.0
COPY_SLICE: Final = 256
"""Requests formatted into a COPY between two turns of the event loop (well under a millisecond:
a request waiting for the loop meanwhile sees no stall)."""

Entry = tuple[str, float, ServedRequest]
"""(request id, Unix time served, what was served)."""


class ServedStore(Protocol):
    def add_served(self, requests: Sequence[Entry]) -> int: ...

    def prune_served(self, before: float) -> int: ...


class ServedRowMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.written = Counter(
            "winequality_served_rows_written",
            "Served wines written to the shared feedback store (labels by request id join them).",
            registry=registry,
        )
        self.dropped = Counter(
            "winequality_served_rows_dropped",
            "Served wines never written to the shared feedback store, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        self.pending = Gauge(
            "winequality_served_rows_pending",
            "Served requests waiting for the shared feedback store.",
            registry=registry,
        )


class ServedRowWriter:
    """``put`` never blocks; a daemon thread (started by the first ``put``) writes the batches.

    ``store``: opens (or returns) the store, raising ``StoreError`` while it cannot; ``outcome``
    hears each attempt's result (None when it worked, else the reason).
    """

    def __init__(
        self,
        store: Callable[[], ServedStore],
        *,
        max_requests: int,
        max_rows: int,
        linger_s: float,
        retention_s: float,
        batch_max: int = 1_000,
        registry: CollectorRegistry | None = None,
        outcome: Callable[[str | None], None] | None = None,
    ) -> None:
        self._store = store
        self.max_requests = max_requests
        self.max_rows = max_rows
        self.linger_s = linger_s
        self.retention_s = retention_s
        self.batch_max = batch_max
        self._outcome = outcome or (lambda _reason: None)
        self._queue: deque[Entry] = deque()
        self._rows = 0
        self._count = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()
        self.metrics = ServedRowMetrics(registry)
        self.metrics.pending.set_function(lambda: len(self._queue))
        self._dropped_full = self.metrics.dropped.labels("queue_full")

    def put(
        self,
        request_id: str,
        rows: Matrix,
        quality: npt.NDArray[np.float32] | None,
        model_version: str | None,
    ) -> None:
        self.put_served(request_id, ServedRequest(rows, quality, model_version))

    def put_served(self, request_id: str, served: ServedRequest) -> None:
        """``put`` of what the caller already holds (the recent cache's own entry: one object
        a request, not two)."""
        n = len(served.rows)
        entry = (request_id, time.time(), served)
        with self._count:
            if len(self._queue) >= self.max_requests or (
                self._rows + n > self.max_rows and self._queue
            ):
                full = True
            else:
                full = False
                self._rows += n
                self._queue.append(entry)
        if full:
            self._dropped_full.inc(n)
        elif not self._started:
            self._start()

    def pending(self) -> int:
        return len(self._queue)

    def _start(self) -> None:
        with self._start_lock:
            if not self._started and not self._stop.is_set():
                self._started = True
                self._thread = threading.Thread(
                    target=self._run, name="served-row-writer", daemon=True
                )
                self._thread.start()

    def _take(self, most: int) -> list[Entry]:
        with self._count:
            batch = [self._queue.popleft() for _ in range(min(most, len(self._queue)))]
            self._rows -= sum(len(e[2].rows) for e in batch)
        return batch

    def _give_back(self, batch: list[Entry]) -> None:
        # Back at the front, in order: they were served first.
        with self._count:
            self._queue.extendleft(reversed(batch))
            self._rows += sum(len(e[2].rows) for e in batch)

    def flush(self, limit: int | None = None) -> bool:
        """Write what is queued, at most ``limit`` requests (None: until the queue is empty);
        False (the rest still queued) when the store failed."""
        left = limit
        while self._queue and (left is None or left > 0):
            batch = self._take(self.batch_max if left is None else min(self.batch_max, left))
            if left is not None:
                left -= len(batch)
            try:
                store = self._store()
                written = store.add_served(batch)
            except StoreError as exc:
                self._give_back(batch)
                self._outcome(str(exc))
                return False
            except Exception:
                # Never let the thread die: a dead writer would silently stop sharing.
                log.exception("served rows dropped: writing %d request(s) failed", len(batch))
                self.metrics.dropped.labels("error").inc(sum(len(e[2].rows) for e in batch))
                continue
            self.metrics.written.inc(written)
            self._outcome(None)
        return True

    def _prune(self) -> None:
        try:
            removed = self._store().prune_served(time.time() - self.retention_s)
        except StoreError as exc:
            log.warning("served rows not pruned: %s", exc)
            return
        except Exception:
            log.exception("served rows not pruned")
            return
        if removed:
            log.info("forgot %d served request(s) older than %.0f s", removed, self.retention_s)

    def _run(self) -> None:
        pause = self.linger_s
        failing = False
        next_prune = time.monotonic()
        while not self._stop.wait(pause):
            if self.flush(len(self._queue)):
                if failing:
                    log.warning("served rows reach the feedback store again")
                failing, pause = False, self.linger_s
                if time.monotonic() >= next_prune:
                    self._prune()
                    next_prune = time.monotonic() + PRUNE_EVERY_S
            else:
                if not failing:
                    log.error(
                        "served rows wait for the feedback store (%d request(s) queued)",
                        self.pending(),
                    )
                failing = True
                pause = min(max(pause * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """``close`` from an event loop, in a worker thread (the last write blocks)."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.close, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after one last attempt; what still waits is dropped and counted."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        if not self.flush():
            self._drop_at_shutdown()

    def _drop_at_shutdown(self) -> None:
        """What the last attempt left queued: dropped and counted."""
        rows = sum(len(e[2].rows) for e in self._take_all())
        self.metrics.dropped.labels("shutdown").inc(rows)
        log.error("%d served wine(s) not written to the feedback store at shutdown", rows)

    def _take_all(self) -> list[Entry]:
        with self._count:
            batch = list(self._queue)
            self._queue.clear()
            self._rows = 0
        return batch


class AsyncServedRowWriter(ServedRowWriter):
    """The writer as a task on the running event loop (started by the first ``put`` made on
    it; elsewhere the thread), writing by ``COPY`` on an async psycopg connection to
    ``conninfo``, everything queued in one ``COPY`` (``batch_max`` defaults to the queue's
    bound). ``aclose`` (the app's shutdown) lets the ``COPY`` in flight commit, then writes what
    is left in one more: each request once. ``close`` (sync, for a caller that cannot await)
    cancels the task and writes what is left with the synchronous store; a batch the task was
    writing then may be written twice (harmless for a lookup, which takes the latest row of a
    request id, and both are the same, but a count of the table sees it twice)."""

    def __init__(
        self,
        store: Callable[[], ServedStore],
        *,
        conninfo: str,
        connect: dict[str, object],
        where: str,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("batch_max", kwargs.get("max_requests"))
        super().__init__(store, **kwargs)  # type: ignore[arg-type]
        self._conninfo = conninfo
        self._connect_args = connect
        self._where = where
        self._task: asyncio.Task[None] | None = None
        self._conn: object | None = None
        self._inflight: list[Entry] | None = None
        self._schema_ready = False
        self._wake = asyncio.Event()
        """Set by ``aclose``: the task stops waiting for its linger (bound to a loop on use)."""

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super()._start()
            return
        with self._start_lock:
            if not self._started and not self._stop.is_set():
                self._started = True
                self._task = loop.create_task(self._arun(), name="served-row-writer")

    def in_flight(self) -> bool:
        """Whether a ``COPY`` is on its way (its requests are no longer ``pending``)."""
        return self._inflight is not None

    async def _arun(self) -> None:
        import anyio.to_thread

        pause = self.linger_s
        failing = False
        next_prune = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            if self._stop.is_set():
                break
            if await self._aflush():
                if failing:
                    log.warning("served rows reach the feedback store again")
                failing, pause = False, self.linger_s
                if time.monotonic() >= next_prune:
                    await anyio.to_thread.run_sync(self._prune)
                    next_prune = time.monotonic() + PRUNE_EVERY_S
            else:
                if not failing:
                    log.error(
                        "served rows wait for the feedback store (%d request(s) queued)",
                        self.pending(),
                    )
                failing = True
                pause = min(max(pause * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)

    async def _aflush(self, *, last: bool = False) -> bool:
        """One linger's writing; ``last`` (``aclose``): also once stopping has begun."""
        import psycopg

        left = len(self._queue)  # what arrives meanwhile waits for the next linger
        while left > 0 and self._queue and (last or not self._stop.is_set()):
            batch = self._take(min(self.batch_max, left))
            left -= len(batch)
            self._inflight = batch
            try:
                await self._copy(batch)
            except asyncio.CancelledError:
                if self._inflight is not None:  # else close() gave it back already
                    self._inflight = None
                    self._give_back(batch)
                raise
            except (psycopg.Error, OSError) as exc:
                self._inflight = None
                self._give_back(batch)
                await self._disconnect()
                first = str(exc).strip().splitlines()
                why = first[0] if first else type(exc).__name__
                self._outcome(f"feedback store {self._where} cannot store the served rows: {why}")
                return False
            except Exception:
                self._inflight = None
                log.exception("served rows dropped: writing %d request(s) failed", len(batch))
                self.metrics.dropped.labels("error").inc(sum(len(e[2].rows) for e in batch))
                continue
            self._inflight = None
            self.metrics.written.inc(sum(len(e[2].rows) for e in batch))
            self._outcome(None)
        return True

    async def _copy(self, batch: list[Entry]) -> None:
        import anyio.to_thread
        import psycopg

        if not self._schema_ready:
            await anyio.to_thread.run_sync(self._store)  # opens the store: creates the tables
            self._schema_ready = True
        conn = self._conn
        if not isinstance(conn, psycopg.AsyncConnection) or conn.closed:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_args)  # type: ignore[arg-type]
            self._conn = conn
        encoding = conn.info.encoding
        async with conn.cursor() as cursor, cursor.copy(SERVED_COPY) as copy:
            await copy.write(COPY_SIGNATURE)
            for start in range(0, len(batch), COPY_SLICE):
                await copy.write(served_copy_rows(batch[start : start + COPY_SLICE], encoding))
                await asyncio.sleep(0)
            await copy.write(COPY_TRAILER)
        await conn.commit()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # type: ignore[attr-defined]

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop the task once the ``COPY`` it is sending (if any) is committed, then send what
        is left in one last ``COPY``, each within ``timeout_s``; what still waits then is
        dropped and counted. On a writer that runs as a thread, ``close`` in a worker thread."""
        task = self._task
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            await super().aclose(timeout_s)
            return
        self._stop.set()
        self._task = None
        self._wake.set()
        # On a timeout wait_for cancels the task: its batch in flight goes back to the queue.
        try:
            await asyncio.wait_for(task, timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            pass
        except Exception:  # what is still queued is written below all the same
            log.exception("the served-row writer failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._aflush(last=True), timeout_s)
        await self._disconnect()
        if self._queue:  # the store failed or was too slow: _aflush gave the batch back
            self._drop_at_shutdown()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            if self._inflight is not None:  # back in the queue, for the flush below
                batch, self._inflight = self._inflight, None
                self._give_back(batch)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()  # type: ignore[attr-defined]
        super().close(timeout_s)
