"""The rows of the last N answered requests, by request id, so feedback can name them.

Cheap on the request path: one ordered-dict insert of a reference to the model matrix the request
was already parsed into, and once full, one eviction of the oldest. The matrix (48 bytes a wine)
rather than the parsed JSON objects (about 1 kB a wine): 10,000 remembered 100-wine requests
would otherwise hold a gigabyte. Its float32 values are turned back into their shortest decimal
form, which gives back the submitted numbers for measurements of up to 7 significant digits
(and otherwise exactly what the model saw); this happens only when feedback arrives.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

import numpy as np

from winequality.contract import schema
from winequality.contract.features import Matrix


def matrix_row(matrix: Matrix, index: int) -> dict[str, Any]:
    """A model-matrix row as named features (float32 values at their shortest decimal form)."""
    values = matrix[index]
    row: dict[str, Any] = {
        name: float(str(np.float32(values[j]))) for j, name in enumerate(schema.FEATURE_NAMES)
    }
    row[schema.WINE_TYPE] = "white" if values[-1] >= 0.5 else "red"
    return row


ROWS_PER_REQUEST: Final = 10
"""Row budget per remembered request on average: ``capacity`` large batches would otherwise hold
``capacity * max_batch_rows`` wines (10,000 x 100-wine requests: +48 MB of resident memory)."""


class RecentRequests:
    """A bounded mapping request id -> rows; the oldest request is forgotten first.

    At most ``capacity`` requests and ``max_rows`` wines (default ``ROWS_PER_REQUEST`` per
    request) are kept; the newest request is always kept.
    """

    def __init__(self, capacity: int, max_rows: int | None = None) -> None:
        self.capacity = capacity
        self.max_rows = capacity * ROWS_PER_REQUEST if max_rows is None else max_rows
        self._rows: OrderedDict[str, Matrix] = OrderedDict()
        self._total = 0

    def remember(self, request_id: str, rows: Matrix) -> None:
        if self.capacity <= 0:
            return
        entries = self._rows
        previous = entries.pop(request_id, None)  # a reused id refers to its latest request
        if previous is not None:
            self._total -= len(previous)
        entries[request_id] = rows
        self._total += len(rows)
        while len(entries) > self.capacity or (self._total > self.max_rows and len(entries) > 1):
            self._total -= len(entries.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._rows

    def rows(self, request_id: str) -> Matrix | None:
        return self._rows.get(request_id)

    def row(self, request_id: str, index: int) -> dict[str, Any]:
        """Row ``index`` of a remembered request; ``KeyError`` / ``IndexError`` otherwise."""
        rows = self._rows[request_id]
        if not 0 <= index < len(rows):
            raise IndexError(index)
        return matrix_row(rows, index)
