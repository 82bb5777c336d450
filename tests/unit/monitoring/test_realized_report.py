"""The drift report shows the serving app's realized quality, read from the app's real metrics
exposition (a real ``ServingMetrics`` registry with a ``QualityMonitor``, served over HTTP on
loopback), and says so when the app cannot be read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import start_http_server
from test_drift_service import make_client, wait_ready

from winequality.monitoring.realized import fetch_realized, parse_exposition
from winequality.process import free_port
from winequality.serving.metrics import ServingMetrics
from winequality.serving.quality import QualityMonitor


def degraded_metrics() -> ServingMetrics:
    """The app's metrics after 300 labels of version 4 whose true quality is 0.5 higher."""
    monitor = QualityMonitor(1000, alpha=1e-3, min_labels=200)
    monitor.use_model("4", 0.7, test_bias=0.0)
    rng = np.random.default_rng(0)
    served = rng.uniform(4, 7, 300)
    labels = served + rng.normal(0, 0.7, 300) + 0.5
    monitor.observe("4", labels.tolist(), served.tolist())
    metrics = ServingMetrics()
    metrics.watch_quality(monitor, lambda _: np.empty(0))
    return metrics


@pytest.fixture
def app_url() -> Iterator[str]:
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", degraded_metrics().registry)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_exposition_is_read_by_model_version() -> None:
    text = degraded_metrics().exposition().decode()
    view = parse_exposition(text, "http://app/metrics")
    assert view.error is None
    assert set(view.versions) == {"4"}
    gauges = view.versions["4"]
    assert gauges["realized_labels"] == 300.0
    assert gauges["champion_test_rmse"] == 0.7
    assert gauges["realized_degraded"] == 1.0
    assert gauges["realized_bias_z"] >= gauges["realized_bias_z_threshold"]
    assert parse_exposition("not { an exposition", "u").error is not None


def test_an_app_that_does_not_answer_is_reported_as_unavailable() -> None:
    view = asyncio.run(fetch_realized(f"http://127.0.0.1:{free_port()}"))
    assert view.versions == {}
    assert view.error is not None


def test_the_report_shows_the_apps_realized_quality_and_decision(
    reference_parquet: Path, app_url: str
) -> None:
    with make_client(reference_parquet, app_url=app_url) as c:
        wait_ready(c)
        page = c.get("/report").text
    assert "Realized quality (feedback labels)" in page
    assert f"{app_url}/metrics" in page
    assert "<td>v4</td><td>300</td>" in page
    assert "DEGRADED" in page
    assert page.index("Sequential decision") < page.index("Realized quality")


def test_without_an_app_url_the_report_has_no_realized_section(reference_parquet: Path) -> None:
    with make_client(reference_parquet) as c:
        wait_ready(c)
        assert "Realized quality" not in c.get("/report").text


def test_an_unreachable_app_is_said_in_the_report(reference_parquet: Path) -> None:
    with make_client(reference_parquet, app_url=f"http://127.0.0.1:{free_port()}") as c:
        wait_ready(c)
        page = c.get("/report").text
    assert "realized quality is unavailable" in page
