"""The retraining webhook's HTTP rules: the shared bearer check and a limited, validated body."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

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
