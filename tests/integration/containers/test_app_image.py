"""The app image, built offline on the Debian base: small, without the training stack, and a
container of it answers /predict like the in-process ONNX predictor."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from tests.integration.containers.conftest import BuildImage
from tests.support.docker import BuiltImage, DockerEngine, container_name, image_summary

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.inference.predictor import OnnxPredictor
from winequality.process import free_port

# Cold, a build (and the base image before it) takes minutes: beyond the default timeout.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

MAX_APP_MB = 400
# The serving path imports none of these (tests/unit/deploy checks its dependency group).
NOT_SHIPPED = ("pandas", "pyarrow", "scipy", "sklearn", "mlflow", "dvc", "matplotlib")


@pytest.fixture(scope="module")
def app_image(build_image: BuildImage) -> BuiltImage:
    return build_image("app", "app.Dockerfile")


@pytest.fixture(scope="module")
def app_url(
    docker_engine: DockerEngine, app_image: BuiltImage, image_bundle: Path
) -> Iterator[str]:
    """A container on the host network (no bridge here), read-only root, a free port."""
    name, port = container_name(app_image), free_port()
    docker_engine.docker(
        "run", "-d", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/var/lib/winequality:uid=10001,gid=10001",
        "-v", f"{image_bundle.resolve()}:/mnt/models:ro",
        "-e", "WINEQ_HOST=127.0.0.1", "-e", f"WINEQ_PORT={port}", "-e", "WINEQ_RELOAD_WATCH_S=0",
        # The image's own HEALTHCHECK command, probed every second instead of every 15.
        "--health-interval", "1s", app_image.tag,
    )  # fmt: skip
    try:
        docker_engine.wait_healthy(name)
        yield f"http://127.0.0.1:{port}"
    finally:
        docker_engine.remove(name)


def test_app_image_builds_offline_under_400_mb_without_the_training_stack(
    docker_engine: DockerEngine,
    app_image: BuiltImage,
    record_property: Callable[[str, object], None],
) -> None:
    record_property("image", image_summary(app_image))
    assert app_image.size_mb <= MAX_APP_MB
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    found = docker_engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python", app_image.tag,
        "-c", probe, *NOT_SHIPPED,
    ).stdout.split()  # fmt: skip
    assert found == []
    user = docker_engine.docker("image", "inspect", "-f", "{{.Config.User}}", app_image.tag)
    assert user.stdout.strip() == "10001:10001"


def test_app_container_predicts_like_the_in_process_onnx_predictor(
    app_url: str, image_bundle: Path, real_wines: pd.DataFrame
) -> None:
    sample = real_wines.sample(200, random_state=11)
    wines = [
        {str(k): v for k, v in row.items()}
        for row in sample[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict("records")
    ]
    response = httpx.post(f"{app_url}/predict", json={"wines": wines}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "3"
    want = OnnxPredictor(image_bundle).predict_sync(frame_to_matrix(sample))
    got = body["predictions"]
    np.testing.assert_allclose([p["quality"] for p in got], want.quality, atol=1e-3)
    assert [p["quality_class"] for p in got] == want.quality_class.tolist()


def test_app_container_scores_its_reference_sample_without_pandas(app_url: str) -> None:
    # The KS statistic's baseline comes from the bundle's reference matrix (numpy only).
    text = httpx.get(f"{app_url}/metrics", timeout=10).text
    assert re.search(r'^winequality_prediction_ks_rows\{model_version="3"\} \d', text, re.M)
