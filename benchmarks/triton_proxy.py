"""Latency of the remote path: Triton's own V2 endpoint vs. the same request through our client.

One real Triton server (bundled in nvidia-pytriton, ``python`` variant repository) serves a
StandardScaler + ElasticNet trained on the real UCI data. At one connection, sequentially, on
the uvloop event loop (as the app runs):

* ``triton (aiohttp)``: the pre-encoded request RemoteV2Predictor sends (binary tensor data
  extension unless ``--json``) POSTed with one aiohttp.ClientSession: Triton's own cost on the
  same request plus a cheap client, the baseline;
* ``triton JSON (aiohttp)``: the same tensors as V2 JSON (what the app sent before it used the
  binary extension): how much of Triton's own time is JSON;
* ``triton (httpx)``: the baseline's POST with httpx.AsyncClient (httpx's own cost shows against
  the baseline: about 0.6 ms per request on the 2-core dev box);
* ``RemoteV2Predictor``: ``predict(matrix)``, i.e. building the request from the model matrix,
  the same POST, and parsing the response;
* ``app --backend remote``: ``POST /predict`` on ``winequality serve`` proxying to Triton, sent
  with aiohttp like the baseline.

Targets (issue "Serving"): RemoteV2Predictor and app p50 <= 1.5x the baseline's p50.

    uv run python benchmarks/triton_proxy.py [--requests 2000] [--rows 1 100] [--json]
"""

from __future__ import annotations

import argparse
import os
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

from winequality import schema
from winequality.data.ingest import read_uci_dir
from winequality.export.triton import write_model_repository
from winequality.inference.features import frame_to_matrix
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
TARGETS = ("RemoteV2Predictor", "app --backend remote")


async def timed(call: Callable[[], Awaitable[object]], n: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        await call()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        await call()
        out[i] = time.perf_counter() - t0
    return out * 1000.0


async def measure(
    triton_url: str,
    app_url: str | None,
    frame: pd.DataFrame,
    n: int,
    warmup: int,
    binary: bool,
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
    limits = httpx.Limits(max_connections=1)
    results: dict[str, np.ndarray] = {}

    async with aiohttp_session() as session:

        def post(data: bytes, hdrs: dict[str, str]) -> Callable[[], Awaitable[object]]:
            async def direct() -> object:
                async with session.post(infer, data=data, headers=hdrs) as response:
                    response.raise_for_status()
                    return await response.read()

            return direct

        results[BASELINE] = await timed(post(body, headers), n, warmup)
        if binary:
            results["triton JSON (aiohttp)"] = await timed(post(json_body, json_headers), n, warmup)

    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def direct_httpx() -> object:
            response = await client.post(infer, content=body, headers=headers)
            response.raise_for_status()
            return response

        results["triton (httpx)"] = await timed(direct_httpx, n, warmup)

    predictor = RemoteV2Predictor(triton_url, timeout_s=10, max_connections=1, binary_data=binary)
    try:
        results["RemoteV2Predictor"] = await timed(lambda: predictor.predict(matrix), n, warmup)
    finally:
        await predictor.close()

    if app_url is not None:
        wines = frame.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict("records")
        app_body = orjson.dumps({"wines": wines})
        async with aiohttp_session() as session:

            async def via_app() -> object:
                async with session.post(
                    f"{app_url}/predict", data=app_body, headers=json_headers
                ) as response:
                    response.raise_for_status()
                    return await response.read()

            results["app --backend remote"] = await timed(via_app, n, warmup)
    return results


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--no-app", action="store_true", help="skip the app measurement")
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
                    )
                )
                base = float(np.percentile(results[BASELINE], 50))
                encoding = "V2 JSON" if args.json else "binary tensor data"
                print(
                    f"\n{rows} row(s) per request ({encoding}), 1 connection, "
                    f"{args.requests} requests"
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
