"""Remote mode: the app proxies V2 to an upstream server and reports its outages.

The upstream is a second instance of the app in ONNX mode (it speaks V2 like Triton does); the
slow upstream is a socket that accepts connections and never answers.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from winequality.process import ManagedProcess, free_port
from winequality.serving.schemas import example_wine

pytestmark = pytest.mark.integration


def app_process(name: str, log_dir: Path, port: int, model_dir: Path, **env: str) -> ManagedProcess:
    cmd = [sys.executable, "-m", "winequality.serving", "--model-dir", str(model_dir)]
    return ManagedProcess(
        name,
        [*cmd, "--port", str(port), "--log-level", "warning"],
        log_dir / f"{name}.log",
        env={**os.environ, **env},
    )


@pytest.fixture
def upstream_port() -> int:
    return free_port()


@pytest.fixture
def upstream(
    tmp_path: Path, upstream_port: int, serving_bundles: dict[str, Path]
) -> Iterator[ManagedProcess]:
    process = app_process("upstream", tmp_path, upstream_port, serving_bundles["1"])
    with process:
        process.wait_ready(url=f"http://127.0.0.1:{upstream_port}/v2/health/ready", timeout=60)
        yield process


def start_proxy(
    tmp_path: Path, upstream_url: str, bundle: Path, timeout_s: str = "2"
) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = app_process(
        "proxy",
        tmp_path,
        port,
        bundle,
        WINEQ_BACKEND="remote",
        WINEQ_REMOTE_URL=upstream_url,
        WINEQ_REMOTE_TIMEOUT_S=timeout_s,
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    process.wait_ready(url=f"{url}/health/live", timeout=60)
    return process, url


def test_remote_mode_serves_the_upstream_predictions_and_reports_outages(
    tmp_path: Path, upstream: ManagedProcess, upstream_port: int, serving_bundles: dict[str, Path]
) -> None:
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    proxy, url = start_proxy(tmp_path, upstream_url, serving_bundles["1"])
    wines = {"wines": [example_wine("red"), example_wine("white")]}
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/health/ready").status_code == 200
            direct = httpx.post(f"{upstream_url}/predict", json=wines).json()["predictions"]
            proxied = client.post("/predict", json=wines)
            assert proxied.status_code == 200
            assert proxied.json()["predictions"] == direct
            assert client.get("/metadata").json()["model"]["backend"] == "remote"

            upstream.stop()
            down = client.post("/predict", json=wines)
            assert down.status_code == 503
            assert "unreachable" in down.json()["error"]
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == "not ready"

            upstream.start()
            upstream.wait_ready(url=f"{upstream_url}/v2/health/ready", timeout=60)
            assert client.get("/health/ready").status_code == 200
            assert client.post("/predict", json=wines).status_code == 200
    finally:
        proxy.stop()


def test_slow_upstream_is_a_504_and_not_ready(
    tmp_path: Path, serving_bundles: dict[str, Path]
) -> None:
    # A listening socket that is never accepted: connections succeed, answers never come.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        port = black_hole.getsockname()[1]
        proxy, url = start_proxy(
            tmp_path, f"http://127.0.0.1:{port}", serving_bundles["1"], timeout_s="0.3"
        )
        try:
            with httpx.Client(base_url=url, timeout=10) as client:
                response = client.post("/predict", json={"wines": [example_wine()]})
                assert response.status_code == 504
                assert "did not answer" in response.json()["error"]
                assert client.get("/health/ready").status_code == 503
        finally:
            proxy.stop()
