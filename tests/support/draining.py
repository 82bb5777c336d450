"""A ``DrainingServer`` running in a thread of the test, as the HTTP-server tests drive it: raw
sockets to it, the drain begun as SIGTERM begins it, its metrics read back."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from winequality.http_server import DrainingServer


class RunningServer:
    def __init__(self, server: DrainingServer, thread: threading.Thread, port: int) -> None:
        self.server, self.thread, self.port = server, thread, port
        self.sockets: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sockets.append(sock)
        return sock

    def begin_drain(self) -> None:
        """What SIGTERM does (uvicorn's handler sets the flag), then wait for the drain."""
        self.server.should_exit = True
        deadline = time.monotonic() + 5
        while not self.server.draining:
            assert time.monotonic() < deadline, "the drain did not start"
            time.sleep(0.01)

    def metric(self, name: str, *labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (from ``/metrics``)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and all(label in line for label in labels)
        )


def closed_cleanly(sock: socket.socket) -> bool:
    """The server closed with a FIN (recv gives b""); a reset raises ConnectionResetError."""
    return sock.recv(1) == b""
