"""The detector image, built offline on the Debian base: only the detector's dependencies, and a
container of it reads the bundle's reference sample and passes its readiness check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.containers.conftest import BuildImage
from tests.support.docker import BuiltImage, DockerEngine, container_name, image_summary

# Cold, a build (and the base image before it) takes minutes: beyond the default timeout.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

NOT_SHIPPED = ("sklearn", "onnxruntime", "mlflow", "dvc")


@pytest.fixture(scope="module")
def detector_image(build_image: BuildImage) -> BuiltImage:
    return build_image("detector", "detector.Dockerfile")


def test_detector_image_builds_offline_without_the_training_stack(
    docker_engine: DockerEngine,
    detector_image: BuiltImage,
    record_property: Callable[[str, object], None],
) -> None:
    record_property("image", image_summary(detector_image))
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    found = docker_engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python", detector_image.tag,
        "-c", probe, *NOT_SHIPPED,
    ).stdout.split()  # fmt: skip
    assert found == []


def test_detector_container_is_ready_on_the_bundles_reference(
    docker_engine: DockerEngine, detector_image: BuiltImage, image_bundle: Path
) -> None:
    # Its port is fixed (8010, the cluster's): a network namespace of its own keeps it from
    # colliding with anything on this host; the HEALTHCHECK runs inside it.
    name = container_name(detector_image)
    docker_engine.docker(
        "run", "-d", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{image_bundle.resolve()}:/mnt/models:ro", "--health-interval", "1s",
        detector_image.tag,
    )  # fmt: skip
    try:
        docker_engine.wait_healthy(name)
        # The HTML report draws with matplotlib on the read-only root (MPLCONFIGDIR in /tmp).
        fetch = (
            "import urllib.request as r; print(r.urlopen('http://127.0.0.1:8010/report').status)"
        )
        assert docker_engine.docker("exec", name, "python", "-c", fetch).stdout.strip() == "200"
    finally:
        docker_engine.remove(name)
