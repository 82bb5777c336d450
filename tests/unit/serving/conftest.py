"""A real bundle (ElasticNet on the UCI data) and an app served by an in-process ASGI client."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.support.bundles import train_model, write_model_bundle

from winequality.serving.app import create_app
from winequality.settings import ServingSettings

with warnings.catch_warnings():
    # Starlette asks for httpx2 at import; the project pins httpx, which works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

ADMIN_TOKEN = "s3cret-token"


@pytest.fixture(scope="session")
def wine_model(real_wines: pd.DataFrame) -> Pipeline:
    return train_model(real_wines)


@pytest.fixture(scope="session")
def bundle_v1(tmp_path_factory: pytest.TempPathFactory, wine_model: Pipeline) -> Path:
    return write_model_bundle(tmp_path_factory.mktemp("bundles") / "v1", wine_model, "1")


@pytest.fixture
def model_dir(tmp_path: Path, bundle_v1: Path) -> Path:
    """A private copy of the v1 bundle (tests may replace it)."""
    return Path(shutil.copytree(bundle_v1, tmp_path / "serving"))


@pytest.fixture
def settings(model_dir: Path) -> ServingSettings:
    return ServingSettings(
        model_dir=model_dir,
        admin_token=ADMIN_TOKEN,
        max_batch_rows=50,
        max_body_bytes=64_000,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def client(settings: ServingSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c
