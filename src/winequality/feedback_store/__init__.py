"""The feedback store: labelled production data, and the rows it was served for.

``FeedbackStore`` (``store``: SQLAlchemy Core, SQLite or PostgreSQL) is the database; the app
uses it through ``FeedbackSink`` (``sink``: async, lazy, with the served-row ``writer``), the
retraining job through ``read_feedback``. ``FeedbackStore`` and ``read_feedback`` are imported
on first use, so importing this package (the serving app does) does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from winequality.feedback_store.rows import (
    LabelConflictError,
    ServedRequest,
    StoreError,
    validate_labelled_rows,
)
from winequality.feedback_store.sink import FeedbackSink
from winequality.feedback_store.writer import ServedRowWriter

if TYPE_CHECKING:
    from winequality.feedback_store.store import FeedbackStore, read_feedback

__all__ = [
    "FeedbackSink",
    "FeedbackStore",
    "LabelConflictError",
    "ServedRequest",
    "ServedRowWriter",
    "StoreError",
    "read_feedback",
    "validate_labelled_rows",
]


def __getattr__(name: str) -> Any:
    if name in ("FeedbackStore", "read_feedback"):
        from winequality.feedback_store import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
