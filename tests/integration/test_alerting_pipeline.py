"""Drifted events -> detector -> Prometheus rule -> Alertmanager -> webhook, all real processes.

The webhook receiver is a small real HTTP server in the test; it records what Alertmanager posts.
Intervals are 1 s so the whole chain completes in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from winequality.contract import schema
from winequality.monitoring.alerting_config import write_alerting_configs
from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

TOKEN = "webhook-t0ken"
ADMIN = "admin-t0ken"
WINDOW = 100


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str | None, dict[str, Any]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def find(self, predicate: Callable[[str | None, dict[str, Any]], bool]) -> Any:
        with self.lock:
            return next(((a, b) for a, b in self.received if predicate(a, b)), None)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.append((self.headers.get("Authorization"), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} missing: apt-get install prometheus prometheus-alertmanager")
    return path


def post_json(url: str, body: Any, headers: dict[str, str]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def drift_alert(status: str) -> Callable[[str | None, dict[str, Any]], bool]:
    def match(_: str | None, body: dict[str, Any]) -> bool:
        return any(
            a["labels"].get("alertname") == "WineQualityDrift" and a["status"] == status
            for a in body.get("alerts", [])
        )

    return match


def test_drifted_events_reach_the_webhook_and_reload_resolves_the_alert(
    tmp_path: Path, real_wines: pd.DataFrame, receiver: Receiver
) -> None:
    red = real_wines[real_wines[schema.WINE_TYPE] == "red"]
    white = real_wines[real_wines[schema.WINE_TYPE] == "white"]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    red.iloc[:1000].to_parquet(bundle / "reference.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(f"drift:\n  window_size: {WINDOW}\n  p_val: 0.05\n")

    det_port, am_port, prom_port = free_port(), free_port(), free_port()
    files = write_alerting_configs(
        tmp_path / "conf",
        app_port=free_port(),  # no app in this test: its target is simply down
        detector_port=det_port,
        alertmanager_port=am_port,
        webhook_url=receiver.url,
        webhook_token=TOKEN,
        drift_for="1s",
        scrape_interval="1s",
        evaluation_interval="1s",
        group_wait="1s",
        group_interval="1s",
        repeat_interval="1h",
    )
    logs = tmp_path / "logs"
    detector = ManagedProcess(
        "detector",
        [sys.executable, "-m", "winequality.cli", "drift", "serve", "--model-dir", str(bundle),
         "--params", str(params), "--port", str(det_port)],
        logs / "detector.log",
        env={**os.environ, "WINEQ_DRIFT_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip
    alertmanager = ManagedProcess(
        "alertmanager",
        [tool("prometheus-alertmanager"), f"--config.file={files.alertmanager}",
         f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
         "--cluster.listen-address="],
        logs / "alertmanager.log",
    )  # fmt: skip
    prometheus = ManagedProcess(
        "prometheus",
        [tool("prometheus"), f"--config.file={files.prometheus}",
         f"--storage.tsdb.path={tmp_path / 'prom-data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        logs / "prometheus.log",
    )  # fmt: skip
    with detector, alertmanager, prometheus:
        detector.wait_ready(f"http://127.0.0.1:{det_port}/health/ready", timeout=60)
        alertmanager.wait_ready(f"http://127.0.0.1:{am_port}/-/ready", timeout=60)
        prometheus.wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", timeout=60)

        cols = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
        for i in range(2):
            chunk = white.iloc[i * 50 : (i + 1) * 50].loc[:, cols]
            headers = {
                "Content-Type": "application/json",
                "Ce-Id": f"evt-{i}",
                "Ce-Specversion": "0.3",
                "Ce-Source": "http://wine-quality-app",
                "Ce-Type": "io.seldon.serving.inference.request",
                "Ce-Requestid": f"req-{i}",
                "Ce-Modelid": "wine-quality",
            }
            answer = post_json(
                f"http://127.0.0.1:{det_port}/",
                {"wines": chunk.to_dict(orient="records")},
                headers,
            )
        assert answer["drift"] == [True]

        auth, body = wait_for("the firing WineQualityDrift webhook", lambda: receiver.find(
            drift_alert("firing")))  # fmt: skip
        assert auth == f"Bearer {TOKEN}"
        alert = next(a for a in body["alerts"] if a["labels"]["alertname"] == "WineQualityDrift")
        assert alert["labels"]["job"] == "drift-detector"
        assert alert["labels"]["action"] == "retrain"

        # After a retraining the detector reloads its reference: the metric and the alert clear.
        reloaded = post_json(
            f"http://127.0.0.1:{det_port}/reference/reload",
            {},
            {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        assert reloaded["reference_rows"] == 1000
        auth, _ = wait_for("the resolved WineQualityDrift webhook", lambda: receiver.find(
            drift_alert("resolved")))  # fmt: skip
        assert auth == f"Bearer {TOKEN}"
