"""The app through its ASGI interface: endpoints, refusals, hot swap, metrics."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.support.bundles import (
    bundle_with_absurd_scores,
    bundle_with_wrong_width,
    corrupt_metadata,
    corrupt_onnx,
    train_model,
    write_model_bundle,
)
from tests.unit.serving.conftest import ADMIN_TOKEN, TestClient

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.serving.app import create_app
from winequality.serving.schemas import example_wine
from winequality.settings import ServingSettings

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def predict(client: TestClient, doc: Any) -> Any:
    return client.post("/predict", json=doc)


def problems(response: Any) -> list[tuple[int | None, str | None]]:
    return [(p["index"], p["field"]) for p in response.json()["detail"]]


def test_predict_answers_quality_and_class_per_wine(
    client: TestClient, wine_model: Pipeline
) -> None:
    wines = [example_wine("red"), example_wine("white")]
    response = predict(client, {"wines": wines})
    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == schema.MODEL_NAME
    assert body["model_version"] == "1"
    assert body["request_id"] == response.headers["x-request-id"]
    expected = wine_model.predict(frame_to_matrix(pd.DataFrame(wines)))
    got = [p["quality"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert [p["quality_class"] for p in body["predictions"]] == np.rint(expected).astype(
        int
    ).tolist()


def test_predict_matches_scikit_learn_on_real_wines(
    client: TestClient, real_wines: pd.DataFrame, wine_model: Pipeline
) -> None:
    sample = real_wines.sample(50, random_state=3)
    records = sample[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
    response = predict(client, {"wines": records})
    assert response.status_code == 200
    got = [p["quality"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(got, wine_model.predict(frame_to_matrix(sample)), atol=1e-3)


def test_a_callers_request_id_is_echoed_as_correlation_id_never_the_key(
    client: TestClient,
) -> None:
    response = client.post(
        "/predict", json={"wines": [example_wine()]}, headers={"x-request-id": "abc-123"}
    )
    issued = response.json()["request_id"]
    assert issued != "abc-123"
    assert response.headers["x-request-id"] == issued
    assert response.headers["x-correlation-id"] == "abc-123"


def test_issued_request_ids_are_random_32_hex_digits(client: TestClient) -> None:
    ids = [predict(client, {"wines": [example_wine()]}).json()["request_id"] for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # Not a prefix and a counter: every part of an id is new each time.
    assert len({i[:8] for i in ids}) == len({i[-8:] for i in ids}) == 50


@pytest.mark.parametrize(
    ("wine", "field"),
    [
        ({k: v for k, v in example_wine().items() if k != "ph"}, "ph"),
        (example_wine() | {"extra": 1}, "extra"),
        (example_wine() | {"alcohol": "9.4"}, "alcohol"),
        (example_wine() | {"alcohol": 40.0}, "alcohol"),
        (example_wine() | {"density": -1}, "density"),
        (example_wine() | {"wine_type": "rose"}, "wine_type"),
    ],
)
def test_bad_wine_is_a_422_naming_index_and_field(
    client: TestClient, wine: dict[str, Any], field: str
) -> None:
    response = predict(client, {"wines": [example_wine(), wine]})
    assert response.status_code == 422
    assert problems(response) == [(1, field)]


def test_nan_literal_is_a_422(client: TestClient) -> None:
    raw = orjson.dumps({"wines": [example_wine() | {"ph": 0}]}).replace(b'"ph":0', b'"ph":NaN')
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "invalid JSON" in response.json()["error"]


def test_empty_list_is_a_422(client: TestClient) -> None:
    response = predict(client, {"wines": []})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "wines"]


def test_too_many_rows_is_a_422(client: TestClient, settings: ServingSettings) -> None:
    response = predict(client, {"wines": [example_wine()] * (settings.max_batch_rows + 1)})
    assert response.status_code == 422
    assert f"at most {settings.max_batch_rows} wines" in response.json()["error"]


def test_body_over_limit_is_a_413(client: TestClient, settings: ServingSettings) -> None:
    raw = b'{"wines": [' + b" " * settings.max_body_bytes + b"]}"
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert str(settings.max_body_bytes) in response.json()["error"]


def test_chunked_body_over_limit_is_a_413(client: TestClient, settings: ServingSettings) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"wines": ['
        for _ in range(settings.max_body_bytes // 1000 + 1):
            yield b" " * 1000
        yield b"]}"

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_a_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    raw = orjson.dumps({"wines": [example_wine()]})
    response = client.post("/predict", content=raw, headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_json_with_charset_is_accepted(client: TestClient) -> None:
    raw = orjson.dumps({"wines": [example_wine()]})
    headers = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/predict", content=raw, headers=headers).status_code == 200


def test_get_on_predict_is_a_405(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == "1"


def test_no_model_means_not_ready_and_503(tmp_path: Path) -> None:
    settings = ServingSettings(model_dir=tmp_path / "absent", _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert "absent" in ready.json()["reason"]
        assert client.get("/v2/health/ready").status_code == 503
        response = predict(client, {"wines": [example_wine()]})
        assert response.status_code == 503
        assert "no model loaded" in response.json()["error"]


def test_metadata_describes_model_and_features(client: TestClient, model_dir: Path) -> None:
    body = client.get("/metadata").json()
    assert body["model"]["version"] == "1"
    assert body["model"]["run_id"] == "run-1"
    assert body["model"]["metrics"]["rmse"] == pytest.approx(0.74)
    assert body["model"]["source"] == str(model_dir.resolve())
    alcohol = next(f for f in body["features"] if f["name"] == "alcohol")
    assert alcohol == {
        "name": "alcohol",
        "unit": "% vol",
        "minimum": 0.0,
        "maximum": 25.0,
        "description": "Alcohol by volume.",
        "example": 9.4,
    }


def test_openapi_documents_predict_with_a_filled_in_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body_ref = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body_ref["schema"]["$ref"].endswith("/PredictRequest")
    request = spec["components"]["schemas"]["PredictRequest"]
    assert request["examples"][0]["wines"][0] == example_wine("red")
    wine = spec["components"]["schemas"]["Wine"]["properties"]["ph"]
    assert (wine["minimum"], wine["maximum"]) == (0.0, 14.0)
    assert "/v2/models/wine-quality/infer" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_metrics_count_requests_errors_and_predictions(client: TestClient) -> None:
    predict(client, {"wines": [example_wine(), example_wine("white")]})
    predict(client, {"wines": []})
    client.get("/health/live")
    text = client.get("/metrics").text
    assert (
        'winequality_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    )
    assert (
        'winequality_http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    )
    assert (
        'winequality_http_requests_total{method="GET",route="/health/live",status="200"} 1.0'
        in text
    )
    assert 'winequality_http_errors_total{reason="too_short",route="/predict"} 1.0' in text
    assert "winequality_predicted_quality_count 2.0" in text
    assert 'winequality_http_request_duration_seconds_count{route="/predict"} 2.0' in text
    assert (
        'winequality_model_info{backend="onnx",name="wine-quality",run_id="run-1",version="1"} 1.0'
        in text
    )


# --- V2 -----------------------------------------------------------------------------------------


def v2_request(wines: list[dict[str, Any]]) -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [
        {"name": n, "datatype": "FP32", "shape": [len(wines), 1], "data": [w[n] for w in wines]}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": "wine_type",
            "datatype": "BYTES",
            "shape": [len(wines), 1],
            "data": [w["wine_type"] for w in wines],
        }
    )
    return {"id": "req-7", "inputs": inputs}


def test_v2_infer_matches_predict(client: TestClient) -> None:
    wines = [example_wine("red"), example_wine("white")]
    v2 = client.post("/v2/models/wine-quality/infer", json=v2_request(wines)).json()
    plain = predict(client, {"wines": wines}).json()["predictions"]
    assert v2["model_name"] == "wine-quality"
    assert v2["id"] == "req-7"
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["quality"]["datatype"] == "FP32"
    assert outputs["quality"]["shape"] == [2, 1]
    assert outputs["quality_class"]["datatype"] == "INT32"
    np.testing.assert_allclose(outputs["quality"]["data"], [p["quality"] for p in plain], atol=1e-3)
    assert outputs["quality_class"]["data"] == [p["quality_class"] for p in plain]


def test_v2_infer_without_content_type_is_accepted(client: TestClient) -> None:
    raw = orjson.dumps(v2_request([example_wine()]))
    assert client.post("/v2/models/wine-quality/infer", content=raw).status_code == 200


def test_v2_bad_value_is_a_422_with_error_field(client: TestClient) -> None:
    response = client.post(
        "/v2/models/wine-quality/infer", json=v2_request([example_wine() | {"ph": 20.0}])
    )
    assert response.status_code == 422
    assert "ph" in response.json()["error"]
    assert problems(response) == [(0, "ph")]


def test_v2_metadata_and_health(client: TestClient) -> None:
    meta = client.get("/v2/models/wine-quality").json()
    assert [t["name"] for t in meta["inputs"]] == [*schema.FEATURE_NAMES, "wine_type"]
    assert {t["name"]: t["datatype"] for t in meta["outputs"]} == {
        "quality": "FP32",
        "quality_class": "INT32",
    }
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/models/wine-quality/ready").status_code == 200


# --- hot swap -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_v2(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    model = train_model(real_wines, alpha=0.5)
    return write_model_bundle(tmp_path_factory.mktemp("v2") / "bundle", model, "2")


def reload(client: TestClient, model_dir: Path | None = None, **headers: str) -> Any:
    body = {"model_dir": str(model_dir)} if model_dir else None
    return client.post("/admin/reload", json=body, headers=headers)


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": ADMIN_TOKEN}]
)
def test_reload_without_valid_token_is_a_401(
    client: TestClient, headers: dict[str, str], bundle_v2: Path
) -> None:
    response = reload(client, bundle_v2, **headers)
    assert response.status_code == 401
    assert client.get("/metadata").json()["model"]["version"] == "1"


def test_reload_is_disabled_without_configured_token(model_dir: Path, bundle_v2: Path) -> None:
    settings = ServingSettings(model_dir=model_dir, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        response = reload(client, bundle_v2, authorization="Bearer ")
        assert response.status_code == 401
        assert response.json()["detail"]["reason"] == "auth_disabled"
        assert response.headers["www-authenticate"] == "Bearer"


def test_reload_swaps_to_the_new_bundle(client: TestClient, bundle_v2: Path) -> None:
    before = predict(client, {"wines": [example_wine()]}).json()["predictions"]
    response = reload(client, bundle_v2, **AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "status": "reloaded",
        "previous_version": "1",
        "model_version": "2",
        "model_dir": str(bundle_v2.resolve()),
    }
    after = predict(client, {"wines": [example_wine()]}).json()
    assert after["model_version"] == "2"
    assert after["predictions"] != before
    assert 'winequality_model_reloads_total{result="ok"} 2.0' in client.get("/metrics").text


def test_reload_without_body_rereads_the_configured_dir(
    client: TestClient, model_dir: Path, bundle_v2: Path
) -> None:
    shutil.rmtree(model_dir)
    shutil.copytree(bundle_v2, model_dir)
    assert reload(client, **AUTH).json()["model_version"] == "2"


def broken_bundles(root: Path, wines: pd.DataFrame, good: Path) -> dict[str, Path]:
    def copy(name: str) -> Path:
        return Path(shutil.copytree(good, root / name))

    return {
        "corrupt onnx": corrupt_onnx(copy("corrupt")),
        "wrong input width": bundle_with_wrong_width(root / "narrow", wines),
        "metadata not json": corrupt_metadata(copy("badjson"), "{not json"),
        "metadata wrong columns": corrupt_metadata(copy("badcols"), {"model_columns": ["a", "b"]}),
        "absurd scores": bundle_with_absurd_scores(root / "absurd", wines),
        "missing dir": root / "nowhere",
    }


def test_broken_bundles_are_refused_and_the_old_model_keeps_serving(
    client: TestClient, tmp_path: Path, real_wines: pd.DataFrame, bundle_v1: Path
) -> None:
    expected_reasons = {
        "corrupt onnx": "not a loadable ONNX model",
        "wrong input width": "12 columns",
        "metadata not json": "invalid metadata",
        "metadata wrong columns": "model_columns",
        "absurd scores": "not finite scores within [0, 10]",
        "missing dir": "not a directory",
    }
    for name, bundle in broken_bundles(tmp_path, real_wines, bundle_v1).items():
        response = reload(client, bundle, **AUTH)
        assert response.status_code == 422, name
        assert expected_reasons[name] in response.json()["detail"], (name, response.json())
        served = predict(client, {"wines": [example_wine()]})
        assert served.status_code == 200
        assert served.json()["model_version"] == "1"
    assert client.get("/health/ready").status_code == 200
    assert 'winequality_model_reloads_total{result="refused"} 6.0' in client.get("/metrics").text


def test_watcher_reloads_when_metadata_changes(
    model_dir: Path, bundle_v2: Path, wine_model: Pipeline
) -> None:
    settings = ServingSettings(model_dir=model_dir, reload_watch_s=0.05, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        assert predict(client, {"wines": [example_wine()]}).json()["model_version"] == "1"
        write_model_bundle(model_dir, wine_model, "3")
        # Loading a bundle takes a while on a loaded machine: a deadline, not a count of looks.
        deadline = time.monotonic() + 30
        while client.get("/health/ready").json()["model_version"] != "3":
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        assert predict(client, {"wines": [example_wine()]}).json()["model_version"] == "3"
