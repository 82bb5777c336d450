"""The promotion path in Kubernetes against a fake API server (TLS, token, real HTTP on
127.0.0.1): the exact requests, the wait, and the revert when the new run never gets ready."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_kube import FakeCluster, Recorded, Served, serve

from winequality.pipeline.cluster import (
    FIELD_MANAGER,
    JSON_PATCH,
    RESTARTED_AT,
    STRATEGIC_MERGE,
    ClusterError,
    KubeClient,
    roll_out,
    rollout_status,
)
from winequality.settings import ClusterSettings

NS = "wine-quality-staging"
OLD, NEW = "a" * 32, "b" * 32
APP, DETECTOR, TRITON = "wine-quality-app", "drift-detector", "wine-quality-default-0-wine-quality"
CM = f"/api/v1/namespaces/{NS}/configmaps/wine-quality-model"
SDEP = f"/apis/machinelearning.seldon.io/v1/namespaces/{NS}/seldondeployments/wine-quality"


def dep_path(name: str) -> str:
    return f"/apis/apps/v1/namespaces/{NS}/deployments/{name}"


def settings_for(served: Served, **overrides: Any) -> ClusterSettings:
    values: dict[str, Any] = {
        "namespace": NS,
        "api_url": served.url,
        "service_account_dir": served.service_account,
        "rollout_timeout_s": 30.0,
        "poll_interval_s": 0.02,
        "_env_file": None,
    }
    return ClusterSettings(**(values | overrides))


@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    options: dict[str, Any] = getattr(request, "param", {})
    yield from serve(FakeCluster(namespace=NS, run_id=OLD, **options), tmp_path)


def restart_stamp(record: Recorded) -> str:
    if record.content_type == JSON_PATCH:
        (op,) = record.body
        return str(op["value"])
    return str(record.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT])


def assert_promotion_writes(writes: list[Recorded], run_id: str, version: str | None) -> str:
    """The four writes of one promotion, exactly; returns the restart stamp they share."""
    assert [(w.method, w.path) for w in writes] == [
        ("PATCH", CM),
        ("PATCH", SDEP),
        ("PATCH", dep_path(APP)),
        ("PATCH", dep_path(DETECTOR)),
    ]
    configmap, sdep, app, detector = writes
    assert configmap.content_type == STRATEGIC_MERGE
    assert configmap.body == {
        "data": {"MODEL_RUN_ID": run_id},
        "metadata": {"annotations": {"winequality/model-version": version}},
    }
    stamp = restart_stamp(sdep)
    assert sdep.content_type == JSON_PATCH
    assert sdep.body == [
        {
            "op": "add",
            "path": "/spec/predictors/0/componentSpecs/0/metadata/annotations/"
            "kubectl.kubernetes.io~1restartedAt",
            "value": stamp,
        }
    ]
    for deployment in (app, detector):
        assert deployment.content_type == STRATEGIC_MERGE
        assert deployment.body == {
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
        }
    for write in writes:
        assert write.query == {"fieldManager": [FIELD_MANAGER]}
    return stamp


def test_promotion_patches_the_configmap_restarts_all_and_waits_until_ready(
    fake: Served,
) -> None:
    result = roll_out(settings_for(fake), NEW, "7")
    cluster = fake.cluster
    assert result.ready is True, result.detail
    assert result.previous_run_id == OLD
    assert (result.reverted, result.revert_ready) == (False, None)
    assert cluster.served_run_id == NEW
    assert cluster.objects[CM]["metadata"]["annotations"] == {"winequality/model-version": "7"}
    # First the ConfigMap is read (the way back), then the writes, then only status reads.
    assert (cluster.requests[0].method, cluster.requests[0].path) == ("GET", CM)
    assert_promotion_writes(cluster.writes(), NEW, "7")
    first_write = cluster.requests.index(cluster.writes()[0])
    last_write = cluster.requests.index(cluster.writes()[-1])
    assert first_write == 1
    reads = cluster.requests[last_write + 1 :]
    assert {r.method for r in reads} == {"GET"}
    assert {r.path for r in reads} == {dep_path(TRITON), dep_path(APP), dep_path(DETECTOR)}
    # Each Deployment was read until ready: not observed, 1 of 2 updated (twice), then done.
    per_deployment = len(reads) // 3
    assert len(reads) == 3 * per_deployment
    assert per_deployment == cluster.ready_after + 1
    assert all(r.authorization == f"Bearer {cluster.token}" for r in cluster.requests)
    assert f"run {NEW} rolled out" in result.detail
    assert f"{TRITON}: 2 of 2 replicas ready" in result.detail


@pytest.mark.parametrize("fake", [{"never_ready": frozenset({NEW})}], indirect=True)
def test_a_run_that_never_gets_ready_is_reverted_after_the_timeout(fake: Served) -> None:
    timeout = 0.5
    started = time.monotonic()
    result = roll_out(settings_for(fake, rollout_timeout_s=timeout), NEW, "7")
    waited = time.monotonic() - started
    cluster = fake.cluster
    assert result.ready is False
    assert (result.reverted, result.revert_ready) == (True, True)
    assert cluster.served_run_id == OLD
    # No version annotation before: the revert removes it (a strategic-merge null).
    assert cluster.objects[CM]["metadata"]["annotations"] == {}
    writes = cluster.writes()
    assert len(writes) == 8
    forward = assert_promotion_writes(writes[:4], NEW, "7")
    back = assert_promotion_writes(writes[4:], OLD, None)
    assert back != forward
    assert waited >= timeout
    # The timeout was waited out by polling, not in one sleep: reads between the two rollouts.
    between = cluster.requests[
        cluster.requests.index(writes[3]) + 1 : cluster.requests.index(writes[4])
    ]
    # (How many rounds depends on the host's speed; at least two, all three Deployments each.)
    assert len(between) >= 6
    assert len(between) % 3 == 0
    assert "never became ready (not ready after 0.5 s" in result.detail
    assert f"{APP}: 1 of 2 replicas updated" in result.detail
    assert f"reverted to run {OLD}: ready" in result.detail


@pytest.mark.parametrize("fake", [{"deadline": frozenset({NEW})}], indirect=True)
def test_a_progress_deadline_fails_the_rollout_without_waiting_out_the_timeout(
    fake: Served,
) -> None:
    started = time.monotonic()
    result = roll_out(settings_for(fake, rollout_timeout_s=120.0), NEW, "7")
    assert time.monotonic() - started < 30
    assert result.ready is False
    assert "has timed out progressing" in result.detail
    assert fake.cluster.served_run_id == OLD
    assert result.revert_ready is True


@pytest.mark.parametrize("fake", [{"forbidden": frozenset({("PATCH", CM)})}], indirect=True)
def test_a_refused_configmap_patch_changes_nothing_and_restarts_nothing(fake: Served) -> None:
    result = roll_out(settings_for(fake), NEW, "7")
    assert result.ready is False
    assert result.reverted is False
    assert "the model ConfigMap was not changed" in result.detail
    assert "403 forbidden by the test" in result.detail
    assert [(r.method, r.path) for r in fake.cluster.requests] == [("GET", CM), ("PATCH", CM)]
    assert fake.cluster.served_run_id == OLD


@pytest.mark.parametrize(
    "fake", [{"forbidden": frozenset({("PATCH", dep_path(DETECTOR))})}], indirect=True
)
def test_a_refused_restart_reverts_the_configmap(fake: Served) -> None:
    result = roll_out(settings_for(fake), NEW, "7")
    assert result.ready is False
    assert "restart refused" in result.detail
    assert result.reverted is True
    assert fake.cluster.served_run_id == OLD


@pytest.mark.parametrize(
    "fake",
    [
        {
            "model_server_kind": "InferenceService",
            "model_server_deployment": "wine-quality-predictor",
        }
    ],
    indirect=True,
)
def test_kserve_model_server_is_restarted_through_its_predictor_annotations(
    fake: Served,
) -> None:
    settings = settings_for(
        fake,
        model_server_kind="InferenceService",
        model_server_deployment="wine-quality-predictor",
    )
    result = roll_out(settings, NEW, "7")
    assert result.ready is True, result.detail
    (isvc,) = [w for w in fake.cluster.writes() if "inferenceservices" in w.path]
    assert (
        isvc.path
        == f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/wine-quality"
    )
    assert isvc.content_type == JSON_PATCH
    assert isvc.body[0]["path"] == "/spec/predictor/annotations/kubectl.kubernetes.io~1restartedAt"
    assert {r.path for r in fake.cluster.requests if r.method == "GET"} >= {
        dep_path("wine-quality-predictor")
    }


def test_wrong_token_is_a_clear_error_and_changes_nothing(fake: Served) -> None:
    (fake.service_account / "token").write_text("not-the-token")
    result = roll_out(settings_for(fake), NEW, "7")
    assert result.ready is False
    assert "401 Unauthorized" in result.detail
    assert fake.cluster.served_run_id == OLD


def test_the_api_server_certificate_is_checked_against_the_service_account_ca(
    fake: Served, tmp_path: Path
) -> None:
    from tests.support.fake_kube import write_service_account

    other = tmp_path / "other" / "serviceaccount"
    write_service_account(other, fake.cluster.token)
    client = KubeClient(settings_for(fake, service_account_dir=other))
    with pytest.raises(ClusterError, match="CERTIFICATE_VERIFY_FAILED"):
        client.model_configmap("wine-quality-model")
    client.close()
    assert fake.cluster.requests == []


def test_client_refuses_a_request_outside_its_table(fake: Served) -> None:
    client = KubeClient(settings_for(fake))
    with pytest.raises(ClusterError, match="not in the table"):
        client.restart_deployment("retrain-webhook", "now")
    with pytest.raises(ClusterError, match="not in the table"):
        client.model_configmap("wine-quality-config")
    client.close()
    assert fake.cluster.requests == []


def test_client_needs_a_namespace_and_a_token(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="WINEQ_CLUSTER_NAMESPACE"):
        KubeClient(ClusterSettings(_env_file=None))
    with pytest.raises(ClusterError, match="no service account token"):
        KubeClient(ClusterSettings(namespace=NS, service_account_dir=tmp_path, _env_file=None))


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "d", "generation": 3},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": {RESTARTED_AT: "s"}}}},
        "status": {"observedGeneration": 3} | status,
    }


@pytest.mark.parametrize(
    ("doc", "state", "detail"),
    [
        ({"metadata": {"name": "d"}, "spec": {}}, "waiting", "does not carry restart s"),
        (deployment(observedGeneration=2), "waiting", "not observed yet"),
        (deployment(updatedReplicas=1, replicas=3), "waiting", "1 of 2 replicas updated"),
        (deployment(updatedReplicas=2, replicas=3), "waiting", "1 old replica(s) still running"),
        (
            deployment(updatedReplicas=2, replicas=2, availableReplicas=1),
            "waiting",
            "1 of 2 updated replicas available",
        ),
        (
            deployment(updatedReplicas=2, replicas=2, availableReplicas=2),
            "done",
            "2 of 2 replicas ready",
        ),
        (
            deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]),
            "failed",
            "progress deadline exceeded",
        ),
    ],
)
def test_rollout_status_reads_a_deployment_as_kubectl_rollout_status_does(
    doc: dict[str, Any], state: str, detail: str
) -> None:
    got_state, got_detail = rollout_status(doc, "s")
    assert got_state == state
    assert detail in got_detail
