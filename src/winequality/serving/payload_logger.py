"""Payload logging: every answered prediction goes to the drift detector as CloudEvents.

Two content modes of the CloudEvents HTTP binding, chosen by ``payload_batch_max``:

* batched (the default, ``batch_max > 1``): one POST per linger carries everything answered
  meanwhile, as a JSON array of structured-mode events (``application/cloudevents-batch+json``).
* binary (``batch_max == 1``): one POST per event, ``Ce-*`` headers and the payload as body,
  exactly what Seldon's request logger sends.

Either way each event carries Seldon's attributes (``requestid``, ``modelid``; as ``Ce-*``
headers or as extension attributes), so the detector cannot tell our app from a
SeldonDeployment ``logger``.

Where the time goes (``benchmarks/payload_logging.py``; the app has one core there):

* The request path calls ``PayloadLogger.log`` after the answer went out. It only appends the
  exchange (references to what the endpoint had in hand) to a bounded list. Encoding there,
  one exchange between two requests, cost about three times what the same work costs in a loop
  over a slice (py-spy shares under load; cache misses, we suspect).
* Once per linger the single background task sends what accumulated as one POST whose body is
  encoded and streamed a slice (``STREAM_SLICE`` exchanges) at a time, with a turn of the event
  loop between slices; each exchange is one ``bytes.join`` of constant pieces and its values.
  Building a megabyte body and writing it in one piece held the loop (GC included) long
  enough to show in the p99, and so did small batches sent often, which put a POST's fixed cost
  in front of a share of the requests.
* The counts are plain integers the registry reads when scraped (``PayloadMetrics``).

Delivery uses one keep-alive aiohttp connection (it costs less CPU per POST than httpx did),
with the detector's ingestion token (``Authorization: Bearer``) on every POST when one is set.
Nothing here can fail or slow a prediction: when the buffer is full (detector slow) or
a delivery fails (detector down, refusing), the events are dropped and counted per event in
``winequality_payloads_dropped_total{reason}``; delivery simply resumes when the detector
answers again. A 429 (the detector's per-caller ingestion limit, which refuses before reading
the body) is not a drop: the worker waits the ``Retry-After`` asked (bounded) and sends the same
POST again, while new requests wait in the buffer. After a failed connection the worker waits a
short, growing pause (new requests meanwhile wait in the buffer, and overflow is counted)
instead of hammering a dead address. ``winequality_payloads_pending`` shows the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Final, NamedTuple, cast

import numpy as np
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import SMALL_ROWS
from winequality.settings import DEFAULT_DETECTOR_MAX_BODY_BYTES, DEFAULT_PAYLOAD_QUEUE_BYTES

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

log = logging.getLogger(__name__)

SPEC_VERSION: Final = "1.0"
CE_REQUEST: Final = "io.seldon.serving.inference.request"
CE_RESPONSE: Final = "io.seldon.serving.inference.response"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
DROP_REASONS: Final = ("queue_full", "unreachable", "timeout", "rejected")
"""Why events are dropped: buffer overflow, connection failure, no answer in time, a non-2xx."""

RATE_LIMITED: Final = "rate_limited"
"""What ``_post`` returns for a 429: not a drop reason, the POST is sent again after the wait
the detector asks for (it refuses before reading the body, so nothing was counted twice)."""

BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 2.0
DEFAULT_TIMEOUT_S: Final = 2.0
DEFAULT_LINGER_S: Final = 0.2
"""How long requests accumulate after the first one not yet sent, before their POST."""
STREAM_SLICE: Final = 128
"""Exchanges written per step of a batched POST (one send). Each step pauses the loop briefly;
fewer, longer steps delay fewer requests than many short ones, and smaller slices showed in the
p99 (``benchmarks/payload_logging.py`` compares slice sizes)."""
STREAM_SLICE_BYTES: Final = 256 * 1024
"""A step also ends past this many bytes. 128 exchanges of 100-row batches made a 4.6 MB chunk:
glibc maps an allocation that size afresh and the kernel faults in and zeroes every page, which
cost the app more system time than the encoding itself (``benchmarks/serving.py``, 100 rows)."""


ENCODE_STEP: Final = 32
"""Exchanges encoded per turn of the event loop while a batch streams (see ``BatchStream``)."""


def batch_max_bytes(detector_max_body_bytes: int) -> int:
    """Largest body of a batched POST: an eighth under the detector's body limit, room for the
    separators and an event past the count; an exchange bigger than that goes alone."""
    return detector_max_body_bytes - detector_max_body_bytes // 8


BATCH_MAX_BYTES: Final = batch_max_bytes(DEFAULT_DETECTOR_MAX_BODY_BYTES)
"""``batch_max_bytes`` of the detector's default limit."""


class Exchange(NamedTuple):
    """One answered request, as the endpoint hands it over: what it had in hand.

    Held by reference until the worker encodes it (a linger and a POST later): nothing in it
    may be changed after ``PayloadLogger.log`` (a matrix must not be a reused buffer)."""

    request_id: str
    model_name: str
    received_at: float
    request: bytes | Matrix
    """The JSON request body, or the model matrix when the body was not plain JSON (V2 binary
    tensors), which the worker writes as a V2 JSON request (``matrix_request``) for the
    exchanges it sends: a dropped one costs nothing to encode."""
    response: bytes


class PayloadMetrics(Collector):
    """Sent and dropped event counters and the backlog gauge, exported from plain counts.

    The event loop adds to the counts (one thread, no lock, no method call); ``collect`` turns
    them into the same families ``prometheus_client``'s ``Counter`` and ``Gauge`` exported
    (names, labels, ``_created``) when the registry is scraped.
    """

    def __init__(self, registry: CollectorRegistry, pending: Callable[[], int]) -> None:
        self.sent = dict.fromkeys(("request", "response"), 0)
        """Events delivered, by kind."""
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        """Events not delivered, by reason."""
        self._pending = pending
        self._created = time.time()
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        sent, dropped, pending = self._families()
        for kind, value in list(self.sent.items()):
            sent.add_metric([kind], value, created=self._created)
        for reason, value in list(self.dropped.items()):
            dropped.add_metric([reason], value, created=self._created)
        pending.add_metric([], self._pending())
        yield from (sent, dropped, pending)

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
        return (
            CounterMetricFamily(
                "winequality_payloads_sent",
                "CloudEvents delivered to the drift detector, by kind (request, response).",
                labels=["type"],
            ),
            CounterMetricFamily(
                "winequality_payloads_dropped",
                "CloudEvents not delivered to the drift detector, by reason.",
                labels=["reason"],
            ),
            GaugeMetricFamily(
                "winequality_payloads_pending",
                "Answered requests buffered or being sent to the drift detector.",
            ),
        )


@lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def ce_time(timestamp: float) -> str:
    """RFC 3339 UTC timestamp to the microsecond, as the CloudEvents ``time`` attribute wants.

    The date and time of day are formatted once per second (a batch's requests share a handful
    of seconds); a datetime per event cost more than the rest of its envelope.
    """
    second, micro = divmod(round(timestamp * 1_000_000), 1_000_000)
    prefix = _utc_second(second)
    return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"


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
        self.prefix = uuid.uuid4().hex[:16]
        self.prefix_bytes = self.prefix.encode()
        self.count = 0
        """The last number handed out (``EventEncoder.extend`` counts on from it)."""

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count:x}"


def _event_pieces(kind: str, suffix: str, source: str) -> list[bytes]:
    """A JSON-format event cut around its id, time, requestid, modelid and data: six pieces.

    Written by orjson with random placeholder strings, so the pieces put back together around
    valid values are valid JSON by construction and ``source`` is escaped once. The id and time
    slots lie inside their quotes (what fills them needs no escaping); the other three take
    JSON values.
    """
    token = uuid.uuid4().hex
    slots = [f"{token}{i}" for i in range(5)]
    doc = {
        "specversion": SPEC_VERSION,
        "type": kind,
        "id": f"{slots[0]}{suffix}",
        "source": source,
        "time": slots[1],
        "datacontenttype": "application/json",
        "requestid": slots[2],
        "modelid": slots[3],
        "data": slots[4],
    }
    rest = orjson.dumps(doc)
    pieces = []
    for i, slot in enumerate(slots):
        head, rest = rest.split((slot if i < 2 else f'"{slot}"').encode(), 1)
        pieces.append(head)
    return [*pieces, rest]


class EventEncoder:
    """Exchanges -> their request and response events in the JSON event format.

    The attributes the binary mode sends as ``Ce-*`` headers become members (Seldon's
    ``requestid`` and ``modelid`` as extension attributes); the event ids are one of ``EventIds``
    plus ``.req`` / ``.res``. The bodies are JSON the endpoint already parsed or produced: they
    are spliced in as ``data`` bytes, not decoded and re-encoded.

    ``extend`` encodes many exchanges in one loop (the payload logger's worker, a slice of a
    batch at a time): each exchange is one ``bytes.join`` of constant pieces and its values,
    which costs less than a ``%`` template (formatted character by character) and, run over a
    slice, less than the same work spread over the requests.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.ids = EventIds()
        request = _event_pieces(CE_REQUEST, ".req", source)
        response = _event_pieces(CE_RESPONSE, ".res", source)
        id_prefix = self.ids.prefix_bytes + b"-"
        # The constant runs between the values of one exchange: both events, one join.
        self._pieces = (
            request[0] + id_prefix,
            request[1],
            request[2],
            request[3],
            request[4],
            request[5] + b"," + response[0] + id_prefix,
            response[1],
            response[2],
            response[3],
            response[4],
            response[5],
        )
        self._models: dict[str, bytes] = {}
        self._second = -1
        self._day_time = b""

    def encode(self, ex: Exchange) -> bytes:
        """``request event,response event`` of one exchange (one item of a JSON batch)."""
        out: list[bytes] = []
        if self.extend(out, (ex,)):
            raise ValueError(f"request {ex.request_id} cannot be encoded as CloudEvents")
        return out[0]

    def extend(self, out: list[bytes], exchanges: Iterable[Exchange]) -> int:
        """Append the encoded events of each exchange to ``out``; an exchange that cannot be
        encoded is logged and skipped. Returns how many were skipped."""
        p0, p1, p2, p3, p4, p5, q1, q2, q3, q4, q5 = self._pieces
        append, join, dumps = out.append, b"".join, orjson.dumps
        ids, models = self.ids, self._models
        count, last_second, day_time = ids.count, self._second, self._day_time
        failed = 0
        for rid, model_name, received_at, given, response in exchanges:
            try:
                # ce_time() as bytes, the date and time of day kept for the second they name.
                second, micro = divmod(round(received_at * 1_000_000), 1_000_000)
                if second != last_second:
                    last_second, day_time = second, _utc_second(second).encode()
                stamp = b"%b.%06dZ" % (day_time, micro) if micro else day_time + b"Z"
                model = models.get(model_name)
                if model is None:
                    model = models[model_name] = dumps(model_name)
                request = given if type(given) is bytes else request_payload(given)
                quoted_rid = dumps(rid)
                count += 1
                event_id = b"%x" % count
                append(
                    join((p0, event_id, p1, stamp, p2, quoted_rid, p3, model, p4, request,
                          p5, event_id, q1, stamp, q2, quoted_rid, q3, model, q4, response, q5))
                )  # fmt: skip
            except Exception:  # a log line must never turn into a lost batch
                log.exception("payload logging could not encode request %s", rid)
                failed += 1
        ids.count, self._second, self._day_time = count, last_second, day_time
        return failed


class BatchStream:
    """The body of one batched POST, handed to the connection a slice at a time.

    From ``events[start]`` on (each item the encoded events of one exchange), until the POST
    holds ``max_exchanges`` exchanges or ``max_bytes``; ``taken`` says how many went in.
    ``fill(n)``, when given, is asked before each slice to extend ``events`` to ``n`` items (or
    as far as it can): the exchanges are encoded a slice at a time, as they are sent.
    Between two slices the event loop serves predictions: a megabyte body written in one piece
    held it for milliseconds, and the requests that arrived meanwhile waited.
    """

    def __init__(
        self,
        events: list[bytes],
        start: int,
        max_exchanges: int,
        max_bytes: int = BATCH_MAX_BYTES,
        fill: Callable[[int], object] | None = None,
    ) -> None:
        self.events = events
        self.start = start
        self.max_bytes = max_bytes
        self.limit = start + max_exchanges
        self.fill = fill
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events, position, size, separator = self.events, self.start, 0, b"["
        max_bytes, fill = self.max_bytes, self.fill
        while position < self.limit:
            step_end = min(position + STREAM_SLICE, self.limit)
            while fill is not None and len(events) < step_end:
                # Encoded in shorter steps than it is sent: a request that arrives meanwhile
                # waits for one step, not for a whole slice's encoding.
                have = len(events)
                fill(min(have + ENCODE_STEP, step_end))
                if len(events) == have:
                    break
                if len(events) < step_end:
                    await asyncio.sleep(0)
            step_end = min(step_end, len(events))
            step_size = 0
            for k in range(position, step_end):
                length = len(events[k])
                # Up to the bound, not past it; but the first exchange goes, however big.
                if k > self.start and size + length > max_bytes:
                    step_end = k
                    break
                if k > position and step_size + length > STREAM_SLICE_BYTES:
                    step_end = k  # the rest goes in the next step (still this POST)
                    break
                size += length
                step_size += length
            if step_end <= position:
                break
            chunk = separator + b",".join(events[position:step_end])
            separator, position = b",", step_end
            self.taken = position - self.start
            yield chunk
            await asyncio.sleep(0)
        yield b"]"


class _Encoding:
    """The exchanges one worker round took, encoded as the batches ask (``fill``); each
    exchange is let go once encoded, each event once sent (``sent``), so a backlog is not held
    twice."""

    def __init__(self, exchanges: list[Exchange], encoder: EventEncoder) -> None:
        self.exchanges: list[Exchange | None] = list(exchanges)
        self.encoder = encoder
        self.events: list[bytes] = []
        self.next = 0
        """The first exchange not yet encoded."""
        self.failed = 0
        """Exchanges that could not be encoded."""

    @property
    def left(self) -> int:
        """Exchanges not yet encoded."""
        return len(self.exchanges) - self.next

    def fill(self, n: int) -> None:
        """Encode until ``events`` holds ``n`` items or no exchange is left."""
        while len(self.events) < n and self.next < len(self.exchanges):
            end = min(self.next + n - len(self.events), len(self.exchanges))
            batch = cast("list[Exchange]", self.exchanges[self.next : end])
            self.exchanges[self.next : end] = [None] * len(batch)
            self.failed += self.encoder.extend(self.events, batch)
            self.next = end

    def sent(self, n: int) -> None:
        """The first ``n`` events went out: forget them (``events`` starts after them)."""
        del self.events[:n]


def _matrix_request_pieces() -> tuple[bytes, bytes]:
    """``matrix_request``'s bytes before the matrix (a ``%d`` slot for its rows) and after it."""
    doc = {
        "inputs": [
            {
                "name": schema.ONNX_INPUT,
                "shape": ["@rows@", schema.N_MODEL_COLUMNS],
                "datatype": "FP32",
                "data": "@data@",
            }
        ]
    }
    head, tail = orjson.dumps(doc).replace(b"%", b"%%").split(b'"@data@"')
    return head.replace(b'"@rows@"', b"%d"), tail


_MATRIX_HEAD, _MATRIX_TAIL = _matrix_request_pieces()
_MATRIX_VALUE_BYTES: Final = 6
"""About what one value of a matrix takes in ``matrix_request`` (a float32 in its shortest
form and a comma)."""


def matrix_request(matrix: Matrix) -> bytes:
    """A model matrix as the request event's data: a V2 JSON request of one tensor, the
    [N, 12] matrix (``schema.ONNX_INPUT``), which the drift detector reads as it reads the
    named tensors (``monitoring.payloads``).

    One orjson call writes the float32 values (shortest form) and the is_white flags, where
    the named tensors took a transposed copy, a template of 12 slots and the wine types spelled
    out (1.3 µs against 0.5 for one row), and an event 700 bytes longer to copy and send.
    A matrix of a few rows (the binary V2 requests) takes its head by shape, and orjson's
    refusal of a matrix not in C order stands for the check (0.53 µs a row against 0.68).
    """
    head = _MATRIX_HEADS.get(matrix.shape)
    if head is not None:
        try:
            return head + orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY) + _MATRIX_TAIL
        except TypeError:  # orjson writes C-ordered arrays only
            pass
    if matrix.ndim != 2 or matrix.shape[1] != schema.N_MODEL_COLUMNS:
        raise ValueError(f"not a model matrix: shape {matrix.shape}")
    if not matrix.flags.c_contiguous:
        matrix = np.ascontiguousarray(matrix)
    return b"".join(
        (
            _MATRIX_HEAD % len(matrix),
            orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY),
            _MATRIX_TAIL,
        )
    )


_MATRIX_HEADS: Final = {
    (n, schema.N_MODEL_COLUMNS): _MATRIX_HEAD % n for n in range(1, SMALL_ROWS + 1)
}
"""``matrix_request``'s head of a matrix of a few rows, by its shape."""


def payload_bytes(exchange: Exchange) -> int:
    """The bytes an exchange's events carry as payloads: its bodies, a matrix's estimated
    encoding (what the buffer's byte bound counts)."""
    request = exchange.request
    if isinstance(request, bytes):
        return len(request) + len(exchange.response)
    fixed = len(_MATRIX_HEAD) + len(_MATRIX_TAIL)
    return fixed + request.size * _MATRIX_VALUE_BYTES + len(exchange.response)


def request_payload(request: bytes | Matrix) -> bytes:
    """An exchange's request as its event's data (``Exchange.request``)."""
    return request if isinstance(request, bytes) else matrix_request(request)


class PayloadLogger:
    """Bounded buffer + one delivery task; ``start``/``stop`` belong in the app lifespan."""

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
        detector_max_body_bytes: int = DEFAULT_DETECTOR_MAX_BODY_BYTES,
        token: str | None = None,
        queue_bytes: int = DEFAULT_PAYLOAD_QUEUE_BYTES,
    ) -> None:
        """``token``: the detector's ingestion token, sent as ``Authorization: Bearer``;
        ``queue_bytes``: the buffer's bound in bytes of the payloads it holds, beside
        ``queue_size`` (requests)."""
        if queue_size < 1:
            raise ValueError(f"payload_queue_size must be >= 1, got {queue_size}")
        if queue_bytes < 1:
            raise ValueError(f"payload_queue_bytes must be >= 1, got {queue_bytes}")
        if batch_max < 1:
            raise ValueError(f"payload_batch_max must be >= 1, got {batch_max}")
        if linger_s < 0:
            raise ValueError(f"linger_s must be >= 0, got {linger_s}")
        self.url = detector_url.rstrip("/")
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.batch_max = batch_max
        self.batch_max_bytes = batch_max_bytes(detector_max_body_bytes)
        self.batched = batch_max > 1
        self.linger_s = linger_s
        self.timeout_s = timeout_s
        self.source = source or f"winequality-app/{socket.gethostname()}"
        self.metrics = PayloadMetrics(registry, lambda: self.pending + self._in_flight)
        self.encoder = EventEncoder(self.source)
        self._auth = {"Authorization": f"Bearer {token}"} if token else None
        self._buffer: list[Exchange] = []
        self._buffered_bytes = 0
        """The payload bytes ``_buffer`` holds (``payload_bytes``)."""
        self._dropped = self.metrics.dropped
        self._idle = False
        """The worker waits for ``_waiting``: the next ``log`` sets it."""
        self._waiting = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._endpoint: URL  # set by start(), with the session
        self._reachable = True
        self._rate_limited = False
        self._retry_after: str | None = None
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None

    def log(self, exchange: Exchange) -> None:
        """Buffer an answered request; never blocks, never raises (a full buffer drops it).

        Only the reference is kept here: the worker encodes what accumulated in one loop, a
        slice at a time, as it sends it.
        """
        buffer = self._buffer
        size = payload_bytes(exchange)
        held = self._buffered_bytes + size
        # By bytes as well as by count: 10,000 buffered 100-row batches held 360 MB, and one
        # as big as the body limit allows, gigabytes. An exchange over the byte bound on its
        # own still goes when nothing waits.
        if len(buffer) >= self.queue_size or (held > self.queue_bytes and buffer):
            # Two events (request and response) are lost with it.
            self._dropped["queue_full"] += 2
            return
        self._buffered_bytes = held
        buffer.append(exchange)
        if self._idle:
            self._idle = False
            self._waiting.set()

    @property
    def pending(self) -> int:
        """Exchanges buffered and not yet taken by the worker."""
        return len(self._buffer)

    async def start(self) -> None:
        # Imported here, like in _post: aiohttp lengthens the app's start-up, only worth
        # paying when a detector is configured.
        import aiohttp
        from yarl import URL

        # Parsed once: yarl keeps the parsed form, aiohttp would re-parse a str per event.
        self._endpoint = URL(self.url + "/")
        # One connection: events go out in order, one POST at a time, from the one worker task.
        self._session = aiohttp.ClientSession(
            headers=self._auth,
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="payload-logger")

    async def stop(self) -> None:
        """Stop delivering (what is still buffered is not waited for) and close the client."""
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
            if not self._buffer:
                self._waiting.clear()
                self._idle = True
                await self._waiting.wait()
            if self.batched and self.linger_s > 0:
                # Sleeping, not waking per request: what arrives meanwhile just accumulates.
                await asyncio.sleep(self.linger_s)
            exchanges, self._buffer, self._buffered_bytes = self._buffer, [], 0
            taken = self._in_flight = len(exchanges)
            try:
                if self.batched:
                    delivered = await self._deliver_batches(exchanges)
                else:
                    delivered = await self._deliver_each(exchanges)
            except Exception:  # the logger must outlive any surprise, but say what it was
                log.exception("payload logging failed for %d request(s)", taken)
                self._dropped["rejected"] += 2 * taken
                delivered = True
            self._in_flight = 0
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

    async def _deliver_each(self, exchanges: list[Exchange]) -> bool:
        """Binary mode, one exchange after the other; False when the detector could not be
        reached (the exchanges not yet sent are dropped with that reason)."""
        for k, exchange in enumerate(exchanges):
            reason = await self._deliver(exchange)
            if reason in ("unreachable", "timeout"):
                self._dropped[reason] += 2 * (len(exchanges) - k - 1)
                return False
        return True

    async def _deliver(self, exchange: Exchange) -> str | None:
        """Both events of one exchange in binary mode; None when delivered, else the reason."""
        try:
            body = request_payload(exchange.request)
        except Exception:  # as in batched mode: this exchange is lost, not the round
            log.exception("payload logging could not encode request %s", exchange.request_id)
            self._dropped["rejected"] += 2
            return "rejected"
        for kind, payload, sent in (
            (CE_REQUEST, body, "request"),
            (CE_RESPONSE, exchange.response, "response"),
        ):
            headers = event_headers(kind, exchange, self.source)
            reason = await self._post(payload, headers, f"a {kind} event")
            while reason == RATE_LIMITED:  # the same event (same id) again, once allowed
                await self._wait_for_rate_limit()
                reason = await self._post(payload, headers, f"a {kind} event")
            if reason is None:
                self.metrics.sent[sent] += 1
                continue
            # The response event is not worth sending once the request event is lost.
            self._dropped[reason] += 2 if kind == CE_REQUEST else 1
            return reason
        return None

    async def _deliver_batches(self, exchanges: list[Exchange]) -> bool:
        """Batched mode: the exchanges in as few POSTs as the bounds allow, encoded a slice at
        a time as each POST streams; False when the detector could not be reached (what was not
        yet sent is dropped with that reason)."""
        headers = {"content-type": BATCH_CONTENT_TYPE}
        encoding = _Encoding(exchanges, self.encoder)
        exchanges.clear()  # the caller's list: each exchange now goes once encoded
        events, sent = encoding.events, self.metrics.sent
        try:
            while True:
                encoding.fill(1)
                if not events:
                    return True
                body = BatchStream(
                    events, 0, max(1, self.batch_max // 2), self.batch_max_bytes, encoding.fill
                )
                reason = await self._post(body, headers, "a batch of events")
                if reason == RATE_LIMITED:  # refused unread: the same events again, once allowed
                    await self._wait_for_rate_limit()
                    continue
                if reason is not None:
                    # Everything not yet sent is lost with this POST: count each of its events.
                    self._dropped[reason] += 2 * (len(events) + encoding.left)
                    return reason not in ("unreachable", "timeout")
                sent["request"] += body.taken
                sent["response"] += body.taken
                encoding.sent(body.taken)
        finally:
            self._dropped["rejected"] += 2 * encoding.failed

    async def _wait_for_rate_limit(self) -> None:
        """After a 429: the wait the detector asked for (``Retry-After`` seconds), at most
        ``BACKOFF_MAX_S``; what is logged meanwhile waits in the buffer."""
        if not self._rate_limited:
            log.warning(
                "drift detector %s rate-limits this app (429): payloads wait, and those over "
                "the buffer are dropped (queue_full); raise the detector's "
                "WINEQ_DRIFT_INGEST_RATE_PER_S / WINEQ_DRIFT_INGEST_BURST, or use the batched "
                "mode (WINEQ_PAYLOAD_BATCH_MAX > 1)",
                self.url,
            )
            self._rate_limited = True
        try:
            wait = float(self._retry_after or BACKOFF_MAX_S)
        except ValueError:  # an HTTP date: not worth parsing for a bounded wait
            wait = BACKOFF_MAX_S
        await asyncio.sleep(min(max(wait, BACKOFF_MIN_S), BACKOFF_MAX_S))

    async def _post(
        self, body: bytes | BatchStream, headers: dict[str, str], what: str
    ) -> str | None:
        """None when delivered, ``RATE_LIMITED`` after a 429, else the drop reason."""
        assert self._session is not None, "PayloadLogger.start() was not awaited"
        import aiohttp  # already loaded by start(): a sys.modules lookup

        try:
            async with self._session.post(self._endpoint, data=body, headers=headers) as reply:
                status, answer = reply.status, await reply.read()
                retry_after = reply.headers.get("Retry-After") if status == 429 else None
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
        return self._answered(status, answer, retry_after, what)

    def _answered(
        self, status: int, answer: bytes, retry_after: str | None, what: str
    ) -> str | None:
        """``_post``'s outcome once the detector answered ``status``."""
        if status == 429:
            self._retry_after = retry_after
            return RATE_LIMITED
        self._rate_limited = False
        if 200 <= status < 300:
            return None
        text = answer[:300].decode(errors="replace")
        log.warning("drift detector refused %s (%d): %s", what, status, text)
        return "rejected"
