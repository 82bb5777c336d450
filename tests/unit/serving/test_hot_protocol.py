"""The hot POSTs the project's server answers in its protocol (``http_server``, ``answer_sync``):
the real serving app under the real server on a loopback port, driven over raw sockets.

Which path answered is seen through ``DrainingProtocol._start_task`` (the only place an ASGI
task is started from), wrapped to count its calls around the real method.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.support.draining import RunningServer as Served
from tests.support.draining import closed_cleanly

from winequality.http_server import DrainingProtocol, DrainingServer, config
from winequality.process import free_port
from winequality.serving.app import create_app
from winequality.serving.routes.v2 import MODEL_PATH
from winequality.serving.schemas import example_wine
from winequality.settings import ServingSettings

MAX_BODY = 64_000
WINES = json.dumps({"wines": [example_wine("red")]}).encode()
V2_WINE = json.dumps(
    {
        "inputs": [
            {"name": k, "datatype": "FP32" if k != "wine_type" else "BYTES", "shape": [1, 1],
             "data": [v]}
            for k, v in example_wine("white").items()
        ]
    }
).encode()  # fmt: skip


class Collector:
    """A real HTTP server standing in for the drift detector: keeps every POST it receives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length", "0"))
                collector.received.append(str(self.headers).encode() + self.rfile.read(size))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def saw(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text.encode() in r for r in list(self.received)):
                return True
            time.sleep(0.05)
        return False


@pytest.fixture
def asgi_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that went through an ASGI task."""
    started: list[str] = []
    original = DrainingProtocol._start_task

    def recording(self: DrainingProtocol, cycle: Any, app: Any) -> None:
        started.append(cycle.scope["path"])
        original(self, cycle, app)

    monkeypatch.setattr(DrainingProtocol, "_start_task", recording)
    return started


@pytest.fixture
def serve(model_dir: Path, asgi_tasks: list[str]) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(**overrides: Any) -> Served:
        port = free_port()
        fields: dict[str, Any] = {
            "model_dir": model_dir,
            "max_batch_rows": 50,
            "max_body_bytes": MAX_BODY,
            "drain_s": 10.0,
            "read_timeout_s": 10.0,
            "feedback_db": model_dir.parent / f"feedback-{port}.sqlite",
        }
        settings = ServingSettings(**(fields | overrides), _env_file=None)  # type: ignore[call-arg]
        server = DrainingServer(
            config(create_app(settings), "127.0.0.1", port, "warning"), settings
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        served = Served(server, thread, port)
        started.append(served)
        deadline = time.monotonic() + 30
        while True:
            assert thread.is_alive(), "server thread died"
            assert time.monotonic() < deadline, "app did not become ready"
            try:
                with urllib.request.urlopen(served.url + "/health/ready", timeout=1) as r:
                    if r.status == 200:
                        asgi_tasks.clear()  # the probes
                        return served
            except OSError:
                time.sleep(0.02)

    yield start
    for served in started:
        for sock in served.sockets:
            sock.close()
        served.server.should_exit = True
    for served in started:
        served.thread.join(15)
        served.server.force_exit = True


_unread: dict[socket.socket, bytes] = {}


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer; what a read brought of the next ones is kept for the next call."""
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    size = int(headers["content-length"])
    while len(rest) < size:
        chunk = sock.recv(65536)
        assert chunk, "connection closed within an answer"
        rest += chunk
    _unread[sock] = rest[size:]
    return int(status_line.split()[1]), headers, rest[:size]


def read_interim(sock: socket.socket) -> bytes:
    """The head of an interim (1xx) answer; the answer that may follow in the same read is kept
    for ``read_response`` (a loaded machine sends both before the client reads)."""
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an interim answer: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    _unread[sock] = rest
    return head


def post(path: str, body: bytes, *headers: str, content_type: str = "application/json") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: t", f"content-length: {len(body)}", *headers]
    if content_type:
        lines.append(f"content-type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_hot_posts_on_a_keep_alive_connection_are_answered_without_an_asgi_task(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    served = serve()
    sock = served.connect()
    ids = set()
    for _ in range(3):
        sock.sendall(post("/predict", WINES, "x-request-id: caller-7"))
        status, headers, body = read_response(sock)
        answer = json.loads(body)
        assert status == 200
        assert headers["x-request-id"] == answer["request_id"]
        assert headers["x-correlation-id"] == "caller-7"
        assert headers["content-type"] == "application/json"
        assert "date" in headers
        assert "server" in headers
        assert "connection" not in headers
        assert 0 <= answer["predictions"][0]["quality"] <= 10
        ids.add(answer["request_id"])
    sock.sendall(post(f"{MODEL_PATH}/infer", V2_WINE, "x-request-id: bad id!"))
    status, headers, body = read_response(sock)
    assert status == 200
    assert "x-correlation-id" not in headers  # not a sane token: not echoed
    assert [o["name"] for o in json.loads(body)["outputs"]] == ["quality", "quality_class"]
    assert len(ids) == 3
    assert asgi_tasks == []
    assert served.metric("winequality_http_requests_total", 'route="/predict"', 'status="200"') == 3


def test_pipelined_requests_of_both_paths_are_answered_in_order(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    served = serve()
    sock = served.connect()
    sock.sendall(
        post("/predict", WINES)
        + b"GET /health/live HTTP/1.1\r\nhost: t\r\n\r\n"
        + post("/predict", b'{"wines": [{"alcohol": 9.5}]}')
        + post(f"{MODEL_PATH}/infer", V2_WINE)
        + b"GET /metadata HTTP/1.1\r\nhost: t\r\n\r\n"
        + post("/predict", WINES, content_type="text/plain")
    )
    answers = [read_response(sock) for _ in range(6)]
    assert [status for status, _, _ in answers] == [200, 200, 422, 200, 200, 415]
    assert "predictions" in json.loads(answers[0][2])
    assert json.loads(answers[1][2]) == {"status": "alive"}
    assert "outputs" in json.loads(answers[3][2])
    assert "model" in json.loads(answers[4][2])
    assert asgi_tasks == ["/health/live", "/metadata"]


def test_a_body_split_across_several_writes_is_read_and_the_connection_kept(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    served = serve()
    sock = served.connect()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = post("/predict", WINES)
    head_end = request.index(b"\r\n\r\n") + 4
    sock.sendall(request[: head_end - 7])
    time.sleep(0.05)
    sock.sendall(request[head_end - 7 : head_end + 10])
    # Had the server read this piece and the last one together, the whole body would have come
    # with the headers and been answered in the protocol: the last piece waits until this one
    # has gone to ASGI.
    deadline = time.monotonic() + 10
    while asgi_tasks != ["/predict"]:
        assert time.monotonic() < deadline, f"the headers did not start an ASGI task: {asgi_tasks}"
        time.sleep(0.01)
    sock.sendall(request[head_end + 10 :])
    status, _, body = read_response(sock)
    assert status == 200
    assert "predictions" in json.loads(body)
    sock.sendall(post("/predict", WINES))  # the next one, whole, in one write
    assert read_response(sock)[0] == 200
    assert asgi_tasks == ["/predict"]  # only the split body went through ASGI


def test_refusals_are_the_asgi_paths_answers(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    served = serve()
    sock = served.connect()
    sock.sendall(post("/predict", WINES, content_type="text/plain"))
    status, headers, body = read_response(sock)
    assert status == 415
    assert b"unsupported_media_type" in body
    assert "x-request-id" in headers
    wine = example_wine("red") | {"ph": "acid"}
    sock.sendall(post("/predict", json.dumps({"wines": [wine]}).encode()))
    status, _, body = read_response(sock)
    assert status == 422
    assert "ph" in body.decode()
    sock.sendall(post("/predict", b"{not json"))
    assert read_response(sock)[0] == 422
    # Too large, announced, the body in the same write: refused as soon as it is read.
    big = b"x" * (MAX_BODY + 1)
    sock.sendall(post("/predict", big))
    status, _, body = read_response(sock)
    assert (status, b"body_too_large" in body) == (413, True)
    assert asgi_tasks == []
    # Too large, announced, no body yet: refused at the headers, through ASGI.
    request = post("/predict", big)
    sock.sendall(request[: len(request) - len(big)])
    status, _, body = read_response(sock)
    assert (status, b"body_too_large" in body) == (413, True)
    sock.sendall(big + post("/predict", WINES))  # the body is read and dropped
    assert read_response(sock)[0] == 200
    assert asgi_tasks == ["/predict"]
    assert served.metric("winequality_http_errors_total", "body_too_large") == 2
    assert served.metric("winequality_http_errors_total", "unsupported_media_type") == 1


def test_answers_of_both_paths_are_logged_and_remembered(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    collector = Collector()
    try:
        served = serve(detector_url=collector.url, payload_batch_max=1)
        sock = served.connect()
        sock.sendall(post("/predict", WINES))
        fast = json.loads(read_response(sock)[2])["request_id"]
        sock.sendall(post("/predict", WINES, "expect: 100-continue"))  # through ASGI
        assert read_interim(sock).startswith(b"HTTP/1.1 100 Continue")
        slow = json.loads(read_response(sock)[2])["request_id"]
        assert asgi_tasks == ["/predict"]
        assert collector.saw(fast)
        assert collector.saw(slow)
        state = served.server.config.loaded_app.app.state.serving
        assert fast in state.recent
        assert slow in state.recent
    finally:
        collector.server.shutdown()
        collector.server.server_close()


def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    served = serve()
    sock = served.connect()
    sock.sendall(post("/predict", WINES, "connection: close"))
    status, headers, _ = read_response(sock)
    assert (status, headers["connection"]) == (200, "close")
    assert closed_cleanly(sock)
    sock = served.connect()
    sock.sendall(post("/predict", WINES).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    status, headers, _ = read_response(sock)
    assert (status, headers["connection"]) == (200, "close")
    assert closed_cleanly(sock)
    assert asgi_tasks == ["/predict"]  # HTTP/1.0 goes through ASGI


def test_while_draining_hot_posts_are_answered_with_connection_close(
    serve: Callable[..., Served], asgi_tasks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle connection is reused after the drain began: on a slow machine it could be idle
    # for the real grace (1 s) by then, and closed before its requests are sent.
    monkeypatch.setattr("winequality.http_server.IDLE_GRACE_S", 30.0)
    served = serve()
    idle, midway = served.connect(), served.connect()
    for sock in (idle, midway):
        sock.sendall(post("/predict", WINES))
        assert read_response(sock)[0] == 200
    request = post("/predict", WINES)
    midway.sendall(request[:-5])  # in flight: its body still coming when the drain begins
    time.sleep(0.1)
    served.begin_drain()
    midway.sendall(request[-5:])
    status, headers, _ = read_response(midway)
    assert (status, headers["connection"]) == (200, "close")
    assert closed_cleanly(midway)
    idle.sendall(post("/predict", WINES) + post("/predict", WINES))  # pipelined, after the drain
    status, headers, body = read_response(idle)
    assert (status, headers["connection"]) == (200, "close")
    assert "predictions" in json.loads(body)
    assert closed_cleanly(idle)  # the second request is never answered: the first one closed
    assert asgi_tasks == ["/predict"]


def test_with_a_remote_predictor_hot_posts_go_through_asgi(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    upstream = serve()
    proxy = serve(backend="remote", remote_url=upstream.url)
    sock = proxy.connect()
    sock.sendall(post("/predict", WINES) + post(f"{MODEL_PATH}/infer", V2_WINE))
    answers = [read_response(sock) for _ in range(2)]
    assert [status for status, _, _ in answers] == [200, 200]
    direct = upstream.connect()
    direct.sendall(post("/predict", WINES))
    ours = json.loads(answers[0][2])["predictions"]
    assert ours == json.loads(read_response(direct)[2])["predictions"]
    # The proxy's two requests went through ASGI; the upstream answered its V2 calls and the
    # direct /predict in the protocol.
    assert asgi_tasks.count("/predict") == 1
    assert asgi_tasks.count(f"{MODEL_PATH}/infer") == 1


def test_a_hot_body_that_never_finishes_gets_the_408_of_the_asgi_path(
    serve: Callable[..., Served], asgi_tasks: list[str]
) -> None:
    served = serve(read_timeout_s=0.5)
    sock = served.connect()
    request = post("/predict", WINES)
    sock.sendall(request[:-10])
    start = time.monotonic()
    status, _, body = read_response(sock)
    assert (status, b"body_timeout" in body) == (408, True)
    # The configured 0.5 s, not the 10 s read timeout of the fixture's settings.
    assert 0.45 <= time.monotonic() - start < 0.5 + 5
    assert closed_cleanly(sock)
    assert asgi_tasks == ["/predict"]
