"""RemoteV2Predictor when the V2 server is down, slow or answers nonsense (real sockets)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from winequality.contract import schema
from winequality.inference.predictor import (
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from winequality.inference.remote import RemoteV2Predictor
from winequality.process import free_port

pytestmark = pytest.mark.integration

MATRIX = np.array([[7.4, 0.7, 0.0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4, 0.0]], np.float32)


class _Handler(BaseHTTPRequestHandler):
    """Answers after ``delay`` seconds (or once ``released``) with ``status`` and ``body``, and
    keeps the method and path of each request in ``received``; set on the server class."""

    delay = 0.0
    status = 200
    body = b"{}"
    received: list[str]
    released: threading.Event

    def _answer(self) -> None:
        self.received.append(f"{self.command} {self.path}")
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.released.wait(self.delay)
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def received() -> list[str]:
    """The requests the ``http_server`` of the test received."""
    return []


@pytest.fixture
def http_server(request: pytest.FixtureRequest, received: list[str]) -> Iterator[str]:
    delay, status, body = request.param
    released = threading.Event()
    handler = type(
        "Handler",
        (_Handler,),
        {"delay": delay, "status": status, "body": body, "received": received,
         "released": released},
    )  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def call(url: str, timeout_s: float = 2.0, retries: int = 0) -> tuple[object, bool]:
    async def run() -> tuple[object, bool]:
        predictor = RemoteV2Predictor(url, timeout_s=timeout_s, retries=retries)
        try:
            ready = await predictor.ready()
            try:
                return await predictor.predict(MATRIX), ready
            except Exception as exc:
                return exc, ready
        finally:
            await predictor.close()

    return asyncio.run(run())


def test_nothing_listening_is_upstream_unavailable_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    error, ready = call(url, retries=2)
    assert isinstance(error, UpstreamUnavailable)
    assert url in str(error)
    assert ready is False
    assert time.monotonic() - started < 10


# Slower than any bound below: only the predictor's timeout can end the wait in time.
@pytest.mark.parametrize("http_server", [(60.0, 200, b"{}")], indirect=True)
def test_a_slow_server_is_upstream_timeout(http_server: str, received: list[str]) -> None:
    started = time.monotonic()
    error, ready = call(http_server, timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert isinstance(error, UpstreamTimeout)
    assert "did not answer within 0.3s" in str(error)
    assert ready is False
    # The readiness check and the inference, each given up after 0.3 s: not the server's 60 s.
    assert 2 * 0.3 * 0.9 <= elapsed < 2 * 0.3 + 5
    # Not retried: a timed-out request may have run. A retry was sent before the call returned
    # (a timeout ago), so it is seen by the time the two expected ones are.
    deadline = time.monotonic() + 10
    while len(received) < 2:
        assert time.monotonic() < deadline, f"the server saw only {received}"
        time.sleep(0.01)
    infer = f"POST /v2/models/{schema.MODEL_NAME}/infer"
    assert received == ["GET /v2/health/ready", infer]


@pytest.mark.parametrize("http_server", [(0.0, 500, b'{"error": "model exploded"}')], indirect=True)
def test_a_server_error_is_a_bad_response_with_its_message(http_server: str) -> None:
    error, ready = call(http_server)
    assert isinstance(error, UpstreamBadResponse)
    assert "500" in str(error)
    assert "model exploded" in str(error)
    assert ready is False


@pytest.mark.parametrize(
    "http_server", [(0.0, 200, b'{"outputs": [{"name": "quality", "data": [5.0]}]}')], indirect=True
)
def test_a_response_without_the_class_output_is_a_bad_response(http_server: str) -> None:
    error, ready = call(http_server)
    assert isinstance(error, UpstreamBadResponse)
    assert repr(schema.OUTPUT_CLASS) in str(error)
    assert ready is True
