"""The drift detector service: CloudEvents in, Prometheus drift metrics out.

Receives inference payloads as CloudEvents over HTTP in any content mode of the binding: binary
(``Ce-*`` headers, the request payload as body: what Seldon's request logger sends), structured
(``application/cloudevents+json``) and batched (``application/cloudevents-batch+json``, a JSON
array of structured events: what our app's payload logger sends by default). So both our app and
a SeldonDeployment ``logger`` can point at it. A batch is all or nothing: every element is
validated before any row is applied, and a bad element refuses the batch with a 4xx naming its
index and reason. Rows accumulate in a tumbling window (closed by row count, or also by time with
``drift.window_seconds``); every closed window is tested against the reference sample.

Each window's result stays visible (``seldon_metric_drift_is_drift``, p-values, distances), but
``seldon_metric_drift_found`` is the sequential decision of ``monitoring.sequential``: one CUSUM
chart per test over the windows' scores (``winequality_drift_cusum{test}``), 1 while a chart is
above its threshold (``winequality_drift_cusum_threshold``, calibrated for the false-alarm budget
``drift.false_alarm_rows``), back to 0 when traffic looks like the reference again or the
reference is reloaded (``POST /reference/reload``, done after a retraining). The charts and the
decision history persist in ``settings.state_file`` (``monitoring.decisions``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import gc
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import chain, compress
from operator import itemgetter, methodcaller
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
from winequality.http_common import (
    BodyTimeoutError,
    BodyTooLargeError,
    TokenDep,
    install_error_handling,
    read_request_body,
    set_token,
    token_dependency,
)
from winequality.monitoring import openapi, sequential
from winequality.monitoring.decisions import (
    DecisionLog,
    SnapshotWriter,
    read_snapshot,
    snapshot_document,
)
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
from winequality.monitoring.sequential import (
    Calibration,
    SequentialState,
    WindowBuffer,
    WindowPolicy,
)
from winequality.params import DriftParams
from winequality.rate_limit import CallerLimiter, limit_dependency, set_limit
from winequality.settings import DetectorSettings

log = logging.getLogger("winequality.drift")

CE_REQUEST: Final = "io.seldon.serving.inference.request"
CE_RESPONSE: Final = "io.seldon.serving.inference.response"
REQUIRED_CE_HEADERS: Final = ("ce-id", "ce-specversion", "ce-source", "ce-type")
REQUIRED_ATTRIBUTES: Final = ("id", "source", "specversion", "type")
BATCH_MEDIA_TYPE: Final = "application/cloudevents-batch+json"
STRUCTURED_MEDIA_TYPE: Final = "application/cloudevents+json"
STATE_FILE: Final = "drift-state.json"
"""The persisted state's name beside the reference unless ``settings.state_file`` says."""
MAX_LISTED_ERRORS: Final = 20
"""A refused batch names at most this many bad elements (the count says how many there were)."""


class DriftMetrics:
    """Prometheus metrics of one detector instance (own registry: several apps per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.drift_found = Gauge(
            "seldon_metric_drift_found",
            "The sequential decision (the alert metric): 1 while drift is confirmed by a CUSUM "
            "chart above its threshold, 0 once the charts fall back or the reference is reloaded.",
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
        self.cusum = Gauge(
            "winequality_drift_cusum",
            "CUSUM chart of each test's window scores (the sequential statistic).",
            ["test"],
            registry=r,
        )
        self.cusum_threshold = Gauge(
            "winequality_drift_cusum_threshold",
            "Threshold of the CUSUM charts, calibrated for drift.false_alarm_rows.",
            registry=r,
        )
        self.alarms = Counter(
            "winequality_drift_alarms", "Alarms raised by the sequential decision.", registry=r
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
        self.rate_limited = Counter(
            "wineq_drift_rate_limited_posts",
            "Ingestion POSTs refused 429 by the per-caller rate limit, before their body was read "
            "(their events are in no other count).",
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
        self._per_test: dict[Gauge, list[Gauge]] = {}

    def per_test(self, gauge: Gauge) -> list[Gauge]:
        """``gauge``'s child of every test, in ``TEST_NAMES`` order: looked up once, not four
        ``labels()`` calls per test and window."""
        children = self._per_test.get(gauge)
        if children is None:
            children = self._per_test[gauge] = [gauge.labels(n) for n in TEST_NAMES]
        return children

    def clear_tests(self) -> None:
        """Drop the per-test series (a new reference: none of them describes it yet)."""
        for gauge in (self.p_val, self.distance, self.threshold, self.cusum):
            gauge.clear()
        self._per_test.clear()


_CALIBRATIONS: dict[str, Calibration] = {}
"""Calibrations by fingerprint: deterministic, so reloading the same reference (or a second
app in one process) reuses one instead of recomputing it (seconds)."""
_MAX_CALIBRATIONS: Final = 8


def calibration_for(reference: Reference, params: DriftParams) -> Calibration:
    """The threshold for this reference and parameters (cached; slow when computed)."""
    key = sequential.fingerprint(reference, params)
    cached = _CALIBRATIONS.get(key)
    if cached is None:
        cached = sequential.calibrate(reference, params)
        if len(_CALIBRATIONS) >= _MAX_CALIBRATIONS:
            _CALIBRATIONS.pop(next(iter(_CALIBRATIONS)))
        _CALIBRATIONS[key] = cached
    return cached


@dataclass
class DetectorState:
    """Window buffer, latest result, sequential decision and metrics; mutated only from the
    event loop thread (calibration runs in a worker thread and is applied on the loop)."""

    params: DriftParams
    reference_path: Path
    state_file: Path | None = None
    """Where the sequential state and the decision history persist (None: not persisted)."""
    metrics: DriftMetrics = field(default_factory=DriftMetrics)
    reference: Reference | None = None
    load_error: str | None = None
    window: WindowBuffer = field(init=False)
    last_window: tuple[FloatArray, BoolArray] | None = None
    latest: DriftResult | None = None
    windows: int = 0
    calibration: Calibration | None = None
    """None while the threshold of the loaded reference is being calibrated."""
    sequential: SequentialState | None = None
    history: DecisionLog = field(default_factory=DecisionLog)
    pending: list[tuple[DriftResult, int, float]] = field(default_factory=list)
    """Windows closed before the calibration was ready, stepped once it is."""
    writer: SnapshotWriter | None = None

    def __post_init__(self) -> None:
        self.window = WindowBuffer(WindowPolicy.from_params(self.params), len(TEST_NAMES) - 1)
        if self.state_file is not None:
            self.writer = SnapshotWriter(self.state_file)

    @property
    def fill(self) -> int:
        return self.window.fill

    @property
    def drift_found(self) -> bool:
        return self.sequential is not None and self.sequential.alarm

    def load(self) -> Reference:
        """(Re)load the reference and calibrate in this thread (benchmarks, scripts): the
        service uses ``read_reference`` + ``calibration_for`` in a worker + ``activate``."""
        reference = load_reference(self.reference_path)
        self.activate(reference, calibration_for(reference, self.params))
        return reference

    def begin(self, reference: Reference) -> None:
        """Start on ``reference`` before its calibration is ready (windows wait in pending)."""
        self._install(reference)
        self.calibration, self.sequential = None, None

    def activate(
        self,
        reference: Reference,
        calibration: Calibration,
        saved: Mapping[str, Any] | None = None,
    ) -> None:
        """Put ``reference`` in force with its calibration: the window and the charts start
        over (a reload), or continue from ``saved`` when it was computed under the same one
        (a restart). Windows that closed while calibrating are stepped now."""
        if self.reference is not reference:
            self._install(reference)
        if self.sequential is not None and self.sequential.alarm:
            self.history.reloaded(time.time(), self.sequential.windows)
        state = sequential.initial_state(calibration)
        if saved is not None and saved.get("calibration", {}).get("fingerprint") == (
            calibration.fingerprint
        ):
            try:
                state = sequential.restore(saved.get("state"), calibration)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("saved sequential state is unusable, starting over: %s", exc)
        self.calibration, self.sequential = calibration, state
        m = self.metrics
        m.cusum_threshold.set(calibration.threshold)
        m.drift_found.set(int(state.alarm))
        for name, value in zip(TEST_NAMES, state.statistics, strict=True):
            m.cusum.labels(test=name).set(value)
        pending, self.pending = self.pending, []
        for result, rows, closed_at in pending:
            self._step(result, rows, closed_at)
        self.save()

    def _install(self, reference: Reference) -> None:
        self.reference, self.load_error = reference, None
        self.window.reset()
        self.last_window, self.latest, self.pending = None, None, []
        m = self.metrics
        m.drift_found.set(0)
        m.is_drift.set(0)
        m.window_fill.set(0)
        m.reference_rows.set(reference.size)
        m.clear_tests()

    def add_rows(self, features: FloatArray, is_white: BoolArray) -> list[DriftResult]:
        """Append rows; test every window that closes (a big batch may close several)."""
        if self.reference is None:
            raise ReferenceSampleError("no reference loaded")
        closed = self.window.add(features, is_white, time.monotonic())
        results = [self._close(window) for window in closed]
        self.metrics.rows.inc(features.shape[0])
        self.metrics.window_fill.set(self.window.fill)
        if results:
            self.save()
        return results

    def tick(self) -> DriftResult | None:
        """Close the current window if it is due by time (``drift.window_seconds``)."""
        if self.reference is None:
            return None
        window = self.window.tick(time.monotonic())
        if window is None:
            return None
        result = self._close(window)
        self.metrics.window_fill.set(self.window.fill)
        self.save()
        return result

    def _close(self, window: tuple[FloatArray, BoolArray]) -> DriftResult:
        assert self.reference is not None
        result = detect(self.reference, *window, self.params)
        self.last_window = window
        m = self.metrics
        self.latest, self.windows = result, self.windows + 1
        m.windows.inc()
        m.is_drift.set(int(result.is_drift))
        if result.is_drift:
            m.drifted_windows.inc()
        for name, p_val, distance, threshold in zip(
            TEST_NAMES,
            m.per_test(m.p_val),
            m.per_test(m.distance),
            m.per_test(m.threshold),
            strict=True,
        ):
            p_val.set(result.p_values[name])
            distance.set(result.distances[name])
            threshold.set(result.corrected_threshold)
        rows = int(window[0].shape[0])
        if self.calibration is None:
            self.pending.append((result, rows, time.time()))
        else:
            self._step(result, rows, time.time())
        return result

    def _step(self, result: DriftResult, rows: int, closed_at: float) -> None:
        assert self.calibration is not None
        assert self.sequential is not None
        before = self.sequential
        after = sequential.step(before, sequential.result_scores(result), rows, self.calibration)
        self.sequential = after
        m = self.metrics
        for chart, value in zip(m.per_test(m.cusum), after.statistics, strict=True):
            chart.set(value)
        m.drift_found.set(int(after.alarm))
        source = "" if self.reference is None else self.reference.source
        self.history.observe(
            result,
            rows=rows,
            before=before,
            after=after,
            calibration=self.calibration,
            reference_source=source,
            now=closed_at,
        )
        if after.alarm and not before.alarm:
            m.alarms.inc()
            log.warning(
                "drift confirmed at window %d (row %d) by %s",
                after.windows,
                after.rows,
                ", ".join(after.raised_by),
            )
        elif before.alarm and not after.alarm:
            log.warning("drift cleared at window %d: traffic back to the reference", after.windows)

    def save(self) -> None:
        """Hand the current state to the writer thread (the newest document wins); nothing
        before a calibration is in force (what is on disk stays the best there is)."""
        if self.writer is not None and self.sequential is not None:
            self.writer.submit(snapshot_document(self.calibration, self.sequential, self.history))

    def live_rows(self) -> tuple[FloatArray, BoolArray]:
        """Rows of the report: the last full window, else what the current window holds."""
        if self.last_window is not None:
            return self.last_window
        return self.window.rows()

    def decision(self) -> dict[str, Any]:
        """The sequential decision as ``/drift`` shows it."""
        cal, st = self.calibration, self.sequential
        return {
            "calibrated": cal is not None,
            "threshold": None if cal is None else cal.threshold,
            "k": self.params.cusum_k,
            "budget_rows": self.params.false_alarm_rows,
            "expected_false_alarm_rows": (
                None
                if cal is None or not math.isfinite(cal.expected_false_alarm_rows)
                else cal.expected_false_alarm_rows
            ),
            "statistics": None if st is None else dict(zip(TEST_NAMES, st.statistics, strict=True)),
            "alarm": self.drift_found,
            "raised_at_row": None if st is None else st.raised_at_row,
            "raised_by": [] if st is None else list(st.raised_by),
            "windows": 0 if st is None else st.windows,
            "rows": 0 if st is None else st.rows,
            "pending_windows": len(self.pending),
        }


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
    except BodyTimeoutError as exc:
        raise EventRejectedError(exc.status, exc.reason, exc.message) from exc


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
        except (binascii.Error, ValueError):  # ValueError: a str with non-ASCII characters
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


@dataclass(frozen=True, slots=True)
class ParsedEvents:
    """A validated event or batch: how many events, how many of them requests, their rows."""

    events: int
    requests: int
    rows: Rows


_ENVELOPE: Final = itemgetter(*REQUIRED_ATTRIBUTES)
_DATA: Final = itemgetter("data")
_CONTENT_TYPE: Final = methodcaller("get", "datacontenttype")
_DATA_BASE64: Final = methodcaller("get", "data_base64")


def _parse_events(raw: bytes, batched: bool) -> ParsedEvents:
    """A batch (a JSON array) or one structured event -> its events and the rows of its request
    events, in order; one bad element refuses the whole batch, naming every bad element."""
    doc = _parse_json(raw)
    if not batched:
        event = _structured_event(doc, None)
        is_request = event.type == CE_REQUEST
        return ParsedEvents(1, int(is_request), _rows(event.data) if is_request else _NO_ROWS)
    if not isinstance(doc, list):
        raise EventRejectedError(
            400, "not_batch", f"a batch must be a JSON array of events, got {type(doc).__name__}"
        )
    return _app_batch(doc) or _each_event(doc)


def _each_event(doc: list[Any]) -> ParsedEvents:
    """A batch read event by event: what ``_app_batch`` does not take, and every bad element
    named."""
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
    rows = None if errors or not requests else rows_from_app_payloads([d for _, d in requests])
    if rows is not None:
        return ParsedEvents(len(doc), len(requests), rows)
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
    return ParsedEvents(len(doc), len(requests), (features, np.concatenate([r[1] for r in each])))


def _app_batch(doc: list[Any]) -> ParsedEvents | None:
    """What ``_structured_event`` and ``rows_from_app_payloads`` accept of a batch like the
    app's payload logger sends (JSON ``data``, app ``/predict`` bodies), checked a column at a
    time (``map`` runs in C) instead of an event at a time; None when anything needs a closer
    look (the event by event path then names what is wrong, or reads what this one skips)."""
    requests = _valid_requests(doc)
    if requests is None:
        return None
    try:
        bodies = list(map(_DATA, requests))
    except KeyError:
        return None
    rows = rows_from_app_payloads(bodies)
    return None if rows is None else ParsedEvents(len(doc), len(requests), rows)


def _valid_requests(doc: list[Any]) -> list[dict[str, Any]] | None:
    """The request events of a batch whose envelopes are all valid, or None."""
    if not doc or set(map(type, doc)) != {dict}:
        return None
    try:
        envelopes = list(map(_ENVELOPE, doc))
    except KeyError:
        return None
    values = list(chain.from_iterable(envelopes))
    if set(map(type, values)) != {str} or "" in values:
        return None
    types = values[REQUIRED_ATTRIBUTES.index("type") :: len(REQUIRED_ATTRIBUTES)]
    versions = values[REQUIRED_ATTRIBUTES.index("specversion") :: len(REQUIRED_ATTRIBUTES)]
    if len(set(versions)) != 1 or not set(types) <= {CE_REQUEST, CE_RESPONSE}:
        return None
    requests = list(compress(doc, map(CE_REQUEST.__eq__, types)))
    # data_base64 (decoded one by one) and media types are rare: checked once per distinct one.
    content_types = list(map(_CONTENT_TYPE, requests))
    if (
        not requests
        or list(map(_DATA_BASE64, requests)).count(None) != len(requests)
        or not set(map(type, content_types)) <= {str, type(None)}
        or not all(c is None or _is_json_media_type(c) for c in set(content_types))
    ):
        return None
    return requests


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
    return _apply(st, _parse_events(raw, batched=batched))


def _apply(st: DetectorState, parsed: ParsedEvents) -> dict[str, Any]:
    """Apply validated events: count them, add their requests' rows to the window."""
    n_requests, n_responses = parsed.requests, parsed.events - parsed.requests
    if n_requests and st.reference is None:
        raise EventRejectedError(503, "no_reference", f"no reference loaded: {st.load_error}")
    features, is_white = parsed.rows
    results = st.add_rows(features, is_white) if features.shape[0] else []
    if n_requests:
        st.metrics.events.labels(kind="request").inc(n_requests)
    if n_responses:
        st.metrics.events.labels(kind="response").inc(n_responses)
    return {
        "events": parsed.events,
        "requests": n_requests,
        "responses": n_responses,
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


INGEST: Final = "ingest"
"""The name of the ingestion token and limit (``WINEQ_DRIFT_INGEST_TOKEN``)."""


# The token, then the caller's rate, both before a byte of the body is read.
@router.post(
    "/",
    dependencies=[Depends(token_dependency(INGEST)), Depends(limit_dependency(INGEST))],
    **openapi.RECEIVE_EVENT,
)
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


@router.get("/metrics", response_class=Response, **openapi.METRICS)
async def metrics(st: StateDep) -> Response:
    """Prometheus exposition of the drift metrics."""
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/drift")
async def drift(st: StateDep) -> dict[str, Any]:
    """The latest window, the sequential decision and its history (windows and alarms)."""
    return {
        "drift_found": st.drift_found,
        "latest": None if st.latest is None else st.latest.model_dump(),
        "windows_tested": st.windows,
        "window_fill": st.fill,
        "window_size": st.params.window_size,
        "window_seconds": st.params.window_seconds,
        "reference": None if st.reference is None else st.reference.source,
        "reference_rows": None if st.reference is None else st.reference.size,
        "sequential": st.decision(),
        "history": [w.model_dump() for w in st.history.recent()],
        "alarms": [a.model_dump() for a in st.history.alarms],
    }


@router.get("/report", response_class=HTMLResponse)
async def report(request: Request, st: StateDep) -> Response:
    """HTML report: the decision history, then reference vs live distributions per feature."""
    if st.reference is None:
        return _problem(503, f"no reference loaded: {st.load_error}")
    from winequality.monitoring.realized import fetch_realized
    from winequality.monitoring.report import render_report

    # A snapshot taken on the event loop; the plotting (slow) runs in a worker thread.
    features, is_white = st.live_rows()
    history = DecisionLog(windows=st.history.recent(), alarms=list(st.history.alarms))
    app_url = request.app.state.settings.app_url
    realized = None if app_url is None else await fetch_realized(app_url)
    render = functools.partial(
        render_report, history=history, decision=st.decision(), realized=realized
    )
    html = await run_in_threadpool(render, st.reference, features, is_white, st.latest)
    return HTMLResponse(html)


@router.post("/reference/reload", **openapi.RELOAD_REFERENCE)
async def reload_reference(request: Request, st: StateDep, _: TokenDep) -> Response:
    """Reload the reference (after a retraining): resets the window and the sequential charts.

    A new reference is calibrated first (in a worker thread, seconds); the previous one stays in
    force meanwhile, so the answer comes once the new one is.
    """
    lock: asyncio.Lock = request.app.state.reload_lock
    async with lock:
        try:
            reference = load_reference(st.reference_path)
            calibration = await asyncio.to_thread(calibration_for, reference, st.params)
        except ReferenceSampleError as exc:
            return _problem(409, f"reload failed, previous reference kept: {exc}")
        except ValueError as exc:
            return _problem(409, f"reload failed, previous reference kept: calibration: {exc}")
        st.activate(reference, calibration)
    st.metrics.reloads.inc()
    return JSONResponse(
        {
            "reloaded": reference.source,
            "reference_rows": reference.size,
            "threshold": calibration.threshold,
        }
    )


@router.get("/health/ready", **openapi.READY)
async def ready(st: StateDep) -> Response:
    """Ready once a reference is loaded and its sequential threshold calibrated."""
    if st.reference is None:
        return _problem(503, f"no reference loaded: {st.load_error}")
    if st.calibration is None:
        return _problem(
            503, st.load_error or "calibrating the sequential drift threshold for the reference"
        )
    return JSONResponse({"status": "ready", "reference_rows": st.reference.size})


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


def _start(state: DetectorState) -> Reference | None:
    """Read the persisted state and the reference; resume at once when the saved calibration
    applies (the common restart). Returns the reference when it still needs calibrating."""
    saved, state.history = read_snapshot(state.state_file)
    try:
        reference = load_reference(state.reference_path)
        log.info("reference loaded from %s (%d rows)", state.reference_path, reference.size)
    except ReferenceSampleError as exc:
        # Stay up but not ready: the bundle may be pulled after the detector starts.
        state.load_error = str(exc)
        log.error("%s", exc)
        return None
    state.begin(reference)
    calibration = _saved_calibration(saved, reference, state.params)
    if calibration is None:
        return reference
    state.activate(reference, calibration, saved)
    log.info("sequential state resumed from %s", state.state_file)
    return None


async def _calibrate(state: DetectorState, reference: Reference, lock: asyncio.Lock) -> None:
    """Calibrate in a worker thread (the event loop keeps accepting events), then activate."""
    async with lock:
        try:
            calibration = await asyncio.to_thread(calibration_for, reference, state.params)
        except ValueError as exc:
            state.load_error = f"calibration failed: {exc}"
            log.error("%s", state.load_error)
            return
        log.info(
            "sequential threshold %.2f calibrated in %.1f s for %d rows between false alarms",
            calibration.threshold,
            calibration.seconds,
            calibration.budget_rows,
        )
        if state.reference is reference:  # not replaced by a reload meanwhile
            state.activate(reference, calibration)


async def _ticker(state: DetectorState, seconds: float) -> None:
    """Close windows due by time when no rows arrive (``drift.window_seconds``)."""
    while True:
        await asyncio.sleep(seconds)
        state.tick()


def create_app(
    settings: DetectorSettings,
    params: DriftParams,
    reference_path: Path,
    *,
    freeze_gc: bool = False,
) -> FastAPI:
    """The detector ASGI app; the reference is loaded in ``lifespan`` and on reload.

    At start the persisted state (``settings.state_file``) is read: under the same
    reference and parameters its calibration and charts are reused, so a restart neither hides
    nor invents an alarm; otherwise the threshold is calibrated in a worker thread while events
    are already accepted (their windows are stepped once it is ready) and ``/health/ready``
    answers 503 until then.

    ``freeze_gc`` (the server entry point sets it): everything alive once started (imports, the
    reference) lives as long as the process; out of the collector's sight, a batch's thousands
    of parsed events no longer make every collection walk it too (``benchmarks/drift.py``
    measures the gain).
    """
    state_file = settings.state_file or reference_path.with_name(STATE_FILE)
    state = DetectorState(params=params, reference_path=reference_path, state_file=state_file)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        to_calibrate = _start(state)
        lock = app.state.reload_lock
        tasks: list[asyncio.Task[None]] = []
        if to_calibrate is not None:
            tasks.append(asyncio.create_task(_calibrate(state, to_calibrate, lock)))
        if params.window_seconds is not None:
            tasks.append(asyncio.create_task(_ticker(state, min(1.0, params.window_seconds / 4))))
        if freeze_gc:
            gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.save()
            if state.writer is not None:
                state.writer.close()

    app = FastAPI(
        title="winequality drift detector", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.detector = state
    app.state.settings = settings
    app.state.reload_lock = asyncio.Lock()
    set_token(app, settings.admin_token, "set WINEQ_DRIFT_ADMIN_TOKEN on the detector")
    set_token(
        app,
        settings.ingest_token,
        "set WINEQ_DRIFT_INGEST_TOKEN",
        name=INGEST,
        open_when_unset=True,
    )
    if not settings.ingest_token:
        log.warning(
            "WINEQ_DRIFT_INGEST_TOKEN is not set: anyone who can reach POST / can feed the drift "
            "windows (acceptable in development only)"
        )
    limiter = CallerLimiter(
        settings.ingest_rate_per_s,
        settings.ingest_burst,
        on_refused=state.metrics.rate_limited.inc,
    )
    set_limit(app, INGEST, limiter)
    app.include_router(router)
    add_docs(app)
    install_error_handling(app)
    return app


def _saved_calibration(
    saved: Mapping[str, Any] | None, reference: Reference, params: DriftParams
) -> Calibration | None:
    """The persisted calibration if it was computed for this reference and these parameters."""
    if saved is None:
        return None
    try:
        calibration = Calibration.from_dict(saved["calibration"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("saved calibration is unusable, recalibrating: %s", exc)
        return None
    if calibration.fingerprint != sequential.fingerprint(reference, params):
        return None
    return calibration
