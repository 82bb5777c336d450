"""`winequality retrain` promoting into a cluster: a real embedded MLflow store, the real CLI in a
child process, and the fake Kubernetes API server (TLS, service account token) standing in for
the cluster. A new champion that never gets ready is rolled back in both places: the ConfigMap
and the registry's alias; one that gets ready stays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.support.fake_kube import FakeCluster, serve
from tests.support.retraining import TUNED, retrain_env, retrain_project, run_retrain, shrunk

from winequality.settings import TrackingSettings

pytestmark = pytest.mark.integration

NS = "wine-quality-staging"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """A weak (shrunk) and a tuned params file."""
    root = tmp_path_factory.mktemp("cluster") / "project"
    return retrain_project(root, real_wines, seed=5, params={"weak": shrunk(0.08), "good": TUNED})


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
    first = run_retrain(project, retrain_env(project, "weak"), "--no-notify")
    assert first["promoted"] is True, first
    return champion(project)


def cluster_env(served: Any, rollout_timeout_s: float) -> dict[str, str]:
    return {
        "WINEQ_CLUSTER_NAMESPACE": NS,
        "WINEQ_CLUSTER_API_URL": served.url,
        "WINEQ_CLUSTER_SERVICE_ACCOUNT_DIR": str(served.service_account),
        "WINEQ_CLUSTER_ROLLOUT_TIMEOUT_S": str(rollout_timeout_s),
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
    # Waited in full for the new run, then again for the revert, which must get ready within
    # it: short, but not so short that a loaded machine misses the revert's readiness.
    env = cluster_env(served, rollout_timeout_s=10)
    result = run_retrain(project, retrain_env(project, "good", **env))
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
    # Ends as soon as the rollout is done: a long timeout costs nothing here.
    env = cluster_env(cluster_ready, rollout_timeout_s=30)
    result = run_retrain(project, retrain_env(project, "good", **env))
    assert result["outcome"] == "promoted", result
    assert "rolled out" in result["reason"]
    version, run_id = champion(project)
    assert version == result["version"] != weak_champion[0]
    assert cluster_ready.cluster.served_run_id == run_id
    annotations = cluster_ready.cluster.objects[cluster_ready.cluster.configmap_path]["metadata"]
    assert annotations["annotations"] == {"winequality/model-version": version}
