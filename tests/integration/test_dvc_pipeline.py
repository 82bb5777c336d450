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


def test_readme_family_experiment_runs_without_a_git_identity(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """The README's `dvc exp run -S train.family=random_forest` in a clone whose user has no git
    identity (no user.name/email anywhere, HOME empty): the experiment runs to `promote`."""
    repo = make_pipeline_repo(
        tmp_path / "project", {"data": {"source": str(shared_data_dir)}, "train": FAST_TRAIN}
    )
    env = pipeline_env(repo)
    run(["git", "config", "--unset", "user.name"], repo, env)
    run(["git", "config", "--unset", "user.email"], repo, env)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in env.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    out = run(
        ["dvc", "exp", "run", "-S", "train.family=random_forest", "-S", "train.search=false"],
        repo,
        env,
    )
    assert "Running stage 'register'" in out
    metrics = json.loads((repo / "metrics/model.json").read_text())
    assert metrics["family"] == "random_forest"
    assert json.loads((repo / "reports/promotion.json").read_text())["promoted"] is True
