"""The trainer image, built offline on the Debian base: the whole CLI with MLflow and DVC; a
container of it serves the retraining webhook and exports a bundle for Triton."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.integration.containers.conftest import BuildImage
from tests.support.docker import BuiltImage, DockerEngine, container_name, image_summary

from winequality.process import free_port

# Cold, a build (and the base image before it) takes minutes: beyond the default timeout.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def trainer_image(build_image: BuildImage) -> BuiltImage:
    return build_image("trainer", "trainer.Dockerfile")


def test_trainer_image_builds_offline_with_dvc_without_git(
    docker_engine: DockerEngine,
    trainer_image: BuiltImage,
    record_property: Callable[[str, object], None],
) -> None:
    record_property("image", image_summary(trainer_image))
    config = docker_engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "dvc", trainer_image.tag,
        "config", "core.no_scm",
    )  # fmt: skip
    assert config.stdout.strip() == "true"


def test_trainer_container_serves_the_retraining_webhook(
    docker_engine: DockerEngine, trainer_image: BuiltImage
) -> None:
    name, port = container_name(trainer_image, "-webhook"), free_port()
    docker_engine.docker(
        "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "-e", "WINEQ_WEBHOOK_TOKEN=container-test",
        "-e", f"WINEQ_WEBHOOK_COMMAND={json.dumps(['winequality', '--help'])}",
        trainer_image.tag, "webhook", "--host", "127.0.0.1", "--port", str(port),
        "--log-dir", "/tmp/retrain",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/health/ready"
        for _ in range(120):
            if docker_engine.health(name) == "exited":
                break
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        logs = docker_engine.docker("logs", name)
        pytest.fail(f"the webhook never became ready:\n{logs.stdout}{logs.stderr}")
    finally:
        docker_engine.remove(name)


def test_trainer_container_exports_the_bundle_for_triton(
    docker_engine: DockerEngine, trainer_image: BuiltImage, image_bundle: Path
) -> None:
    listing = docker_engine.docker(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{image_bundle.resolve()}:/mnt/models:ro", "--entrypoint", "sh", trainer_image.tag,
        "-c", "winequality export triton --bundle /mnt/models --out /tmp/repo && ls /tmp/repo/",
    )  # fmt: skip
    assert {"preprocess", "postprocess", "wine-quality"} <= set(listing.stdout.split())
