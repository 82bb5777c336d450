"""Payload logging: binary-mode headers, batched-mode events, payload encoding, queue bound,
recent rows, batching bounds, and the drop reason of each delivery failure (both modes) against
small real servers on loopback (asyncio sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from winequality import schema
from winequality.monitoring.payloads import rows_from_payload
from winequality.process import free_port
from winequality.serving.model import example_matrix
from winequality.serving.payload_logger import (
    BATCH_CONTENT_TYPE,
    CE_REQUEST,
    CE_RESPONSE,
    DROP_REASONS,
    EventIds,
    Exchange,
    PayloadLogger,
    batch_body,
    ce_time,
    event_headers,
    request_payload,
    structured_events,
)
from winequality.serving.recent import RecentRequests


def exchange(request: bytes | np.ndarray = b'{"wines": []}', rid: str = "req-1") -> Exchange:
    return Exchange(rid, schema.MODEL_NAME, 1_700_000_000.25, request, b"{}")


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


def test_structured_events_carry_the_binary_mode_attributes_and_embed_the_bodies() -> None:
    ex = Exchange(
        "req-7", schema.MODEL_NAME, 1_700_000_000.25, b'{"wines": [{"a": 1}]}', b'{"p": [5.0]}'
    )
    ids = EventIds()
    events = orjson.loads(
        batch_body(structured_events(ex, "winequality-app/test", ex.request, ids.next()))
    )
    assert [e["type"] for e in events] == [CE_REQUEST, CE_RESPONSE]
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["source"] == "winequality-app/test"
        assert event["time"] == "2023-11-14T22:13:20.250000Z"
        assert event["datacontenttype"] == "application/json"
        assert (event["requestid"], event["modelid"]) == ("req-7", schema.MODEL_NAME)
    assert events[0]["data"] == {"wines": [{"a": 1}]}
    assert events[1]["data"] == {"p": [5.0]}
    assert events[0]["id"] != events[1]["id"]
    again = orjson.loads(batch_body(structured_events(ex, "s", ex.request, ids.next())))
    assert {e["id"] for e in again}.isdisjoint(e["id"] for e in events)
    assert EventIds().next() != EventIds().next()  # another process: another prefix


def test_an_empty_batch_is_an_empty_json_array() -> None:
    assert orjson.loads(batch_body([])) == []


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


def test_batch_max_and_linger_are_checked() -> None:
    with pytest.raises(ValueError, match="payload_batch_max"):
        PayloadLogger("http://127.0.0.1:9", 5, CollectorRegistry(), batch_max=0)
    with pytest.raises(ValueError, match="linger_s"):
        PayloadLogger("http://127.0.0.1:9", 5, CollectorRegistry(), linger_s=-1)


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


Seen = list[tuple[bytes, bytes]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Seen], Awaitable[None]]
"""A detector stand-in; appends (head, body) of each POST it reads to the list."""


async def read_event(reader: asyncio.StreamReader, seen: Seen) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    seen.append((head.lower(), await reader.readexactly(length)))


async def answer_202(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    while True:
        await read_event(reader, seen)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


async def refuse_400(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_event(reader, seen)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\nno rows")
    await writer.drain()


async def answer_garbage(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_event(reader, seen)
    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    await writer.drain()


async def stay_silent(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_event(reader, seen)
    await asyncio.sleep(5)


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
    await read_event(reader, seen)  # then the connection closes without an answer


def deliver(
    handler: Handler | None, exchanges: int = 1, **options: Any
) -> tuple[dict[str, float], dict[str, float], Seen]:
    """Sent and dropped counters after logging ``exchanges`` requests at once, and the POSTs
    the server read. ``options`` go to PayloadLogger (batch_max, linger_s)."""
    registry = CollectorRegistry()
    seen: Seen = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert handler is not None
        writers.append(writer)
        try:
            await handler(reader, writer, seen)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        server = None
        if handler is None:
            url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        else:
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        logger = PayloadLogger(url, 10, registry, timeout_s=0.3, source="test", **options)
        await logger.start()
        try:
            for i in range(exchanges):
                logger.log(exchange(rid=f"req-{i + 1}"))
            for _ in range(200):
                await asyncio.sleep(0.01)
                if logger.pending == 0 and _counted(registry) >= 2 * exchanges:
                    break
        finally:
            await logger.stop()
            if server is not None:
                server.close()
            for writer in writers:
                writer.close()
            await asyncio.sleep(0.01)  # let the transports finish closing inside the loop

    asyncio.run(run())
    sent = {k: _value(registry, "sent", "type", k) for k in ("request", "response")}
    dropped = {r: _value(registry, "dropped", "reason", r) for r in DROP_REASONS}
    return sent, dropped, seen


def _value(registry: CollectorRegistry, name: str, label: str, value: str) -> float:
    sample = registry.get_sample_value(f"winequality_payloads_{name}_total", {label: value})
    return sample or 0.0


def _counted(registry: CollectorRegistry) -> float:
    return sum(_value(registry, "sent", "type", k) for k in ("request", "response")) + sum(
        _value(registry, "dropped", "reason", r) for r in DROP_REASONS
    )


def test_both_events_are_delivered_as_binary_mode_cloudevents() -> None:
    sent, dropped, seen = deliver(answer_202)
    assert sent == {"request": 1, "response": 1}
    assert sum(dropped.values()) == 0
    heads = [head for head, _ in seen]
    assert len(heads) == 2
    assert b"ce-type: io.seldon.serving.inference.request\r\n" in heads[0]
    assert b"ce-type: io.seldon.serving.inference.response\r\n" in heads[1]
    assert all(b"ce-requestid: req-1\r\n" in h and b"post / http/1.1" in h for h in heads)
    assert [body for _, body in seen] == [b'{"wines": []}', b"{}"]


def test_batched_mode_sends_what_is_queued_in_one_post() -> None:
    sent, dropped, seen = deliver(answer_202, exchanges=5, batch_max=256, linger_s=0.05)
    assert sent == {"request": 5, "response": 5}
    assert sum(dropped.values()) == 0
    assert len(seen) == 1
    head, body = seen[0]
    assert f"content-type: {BATCH_CONTENT_TYPE}\r\n".encode() in head
    assert b"ce-type" not in head
    events = orjson.loads(body)
    assert [e["type"] for e in events] == [CE_REQUEST, CE_RESPONSE] * 5
    assert [e["requestid"] for e in events] == [f"req-{i // 2 + 1}" for i in range(10)]
    assert [e["data"] for e in events[:2]] == [{"wines": []}, {}]


def test_a_batch_holds_at_most_batch_max_events() -> None:
    sent, dropped, seen = deliver(answer_202, exchanges=5, batch_max=4, linger_s=0.05)
    assert sent == {"request": 5, "response": 5}
    assert sum(dropped.values()) == 0
    assert [len(orjson.loads(body)) for _, body in seen] == [4, 4, 2]


def test_without_linger_a_batch_takes_only_what_is_already_queued() -> None:
    sent, _, seen = deliver(answer_202, exchanges=3, batch_max=256, linger_s=0.0)
    assert sent == {"request": 3, "response": 3}
    # All three were queued before the worker first ran: one POST, no waiting for more.
    assert [len(orjson.loads(body)) for _, body in seen] == [6]


FAILURES = pytest.mark.parametrize(
    ("handler", "reason", "posts_seen"),
    [
        (None, "unreachable", 0),
        (hang_up, "unreachable", 1),
        (stay_silent, "timeout", 1),
        (refuse_400, "rejected", 1),
        (answer_garbage, "rejected", 1),
    ],
    ids=["nothing-listening", "hangs-up", "silent", "refuses", "not-http"],
)


@FAILURES
def test_a_failed_delivery_drops_both_events_with_its_reason(
    handler: Handler | None, reason: str, posts_seen: int
) -> None:
    sent, dropped, seen = deliver(handler)
    assert sent == {"request": 0, "response": 0}
    assert dropped == {r: (2.0 if r == reason else 0.0) for r in DROP_REASONS}
    assert len(seen) == posts_seen, "the response event is not sent once the request is lost"


@FAILURES
def test_a_failed_batch_drops_each_of_its_events_with_its_reason(
    handler: Handler | None, reason: str, posts_seen: int
) -> None:
    sent, dropped, seen = deliver(handler, exchanges=3, batch_max=256, linger_s=0.05)
    assert sent == {"request": 0, "response": 0}
    assert dropped == {r: (6.0 if r == reason else 0.0) for r in DROP_REASONS}
    assert len(seen) == posts_seen
