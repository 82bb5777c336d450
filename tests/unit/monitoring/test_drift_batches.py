"""The column-wise read of the app's batches agrees with the event-by-event read, or declines."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from drift_data import RedSplit

from winequality.contract import schema
from winequality.monitoring.service import (
    EventRejectedError,
    ParsedEvents,
    _app_batch,
    _each_event,
)
from winequality.serving.payload_logger import EventEncoder, Exchange

RESPONSE = b'{"predictions":[{"quality":5.0,"quality_class":5}]}'


def app_batch(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """What the app's payload logger posts: a request and a response event per wine."""
    encoder = EventEncoder("winequality-app/test")
    columns = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    items = [
        encoder.encode(
            Exchange(f"r{i}", "wine-quality", 0.0, orjson.dumps({"wines": [w]}), RESPONSE)
        )
        for i, w in enumerate(frame[columns].to_dict("records"))
    ]
    doc: list[dict[str, Any]] = orjson.loads(b"[" + b",".join(items) + b"]")
    return doc


def same(a: ParsedEvents, b: ParsedEvents) -> bool:
    return (
        (a.events, a.requests) == (b.events, b.requests)
        and np.array_equal(a.rows[0], b.rows[0])
        and np.array_equal(a.rows[1], b.rows[1])
    )


def test_the_app_loggers_batch_is_read_column_wise_with_the_same_rows(
    red_split: RedSplit,
) -> None:
    doc = app_batch(pd.concat([red_split.held_out.head(30), red_split.white.head(30)]))
    fast = _app_batch(doc)
    assert fast is not None
    assert (fast.events, fast.requests, fast.rows[0].shape) == (120, 60, (60, 11))
    assert fast.rows[1].sum() == 30
    assert same(fast, _each_event(doc))


def _set(index: int, key: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(doc: list[dict[str, Any]]) -> None:
        doc[index][key] = value

    return change


def _drop(index: int, key: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(doc: list[dict[str, Any]]) -> None:
        del doc[index][key]

    return change


def _base64(doc: list[dict[str, Any]]) -> None:
    doc[2]["data_base64"] = base64.b64encode(orjson.dumps(doc[2].pop("data"))).decode()


def _out_of_range(doc: list[dict[str, Any]]) -> None:
    doc[4]["data"]["wines"][0]["alcohol"] = 99.0


def _responses_only(doc: list[dict[str, Any]]) -> None:
    doc[:] = doc[1::2]


CHANGES: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "an extension attribute": _set(0, "traceparent", "00-abc"),
    "a +json media type": _set(0, "datacontenttype", "application/cloudevents+json"),
    "no media type": _drop(0, "datacontenttype"),
    "a text media type": _set(0, "datacontenttype", "text/plain"),
    "a list as media type": _set(0, "datacontenttype", ["application/json"]),
    "base64 data": _base64,
    "data_base64 null": _set(0, "data_base64", None),
    "an empty data_base64": _set(0, "data_base64", ""),
    "no data": _drop(2, "data"),
    "null data": _set(2, "data", None),
    "an empty id": _set(3, "id", ""),
    "a numeric source": _set(3, "source", 7),
    "no specversion": _drop(5, "specversion"),
    "a mixed specversion": _set(5, "specversion", "0.3"),
    "an unknown type": _set(6, "type", "com.example.other"),
    "an empty wines list": _set(0, "data", {"wines": []}),
    "a wine out of range": _out_of_range,
    "a V2 request": _set(0, "data", {"inputs": []}),
    "responses only": _responses_only,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_anything_else_is_read_alike_or_left_to_the_event_by_event_read(
    red_split: RedSplit, change: Callable[[list[dict[str, Any]]], None]
) -> None:
    doc = app_batch(red_split.held_out.head(5))
    change(doc)
    fast = _app_batch(doc)
    try:
        slow = _each_event(doc)
    except EventRejectedError:
        assert fast is None  # the refusal, naming the element, comes from the slow read
        return
    assert fast is None or same(fast, slow)


def test_a_batch_with_a_non_object_element_is_left_to_the_event_by_event_read(
    red_split: RedSplit,
) -> None:
    doc: list[Any] = app_batch(red_split.held_out.head(2))
    doc.append("not an event")
    assert _app_batch(doc) is None
    with pytest.raises(EventRejectedError, match="must be a JSON object"):
        _each_event(doc)
