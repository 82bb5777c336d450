"""The generated ensemble on a real Triton server, and RemoteV2Predictor against it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from tests.integration.triton_fixtures import start_server, train_bundle

from winequality.bundled_triton import TritonServer
from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.export.triton_repository import write_model_repository
from winequality.inference.predictor import OnnxPredictor, Prediction
from winequality.inference.remote import (
    RemoteV2Predictor,
    encode_binary_request,
    encode_request,
    parse_v2_response,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def triton_bundle(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    return train_bundle(tmp_path_factory.mktemp("triton") / "bundle", real_wines, version="2")


@pytest.fixture(scope="module")
def triton_server(
    tmp_path_factory: pytest.TempPathFactory, triton_bundle: Path
) -> Iterator[TritonServer]:
    base = tmp_path_factory.mktemp("triton-server")
    repo = write_model_repository(triton_bundle, base / "repository", "python", max_batch_size=256)
    server = start_server(repo, base)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sample(real_wines: pd.DataFrame) -> pd.DataFrame:
    # Both wine types, a spread of qualities: every 26th wine (250 rows, one V2 request).
    return real_wines.iloc[::26].reset_index(drop=True)


def infer(server: TritonServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.http_url}/v2/models/{schema.MODEL_NAME}/infer", json=body, timeout=30
    )


def v2_body(frame: pd.DataFrame) -> dict[str, Any]:
    rows = len(frame)
    inputs: list[dict[str, Any]] = [
        {"name": n, "shape": [rows, 1], "datatype": "FP32", "data": frame[n].tolist()}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "shape": [rows, 1],
            "datatype": "BYTES",
            "data": frame[schema.WINE_TYPE].tolist(),
        }
    )
    return {"inputs": inputs}


def outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]) for o in response.json()["outputs"]}


def expected(bundle: Path, frame: pd.DataFrame) -> Prediction:
    return OnnxPredictor(bundle).predict_sync(frame_to_matrix(frame))


def test_ensemble_answers_like_the_in_process_predictor(
    triton_server: TritonServer, triton_bundle: Path, sample: pd.DataFrame
) -> None:
    response = infer(triton_server, v2_body(sample))
    assert response.status_code == 200, response.text
    got, want = outputs(response), expected(triton_bundle, sample)
    np.testing.assert_allclose(got[schema.OUTPUT_QUALITY], want.quality, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got[schema.OUTPUT_CLASS], want.quality_class)
    assert response.json()["model_version"] == "2"


def test_ensemble_rejects_impossible_values_naming_row_and_field(
    triton_server: TritonServer, sample: pd.DataFrame
) -> None:
    bad = sample.iloc[:3].copy()
    bad.loc[1, "alcohol"] = 40.0
    bad.loc[2, schema.WINE_TYPE] = "rose"
    response = infer(triton_server, v2_body(bad))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "row 1, alcohol: 40.0 is outside the physical range [0.0, 25.0]" in error
    assert "row 2, wine_type: must be one of ['red', 'white'], got 'rose'" in error


def test_ensemble_rejects_a_missing_input(
    triton_server: TritonServer, sample: pd.DataFrame
) -> None:
    body = v2_body(sample.iloc[:2])
    body["inputs"] = [i for i in body["inputs"] if i["name"] != "ph"]
    response = infer(triton_server, body)
    assert response.status_code == 400
    assert "ph" in response.json()["error"]


def test_server_loaded_the_model_step_with_dynamic_batching(triton_server: TritonServer) -> None:
    config = httpx.get(f"{triton_server.http_url}/v2/models/elasticnet/config", timeout=10).json()
    assert config["backend"] == "python"
    assert "dynamic_batching" in config
    assert config["max_batch_size"] == 256


@pytest.mark.parametrize("binary_data", [True, False], ids=["binary", "json"])
def test_remote_predictor_matches_the_in_process_predictor_across_chunks(
    triton_server: TritonServer, triton_bundle: Path, sample: pd.DataFrame, binary_data: bool
) -> None:
    matrix = frame_to_matrix(sample)

    async def run() -> tuple[Prediction, bool, str]:
        # 250 rows in requests of at most 64: four concurrent V2 calls.
        predictor = RemoteV2Predictor(
            triton_server.http_url, max_batch_rows=64, binary_data=binary_data
        )
        try:
            ready = await predictor.ready()
            return await predictor.predict(matrix), ready, predictor.metadata.version
        finally:
            await predictor.close()

    got, ready, version = asyncio.run(run())
    want = expected(triton_bundle, sample)
    assert ready
    assert version == "2"
    np.testing.assert_allclose(got.quality, want.quality, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got.quality_class, want.quality_class)


def test_remote_predictor_request_is_what_the_ensemble_accepts(
    triton_server: TritonServer, sample: pd.DataFrame
) -> None:
    response = httpx.post(
        f"{triton_server.http_url}/v2/models/{schema.MODEL_NAME}/infer",
        content=encode_request(frame_to_matrix(sample.iloc[:3])),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert {o["name"] for o in response.json()["outputs"]} == {
        schema.OUTPUT_QUALITY,
        schema.OUTPUT_CLASS,
    }


def test_triton_takes_the_binary_request_and_answers_in_binary(
    triton_server: TritonServer, triton_bundle: Path, sample: pd.DataFrame
) -> None:
    # Not a JSON answer the parser would also accept: Triton really uses the extension both ways.
    matrix = frame_to_matrix(sample.iloc[:5])
    body, header_length = encode_binary_request(matrix)
    response = httpx.post(
        f"{triton_server.http_url}/v2/models/{schema.MODEL_NAME}/infer",
        content=body,
        headers={
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(header_length),
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    json_length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:json_length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [5 * 4, 5 * 4]
    got = parse_v2_response(header, 5, response.content[json_length:])
    want = expected(triton_bundle, sample.iloc[:5])
    np.testing.assert_allclose(got.quality, want.quality, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got.quality_class, want.quality_class)


def test_triton_refusal_of_a_binary_request_names_the_problem(
    triton_server: TritonServer, sample: pd.DataFrame
) -> None:
    body, header_length = encode_binary_request(frame_to_matrix(sample.iloc[:2]))
    response = httpx.post(
        f"{triton_server.http_url}/v2/models/{schema.MODEL_NAME}/infer",
        content=body[:-3],  # the last wine type cut short
        headers={"inference-header-content-length": str(header_length)},
        timeout=30,
    )
    assert response.status_code == 400
    assert "wine_type" in response.json()["error"]


def test_remote_predictor_is_not_ready_for_an_unknown_model(triton_server: TritonServer) -> None:
    async def run() -> bool:
        predictor = RemoteV2Predictor(triton_server.http_url, model="no-such-model")
        try:
            return await predictor.ready()
        finally:
            await predictor.close()

    assert asyncio.run(run()) is False
