"""Triton's local target, built offline on the Debian base: the server bundled in the
nvidia-pytriton wheel serves the ensemble from a container, like the in-process predictor."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.integration.containers.conftest import BuildImage
from tests.support.docker import BuiltImage, DockerEngine, container_name, image_summary

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.inference.predictor import OnnxPredictor

# Cold, a build (and the base image before it) takes minutes: beyond the default timeout.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

# Run inside the container (its ports are the image's, in a network namespace of its own).
INFER = (
    "import sys, urllib.request as r; "
    "q = r.Request('http://127.0.0.1:9000/v2/models/wine-quality/infer', sys.stdin.read().encode(),"
    " {'content-type': 'application/json'}); print(r.urlopen(q, timeout=30).read().decode())"
)


@pytest.fixture(scope="module")
def triton_image(build_image: BuildImage) -> BuiltImage:
    return build_image("triton-local", "triton.Dockerfile", target="local")


@pytest.fixture(scope="module")
def triton_container(docker_engine: DockerEngine, triton_image: BuiltImage) -> Iterator[str]:
    name = container_name(triton_image)
    docker_engine.docker(
        # The Python backend makes its stubs' environments in /tmp.
        "run", "-d", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "--health-interval", "1s", triton_image.tag,
    )  # fmt: skip
    try:
        docker_engine.wait_healthy(name, timeout=180)
        yield name
    finally:
        docker_engine.remove(name)


def test_triton_local_image_builds_offline(
    triton_image: BuiltImage, record_property: Callable[[str, object], None]
) -> None:
    record_property("image", image_summary(triton_image))
    assert triton_image.size_mb > 0


def test_triton_container_answers_like_the_in_process_predictor(
    docker_engine: DockerEngine,
    triton_container: str,
    image_bundle: Path,
    real_wines: pd.DataFrame,
) -> None:
    sample = real_wines.sample(50, random_state=12)
    inputs = [
        {"name": n, "shape": [len(sample), 1], "datatype": "FP32", "data": sample[n].tolist()}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "shape": [len(sample), 1],
            "datatype": "BYTES",
            "data": sample[schema.WINE_TYPE].tolist(),
        }
    )
    answer = docker_engine.docker(
        "exec", "-i", triton_container, "python3", "-c", INFER,
        stdin=json.dumps({"inputs": inputs}),
    )  # fmt: skip
    outputs = {o["name"]: np.asarray(o["data"]) for o in json.loads(answer.stdout)["outputs"]}
    want = OnnxPredictor(image_bundle).predict_sync(frame_to_matrix(sample))
    np.testing.assert_allclose(outputs[schema.OUTPUT_QUALITY], want.quality, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(outputs[schema.OUTPUT_CLASS], want.quality_class)
