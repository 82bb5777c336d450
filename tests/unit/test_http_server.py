"""The project's HTTP server (``http_server``), run in a thread on a loopback port with a small
app, driven over raw sockets: the drain and the read timeout."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tests.support.draining import RunningServer as Running
from tests.support.draining import closed_cleanly

from winequality.http_common import BodyError, read_request_body
from winequality.http_server import ABANDON_S, IDLE_GRACE_S, DrainingServer, _bytes_waiting, config
from winequality.process import free_port
from winequality.settings import HttpServerSettings


def small_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(0.5)
        return {"status": "done"}

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        try:
            body = await read_request_body(request, 10_000, media_types=None)
        except BodyError as exc:
            return JSONResponse({"reason": exc.reason, "message": exc.message}, exc.status)
        return JSONResponse({"bytes": len(body)})

    @app.post("/ignore")
    async def ignore() -> dict[str, str]:
        return {"status": "not read"}

    @app.post("/stall")
    async def stall() -> dict[str, str]:
        await asyncio.sleep(30)
        return {"status": "late"}

    return app


@pytest.fixture
def long_idle_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a test that reuses, after the drain began, a connection answered before it: on a slow
    machine it could have been idle for the real grace (1 s) by then, and be closed first."""
    monkeypatch.setattr("winequality.http_server.IDLE_GRACE_S", 30.0)


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(
        drain_s: float = 10.0, read_timeout_s: float = 10.0, keep_alive_s: int = 5
    ) -> Running:
        port = free_port()
        settings = HttpServerSettings(drain_s=drain_s, read_timeout_s=read_timeout_s)
        uvicorn_config = config(small_app(), "127.0.0.1", port, "warning")
        uvicorn_config.timeout_keep_alive = keep_alive_s
        server = DrainingServer(uvicorn_config, settings)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "server thread died"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        running = Running(server, thread, port)
        started.append(running)
        return running

    yield start
    for running in started:
        for sock in running.sockets:
            sock.close()
        running.server.should_exit = running.server.force_exit = True
        running.thread.join(10)


def request(method: str, path: str, body: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return f"{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {size}\r\n\r\n".encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


# --- drain -----------------------------------------------------------------------------------


def test_a_request_sent_on_an_open_connection_after_the_drain_began_is_answered(
    serve: Callable[..., Running], long_idle_grace: None
) -> None:
    running = serve()
    sock = running.connect()
    sock.sendall(request("GET", "/health/live"))
    status, headers, _ = read_response(sock)
    assert status == 200
    assert "connection" not in headers  # kept alive
    running.begin_drain()
    sock.sendall(request("GET", "/health/live"))
    status, headers, _ = read_response(sock)
    assert status == 200
    assert headers["connection"] == "close"
    assert closed_cleanly(sock)


def test_a_request_in_progress_when_the_drain_begins_is_answered_with_connection_close(
    serve: Callable[..., Running],
) -> None:
    running = serve()
    sock = running.connect()
    sock.sendall(request("GET", "/slow"))
    time.sleep(0.1)
    running.begin_drain()
    status, headers, body = read_response(sock)
    assert (status, json.loads(body)) == (200, {"status": "done"})
    assert headers["connection"] == "close"
    assert closed_cleanly(sock)


def test_readiness_is_503_while_draining_liveness_200_and_new_connections_are_refused(
    serve: Callable[..., Running], long_idle_grace: None
) -> None:
    running = serve()
    ready, live, busy = running.connect(), running.connect(), running.connect()
    for sock in (ready, live):
        sock.sendall(request("GET", "/health/ready"))
        assert read_response(sock)[0] == 200
    busy.sendall(request("GET", "/slow"))  # keeps the server draining while we look
    running.begin_drain()
    ready.sendall(request("GET", "/health/ready"))
    status, headers, body = read_response(ready)
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["reason"] == "draining"
    live.sendall(request("GET", "/health/live"))
    assert read_response(live)[0] == 200
    with pytest.raises(ConnectionRefusedError):
        running.connect()
    assert read_response(busy)[0] == 200


def test_an_idle_connection_is_closed_cleanly_after_the_grace_and_the_server_exits_early(
    serve: Callable[..., Running],
) -> None:
    running = serve(drain_s=30)
    sock = running.connect()
    sock.sendall(request("GET", "/health/live"))
    read_response(sock)
    answered = time.monotonic()
    running.begin_drain()
    assert closed_cleanly(sock)
    assert time.monotonic() - answered >= IDLE_GRACE_S * 0.9
    running.thread.join(10)
    assert not running.thread.is_alive()
    assert time.monotonic() - answered < 10  # not the 30 s of drain_s


def test_bytes_waiting_in_a_socket_are_seen() -> None:
    async def check() -> tuple[bool, bool]:
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
        transport.pause_reading()  # the bytes stay in the socket, as for a request not yet read
        before = _bytes_waiting(transport)
        theirs.sendall(b"GET / HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.05)
        after = _bytes_waiting(transport)
        transport.close()
        theirs.close()
        return before, after

    assert asyncio.run(check()) == (False, True)


# --- read timeout ----------------------------------------------------------------------------


def test_a_body_that_never_finishes_gets_a_408_in_time_and_its_connection_is_closed(
    serve: Callable[..., Running],
) -> None:
    running = serve(read_timeout_s=0.5)
    sock = running.connect()
    start = time.monotonic()
    sock.sendall(request("POST", "/echo", b'{"wines"', length=1000))
    status, headers, body = read_response(sock)
    elapsed = time.monotonic() - start
    assert status == 408
    assert json.loads(body)["reason"] == "body_timeout"
    assert "0.5 s" in json.loads(body)["message"]
    assert 0.45 <= elapsed < 0.5 + 5  # not the fixture's default of 10 s
    assert headers["connection"] == "close"
    assert closed_cleanly(sock)


def test_a_body_arriving_in_pieces_within_the_timeout_is_read_and_the_connection_kept(
    serve: Callable[..., Running],
) -> None:
    running = serve(read_timeout_s=1.0)
    sock = running.connect()
    sock.sendall(request("POST", "/echo", b"x" * 10, length=20))
    time.sleep(0.2)
    sock.sendall(b"y" * 10)
    status, _, body = read_response(sock)
    assert (status, json.loads(body)) == (200, {"bytes": 20})
    time.sleep(1.0)  # past the first request's deadline: its timer must not touch the next one
    sock.sendall(request("POST", "/echo", b"z" * 5))
    assert read_response(sock)[0] == 200


def test_a_connection_answered_before_its_body_ended_is_closed_at_the_read_timeout(
    serve: Callable[..., Running],
) -> None:
    # A keep-alive timeout far off: the connection (its answer given) must be closed by the
    # read timeout, not by the keep-alive look.
    running = serve(read_timeout_s=0.5, keep_alive_s=30)
    sock = running.connect()
    start = time.monotonic()
    sock.sendall(request("POST", "/ignore", b"abc", length=10_000))
    assert read_response(sock)[0] == 200
    assert closed_cleanly(sock)
    assert 0.45 <= time.monotonic() - start < 0.5 + 5


def test_an_endpoint_that_neither_reads_nor_answers_is_abandoned_after_the_timeout(
    serve: Callable[..., Running],
) -> None:
    running = serve(read_timeout_s=0.5)
    sock = running.connect()
    start = time.monotonic()
    sock.sendall(request("POST", "/stall", b"abc", length=10_000))
    assert closed_cleanly(sock)
    # Well before the endpoint's own 30 s (and the socket's 10 s timeout).
    assert 0.5 + ABANDON_S * 0.9 <= time.monotonic() - start < 0.5 + ABANDON_S + 5


def test_headers_that_never_finish_get_a_408_and_the_connection_is_closed(
    serve: Callable[..., Running],
) -> None:
    running = serve(read_timeout_s=0.5)
    sock = running.connect()
    start = time.monotonic()
    sock.sendall(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-le")
    status, headers, body = read_response(sock)
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(body)["detail"]["reason"] == "headers_timeout"
    assert closed_cleanly(sock)
    # A look once a second; well before the socket's 10 s timeout.
    assert 0.5 <= time.monotonic() - start < 0.5 + 1 + 5


def test_a_connection_that_never_sends_a_byte_is_closed_after_the_keep_alive_timeout(
    serve: Callable[..., Running],
) -> None:
    running = serve(keep_alive_s=1)
    sock = running.connect()
    start = time.monotonic()
    assert closed_cleanly(sock)
    # A look once a second, with room for a late one, and still before uvicorn's default
    # keep-alive timeout (5 s) would close it.
    assert 1 <= time.monotonic() - start < 4.5


def test_a_keep_alive_connection_idle_after_its_answers_is_closed_after_the_timeout(
    serve: Callable[..., Running],
) -> None:
    # No timer per answer (uvicorn armed and cancelled one each time): the once-a-second look
    # closes it, and a connection kept busy meanwhile stays open.
    running = serve(keep_alive_s=1)
    idle, busy = running.connect(), running.connect()
    for sock in (idle, busy):
        sock.sendall(request("GET", "/health/live"))
        assert read_response(sock)[0] == 200
    start = time.monotonic()
    while time.monotonic() - start < 2.5:
        if time.monotonic() - start < 0.8:  # not closed before the timeout (nothing to read)
            assert select.select([idle], [], [], 0)[0] == []
        busy.sendall(request("GET", "/health/live"))
        assert read_response(busy)[0] == 200
        time.sleep(0.2)
    idle.settimeout(1.5)  # closed within a second of the timeout (the look's period)
    assert closed_cleanly(idle)
    busy.sendall(request("GET", "/health/live"))
    assert read_response(busy)[0] == 200


# --- one send per answer ---------------------------------------------------------------------


class RecordingTransport:
    """What a response cycle's writes reach the socket as (one entry per send)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Cycle:
    response_started = False


def test_the_head_of_an_answer_goes_out_with_its_first_body_bytes() -> None:
    from winequality.http_server import _HeadWithBody

    transport, cycle = RecordingTransport(), Cycle()
    wrapped = _HeadWithBody(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the answer: at once
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert len(transport.writes) == 1
    wrapped.write(b"body")
    wrapped.write(b"more")
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]


def test_a_head_without_body_bytes_is_written_when_the_answer_completes_or_closes() -> None:
    from winequality.http_server import _HeadWithBody

    transport, cycle = RecordingTransport(), Cycle()
    cycle.response_started = True
    wrapped = _HeadWithBody(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    wrapped.close()
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert transport.closed


def test_head_requests_and_100_continue_are_answered_through_the_server(
    serve: Callable[..., Running],
) -> None:
    running = serve()
    sock = running.connect()
    sock.sendall(b"HEAD /health/live HTTP/1.1\r\nhost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 ")
    assert b"content-length:" in data.lower()
    # Expect: 100-continue: the client sends its body only once told to.
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
    )
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += sock.recv(65536)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(b"hello")
    status, _, body = read_response(sock)
    assert (status, json.loads(body)) == (200, {"bytes": 5})
