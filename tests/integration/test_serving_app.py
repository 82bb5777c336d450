"""The serving app as deployed: `winequality serve` under uvicorn on a loopback port, over HTTP."""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.support.bundles import bundle_with_wrong_width, corrupt_onnx

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.process import ManagedProcess, free_port
from winequality.serving.schemas import example_wine

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, serving_bundles: dict[str, Path]
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("serving-app")
    model_dir = Path(shutil.copytree(serving_bundles["1"], root / "model"))
    port = free_port()
    env = {
        **os.environ,
        "WINEQ_ADMIN_TOKEN": TOKEN,
        "WINEQ_MAX_BODY_BYTES": str(MAX_BODY),
    }
    cmd = [sys.executable, "-m", "winequality.cli", "serve", "--model-dir", str(model_dir)]
    process = ManagedProcess(
        "serving-app", [*cmd, "--port", str(port), "--log-level", "warning"], root / "app.log", env
    )
    url = f"http://127.0.0.1:{port}"
    with process:
        process.wait_ready(url=f"{url}/health/ready", timeout=60)
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=10) as c:
        yield c


def real_records(
    wines: pd.DataFrame, n: int, seed: int
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    sample = wines.sample(n, random_state=seed)
    return sample[[*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records"), sample


def expected(model: Pipeline, sample: pd.DataFrame) -> np.ndarray:
    return np.clip(model.predict(frame_to_matrix(sample)), 0, 10)


def test_predict_over_http_matches_the_trained_model(
    client: httpx.Client, real_wines: pd.DataFrame, serving_models: dict[str, Pipeline]
) -> None:
    records, sample = real_records(real_wines, 20, 11)
    response = client.post("/predict", json={"wines": records})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "1"
    assert len(body["request_id"]) >= 8
    got = [p["quality"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected(serving_models["1"], sample), atol=1e-3)


def test_bad_wine_over_http_is_a_422_naming_the_field(client: httpx.Client) -> None:
    response = client.post("/predict", json={"wines": [example_wine() | {"ph": "acidic"}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "ph"
    assert response.json()["detail"][0]["index"] == 0


def test_chunked_body_over_limit_is_refused_with_413(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    chunks = (b" " * 10_000 for _ in range(MAX_BODY // 10_000 + 2))
    conn.request(
        "POST",
        "/predict",
        body=chunks,
        headers={"content-type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_declared_length_over_limit_is_refused_with_413(client: httpx.Client) -> None:
    response = client.post(
        "/predict", content=b" " * (MAX_BODY + 1), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_health_metadata_and_metrics(client: httpx.Client) -> None:
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").json()["status"] == "ready"
    meta = client.get("/metadata").json()
    assert [f["name"] for f in meta["features"]] == list(schema.FEATURE_NAMES)
    client.post("/predict", json={"wines": [example_wine()]})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'winequality_http_requests_total{method="POST",route="/predict",status="200"}'
        in metrics.text
    )
    assert "winequality_predicted_quality_bucket" in metrics.text


def test_tritonclient_talks_v2_to_the_app(
    server: str, real_wines: pd.DataFrame, serving_models: dict[str, Pipeline]
) -> None:
    import tritonclient.http as triton

    records, sample = real_records(real_wines, 5, 5)
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    try:
        assert client.is_server_ready()
        assert client.is_model_ready(schema.MODEL_NAME)
        inputs = []
        for name in schema.FEATURE_NAMES:
            tensor = triton.InferInput(name, [len(records), 1], "FP32")
            tensor.set_data_from_numpy(np.array([[r[name]] for r in records], dtype=np.float32))
            inputs.append(tensor)
        wine_type = triton.InferInput(schema.WINE_TYPE, [len(records), 1], "BYTES")
        wine_type.set_data_from_numpy(np.array([[r["wine_type"]] for r in records], dtype=object))
        inputs.append(wine_type)
        result = client.infer(schema.MODEL_NAME, inputs)
        quality = result.as_numpy(schema.OUTPUT_QUALITY)
        klass = result.as_numpy(schema.OUTPUT_CLASS)
    finally:
        client.close()
    assert quality.shape == (5, 1)
    assert klass.dtype == np.int32
    np.testing.assert_allclose(quality[:, 0], expected(serving_models["1"], sample), atol=1e-3)


def test_reload_requires_the_token(client: httpx.Client, serving_bundles: dict[str, Path]) -> None:
    body = {"model_dir": str(serving_bundles["2"])}
    assert client.post("/admin/reload", json=body).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert client.post("/admin/reload", json=body, headers=wrong).status_code == 401
    assert client.get("/metadata").json()["model"]["version"] == "1"


def test_broken_artifacts_are_refused_while_the_old_model_serves(
    client: httpx.Client, tmp_path: Path, real_wines: pd.DataFrame, serving_bundles: dict[str, Path]
) -> None:
    corrupt = corrupt_onnx(Path(shutil.copytree(serving_bundles["1"], tmp_path / "corrupt")))
    narrow = bundle_with_wrong_width(tmp_path / "narrow", real_wines)
    for bundle in (corrupt, narrow):
        response = client.post("/admin/reload", json={"model_dir": str(bundle)}, headers=AUTH)
        assert response.status_code == 422
        assert "previous one keeps serving" in response.json()["detail"]
        served = client.post("/predict", json={"wines": [example_wine()]})
        assert served.status_code == 200
        assert served.json()["model_version"] == "1"


def test_no_request_fails_while_models_are_swapped_under_load(
    server: str,
    real_wines: pd.DataFrame,
    serving_models: dict[str, Pipeline],
    serving_bundles: dict[str, Path],
) -> None:
    records, sample = real_records(real_wines, 10, 21)
    want = {v: expected(m, sample) for v, m in serving_models.items()}
    failures: list[str] = []
    seen: dict[str, int] = {"1": 0, "2": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        with httpx.Client(base_url=server, timeout=10) as c:
            while not stop.is_set():
                response = c.post("/predict", json={"wines": records})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                body = response.json()
                version = body["model_version"]
                got = np.array([p["quality"] for p in body["predictions"]])
                # Every answer comes entirely from the version it claims: no half-swapped model.
                if not np.allclose(got, want[version], atol=1e-3):
                    failures.append(f"version {version} answered other predictions")
                with lock:
                    seen[version] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    swaps = 0
    try:
        with httpx.Client(base_url=server, timeout=10) as admin:
            # Swaps and answers of both versions counted, not assumed to fit a fixed time: a
            # loaded machine slows the reloads and the load threads.
            began = time.monotonic()
            while True:
                with lock:
                    both_served = seen["1"] > 0 and seen["2"] > 0
                if failures:
                    break  # reported below, with what failed
                if swaps >= 4 and both_served and time.monotonic() - began >= 2.5:
                    break
                assert time.monotonic() - began < 60, f"{swaps} swaps, answers {seen} in 60 s"
                version = "2" if swaps % 2 == 0 else "1"
                response = admin.post(
                    "/admin/reload", json={"model_dir": str(serving_bundles[version])}, headers=AUTH
                )
                assert response.status_code == 200, response.text
                assert response.json()["model_version"] == version
                swaps += 1
                time.sleep(0.1)
            admin.post("/admin/reload", json={"model_dir": str(serving_bundles["1"])}, headers=AUTH)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert swaps >= 4
    assert seen["1"] > 0
    assert seen["2"] > 0
