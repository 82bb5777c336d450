"""The ``/predict`` answer, spliced from parts, is byte for byte what orjson writes of its dict."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from tests.unit.serving.conftest import TestClient

from winequality.artifacts import ModelMetadata
from winequality.contract.features import postprocess
from winequality.inference.predictor import Prediction
from winequality.serving.routes.predict import PredictEndpoint, round4

RID = "0123456789abcdef0123456789abcdef"


def as_dict_encoded(prediction: Prediction, md: ModelMetadata, rid: str) -> bytes:
    return orjson.dumps(
        {
            "model_name": md.name,
            "model_version": md.version,
            "request_id": rid,
            "predictions": [
                {"quality": q, "quality_class": c}
                for q, c in zip(
                    round4(prediction.quality), prediction.quality_class.tolist(), strict=True
                )
            ],
        }
    )


def model(name: str = "wine-quality", version: str = "3") -> Any:
    return SimpleNamespace(metadata=ModelMetadata(name=name, version=version))


def answer(endpoint: PredictEndpoint, prediction: Prediction, loaded: Any) -> bytes:
    out, logged = endpoint.respond(None, prediction, loaded, RID, b"{}")
    assert logged == b"{}"
    return out


@pytest.fixture
def endpoint(client: TestClient) -> PredictEndpoint:
    hot = client.app.hot_endpoints["/predict"]  # type: ignore[attr-defined]
    assert isinstance(hot, PredictEndpoint)
    return hot


@pytest.mark.parametrize("n", [1, 2, 8, 9, 100])
def test_scores_and_classes_are_written_as_orjson_writes_the_dict(
    endpoint: PredictEndpoint, n: int
) -> None:
    rng = np.random.default_rng(n)
    # The whole scale, its ends, and scores that round to 4 decimals half to even.
    raw = np.concatenate([rng.uniform(-1.0, 11.0, n), [0.0, 10.0, 5.00005, 1 / 3]])[:n]
    prediction = Prediction(*postprocess(raw.astype(np.float32)))
    loaded = model()
    out = answer(endpoint, prediction, loaded)
    assert out == as_dict_encoded(prediction, loaded.metadata, RID)
    assert [p["quality_class"] for p in orjson.loads(out)["predictions"]] == list(
        prediction.quality_class
    )


def test_a_nan_score_is_written_as_null_as_before(endpoint: PredictEndpoint) -> None:
    # What postprocess makes of a NaN score: NaN, and a class cast from it (int32's minimum).
    quality = np.array([5.5, np.nan, 7.0], dtype=np.float32)
    klass = np.array([6, np.iinfo(np.int32).min, 7], dtype=np.int32)
    prediction = Prediction(quality, klass)
    loaded = model()
    out = answer(endpoint, prediction, loaded)
    assert out == as_dict_encoded(prediction, loaded.metadata, RID)
    assert orjson.loads(out)["predictions"][1]["quality"] is None


def test_each_model_gets_its_own_name_and_version(endpoint: PredictEndpoint) -> None:
    prediction = Prediction(*postprocess(np.array([5.5, 6.25], dtype=np.float32)))
    for loaded in (model(), model('wine "q" \u00e9\\', "2.0"), model(), model(version="4")):
        assert answer(endpoint, prediction, loaded) == as_dict_encoded(
            prediction, loaded.metadata, RID
        )
