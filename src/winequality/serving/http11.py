"""A lean HTTP/1.1 client for the app's two outgoing hot paths: V2 inference and payload logging.

Profiling the app in ``remote`` mode showed httpx (URL and header models, h11, anyio's
cancellation scopes, the connection pool's locks) costing about five times the app's own work per
proxied request: ~1 ms of CPU for a one-wine request on this machine, and as much per CloudEvent
for the payload logger, on the same event loop as the predictions. ``LeanHttpClient`` speaks
HTTP/1.1 directly on asyncio over keep-alive connections: each request is written in one piece and
the response parsed by httptools (the parser uvicorn already uses, chunked bodies included).
It only POSTs to one origin; everything else keeps httpx.

Failures are typed for the callers to map: ``UnreachableError`` (connection refused or failed,
retried ``retries`` times since nothing was sent), ``NoAnswerError`` (nothing within
``timeout_s``; the connection is dropped so a late answer cannot be mistaken for the next one),
``ConnectionDroppedError`` (closed before the answer was complete) and ``InvalidResponseError``.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

import httptools


class HttpClientError(Exception):
    """Base of the failures of ``LeanHttpClient.post``."""


class UnreachableError(HttpClientError):
    """No connection could be made."""


class NoAnswerError(HttpClientError):
    """The server did not answer within the timeout."""


class InvalidResponseError(HttpClientError):
    """The server answered with something that is not HTTP/1.x."""


class ConnectionDroppedError(HttpClientError):
    """The server closed the connection before the response was complete."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (HTTP/1.1 without pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._received = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponseError(f"invalid HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionDroppedError(str(exc) if exc else "connection closed"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        waiter, body = self._waiter, b"".join(self._body)
        self._waiter, self._body = None, []
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), body))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    @property
    def received_anything(self) -> bool:
        return self._received

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._received = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAlivePool:
    """Idle keep-alive connections to one ``host:port``, at most ``max_idle`` kept."""

    def __init__(self, base_url: str, max_idle: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"LeanHttpClient speaks plain http://host:port, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc
        self.max_idle = max_idle
        self._idle: list[_Connection] = []

    async def connect(self) -> _Connection:
        _, protocol = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port
        )
        return protocol

    def take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    def give_back(self, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive or len(self._idle) >= self.max_idle:
            connection.close()
        else:
            self._idle.append(connection)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class LeanHttpClient:
    """POSTs to one origin over at most ``max_connections`` keep-alive connections."""

    def __init__(
        self, base_url: str, *, timeout_s: float, retries: int = 2, max_connections: int = 32
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self._pool = KeepAlivePool(self.base_url, max_connections)
        self._slots = asyncio.Semaphore(max_connections)
        self._host = f"Host: {self._pool.host_header}\r\n".encode()

    def head(self, path: str, content_type: str | None = "application/json") -> bytes:
        """The constant start of a POST to ``path``: prepare it once, pass it to ``post``."""
        line = f"POST {self._pool.prefix}{path} HTTP/1.1\r\n".encode() + self._host
        if content_type is None:
            return line
        return line + f"Content-Type: {content_type}\r\n".encode()

    async def post(self, head: bytes, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of POSTing ``body``; ``headers`` are extra CRLF-terminated lines."""
        request = b"%b%bContent-Length: %d\r\n\r\n%b" % (head, headers, len(body), body)
        attempts = self.retries + 1
        async with self._slots:
            for attempt in range(attempts):
                connection = self._pool.take_idle()
                reused = connection is not None
                if connection is None:
                    try:
                        async with asyncio.timeout(self.timeout_s):
                            connection = await self._pool.connect()
                    except (OSError, TimeoutError) as exc:
                        if attempt + 1 < attempts:
                            continue
                        raise UnreachableError(f"{type(exc).__name__}: {exc}") from exc
                try:
                    async with asyncio.timeout(self.timeout_s):
                        status, content = await connection.send(request)
                except TimeoutError as exc:
                    connection.close()
                    raise NoAnswerError(f"no answer within {self.timeout_s:g}s") from exc
                except ConnectionDroppedError:
                    # An idle connection the server had already closed: nothing was processed.
                    if reused and not connection.received_anything and attempt + 1 < attempts:
                        continue
                    raise
                except BaseException:
                    connection.close()
                    raise
                self._pool.give_back(connection)
                return status, content
        raise AssertionError("unreachable: every attempt returns or raises")

    def close(self) -> None:
        self._pool.close()
