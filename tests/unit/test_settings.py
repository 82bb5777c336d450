"""Each service reads its own settings: its prefix, nothing another service is configured with."""

from __future__ import annotations

from pathlib import Path

import pytest

from winequality.serving.app import create_app
from winequality.serving.payload_logger import BATCH_MAX_BYTES, batch_max_bytes
from winequality.settings import (
    PORTS,
    DetectorSettings,
    RetrainSettings,
    ServingSettings,
    TrackingSettings,
    WebhookSettings,
)

NO_FILE = {"_env_file": None}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith(("WINEQ_", "MLFLOW_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_detector_reads_its_own_token_limit_and_port_not_the_apps(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("WINEQ_ADMIN_TOKEN", "app-token")
    clean_env.setenv("WINEQ_MAX_BODY_BYTES", "1000")
    clean_env.setenv("WINEQ_PORT", "9999")
    clean_env.setenv("WINEQ_MODEL_DIR", "/app/bundle")
    detector = DetectorSettings(**NO_FILE)
    assert detector.admin_token is None
    assert detector.max_body_bytes == ServingSettings(**NO_FILE).detector_max_body_bytes
    assert (detector.port, detector.model_dir) == (PORTS.detector, Path("models/serving"))
    clean_env.setenv("WINEQ_DRIFT_ADMIN_TOKEN", "drift-token")
    clean_env.setenv("WINEQ_DRIFT_MAX_BODY_BYTES", "2000")
    clean_env.setenv("WINEQ_DRIFT_PORT", "18010")
    clean_env.setenv("WINEQ_DRIFT_MODEL_DIR", "/drift/bundle")
    detector = DetectorSettings(**NO_FILE)
    assert (detector.admin_token, detector.max_body_bytes) == ("drift-token", 2000)
    assert (detector.port, detector.model_dir) == (18010, Path("/drift/bundle"))
    app = ServingSettings(**NO_FILE)
    assert (app.admin_token, app.max_body_bytes, app.port) == ("app-token", 1000, 9999)


def test_webhook_reads_the_webhook_prefix_only(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WINEQ_RETRAIN_COMMAND", '["old", "name"]')
    assert WebhookSettings(**NO_FILE).command == ("winequality", "retrain")
    clean_env.setenv("WINEQ_WEBHOOK_COMMAND", '["python", "job.py"]')
    clean_env.setenv("WINEQ_WEBHOOK_COOLDOWN_S", "2")
    clean_env.setenv("WINEQ_WEBHOOK_ALERTS", '["A", "B"]')
    clean_env.setenv("WINEQ_WEBHOOK_TOKEN", "hook")
    webhook = WebhookSettings(**NO_FILE)
    assert webhook.command == ("python", "job.py")
    assert (webhook.cooldown_s, webhook.alerts, webhook.token) == (2.0, ("A", "B"), "hook")
    assert webhook.port == PORTS.webhook


def test_retraining_job_calls_each_service_with_its_own_token(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("WINEQ_ADMIN_TOKEN", "app-token")
    clean_env.setenv("WINEQ_DRIFT_ADMIN_TOKEN", "drift-token")
    clean_env.setenv("WINEQ_DETECTOR_URL", "http://127.0.0.1:18010")
    job = RetrainSettings(**NO_FILE)
    assert (job.admin_token, job.detector_admin_token) == ("app-token", "drift-token")
    assert job.detector_url == "http://127.0.0.1:18010"
    assert job.app_url == f"http://127.0.0.1:{PORTS.app}"
    assert RetrainSettings(detector_admin_token="given", **NO_FILE).detector_admin_token == "given"


def test_tracking_keeps_mlflows_own_variable(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert TrackingSettings(project_dir=tmp_path, **NO_FILE).tracking_uri() == (
        f"sqlite:///{(tmp_path / 'mlruns.db').resolve()}"
    )
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert TrackingSettings(**NO_FILE).tracking_uri() == "http://127.0.0.1:5000"


def test_payload_logger_stays_under_the_limit_the_app_names_for_the_detector(
    tmp_path: Path,
) -> None:
    assert batch_max_bytes(DetectorSettings(**NO_FILE).max_body_bytes) == BATCH_MAX_BYTES
    settings = ServingSettings(
        model_dir=tmp_path / "absent",
        detector_url="http://127.0.0.1:9",
        detector_max_body_bytes=80_000,
        **NO_FILE,
    )
    payloads = create_app(settings).state.serving.payloads
    assert payloads is not None
    assert payloads.batch_max_bytes == 70_000
