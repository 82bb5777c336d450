"""RemoteV2Predictor: V2 request building and response parsing, then the client against small
real HTTP servers on loopback (asyncio sockets) for keep-alive, chunked answers and failures."""

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
from winequality.inference.remote import (
    RemoteV2Predictor,
    build_v2_request,
    encode_request,
    parse_v2_response,
)
from winequality.process import free_port
from winequality.settings import Settings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

RED = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4, 0.0]
WHITE = [7.0, 0.27, 0.36, 20.7, 0.045, 45.0, 170.0, 1.001, 3.0, 0.45, 8.8, 1.0]
MATRIX = np.array([RED, WHITE], dtype=np.float32)


def test_request_has_one_named_column_tensor_per_feature_and_wine_type() -> None:
    request = orjson.loads(encode_request(MATRIX))
    names = [i["name"] for i in request["inputs"]]
    assert names == [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    assert {tuple(i["shape"]) for i in request["inputs"]} == {(2, 1)}
    by_name = {i["name"]: i for i in request["inputs"]}
    assert by_name[schema.WINE_TYPE] == {
        "name": schema.WINE_TYPE,
        "shape": [2, 1],
        "datatype": "BYTES",
        "data": ["red", "white"],
    }
    assert by_name["alcohol"]["datatype"] == "FP32"


def test_request_values_survive_json_as_the_same_float32() -> None:
    request = orjson.loads(encode_request(MATRIX))
    decoded = np.column_stack(
        [np.asarray(i["data"], dtype=np.float32) for i in request["inputs"][:-1]]
    )
    np.testing.assert_array_equal(decoded, MATRIX[:, :-1])
    # Shortest float32 repr on the wire, not float64 noise like 7.400000095367432.
    assert request["inputs"][0]["data"] == [7.4, 7.0]


def test_request_rejects_a_matrix_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"expected a \[N, 12\] model matrix"):
        build_v2_request(np.zeros((2, 11), dtype=np.float32))


def test_response_outputs_are_parsed_by_name_in_any_order() -> None:
    body = {
        "outputs": [
            {"name": "quality_class", "datatype": "INT32", "shape": [2, 1], "data": [5, 7]},
            {"name": "quality", "datatype": "FP32", "shape": [2, 1], "data": [5.25, 6.5]},
        ]
    }
    prediction = parse_v2_response(body, rows=2)
    np.testing.assert_array_equal(prediction.quality, np.array([5.25, 6.5], np.float32))
    np.testing.assert_array_equal(prediction.quality_class, np.array([5, 7], np.int32))
    assert prediction.quality.dtype == np.float32
    assert prediction.quality_class.dtype == np.int32


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no 'outputs' list"),
        ({"outputs": [{"name": "quality", "data": [5.0]}]}, "no output 'quality_class'"),
        (
            {
                "outputs": [
                    {"name": "quality", "data": [5.0, 6.0]},
                    {"name": "quality_class", "data": [5]},
                ]
            },
            "'quality' has 2 values for 1 rows",
        ),
        (
            {
                "outputs": [
                    {"name": "quality", "data": ["x"]},
                    {"name": "quality_class", "data": [5]},
                ]
            },
            "'quality' is not numeric",
        ),
    ],
)
def test_malformed_responses_are_bad_responses(body: object, message: str) -> None:
    with pytest.raises(UpstreamBadResponse, match=message):
        parse_v2_response(body, rows=1)


def test_settings_configure_url_timeout_retries_and_chunk_size() -> None:
    settings = Settings(
        remote_url="http://127.0.0.1:9/",
        remote_model="m",
        remote_timeout_s=0.5,
        remote_retries=1,
        triton_max_batch_size=10,
    )
    predictor = RemoteV2Predictor.from_settings(settings)
    assert (predictor.base_url, predictor.model) == ("http://127.0.0.1:9", "m")
    assert (predictor.timeout_s, predictor.max_batch_rows) == (0.5, 10)
    assert predictor.metadata.name == "m"


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_rows must be >= 1"):
        RemoteV2Predictor("http://127.0.0.1:9", max_batch_rows=0)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RemoteV2Predictor("http://127.0.0.1:9", retries=-1)


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
        predictor = RemoteV2Predictor(url, timeout_s=5)
        try:
            for _ in range(3):
                prediction = await predictor.predict(MATRIX)
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
        predictor = RemoteV2Predictor(url, timeout_s=5)
        try:
            await predictor.predict(MATRIX)
            await asyncio.sleep(0.05)
            await predictor.predict(MATRIX)
        finally:
            await predictor.close()

    run(handler, test)


def test_nothing_listening_is_upstream_unavailable() -> None:
    async def test() -> None:
        predictor = RemoteV2Predictor(f"http://127.0.0.1:{free_port()}", timeout_s=1)
        try:
            with pytest.raises(UpstreamUnavailable, match="unreachable"):
                await predictor.predict(MATRIX)
        finally:
            await predictor.close()

    asyncio.run(test())


def test_a_silent_server_is_upstream_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=0.2)
        try:
            with pytest.raises(UpstreamTimeout, match=r"did not answer within 0\.2s"):
                await predictor.predict(MATRIX)
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
        predictor = RemoteV2Predictor(url, timeout_s=2)
        try:
            with pytest.raises(error, match=message):
                await predictor.predict(MATRIX)
        finally:
            await predictor.close()

    run(handler, test)


def test_garbage_instead_of_http_is_a_bad_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=2)
        try:
            with pytest.raises(UpstreamBadResponse, match="invalid HTTP response"):
                await predictor.predict(MATRIX)
        finally:
            await predictor.close()

    run(handler, test)


def test_a_dropped_request_is_sent_once_more_then_upstream_unavailable() -> None:
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await read_request(reader)
        requests += 1  # read, then the connection is closed without an answer

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=2, retries=2)
        try:
            with pytest.raises(UpstreamUnavailable, match="dropped the request"):
                await predictor.predict(MATRIX)
        finally:
            await predictor.close()

    run(handler, test)
    assert requests == 2, "a dropped request is retried once, not `retries` times"


def test_a_request_dropped_once_is_answered_on_the_retry() -> None:
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await read_request(reader)
        requests += 1
        if requests > 1:
            writer.write(response(200, v2_answer(2)))
            await writer.drain()

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=2, retries=0)
        try:
            prediction = await predictor.predict(MATRIX)
            assert prediction.quality_class.tolist() == [6, 6]
        finally:
            await predictor.close()

    run(handler, test)
    assert requests == 2


def test_a_url_that_is_not_http_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"must be http\(s\)://host\[:port\], got 'grpc://x:1'"):
        RemoteV2Predictor("grpc://x:1")
