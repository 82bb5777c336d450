"""The detector's decision history and its persistence: what ``/drift`` and ``/report`` show.

Every closed window leaves a ``WindowRecord`` (its per-window test outcome and every CUSUM chart
after it, beside the threshold); every alarm of the sequential decision leaves an ``AlarmRecord``
with its evidence, the windows that built up the charts that raised it, and later when and how it
cleared (traffic back to the reference, or a reload). Both are bounded (the most recent
``MAX_WINDOWS`` windows and ``MAX_ALARMS`` alarms) and survive a reference reload: the evidence of
the alarm that started a retraining stays visible after the loop closed.

The detector persists one document (``snapshot``): the sequential calibration and state
(``sequential.snapshot``) and this history, written atomically by a ``SnapshotWriter`` thread
(the newest document wins, so a burst of windows costs one write, off the event loop, and at
most one per ``WRITE_INTERVAL``). At start ``read_snapshot`` gives it back; a corrupt file is
logged and ignored (start over, as a reload).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from winequality.files import write_bytes
from winequality.monitoring.detector import TEST_NAMES, DriftResult
from winequality.monitoring.sequential import Calibration, SequentialState

log = logging.getLogger("winequality.drift")

MAX_WINDOWS: Final = 500
"""Windows kept in the history (about 100,000 rows at the default window)."""
MAX_ALARMS: Final = 50
"""Alarms kept, each with its evidence."""
MAX_EVIDENCE: Final = 30
"""Windows kept as the evidence of one alarm."""
SNAPSHOT_VERSION: Final = 1
WRITE_INTERVAL: Final = 0.25
"""Seconds between two writes of the snapshot at most (the newest document wins meanwhile)."""


class WindowRecord(BaseModel):
    """One closed window: its own test and the sequential charts after it."""

    model_config = ConfigDict(frozen=True)

    window: int
    """Windows closed since the reference was loaded (1 for the first)."""
    rows: int
    """Rows since the reference was loaded, this window included."""
    closed_at: float
    """Unix time the window closed."""
    window_rows: int
    is_drift: bool
    """The window's own test (``seldon_metric_drift_is_drift``)."""
    drifted: list[str]
    statistics: dict[str, float]
    """CUSUM chart of every test after this window."""
    threshold: float
    alarm: bool
    """The sequential decision after this window (``seldon_metric_drift_found``)."""
    reference: str
    """Fingerprint of the reference and parameters the charts ran under."""


class AlarmRecord(BaseModel):
    """One alarm of the sequential decision: why it was raised and how it ended."""

    model_config = ConfigDict(frozen=True)

    raised_at: float
    window: int
    row: int
    """Rows since the reference was loaded when it was raised."""
    raised_by: list[str]
    """Tests whose chart crossed the threshold."""
    threshold: float
    budget_rows: int
    reference: str
    """Where the reference it was raised against came from."""
    evidence: list[WindowRecord]
    """The windows since the raising charts last stood at 0 (at most ``MAX_EVIDENCE``)."""
    cleared_at: float | None = None
    cleared_by: Literal["traffic", "reload"] | None = None
    cleared_window: int | None = None


class DecisionLog(BaseModel):
    windows: list[WindowRecord] = []
    alarms: list[AlarmRecord] = []

    def observe(
        self,
        result: DriftResult,
        *,
        rows: int,
        before: SequentialState,
        after: SequentialState,
        calibration: Calibration,
        reference_source: str,
        now: float,
    ) -> WindowRecord:
        """Record a window stepped from ``before`` to ``after``; open or close an alarm."""
        record = WindowRecord(
            window=after.windows,
            rows=after.rows,
            closed_at=now,
            window_rows=rows,
            is_drift=result.is_drift,
            drifted=list(result.drifted),
            statistics=dict(zip(TEST_NAMES, after.statistics, strict=True)),
            threshold=calibration.threshold,
            alarm=after.alarm,
            reference=calibration.fingerprint,
        )
        self.windows.append(record)
        if len(self.windows) > 2 * MAX_WINDOWS:  # trimmed in bursts: amortised O(1)
            del self.windows[:-MAX_WINDOWS]
        if after.alarm and not before.alarm:
            self.alarms.append(
                AlarmRecord(
                    raised_at=now,
                    window=after.windows,
                    row=after.rows,
                    raised_by=list(after.raised_by),
                    threshold=calibration.threshold,
                    budget_rows=calibration.budget_rows,
                    reference=reference_source,
                    evidence=self._evidence(after.raised_by, calibration.fingerprint),
                )
            )
            del self.alarms[:-MAX_ALARMS]
        elif before.alarm and not after.alarm:
            self._clear(now, "traffic", after.windows)
        return record

    def reloaded(self, now: float, windows: int) -> None:
        """The reference was reloaded: an open alarm ends there (its evidence stays)."""
        self._clear(now, "reload", windows)

    def recent(self, n: int = MAX_WINDOWS) -> list[WindowRecord]:
        return self.windows[-n:]

    def _clear(self, now: float, by: Literal["traffic", "reload"], window: int) -> None:
        if self.alarms and self.alarms[-1].cleared_at is None:
            self.alarms[-1] = self.alarms[-1].model_copy(
                update={"cleared_at": now, "cleared_by": by, "cleared_window": window}
            )

    def _evidence(self, tests: tuple[str, ...], fingerprint: str) -> list[WindowRecord]:
        """Windows back to the last one where every raising chart stood at 0."""
        out: list[WindowRecord] = []
        for record in reversed(self.windows):
            if record.reference != fingerprint or len(out) == MAX_EVIDENCE:
                break
            if out and all(record.statistics[t] == 0.0 for t in tests):
                break
            out.append(record)
        return out[::-1]


def snapshot_document(
    calibration: Calibration | None, state: SequentialState | None, history: DecisionLog
) -> dict[str, Any]:
    """The persisted document (``history`` is copied: the writer thread serialises it later)."""
    sequential_part = (
        None
        if calibration is None or state is None
        else {"calibration": calibration.to_dict(), "state": state.to_dict()}
    )
    return {
        "version": SNAPSHOT_VERSION,
        "sequential": sequential_part,
        "windows": history.windows[-MAX_WINDOWS:],
        "alarms": list(history.alarms),
    }


class _Encoder:
    """The snapshot document -> JSON, each window record encoded once.

    A write re-encodes hundreds of unchanged records (the history and the alarms' evidence);
    the records are frozen, so their JSON is kept, keyed by identity, for as long as a document
    still holds them (the cache holds the record too: its id cannot be reused meanwhile).
    Models are encoded field by field (``dict(model)``), so records nested in an alarm come
    from the cache as well; the JSON is what ``model_dump`` gives.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[WindowRecord, orjson.Fragment]] = {}
        self._used: dict[int, tuple[WindowRecord, orjson.Fragment]] = {}

    def __call__(self, document: Mapping[str, Any]) -> bytes:
        self._used = {}
        try:
            return orjson.dumps(document, default=self._default)
        finally:
            self._cache, self._used = self._used, {}

    def _default(self, obj: Any) -> Any:
        if type(obj) is WindowRecord:
            key = id(obj)
            entry = self._cache.get(key)
            if entry is None or entry[0] is not obj:
                entry = (obj, orjson.Fragment(orjson.dumps(dict(obj))))
            self._used[key] = entry
            return entry[1]
        if isinstance(obj, BaseModel):
            return dict(obj)
        raise TypeError(type(obj).__name__)


def _encode(document: Mapping[str, Any]) -> bytes:
    return _Encoder()(document)


def read_snapshot(path: Path | None) -> tuple[Mapping[str, Any] | None, DecisionLog]:
    """(sequential snapshot or None, history) from ``path``; nothing usable: (None, empty)."""
    if path is None or not path.is_file():
        return None, DecisionLog()
    try:
        doc = orjson.loads(path.read_bytes())
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown snapshot version {doc.get('version')!r}")
        history = DecisionLog(windows=doc.get("windows", []), alarms=doc.get("alarms", []))
        seq = doc.get("sequential")
        return (seq if isinstance(seq, dict) else None), history
    except (OSError, ValueError, ValidationError) as exc:
        log.error("drift state %s is unusable, starting over: %s", path, exc)
        return None, DecisionLog()


class SnapshotWriter:
    """Writes the newest submitted document to ``path`` from its own thread (atomically).

    At most one write per ``min_interval`` seconds (``flush`` and ``close`` write at once):
    under load every batch closes windows, and a write per batch would be an fsync per batch
    and the encoding's share of the interpreter lock taken from the ingestion path.
    """

    def __init__(self, path: Path, min_interval: float = WRITE_INTERVAL) -> None:
        self.path = path
        self.min_interval = min_interval
        self._cond = threading.Condition()
        self._pending: Mapping[str, Any] | None = None
        self._busy = False
        self._closed = False
        self._flushing = 0
        self.writes = 0
        self._encode = _Encoder()
        self._thread = threading.Thread(target=self._run, name="drift-state-writer", daemon=True)
        self._thread.start()

    def submit(self, document: Mapping[str, Any]) -> None:
        with self._cond:
            self._pending = document
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far is on disk."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        last_write = -math.inf
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                while not (self._closed or self._flushing):
                    wait = last_write + self.min_interval - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                document, self._pending = self._pending, None
                if document is None:
                    return
                self._busy = True
            try:
                write_bytes(self.path, self._encode(document))
                self.writes += 1
            except (OSError, TypeError, ValueError) as exc:
                log.error("could not write the drift state to %s: %s", self.path, exc)
            finally:
                last_write = time.monotonic()
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
