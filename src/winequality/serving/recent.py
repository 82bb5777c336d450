"""The rows of the last N answered requests, by request id, so feedback can name them.

Each request keeps what was served for it too (the scores and the model version), so a label is
joined to the prediction it judges. Cheap on the request path: one ordered-dict insert of
references to the model matrix the request was already parsed into and to the score array the
model returned, and once full, one eviction of the oldest. The matrix (48 bytes a wine)
rather than the parsed JSON objects (about 1 kB a wine): 10,000 remembered 100-wine requests
would otherwise hold a gigabyte. Its float32 values are turned back into their shortest decimal
form, which gives back the submitted numbers for measurements of up to 7 significant digits
(and otherwise exactly what the model saw); this happens only when feedback arrives.

When replicas share the feedback store (``served_rows_shared``), ``remember`` also hands the same
entry to the store's served-row writer (a deque append; the writer sends it once per linger), so
feedback received by another replica finds the request there; this cache stays the fast lookup
for the requests this process answered.

The key of a remembered request is always an id the app issued (``RequestIds``): 128 bits from
the operating system's CSPRNG, so knowing any number of ids (one's own) tells nothing about
another client's, and a client-chosen ``X-Request-ID`` never names a served row (it is kept only
as a correlation id, echoed back).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.feedback_store.rows import ServedRequest
from winequality.feedback_store.writer import ServedRowWriter


def matrix_row(matrix: Matrix, index: int) -> dict[str, Any]:
    """A model-matrix row as named features (float32 values at their shortest decimal form)."""
    values = matrix[index]
    row: dict[str, Any] = {
        name: float(str(np.float32(values[j]))) for j, name in enumerate(schema.FEATURE_NAMES)
    }
    row[schema.WINE_TYPE] = "white" if values[-1] >= 0.5 else "red"
    return row


class RequestIds:
    """Server-issued request ids: 32 hex digits of ``os.urandom``, unguessable and (by their
    128 bits) unique. The random bytes are read ``pool`` ids at a time: one ``getrandom`` call
    per id would cost several times the slicing (``benchmarks/request_ids.py``). A forked child
    starts a fresh pool, so no two processes hand out the same ids. Called from the event loop
    (one thread)."""

    def __init__(self, pool: int = 4096) -> None:
        self._size = 16 * pool
        self._buf = b""
        self._pos = 0
        self._end = 0
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._buf, self._pos, self._end = b"", 0, 0

    def next(self) -> str:
        pos = self._pos
        if pos >= self._end:
            self._buf, pos, self._end = os.urandom(self._size), 0, self._size
        self._pos = pos + 16
        return self._buf[pos : pos + 16].hex()


REQUEST_IDS: Final = RequestIds()
"""One sequence for both hot endpoints: their requests share the remembered-rows mapping."""


ROWS_PER_REQUEST: Final = 10
"""Row budget per remembered request on average: ``capacity`` large batches would otherwise hold
``capacity * max_batch_rows`` wines (10,000 x 100-wine requests: +48 MB of resident memory)."""


Served = ServedRequest
"""One remembered request: its rows, the scores answered and the model that answered."""


class RecentRequests:
    """A bounded mapping request id -> rows; the oldest request is forgotten first.

    At most ``capacity`` requests and ``max_rows`` wines (default ``ROWS_PER_REQUEST`` per
    request) are kept; the newest request is always kept. ``shared``: the writer that also sends
    each request to the shared feedback store (None: this process alone can name its requests).
    """

    def __init__(
        self, capacity: int, max_rows: int | None = None, shared: ServedRowWriter | None = None
    ) -> None:
        self.shared = shared
        self.capacity = capacity
        self.max_rows = capacity * ROWS_PER_REQUEST if max_rows is None else max_rows
        self._requests: OrderedDict[str, Served] = OrderedDict()
        self._total = 0

    def remember(
        self,
        request_id: str,
        rows: Matrix,
        quality: npt.NDArray[np.float32] | None = None,
        model_version: str | None = None,
    ) -> None:
        served = Served(rows, quality, model_version)
        if self.shared is not None:
            self.shared.put_served(request_id, served)
        if self.capacity <= 0:
            return
        entries = self._requests
        previous = entries.pop(request_id, None)  # a reused id refers to its latest request
        if previous is not None:
            self._total -= len(previous.rows)
        entries[request_id] = served
        self._total += len(rows)
        while len(entries) > self.capacity or (self._total > self.max_rows and len(entries) > 1):
            self._total -= len(entries.popitem(last=False)[1].rows)

    def __len__(self) -> int:
        return len(self._requests)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._requests

    def get(self, request_id: str) -> Served | None:
        """What was served for a remembered request (None if not remembered)."""
        return self._requests.get(request_id)

    def rows(self, request_id: str) -> Matrix | None:
        served = self._requests.get(request_id)
        return None if served is None else served.rows

    def row(self, request_id: str, index: int) -> dict[str, Any]:
        """Row ``index`` of a remembered request; ``KeyError`` / ``IndexError`` otherwise."""
        rows = self._requests[request_id].rows
        if not 0 <= index < len(rows):
            raise IndexError(index)
        return matrix_row(rows, index)

    def served(self, request_id: str, index: int) -> tuple[float, str] | None:
        """(score, model version) answered for row ``index``; None if not remembered."""
        served = self._requests.get(request_id)
        if served is None or served.quality is None or served.model_version is None:
            return None
        if not 0 <= index < len(served.quality):
            raise IndexError(index)
        return float(served.quality[index]), served.model_version

    def scores(self, model_version: str) -> npt.NDArray[np.float64]:
        """All remembered scores answered by ``model_version`` (for the distribution check)."""
        arrays = [
            s.quality
            for s in list(self._requests.values())
            if s.model_version == model_version and s.quality is not None
        ]
        if not arrays:
            return np.empty(0)
        return np.concatenate(arrays).astype(np.float64)
