"""The manifests and Dockerfiles spell the ports literally; they must equal ``settings.PORTS``."""

from __future__ import annotations

import re

import pytest
from tests.unit.deploy.conftest import ROOT, find, one
from tests.unit.deploy.kustomize import Manifest, containers

from winequality.settings import PORTS

DOCKER = ROOT / "deploy" / "docker"
SERVICES = {
    # Deployment / Service name -> (container, port of PORTS)
    "wine-quality-app": ("app", PORTS.app),
    "drift-detector": ("detector", PORTS.detector),
    "retrain-webhook": ("webhook", PORTS.webhook),
}
IMAGES = {"app.Dockerfile": PORTS.app, "detector.Dockerfile": PORTS.detector}


def _container(base: list[Manifest], deployment: str, name: str) -> Manifest:
    found = [c for c in containers(one(base, "Deployment", deployment)) if c["name"] == name]
    assert len(found) == 1, f"expected one container {name} in {deployment}"
    return found[0]


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_workload_and_service_listen_on_the_port_of_the_table(
    base: list[Manifest], name: str
) -> None:
    container_name, port = SERVICES[name]
    container = _container(base, name, container_name)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    service = one(base, "Service", name)
    assert [p["port"] for p in service["spec"]["ports"] if p["name"] == "http"] == [port]
    args = [str(a) for a in container.get("args", [])]
    assert _flag(args, "--port") in (None, str(port))
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("WINEQ_PORT", str(port)) == str(port)


def test_urls_between_services_use_the_ports_of_the_table(base: list[Manifest]) -> None:
    app_env = {
        e["name"]: e.get("value") for e in _container(base, "wine-quality-app", "app")["env"]
    }
    assert app_env["WINEQ_DETECTOR_URL"] == f"http://drift-detector:{PORTS.detector}"
    (config,) = find(base, "AlertmanagerConfig")
    urls = [w["url"] for r in config["spec"]["receivers"] for w in r.get("webhookConfigs", [])]
    assert urls
    for url in urls:
        assert re.fullmatch(rf"http://retrain-webhook\.[\w.-]+:{PORTS.webhook}/alerts", url), url


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_image_exposes_and_probes_the_port_of_the_table(dockerfile: str) -> None:
    text = (DOCKER / dockerfile).read_text()
    port = IMAGES[dockerfile]
    assert re.findall(r"^EXPOSE (\d+)$", text, re.MULTILINE) == [str(port)]
    spelled = (
        re.findall(r"127\.0\.0\.1:(\d+)", text)
        + re.findall(r'"--port", "(\d+)"', text)
        + re.findall(r"WINEQ_PORT=(\d+)", text)
        + re.findall(r"'WINEQ_PORT', '(\d+)'", text)
    )
    assert spelled, f"{dockerfile} names no port besides EXPOSE"
    assert set(spelled) == {str(port)}, spelled


def test_the_table_is_the_default_of_each_service() -> None:
    from winequality.settings import DetectorSettings, ServingSettings, WebhookSettings
    from winequality.stack import Ports

    isolated = {"_env_file": None}
    assert ServingSettings(**isolated).port == PORTS.app
    assert DetectorSettings(**isolated).port == PORTS.detector
    assert WebhookSettings(**isolated).port == PORTS.webhook
    assert Ports() == PORTS


def test_up_help_names_the_ports_of_the_table() -> None:
    import dataclasses
    import typing

    from winequality.pipeline import cli

    hints = typing.get_type_hints(cli.up, include_extras=True)
    for field in dataclasses.fields(PORTS):
        (option,) = hints[f"{field.name}_port"].__metadata__
        assert f"({getattr(PORTS, field.name)})" in option.help.replace("default ", "")
