"""The serving app must start without MLflow or DVC (slim image, fast cold start), and serve a
bundle, its reference sample and its metrics without pandas, pyarrow or scipy (the app image
installs only the `serving` dependency group)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline
from tests.support.bundles import write_model_bundle

CHECK = """
import sys
import winequality.serving.app, winequality.serving.cli, winequality.serving.__main__
from winequality.serving.app import create_app
create_app()
bad = sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'dvc', 'sklearn', 'pandas'})
print(','.join(bad))
"""


def test_serving_app_imports_neither_mlflow_nor_dvc_nor_training_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"the serving app pulled in {out}"


SERVE = """
import sys
from fastapi.testclient import TestClient
from winequality.serving.app import create_app
from winequality.serving.schemas import example_wine
from winequality.settings import ServingSettings
settings = ServingSettings(model_dir=sys.argv[1], feedback_db=sys.argv[2], _env_file=None)
with TestClient(create_app(settings)) as client:
    assert client.post("/predict", json={"wines": [example_wine()] * 30}).status_code == 200
    assert "winequality_prediction_ks_rows" in client.get("/metrics").text
heavy = {'mlflow', 'dvc', 'sklearn', 'pandas', 'pyarrow', 'scipy', 'matplotlib'}
print(','.join(sorted({m.split('.')[0] for m in sys.modules} & heavy)))
"""


def test_serving_a_bundle_with_its_reference_imports_no_dataframe_or_scipy(
    tmp_path: Path, wine_model: Pipeline, real_wines: pd.DataFrame
) -> None:
    reference = tmp_path / "reference.parquet"
    real_wines.sample(300, random_state=1).to_parquet(reference)
    bundle = write_model_bundle(tmp_path / "bundle", wine_model, "5", reference=reference)
    out = subprocess.run(
        [sys.executable, "-c", SERVE, str(bundle), str(tmp_path / "feedback.sqlite")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "", f"serving pulled in {out.stdout.strip()}"
