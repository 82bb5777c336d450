"""RemoteV2Predictor: V2 request building and response parsing, then the client against small
real HTTP servers on loopback (asyncio sockets) for keep-alive, chunked answers and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
import pytest

from winequality.artifacts import ModelMetadata
from winequality.contract import schema
from winequality.inference.predictor import (
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from winequality.inference.remote import (
    RemoteV2Predictor,
    build_v2_request,
    encode_binary_request,
    encode_request,
    parse_v2_response,
)
from winequality.process import free_port
from winequality.settings import ServingSettings

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


def decode_binary_request(body: bytes, header_length: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON header, tensors by name) of a request in the binary tensor data extension."""
    header = orjson.loads(body[:header_length])
    tensors: dict[str, Any] = {}
    offset = header_length
    for tensor in header["inputs"]:
        size = tensor["parameters"]["binary_data_size"]
        chunk = body[offset : offset + size]
        offset += size
        if tensor["datatype"] == "FP32":
            tensors[tensor["name"]] = np.frombuffer(chunk, "<f4")
        else:
            values, pos = [], 0
            while pos < len(chunk):
                length = int.from_bytes(chunk[pos : pos + 4], "little")
                values.append(chunk[pos + 4 : pos + 4 + length].decode())
                pos += 4 + length
            tensors[tensor["name"]] = values
    assert offset == len(body), "bytes after the declared binary data"
    return header, tensors


def test_binary_request_carries_every_column_as_raw_float32_and_wine_types_as_bytes() -> None:
    body, header_length = encode_binary_request(MATRIX)
    header, tensors = decode_binary_request(body, header_length)
    assert [i["name"] for i in header["inputs"]] == [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    assert {tuple(i["shape"]) for i in header["inputs"]} == {(2, 1)}
    assert {i["datatype"] for i in header["inputs"][:-1]} == {"FP32"}
    assert header["inputs"][-1]["datatype"] == "BYTES"
    assert "data" not in header["inputs"][0]
    decoded = np.column_stack([tensors[n] for n in schema.FEATURE_NAMES])
    np.testing.assert_array_equal(decoded, MATRIX[:, :-1])  # bit for bit, no text round trip
    assert tensors[schema.WINE_TYPE] == ["red", "white"]
    assert header["outputs"] == [
        {"name": schema.OUTPUT_QUALITY, "parameters": {"binary_data": True}},
        {"name": schema.OUTPUT_CLASS, "parameters": {"binary_data": True}},
    ]


def test_binary_request_sizes_follow_rows_and_wine_types() -> None:
    matrix = np.repeat(MATRIX, [3, 4], axis=0)  # 3 red, 4 white
    body, header_length = encode_binary_request(matrix)
    header, tensors = decode_binary_request(body, header_length)
    sizes = {i["name"]: i["parameters"]["binary_data_size"] for i in header["inputs"]}
    assert sizes["alcohol"] == 7 * 4
    assert sizes[schema.WINE_TYPE] == 3 * (4 + 3) + 4 * (4 + 5)
    assert tensors[schema.WINE_TYPE] == ["red"] * 3 + ["white"] * 4


def test_binary_request_rejects_a_matrix_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"expected a \[N, 12\] model matrix"):
        encode_binary_request(np.zeros((2, 11), dtype=np.float32))


def binary_outputs(
    quality: list[float], classes: list[int], *, class_datatype: str = "INT32"
) -> tuple[dict[str, Any], bytes]:
    q = np.asarray(quality, "<f4").tobytes()
    c = np.asarray(classes, {"INT32": "<i4", "INT64": "<i8"}.get(class_datatype, "<i4")).tobytes()
    rows = len(quality)
    header = {
        "model_name": schema.MODEL_NAME,
        "model_version": "3",
        "outputs": [
            {"name": schema.OUTPUT_QUALITY, "datatype": "FP32", "shape": [rows, 1],
             "parameters": {"binary_data_size": len(q)}},
            {"name": schema.OUTPUT_CLASS, "datatype": class_datatype, "shape": [rows, 1],
             "parameters": {"binary_data_size": len(c)}},
        ],
    }  # fmt: skip
    return header, q + c


def test_binary_outputs_are_decoded_in_declared_order() -> None:
    header, raw = binary_outputs([5.25, 6.5], [5, 7], class_datatype="INT64")
    prediction = parse_v2_response(header, 2, raw)
    np.testing.assert_array_equal(prediction.quality, np.array([5.25, 6.5], np.float32))
    assert prediction.quality_class.tolist() == [5, 7]
    assert prediction.quality_class.dtype == np.int32


def test_binary_and_json_outputs_can_be_mixed() -> None:
    header, raw = binary_outputs([5.25], [5])
    header["outputs"][1] = {"name": schema.OUTPUT_CLASS, "datatype": "INT32", "data": [5]}
    prediction = parse_v2_response(header, 1, raw[:4])
    assert prediction.quality.tolist() == [5.25]
    assert prediction.quality_class.tolist() == [5]


def _oversized(header: dict[str, Any]) -> None:
    header["outputs"][1]["parameters"]["binary_data_size"] = 400


def _odd_size(header: dict[str, Any]) -> None:
    header["outputs"][0]["parameters"]["binary_data_size"] = 3


def _bytes_output(header: dict[str, Any]) -> None:
    header["outputs"][0]["datatype"] = "BYTES"


def _negative(header: dict[str, Any]) -> None:
    header["outputs"][0]["parameters"]["binary_data_size"] = -4


@pytest.mark.parametrize(
    ("damage", "extra", "message"),
    [
        (_oversized, b"", "binary_data_size 400 does not fit the 4 bytes"),
        (_odd_size, b"", "3 bytes is not a whole number of FP32 values"),
        (_bytes_output, b"", "datatype 'BYTES'; expected one of"),
        (_negative, b"", "binary_data_size -4 does not fit"),
        (None, b"\x00\x00", "2 bytes of binary data after the outputs' declared sizes"),
    ],
)
def test_malformed_binary_outputs_are_bad_responses(
    damage: Callable[[dict[str, Any]], None] | None, extra: bytes, message: str
) -> None:
    header, raw = binary_outputs([5.25], [5])
    if damage is not None:
        damage(header)
    with pytest.raises(UpstreamBadResponse, match=message):
        parse_v2_response(header, 1, raw + extra)


def test_settings_configure_url_timeout_retries_and_chunk_size() -> None:
    settings = ServingSettings(
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
    assert predictor.binary_data is True
    assert not RemoteV2Predictor.from_settings(
        ServingSettings(remote_binary_data=False)
    ).binary_data


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


async def read_request_with_headers(
    reader: asyncio.StreamReader,
) -> tuple[dict[bytes, bytes], bytes]:
    """(lower-cased headers, body) of one request."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    return headers, await reader.readexactly(int(headers[b"content-length"]))


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return (await read_request_with_headers(reader))[1]


async def read_json_header(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The JSON part of a request, with or without the binary tensor data extension."""
    headers, body = await read_request_with_headers(reader)
    length = headers.get(b"inference-header-content-length")
    doc: dict[str, Any] = orjson.loads(body[: int(length)] if length is not None else body)
    return doc


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
            request = await read_json_header(reader)
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


def test_answers_are_described_by_the_bundle_their_server_version_maps_to() -> None:
    # The bundled Triton's version numbers need not be the registry's: 6 serves registry "2".
    answers = iter(["6", "6", "7"])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for version in answers:
            request = await read_json_header(reader)
            writer.write(response(200, v2_answer(request["inputs"][0]["shape"][0], version)))
            await writer.drain()

    versions = {"6": ModelMetadata(version="2", run_id="run-2")}

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(
            url, metadata=ModelMetadata(version="1", run_id="run-1"), versions=versions
        )
        try:
            await predictor.predict(MATRIX)
            assert (predictor.metadata.version, predictor.metadata.run_id) == ("2", "run-2")
            await predictor.predict(MATRIX)
            assert predictor.metadata.version == "2"
            # A version the map does not know: the server's number, the rest as given.
            await predictor.predict(MATRIX)
            assert (predictor.metadata.version, predictor.metadata.run_id) == ("7", "run-1")
        finally:
            await predictor.close()

    run(handler, test)


def binary_response(header: dict[str, Any], raw: bytes, json_length: bytes | None = None) -> bytes:
    head = orjson.dumps(header)
    length = json_length if json_length is not None else b"%d" % len(head)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Inference-Header-Content-Length: %b\r\nContent-Length: %d\r\n\r\n%b%b"
        % (length, len(head) + len(raw), head, raw)
    )


def test_binary_request_and_answer_over_a_real_socket() -> None:
    seen: list[tuple[dict[bytes, bytes], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers, body = await read_request_with_headers(reader)
        seen.append((headers, body))
        _, tensors = decode_binary_request(body, int(headers[b"inference-header-content-length"]))
        # The answer is computed from what arrived: alcohol + 1 and the wine type as the class.
        quality = (tensors["alcohol"] + 1).tolist()
        classes = [7 if t == "white" else 5 for t in tensors[schema.WINE_TYPE]]
        writer.write(binary_response(*binary_outputs(quality, classes)))
        await writer.drain()

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=5)
        try:
            prediction = await predictor.predict(MATRIX)
        finally:
            await predictor.close()
        np.testing.assert_array_equal(prediction.quality, MATRIX[:, 10] + 1)
        assert prediction.quality_class.tolist() == [5, 7]
        assert predictor.metadata.version == "3"

    run(handler, test)
    ((headers, _),) = seen
    assert headers[b"content-type"] == b"application/octet-stream"


def test_json_setting_sends_v2_json_without_the_binary_header() -> None:
    seen: list[dict[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers, body = await read_request_with_headers(reader)
        seen.append(headers)
        request = orjson.loads(body)
        assert request["inputs"][0]["data"] == [7.4, 7.0]
        writer.write(response(200, v2_answer(2)))
        await writer.drain()

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=5, binary_data=False)
        try:
            assert (await predictor.predict(MATRIX)).quality_class.tolist() == [6, 6]
        finally:
            await predictor.close()

    run(handler, test)
    (headers,) = seen
    assert headers[b"content-type"] == b"application/json"
    assert b"inference-header-content-length" not in headers


@pytest.mark.parametrize(
    ("json_length", "extra", "message"),
    [
        (b"lots", b"", "Inference-Header-Content-Length: 'lots' for a body of"),
        (b"100000", b"", "Inference-Header-Content-Length: '100000' for a body of"),
        (b"0", b"", "Inference-Header-Content-Length: '0'"),
        (None, b"\x01\x02\x03", "3 bytes of binary data after the outputs"),
        (b"5", b"", "invalid JSON"),
    ],
)
def test_bad_binary_answers_are_bad_responses(
    json_length: bytes | None, extra: bytes, message: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        header, raw = binary_outputs([5.5, 6.5], [5, 6])
        writer.write(binary_response(header, raw + extra, json_length))
        await writer.drain()

    async def test(url: str) -> None:
        predictor = RemoteV2Predictor(url, timeout_s=2)
        try:
            with pytest.raises(UpstreamBadResponse, match=message):
                await predictor.predict(MATRIX)
        finally:
            await predictor.close()

    run(handler, test)


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
