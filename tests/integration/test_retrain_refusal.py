"""`winequality retrain` against a real embedded MLflow store and a real serving app: a worse
challenger is refused and nothing moves; a broken bundle is refused by the app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from tests.support.retraining import TUNED, retrain_env, retrain_project, run_retrain, shrunk

from winequality import artifacts
from winequality.pipeline.retrain import ask_app_to_reload
from winequality.process import ManagedProcess, free_port
from winequality.settings import RetrainSettings, TrackingSettings

pytestmark = pytest.mark.integration

ADMIN = "admin-t0ken"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """A tuned params file and one (heavy shrinkage, no search) that cannot beat the champion."""
    root = tmp_path_factory.mktemp("retrain") / "project"
    return retrain_project(root, real_wines, seed=3, params={"good": TUNED, "bad": shrunk(0.5)})


def env_for(project: Path, params: str, app_url: str) -> dict[str, str]:
    return retrain_env(project, params, WINEQ_APP_URL=app_url, WINEQ_ADMIN_TOKEN=ADMIN)


@pytest.fixture(scope="module")
def served(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Champion v1 (first retraining, no app yet: --no-notify), then the app serving it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = run_retrain(project, env_for(project, "good", url), "--no-notify")
    assert first["promoted"] is True, first
    assert first["version"] == "1"
    assert (project / "serving" / "current").is_symlink()
    app = ManagedProcess(
        "app",
        [sys.executable, "-m", "winequality.cli", "serve", "--port", str(port)],
        tmp_path_factory.mktemp("logs") / "app.log",
        env=env_for(project, "good", url),
    )
    with app:
        app.wait_ready(f"{url}/health/ready", timeout=60)
        yield url


def champion_version(project: Path) -> str:
    from mlflow import MlflowClient

    uri = TrackingSettings(project_dir=project).tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return str(client.get_model_version_by_alias("wine-quality", "champion").version)


def test_worse_challenger_is_refused_and_nothing_moves(project: Path, served: str) -> None:
    pointer = project / "serving" / "current"
    before = pointer.resolve()
    result = run_retrain(project, env_for(project, "bad", served))
    assert result["promoted"] is False, result
    assert result["outcome"] == "refused"
    assert result["version"] == "2"
    assert result["feedback_rows"] == 120
    assert "does not beat" in result["reason"]
    assert result["model_dir"] is None
    assert champion_version(project) == "1"
    assert pointer.resolve() == before
    assert httpx.get(f"{served}/metadata").json()["model"]["version"] == "1"


def test_app_refuses_a_broken_bundle_and_keeps_serving(
    project: Path, served: str, tmp_path: Path
) -> None:
    current = project / "serving" / "current"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / artifacts.MODEL_FILE).write_bytes(b"not an onnx model")
    (broken / artifacts.METADATA_FILE).write_text(
        (current / artifacts.METADATA_FILE).read_text().replace('"version": "1"', '"version": "9"')
    )
    settings = RetrainSettings(app_url=served, admin_token=ADMIN)
    accepted, detail = ask_app_to_reload(settings, broken)
    assert accepted is False
    assert "422" in detail
    assert httpx.get(f"{served}/metadata").json()["model"]["version"] == "1"


def test_too_little_feedback_skips_the_retraining(project: Path, tmp_path: Path) -> None:
    env = env_for(project, "good", "http://127.0.0.1:9")
    env["WINEQ_FEEDBACK_DB"] = str(tmp_path / "empty.sqlite")
    result = run_retrain(project, env)
    assert result["promoted"] is False
    assert result["outcome"] == "skipped"
    assert result["feedback_rows"] == 0
    assert "at least 50" in result["reason"]
