"""CPU per request of the hot endpoints in process: /predict beside V2 infer (JSON and binary).

What ``benchmarks/serving.py`` measures under wrk, without the server and the client, so that
a change to a hot path can be weighed on a shared host: each request is the endpoint's
``answer_sync`` and ``Answer.finish`` (metrics, the payload log's hand-over) plus what the
payload logger's worker spends on it (``EventEncoder.extend`` over the exchanges, a step of
``ENCODE_STEP`` at a time, as the worker encodes them). The bodies are ``serving.py``'s:
single-row /predict, V2 JSON and V2 binary of one wine, and V2 binary with an id per request.

The scenarios run in turn, in short blocks (``--block`` requests each), ``--rounds`` times, on
the thread's CPU clock: the host's drift (other tenants, frequency) hits every scenario of a
round alike, and the figure kept is the median over the rounds of each scenario's cost over
/predict's in the same round, with the 95 % interval of that median (as ``serving.py`` reads
its A-B-A rounds). ``--before DIR/src`` runs the same measurement on an earlier tree,
in processes alternating with ours.

    uv run python benchmarks/hot_endpoints.py [--rounds 200] [--block 300] [--before DIR/src]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
Headers = list[tuple[bytes, bytes]]


def measure(data: Path, rounds: int, block: int) -> dict[str, dict[str, float]]:
    """Per scenario: median µs of the answer (``answer_sync`` + ``finish``), of the logger's
    encoding, and the median ratio of their sum to /predict's in the same round."""
    from tests.support.bundles import train_model, write_model_bundle

    from benchmarks.serving import V2_INFER, median_interval, v2_bodies, wines_body
    from winequality.contract import schema
    from winequality.data.ingest import read_uci_dir
    from winequality.serving.payload_logger import ENCODE_STEP, EventEncoder, Exchange

    wines = read_uci_dir(data)
    tmp = Path(tempfile.mkdtemp(prefix="wineq-hot-"))
    bundle = write_model_bundle(tmp / "bundle", train_model(wines), version="bench")
    os.environ.update(
        WINEQ_MODEL_DIR=str(bundle),
        WINEQ_FEEDBACK_DB=str(tmp / "feedback.sqlite"),
        # Payload logging on, as in serving.py; nothing listens: the exchanges are taken below.
        WINEQ_DETECTOR_URL="http://127.0.0.1:9/",
    )
    from winequality.serving.app import create_app

    app = create_app()
    one = wines.sample(1, random_state=1)[[*schema.FEATURE_NAMES, schema.WINE_TYPE]]
    v2_json, v2_binary, header_length = v2_bodies(one.to_dict(orient="records")[0])
    single = wines_body(wines, 1, 1)
    header = json.loads(v2_binary[:header_length])

    def with_id(i: int) -> tuple[Headers, bytes]:
        text = json.dumps({**header, "id": f"request-{i}"}).encode()
        body = text + v2_binary[header_length:]
        return binary_headers(len(text), len(body)), body

    def json_headers(body: bytes) -> Headers:
        length = b"%d" % len(body)
        return [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"content-length", length),
        ]

    def binary_headers(header_length: int, length: int) -> Headers:
        return [
            (b"host", b"x"),
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", b"%d" % header_length),
            (b"content-length", b"%d" % length),
        ]

    async def run() -> dict[str, dict[str, float]]:
        async with app.router.lifespan_context(app):
            predict, v2 = app.hot_endpoints["/predict"], app.hot_endpoints[V2_INFER]
            ids = [with_id(i) for i in range(block)]
            scenarios: dict[str, tuple[Any, list[tuple[Headers, bytes]]]] = {
                "predict": (predict, [(json_headers(single), single)] * block),
                "v2 JSON": (v2, [(json_headers(v2_json), v2_json)] * block),
                "v2 binary": (
                    v2,
                    [(binary_headers(header_length, len(v2_binary)), v2_binary)] * block,
                ),
                "v2 binary, id each": (v2, ids),
            }
            logger = predict.state.payloads
            assert logger is not None, "payload logging is off"
            taken: list[Exchange] = []
            logger.log = taken.append  # type: ignore[method-assign]  # the worker's buffer
            encoder = EventEncoder("bench")
            answers: dict[str, list[float]] = {name: [] for name in scenarios}
            encoding: dict[str, list[float]] = {name: [] for name in scenarios}
            for _ in range(rounds):
                for name, (endpoint, requests) in scenarios.items():
                    taken.clear()
                    start = time.thread_time()
                    for headers, body in requests:
                        endpoint.answer_sync(headers, body).finish()
                    answered = time.thread_time()
                    out: list[bytes] = []
                    for i in range(0, len(taken), ENCODE_STEP):
                        encoder.extend(out, taken[i : i + ENCODE_STEP])
                    done = time.thread_time()
                    answers[name].append((answered - start) / block * 1e6)
                    encoding[name].append((done - answered) / block * 1e6)
            totals = {
                n: [a + e for a, e in zip(answers[n], encoding[n], strict=True)] for n in scenarios
            }
            figures = {}
            for name in scenarios:
                ratios = [t / p for t, p in zip(totals[name], totals["predict"], strict=True)]
                low, high = median_interval(ratios)
                figures[name] = {
                    "answer_us": statistics.median(answers[name]),
                    "encode_us": statistics.median(encoding[name]),
                    "ratio": statistics.median(ratios),
                    "low": low,
                    "high": high,
                }
            return figures

    return asyncio.run(run())


def in_process(src: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """``measure`` in a fresh interpreter with the package of ``src`` (a tree's ``src``)."""
    command = [sys.executable, __file__, "--json", "--src", str(src), "--data", args.data]
    command += ["--rounds", str(args.rounds), "--block", str(args.block)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    measured: dict[str, dict[str, float]] = json.loads(result.stdout)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "wine-quality"))
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--block", type=int, default=300, help="requests per scenario and round")
    parser.add_argument("--before", type=Path, help="an earlier tree's src, measured in turn")
    parser.add_argument("--repeat", type=int, default=2, help="alternations with --before")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        sys.path[:0] = [str(args.src), str(ROOT)]
        print(json.dumps(measure(Path(args.data), args.rounds, args.block)))
        return
    trees = {"ours": ROOT / "src"} | ({"before": args.before} if args.before else {})
    for _ in range(args.repeat if args.before else 1):
        for label, src in trees.items():
            for name, figures in in_process(src, args).items():
                print(
                    f"{label:6s} {name:20s} answer {figures['answer_us']:6.2f} µs"
                    f"  encoding {figures['encode_us']:5.2f} µs"
                    f"  / predict {figures['ratio']:.3f}"
                    f" (95 % interval {figures['low']:.3f}-{figures['high']:.3f})"
                )


if __name__ == "__main__":
    main()
