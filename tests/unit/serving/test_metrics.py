"""The batch-fed quality histogram follows Prometheus histogram semantics."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest

from winequality.serving.metrics import QUALITY_BUCKETS, ServingMetrics


def sample(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


def test_quality_histogram_counts_values_into_le_buckets() -> None:
    metrics = ServingMetrics()
    metrics.quality.observe(np.array([0.2, 5.0, 5.2, 10.0], dtype=np.float32))
    metrics.quality.observe(np.array([6.7], dtype=np.float32))
    text = generate_latest(metrics.registry).decode()
    assert sample(text, 'winequality_predicted_quality_bucket{le="0.5"}') == 1
    # A value equal to an edge belongs to it ("less than or equal").
    assert sample(text, 'winequality_predicted_quality_bucket{le="5.0"}') == 2
    assert sample(text, 'winequality_predicted_quality_bucket{le="5.5"}') == 3
    assert sample(text, 'winequality_predicted_quality_bucket{le="7.0"}') == 4
    assert sample(text, 'winequality_predicted_quality_bucket{le="10.0"}') == 5
    assert sample(text, 'winequality_predicted_quality_bucket{le="+Inf"}') == 5
    assert sample(text, "winequality_predicted_quality_count") == 5
    assert abs(sample(text, "winequality_predicted_quality_sum") - 27.1) < 1e-4


def buckets(text: str) -> list[float]:
    edges = [*(repr(float(e)) for e in QUALITY_BUCKETS), "+Inf"]
    return [sample(text, f'winequality_predicted_quality_bucket{{le="{e}"}}') for e in edges]


def test_batches_kept_for_counting_are_counted_exactly_whenever_scraped() -> None:
    # observe keeps the arrays and counts them in bulk: every scrape, whether before, at or
    # after a fold, sees each value once, in the bucket a value-by-value count gives.
    metrics = ServingMetrics()
    histogram = metrics.quality
    rng = np.random.default_rng(0)
    sizes = [1, 100, 3, histogram.FOLD_ROWS, 1, *[1] * histogram.FOLD_ARRAYS, 250]
    seen: list[float] = []
    for size in sizes:
        values = rng.uniform(-0.5, 10.5, size).astype(np.float32)
        values[:2] = [np.nan, 5.0][: len(values[:2])]  # NaN counts in +Inf; an edge is "le"
        histogram.observe(values)
        seen.extend(values.tolist())
        assert len(histogram._pending) < histogram.FOLD_ARRAYS
        assert histogram._pending_rows < histogram.FOLD_ROWS
        text = generate_latest(metrics.registry).decode()
        expected = [sum(1 for v in seen if v <= e) for e in QUALITY_BUCKETS] + [len(seen)]
        assert buckets(text) == expected
        assert sample(text, "winequality_predicted_quality_count") == len(seen)
    # The scrapes counted what was pending: nothing is counted twice afterwards.
    assert histogram._pending == []


def test_pending_batches_are_counted_at_the_fold_thresholds_without_a_scrape() -> None:
    histogram = ServingMetrics().quality
    one = np.array([5.0], dtype=np.float32)
    for _ in range(histogram.FOLD_ARRAYS - 1):
        histogram.observe(one)
    assert len(histogram._pending) == histogram.FOLD_ARRAYS - 1
    histogram.observe(one)
    assert histogram._pending == []
    histogram.observe(np.full(histogram.FOLD_ROWS, 5.0, dtype=np.float32))
    assert histogram._pending == []
    assert int(histogram._counts.sum()) == histogram.FOLD_ARRAYS + histogram.FOLD_ROWS


def test_model_info_keeps_only_the_served_model() -> None:
    metrics = ServingMetrics()
    metrics.set_model("wine-quality", "1", "r1", "onnx")
    metrics.set_model("wine-quality", "2", None, "onnx")
    text = metrics.exposition().decode()
    assert 'version="1"' not in text
    assert (
        'winequality_model_info{backend="onnx",name="wine-quality",run_id="",version="2"} 1.0'
        in text
    )


def _without_created(text: str) -> list[str]:
    return [line for line in text.splitlines() if "_created" not in line]


def test_request_metrics_export_what_prometheus_client_counters_and_histograms_export() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from winequality.serving.metrics import LATENCY_BUCKETS, PREFIX

    metrics = ServingMetrics()
    reference = CollectorRegistry()
    requests = Counter(
        f"{PREFIX}_http_requests",
        "HTTP requests answered, by route template, method and status code.",
        ["route", "method", "status"],
        registry=reference,
    )
    latency = Histogram(
        f"{PREFIX}_http_request_duration_seconds",
        "Time from request start to the end of the response, by route template.",
        ["route"],
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    rows = Counter(
        f"{PREFIX}_predicted_rows", "Wines predicted, by route.", ["route"], registry=reference
    )
    hot = metrics.requests.route("/predict")
    # 0.0005 is a bucket bound: it counts in that bucket ("le").
    for n, seconds in ((1, 0.0001), (100, 0.0005), (3, 0.3), (2, 7.0)):
        hot.answered(n, seconds)
        requests.labels("/predict", "POST", 200).inc()
        latency.labels("/predict").observe(seconds)
        rows.labels("/predict").inc(n)
    for route, method, status, seconds in (
        ("/predict", "POST", 422, 0.001),
        ("/x", "GET", 404, 0.02),
    ):
        metrics.observe_request(route, method, status, seconds)
        requests.labels(route, method, status).inc()
        latency.labels(route).observe(seconds)
    ours = [
        line
        for line in _without_created(metrics.exposition().decode())
        if "http_request" in line or "predicted_rows" in line
    ]
    assert ours == _without_created(generate_latest(reference).decode())
    created = [line for line in metrics.exposition().decode().splitlines() if "_created{" in line]
    assert any(
        line.startswith(f"{PREFIX}_http_request_duration_seconds_created") for line in created
    )
