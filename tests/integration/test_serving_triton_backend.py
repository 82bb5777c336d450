"""``winequality serve --backend triton``: the bundled Triton server behind the app.

The app starts the real Triton server (python-variant repository written from the bundle) and
proxies to it; its answers must equal the in-process ONNX backend's on real wines, and Ctrl-C
(SIGINT) must stop the app and the Triton server it started.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration


def serve(name: str, log_dir: Path, bundle: Path, *extra: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "winequality.cli", "serve", "--model-dir", str(bundle),
        "--port", str(port), "--log-level", "warning", *extra,
    ]  # fmt: skip
    return ManagedProcess(name, cmd, log_dir / f"{name}.log"), f"http://127.0.0.1:{port}"


def v2_body(wines: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = [
        {"name": n, "shape": [len(wines), 1], "datatype": "FP32", "data": [w[n] for w in wines]}
        for n in schema.FEATURE_NAMES
    ]
    types = [w[schema.WINE_TYPE] for w in wines]
    inputs.append(
        {"name": schema.WINE_TYPE, "shape": [len(wines), 1], "datatype": "BYTES", "data": types}
    )
    return {"inputs": inputs}


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_triton_backend_answers_like_onnx_and_ctrl_c_stops_both(
    tmp_path: Path, serving_bundles: dict[str, Path], real_wines: pd.DataFrame
) -> None:
    sample = real_wines.sample(50, random_state=21)
    records = sample.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict(orient="records")
    wines = [{str(k): v for k, v in row.items()} for row in records]
    onnx, onnx_url = serve("onnx-app", tmp_path, serving_bundles["1"])
    triton, triton_url = serve("triton-app", tmp_path, serving_bundles["1"], "--backend", "triton")
    with onnx, triton:
        onnx.wait_ready(url=f"{onnx_url}/health/ready", timeout=60)
        triton.wait_ready(url=f"{triton_url}/health/ready", timeout=240)
        servers = [p for p in children(triton.pid) if running(p)]
        assert len(servers) == 1, f"expected the app's one tritonserver child, got {servers}"
        assert "tritonserver" in Path(f"/proc/{servers[0]}/cmdline").read_text()

        got = {}
        for name, url in (("onnx", onnx_url), ("triton", triton_url)):
            response = httpx.post(f"{url}/predict", json={"wines": wines}, timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            got[name] = np.array([p["quality"] for p in body["predictions"]])
            assert body["model_version"] == "1"
            # V2 answers are not rounded: the strict comparison of the unrounded scores.
            v2 = httpx.post(
                f"{url}/v2/models/{schema.MODEL_NAME}/infer", json=v2_body(wines), timeout=30
            )
            assert v2.status_code == 200, v2.text
            outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
            got[f"{name}-v2"] = np.array(outputs[schema.OUTPUT_QUALITY])
        np.testing.assert_allclose(got["triton"], got["onnx"], atol=1e-5)
        np.testing.assert_allclose(got["triton-v2"], got["onnx-v2"], atol=1e-5)
        metadata = httpx.get(f"{triton_url}/metadata", timeout=10).json()
        assert metadata["model"]["backend"] == "remote"

        assert triton.proc is not None
        os.kill(triton.pid, signal.SIGINT)
        assert triton.proc.wait(30) == 0
        assert not running(servers[0]), "Ctrl-C left the Triton server running"
