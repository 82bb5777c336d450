"""The drift detector service: CloudEvents in, Prometheus drift metrics out.

Receives inference payloads as CloudEvents over HTTP in any content mode of the binding: binary
(``Ce-*`` headers, the request payload as body: what Seldon's request logger sends), structured
(``application/cloudevents+json``) and batched (``application/cloudevents-batch+json``, a JSON
array of structured events: what our app's payload logger sends by default). So both our app and
a SeldonDeployment ``logger`` can point at it. A batch is all or nothing: every element is
validated before any row is applied, and a bad element refuses the batch with a 4xx naming its
index and reason. Rows accumulate in a tumbling window; every full window is tested against the
reference sample.

``seldon_metric_drift_found`` latches to 1 on the first drifted window and stays there until the
reference is reloaded (``POST /reference/reload``, done after a retraining), so the alert does not
flap between windows and clears exactly when the model and its reference have been replaced.
"""

from __future__ import annotations

import base64
import binascii
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import numpy as np
import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from winequality.api_docs import add_docs
from winequality.contract.features import BoolArray, FloatArray
from winequality.contract.problems import FeatureError
from winequality.http_common import BodyTooLargeError, TokenDep, read_request_body, set_token
from winequality.monitoring.detector import (
    TEST_NAMES,
    DriftResult,
    Reference,
    ReferenceSampleError,
    detect,
    load_reference,
)
from winequality.monitoring.payloads import (
    PayloadError,
    rows_from_app_payloads,
    rows_from_payload,
)
from winequality.params import DriftParams
from winequality.settings import DetectorSettings

log = logging.getLogger("winequality.drift")

CE_REQUEST: Final = "io.seldon.serving.inference.request"
CE_RESPONSE: Final = "io.seldon.serving.inference.response"
REQUIRED_CE_HEADERS: Final = ("ce-id", "ce-specversion", "ce-source", "ce-type")
REQUIRED_ATTRIBUTES: Final = ("id", "source", "specversion", "type")
BATCH_MEDIA_TYPE: Final = "application/cloudevents-batch+json"
STRUCTURED_MEDIA_TYPE: Final = "application/cloudevents+json"
MAX_LISTED_ERRORS: Final = 20
"""A refused batch names at most this many bad elements (the count says how many there were)."""


class DriftMetrics:
    """Prometheus metrics of one detector instance (own registry: several apps per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.drift_found = Gauge(
            "seldon_metric_drift_found",
            "1 once a window drifted, until the reference is reloaded (the alert metric).",
            registry=r,
        )
        self.is_drift = Gauge(
            "seldon_metric_drift_is_drift", "1 if the latest window drifted.", registry=r
        )
        self.p_val = Gauge(
            "seldon_metric_drift_p_val",
            "Uncorrected p-value of the latest window per test.",
            ["feature"],
            registry=r,
        )
        self.distance = Gauge(
            "seldon_metric_drift_distance",
            "KS statistic (features) or total-variation distance (wine_type), latest window.",
            ["feature"],
            registry=r,
        )
        self.threshold = Gauge(
            "seldon_metric_drift_threshold",
            "Per-test threshold after the multiple-testing correction, latest window.",
            ["feature"],
            registry=r,
        )
        self.rows = Counter("wineq_drift_rows", "Rows received from request events.", registry=r)
        self.windows = Counter("wineq_drift_windows", "Windows tested.", registry=r)
        self.drifted_windows = Counter(
            "wineq_drift_drifted_windows", "Windows that drifted.", registry=r
        )
        self.events = Counter(
            "wineq_drift_events", "CloudEvents received, by kind.", ["kind"], registry=r
        )
        self.rejected = Counter(
            "wineq_drift_rejected_events",
            "Events refused, by reason (the valid events of a refused batch: batch_refused).",
            ["reason"],
            registry=r,
        )
        self.window_fill = Gauge(
            "wineq_drift_window_fill", "Rows in the window being filled.", registry=r
        )
        self.reference_rows = Gauge(
            "wineq_drift_reference_rows", "Rows of the loaded reference sample.", registry=r
        )
        self.reloads = Counter(
            "wineq_drift_reference_reloads", "Successful reference reloads.", registry=r
        )
        self.drift_found.set(0)
        self.is_drift.set(0)


@dataclass
class DetectorState:
    """Window buffer, latest result and metrics; mutated only from the event loop thread."""

    params: DriftParams
    reference_path: Path
    metrics: DriftMetrics = field(default_factory=DriftMetrics)
    reference: Reference | None = None
    load_error: str | None = None
    buffer: FloatArray = field(init=False)
    buffer_white: BoolArray = field(init=False)
    fill: int = 0
    last_window: tuple[FloatArray, BoolArray] | None = None
    latest: DriftResult | None = None
    drift_found: bool = False
    windows: int = 0

    def __post_init__(self) -> None:
        n = self.params.window_size
        self.buffer = np.empty((n, len(TEST_NAMES) - 1), dtype=np.float64)
        self.buffer_white = np.empty(n, dtype=np.bool_)

    def load(self) -> Reference:
        """(Re)load the reference; on success the window and the drift latch start over."""
        reference = load_reference(self.reference_path)
        self.reference, self.load_error = reference, None
        self.fill, self.last_window, self.latest, self.drift_found = 0, None, None, False
        m = self.metrics
        m.drift_found.set(0)
        m.is_drift.set(0)
        m.window_fill.set(0)
        m.reference_rows.set(reference.size)
        for gauge in (m.p_val, m.distance, m.threshold):
            gauge.clear()
        return reference

    def add_rows(self, features: FloatArray, is_white: BoolArray) -> list[DriftResult]:
        """Append rows; test every window that becomes full (a big batch may fill several)."""
        if self.reference is None:
            raise ReferenceSampleError("no reference loaded")
        results = []
        size, start = self.params.window_size, 0
        while start < features.shape[0]:
            take = min(size - self.fill, features.shape[0] - start)
            self.buffer[self.fill : self.fill + take] = features[start : start + take]
            self.buffer_white[self.fill : self.fill + take] = is_white[start : start + take]
            self.fill += take
            start += take
            if self.fill == size:
                window = (self.buffer.copy(), self.buffer_white.copy())
                results.append(self._record(detect(self.reference, *window, self.params)))
                self.last_window, self.fill = window, 0
        self.metrics.rows.inc(features.shape[0])
        self.metrics.window_fill.set(self.fill)
        return results

    def _record(self, result: DriftResult) -> DriftResult:
        m = self.metrics
        self.latest, self.windows = result, self.windows + 1
        m.windows.inc()
        m.is_drift.set(int(result.is_drift))
        if result.is_drift:
            m.drifted_windows.inc()
            self.drift_found = True
            m.drift_found.set(1)
            log.warning("drift detected in window %d: %s", self.windows, result.drifted)
        for name in TEST_NAMES:
            m.p_val.labels(feature=name).set(result.p_values[name])
            m.distance.labels(feature=name).set(result.distances[name])
            m.threshold.labels(feature=name).set(result.corrected_threshold)
        return result

    def live_rows(self) -> tuple[FloatArray, BoolArray]:
        """Rows of the report: the last full window, else what the current window holds."""
        if self.last_window is not None:
            return self.last_window
        return self.buffer[: self.fill].copy(), self.buffer_white[: self.fill].copy()


class EventRejectedError(Exception):
    """An event refused with a 4xx: status, metric reason, message and optional problems."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra
        self.by_reason: dict[str, int] | None = None
        """Refused events per reason when this refuses several (a batch); else one, ``reason``."""


def _problem(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": {"message": message, **extra}}, status_code=status)


def _event_type(headers: Mapping[str, str]) -> str:
    missing = [h for h in REQUIRED_CE_HEADERS if h not in headers]
    if missing:
        raise EventRejectedError(
            400, "not_cloudevent", f"not a binary-mode CloudEvent: missing headers {missing}"
        )
    ce_type = headers["ce-type"]
    if ce_type not in (CE_REQUEST, CE_RESPONSE):
        raise EventRejectedError(
            400,
            "unknown_type",
            f"unsupported Ce-Type {ce_type!r}: expected {CE_REQUEST!r} or {CE_RESPONSE!r}",
        )
    return ce_type


async def _read_body(request: Request, limit: int) -> bytes:
    """The event body; the endpoint tells the content modes apart by content type itself."""
    try:
        return await read_request_body(request, limit, media_types=None)
    except BodyTooLargeError as exc:
        raise EventRejectedError(exc.status, "too_large", exc.message) from exc


def _parse_json(raw: bytes | str, what: str = "body") -> Any:
    """Strict JSON (orjson: NaN and Infinity literals are refused); faster than the json module
    on the app's batches, where parsing is most of the detector's work."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventRejectedError(400, "invalid_json", f"{what} is not valid JSON: {exc}") from exc


def _parse_rows(raw: bytes) -> tuple[FloatArray, BoolArray]:
    return _rows(_parse_json(raw))


def _rows(body: Any) -> tuple[FloatArray, BoolArray]:
    try:
        return rows_from_payload(body)
    except PayloadError as exc:
        raise EventRejectedError(422, "unknown_format", str(exc)) from exc
    except FeatureError as exc:
        problems = [
            # -1: a problem of the body as a whole, as this API has always answered it.
            {"row": -1 if p.row is None else p.row, "field": p.field, "reason": p.reason}
            for p in exc.problems
        ]
        raise EventRejectedError(422, "invalid_values", str(exc), problems=problems) from exc


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").partition(";")[0].strip().lower()


def _is_json_media_type(value: str) -> bool:
    """``*/json`` or ``*/*+json``: how the JSON event format tells JSON ``data`` apart."""
    subtype = value.partition(";")[0].strip().lower().partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


@dataclass(frozen=True, slots=True)
class StructuredEvent:
    """A JSON-format event whose envelope is valid: its type and, for a request event, the
    decoded request payload (its rows are read for the whole batch at once)."""

    id: str
    type: str
    data: Any = None


def _structured_event(event: Any, specversion: str | None) -> StructuredEvent:
    """A JSON-format CloudEvent -> StructuredEvent; EventRejectedError says what is wrong.

    ``specversion``: the one every element of a batch must share (None for a single event).
    """
    if not isinstance(event, Mapping):
        raise EventRejectedError(
            400, "not_cloudevent", f"must be a JSON object, got {type(event).__name__}"
        )
    bad = [a for a in REQUIRED_ATTRIBUTES if not isinstance(event.get(a), str) or not event[a]]
    if bad:
        raise EventRejectedError(
            400, "not_cloudevent", f"not a CloudEvent: missing or empty attributes {bad}"
        )
    if specversion is not None and event["specversion"] != specversion:
        raise EventRejectedError(
            400,
            "mixed_specversion",
            f"specversion {event['specversion']!r} differs from the batch's {specversion!r}",
        )
    ce_type = event["type"]
    if ce_type not in (CE_REQUEST, CE_RESPONSE):
        raise EventRejectedError(
            400,
            "unknown_type",
            f"unsupported type {ce_type!r}: expected {CE_REQUEST!r} or {CE_RESPONSE!r}",
        )
    if ce_type == CE_RESPONSE:
        return StructuredEvent(event["id"], ce_type)
    content_type = event.get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str) or not _is_json_media_type(content_type)
    ):
        raise EventRejectedError(
            415,
            "unsupported_media_type",
            f"datacontenttype {content_type!r}: the payload must be JSON",
        )
    if event.get("data_base64") is not None:
        encoded = event["data_base64"]
        try:
            decoded = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except binascii.Error:
            decoded = None
        if decoded is None:
            raise EventRejectedError(400, "invalid_base64", "data_base64 is not base64")
        data = _parse_json(decoded, "data_base64")
    elif "data" in event:
        data = event["data"]
    else:
        raise EventRejectedError(422, "no_data", "request event without data")
    return StructuredEvent(event["id"], ce_type, data)


Rows = tuple[FloatArray, BoolArray]


def _parse_events(raw: bytes, batched: bool) -> tuple[list[StructuredEvent], Rows]:
    """A batch (a JSON array) or one structured event -> its events and the rows of its request
    events, in order; one bad element refuses the whole batch, naming every bad element."""
    doc = _parse_json(raw)
    if not batched:
        event = _structured_event(doc, None)
        return [event], _rows(event.data) if event.type == CE_REQUEST else _NO_ROWS
    if not isinstance(doc, list):
        raise EventRejectedError(
            400, "not_batch", f"a batch must be a JSON array of events, got {type(doc).__name__}"
        )
    parsed: list[tuple[int, StructuredEvent]] = []
    errors: list[tuple[int, EventRejectedError]] = []
    first = doc[0] if doc else None
    specversion = first.get("specversion") if isinstance(first, Mapping) else None
    for i, element in enumerate(doc):
        try:
            parsed.append((i, _structured_event(element, specversion if i else None)))
        except EventRejectedError as exc:
            errors.append((i, exc))
    requests = [(i, e.data) for i, e in parsed if e.type == CE_REQUEST]
    fast = None if errors or not requests else rows_from_app_payloads([d for _, d in requests])
    if fast is not None:
        return [e for _, e in parsed], fast
    # Not all the app's well-formed bodies: read them one by one, to name each bad one.
    each: list[Rows] = [_NO_ROWS]
    for i, data in requests:
        try:
            each.append(_rows(data))
        except EventRejectedError as exc:
            errors.append((i, exc))
    if errors:
        raise _batch_refused(sorted(errors, key=lambda error: error[0]), len(doc))
    features = np.concatenate([r[0] for r in each])
    return [e for _, e in parsed], (features, np.concatenate([r[1] for r in each]))


_NO_ROWS: Final[Rows] = (
    np.empty((0, len(TEST_NAMES) - 1), dtype=np.float64),
    np.empty(0, dtype=np.bool_),
)


def _batch_refused(errors: list[tuple[int, EventRejectedError]], n: int) -> EventRejectedError:
    index, first = errors[0]
    listed = [
        {"index": i, "reason": e.reason, "message": e.message, **e.extra}
        for i, e in errors[:MAX_LISTED_ERRORS]
    ]
    refused = EventRejectedError(
        first.status,
        first.reason,
        f"batch refused, nothing applied: {len(errors)} of {n} events invalid; "
        f"event [{index}]: {first.message}",
        errors=listed,
        invalid_events=len(errors),
    )
    refused.by_reason = _count_reasons(errors, n)
    return refused


def _count_reasons(errors: list[tuple[int, EventRejectedError]], n: int) -> dict[str, int]:
    """Refused events by reason: each bad one under its own, the others as batch_refused."""
    counts: dict[str, int] = {}
    for _, e in errors:
        counts[e.reason] = counts.get(e.reason, 0) + 1
    if n > len(errors):
        counts["batch_refused"] = n - len(errors)
    return counts


def _count_rejected(metrics: DriftMetrics, exc: EventRejectedError) -> None:
    for reason, count in (exc.by_reason or {exc.reason: 1}).items():
        metrics.rejected.labels(reason=reason).inc(count)


def apply_events(st: DetectorState, raw: bytes, *, batched: bool) -> dict[str, Any]:
    """A structured event or a batch of them, all or nothing: the summary the endpoint answers,
    or EventRejectedError (nothing applied)."""
    return _apply(st, *_parse_events(raw, batched=batched))


def _apply(st: DetectorState, events: list[StructuredEvent], rows: Rows) -> dict[str, Any]:
    """Apply validated events: count them, add their requests' rows to the window."""
    n_requests = sum(e.type == CE_REQUEST for e in events)
    if n_requests and st.reference is None:
        raise EventRejectedError(503, "no_reference", f"no reference loaded: {st.load_error}")
    features, is_white = rows
    results = st.add_rows(features, is_white) if features.shape[0] else []
    if n_requests:
        st.metrics.events.labels(kind="request").inc(n_requests)
    if len(events) > n_requests:
        st.metrics.events.labels(kind="response").inc(len(events) - n_requests)
    return {
        "events": len(events),
        "requests": n_requests,
        "responses": len(events) - n_requests,
        "rows": int(features.shape[0]),
        "window_fill": st.fill,
        "windows_tested": len(results),
        "drift": [r.is_drift for r in results],
    }


# Dependencies and endpoints are coroutines: FastAPI runs plain functions in a thread pool,
# which cost a thread handoff per event and let a reload race the event loop over the window.
async def get_state(request: Request) -> DetectorState:
    state: DetectorState = request.app.state.detector
    return state


async def get_settings(request: Request) -> DetectorSettings:
    settings: DetectorSettings = request.app.state.settings
    return settings


StateDep = Annotated[DetectorState, Depends(get_state)]
SettingsDep = Annotated[DetectorSettings, Depends(get_settings)]
router = APIRouter()


@router.post("/")
async def receive_event(request: Request, st: StateDep, settings: SettingsDep) -> Response:
    """CloudEvents: request payloads are added to the window, responses counted and ignored.

    Binary mode (``Ce-*`` headers) carries one event, structured mode
    (``application/cloudevents+json``) one, batched mode (``application/cloudevents-batch+json``)
    a JSON array of them, applied all or nothing.
    """
    media_type = _media_type(request.headers)
    if media_type in (BATCH_MEDIA_TYPE, STRUCTURED_MEDIA_TYPE):
        try:
            raw = await _read_body(request, settings.max_body_bytes)
            return JSONResponse(apply_events(st, raw, batched=media_type == BATCH_MEDIA_TYPE))
        except EventRejectedError as exc:
            _count_rejected(st.metrics, exc)
            return _problem(exc.status, exc.message, **exc.extra)
    try:
        if _event_type(request.headers) == CE_RESPONSE:
            st.metrics.events.labels(kind="response").inc()
            return JSONResponse({"ignored": "response event"})
        raw = await _read_body(request, settings.max_body_bytes)
        if st.reference is None:
            return _problem(503, f"no reference loaded: {st.load_error}")
        features, is_white = _parse_rows(raw)
    except EventRejectedError as exc:
        st.metrics.rejected.labels(reason=exc.reason).inc()
        return _problem(exc.status, exc.message, **exc.extra)
    st.metrics.events.labels(kind="request").inc()
    results = st.add_rows(features, is_white)
    return JSONResponse(
        {
            "id": request.headers["ce-id"],
            "rows": int(features.shape[0]),
            "window_fill": st.fill,
            "windows_tested": len(results),
            "drift": [r.is_drift for r in results],
        }
    )


@router.get("/metrics")
async def metrics(st: StateDep) -> Response:
    """Prometheus exposition of the drift metrics."""
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/drift")
async def drift(st: StateDep) -> dict[str, Any]:
    """The latest window result and the detector's state."""
    return {
        "drift_found": st.drift_found,
        "latest": None if st.latest is None else st.latest.model_dump(),
        "windows_tested": st.windows,
        "window_fill": st.fill,
        "window_size": st.params.window_size,
        "reference": None if st.reference is None else st.reference.source,
        "reference_rows": None if st.reference is None else st.reference.size,
    }


@router.get("/report", response_class=HTMLResponse)
async def report(st: StateDep) -> Response:
    """HTML report: reference vs live distributions per feature (rendered on request)."""
    if st.reference is None:
        return _problem(503, f"no reference loaded: {st.load_error}")
    from winequality.monitoring.report import render_report

    # A snapshot taken on the event loop; the plotting (slow) runs in a worker thread.
    features, is_white = st.live_rows()
    html = await run_in_threadpool(render_report, st.reference, features, is_white, st.latest)
    return HTMLResponse(html)


@router.post("/reference/reload")
async def reload_reference(st: StateDep, _: TokenDep) -> Response:
    """Reload the reference (after a retraining): resets the window and drift_found."""
    try:
        reference = st.load()
    except ReferenceSampleError as exc:
        return _problem(409, f"reload failed, previous reference kept: {exc}")
    st.metrics.reloads.inc()
    return JSONResponse({"reloaded": reference.source, "reference_rows": reference.size})


@router.get("/health/ready")
async def ready(st: StateDep) -> Response:
    """Ready once a reference is loaded."""
    if st.reference is None:
        return _problem(503, f"no reference loaded: {st.load_error}")
    return JSONResponse({"status": "ready", "reference_rows": st.reference.size})


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


def create_app(
    settings: DetectorSettings,
    params: DriftParams,
    reference_path: Path,
    *,
    freeze_gc: bool = False,
) -> FastAPI:
    """The detector ASGI app; the reference is loaded in ``lifespan`` and on reload.

    ``freeze_gc`` (the server entry point sets it): everything alive once started (imports, the
    reference) lives as long as the process; out of the collector's sight, a batch's thousands
    of parsed events no longer make every collection walk it too (``benchmarks/drift.py``
    measures the gain).
    """
    state = DetectorState(params=params, reference_path=reference_path)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            reference = state.load()
            log.info("reference loaded from %s (%d rows)", reference_path, reference.size)
        except ReferenceSampleError as exc:
            # Stay up but not ready: the bundle may be pulled after the detector starts.
            state.load_error = str(exc)
            log.error("%s", exc)
        if freeze_gc:
            gc.freeze()
        yield

    app = FastAPI(
        title="winequality drift detector", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.detector = state
    app.state.settings = settings
    set_token(app, settings.admin_token, "set WINEQ_DRIFT_ADMIN_TOKEN on the detector")
    app.include_router(router)
    add_docs(app)
    return app
