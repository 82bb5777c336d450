"""The Deployments of the three HTTP services stop without dropping requests: a preStop sleep
while the endpoints are removed, then SIGTERM and the server's drain, inside the grace period."""

from __future__ import annotations

import pytest
from tests.unit.deploy.conftest import one
from tests.unit.deploy.kustomize import Manifest

from winequality.settings import (
    DetectorSettings,
    HttpServerSettings,
    ServingSettings,
    WebhookSettings,
)

# Deployment -> (its server container, the settings class whose prefix its env uses)
SERVICES: dict[str, tuple[str, type[HttpServerSettings]]] = {
    "wine-quality-app": ("app", ServingSettings),
    "drift-detector": ("detector", DetectorSettings),
    "retrain-webhook": ("webhook", WebhookSettings),
}
MIN_PRESTOP_S = 3
"""Long enough for the endpoint removal to reach kube-proxy and the ingress on a busy cluster."""


def drain_s(container: Manifest, settings: type[HttpServerSettings]) -> float:
    """The container's drain time: its env, else the setting's default."""
    prefix = settings.model_config.get("env_prefix", "")
    for var in container.get("env", []):
        if var["name"] == f"{prefix}DRAIN_S":
            return float(var["value"])
    default = HttpServerSettings.model_fields["drain_s"].default
    assert isinstance(default, float)
    return default


@pytest.mark.parametrize("name", SERVICES)
def test_each_server_sleeps_before_sigterm_and_drains_within_the_grace_period(
    name: str, base: list[Manifest], rendered: dict[str, list[Manifest]]
) -> None:
    container_name, settings = SERVICES[name]
    for docs in (base, *rendered.values()):
        pod = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == container_name]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        pre_stop = float(command[1])
        assert pre_stop >= MIN_PRESTOP_S
        # The kubelet counts the preStop hook inside the grace period; after the drain, requests
        # under way get one more second, then the app's lifespan shutdown runs (the margin).
        needed = pre_stop + drain_s(container, settings) + 5
        assert pod["terminationGracePeriodSeconds"] >= needed
