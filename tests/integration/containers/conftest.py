"""The container tests' engine, base image, model bundle and build context (one per session).

Each module builds one image (module fixture) and runs its containers; the sizes and build times
are reported in the session summary (``image`` user properties, tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.support.bundles import train_model, write_model_bundle
from tests.support.docker import BuiltImage, DockerEngine, build_context, ensure_base_image


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = DockerEngine.acquire()
    try:
        yield engine
    finally:
        engine.release()


@pytest.fixture(scope="session")
def base_image(docker_engine: DockerEngine) -> str:
    """``make base-image``: seconds when cached, about 3 minutes from nothing."""
    ensure_base_image(docker_engine)
    return "winequality-base:bookworm"


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """A real bundle with its reference sample (the parquet and the matrix the app reads)."""
    root = tmp_path_factory.mktemp("image-bundle")
    reference = root / "reference.parquet"
    real_wines.sample(1000, random_state=0).to_parquet(reference)
    return write_model_bundle(root / "bundle", train_model(real_wines), "3", reference=reference)


@pytest.fixture(scope="session")
def image_context(tmp_path_factory: pytest.TempPathFactory, image_bundle: Path) -> Path:
    return build_context(tmp_path_factory.mktemp("image-context"), image_bundle)


BuildImage = Callable[..., BuiltImage]


@pytest.fixture(scope="session")
def build_image(docker_engine: DockerEngine, base_image: str, image_context: Path) -> BuildImage:
    """``build_image(name, dockerfile, target=None)``: built offline on the base image, tagged
    for this session only."""

    def build(name: str, dockerfile: str, target: str | None = None) -> BuiltImage:
        tag = f"wqtest-{name}:{os.getpid()}"
        return docker_engine.build(dockerfile, tag, image_context, base=base_image, target=target)

    return build
