"""The retraining webhook's HTTP rules (bearer check, limited validated body) and hand-over."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pytest

from winequality.pipeline.trigger import TRIGGER_FILE_ENV, read_trigger
from winequality.pipeline.webhook import MAX_ALERT_BODY, Retrainer, create_app
from winequality.settings import WebhookSettings

with warnings.catch_warnings():
    # Starlette asks for httpx2 at import; the project pins httpx, which works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "hook-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = WebhookSettings(token=TOKEN, _env_file=None)  # type: ignore[call-arg]
    retrainer = Retrainer([sys.executable, "-c", "pass"], 0.0, tmp_path / "logs")
    return TestClient(create_app(settings, retrainer))


def test_a_wrong_token_gets_the_shared_401(client: TestClient) -> None:
    response = client.post("/alerts", json={}, headers={"authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"]["reason"] == "invalid_token"


def test_a_body_over_the_limit_is_a_413(client: TestClient) -> None:
    body = b'{"pad": "' + b"x" * MAX_ALERT_BODY + b'"}'
    headers = {**AUTH, "content-type": "application/json"}
    assert client.post("/alerts", content=body, headers=headers).status_code == 413


def test_a_non_json_body_is_a_415(client: TestClient) -> None:
    headers = {**AUTH, "content-type": "text/plain"}
    assert client.post("/alerts", content=b"{}", headers=headers).status_code == 415


def test_a_payload_that_is_not_alertmanager_s_is_a_422_naming_the_field(
    client: TestClient,
) -> None:
    response = client.post("/alerts", json={"version": "4", "status": "firing"}, headers=AUTH)
    assert response.status_code == 422
    assert ["body", "alerts"] in [e["loc"] for e in response.json()["detail"]]


def test_a_resolved_alert_is_acknowledged_and_ignored(client: TestClient) -> None:
    doc = {"version": "4", "status": "resolved", "alerts": []}
    assert client.post("/alerts", json=doc, headers=AUTH).json()["action"] == "ignored"


def test_the_firing_alerts_reach_the_job_in_its_trigger_file(tmp_path: Path) -> None:
    settings = WebhookSettings(token=TOKEN, _env_file=None)  # type: ignore[call-arg]
    copy = tmp_path / "seen.json"
    job = f"import os, shutil; shutil.copy(os.environ['{TRIGGER_FILE_ENV}'], {str(copy)!r})"
    retrainer = Retrainer([sys.executable, "-c", job], 0.0, tmp_path / "logs")
    client = TestClient(create_app(settings, retrainer))
    alert = {
        "status": "firing",
        "labels": {"alertname": "WineQualityDrift", "severity": "warning"},
        "annotations": {"summary": "drift"},
        "startsAt": "2026-12-01T21:00:00Z",
        "fingerprint": "f1",
    }
    other = {**alert, "labels": {"alertname": "DriftDetectorDown"}}
    doc = {"version": "4", "status": "firing", "receiver": "retrain", "alerts": [alert, other]}
    assert client.post("/alerts", json=doc, headers=AUTH).json()["action"] == "started"
    deadline = time.monotonic() + 20
    while retrainer.state() == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    trigger = read_trigger(copy)
    assert trigger.name == "WineQualityDrift"
    assert trigger.receiver == "retrain"
    (only,) = trigger.alerts
    assert only.starts_at == "2026-12-01T21:00:00Z"
    assert only.annotations == {"summary": "drift"}
    assert retrainer.status()["runs"][0]["trigger_file"].endswith(".trigger.json")
