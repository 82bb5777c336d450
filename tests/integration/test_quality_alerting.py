"""Degraded labels -> the app's realized quality -> Prometheus rule -> Alertmanager -> the real
retraining webhook, all real processes on loopback.

The app serves a model trained on the training split; the test split is scored through
``/predict`` and labelled through ``/feedback`` by request id with its true quality + 1 (concept
drift: the same wines, other labels). ``WineQualityDegraded`` must reach the webhook, whose
default ``retrain_alerts`` start its job; the job stands in for ``winequality retrain`` after a
promotion (the full MLflow retraining is the e2e loop's): it hot-swaps the app to a new version,
whose window starts empty, so the alert resolves.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.integration.test_alerting_pipeline import tool
from tests.support.bundles import train_model, write_model_bundle

from winequality.contract import schema
from winequality.data.prepare import drop_duplicates, split
from winequality.monitoring.alerting_config import write_alerting_configs
from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

WEBHOOK_TOKEN = "webhook-t0ken"
ADMIN = "admin-t0ken"
FEEDBACK_TOKEN = "feedback-t0ken"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def query(prom: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=5).json()
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def alerts(prom: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == "WineQualityDegraded"]


def test_degraded_labels_fire_the_alert_and_the_webhook_retrains(
    tmp_path: Path, real_wines: pd.DataFrame
) -> None:
    wines, _ = drop_duplicates(real_wines)
    train, test = split(wines, 0.2, 42)
    v1 = write_model_bundle(tmp_path / "bundles" / "v1", train_model(train), "1")
    v2 = write_model_bundle(tmp_path / "bundles" / "v2", train_model(train, alpha=0.02), "2")

    app_port, am_port, prom_port, hook_port = free_port(), free_port(), free_port(), free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    files = write_alerting_configs(
        tmp_path / "conf",
        app_port=app_port,
        detector_port=free_port(),  # no detector in this test: its target is simply down
        alertmanager_port=am_port,
        webhook_url=f"http://127.0.0.1:{hook_port}/alerts",
        webhook_token=WEBHOOK_TOKEN,
        degraded_for="1s",
        scrape_interval="1s",
        evaluation_interval="1s",
        group_wait="1s",
        group_interval="1s",
        repeat_interval="1h",
    )
    job = tmp_path / "promote.py"
    job.write_text(
        "import json, sys, urllib.request\n"
        f"body = json.dumps({{'model_dir': {str(v2)!r}}}).encode()\n"
        f"req = urllib.request.Request({app_url + '/admin/reload'!r}, data=body, method='POST',\n"
        f"    headers={{'Authorization': 'Bearer {ADMIN}', 'Content-Type': 'application/json'}})\n"
        "print(urllib.request.urlopen(req, timeout=30).read().decode())\n"
    )
    logs = tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINEQ_")}
    app = ManagedProcess(
        "app",
        [sys.executable, "-m", "winequality.cli", "serve", "--model-dir", str(v1),
         "--port", str(app_port), "--log-level", "warning"],
        logs / "app.log",
        env={**env, "WINEQ_ADMIN_TOKEN": ADMIN, "WINEQ_FEEDBACK_DB": str(tmp_path / "fb.sqlite"),
             "WINEQ_QUALITY_MIN_LABELS": "200", "WINEQ_FEEDBACK_TOKEN": FEEDBACK_TOKEN},
    )  # fmt: skip
    webhook = ManagedProcess(
        "webhook",
        [sys.executable, "-m", "winequality.cli", "webhook", "--port", str(hook_port),
         "--log-dir", str(tmp_path / "hook-logs")],
        logs / "webhook.log",
        env={**env, "WINEQ_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
             "WINEQ_WEBHOOK_COMMAND": json.dumps([sys.executable, str(job)])},
        cwd=tmp_path,
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
    prom = f"http://127.0.0.1:{prom_port}"
    auth = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
    with (
        app,
        webhook,
        alertmanager,
        prometheus,
        httpx.Client(base_url=app_url, timeout=30, headers=auth) as c,
    ):
        app.wait_ready(f"{app_url}/health/ready", timeout=60)
        webhook.wait_ready(f"http://127.0.0.1:{hook_port}/health/ready", timeout=30)
        alertmanager.wait_ready(f"http://127.0.0.1:{am_port}/-/ready", timeout=60)
        prometheus.wait_ready(f"{prom}/-/ready", timeout=60)

        labelled = test.sample(500, random_state=0)
        cols = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
        answer = c.post("/predict", json={"wines": labelled[cols].to_dict("records")}).json()
        assert answer["model_version"] == "1"
        for i, quality in enumerate(labelled[schema.TARGET].tolist()):
            if i == 100:  # under quality_min_labels: not degraded, however bad
                text = c.get("/metrics").text
                assert 'winequality_realized_degraded{model_version="1"} 0.0' in text
            label = min(int(quality) + 1, schema.QUALITY_MAX)
            body = {"request_id": answer["request_id"], "index": i, "quality": label}
            assert c.post("/feedback", json=body).status_code == 201
        # One label a wine: relabelling the first one otherwise is refused, and without the
        # token nothing is taken.
        again = {"request_id": answer["request_id"], "index": 0, "quality": 0}
        assert c.post("/feedback", json=again).status_code == 409
        assert httpx.post(f"{app_url}/feedback", json=again, timeout=5).status_code == 401

        # The chain is fast: the retraining may already have swapped the model, so what fired
        # is read back from Prometheus' own series.
        fired = wait_for(
            "WineQualityDegraded firing for version 1",
            lambda: query(
                prom,
                'max_over_time(ALERTS{alertname="WineQualityDegraded", alertstate="firing",'
                ' model_version="1"}[5m])',
            ),
        )
        assert fired[0]["metric"]["action"] == "retrain"
        hook = f"http://127.0.0.1:{hook_port}"
        status = wait_for(
            "the webhook's retraining for WineQualityDegraded",
            lambda: httpx.get(f"{hook}/status", timeout=5).json()["runs"],
        )
        assert status[0]["reason"] == "WineQualityDegraded"
        wait_for(
            "the app serving version 2",
            lambda: c.get("/health/ready").json()["model_version"] == "2",
        )
        assert 'winequality_realized_labels{model_version="2"} 0.0' in c.get("/metrics").text
        wait_for("WineQualityDegraded resolved", lambda: not alerts(prom))
