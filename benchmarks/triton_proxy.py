"""Latency of the remote path: Triton's own V2 endpoint vs. the same request through the app.

One real Triton server (bundled in nvidia-pytriton, ``python`` variant repository) serves a
StandardScaler + ElasticNet trained on the real UCI data, and ``winequality serve --backend
remote`` proxies to it. At one connection, sequentially, on the uvloop event loop (as the app
runs), the paths taking turns every ``--block`` requests, so that every path sees the same
moments of the machine:

* ``triton (aiohttp)``: the pre-encoded request RemoteV2Predictor sends (binary tensor data
  extension unless ``--json``) POSTed with one aiohttp.ClientSession: Triton's own cost on the
  request plus a cheap client, the baseline;
* ``triton JSON (aiohttp)``: the same tensors as V2 JSON: how much of Triton's own time is JSON;
* ``triton (httpx)``: the baseline's POST with httpx.AsyncClient (httpx's own cost shows against
  the baseline);
* ``RemoteV2Predictor``: ``predict(matrix)``, i.e. building the request from the model matrix,
  the same POST, and parsing the response;
* ``app V2 infer``: the baseline's very request (same bytes, same headers) sent to the app's
  ``/v2/models/wine-quality/infer``, which validates it and forwards it to Triton: the cost of
  the proxy hop on the same request;
* ``app /predict``: the same wines as the app's JSON API takes them (named features per wine):
  the proxy hop plus reading JSON records instead of binary tensors.

Placement (``--no-pin`` to leave it to the scheduler): the app alone on core 0; Triton (server
and its three Python-backend stub processes) and this client on core 1. In production the app
and Triton run in different pods; here, unpinned, the app's caches were cold on every request
after Triton's four processes ran on its core. The app path also pays two cross-core hops the
baseline does not (client -> app -> Triton and back), so the placement does not favour it.

Target (issue "Serving"): the app's p50 <= 1.5x the baseline's p50 on the same request.

    uv run python benchmarks/triton_proxy.py [--requests 2000] [--rows 1 100] [--json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
import pandas as pd
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.triton_fixtures import start_server, train_bundle

from winequality.contract import schema
from winequality.contract.parsers import frame_to_matrix
from winequality.data.ingest import read_uci_dir
from winequality.export.triton_repository import write_model_repository
from winequality.inference.remote import (
    RemoteV2Predictor,
    encode_binary_request,
    encode_request,
)
from winequality.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wine-quality"
TARGET_RATIO = 1.5
BASELINE = "triton (aiohttp)"
SAME_REQUEST = "app V2 infer"
TARGETS = ("RemoteV2Predictor", SAME_REQUEST)
APP_CORE, TRITON_CORE = "0", "1"

Call = Callable[[], Awaitable[object]]


async def interleaved(
    calls: dict[str, Call], n: int, warmup: int, block: int
) -> dict[str, np.ndarray]:
    """Milliseconds per call: the paths take turns, ``block`` back-to-back requests each.

    Back to back, as a client at one connection sends them, each path runs warm; taking turns
    every few dozen requests spreads the machine's slow drifts over all of them alike.
    """
    for call in calls.values():
        for _ in range(warmup):
            await call()
    out = {name: np.empty(n) for name in calls}
    for start in range(0, n, block):
        for name, call in calls.items():
            for i in range(start, min(start + block, n)):
                t0 = time.perf_counter()
                await call()
                out[name][i] = time.perf_counter() - t0
    return {name: ms * 1000.0 for name, ms in out.items()}


async def measure(
    triton_url: str,
    app_url: str | None,
    frame: pd.DataFrame,
    n: int,
    warmup: int,
    binary: bool,
    block: int,
) -> dict[str, np.ndarray]:
    matrix = frame_to_matrix(frame)
    infer = f"{triton_url}/v2/models/{schema.MODEL_NAME}/infer"
    json_body, json_headers = encode_request(matrix), {"content-type": "application/json"}
    if binary:
        body, header_length = encode_binary_request(matrix)
        headers = {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(header_length),
        }
    else:
        body, headers = json_body, json_headers
    wines = frame.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict("records")
    app_body = orjson.dumps({"wines": wines})
    predictor = RemoteV2Predictor(triton_url, timeout_s=10, max_connections=1, binary_data=binary)
    # One session (one keep-alive connection) per path, as each client would have.
    sessions = [aiohttp_session() for _ in range(4)]
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=10)

    def post(session: aiohttp.ClientSession, url: str, data: bytes, hdrs: dict[str, str]) -> Call:
        async def call() -> object:
            async with session.post(url, data=data, headers=hdrs) as response:
                response.raise_for_status()
                return await response.read()

        return call

    async def with_httpx() -> object:
        response = await client.post(infer, content=body, headers=headers)
        response.raise_for_status()
        return response

    calls: dict[str, Call] = {BASELINE: post(sessions[0], infer, body, headers)}
    if binary:
        calls["triton JSON (aiohttp)"] = post(sessions[1], infer, json_body, json_headers)
    calls["triton (httpx)"] = with_httpx
    calls["RemoteV2Predictor"] = lambda: predictor.predict(matrix)
    if app_url is not None:
        app_infer = f"{app_url}/v2/models/{schema.MODEL_NAME}/infer"
        calls[SAME_REQUEST] = post(sessions[2], app_infer, body, headers)
        calls["app /predict"] = post(sessions[3], f"{app_url}/predict", app_body, json_headers)
    try:
        return await interleaved(calls, n, warmup, block)
    finally:
        await predictor.close()
        await client.aclose()
        for session in sessions:
            await session.close()


def aiohttp_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=10),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
    )


def start_app(
    bundle: Path, triton_url: str, log_dir: Path, binary: bool
) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = dict(os.environ) | {
        "WINEQ_BACKEND": "remote",
        "WINEQ_REMOTE_URL": triton_url,
        "WINEQ_MODEL_DIR": str(bundle),
        "WINEQ_PORT": str(port),
        "WINEQ_HOST": "127.0.0.1",
        "WINEQ_REMOTE_BINARY_DATA": "true" if binary else "false",
    }
    cmd = [sys.executable, "-m", "winequality.cli", "serve", "--log-level", "warning"]
    app = ManagedProcess("app", cmd, log_dir / "app.log", env=env).start()
    url = f"http://127.0.0.1:{port}"
    app.wait_ready(url=f"{url}/health/ready", timeout=60)
    return app, url


def process_tree(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True)
    return [pid, *(p for child in found.stdout.split() for p in process_tree(int(child)))]


def pin(pid: int, core: str) -> None:
    """Every thread of ``pid`` and of its descendants onto ``core``."""
    for each in process_tree(pid):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", core, str(each)], check=True, capture_output=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path")
    parser.add_argument("--warmup", type=int, default=200, help="requests per path first")
    parser.add_argument("--block", type=int, default=50, help="requests per path per turn")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--no-app", action="store_true", help="skip the app measurement")
    parser.add_argument("--no-pin", action="store_true", help="leave placement to the scheduler")
    parser.add_argument(
        "--json", action="store_true", help="V2 JSON instead of the binary tensor data extension"
    )
    args = parser.parse_args()

    wines = read_uci_dir(DATA)
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = train_bundle(tmp / "bundle", wines)
        repo = write_model_repository(bundle, tmp / "repository", "python")
        t0 = time.perf_counter()
        server = start_server(repo, tmp)
        print(f"tritonserver ready in {time.perf_counter() - t0:.1f} s (pid {server.process.pid})")
        app: ManagedProcess | None = None
        try:
            app_url = None
            if not args.no_app:
                app, app_url = start_app(bundle, server.http_url, tmp, not args.json)
            if not args.no_pin:
                pin(server.process.pid, TRITON_CORE)
                pin(os.getpid(), TRITON_CORE)
                if app is not None:
                    pin(app.pid, APP_CORE)
                print(f"app on core {APP_CORE}; Triton and this client on core {TRITON_CORE}")
            ok = True
            for rows in args.rows:
                frame = wines.sample(rows, random_state=rows).reset_index(drop=True)
                results = uvloop.run(
                    measure(
                        server.http_url,
                        app_url,
                        frame,
                        args.requests,
                        args.warmup,
                        not args.json,
                        args.block,
                    )
                )
                base = float(np.percentile(results[BASELINE], 50))
                encoding = "V2 JSON" if args.json else "binary tensor data"
                print(
                    f"\n{rows} row(s) per request ({encoding}), 1 connection, "
                    f"{args.requests} requests per path, paths interleaved"
                )
                print(f"{'path':<24}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'p50 / base':>12}")
                for name, ms in results.items():
                    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
                    print(f"{name:<24}{p50:>9.3f}{p95:>9.3f}{p99:>9.3f}{p50 / base:>11.2f}x")
                for name in (t for t in TARGETS if t in results):
                    ratio = float(np.percentile(results[name], 50)) / base
                    met = ratio <= TARGET_RATIO
                    ok &= met
                    print(
                        f"target {name} p50 <= {TARGET_RATIO}x {BASELINE}: "
                        f"{ratio:.2f}x {'met' if met else 'MISSED'}"
                    )
        finally:
            if app is not None:
                app.stop()
            server.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
