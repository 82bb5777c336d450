"""Hot reload of the bundled Triton: a promotion reaches the running server under load.

The app runs ``serve --backend triton`` (the real bundled Triton, explicit model control) while
16 connections post ``/predict`` without pause and record every failure. A real retraining
(embedded MLflow store, the gate, ``/admin/reload`` of the new bundle) promotes version 2: no
request may fail, the answers must move from version 1 to version 2, each answer must carry the
predictions of the version it names, and Triton's repository index must show version 1 unloaded.
A broken bundle, refused by the app, and a version Triton itself cannot load must both leave the
served version answering.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from tests.support.retraining import TUNED, retrain_env, retrain_project, run_retrain, shrunk

from winequality import artifacts
from winequality.bundled_triton import BundledTriton
from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.export.triton_repository import repository_versions
from winequality.inference.predictor import OnnxPredictor
from winequality.pipeline.retrain import ask_app_to_reload
from winequality.process import ManagedProcess, free_port
from winequality.settings import RetrainSettings, ServingSettings
from winequality.triton_reload import LIVE_STATES, TritonReloadError

pytestmark = pytest.mark.integration

T = TypeVar("T")
ADMIN = "admin-t0ken"
CONNECTIONS = 16
STEPS = ("preprocess", "elasticnet", "postprocess")
MODELS = (*STEPS, schema.MODEL_NAME)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> Path:
    """The first champion shrinks hard without a search, so the tuned challenger beats it."""
    root = tmp_path_factory.mktemp("triton-reload") / "project"
    return retrain_project(root, real_wines, seed=5, params={"weak": shrunk(0.1), "tuned": TUNED})


def env_for(project: Path, params: str, app_url: str) -> dict[str, str]:
    return retrain_env(project, params, WINEQ_APP_URL=app_url, WINEQ_ADMIN_TOKEN=ADMIN)


@dataclass(frozen=True, slots=True)
class Served:
    url: str
    triton_url: str
    repository: Path


def triton_of(app_pid: int) -> tuple[str, Path]:
    """HTTP URL and model repository of the tritonserver the app started."""
    children = Path(f"/proc/{app_pid}/task/{app_pid}/children").read_text().split()
    for pid in children:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if "tritonserver" in args[0]:
            flags = dict(a.removeprefix("--").split("=", 1) for a in args[1:] if "=" in a)
            assert flags["model-control-mode"] == "explicit"
            return f"http://127.0.0.1:{flags['http-port']}", Path(flags["model-repository"])
    raise AssertionError(f"no tritonserver among the app's children {children}")


@pytest.fixture(scope="module")
def served(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Champion v1 (first retraining, no app yet), then the app serving it through Triton."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = run_retrain(project, env_for(project, "weak", url), "--no-notify")
    assert (first["promoted"], first["version"]) == (True, "1"), first
    cmd = [sys.executable, "-m", "winequality.cli", "serve", "--backend", "triton",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = tmp_path_factory.mktemp("logs") / "app.log"
    with ManagedProcess("triton-app", cmd, log, env=env_for(project, "weak", url)) as app:
        app.wait_ready(f"{url}/health/ready", timeout=300)
        triton_url, repository = triton_of(app.pid)
        yield Served(url, triton_url, repository)


@dataclass(frozen=True, slots=True)
class Answer:
    started: float
    version: str
    quality: list[float]


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def _drive(url: str, body: bytes, stop: asyncio.Event, load: Load) -> None:
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        content = await response.read()
                        if response.status != 200:
                            load.failures.append(f"{response.status}: {content[:300]!r}")
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                doc = orjson.loads(content)
                quality = [p["quality"] for p in doc["predictions"]]
                load.answers.append(Answer(started, doc["model_version"], quality))

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))


def under_load(url: str, body: bytes, action: Callable[[], T]) -> tuple[T, float, Load]:
    """``action()`` while 16 connections post ``body`` to ``url``; (result, done at, load)."""

    async def run() -> tuple[T, float, Load]:
        load, stop = Load(), asyncio.Event()
        driver = asyncio.create_task(_drive(url, body, stop, load))
        await asyncio.sleep(1.5)
        try:
            result = await asyncio.to_thread(action)
            done = time.monotonic()
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            await driver
        return result, done, load

    return asyncio.run(run())


def index(triton_url: str) -> dict[tuple[str, str], str]:
    entries = httpx.post(f"{triton_url}/v2/repository/index", json={}, timeout=10).json()
    return {(e["name"], e["version"]): e["state"] for e in entries}


@pytest.fixture(scope="module")
def sample(real_wines: pd.DataFrame) -> pd.DataFrame:
    return real_wines.sample(8, random_state=11).reset_index(drop=True)


def predict_body(sample: pd.DataFrame) -> bytes:
    features = sample.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]]
    return orjson.dumps({"wines": features.to_dict(orient="records")})


def expected_quality(bundle: Path, sample: pd.DataFrame) -> np.ndarray:
    quality = OnnxPredictor(bundle).predict_sync(frame_to_matrix(sample)).quality
    return np.round(quality.astype(np.float64), 4)


def assert_each_answer_is_its_version(load: Load, expected: dict[str, np.ndarray]) -> None:
    for version, want in expected.items():
        got = np.array([a.quality for a in load.answers if a.version == version])
        assert len(got), f"no answer from version {version}"
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=2e-4, rtol=0)


def test_retraining_swaps_triton_under_load_without_a_failed_request(
    project: Path, served: Served, sample: pd.DataFrame
) -> None:
    first_bundle = (project / "serving" / "current").resolve()
    env = env_for(project, "tuned", served.url)
    result, done, load = under_load(
        f"{served.url}/predict", predict_body(sample), lambda: run_retrain(project, env)
    )
    assert (result["promoted"], result["version"]) == (True, "2"), result
    assert load.failures == []
    assert {a.version for a in load.answers} == {"1", "2"}
    assert {a.version for a in load.answers if a.started > done} == {"2"}
    assert_each_answer_is_its_version(
        load,
        {
            "1": expected_quality(first_bundle, sample),
            "2": expected_quality(Path(result["model_dir"]), sample),
        },
    )
    states = index(served.triton_url)
    for name in MODELS:
        assert states[(name, "2")] == "READY", states
        assert states.get((name, "1"), "absent") not in LIVE_STATES, states
    assert repository_versions(served.repository) == {name: [2] for name in MODELS}
    metadata = httpx.get(f"{served.url}/metadata", timeout=10).json()["model"]
    assert metadata["version"] == "2"


def test_a_broken_bundle_is_refused_and_the_served_version_keeps_answering(
    served: Served, sample: pd.DataFrame, tmp_path: Path
) -> None:
    model = httpx.get(f"{served.url}/metadata", timeout=10).json()["model"]
    version, current = model["version"], Path(model["source"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / artifacts.MODEL_FILE).write_bytes(b"not an onnx model")
    meta = artifacts.read_metadata(current).model_copy(update={"version": "9"})
    (broken / artifacts.METADATA_FILE).write_text(meta.model_dump_json())
    states, on_disk = index(served.triton_url), repository_versions(served.repository)
    settings = RetrainSettings(app_url=served.url, admin_token=ADMIN)
    (accepted, detail), _, load = under_load(
        f"{served.url}/predict", predict_body(sample), lambda: ask_app_to_reload(settings, broken)
    )
    assert accepted is False
    assert "422" in detail
    assert "not a loadable ONNX model" in detail
    assert "the previous one keeps serving" in detail
    assert load.failures == []
    assert {a.version for a in load.answers} == {version}
    assert_each_answer_is_its_version(load, {version: expected_quality(current, sample)})
    assert index(served.triton_url) == states
    assert repository_versions(served.repository) == on_disk


def test_a_version_triton_cannot_load_is_withdrawn_and_the_old_one_serves(
    serving_bundles: dict[str, Path], sample: pd.DataFrame, tmp_path: Path
) -> None:
    # The in-process check would refuse this bundle before the server sees it; skipping it
    # shows what Triton's own refusal does.
    broken = tmp_path / "broken"
    shutil.copytree(serving_bundles["2"], broken)
    (broken / artifacts.MODEL_FILE).write_bytes(b"not an onnx model")
    meta = artifacts.read_metadata(broken).model_copy(update={"version": "5"})
    (broken / artifacts.METADATA_FILE).write_text(meta.model_dump_json())
    matrix = frame_to_matrix(sample)
    v2_inputs = [
        {"name": n, "shape": [len(sample), 1], "datatype": "FP32", "data": sample[n].tolist()}
        for n in schema.FEATURE_NAMES
    ]
    v2_inputs.append(
        {"name": schema.WINE_TYPE, "shape": [len(sample), 1], "datatype": "BYTES",
         "data": sample[schema.WINE_TYPE].tolist()}
    )  # fmt: skip

    def infer(url: str) -> tuple[str, np.ndarray]:
        response = httpx.post(
            f"{url}/v2/models/{schema.MODEL_NAME}/infer", json={"inputs": v2_inputs}, timeout=30
        )
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        return response.json()["model_version"], np.array(outputs[schema.OUTPUT_QUALITY])

    def quality(bundle: Path) -> np.ndarray:
        return OnnxPredictor(bundle).predict_sync(matrix).quality

    with BundledTriton(ServingSettings(model_dir=serving_bundles["1"])) as triton:
        assert triton.reloader is not None
        assert triton.server is not None
        reloader, url = triton.reloader, triton.server.http_url
        reloader.deploy(serving_bundles["1"])
        with pytest.raises(TritonReloadError) as refused:
            reloader.deploy(broken, precheck=False)
        message = str(refused.value)
        assert "as version 5 (loading elasticnet failed" in message
        assert "Protobuf parsing failed" in message
        assert "version 1 keeps serving" in message
        version, got = infer(url)
        assert version == "1"
        np.testing.assert_allclose(got, quality(serving_bundles["1"]), atol=1e-5)
        states = index(url)
        assert all(states[(name, "1")] == "READY" for name in MODELS), states
        assert not any(states.get((name, "5")) in LIVE_STATES for name in MODELS), states
        for path in ("/v2/health/ready", f"/v2/models/{schema.MODEL_NAME}/ready"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, path
        assert repository_versions(reloader.repository) == {name: [1] for name in MODELS}

        # The next good bundle still deploys, as the next free number, which maps back to it.
        reloader.deploy(serving_bundles["2"])
        version, got = infer(url)
        assert version == "6"
        assert reloader.versions["6"].version == "2"
        np.testing.assert_allclose(got, quality(serving_bundles["2"]), atol=1e-5)
        assert repository_versions(reloader.repository) == {name: [6] for name in MODELS}
