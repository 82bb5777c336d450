"""The pure parts of payload logging: event headers, payload encoding, queue bound, recent rows."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from winequality import schema
from winequality.monitoring.payloads import rows_from_payload
from winequality.serving.model import example_matrix
from winequality.serving.payload_logger import (
    CE_REQUEST,
    Exchange,
    PayloadLogger,
    ce_time,
    event_headers,
    request_payload,
)
from winequality.serving.recent import RecentRequests


def exchange(request: bytes | np.ndarray = b'{"wines": []}') -> Exchange:
    return Exchange("req-1", schema.MODEL_NAME, 1_700_000_000.25, request, b"{}")


def test_event_headers_are_seldon_binary_mode_cloudevents() -> None:
    headers = event_headers(CE_REQUEST, exchange(), "winequality-app/test")
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "io.seldon.serving.inference.request"
    assert headers["ce-requestid"] == "req-1"
    assert headers["ce-modelid"] == schema.MODEL_NAME
    assert headers["ce-source"] == "winequality-app/test"
    assert headers["ce-time"] == "2023-11-14T22:13:20.250000Z"
    assert headers["content-type"] == "application/json"
    assert headers["ce-id"] != event_headers(CE_REQUEST, exchange(), "s")["ce-id"]


def test_ce_time_is_utc_rfc3339() -> None:
    assert ce_time(0.0) == "1970-01-01T00:00:00Z"


def test_json_request_bodies_are_forwarded_untouched() -> None:
    raw = b'{"wines": [{"alcohol": 10}]}'
    assert request_payload(raw) is raw


def test_a_matrix_is_encoded_as_a_v2_request_the_detector_reads() -> None:
    matrix = example_matrix()
    features, is_white = rows_from_payload(orjson.loads(request_payload(matrix)))
    np.testing.assert_allclose(features, matrix[:, :-1], rtol=1e-6)
    assert is_white.tolist() == [False, True]


def test_a_full_queue_drops_and_counts_two_events_per_request() -> None:
    registry = CollectorRegistry()

    async def fill() -> PayloadLogger:
        logger = PayloadLogger("http://127.0.0.1:9", 2, registry)  # never started: no delivery
        for _ in range(5):
            logger.log(exchange())
        return logger

    logger = asyncio.run(fill())
    assert logger.pending == 2
    dropped = registry.get_sample_value(
        "winequality_payloads_dropped_total", {"reason": "queue_full"}
    )
    assert dropped == 6


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="payload_queue_size"):
        PayloadLogger("http://127.0.0.1:9", 0, CollectorRegistry())


def test_recent_requests_forget_the_oldest_beyond_capacity() -> None:
    recent = RecentRequests(2)
    for rid in ("a", "b", "c"):
        recent.remember(rid, example_matrix())
    assert "a" not in recent
    assert len(recent) == 2
    newer = example_matrix()
    newer[0, schema.FEATURE_NAMES.index("alcohol")] = 12.3
    recent.remember("b", newer)  # reuse refreshes the id
    recent.remember("d", example_matrix())
    assert "b" in recent
    assert "c" not in recent
    assert recent.row("b", 0)["alcohol"] == 12.3


def test_recent_rows_out_of_range_raise_index_error() -> None:
    recent = RecentRequests(5)
    recent.remember("m", example_matrix())
    assert recent.row("m", 1)[schema.WINE_TYPE] == "white"
    with pytest.raises(IndexError):
        recent.row("m", 2)
    with pytest.raises(KeyError):
        recent.row("unknown", 0)


def test_zero_capacity_remembers_nothing() -> None:
    recent = RecentRequests(0)
    recent.remember("a", example_matrix())
    assert len(recent) == 0


def test_recent_requests_also_bound_the_number_of_rows() -> None:
    recent = RecentRequests(100, max_rows=5)
    recent.remember("two", example_matrix())
    recent.remember("four", np.vstack([example_matrix()] * 2))
    assert "two" not in recent  # 6 rows > 5: the oldest goes
    recent.remember("one", example_matrix()[:1])
    assert "four" in recent  # 5 rows: within the budget
    assert len(recent) == 2
    recent.remember("big", np.vstack([example_matrix()] * 5))
    assert "big" in recent  # alone over the budget, but the newest is always kept
    assert len(recent) == 1
