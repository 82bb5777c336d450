"""`dvc repro` of the real pipeline in a temporary git repository, with the real UCI data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support.project import make_pipeline_repo, pipeline_env, run

from winequality.process import free_port

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


def _without_git_identity(env: dict[str, str], repo: Path, home: Path) -> dict[str, str]:
    """``env`` for a user with no git identity anywhere (no user.name/email, HOME empty)."""
    run(["git", "config", "--unset", "user.name"], repo, env)
    run(["git", "config", "--unset", "user.email"], repo, env)
    home.mkdir()
    env = {k: v for k, v in env.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    return env


# A repro and three experiments in one test: beyond the default 600 s on a loaded 2-core host.
@pytest.mark.timeout(1800)
def test_failed_experiment_leaves_the_workspace_as_it_was_and_the_retry_needs_no_git_identity(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """`winequality exp run -S train.cv_folds=1`: `train` rejects the value and fails; the
    workspace is as before the run (params.yaml, dvc.lock, outputs), and the next `dvc exp run`
    works for a user without a git identity."""
    repo = make_pipeline_repo(
        tmp_path / "project", {"data": {"source": str(shared_data_dir)}, "train": FAST_TRAIN}
    )
    run(["dvc", "repro"], repo, pipeline_env(repo))
    env = _without_git_identity(pipeline_env(repo), repo, tmp_path / "home")
    kept = ["params.yaml", "dvc.lock", "models/model.pkl", "models/registered.json",
            "metrics/train.json", "reports/promotion.json"]  # fmt: skip
    before = {path: (repo / path).read_bytes() for path in kept}
    status = run(["git", "status", "--porcelain"], repo, env)

    failed = subprocess.run(
        ["winequality", "exp", "run", "-S", "train.cv_folds=1"],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "Running stage 'train'" in failed.stdout + failed.stderr
    assert "workspace restored" in failed.stderr
    assert run(["git", "status", "--porcelain"], repo, env) == status
    assert {path: (repo / path).read_bytes() for path in kept} == before
    assert "up to date" in run(["dvc", "status"], repo, env)

    out = run(["dvc", "exp", "run", "-S", "train.search=false", "-S", "train.alpha=0.5"], repo, env)
    assert "Running stage 'register'" in out
    # That run left its values in params.yaml (DVC's behaviour on success): the next experiment
    # stashes them, with the wrapper's identity since git has none.
    assert "params.yaml" in run(["git", "status", "--porcelain"], repo, env)
    out = run(["winequality", "exp", "run", "-S", "train.alpha=0.05"], repo, env)
    assert "Running stage 'train'" in out
    assert json.loads((repo / "metrics/train.json").read_text())["best_params"]["alpha"] == 0.05


def test_failed_registration_keeps_the_registered_model_pointer(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """A plain `dvc exp run` whose `register` fails (the MLflow server is down): the stage's
    outputs are `persist`, so `models/registered.json` still names the model registered before,
    and `promote` (not run) keeps its report."""
    repo = make_pipeline_repo(
        tmp_path / "project", {"data": {"source": str(shared_data_dir)}, "train": FAST_TRAIN}
    )
    env = pipeline_env(repo)
    run(["dvc", "repro"], repo, env)
    kept = ["models/registered.json", "metrics/model.json", "reports/promotion.json"]
    before = {path: (repo / path).read_bytes() for path in kept}
    broken = env | {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    failed = subprocess.run(
        ["dvc", "exp", "run", "-S", "train.search=false"],
        cwd=repo, env=broken, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "Running stage 'register'" in failed.stdout + failed.stderr
    assert {path: (repo / path).read_bytes() for path in kept} == before
