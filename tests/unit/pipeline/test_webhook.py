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


def test_invalid_json_is_a_422_not_a_500(client: TestClient) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    response = client.post("/alerts", content=b"{\xff", headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "command", [["/no/such/retrain-job"], [str(Path(__file__))], ["python\x00", "-c", "pass"]]
)
def test_a_job_that_cannot_start_is_a_503_recorded_in_the_status(
    tmp_path: Path, command: list[str]
) -> None:
    """Missing, not executable, or not even a valid argument: no 500, and /status says why."""
    settings = WebhookSettings(token=TOKEN, _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, Retrainer(command, 60.0, tmp_path / "logs"))
    doc = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "WineQualityDrift"}}],
    }
    with TestClient(app) as client:
        response = client.post("/alerts", json=doc, headers=AUTH)
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert detail["reason"] == "retrain_not_started"
        assert detail["alerts"] == ["WineQualityDrift"]
        status = client.get("/status").json()
    assert status["state"] == "idle"
    assert status["cooldown_remaining_s"] == 0.0
    (run,) = status["runs"]
    assert run["pid"] is None
    assert run["reason"] == "WineQualityDrift"
    assert run["error"].startswith("cannot start")
    assert run["trigger_file"] is not None
