"""The one HTTP server of the app, the drift detector and the webhook: uvicorn that drains.

``serve(app, host=..., port=..., settings=...)`` runs ``app`` under uvicorn (uvloop + httptools,
no access log, no websockets) with what plain uvicorn lacks:

- **Drain on SIGTERM** (and Ctrl-C). At once every ``GET .../ready`` answers 503 (liveness stays
  200) and the listener closes: a new connection is refused, which a client or load balancer
  retries elsewhere without having sent anything. The open connections are still served for up
  to ``drain_s``: each request received gets its answer, with ``Connection: close``, and the
  connection is closed after it (a FIN). A connection with no request under way is closed once
  it has been idle ``IDLE_GRACE_S`` and no byte waits in its socket (``FIONREAD``). Plain uvicorn
  closes every idle keep-alive connection at the first instant, even when the client's next
  request already sits unread in the socket, and the kernel answers those bytes with a reset.
  Then the app's lifespan shutdown runs and the process exits 0 (uvicorn re-raises the signal,
  which would end it with 143 or 130).
- **Read timeout.** A body that has not arrived ``read_timeout_s`` after the packet that
  completed its headers is overdue: if the endpoint is still reading it, ``read_body`` answers
  408 (``http_common.BODY_TIMED_OUT``) and the connection is closed after that answer; if the
  endpoint already answered, the connection is closed then. A client trickling a body that never
  ends holds a connection for ``read_timeout_s``, not for as long as it likes. The timer is armed
  only for a body that did not come with its headers, so the usual request pays nothing for it.
  Headers still incomplete ``read_timeout_s`` after their first byte get a 408 from the server
  itself, and a connection that never sends a byte is closed after the keep-alive timeout
  (both seen by a once-a-second look over the connections).

- **Hot POSTs answered in the protocol.** An app with ``hot_endpoints`` (path -> endpoint for
  POST, as ``serving.app.ServingApp``) whose endpoints have ``answer_sync(headers, body)``
  (``serving.hot.HotEndpoint``) gets those POSTs answered from the protocol's parser callbacks,
  without the ASGI task, its receive/send coroutines and message dicts, when the whole body came
  in the read that completed the request (or is already in hand for a pipelined one). Anything
  else goes through ASGI as before: a body still arriving after that read, ``Expect:
  100-continue``, HTTP/1.0, the access log on, a paused write side (a client not reading its
  answers), an endpoint that returns None (its predictor must be awaited), any other route. The
  answer is the same bytes uvicorn writes (its default headers, ``connection: close`` when the
  connection ends, always while draining), requests are answered in their order, and the drain,
  the keep-alive timer and the read timeouts see these requests as any other.

Kubernetes sends SIGTERM while the pod's endpoints are being removed; the Deployments' ``preStop``
sleep lets that finish first, and ``terminationGracePeriodSeconds`` covers the sleep plus
``drain_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import signal
import sys
import termios
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from winequality.http_common import (
    BODY_TIMED_OUT,
    JSON_HEADER,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from uvicorn._types import ASGI3Application

    from winequality.settings import HttpServerSettings

__all__ = [
    "ABANDON_S",
    "IDLE_GRACE_S",
    "DrainingProtocol",
    "DrainingServer",
    "SyncAnswer",
    "SyncEndpoint",
    "config",
    "serve",
    "sync_endpoints",
]

IDLE_GRACE_S: Final = 1.0
"""While draining, a connection idle this long (no byte waiting either) is closed: its client
is not about to send the next request of a busy keep-alive connection."""
ABANDON_S: Final = 1.0
"""After its read timeout, an endpoint that neither answers nor reads on is abandoned this much
later (the connection is closed)."""
_FINAL_GRACE_S: Final = 1
"""After ``drain_s``, what uvicorn still waits for requests in progress before cancelling them."""
_SWEEP_S: Final = 0.05
_NOT_READY: Final = b'{"status":"not ready","reason":"draining","error":"shutting down"}'
_CLOSE: Final = (b"connection", b"close")

_ERROR_500: Final = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)
"""uvicorn's answer when an app raises before answering."""

log = logging.getLogger(__name__)


class SyncAnswer(Protocol):
    """An answer computed in the protocol: sent as it is, then ``finish()`` (after-send work)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def finish(self) -> None: ...


class SyncEndpoint(Protocol):
    """A POST endpoint that can answer a request whose whole body is in hand, synchronously."""

    def answer_sync(
        self, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> SyncAnswer | None: ...


def sync_endpoints(app: object) -> dict[str, SyncEndpoint]:
    """The POST endpoints of ``app`` the protocol answers itself, by path (module docstring).

    Only through wrappers that change nothing these endpoints read: uvicorn's proxy headers
    (the client address and scheme) and the drain's (``connection: close``, which the protocol
    adds itself). Any other wrapper (uvicorn's trace-level message logger) keeps ASGI.
    """
    while isinstance(app, ProxyHeadersMiddleware | _DrainingApp):
        app = app.app
    hot: Mapping[str, object] = getattr(app, "hot_endpoints", None) or {}
    return {
        path: cast(SyncEndpoint, endpoint)
        for path, endpoint in hot.items()
        if callable(getattr(endpoint, "answer_sync", None))
    }


def serve(
    app: ASGIApp, *, host: str, port: int, settings: HttpServerSettings, log_level: str
) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C, then drain (module docstring); exit 3 when the port
    cannot be bound (as ``uvicorn.run``)."""
    server = DrainingServer(config(app, host, port, log_level), settings)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def config(app: ASGIApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    """The uvicorn configuration every service runs with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=DrainingProtocol,
        # No websocket routes: skip importing a websocket implementation (shorter cold start).
        ws="none",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=_FINAL_GRACE_S,
    )


class _State(ServerState):
    """uvicorn's state shared by the connections, plus the read timeout."""

    def __init__(self, read_timeout_s: float) -> None:
        super().__init__()
        self.read_timeout_s = read_timeout_s


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` that drains its connections on shutdown (module docstring)."""

    def __init__(self, config: uvicorn.Config, settings: HttpServerSettings) -> None:
        super().__init__(config)
        self.server_state = _State(settings.read_timeout_s)
        self.drain_s = settings.drain_s
        self.draining = False

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0:  # uvicorn ticks every 0.1 s: once a second
            now = asyncio.get_running_loop().time()
            for connection in list(self.server_state.connections):
                if isinstance(connection, DrainingProtocol):
                    connection.close_if_stalled(now)
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        await self.drain()
        await super().shutdown(sockets)

    async def drain(self) -> None:
        """Readiness false, the listener closed, then answer what arrives on the open
        connections until each is closed or ``drain_s`` is over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_s
        # One turn of the loop, while nothing has changed yet: the connections the kernel has
        # completed are accepted, not reset by closing the listener under them.
        await asyncio.sleep(0)
        # From here to the closed listener, no await: no client told "Connection: close" can
        # reconnect in between and be reset with the listener.
        self.draining = True
        # Existing connections keep their app object: swap it on each, and for any later one.
        draining_app = _DrainingApp(self.config.loaded_app)
        self.config.loaded_app = draining_app
        connections = self.server_state.connections
        for connection in connections:
            if isinstance(connection, DrainingProtocol):
                connection.app = draining_app
                cycle = connection.cycle
                if cycle is not None and not cycle.response_started:
                    cycle.keep_alive = False  # uvicorn then answers with Connection: close
        for server in self.servers:
            server.close()
        log.info("draining %d connection(s), at most %g s", len(connections), self.drain_s)
        while connections and not self.force_exit and loop.time() < deadline:
            now = loop.time()
            for connection in list(connections):
                if isinstance(connection, DrainingProtocol) and connection.idle_for(now) >= (
                    IDLE_GRACE_S
                ):
                    connection.close_if_nothing_waits()
            await asyncio.sleep(_SWEEP_S)
        if connections:
            log.warning("drain time over: closing %d connection(s)", len(connections))

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # Drained on SIGTERM (the orchestrator's stop) or Ctrl-C (the user's, which also stops
            # a bundled Triton): a clean exit, not the signal again.
            stops = (signal.SIGTERM, signal.SIGINT)
            self._captured_signals = [s for s in self._captured_signals if s not in stops]


class _DrainingApp:
    """The app while draining: readiness 503, every answer with ``Connection: close``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"].endswith("/ready"):
            headers = [JSON_HEADER, (b"content-length", b"%d" % len(_NOT_READY)), _CLOSE]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": _NOT_READY})
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        await self.app(scope, receive, send_closing)


class DrainingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that knows when it is idle and times out slow bodies."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_requests = 0
        self._idle_since = self.loop.time()
        self._began = math.inf
        """When the first byte of the latest request arrived."""
        self._timed: RequestResponseCycle | None = None
        """The request whose body timer is armed (one per request, at most)."""
        self._sync_posts = sync_endpoints(self.app)
        self._feeding = False
        """Inside ``data_received``: the parser's callbacks may still bring the body."""
        self._deferred: tuple[RequestResponseCycle, ASGI3Application, SyncEndpoint] | None = None
        """The hot request whose turn came before its body was parsed."""

    # -- idleness (for the drain) ------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._open_requests += 1
        self._began = self.loop.time()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, _HeadWithBody):
            cycle.transport.flush()  # a HEAD answer, or one without body bytes
        self._open_requests -= 1
        self._idle_since = self.loop.time()
        # uvicorn's, except the keep-alive timer: it armed one per answer (call_later) and
        # cancelled it at the next request, about 2 µs a request in uvloop, as much as
        # validating a wine. The server's once-a-second look closes a keep-alive connection
        # idle for ``timeout_keep_alive`` instead (``close_if_stalled``).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            next_cycle, app = self.pipeline.pop()
            self._start_asgi_task(next_cycle, app)

    def idle_for(self, now: float) -> float:
        """Seconds since the last answer with no request under way (0 when one is)."""
        cycle = self.cycle
        if self._open_requests > 0 or (cycle is not None and cycle.more_body):
            return 0.0
        return now - self._idle_since

    def close_if_nothing_waits(self) -> None:
        """Close (FIN) unless bytes wait unread in the socket: a request the loop will read."""
        if not self.transport.is_closing() and not _bytes_waiting(self.transport):
            self.transport.close()

    # -- read timeout ------------------------------------------------------------------------

    def close_if_stalled(self, now: float) -> None:
        """The server's once-a-second look: headers still incomplete ``read_timeout_s`` after
        the request's first byte get a 408 and the connection closed; a connection with no
        request under way (none yet, or its last one answered) is closed once it has been idle
        for uvicorn's keep-alive timeout (within a second more) and no byte waits in it."""
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and not cycle.response_complete):
            return  # an answer is under way: the body timer and the drain look after it
        if self._open_requests > 0:
            # A request began, and no cycle carries its scope yet: its headers are incomplete.
            timeout = cast(_State, self.server_state).read_timeout_s
            if (cycle is None or cycle.scope is not self.scope) and now - self._began >= timeout:
                self.transport.write(_headers_timeout(timeout))
                self.transport.close()
        elif now - self._idle_since >= self.timeout_keep_alive:
            self.close_if_nothing_waits()

    def data_received(self, data: bytes) -> None:
        self._feeding = True
        try:
            super().data_received(data)
        finally:
            self._feeding = False
        deferred = self._deferred
        if deferred is not None:  # the body goes on in a later read: the ASGI path reads it
            self._deferred = None
            self._start_task(deferred[0], deferred[1])
        cycle = self.cycle
        if cycle is not None and cycle.more_body and cycle is not self._timed:
            self._timed = cycle
            timeout = cast(_State, self.server_state).read_timeout_s
            if math.isfinite(timeout):
                self.loop.call_later(timeout, self._body_overdue, cycle)

    def _body_overdue(self, cycle: RequestResponseCycle) -> None:
        if not cycle.more_body or self.transport.is_closing():
            return
        cycle.keep_alive = False  # the stream stops mid-body: close after the answer
        if cycle.response_complete:
            self.transport.close()
            return
        if not cycle.response_started:
            cast(dict[str, Any], cycle.scope)[BODY_TIMED_OUT] = cast(
                _State, self.server_state
            ).read_timeout_s
            cycle.message_event.set()  # wakes read_body in receive(): it answers 408
            self.loop.call_later(ABANDON_S, self._abandon, cycle)

    # -- hot POSTs answered here (module docstring) -------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn calls this when a request's turn comes: at its headers, or when the answer
        # before it (pipelined) is complete.
        scope = cycle.scope
        endpoint = self._sync_posts.get(scope["path"]) if scope["method"] == "POST" else None
        if endpoint is None:
            self._start_task(cycle, app)
        elif not cycle.more_body:
            self._answer_here(cycle, app, endpoint)
        elif self._feeding and cycle is self.cycle:
            self._deferred = (cycle, app, endpoint)  # on_message_complete, in this read
        else:
            self._start_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        deferred = self._deferred
        if deferred is not None and deferred[0] is self.cycle:
            self._deferred = None
            self._answer_here(*deferred)

    def _start_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # A request parsed after the connection was closed by an answer of this same read is
        # never answered (uvicorn does not start pipelined requests on a closing transport).
        if not self.transport.is_closing():
            # What the app sends goes out through _HeadWithBody (one write per small answer).
            cycle.transport = _HeadWithBody(self.transport, cycle)  # type: ignore[assignment]
            super()._start_asgi_task(cycle, app)

    def _answer_here(
        self, cycle: RequestResponseCycle, app: ASGI3Application, endpoint: SyncEndpoint
    ) -> None:
        if self.transport.is_closing():
            return
        if (
            cycle.waiting_for_100_continue
            or cycle.scope["http_version"] != "1.1"
            or cycle.access_log
            or self.flow.write_paused
            or app is service_unavailable
        ):
            self._start_task(cycle, app)
            return
        try:
            answer = endpoint.answer_sync(cycle.scope["headers"], bytes(cycle.body))
        except Exception:
            # As uvicorn does for an app that raises: logged, a plain 500, the connection closed.
            log.exception("Exception in the protocol's answer to %s", cycle.scope["path"])
            cycle.response_started = cycle.response_complete = True
            cycle.keep_alive = False
            self.transport.write(_ERROR_500)
            self.transport.close()
            cycle.on_response()
            return
        if answer is None:
            self._start_task(cycle, app)
            return
        keep_alive = cycle.keep_alive and not isinstance(self.app, _DrainingApp)
        out = [STATUS_LINE[answer.status]]
        for name, value in cycle.default_headers:
            out += (name, b": ", value, b"\r\n")
        for name, value in answer.headers:
            out += (name, b": ", value, b"\r\n")
        out.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        out.append(answer.body)
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        self.transport.write(b"".join(out))
        if not keep_alive:
            cycle.keep_alive = False
            self.transport.close()
        # Before the next pipelined request is started (by on_response), so the metrics and
        # the payload log follow the requests' order.
        try:
            answer.finish()
        except Exception:
            # As uvicorn does for an app that raises after its answer: logged, connection closed
            # (raised here, it would reach the parser, which would answer a 400 after it).
            log.exception("Exception after the protocol's answer to %s", cycle.scope["path"])
            self.transport.close()
        cycle.on_response()

    def _abandon(self, cycle: RequestResponseCycle) -> None:
        if not cycle.response_started and not self.transport.is_closing():
            log.warning("closing a connection whose endpoint neither read its body nor answered")
            self.transport.close()


class _HeadWithBody:
    """The transport as one response cycle writes to it: the status line and headers wait for
    the first body bytes and go out with them, one send (and one TCP segment for a small
    answer) instead of two. What the cycle writes before its answer starts (``100 Continue``)
    and after the first body bytes passes straight through."""

    __slots__ = ("_cycle", "_done", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._done = False

    def write(self, data: bytes) -> None:
        if not self._done:
            if self._head is None:
                if self._cycle.response_started:  # uvicorn sets it, then writes the head
                    self._head = data
                    return
            else:
                data, self._head, self._done = self._head + data, None, True
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head, self._done = self._head, None, True
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _headers_timeout(timeout_s: float) -> bytes:
    message = f"the request headers did not arrive within {timeout_s:g} s (read timeout)"
    body = json.dumps({"detail": {"reason": "headers_timeout", "message": message}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def _bytes_waiting(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    count = bytearray(4)
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except OSError:
        return False
    return int.from_bytes(count, sys.byteorder) > 0
