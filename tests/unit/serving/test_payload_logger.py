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

from winequality.contract import schema
from winequality.monitoring.payloads import rows_from_payload
from winequality.process import free_port
from winequality.serving.model import example_matrix
from winequality.serving.payload_logger import (
    BATCH_CONTENT_TYPE,
    BATCH_MAX_BYTES,
    CE_REQUEST,
    CE_RESPONSE,
    DROP_REASONS,
    STREAM_SLICE,
    STREAM_SLICE_BYTES,
    BatchStream,
    EventEncoder,
    EventIds,
    Exchange,
    PayloadLogger,
    ce_time,
    event_headers,
    payload_bytes,
    request_payload,
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
    encoder = EventEncoder('winequality-app/"quoted" 100%')
    events = orjson.loads(b"[" + encoder.encode(ex) + b"]")
    assert [e["type"] for e in events] == [CE_REQUEST, CE_RESPONSE]
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["source"] == 'winequality-app/"quoted" 100%'
        assert event["time"] == "2023-11-14T22:13:20.250000Z"
        assert event["datacontenttype"] == "application/json"
        assert (event["requestid"], event["modelid"]) == ("req-7", schema.MODEL_NAME)
    assert events[0]["data"] == {"wines": [{"a": 1}]}
    assert events[1]["data"] == {"p": [5.0]}
    assert events[0]["id"] != events[1]["id"]
    again = orjson.loads(b"[" + encoder.encode(ex) + b"," + encoder.encode(ex) + b"]")
    assert len({e["id"] for e in again}) == 4
    assert {e["id"] for e in again}.isdisjoint(e["id"] for e in events)
    assert EventIds().next() != EventIds().next()  # another process: another prefix


def test_a_matrix_request_is_encoded_into_its_event_as_a_v2_request() -> None:
    matrix = example_matrix()
    ex = Exchange("req-8", schema.MODEL_NAME, 1_700_000_000.0, matrix, b"{}")
    request_event = orjson.loads(b"[" + EventEncoder("s").encode(ex) + b"]")[0]
    features, _ = rows_from_payload(request_event["data"])
    np.testing.assert_allclose(features, matrix[:, :-1], rtol=1e-6)


def test_ce_time_is_utc_rfc3339_to_the_microsecond() -> None:
    assert ce_time(0.0) == "1970-01-01T00:00:00Z"
    assert ce_time(1_700_000_000.000123) == "2023-11-14T22:13:20.000123Z"
    assert ce_time(1_700_000_059.9999996) == "2023-11-14T22:14:20Z"  # rounds up a second
    assert ce_time(951_782_400.5) == "2000-02-29T00:00:00.500000Z"


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


def test_the_buffer_is_also_bounded_by_the_bytes_it_holds() -> None:
    registry = CollectorRegistry()
    body = b'{"wines": [' + b" " * 998 + b"]}"
    size = payload_bytes(exchange(body))
    assert size == len(body) + 2  # both bodies ({} answered)

    async def fill() -> PayloadLogger:
        # Room for 100 by count, for 3 by bytes: 10,000 buffered 100-row batches held 360 MB.
        logger = PayloadLogger("http://127.0.0.1:9", 100, registry, queue_bytes=3 * size)
        for _ in range(5):
            logger.log(exchange(body))
        return logger

    logger = asyncio.run(fill())
    assert logger.pending == 3
    assert (
        registry.get_sample_value("winequality_payloads_dropped_total", {"reason": "queue_full"})
        == 4
    )


def test_an_exchange_over_the_byte_bound_still_goes_when_nothing_waits() -> None:
    registry = CollectorRegistry()
    body = b'{"wines": [' + b" " * 5000 + b"]}"

    async def fill() -> PayloadLogger:
        logger = PayloadLogger("http://127.0.0.1:9", 100, registry, queue_bytes=1000)
        logger.log(exchange(body))
        logger.log(exchange(body))
        return logger

    assert asyncio.run(fill()).pending == 1


def test_a_matrix_counts_as_its_encoding_would_weigh() -> None:
    matrix = np.repeat(example_matrix()[:1], 100, axis=0)
    estimate = payload_bytes(exchange(matrix))
    encoded = len(request_payload(matrix)) + 2
    assert encoded / 2 <= estimate <= encoded * 2


def test_the_payload_byte_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="payload_queue_bytes"):
        PayloadLogger("http://127.0.0.1:9", 5, CollectorRegistry(), queue_bytes=0)


def test_the_pending_gauge_counts_what_waits_for_the_detector() -> None:
    registry = CollectorRegistry()

    async def fill() -> None:
        logger = PayloadLogger("http://127.0.0.1:9", 10, registry, batch_max=64)
        for i in range(3):
            logger.log(exchange(rid=f"req-{i}"))

    asyncio.run(fill())
    assert registry.get_sample_value("winequality_payloads_pending") == 3


async def _stream(body: BatchStream) -> bytes:
    return b"".join([chunk async for chunk in body])


def test_a_batch_streams_as_one_json_array_in_slices_yielding_to_the_loop() -> None:
    encoder = EventEncoder("s")
    events = [encoder.encode(exchange(rid=f"req-{i}")) for i in range(3 * STREAM_SLICE + 1)]
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def run() -> tuple[bytes, int]:
        task = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        before = ticks
        body = BatchStream(events, 1, 1000)
        raw = await _stream(body)
        task.cancel()
        assert body.taken == len(events) - 1
        return raw, ticks - before

    raw, ran = asyncio.run(run())
    decoded = orjson.loads(raw)
    assert [e["requestid"] for e in decoded[::2]] == [f"req-{i}" for i in range(1, len(events))]
    assert ran >= 3, "the loop ran other work between the slices of the body"


def test_a_step_of_a_batch_stops_past_its_byte_bound_and_the_post_goes_on() -> None:
    # 100-row exchanges (~36 kB): 128 of them made one 4.6 MB chunk, a fresh mapping whose
    # pages the kernel faulted in and zeroed for every slice.
    event = b'{"pad": "' + b"x" * 36_000 + b'"}'
    events = [event] * 40

    async def chunks() -> list[bytes]:
        return [chunk async for chunk in BatchStream(events, 0, 100)]

    got = asyncio.run(chunks())
    assert all(len(chunk) <= STREAM_SLICE_BYTES + 1 for chunk in got)
    assert len(got) > 2
    assert len(orjson.loads(b"".join(got))) == 40
    huge = b'{"pad": "' + b"x" * STREAM_SLICE_BYTES + b'"}'
    alone = asyncio.run(_stream(BatchStream([huge, event], 0, 100)))
    assert len(orjson.loads(alone)) == 2  # a step takes its first event, however big


def test_a_batch_stops_before_its_byte_bound_but_a_huge_exchange_goes_alone() -> None:
    big = b'{"pad": "' + b"x" * (BATCH_MAX_BYTES // 4) + b'"}'  # four are just over the bound
    events = [big] * 5
    first = BatchStream(events, 0, 100)
    assert len(orjson.loads(asyncio.run(_stream(first)))) == 3
    assert first.taken == 3
    huge = b'{"pad": "' + b"x" * BATCH_MAX_BYTES + b'"}'
    alone = BatchStream([huge, big], 0, 100)
    assert len(orjson.loads(asyncio.run(_stream(alone)))) == 1
    assert alone.taken == 1


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
    """One POST: a Content-Length body (binary mode) or a chunked one (batched mode)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    if b"transfer-encoding: chunked" in lines:
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readexactly(2)
        seen.append((head.lower(), b"".join(chunks)))
        return
    length = next(
        int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")
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


async def limit_once(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    """The detector's rate limit: a 429 with Retry-After for the first POST, then 202s."""
    await read_event(reader, seen)
    writer.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await answer_202(reader, writer, seen)


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
    handler: Handler | None,
    exchanges: int | list[Exchange] = 1,
    **options: Any,
) -> tuple[dict[str, float], dict[str, float], Seen]:
    """Sent and dropped counters after logging ``exchanges`` requests at once (that many, or
    these), and the POSTs the server read. ``options`` go to PayloadLogger (batch_max,
    linger_s)."""
    logged = (
        exchanges
        if isinstance(exchanges, list)
        else [exchange(rid=f"req-{i + 1}") for i in range(exchanges)]
    )
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
        # Short only where the timeout is what the test waits for: on a loaded machine an
        # answering collector can take longer than that, and its events would count as dropped.
        timeout_s = 0.3 if handler is stay_silent else 5.0
        logger = PayloadLogger(url, 10, registry, timeout_s=timeout_s, source="test", **options)
        await logger.start()
        try:
            for logged_exchange in logged:
                logger.log(logged_exchange)
            for _ in range(1000):
                await asyncio.sleep(0.01)
                if logger.pending == 0 and _counted(registry) >= 2 * len(logged):
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


@pytest.mark.parametrize("batch_max", [256, 1], ids=["batched", "binary"])
def test_a_rate_limited_post_is_sent_again_and_nothing_is_dropped(batch_max: int) -> None:
    sent, dropped, seen = deliver(limit_once, exchanges=2, batch_max=batch_max, linger_s=0.05)
    assert sent == {"request": 2, "response": 2}
    assert sum(dropped.values()) == 0
    # The refused POST again, unchanged (in binary mode: the same event id).
    assert seen[0] == seen[1]
    assert len(seen) == (2 if batch_max > 1 else 5)


@pytest.mark.parametrize("batch_max", [256, 1], ids=["batched", "binary"])
def test_an_exchange_that_cannot_be_encoded_is_dropped_alone(batch_max: int) -> None:
    bad = exchange(request=np.zeros((1, 3), dtype=np.float32), rid="bad")  # not [n, 12]
    good = [exchange(rid="req-1"), bad, exchange(rid="req-2")]
    sent, dropped, seen = deliver(answer_202, good, batch_max=batch_max, linger_s=0.05)
    assert sent == {"request": 2, "response": 2}
    assert dropped == {r: (2.0 if r == "rejected" else 0.0) for r in DROP_REASONS}
    delivered = [orjson.loads(body) for _, body in seen]
    if batch_max > 1:
        assert len(seen) == 1
        assert [e["requestid"] for e in delivered[0]] == ["req-1", "req-1", "req-2", "req-2"]
    else:
        assert len(seen) == 4
        assert all(b"ce-requestid: bad" not in head for head, _ in seen)


def test_recent_requests_remember_what_was_served_for_each_row() -> None:
    recent = RecentRequests(4)
    scores = np.array([5.5, 6.25], dtype=np.float32)
    recent.remember("a", example_matrix(), scores, "3")
    recent.remember("b", example_matrix())  # remembered without scores (nothing to join)
    assert recent.served("a", 1) == (6.25, "3")
    assert recent.served("b", 0) is None
    assert recent.served("gone", 0) is None
    assert recent.scores("3").tolist() == [5.5, 6.25]
    assert recent.scores("4").size == 0


def test_structured_events_are_stamped_as_ce_time_stamps() -> None:
    encoder = EventEncoder("s")
    for stamp in (0.0, 1_700_000_000.000123, 1_700_000_059.9999996, 951_782_400.5, 1.25, 1.0):
        ex = Exchange("r", schema.MODEL_NAME, stamp, b"{}", b"{}")
        events = orjson.loads(b"[" + encoder.encode(ex) + b"]")
        assert {e["time"] for e in events} == {ce_time(stamp)}
