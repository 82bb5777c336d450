"""The app, the detector and the webhook as deployed, shared by the hostile-input tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.support.services import Service, start_app, start_detector, start_webhook

# The job the webhook starts: a Python that exits at once, so the tests see a run finish.
QUICK_JOB = [sys.executable, "-c", "print('{\"promoted\": false}')"]


@pytest.fixture(scope="session")
def app(
    tmp_path_factory: pytest.TempPathFactory, serving_bundles: dict[str, Path]
) -> Iterator[Service]:
    with start_app(tmp_path_factory.mktemp("hostile-app"), serving_bundles["1"]) as service:
        yield service


@pytest.fixture(scope="session")
def detector(
    tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame
) -> Iterator[Service]:
    with start_detector(tmp_path_factory.mktemp("hostile-detector"), real_wines) as service:
        yield service


@pytest.fixture(scope="session")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with start_webhook(tmp_path_factory.mktemp("hostile-webhook"), QUICK_JOB) as service:
        yield service


@pytest.fixture(scope="session")
def broken_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A webhook whose retraining command does not exist."""
    root = tmp_path_factory.mktemp("hostile-webhook-broken")
    with start_webhook(root, [str(root / "no-such-retrain-job")]) as service:
        yield service
