"""The label join through the app: predictions served, labels posted by request id, realized
quality and the degradation test on /metrics, kept across a restart, reset by a new version."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.support.bundles import write_model_bundle
from tests.unit.serving.conftest import TestClient

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore
from winequality.serving.app import create_app
from winequality.settings import ServingSettings


def settings_for(model_dir: Path, db: Path) -> ServingSettings:
    return ServingSettings(
        model_dir=model_dir,
        feedback_db=db,
        quality_min_labels=50,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "feedback.sqlite"


@pytest.fixture
def client(model_dir: Path, db: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(model_dir, db))) as c:
        yield c


def wines_of(frame: pd.DataFrame) -> list[dict[str, object]]:
    columns = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    return [{str(k): v for k, v in r.items()} for r in frame[columns].to_dict("records")]


def serve_and_label(client: TestClient, frame: pd.DataFrame, shift: int = 0) -> list[float]:
    """Predict ``frame`` in one request, label every row by request id; the served scores."""
    answer = client.post("/predict", json={"wines": wines_of(frame)}).json()
    rid = answer["request_id"]
    for i, quality in enumerate(frame[schema.TARGET].tolist()):
        label = min(int(quality) + shift, schema.QUALITY_MAX)
        response = client.post("/feedback", json={"request_id": rid, "index": i, "quality": label})
        assert response.status_code == 201
    return [p["quality"] for p in answer["predictions"]]


def gauge(client: TestClient, name: str) -> dict[str, float]:
    text = client.get("/metrics").text
    pattern = rf'^winequality_{name}\{{model_version="([^"]*)"\}} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE)}


def test_labels_are_joined_to_the_served_score_and_version(
    client: TestClient, db: Path, real_wines: pd.DataFrame
) -> None:
    frame = real_wines.sample(20, random_state=0)
    served = serve_and_label(client, frame)
    store = FeedbackStore(db)
    pairs = store.labelled("1", 100)
    store.close()
    assert [q for q, _ in pairs] == frame[schema.TARGET].astype(float).tolist()
    assert [s for _, s in pairs] == pytest.approx(served, abs=1e-4)
    assert gauge(client, "realized_labels") == {"1": 20.0}
    rmse = gauge(client, "realized_rmse")["1"]
    errors = frame[schema.TARGET].to_numpy() - pd.Series(served).to_numpy()
    assert rmse == pytest.approx(float((errors**2).mean() ** 0.5), abs=1e-4)
    assert gauge(client, "champion_test_rmse") == {"1": 0.74}
    assert gauge(client, "realized_bias")["1"] == pytest.approx(float(errors.mean()), abs=1e-4)
    assert gauge(client, "realized_bias_z") == {}  # the bundle states no test bias
    assert gauge(client, "realized_degraded") == {"1": 0.0}  # 20 labels: too few to decide


def test_labels_shifted_by_one_make_the_served_version_degraded(
    client: TestClient, real_wines: pd.DataFrame
) -> None:
    serve_and_label(client, real_wines.sample(150, random_state=1), shift=1)
    assert gauge(client, "realized_degraded") == {"1": 1.0}
    assert gauge(client, "realized_rmse_pvalue")["1"] < 1e-3
    assert gauge(client, "realized_rmse")["1"] > 0.74


def test_labels_as_they_are_do_not_degrade(client: TestClient, real_wines: pd.DataFrame) -> None:
    serve_and_label(client, real_wines.sample(150, random_state=2))
    assert gauge(client, "realized_degraded") == {"1": 0.0}
    assert 0.0 <= gauge(client, "realized_within_1_0")["1"] <= 1.0


def test_prediction_ks_compares_served_scores_with_the_reference_sample(
    tmp_path: Path, db: Path, wine_model: Pipeline, real_wines: pd.DataFrame
) -> None:
    reference = tmp_path / "reference.parquet"
    real_wines.sample(500, random_state=3).to_parquet(reference)
    bundle = write_model_bundle(tmp_path / "bundle", wine_model, "7")
    shutil.copyfile(reference, bundle / "reference.parquet")
    with TestClient(create_app(settings_for(bundle, db))) as c:
        mixed = real_wines.sample(200, random_state=4)
        c.post("/predict", json={"wines": wines_of(mixed)})
        near = gauge(c, "prediction_ks")["7"]
    with TestClient(create_app(settings_for(bundle, db))) as c:
        strong = real_wines.nlargest(200, "alcohol")
        c.post("/predict", json={"wines": wines_of(strong)})
        far = gauge(c, "prediction_ks")["7"]
        assert gauge(c, "prediction_ks_rows") == {"7": 200.0}
    assert near < 0.2 < far


def test_prediction_ks_is_scored_from_the_bundles_reference_matrix_alone(
    tmp_path: Path, db: Path, wine_model: Pipeline, real_wines: pd.DataFrame
) -> None:
    # The app image has no pandas to read reference.parquet: write_bundle leaves the matrix.
    reference = tmp_path / "reference.parquet"
    real_wines.sample(500, random_state=3).to_parquet(reference)
    bundle = write_model_bundle(tmp_path / "bundle", wine_model, "7", reference=reference)
    (bundle / "reference.parquet").unlink()
    with TestClient(create_app(settings_for(bundle, db))) as c:
        c.post("/predict", json={"wines": wines_of(real_wines.nlargest(200, "alcohol"))})
        assert gauge(c, "prediction_ks")["7"] > 0.2


@pytest.mark.parametrize("content", [b"", b"not a numpy file", b"\x93NUMPY\x01\x00"])
def test_a_broken_reference_matrix_costs_the_statistic_not_the_model(
    tmp_path: Path, db: Path, wine_model: Pipeline, real_wines: pd.DataFrame, content: bytes
) -> None:
    reference = tmp_path / "reference.parquet"
    real_wines.sample(100, random_state=3).to_parquet(reference)
    bundle = write_model_bundle(tmp_path / "bundle", wine_model, "7", reference=reference)
    (bundle / "reference_matrix.npy").write_bytes(content)
    with TestClient(create_app(settings_for(bundle, db))) as c:
        answer = c.post("/predict", json={"wines": wines_of(real_wines.nlargest(200, "alcohol"))})
        assert answer.status_code == 200
        assert gauge(c, "prediction_ks_rows") == {"7": 200.0}
        assert math.isnan(gauge(c, "prediction_ks")["7"])  # > 0.2 with a sound reference


def test_the_window_survives_a_restart_and_a_new_version_starts_empty(
    model_dir: Path, db: Path, tmp_path: Path, wine_model: Pipeline, real_wines: pd.DataFrame
) -> None:
    settings = settings_for(model_dir, db)
    with TestClient(create_app(settings)) as c:
        serve_and_label(c, real_wines.sample(30, random_state=5))
    with TestClient(create_app(settings)) as c:
        assert gauge(c, "realized_labels") == {"1": 30.0}
        write_model_bundle(tmp_path / "v2", wine_model, "2")
        # A hot swap, as /admin/reload does.
        state = c.app.state.serving  # type: ignore[attr-defined]
        c.portal.call(state.manager.reload, tmp_path / "v2")  # type: ignore[union-attr]
        assert gauge(c, "realized_labels") == {"2": 0.0}
