"""Every model family params.yaml offers goes the whole way on the real data: train -> evaluate
-> export onnx -> register -> promote -> registry pull -> serve, through the real commands and
an embedded MLflow store, ending in predictions over HTTP from the pulled champion."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from winequality.cli import app
from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.process import ManagedProcess, free_port
from winequality.stages import PATHS
from winequality.training.train import load_model
from winequality.training.tune import FAMILIES

pytestmark = pytest.mark.integration

# One candidate per family, two folds: the test checks the pipeline, not the tuning.
SMALL_BUDGET = {"search": False, "cv_folds": 2}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("families-data")
    wines = real_wines.drop_duplicates().reset_index(drop=True)
    train, test = train_test_split(wines, test_size=0.2, random_state=42, stratify=wines.quality)
    (root / PATHS.prepared_dir).mkdir(parents=True)
    train.reset_index(drop=True).to_parquet(root / PATHS.train)
    test.reset_index(drop=True).to_parquet(root / PATHS.test)
    train.sample(300, random_state=0).reset_index(drop=True).to_parquet(root / PATHS.reference)
    (root / PATHS.raw_dir).mkdir(parents=True)
    (root / PATHS.source).write_text(json.dumps({"kind": "path", "source": "shared"}))
    return root


def project_for(family: str, prepared: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for rel in (PATHS.train, PATHS.test, PATHS.reference, PATHS.source):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((prepared / rel).read_bytes())
    params = {"train": {"family": family, **SMALL_BUDGET}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.mark.parametrize("family", FAMILIES)
def test_family_runs_the_whole_pipeline_and_is_served(
    family: str,
    prepared: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    real_wines: pd.DataFrame,
) -> None:
    root = project_for(family, prepared, tmp_path)
    monkeypatch.chdir(root)
    env = {"WINEQ_PROJECT_DIR": str(root), "MLFLOW_TRACKING_URI": None}
    bundle = root / "models" / "serving"
    for args in (
        ["train", "--n-jobs", "1"],
        ["evaluate"],
        ["export", "onnx"],
        ["register", "--out", str(PATHS.registered), "--metrics", str(PATHS.model_metrics)],
        ["promote", "--strict"],
        ["registry", "pull", "--alias", "champion", "--dest", str(bundle)],
    ):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, f"{args}: {result.output}"

    headline = json.loads((root / PATHS.model_metrics).read_text())
    assert headline["family"] == family
    assert float(headline["onnx_parity"]) <= 1e-4
    meta = json.loads((bundle / "metadata.json").read_text())
    assert (meta["family"], meta["alias"]) == (family, "champion")

    port = free_port()
    server = ManagedProcess(
        f"serve-{family}",
        [sys.executable, "-m", "winequality.cli", "serve", "--model-dir", str(bundle),
         "--port", str(port), "--log-level", "warning"],
        tmp_path / "serve.log",
        {**os.environ, "WINEQ_PROJECT_DIR": str(root)},
    )  # fmt: skip
    sample = real_wines.sample(10, random_state=3)
    records = sample[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
    with server:
        server.wait_ready(url=f"http://127.0.0.1:{port}/health/ready", timeout=60)
        response = httpx.post(f"http://127.0.0.1:{port}/predict", json={"wines": records})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == meta["version"]
    expected = np.clip(load_model(root / PATHS.model).predict(frame_to_matrix(sample)), 0, 10)
    got = [p["quality"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert f"v{meta['version']}" in (tmp_path / "serve.log").read_text()
