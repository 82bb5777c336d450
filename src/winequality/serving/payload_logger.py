"""Payload logging: every answered prediction goes to the drift detector as CloudEvents.

Two content modes of the CloudEvents HTTP binding, chosen by ``payload_batch_max``:

* batched (the default, ``batch_max > 1``): one POST carries many events as a JSON array of
  structured-mode events (``application/cloudevents-batch+json``). The worker waits a short
  linger after the first queued request so one POST carries many; at one connection the ~0.2 ms
  of CPU a POST costs then lands on about one prediction in a hundred instead of on every one
  (the app has one core: a send runs between two predictions).
* binary (``batch_max == 1``): one POST per event, ``Ce-*`` headers and the payload as body,
  exactly what Seldon's request logger sends.

Either way each event carries Seldon's attributes (``requestid``, ``modelid``; as ``Ce-*``
headers or as extension attributes), so the detector cannot tell our app from a
SeldonDeployment ``logger``.

The request path only calls ``PayloadLogger.log``: one ``put_nowait`` of bytes it already holds
on a bounded queue. A single background task drains the queue over one keep-alive connection.
The client is aiohttp, not httpx: delivery runs on the event loop that serves predictions, and
httpx cost ~0.8 ms of CPU per POST there against ~0.2 ms for aiohttp. Nothing here can fail or
slow a prediction: when the queue is full (detector slow) or a delivery fails (detector down,
refusing), the events are dropped and counted per event in
``winequality_payloads_dropped_total{reason}``; delivery simply resumes when the detector
answers again. After a failed connection the worker waits a short, growing pause (events
meanwhile wait in the queue, and overflow is counted) instead of hammering a dead address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter

from winequality.inference.features import Matrix

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

log = logging.getLogger(__name__)

SPEC_VERSION: Final = "1.0"
CE_REQUEST: Final = "io.seldon.serving.inference.request"
CE_RESPONSE: Final = "io.seldon.serving.inference.response"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
DROP_REASONS: Final = ("queue_full", "unreachable", "timeout", "rejected")
"""Why events are dropped: queue overflow, connection failure, no answer in time, a non-2xx."""

BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0
DEFAULT_TIMEOUT_S: Final = 2.0
DEFAULT_LINGER_S: Final = 0.05
"""How long the worker lets a batch fill after its first request (unless it fills before)."""
ENCODE_SLICE: Final = 16
"""Exchanges encoded between two yields to the event loop (~60 us of work)."""
BATCH_MAX_BYTES: Final = 1_000_000
"""A batch stops growing past this body size (the detector refuses bodies over its
``max_body_bytes``, 4 MB by default); one exchange always goes, however big."""


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


class EventIds:
    """CloudEvent ids unique per source: a random per-process prefix and a counter.

    A uuid4 per event cost as much as the rest of the envelope; ``source`` + ``id`` only has to
    be unique, and the prefix keeps restarted or parallel apps apart.
    """

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{self._prefix}-{self._count:x}"


_TYPE_MEMBERS: Final = {
    kind: orjson.dumps({"specversion": SPEC_VERSION, "type": kind})[:-1]
    for kind in (CE_REQUEST, CE_RESPONSE)
}


def structured_events(
    exchange: Exchange, source: str, request: bytes, event_id: str
) -> tuple[bytes, bytes]:
    """The request and response events of one exchange in the JSON event format.

    The attributes the binary mode sends as ``Ce-*`` headers become members (Seldon's
    ``requestid`` and ``modelid`` as extension attributes); the ids are ``event_id`` + ``.req``
    / ``.res``. The bodies are JSON the endpoint already parsed or produced: they are spliced in
    as ``data`` bytes, not decoded and re-encoded.
    """
    shared = orjson.dumps(
        {
            "source": source,
            "time": ce_time(exchange.received_at),
            "datacontenttype": "application/json",
            "requestid": exchange.request_id,
            "modelid": exchange.model_name,
        }
    )[1:-1]
    return (
        b"".join(
            (_TYPE_MEMBERS[CE_REQUEST], b',"id":"', event_id.encode(), b'.req",', shared,
             b',"data":', request, b"}")
        ),
        b"".join(
            (_TYPE_MEMBERS[CE_RESPONSE], b',"id":"', event_id.encode(), b'.res",', shared,
             b',"data":', exchange.response, b"}")
        ),
    )  # fmt: skip


def batch_body(events: Sequence[bytes]) -> bytes:
    """A JSON Batch (``application/cloudevents-batch+json``) of structured events."""
    return b"[" + b",".join(events) + b"]"


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
        batch_max: int = 1,
        linger_s: float = DEFAULT_LINGER_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        source: str | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"payload_queue_size must be >= 1, got {queue_size}")
        if batch_max < 1:
            raise ValueError(f"payload_batch_max must be >= 1, got {batch_max}")
        if linger_s < 0:
            raise ValueError(f"linger_s must be >= 0, got {linger_s}")
        self.url = detector_url.rstrip("/")
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.timeout_s = timeout_s
        self.source = source or f"winequality-app/{socket.gethostname()}"
        self.metrics = PayloadMetrics(registry)
        self._queue: asyncio.Queue[Exchange] = asyncio.Queue(queue_size)
        self._queue_full = self.metrics.drop["queue_full"]
        self._session: aiohttp.ClientSession | None = None
        self._endpoint: URL  # set by start(), with the session
        self._reachable = True
        self._ids = EventIds()
        self._task: asyncio.Task[None] | None = None

    @property
    def batched(self) -> bool:
        return self.batch_max > 1

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
        # One connection: events go out in order, one POST at a time, from the one worker task.
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
            batch = await self._next_batch()
            try:
                if self.batched:
                    delivered = await self._deliver_batch(batch)
                else:
                    delivered = await self._deliver(batch[0])
            except Exception:  # the logger must outlive any surprise, but say what it was
                log.exception(
                    "payload logging failed for %d request(s) from %s",
                    len(batch),
                    batch[0].request_id,
                )
                self.metrics.drop["rejected"].inc(2 * len(batch))
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

    async def _next_batch(self) -> list[Exchange]:
        """The next exchanges to send: one in binary mode, else up to ``batch_max`` events."""
        batch = [await self._queue.get()]
        # Two events per exchange; a batch of at least one exchange even if batch_max is odd.
        limit = max(1, self.batch_max // 2)
        if limit == 1:
            return batch
        self._drain(batch, limit)
        if len(batch) < limit and self.linger_s > 0:
            # Sleeping, not awaiting get(): puts meanwhile wake nobody, they just accumulate.
            await asyncio.sleep(self.linger_s)
            self._drain(batch, limit)
        return batch

    def _drain(self, batch: list[Exchange], limit: int) -> None:
        queue = self._queue
        while len(batch) < limit and not queue.empty():
            batch.append(queue.get_nowait())

    async def _deliver(self, exchange: Exchange) -> bool:
        """Send both events in binary mode; False when the detector could not be reached."""
        body = request_payload(exchange.request)
        for kind, payload, sent in (
            (CE_REQUEST, body, self.metrics.sent_request),
            (CE_RESPONSE, exchange.response, self.metrics.sent_response),
        ):
            headers = event_headers(kind, exchange, self.source)
            reason = await self._post(payload, headers, f"a {kind} event")
            if reason is None:
                sent.inc()
                continue
            # The response event is not worth sending once the request event is lost.
            self.metrics.drop[reason].inc(2 if kind == CE_REQUEST else 1)
            return reason not in ("unreachable", "timeout")
        return True

    async def _deliver_batch(self, batch: list[Exchange]) -> bool:
        """Send the exchanges' events in one batched POST (and what did not fit in later ones)."""
        source, ids, start = self.source, self._ids, 0
        while start < len(batch):
            events: list[bytes] = []
            size, end = 0, start
            while end < len(batch) and (end == start or size < BATCH_MAX_BYTES):
                if end > start and (end - start) % ENCODE_SLICE == 0:
                    # Let waiting predictions run: encoding a whole batch in one go held the
                    # loop for ~0.5 ms, a delay on the one request that arrived meanwhile.
                    await asyncio.sleep(0)
                exchange = batch[end]
                request, response = structured_events(
                    exchange, source, request_payload(exchange.request), ids.next()
                )
                events += (request, response)
                size += len(request) + len(response)
                end += 1
            n = end - start
            headers = {"content-type": BATCH_CONTENT_TYPE}
            reason = await self._post(batch_body(events), headers, f"a batch of {2 * n} events")
            if reason is not None:
                # Everything not yet sent is lost with this POST: count each of its events.
                self.metrics.drop[reason].inc(2 * (len(batch) - start))
                return reason not in ("unreachable", "timeout")
            self.metrics.sent_request.inc(n)
            self.metrics.sent_response.inc(n)
            start = end
        return True

    async def _post(self, body: bytes, headers: dict[str, str], what: str) -> str | None:
        """None when delivered, else the drop reason."""
        assert self._session is not None, "PayloadLogger.start() was not awaited"
        import aiohttp  # already loaded by start(): a sys.modules lookup

        try:
            async with self._session.post(self._endpoint, data=body, headers=headers) as reply:
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
                "drift detector refused %s (%d): %s",
                what,
                status,
                answer[:300].decode(errors="replace"),
            )
            return "rejected"
        return None
