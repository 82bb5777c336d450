"""The lean V2 inference path against small real HTTP servers on loopback (asyncio sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import orjson
import pytest

from winequality import schema
from winequality.inference.predictor import (
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from winequality.process import free_port
from winequality.serving.model import example_matrix
from winequality.serving.upstream import LeanRemoteV2Predictor

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def v2_answer(rows: int, version: str = "7") -> bytes:
    return orjson.dumps(
        {
            "model_name": schema.MODEL_NAME,
            "model_version": version,
            "outputs": [
                {"name": schema.OUTPUT_QUALITY, "datatype": "FP32", "shape": [rows, 1],
                 "data": [5.5] * rows},
                {"name": schema.OUTPUT_CLASS, "datatype": "INT32", "shape": [rows, 1],
                 "data": [6] * rows},
            ],
        }
    )  # fmt: skip


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


def response(status: int, body: bytes, *, chunked: bool = False, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    if chunked:
        half = len(body) // 2
        chunks = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (body[:half], body[half:]))
        return b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n%b\r\n%b0\r\n\r\n" % (
            status, extra, chunks,
        )  # fmt: skip
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%b\r\n%b" % (status, len(body), extra, body)


async def with_server(handler: Handler, test: Callable[[str], Awaitable[None]]) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: that is what some tests do
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await test(f"http://127.0.0.1:{port}")
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.01)  # let the transports finish closing inside the loop


def run(handler: Handler, test: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(with_server(handler, test))


def test_predictions_over_keep_alive_and_chunked_responses() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for i in range(3):
            request = orjson.loads(await read_request(reader))
            rows = request["inputs"][0]["shape"][0]
            writer.write(response(200, v2_answer(rows), chunked=i % 2 == 1))
            await writer.drain()
        writer.close()

    async def test(url: str) -> None:
        predictor = LeanRemoteV2Predictor(url, timeout_s=5)
        try:
            for _ in range(3):
                prediction = await predictor.predict(example_matrix())
                np.testing.assert_allclose(prediction.quality, [5.5, 5.5])
                assert prediction.quality_class.tolist() == [6, 6]
            assert predictor.metadata.version == "7"
        finally:
            await predictor.close()

    run(handler, test)
    assert connections == 1, "the three requests should share one keep-alive connection"


def test_a_connection_the_server_closed_while_idle_is_replaced_transparently() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(200, v2_answer(2)))  # keep-alive announced, then closed anyway
        await writer.drain()
        writer.close()

    async def test(url: str) -> None:
        predictor = LeanRemoteV2Predictor(url, timeout_s=5)
        try:
            await predictor.predict(example_matrix())
            await asyncio.sleep(0.05)
            await predictor.predict(example_matrix())
        finally:
            await predictor.close()

    run(handler, test)


def test_nothing_listening_is_upstream_unavailable() -> None:
    async def test() -> None:
        predictor = LeanRemoteV2Predictor(f"http://127.0.0.1:{free_port()}", timeout_s=1)
        try:
            with pytest.raises(UpstreamUnavailable, match="unreachable"):
                await predictor.predict(example_matrix())
        finally:
            await predictor.close()

    asyncio.run(test())


def test_a_silent_server_is_upstream_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def test(url: str) -> None:
        predictor = LeanRemoteV2Predictor(url, timeout_s=0.2)
        try:
            with pytest.raises(UpstreamTimeout, match=r"did not answer within 0\.2s"):
                await predictor.predict(example_matrix())
        finally:
            await predictor.close()

    run(handler, test)


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (503, b'{"error": "model not ready"}', UpstreamUnavailable, "model not ready"),
        (400, b'{"error": "bad tensor"}', UpstreamBadResponse, "400: bad tensor"),
        (200, b"not json", UpstreamBadResponse, "invalid JSON"),
        (200, b'{"outputs": []}', UpstreamBadResponse, "no output"),
    ],
)
def test_error_answers_map_to_typed_errors(
    status: int, body: bytes, error: type[Exception], message: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(status, body, close=True))
        await writer.drain()
        writer.close()

    async def test(url: str) -> None:
        predictor = LeanRemoteV2Predictor(url, timeout_s=2)
        try:
            with pytest.raises(error, match=message):
                await predictor.predict(example_matrix())
        finally:
            await predictor.close()

    run(handler, test)


def test_garbage_instead_of_http_is_a_bad_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def test(url: str) -> None:
        predictor = LeanRemoteV2Predictor(url, timeout_s=2)
        try:
            with pytest.raises(UpstreamBadResponse, match="invalid HTTP response"):
                await predictor.predict(example_matrix())
        finally:
            await predictor.close()

    run(handler, test)
