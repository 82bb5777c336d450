"""Prometheus metrics of the serving app, in a registry of its own (one per app instance).

Names (all prefixed ``winequality_``):

- ``http_requests_total{route, method, status}``   requests answered
- ``http_request_duration_seconds{route}``         latency histogram
- ``http_errors_total{route, reason}``             refused or failed requests by cause
- ``predicted_quality``                            histogram of predicted quality scores
- ``predicted_rows_total{route}``                  wines predicted
- ``model_info{name, version, run_id, backend}``   1 for the model being served
- ``model_reloads_total{result}``                  hot swaps (``ok`` / ``refused``)

Realized quality of the served model version, over its latest ``quality_window`` labelled rows
(``serving.quality``; computed at scrape time, never on a request):

- ``realized_labels{model_version}``               labelled rows in the window
- ``realized_rmse`` / ``realized_mae{model_version}``   errors of the served scores (NaN: none)
- ``realized_within_0_5`` / ``realized_within_1_0{model_version}``  share of rows that close
- ``realized_bias{model_version}``                 mean of label - served score
- ``champion_test_rmse`` / ``champion_test_bias{model_version}``  what the bundle states
- ``realized_rmse_z{model_version}``               z of the realized MSE against the test MSE;
  ``realized_rmse_z_threshold`` the sequential boundary it must cross, ``realized_rmse_pvalue``
  its fixed-sample one-sided p-value
- ``realized_bias_z`` / ``realized_bias_z_threshold{model_version}``  the same for the realized
  |bias| against the test |bias| (only when the bundle states its test bias)
- ``realized_degraded{model_version}``             1 when either z crossed its boundary with
  enough labels (the ``WineQualityDegraded`` alert)
- ``prediction_ks{model_version}``                 KS distance of the remembered served scores
  from the model's scores on its reference sample; ``prediction_ks_rows`` their count
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, ClassVar, Final

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from winequality.contract import schema

if TYPE_CHECKING:
    from winequality.serving.quality import QualityMonitor

PREFIX: Final = "winequality"
LATENCY_BUCKETS: Final = (
    0.0002,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
QUALITY_BUCKETS: Final = tuple(float(x) for x in np.arange(0.5, schema.QUALITY_MAX + 0.5, 0.5))


class QualityHistogram(Collector):
    """A histogram fed a whole batch at a time, counted with numpy in bulk.

    ``prometheus_client.Histogram.observe`` takes a lock and walks the buckets per value, which
    for a 100-row request costs more than the rest of its handling. Here ``observe`` only keeps
    the batch's array; the kept arrays are counted together (one ``searchsorted``, ``bincount``
    and sum) once ``FOLD_ROWS`` values or ``FOLD_ARRAYS`` arrays are pending, and when
    scraped. Counting each batch as it came cost 4.9 us for 100 values (numpy's fixed cost per
    call, four calls) and 0.6 us for one (bisected in Python); kept and counted in bulk, 1.0
    and 0.4 us, and the counts stay exact.
    """

    FOLD_ROWS: ClassVar[int] = 4096
    """The pending values are counted once there are this many (a batch may go past it)."""
    FOLD_ARRAYS: ClassVar[int] = 64
    """... or once this many arrays are pending (single rows, mostly)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._edges = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self._edges) + 1, dtype=np.int64)  # last slot: +Inf
        self._sum = 0.0
        self._pending: list[npt.NDArray[np.floating]] = []
        self._pending_rows = 0
        self._lock = threading.Lock()

    def observe(self, values: npt.NDArray[np.floating]) -> None:
        """Count ``values``, a 1-d array the caller no longer changes (it is kept, not copied:
        the served predictions' arrays, as ``serving.recent`` keeps them too)."""
        with self._lock:
            pending = self._pending
            pending.append(values)
            self._pending_rows += len(values)
            if self._pending_rows >= self.FOLD_ROWS or len(pending) >= self.FOLD_ARRAYS:
                self._fold()

    def _fold(self) -> None:
        """Count the pending arrays (the lock held)."""
        pending = self._pending
        if not pending:
            return
        values = pending[0] if len(pending) == 1 else np.concatenate(pending)
        self._pending = []
        self._pending_rows = 0
        # side="left": a value equal to an edge belongs to that bucket (Prometheus "le"); NaN
        # sorts last, into +Inf.
        slots = self._edges.searchsorted(values, "left")
        self._counts += np.bincount(slots, minlength=len(self._counts))
        self._sum += float(values.sum(dtype=np.float64))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._fold()
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [(repr(float(e)), c) for e, c in zip(self._edges, cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)


class RealizedQualityCollector(Collector):
    """Exports ``QualityMonitor``'s window and test, computed when Prometheus scrapes."""

    def __init__(
        self,
        monitor: QualityMonitor,
        served_scores: Callable[[str], npt.NDArray[np.float64]],
    ) -> None:
        self._monitor = monitor
        self._served_scores = served_scores

    def collect(self) -> Iterator[Metric]:
        snap = self._monitor.snapshot()
        if snap is None:
            return
        version = [snap.model_version]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["model_version"])
            family.add_metric(version, value)
            return family

        q = snap.quality
        yield gauge("realized_labels", "Labelled rows in the realized-quality window.", q.labels)
        yield gauge("realized_rmse", "RMSE of the served scores against the labels.", q.rmse)
        yield gauge("realized_mae", "MAE of the served scores against the labels.", q.mae)
        yield gauge(
            "realized_within_0_5", "Share of labelled rows scored within 0.5.", q.within_0_5
        )
        yield gauge(
            "realized_within_1_0", "Share of labelled rows scored within 1.0.", q.within_1_0
        )
        yield gauge("realized_bias", "Mean of label minus served score.", q.bias)
        if snap.test is not None and snap.test_rmse is not None:
            yield gauge(
                "champion_test_rmse", "Test RMSE stated by the served bundle.", snap.test_rmse
            )
            if snap.test_bias is not None:
                yield gauge(
                    "champion_test_bias", "Test bias stated by the served bundle.", snap.test_bias
                )
                yield gauge(
                    "realized_bias_z",
                    "z of the realized |bias| against the test |bias| (one-sided).",
                    snap.test.bias_z,
                )
                yield gauge(
                    "realized_bias_z_threshold",
                    "Sequential boundary realized_bias_z must reach for realized_degraded.",
                    snap.test.bias_z_threshold,
                )
            yield gauge(
                "realized_rmse_z",
                "z of the realized squared errors against the test MSE (one-sided).",
                snap.test.z,
            )
            yield gauge(
                "realized_rmse_z_threshold",
                "Sequential boundary realized_rmse_z must reach for realized_degraded.",
                snap.test.z_threshold,
            )
            yield gauge(
                "realized_rmse_pvalue",
                "p-value of 'realized MSE > test MSE' (one-sided z test).",
                snap.test.p_value,
            )
            yield gauge(
                "realized_degraded",
                "1 when the realized MSE or |bias| is significantly worse than at test time.",
                float(snap.test.degraded),
            )
        served = self._served_scores(snap.model_version)
        yield gauge(
            "prediction_ks",
            "KS distance of recently served scores from the reference-sample scores.",
            self._monitor.distribution_shift(served),
        )
        yield gauge("prediction_ks_rows", "Served scores in the KS statistic.", served.size)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Count:
    """A counter's value and creation time, as plain attributes: incremented by the event loop
    (one thread) without a lock or a method call."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class Latency:
    """One route's latency histogram as plain counts per bucket (the last one: +Inf)."""

    __slots__ = ("bounds", "counts", "created", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


class RouteMetrics:
    """What one hot endpoint's answered request updates, bound once: its 200 counter, its
    latency histogram and its predicted-rows counter (``answered`` is the whole update)."""

    __slots__ = ("latency", "ok", "rows")

    def __init__(self, ok: Count, latency: Latency, rows: Count) -> None:
        self.ok, self.latency, self.rows = ok, latency, rows

    def answered(self, rows: int, seconds: float) -> None:
        self.ok.value += 1
        self.rows.value += rows
        latency = self.latency
        latency.counts[bisect_left(latency.bounds, seconds)] += 1
        latency.total += seconds


class RequestMetrics(Collector):
    """``http_requests_total``, ``http_request_duration_seconds`` and ``predicted_rows_total``:
    plain counts updated by the event loop, turned into metric families when scraped.

    ``prometheus_client``'s own counter and histogram take a lock and go through several calls
    per update, which for a single-row prediction cost as much as its validation; the exposition
    is the same (names, labels, ``_created``, cumulative ``le`` buckets).
    """

    def __init__(self, buckets: Iterable[float]) -> None:
        self._bounds = sorted(float(b) for b in buckets)
        self._requests: dict[tuple[str, str, int], Count] = {}
        self._latency: dict[str, Latency] = {}
        self._rows: dict[str, Count] = {}

    def request(self, route: str, method: str, status: int) -> Count:
        key = (route, method, status)
        count = self._requests.get(key)
        if count is None:
            count = self._requests[key] = Count()
        return count

    def latency(self, route: str) -> Latency:
        found = self._latency.get(route)
        if found is None:
            found = self._latency[route] = Latency(self._bounds)
        return found

    def rows(self, route: str) -> Count:
        count = self._rows.get(route)
        if count is None:
            count = self._rows[route] = Count()
        return count

    def route(self, route: str, method: str = "POST") -> RouteMetrics:
        return RouteMetrics(self.request(route, method, 200), self.latency(route), self.rows(route))

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            labels=["route", "method", "status"],
        )
        # list(): a snapshot, should a scrape ever run beside the loop adding a label set.
        for (route, method, status), count in list(self._requests.items()):
            requests.add_metric([route, method, str(status)], count.value, created=count.created)
        yield requests
        latency = HistogramMetricFamily(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            labels=["route"],
        )
        edges = [*map(floatToGoString, self._bounds), "+Inf"]
        for route, histogram in list(self._latency.items()):
            cumulative = list(accumulate(list(histogram.counts)))
            latency.add_metric([route], list(zip(edges, cumulative, strict=True)), histogram.total)
            # HistogramMetricFamily has no created argument; prometheus_client's Histogram
            # exports one, so the families stay the same.
            latency.samples.append(
                Sample(f"{latency.name}_created", {"route": route}, histogram.created)
            )
        yield latency
        rows = CounterMetricFamily(
            f"{PREFIX}_predicted_rows", "Wines predicted, by route.", labels=["route"]
        )
        for route, count in list(self._rows.items()):
            rows.add_metric([route], count.value, created=count.created)
        yield rows

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(f"{PREFIX}_http_requests", "")
        yield HistogramMetricFamily(f"{PREFIX}_http_request_duration_seconds", "")
        yield CounterMetricFamily(f"{PREFIX}_predicted_rows", "")


class ServingMetrics:
    """All metrics of one app; a hot endpoint binds its ``RouteMetrics`` once
    (``requests.route``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics(LATENCY_BUCKETS)
        self.registry.register(self.requests)
        self.errors = Counter(
            f"{PREFIX}_http_errors",
            "Requests refused (4xx) or failed (5xx), by route and cause.",
            ["route", "reason"],
            registry=self.registry,
        )
        self.quality = QualityHistogram(
            f"{PREFIX}_predicted_quality",
            "Predicted quality scores (0-10).",
            QUALITY_BUCKETS,
        )
        self.registry.register(self.quality)
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "1 for the model being served (labels identify it).",
            ["name", "version", "run_id", "backend"],
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{PREFIX}_model_reloads",
            "Model hot swaps, by result (ok, refused).",
            ["result"],
            registry=self.registry,
        )
        self._model_labels: tuple[str, str, str, str] | None = None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.request(route, method, status).value += 1
        self.requests.latency(route).observe(seconds)

    def set_model(self, name: str, version: str, run_id: str | None, backend: str) -> None:
        labels = (name, version, run_id or "", backend)
        if self._model_labels is not None and self._model_labels != labels:
            self.model_info.remove(*self._model_labels)
        self.model_info.labels(*labels).set(1)
        self._model_labels = labels

    def watch_quality(
        self,
        monitor: QualityMonitor,
        served_scores: Callable[[str], npt.NDArray[np.float64]],
    ) -> None:
        """Export ``monitor``'s realized quality (``served_scores``: remembered scores by
        version, for the distribution statistic)."""
        self.registry.register(RealizedQualityCollector(monitor, served_scores))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
