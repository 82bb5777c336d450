"""`winequality retrain` promoting into a cluster: a real embedded MLflow store, the real CLI in a
child process, and the fake Kubernetes API server (TLS, service account token) standing in for
the cluster. A new champion that never gets ready is rolled back in both places: the ConfigMap
and the registry's alias; one that gets ready stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.support.fake_kube import FakeCluster, serve

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore
from winequality.settings import TrackingSettings

pytestmark = pytest.mark.integration

NS = "wine-quality-staging"
FAST = {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """Base splits, 120 labelled feedback rows, a weak and a tuned params file."""
    root = tmp_path_factory.mktemp("cluster") / "project"
    wines = real_wines.drop_duplicates().sample(n=1620, random_state=5).reset_index(drop=True)
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    wines.iloc[:1000].to_parquet(prepared / "train.parquet", index=False)
    wines.iloc[1000:1500].to_parquet(prepared / "test.parquet", index=False)
    feedback = wines.iloc[1500:]
    store = FeedbackStore(root / "feedback.sqlite")
    columns = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    rows = [{str(k): v for k, v in r.items()} for r in feedback.loc[:, columns].to_dict("records")]
    store.add(rows, feedback[schema.TARGET].astype(int).tolist())
    store.close()
    retrain = {"min_feedback_rows": 50}
    weak = {"train": {"search": False, "alpha": 0.08, "l1_ratio": 1.0}, "retrain": retrain}
    (root / "params-weak.yaml").write_text(yaml.safe_dump(weak))
    (root / "params-good.yaml").write_text(yaml.safe_dump({"train": FAST, "retrain": retrain}))
    return root


def env_for(project: Path, params: str, cluster: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINEQ_", "MLFLOW_"))}
    return env | {
        "WINEQ_PROJECT_DIR": str(project),
        "WINEQ_PARAMS_FILE": str(project / params),
        "WINEQ_FEEDBACK_DB": str(project / "feedback.sqlite"),
        "WINEQ_MODEL_DIR": str(project / "serving" / "current"),
        **(cluster or {}),
    }


def retrain(project: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "winequality.cli", "retrain", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def registry(project: Path) -> Any:
    from mlflow import MlflowClient

    uri = TrackingSettings(project_dir=project).tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(project: Path) -> tuple[str, str]:
    mv = registry(project).get_model_version_by_alias("wine-quality", "champion")
    return str(mv.version), str(mv.run_id)


@pytest.fixture(scope="module")
def weak_champion(project: Path) -> tuple[str, str]:
    """v1, a weak model, served before the cluster path is involved."""
    first = retrain(project, env_for(project, "params-weak.yaml"), "--no-notify")
    assert first["promoted"] is True, first
    return champion(project)


def cluster_env(served: Any) -> dict[str, str]:
    return {
        "WINEQ_CLUSTER_NAMESPACE": NS,
        "WINEQ_CLUSTER_API_URL": served.url,
        "WINEQ_CLUSTER_SERVICE_ACCOUNT_DIR": str(served.service_account),
        "WINEQ_CLUSTER_ROLLOUT_TIMEOUT_S": "3",
        "WINEQ_CLUSTER_POLL_INTERVAL_S": "0.05",
    }


@pytest.fixture
def cluster_never_ready_but_v1(weak_champion: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    _, run_id = weak_champion
    yield from serve(
        FakeCluster(namespace=NS, run_id=run_id, only_ready=frozenset({run_id})), tmp_path
    )


@pytest.fixture
def cluster_ready(weak_champion: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    yield from serve(FakeCluster(namespace=NS, run_id=weak_champion[1]), tmp_path)


def test_a_champion_that_never_gets_ready_is_rolled_back_in_cluster_and_registry(
    project: Path, weak_champion: tuple[str, str], cluster_never_ready_but_v1: Any
) -> None:
    served = cluster_never_ready_but_v1
    result = retrain(project, env_for(project, "params-good.yaml", cluster_env(served)))
    assert result["outcome"] == "rolled_back", result
    assert result["promoted"] is False
    assert "never became ready" in result["reason"]
    assert f"reverted to run {weak_champion[1]}: ready" in result["reason"]
    # The registry names what the cluster serves: v1, in both.
    assert champion(project) == weak_champion
    assert served.cluster.served_run_id == weak_champion[1]
    tags = registry(project).get_model_version("wine-quality", result["version"]).tags
    assert tags["promotion.decision"] == "rolled_back"
    # The new run was tried: the ConfigMap named it once, then the previous run again.
    runs = [
        w.body["data"]["MODEL_RUN_ID"] for w in served.cluster.writes() if "configmaps" in w.path
    ]
    new_run = registry(project).get_model_version("wine-quality", result["version"]).run_id
    assert runs == [new_run, weak_champion[1]]


def test_a_champion_that_gets_ready_stays_promoted_in_cluster_and_registry(
    project: Path, weak_champion: tuple[str, str], cluster_ready: Any
) -> None:
    result = retrain(project, env_for(project, "params-good.yaml", cluster_env(cluster_ready)))
    assert result["outcome"] == "promoted", result
    assert "rolled out" in result["reason"]
    version, run_id = champion(project)
    assert version == result["version"] != weak_champion[0]
    assert cluster_ready.cluster.served_run_id == run_id
    annotations = cluster_ready.cluster.objects[cluster_ready.cluster.configmap_path]["metadata"]
    assert annotations["annotations"] == {"winequality/model-version": version}
