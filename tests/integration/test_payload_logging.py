"""Payload logging end to end: the app under uvicorn -> CloudEvents -> the real drift detector.

The detector is ``winequality drift serve`` on a loopback port with a reference sample of the
real wines; the slow detector is a small real HTTP server that sleeps before answering. The
delivery tests run in both content modes: batched (the app's default) and binary
(``WINEQ_PAYLOAD_BATCH_MAX=1``, what Seldon's own request logger sends).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

WINDOW = 100
MODES = pytest.mark.parametrize("batch_max", ["256", "1"], ids=["batched", "binary"])
COLUMNS = [*schema.FEATURE_NAMES, schema.WINE_TYPE]


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


def scrape(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=5).text


@pytest.fixture(scope="module")
def reference_dir(
    tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("detector")
    real_wines.sample(1000, random_state=0).to_parquet(root / "reference.parquet")
    params = root / "params.yaml"
    params.write_text(f"drift:\n  window_size: {WINDOW}\n  p_val: 0.05\n")
    return root / "reference.parquet", params


INGEST_TOKEN = "ingest-s3cret"


def detector_process(
    log_dir: Path, port: int, reference: tuple[Path, Path], **env: str
) -> ManagedProcess:
    ref, params = reference
    cmd = [
        sys.executable, "-m", "winequality.cli", "drift", "serve",
        "--reference", str(ref), "--params", str(params), "--port", str(port),
    ]  # fmt: skip
    return ManagedProcess(
        "detector", cmd, log_dir / f"detector-{port}.log", env={**os.environ, **env}
    )


def app_process(log_dir: Path, bundle: Path, detector_url: str, **env: str) -> ManagedProcess:
    port = free_port()
    cmd = [
        sys.executable, "-m", "winequality.serving", "--model-dir", str(bundle),
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = ManagedProcess(
        "app",
        cmd,
        log_dir / f"app-{port}.log",
        env={**os.environ, "WINEQ_DETECTOR_URL": detector_url, **env},
    )
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return process


def ready(process: ManagedProcess) -> str:
    """Wait until the (started) app answers; its base URL."""
    url: str = process.url  # type: ignore[attr-defined]
    process.wait_ready(url=url + "/health/ready", timeout=60)
    return url


def wines(real_wines: pd.DataFrame, n: int, seed: int) -> list[dict[str, Any]]:
    frame = real_wines.sample(n, random_state=seed).loc[:, COLUMNS]
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def v2_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = [
        {"name": n, "shape": [len(rows), 1], "datatype": "FP32", "data": [r[n] for r in rows]}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "shape": [len(rows), 1],
            "datatype": "BYTES",
            "data": [r[schema.WINE_TYPE] for r in rows],
        }
    )
    return {"inputs": inputs}


@MODES
def test_predictions_reach_the_real_detector_as_cloudevents(
    tmp_path: Path,
    serving_bundles: dict[str, Path],
    reference_dir: tuple[Path, Path],
    real_wines: pd.DataFrame,
    batch_max: str,
) -> None:
    det_port = free_port()
    det_url = f"http://127.0.0.1:{det_port}"
    # Both with the ingestion token: the detector requires it, the app's logger sends it.
    token = {"WINEQ_DRIFT_INGEST_TOKEN": INGEST_TOKEN}
    detector = detector_process(tmp_path, det_port, reference_dir, **token)
    app = app_process(
        tmp_path, serving_bundles["1"], det_url, WINEQ_PAYLOAD_BATCH_MAX=batch_max, **token
    )
    with detector, app:
        detector.wait_ready(url=f"{det_url}/health/ready", timeout=60)
        app_url = ready(app)
        with httpx.Client(base_url=app_url, timeout=10) as client:
            for i, n in enumerate((60, 30, 10)):
                response = client.post("/predict", json={"wines": wines(real_wines, n, i)})
                assert response.status_code == 200
            response = client.post(
                f"/v2/models/{schema.MODEL_NAME}/infer", json=v2_body(wines(real_wines, 20, 9))
            )
            assert response.status_code == 200

        wait_for(
            lambda: metric(scrape(det_url), "wineq_drift_rows_total") == 120,
            what="the detector to receive 120 rows",
        )
        detector_metrics = scrape(det_url)
        assert metric(detector_metrics, "wineq_drift_events_total", kind="request") == 4
        wait_for(
            lambda: metric(scrape(det_url), "wineq_drift_events_total", kind="response") == 4,
            what="the 4 response events",
        )
        assert metric(scrape(det_url), "wineq_drift_rejected_events_total") == 0
        drift = httpx.get(f"{det_url}/drift", timeout=5).json()
        assert drift["windows_tested"] == 1  # 120 rows: one full window of 100
        assert drift["window_fill"] == 20
        assert set(drift["latest"]["p_values"]) >= set(schema.FEATURE_NAMES)

        # The app counts a POST only once it has read the detector's answer, after the
        # detector counted it: wait for the app's count rather than read it once.
        def app_sent() -> bool:
            app_metrics = scrape(app_url)
            return all(
                metric(app_metrics, "winequality_payloads_sent_total", type=kind) == 4
                for kind in ("request", "response")
            )

        wait_for(app_sent, what="the app to count the 4 request and 4 response events sent")
        assert metric(scrape(app_url), "winequality_payloads_dropped_total") == 0


@MODES
def test_an_app_without_the_ingestion_token_feeds_no_row_to_the_detector(
    tmp_path: Path,
    serving_bundles: dict[str, Path],
    reference_dir: tuple[Path, Path],
    real_wines: pd.DataFrame,
    batch_max: str,
) -> None:
    det_port = free_port()
    det_url = f"http://127.0.0.1:{det_port}"
    detector = detector_process(
        tmp_path, det_port, reference_dir, WINEQ_DRIFT_INGEST_TOKEN=INGEST_TOKEN
    )
    app = app_process(
        tmp_path,
        serving_bundles["1"],
        det_url,
        WINEQ_PAYLOAD_BATCH_MAX=batch_max,
        WINEQ_DRIFT_INGEST_TOKEN="not-the-token",
    )
    with detector, app:
        detector.wait_ready(url=f"{det_url}/health/ready", timeout=60)
        app_url = ready(app)
        with httpx.Client(base_url=app_url, timeout=10) as client:
            for i in range(3):
                response = client.post("/predict", json={"wines": wines(real_wines, 10, i)})
                assert response.status_code == 200  # a refused delivery fails no prediction
        wait_for(
            lambda: (
                metric(scrape(app_url), "winequality_payloads_dropped_total", reason="rejected") > 0
            ),
            what="the refused deliveries to be counted",
        )
        assert metric(scrape(det_url), "wineq_drift_rows_total") == 0
        assert metric(scrape(det_url), "wineq_drift_events_total", kind="request") == 0


def test_detector_down_then_back_predictions_never_fail_and_delivery_resumes(
    tmp_path: Path,
    serving_bundles: dict[str, Path],
    reference_dir: tuple[Path, Path],
    real_wines: pd.DataFrame,
) -> None:
    det_port = free_port()
    det_url = f"http://127.0.0.1:{det_port}"
    app = app_process(tmp_path, serving_bundles["1"], det_url)
    with app:
        app_url = ready(app)
        with httpx.Client(base_url=app_url, timeout=10) as client:
            body = {"wines": wines(real_wines, 5, 1)}
            for _ in range(20):
                assert client.post("/predict", json=body).status_code == 200
            wait_for(
                lambda: (
                    metric(
                        scrape(app_url), "winequality_payloads_dropped_total", reason="unreachable"
                    )
                    > 0
                ),
                what="drops counted as unreachable",
            )
            assert metric(scrape(app_url), "winequality_payloads_sent_total", type="request") == 0

            with detector_process(tmp_path, det_port, reference_dir) as detector:
                detector.wait_ready(url=f"{det_url}/health/ready", timeout=60)

                # Keep predicting until the logger's back-off ends and events flow again.
                def delivered() -> bool:
                    assert client.post("/predict", json=body).status_code == 200
                    return metric(scrape(det_url), "wineq_drift_rows_total") > 0

                wait_for(delivered, what="delivery to resume once the detector is back")
                # Counted by the app once it read the detector's answer: it may lag the detector.
                wait_for(
                    lambda: (
                        metric(scrape(app_url), "winequality_payloads_sent_total", type="request")
                        > 0
                    ),
                    what="the app to count the events delivered",
                )
                assert metric(scrape(det_url), "wineq_drift_rejected_events_total") == 0


class SlowDetector(ThreadingHTTPServer):
    """Accepts CloudEvents but answers each only after ``delay_s``; counts what it received."""

    daemon_threads = True

    def __init__(self, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.delay_s = delay_s
        self.received = 0
        self.events = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowDetector

    def do_POST(self) -> None:
        body = self._body()
        batched = self.headers.get("content-type", "").startswith(
            "application/cloudevents-batch+json"
        )
        with self.server.lock:
            self.server.received += 1
            self.server.events += len(json.loads(body)) if batched else 1
        self.server.release.wait(self.server.delay_s)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def _body(self) -> bytes:
        """A Content-Length body (binary mode) or a chunked one (batched mode)."""
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length", "0")))
        chunks = []
        while size := int(self.rfile.readline().strip(), 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_detector() -> Iterator[SlowDetector]:
    server = SlowDetector(delay_s=30.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@MODES
def test_a_slow_detector_does_not_hold_predictions_back(
    tmp_path: Path,
    serving_bundles: dict[str, Path],
    slow_detector: SlowDetector,
    real_wines: pd.DataFrame,
    batch_max: str,
) -> None:
    queue_size = 5
    app = app_process(
        tmp_path,
        serving_bundles["1"],
        slow_detector.url,
        WINEQ_PAYLOAD_QUEUE_SIZE=str(queue_size),
        WINEQ_PAYLOAD_BATCH_MAX=batch_max,
        # No linger: the first request goes out alone, as in binary mode.
        WINEQ_PAYLOAD_LINGER_S="0",
    )
    with app:
        app_url = ready(app)
        with httpx.Client(base_url=app_url, timeout=10) as client:
            body = {"wines": wines(real_wines, 3, 4)}
            for _ in range(50):
                assert client.post("/predict", json=body).status_code == 200
        # All 50 answers came back while the detector was still holding its first event: the
        # request path never waited for a delivery.
        assert slow_detector.received == 1
        metrics = scrape(app_url)
        # What the worker took when it woke is in flight (the first request, or the first few
        # when the next ones were read before the worker ran), queue_size wait; the rest were
        # dropped, 2 events each.
        held = metric(metrics, "winequality_payloads_pending")
        in_flight = held - queue_size
        assert 1 <= in_flight <= 3
        dropped = metric(metrics, "winequality_payloads_dropped_total", reason="queue_full")
        assert dropped == 2 * (50 - held)
        # The exchanges in flight: both events of each in the one batch, or the first request
        # event alone.
        assert slow_detector.events == (2 * in_flight if batch_max != "1" else 1)
        assert (
            metric(metrics, "winequality_http_requests_total", route="/predict", status="200") == 50
        )


def test_binary_mode_over_the_detectors_rate_limit_waits_and_loses_no_event(
    tmp_path: Path,
    serving_bundles: dict[str, Path],
    reference_dir: tuple[Path, Path],
    real_wines: pd.DataFrame,
) -> None:
    """One POST per event is more than the detector lets one caller send: it answers 429
    (``Retry-After``) before reading the event, so the logger waits and sends it again; what
    waits meanwhile stays in the buffer. The detector counts the POSTs it refused."""
    det_port = free_port()
    det_url = f"http://127.0.0.1:{det_port}"
    # Low enough that even an app slowed down by a loaded machine goes over it: keeping
    # under it would take its 50 POSTs more than 9 s.
    limit = {"WINEQ_DRIFT_INGEST_RATE_PER_S": "5", "WINEQ_DRIFT_INGEST_BURST": "5"}
    detector = detector_process(tmp_path, det_port, reference_dir, **limit)
    app = app_process(tmp_path, serving_bundles["1"], det_url, WINEQ_PAYLOAD_BATCH_MAX="1")
    n = 25  # 50 POSTs: well past the burst
    with detector, app:
        detector.wait_ready(url=f"{det_url}/health/ready", timeout=60)
        app_url = ready(app)
        with httpx.Client(base_url=app_url, timeout=10) as client:
            for i in range(n):
                response = client.post("/predict", json={"wines": wines(real_wines, 1, i)})
                assert response.status_code == 200
        wait_for(
            lambda: (
                metric(scrape(app_url), "winequality_payloads_sent_total", type="response") == n
            ),
            timeout=90,  # 5 POSTs a second: about 10 s when nothing else slows it down
            what=f"the app to deliver all {2 * n} events",
        )
        app_metrics = scrape(app_url)
        assert metric(app_metrics, "winequality_payloads_sent_total", type="request") == n
        assert metric(app_metrics, "winequality_payloads_dropped_total") == 0
        detector_metrics = scrape(det_url)
        assert metric(detector_metrics, "wineq_drift_rows_total") == n
        assert metric(detector_metrics, "wineq_drift_events_total", kind="response") == n
        assert metric(detector_metrics, "wineq_drift_rate_limited_posts_total") > 0
