"""A bug (an exception no endpoint expects) still answers JSON, with the request id, counted.

The real app on a real bundle, with a predictor that breaks on demand: ``predict`` raises a
plain ``RuntimeError`` (the hot endpoints), or reading the model's metadata does (the routes
behind FastAPI's stack, here ``/metadata``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from winequality.artifacts import ModelMetadata
from winequality.contract.features import Matrix
from winequality.http_common import install_error_handling
from winequality.inference.predictor import OnnxPredictor, Prediction
from winequality.serving.app import create_app
from winequality.serving.schemas import example_wine
from winequality.settings import ServingSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient


class BreakingPredictor(OnnxPredictor):
    """The bundle's ONNX model, until ``broken`` is set."""

    broken = False

    @property
    def metadata(self) -> ModelMetadata:
        if BreakingPredictor.broken:
            raise RuntimeError("metadata went missing")
        return super().metadata

    async def predict(self, matrix: Matrix) -> Prediction:
        if BreakingPredictor.broken:
            raise RuntimeError("a bug in the predictor")
        return await super().predict(matrix)


@pytest.fixture
def client(settings: ServingSettings) -> Iterator[TestClient]:
    BreakingPredictor.broken = False
    app = create_app(settings, loader=BreakingPredictor)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    BreakingPredictor.broken = False


def _requests(metrics: str, route: str, status: int) -> float:
    pattern = re.compile(
        rf'^winequality_http_requests_total\{{method="\w+",route="{re.escape(route)}",'
        rf'status="{status}"\}} (\S+)$',
        re.M,
    )
    match = pattern.search(metrics)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("path", ["/predict", "/v2/models/wine-quality/infer"])
def test_a_bug_on_a_hot_endpoint_is_a_json_500_with_the_id_and_counted(
    client: TestClient, path: str
) -> None:
    body = (
        {"wines": [example_wine()]}
        if path == "/predict"
        else {
            "inputs": [
                {"name": k, "shape": [1], "datatype": "BYTES" if k == "wine_type" else "FP32",
                 "data": [v]}
                for k, v in example_wine().items()
            ]
        }
    )  # fmt: skip
    assert client.post(path, json=body).status_code == 200
    BreakingPredictor.broken = True
    response = client.post(path, json=body, headers={"x-request-id": "bug-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    # The scoring endpoints issue their own id (it keys served rows); the caller's is echoed.
    assert response.headers["x-correlation-id"] == "bug-1"
    rid = response.headers["x-request-id"]
    assert rid != "bug-1"
    assert rid in response.json()["error"]
    assert "a bug in the predictor" not in response.text  # no internals to the client
    BreakingPredictor.broken = False
    metrics = client.get("/metrics").text
    assert _requests(metrics, path, 500) == 1
    assert f'winequality_http_errors_total{{reason="internal",route="{path}"}} 1.0' in metrics


def test_a_bug_behind_fastapi_is_a_json_500_with_the_id_and_counted(
    client: TestClient,
) -> None:
    BreakingPredictor.broken = True
    response = client.get("/metadata", headers={"x-request-id": "bug-2"})
    BreakingPredictor.broken = False
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-2"
    detail = response.json()["detail"]
    assert detail["reason"] == "internal_error"
    assert detail["request_id"] == "bug-2"
    assert "metadata went missing" not in response.text
    assert _requests(client.get("/metrics").text, "/metadata", 500) == 1


def test_every_answer_carries_a_request_id(client: TestClient, model_dir: Path) -> None:
    for path in ("/health/live", "/metadata", "/metrics", "/docs", "/openapi.json", "/nope"):
        given = client.get(path).headers.get("x-request-id")
        assert given is not None, path
        assert re.fullmatch(r"[0-9a-f]{32}", given), path
        assert client.get(path, headers={"x-request-id": "mine.1"}).headers["x-request-id"] == (
            "mine.1"
        )
    refused = client.post("/admin/reload", json={"model_dir": str(model_dir)})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"]


def test_install_error_handling_on_any_app() -> None:
    app = FastAPI()
    install_error_handling(app)

    @app.get("/boom")
    async def boom() -> None:
        raise KeyError("secret")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"x-request-id": "a b"})  # not sane: replaced
    assert response.status_code == 500
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert response.json()["detail"] == {
        "reason": "internal_error",
        "message": f"internal server error; the log has its details under request id {rid}",
        "request_id": rid,
    }
    assert "secret" not in response.text
