"""The train -> evaluate -> export onnx commands on files in a temporary project folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from winequality.cli import app

FAST = {"alpha_grid": [0.01, 0.1], "l1_ratio_grid": [0.5], "cv_folds": 3}


@pytest.fixture
def project(prepared_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": FAST}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WINEQ_PROJECT_DIR", str(tmp_path))
    return tmp_path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_train_evaluate_export_write_their_files(project: Path) -> None:
    code, out = invoke("train", "--n-jobs", "1")
    assert code == 0, out
    train = json.loads((project / "metrics/train.json").read_text())
    assert train["n_candidates"] == 2
    assert (project / "models/model.pkl").is_file()
    assert len(pd.read_csv(project / "reports/cv_results.csv")) == 2

    code, out = invoke("evaluate")
    assert code == 0, out
    scores = json.loads((project / "metrics/eval.json").read_text())
    assert scores["rmse"] < scores["baseline_rmse"]
    assert scores["n_test"] == 200
    table = pd.read_csv(project / "reports/predictions.csv")
    assert list(table.columns) == ["actual", "predicted", "residual", "wine_type"]
    for name in ("predicted_vs_actual", "residuals"):
        png = (project / "reports/plots" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), name

    code, out = invoke("export", "onnx")
    assert code == 0, out
    export = json.loads((project / "metrics/export.json").read_text())
    assert export["parity_max_abs_diff"] <= 1e-4
    assert (project / "models/model.onnx").stat().st_size == export["onnx_bytes"]


def test_export_refuses_a_model_beyond_the_parity_tolerance(project: Path) -> None:
    assert invoke("train", "--n-jobs", "1")[0] == 0
    (project / "params.yaml").write_text(
        yaml.safe_dump({"train": FAST, "export": {"parity_tolerance": 1e-12}})
    )
    code, out = invoke("export", "onnx")
    assert code == 1
    assert "ONNX export disagrees with scikit-learn" in out
    assert not (project / "models/model.onnx").exists()


def test_train_with_an_unknown_family_fails_with_the_known_ones(project: Path) -> None:
    (project / "params.yaml").write_text(yaml.safe_dump({"train": {"family": "xgboost"}}))
    code, out = invoke("train")
    assert code == 1
    assert "invalid parameters" in out
    assert "elasticnet" in out


def test_train_on_a_missing_column_names_it(project: Path, prepared_dir: Path) -> None:
    frame = pd.read_parquet(prepared_dir / "train.parquet").drop(columns=["density"])
    frame.to_parquet(prepared_dir / "train.parquet")
    code, out = invoke("train", "--n-jobs", "1")
    assert code == 1
    assert "missing column(s) ['density']" in out


def test_train_on_an_empty_split_fails(project: Path, prepared_dir: Path) -> None:
    frame = pd.read_parquet(prepared_dir / "train.parquet").head(0)
    frame.to_parquet(prepared_dir / "train.parquet")
    code, out = invoke("train", "--n-jobs", "1")
    assert code == 1
    assert "no rows" in out


def test_evaluate_without_a_model_says_to_train(project: Path) -> None:
    code, out = invoke("evaluate")
    assert code == 1
    assert "run the train stage first" in out


def test_registry_pull_needs_one_source_and_one_destination(project: Path) -> None:
    code, out = invoke("registry", "pull", "--dest", "x")
    assert code == 1
    assert "exactly one of --alias or --run-id" in out
    code, out = invoke("registry", "pull", "--dest", "x", "--alias", "a", "--run-id", "r")
    assert code == 1
    code, out = invoke("registry", "pull", "--dest", "x", "--link", "y", "--alias", "a")
    assert code == 1
    assert "--dest or --link, not both" in out
