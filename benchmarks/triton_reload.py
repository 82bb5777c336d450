"""Inference latency while the bundled Triton swaps versions: repository control over HTTP
(the baseline) vs over gRPC (what ``triton_reload.RepositoryClient`` does).

One real Triton server in explicit model control mode (``BundledTriton``) serves a real bundle;
16 aiohttp connections post V2 inference requests to its HTTP endpoint without pause while the
reloader deploys another bundle (the two bundles alternate, ``--swaps`` times per mode, modes
taking turns). The only difference between the modes is how the reloader sends ``load`` and
``unload``: ``POST /v2/repository/models/{name}/load`` on Triton's HTTP endpoint, or the same
calls of the gRPC endpoint. Reported per mode: requests, their p50 / p99 / max latency during
the swaps, and how many took longer than the app's default ``remote_timeout_s`` (2 s), which the
app would answer 504.

    uv run python benchmarks/triton_reload.py [--swaps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bundles import train_model, write_model_bundle

from winequality.bundled_triton import BundledTriton
from winequality.contract.parsers import frame_to_matrix
from winequality.data.ingest import read_uci_dir
from winequality.inference.remote import encode_request
from winequality.settings import ServingSettings
from winequality.triton_reload import RepositoryClient, TritonReloader, TritonReloadError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wine-quality"
CONNECTIONS = 16
APP_TIMEOUT_S = ServingSettings().remote_timeout_s


class HttpControl(RepositoryClient):
    """The baseline: ``load`` and ``unload`` through Triton's HTTP repository endpoints."""

    def __init__(self, grpc_url: str, http_url: str) -> None:
        super().__init__(grpc_url)
        self._http = httpx.Client(base_url=http_url, timeout=self.timeout_s)

    def _http_post(self, path: str) -> None:
        response = self._http.post(path, json={})
        if response.status_code != 200:
            raise TritonReloadError(f"{path}: {response.status_code} {response.text[:500]}")

    def load(self, model: str) -> None:
        self._http_post(f"/v2/repository/models/{model}/load")

    def unload(self, model: str) -> None:
        self._http_post(f"/v2/repository/models/{model}/unload")

    def close(self) -> None:
        self._http.close()
        super().close()


async def swap_under_load(
    url: str, body: bytes, reloader: TritonReloader, bundle: Path
) -> tuple[list[float], int]:
    """Latencies (s) of the requests sent while ``bundle`` was deployed; failed requests."""
    latencies: list[float] = []
    failures = 0
    stop = asyncio.Event()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while not stop.is_set():
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    failures += response.status != 200
                latencies.append(time.perf_counter() - started)

        workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
        await asyncio.sleep(0.5)
        latencies.clear()
        await asyncio.to_thread(reloader.deploy, bundle)
        stop.set()
        await asyncio.gather(*workers)
    return latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=3, help="swaps per mode")
    args = parser.parse_args()
    wines = read_uci_dir(DATA)
    results: dict[str, dict[str, Any]] = {
        m: {"latencies": [], "failures": 0, "seconds": 0.0} for m in ("http", "grpc")
    }
    with tempfile.TemporaryDirectory() as tmp:
        bundles = [
            write_model_bundle(Path(tmp) / f"b{i}", train_model(wines, alpha=a), "1")
            for i, a in enumerate((0.01, 0.5))
        ]
        body = encode_request(frame_to_matrix(wines.iloc[:8]))
        with BundledTriton(ServingSettings(model_dir=bundles[0])) as triton:
            assert triton.server is not None
            assert triton.reloader is not None
            server, reloader = triton.server, triton.reloader
            url = f"{server.http_url}/v2/models/wine-quality/infer"
            controls = {
                "http": HttpControl(server.grpc_url, server.http_url),
                "grpc": reloader.client,
            }
            reloader.deploy(bundles[0])
            swap = 0
            for _ in range(args.swaps):
                for mode, control in controls.items():
                    swap += 1
                    reloader.client = control
                    started = time.perf_counter()
                    latencies, failures = asyncio.run(
                        swap_under_load(url, body, reloader, bundles[swap % 2])
                    )
                    results[mode]["seconds"] += time.perf_counter() - started
                    results[mode]["latencies"] += latencies
                    results[mode]["failures"] += failures
            reloader.client = controls["grpc"]
            controls["http"].close()
    print(f"{CONNECTIONS} connections, {args.swaps} swaps per mode, latency during the swaps")
    print(f"{'control':8} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'> ' + format(APP_TIMEOUT_S, 'g') + ' s':>8} {'failed':>7} {'swap s':>7}")  # fmt: skip
    for mode, r in results.items():
        ms = np.asarray(r["latencies"]) * 1000.0
        over = int((ms > APP_TIMEOUT_S * 1000.0).sum())
        print(
            f"{mode:8} {len(ms):9d} {np.percentile(ms, 50):8.1f} {np.percentile(ms, 99):8.1f} "
            f"{ms.max():8.1f} {over:8d} {r['failures']:7d} {r['seconds'] / args.swaps:7.1f}"
        )


if __name__ == "__main__":
    main()
