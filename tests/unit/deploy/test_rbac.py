"""The webhook's Role grants exactly what the promotion client does (its request table), to the
objects the manifests really have, and nothing else has an API token."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.deploy.conftest import KSERVE_OVERLAYS, OVERLAYS, PLATFORMS, find, one
from tests.unit.deploy.kustomize import Manifest, containers

from winequality.pipeline.cluster import MODEL_SERVERS, request_table
from winequality.settings import ClusterSettings

Grant = tuple[str, str, str, str]
"""(API group, resource, verb, resource name)"""


def webhook_container(docs: list[Manifest]) -> Manifest:
    (container,) = one(docs, "Deployment", "retrain-webhook")["spec"]["template"]["spec"][
        "containers"
    ]
    return dict(container)


def cluster_settings(docs: list[Manifest], namespace: str) -> ClusterSettings:
    """ClusterSettings as the webhook's process builds them from its environment."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in find(docs, "ConfigMap")}
    container = webhook_container(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
    for e in container["env"]:
        field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field == "metadata.namespace":
            env[e["name"]] = namespace
        elif "value" in e:
            env[e["name"]] = e["value"]
    prefix = "WINEQ_CLUSTER_"
    values: dict[str, Any] = {
        k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)
    }
    return ClusterSettings(_env_file=None, **values)


def granted(role: Manifest) -> set[Grant]:
    out: set[Grant] = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out |= {(group, resource, verb, name) for name in rule["resourceNames"]}
    return out


def needed(settings: ClusterSettings) -> set[Grant]:
    return {
        (endpoint.group, endpoint.resource, endpoint.verb, name)
        for endpoint, names in request_table(settings)
        for name in names
    }


@pytest.mark.parametrize("overlay", OVERLAYS + KSERVE_OVERLAYS)
def test_role_grants_exactly_the_requests_of_the_client(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    role = one(docs, "Role", "retrain-webhook-rollout")
    settings = cluster_settings(docs, role["metadata"]["namespace"])
    assert settings.namespace == role["metadata"]["namespace"]
    assert granted(role) == needed(settings)
    # Least privilege, spelled out: two verbs, named objects only, no Secrets or Pods.
    assert {g[2] for g in granted(role)} == {"get", "patch"}
    assert {g[1] for g in granted(role)} <= {
        "configmaps",
        "deployments",
        "seldondeployments",
        "inferenceservices",
    }


@pytest.mark.parametrize("overlay", OVERLAYS + KSERVE_OVERLAYS)
def test_every_name_the_role_grants_is_an_object_of_the_overlay(
    rendered: dict[str, list[Manifest]], platforms: dict[str, list[Manifest]], overlay: str
) -> None:
    docs = rendered[overlay]
    settings = cluster_settings(docs, "ns")
    assert one(docs, "ConfigMap", settings.model_configmap)["data"]["MODEL_RUN_ID"]
    for name in settings.deployments:
        one(docs, "Deployment", name)
    server = one(docs, settings.model_server_kind, settings.model_server_name)
    assert server["apiVersion"].split("/")[0] == MODEL_SERVERS[server["kind"]].group
    assert server["apiVersion"].split("/")[1] == MODEL_SERVERS[server["kind"]].version
    # The Deployment the operator will make for it, by the operator's naming rule.
    if server["kind"] == "SeldonDeployment":
        (predictor,) = server["spec"]["predictors"]
        (component,) = predictor["componentSpecs"]
        names = "-".join(c["name"] for c in component["spec"]["containers"])
        operator_made = f"{server['metadata']['name']}-{predictor['name']}-0-{names}"
    else:
        operator_made = f"{server['metadata']['name']}-predictor"
    assert settings.model_server_deployment == operator_made
    # Every workload that pulls the model is restarted: the model server and these.
    pullers = {
        d["metadata"]["name"]
        for d in find(docs, "Deployment")
        for c in containers(d)
        if c.get("args", [])[:2] == ["registry", "pull"]
    }
    assert pullers == set(settings.deployments)


def test_the_settings_defaults_are_the_seldon_platform(
    platforms: dict[str, list[Manifest]],
) -> None:
    # A retraining run by hand in the Seldon namespace needs only WINEQ_CLUSTER_NAMESPACE.
    from_manifests = cluster_settings(platforms["seldon"], "ns")
    defaults = ClusterSettings(_env_file=None, namespace="ns")
    assert from_manifests == defaults


@pytest.mark.parametrize("platform", PLATFORMS)
def test_only_the_webhook_gets_an_api_token_and_it_is_bound_to_the_role(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    docs = platforms[platform]
    account = one(docs, "ServiceAccount", "retrain-webhook")
    assert account["automountServiceAccountToken"] is False  # only where a pod asks for it
    binding = one(docs, "RoleBinding", "retrain-webhook-rollout")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "retrain-webhook-rollout",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "retrain-webhook"}]
    for doc in find(docs, "Deployment") + find(docs, "StatefulSet"):
        spec = doc["spec"]["template"]["spec"]
        if doc["metadata"]["name"] == "retrain-webhook":
            assert spec["serviceAccountName"] == "retrain-webhook"
            assert spec["automountServiceAccountToken"] is True
        else:
            assert spec["automountServiceAccountToken"] is False, doc["metadata"]["name"]
            assert "serviceAccountName" not in spec
    assert find(docs, "ClusterRole") == find(docs, "ClusterRoleBinding") == []


def test_a_missing_rule_would_be_caught(rendered: dict[str, list[Manifest]]) -> None:
    import copy

    docs = rendered["staging"]
    role = copy.deepcopy(one(docs, "Role", "retrain-webhook-rollout"))
    role["rules"] = [r for r in role["rules"] if "seldondeployments" not in r["resources"]]
    settings = cluster_settings(docs, role["metadata"]["namespace"])
    assert needed(settings) - granted(role) == {
        ("machinelearning.seldon.io", "seldondeployments", "patch", "wine-quality")
    }
