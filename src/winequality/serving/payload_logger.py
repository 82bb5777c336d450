"""Payload logging: every answered prediction goes to the drift detector as CloudEvents.

The events are the ones Seldon's request logger sends (binary HTTP mode: ``Ce-*`` headers, the
payload as the body), so the detector cannot tell our app from a SeldonDeployment ``logger``.

The request path only calls ``PayloadLogger.log``: one ``put_nowait`` of bytes it already holds
on a bounded queue. A single background task drains the queue over one keep-alive connection and
sends, per logged request, the request event and then the response event. The client is aiohttp,
not httpx: delivery runs on the event loop that serves predictions, and httpx cost ~0.8 ms of CPU
per event there against ~0.2 ms for aiohttp (two events per request halved the single-connection
throughput with httpx). Nothing here can fail or slow a prediction: when the queue is full
(detector slow) or a delivery fails (detector down, refusing), the event is dropped and counted in
``winequality_payloads_dropped_total{reason}``; delivery simply resumes when the detector answers
again. After a failed connection the worker waits a short, growing pause (events meanwhile wait
in the queue, and overflow is counted) instead of hammering a dead address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from winequality.inference.features import Matrix

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

log = logging.getLogger(__name__)

SPEC_VERSION: Final = "1.0"
CE_REQUEST: Final = "io.seldon.serving.inference.request"
CE_RESPONSE: Final = "io.seldon.serving.inference.response"
DROP_REASONS: Final = ("queue_full", "unreachable", "timeout", "rejected")
"""Why events are dropped: queue overflow, connection failure, no answer in time, a non-2xx."""

BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0
DEFAULT_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Exchange:
    """One answered request as queued: what the endpoint had in hand, nothing re-encoded."""

    request_id: str
    model_name: str
    received_at: float
    request: bytes | Matrix
    """The JSON request body, or the model matrix when the body was not plain JSON (V2 binary
    tensors), encoded as a V2 JSON request by the worker, off the request path."""
    response: bytes


class PayloadMetrics:
    """Sent and dropped event counters, registered in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "winequality_payloads_sent",
            "CloudEvents delivered to the drift detector, by kind (request, response).",
            ["type"],
            registry=registry,
        )
        self.dropped = Counter(
            "winequality_payloads_dropped",
            "CloudEvents not delivered to the drift detector, by reason.",
            ["reason"],
            registry=registry,
        )
        # Bound once: the request path must not pay for label lookups.
        self.sent_request = self.sent.labels("request")
        self.sent_response = self.sent.labels("response")
        self.drop = {reason: self.dropped.labels(reason) for reason in DROP_REASONS}


def ce_time(timestamp: float) -> str:
    """RFC 3339 timestamp, as the CloudEvents ``time`` attribute requires."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def event_headers(kind: str, exchange: Exchange, source: str) -> dict[str, str]:
    """The binary-mode CloudEvent headers Seldon's request logger sets."""
    return {
        "ce-id": uuid.uuid4().hex,
        "ce-specversion": SPEC_VERSION,
        "ce-source": source,
        "ce-type": kind,
        "ce-time": ce_time(exchange.received_at),
        "ce-requestid": exchange.request_id,
        "ce-modelid": exchange.model_name,
        "content-type": "application/json",
    }


def request_payload(request: bytes | Matrix) -> bytes:
    if isinstance(request, bytes):
        return request
    # Imported here: only V2 binary-tensor requests need it.
    from winequality.inference.remote import encode_request

    return encode_request(np.asarray(request))


class PayloadLogger:
    """Bounded queue + one delivery task; ``start``/``stop`` belong in the app lifespan."""

    def __init__(
        self,
        detector_url: str,
        queue_size: int,
        registry: CollectorRegistry,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        source: str | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"payload_queue_size must be >= 1, got {queue_size}")
        self.url = detector_url.rstrip("/")
        self.timeout_s = timeout_s
        self.source = source or f"winequality-app/{socket.gethostname()}"
        self.metrics = PayloadMetrics(registry)
        self._queue: asyncio.Queue[Exchange] = asyncio.Queue(queue_size)
        self._queue_full = self.metrics.drop["queue_full"]
        self._session: aiohttp.ClientSession | None = None
        self._endpoint: URL  # set by start(), with the session
        self._reachable = True
        self._task: asyncio.Task[None] | None = None

    def log(self, exchange: Exchange) -> None:
        """Queue an answered request; never blocks, never raises (a full queue drops it)."""
        try:
            self._queue.put_nowait(exchange)
        except asyncio.QueueFull:
            # Two events (request and response) are lost with it.
            self._queue_full.inc(2)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        # Imported here, like in _post: aiohttp adds ~0.2 s to the app's start-up, only worth
        # paying when a detector is configured.
        import aiohttp
        from yarl import URL

        # Parsed once: yarl keeps the parsed form, aiohttp would re-parse a str per event.
        self._endpoint = URL(self.url + "/")
        # One connection: events go out in order, one at a time, from the one worker task.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="payload-logger")

    async def stop(self) -> None:
        """Stop delivering (what is still queued is not waited for) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            exchange = await self._queue.get()
            try:
                delivered = await self._deliver(exchange)
            except Exception:  # the logger must outlive any surprise, but say what it was
                log.exception("payload logging failed for request %s", exchange.request_id)
                self.metrics.drop["rejected"].inc(2)
                delivered = True
            if delivered:
                if not self._reachable:
                    log.info("drift detector %s answers again; payload logging resumed", self.url)
                self._reachable, backoff = True, BACKOFF_MIN_S
            else:
                if self._reachable:
                    log.warning(
                        "drift detector %s slow or unreachable: dropping payloads until it answers",
                        self.url,
                    )
                self._reachable = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _deliver(self, exchange: Exchange) -> bool:
        """Send both events; False when the detector could not be reached (back off)."""
        body = request_payload(exchange.request)
        for kind, payload, sent in (
            (CE_REQUEST, body, self.metrics.sent_request),
            (CE_RESPONSE, exchange.response, self.metrics.sent_response),
        ):
            reason = await self._post(kind, exchange, payload)
            if reason is None:
                sent.inc()
                continue
            # The response event is not worth sending once the request event is lost.
            self.metrics.drop[reason].inc(2 if kind == CE_REQUEST else 1)
            return reason not in ("unreachable", "timeout")
        return True

    async def _post(self, kind: str, exchange: Exchange, payload: bytes) -> str | None:
        """None when delivered, else the drop reason."""
        assert self._session is not None, "PayloadLogger.start() was not awaited"
        import aiohttp  # already loaded by start(): a sys.modules lookup

        headers = event_headers(kind, exchange, self.source)
        try:
            async with self._session.post(self._endpoint, data=payload, headers=headers) as reply:
                status, answer = reply.status, await reply.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            log.debug("drift detector %s unreachable: %s", self.url, exc)
            return "unreachable"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientResponseError as exc:
            log.warning("drift detector %s answered nonsense: %s", self.url, exc.message)
            return "rejected"
        except aiohttp.ClientError as exc:
            # Not retried: the detector may have counted the rows before the connection dropped.
            log.debug("drift detector %s dropped the connection: %s", self.url, exc)
            return "unreachable"
        if not 200 <= status < 300:
            log.warning(
                "drift detector refused a %s event (%d): %s",
                kind,
                status,
                answer[:300].decode(errors="replace"),
            )
            return "rejected"
        return None
