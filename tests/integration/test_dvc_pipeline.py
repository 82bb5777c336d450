"""`dvc repro` of the real pipeline in a temporary git repository, with the real UCI data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.support.project import make_pipeline_repo, pipeline_env, run

pytestmark = pytest.mark.integration

# Small grids keep the test quick; the full grids are measured in benchmarks/pipeline.py.
FAST_TRAIN = {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    repo = make_pipeline_repo(
        tmp_path_factory.mktemp("dvc") / "project",
        {"data": {"source": str(shared_data_dir)}, "train": FAST_TRAIN},
    )
    run(["dvc", "repro"], repo, pipeline_env(repo))
    return repo


def test_repro_produces_every_stage_output(repo: Path) -> None:
    for path in [
        "data/raw/wines.csv",
        "data/validated/wines.parquet",
        "data/prepared/train.parquet",
        "data/prepared/test.parquet",
        "data/prepared/reference.parquet",
        "models/model.pkl",
        "models/model.onnx",
        "models/registered.json",
        "reports/promotion.json",
        "dvc.lock",
    ]:
        assert (repo / path).exists(), path
    source = json.loads((repo / "data/raw/source.json").read_text())
    assert source["kind"] == "path"


def test_repro_registers_and_promotes_the_first_model(repo: Path) -> None:
    registered = json.loads((repo / "models/registered.json").read_text())
    assert registered["name"] == "wine-quality"
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    assert promotion["promoted"] is True


def test_second_repro_is_a_no_op(repo: Path) -> None:
    out = run(["dvc", "repro"], repo, pipeline_env(repo))
    assert "didn't change" in out or "up to date" in out
    assert "Running stage" not in out


def test_metrics_and_plots_show(repo: Path) -> None:
    env = pipeline_env(repo)
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo, env))
    flat = json.dumps(metrics)
    assert "rmse" in flat
    assert "parity" in flat
    run(["dvc", "plots", "show", "-o", "plots-out"], repo, env)
    html = (repo / "plots-out" / "index.html").read_text()
    assert "predicted_vs_actual" in html
    assert "residuals" in html


def test_push_then_pull_restores_data_from_the_local_remote(repo: Path) -> None:
    env = pipeline_env(repo)
    run(["dvc", "push"], repo, env)
    prepared = repo / "data/prepared/train.parquet"
    before = prepared.read_bytes()
    shutil.rmtree(repo / "data/prepared")
    shutil.rmtree(repo / ".dvc/cache")
    run(["dvc", "pull"], repo, env)
    assert prepared.read_bytes() == before


def test_exp_run_with_a_changed_parameter_retrains(repo: Path) -> None:
    env = pipeline_env(repo)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "baseline run"], repo, env)
    out = run(["dvc", "exp", "run", "-S", "train.search=false", "-S", "train.alpha=0.5"], repo, env)
    assert "Running stage 'train'" in out
    table = json.loads(run(["dvc", "exp", "show", "--json"], repo, env))
    assert "0.5" in json.dumps(table)
