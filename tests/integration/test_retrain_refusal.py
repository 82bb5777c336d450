"""`winequality retrain` against a real embedded MLflow store and a real serving app: a worse
challenger is refused and nothing moves; a broken bundle is refused by the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from winequality import artifacts
from winequality.contract import schema
from winequality.feedback_store import FeedbackStore
from winequality.pipeline.retrain import ask_app_to_reload
from winequality.process import ManagedProcess, free_port
from winequality.settings import RetrainSettings, TrackingSettings

pytestmark = pytest.mark.integration

ADMIN = "admin-t0ken"
FAST = {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """Base splits and 120 labelled feedback rows from the real data; two params files."""
    root = tmp_path_factory.mktemp("retrain") / "project"
    wines = real_wines.drop_duplicates().sample(n=1620, random_state=3).reset_index(drop=True)
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    wines.iloc[:1000].to_parquet(prepared / "train.parquet", index=False)
    wines.iloc[1000:1500].to_parquet(prepared / "test.parquet", index=False)
    feedback = wines.iloc[1500:]
    store = FeedbackStore(root / "feedback.sqlite")
    rows = [
        {str(k): v for k, v in row.items()}
        for row in feedback.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict("records")
    ]
    store.add(rows, feedback[schema.TARGET].astype(int).tolist())
    store.close()
    retrain = {"min_feedback_rows": 50}
    good = {"train": FAST, "retrain": retrain}
    # Heavy shrinkage without a search: a model that cannot beat the tuned champion.
    bad = {"train": {"search": False, "alpha": 0.5, "l1_ratio": 1.0}, "retrain": retrain}
    (root / "params-good.yaml").write_text(yaml.safe_dump(good))
    (root / "params-bad.yaml").write_text(yaml.safe_dump(bad))
    return root


def env_for(project: Path, params: str, app_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINEQ_", "MLFLOW_"))}
    return env | {
        "WINEQ_PROJECT_DIR": str(project),
        "WINEQ_PARAMS_FILE": str(project / params),
        "WINEQ_FEEDBACK_DB": str(project / "feedback.sqlite"),
        "WINEQ_MODEL_DIR": str(project / "serving" / "current"),
        "WINEQ_APP_URL": app_url,
        "WINEQ_ADMIN_TOKEN": ADMIN,
    }


def retrain(project: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "winequality.cli", "retrain", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def served(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Champion v1 (first retraining, no app yet: --no-notify), then the app serving it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = retrain(project, env_for(project, "params-good.yaml", url), "--no-notify")
    assert first["promoted"] is True, first
    assert first["version"] == "1"
    assert (project / "serving" / "current").is_symlink()
    app = ManagedProcess(
        "app",
        [sys.executable, "-m", "winequality.cli", "serve", "--port", str(port)],
        tmp_path_factory.mktemp("logs") / "app.log",
        env=env_for(project, "params-good.yaml", url),
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
    result = retrain(project, env_for(project, "params-bad.yaml", served))
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
    env = env_for(project, "params-good.yaml", "http://127.0.0.1:9")
    env["WINEQ_FEEDBACK_DB"] = str(tmp_path / "empty.sqlite")
    result = retrain(project, env)
    assert result["promoted"] is False
    assert result["outcome"] == "skipped"
    assert result["feedback_rows"] == 0
    assert "at least 50" in result["reason"]
