"""Fixtures of the integration tests: real model bundles trained on the real data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.support.bundles import train_model, write_model_bundle
from tests.support.postgres import PostgresServer, postgres_bin


@pytest.fixture(scope="session")
def serving_models(real_wines: pd.DataFrame) -> dict[str, Pipeline]:
    """Two genuinely different models: version 1 and version 2."""
    return {"1": train_model(real_wines, alpha=0.01), "2": train_model(real_wines, alpha=0.5)}


@pytest.fixture(scope="session")
def serving_bundles(
    tmp_path_factory: pytest.TempPathFactory, serving_models: dict[str, Pipeline]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serving-bundles")
    return {v: write_model_bundle(root / f"v{v}", m, v) for v, m in serving_models.items()}


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the module (skipped only without its binaries);
    each test creates its own database in it."""
    found = postgres_bin()
    if isinstance(found, str):
        pytest.skip(found)
    with PostgresServer(found) as server:
        yield server
