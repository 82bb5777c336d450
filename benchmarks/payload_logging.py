"""Payload logging cost: the app with logging on (to the real drift detector) vs off, same load.

Two instances of ``python -m winequality.serving`` serve the same ONNX bundle (a StandardScaler +
ElasticNet trained on the real UCI data); one has ``WINEQ_DETECTOR_URL`` pointing at a real
``winequality drift serve`` whose reference is a sample of the real wines. Servers are pinned to
core 0; ``wrk`` and the detector to core 1. Each scenario loads one app at a time, alternating
off/on ``--repeat`` times (the best run of each is kept, as in benchmarks/serving.py).

Target (issue "Monitoring loop"): p99 with logging on <= 1.1x p99 with logging off.

    uv run python benchmarks/payload_logging.py [--short] [--duration 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bundles import train_model, write_model_bundle

from benchmarks.serving import (
    CLIENT_CORE,
    LUA,
    ROOT,
    Run,
    Server,
    start,
    wines_body,
    wrk,
)
from winequality.data.ingest import read_uci_dir
from winequality.process import ManagedProcess, free_port

TARGET = 1.1


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def total(text: str, name: str, label: str | None = None) -> dict[str, float]:
    """Samples of ``name`` summed by the value of ``label``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        key = labels.get(label, "") if label else ""
        out[key] = out.get(key, 0.0) + float(match.group(2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "wine-quality"))
    parser.add_argument("--short", action="store_true", help="3 s per run instead of --duration")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs per app")
    parser.add_argument("--connections", type=int, default=16, help="for the throughput run")
    args = parser.parse_args()
    duration = 3.0 if args.short else args.duration
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (Debian: apt-get install {tool})")

    wines = read_uci_dir(Path(args.data))
    tmp = Path(tempfile.mkdtemp(prefix="wineq-payload-bench-"))
    processes: list[ManagedProcess] = []
    try:
        bundle = write_model_bundle(tmp / "bundle", train_model(wines), version="bench")
        wines.sample(1000, random_state=0).to_parquet(tmp / "reference.parquet")
        (tmp / "single.json").write_bytes(wines_body(wines, 1, 1))
        script = tmp / "single.lua"
        script.write_text(LUA.format(body=tmp / "single.json"))

        det_port = free_port()
        detector_url = f"http://127.0.0.1:{det_port}"
        detector = ManagedProcess(
            "detector",
            ["taskset", "-c", CLIENT_CORE, sys.executable, "-m", "winequality.cli", "drift",
             "serve", "--reference", str(tmp / "reference.parquet"), "--port", str(det_port)],
            tmp / "detector.log",
            cwd=ROOT,
        ).start()  # fmt: skip
        processes.append(detector)
        detector.wait_ready(url=f"{detector_url}/health/ready", timeout=60)

        cmd = [sys.executable, "-m", "winequality.serving", "--model-dir", str(bundle),
               "--log-level", "warning"]  # fmt: skip
        base_env = dict(os.environ, WINEQ_FEEDBACK_DB=str(tmp / "feedback.sqlite"))
        base_env.pop("WINEQ_DETECTOR_URL", None)
        off = start("logging_off", cmd, "/health/ready", tmp, base_env)
        processes.append(off.process)
        on = start(
            "logging_on", cmd, "/health/ready", tmp, base_env | {"WINEQ_DETECTOR_URL": detector_url}
        )
        processes.append(on.process)

        results: dict[str, dict[str, Run]] = {}
        for scenario, connections in (("latency", 1), ("throughput", args.connections)):
            runs: dict[str, list[Run]] = {"off": [], "on": []}
            for _ in range(args.repeat):
                for name, server in (("off", off), ("on", on)):
                    runs[name].append(wrk(server.url + "/predict", script, connections, duration))
            results[scenario] = {k: min(v, key=lambda r: r.p99_ms) for k, v in runs.items()}
        report(results, on, detector_url, duration, args.connections)
    finally:
        for process in processes:
            process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(
    results: dict[str, dict[str, Run]],
    on: Server,
    detector_url: str,
    duration: float,
    connections: int,
) -> None:
    app = scrape(on.url)
    sent = total(app, "winequality_payloads_sent_total", "type")
    dropped = total(app, "winequality_payloads_dropped_total", "reason")
    rows = total(scrape(detector_url), "wineq_drift_rows_total").get("", 0.0)
    print(f"\napp pinned to core 0, wrk and detector to core {CLIENT_CORE}, {duration:g} s per run")
    print(f"{'':34}{'logging off':>12}{'logging on':>12}{'on / off':>10}{'target':>10}")
    for scenario, label in (("latency", "c=1"), ("throughput", f"c={connections}")):
        r = results[scenario]
        print(
            f"{f'single-row req/s ({label})':34}{r['off'].requests_per_s:>12,.0f}"
            f"{r['on'].requests_per_s:>12,.0f}"
            f"{r['on'].requests_per_s / r['off'].requests_per_s:>9.2f}x{'':>10}"
        )
        for q in ("p50", "p99"):
            a, b = getattr(r["off"], f"{q}_ms"), getattr(r["on"], f"{q}_ms")
            target = f"<= {TARGET}x" if q == "p99" else ""
            print(
                f"{f'single-row {q} ms ({label})':34}{a:>12.3f}{b:>12.3f}{b / a:>9.2f}x{target:>10}"
            )
    errors = sum(r.errors for s in results.values() for r in s.values())
    print(f"failed requests (both apps): {errors}")
    print(
        "payload events sent: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(sent.items()))
        + "; dropped: "
        + (", ".join(f"{k} {v:,.0f}" for k, v in sorted(dropped.items())) or "0")
        + f"; rows received by the detector: {rows:,.0f}"
    )


if __name__ == "__main__":
    main()
