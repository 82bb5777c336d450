"""Payload logging cost: the app with logging on (to the real drift detector) vs off, same load.

Three instances of ``python -m winequality.serving`` serve the same ONNX bundle (a StandardScaler
+ ElasticNet trained on the real UCI data): logging off, logging on in batched mode (the default:
many CloudEvents per POST, ``application/cloudevents-batch+json``) and logging on in binary mode
(``WINEQ_PAYLOAD_BATCH_MAX=1``: one POST per event, what Seldon's request logger sends). Both
loggers post to one real ``winequality drift serve`` whose reference is a sample of the real
wines; the benchmark checks that every event sent was counted by the detector.

Placement on the 2-core machine: the apps are pinned to core 0, ``wrk`` to core 1. The detector
also has to run somewhere, and in production it runs on another machine: here it shares core 1
with wrk under ``SCHED_IDLE``, in the benchmark's own session, so it only gets the CPU time wrk
leaves idle and never delays a measurement. (In a session of its own, the kernel's autogroup
scheduling would give the detector's session a fair share against wrk's whatever its policy,
and its bursts of work on a batch showed up as milliseconds of app latency.) wrk's percentiles
include its coordinated-omission correction: a pause of the app of S ms counts as the S x rate
requests that would have been sent meanwhile, so rare long pauses weigh as they do for clients.

The detector keeps its default per-caller ingestion limit (``WINEQ_DRIFT_INGEST_RATE_PER_S``,
``WINEQ_DRIFT_INGEST_BURST``), as a user would run it, and both apps are one caller to it (one
address). The binary mode posts twice per prediction, more than that limit at 16 connections:
the detector answers 429 (counted in its ``wineq_drift_rate_limited_posts_total``), the logger
waits as asked and sends the event again, and what overflows its buffer meanwhile is dropped
as ``queue_full``. The report says how many events each logger delivered; ``--ingest-rate``
sets the detector's limit (0: none) to measure the binary mode delivering everything.

Each scenario loads one app at a time, the apps alternating, ``--repeat`` times; the medians are
compared. The app's CPU time per request (from /proc, so other tenants of the core do not count)
is printed next to the latencies.

Target (issue "Monitoring loop"): p99 with logging on <= 1.1x p99 with logging off.

    uv run python benchmarks/payload_logging.py [--short] [--duration 10] [--repeat 3]
        [--ingest-rate POSTS_PER_S]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bundles import train_model, write_model_bundle

from benchmarks.serving import (
    CLIENT_CORE,
    SERVER_CORE,
    Run,
    Server,
    add_load_options,
    cpu_seconds,
    load_setup,
    lua_script,
    start,
    start_detector,
    wines_body,
    wrk,
)
from winequality.process import ManagedProcess

TARGET = 1.1
APPS = ("off", "batched", "binary")
BEFORE = ("batched before", "binary before")
"""``--before``: the two loggers of an earlier tree, run beside ours."""


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
    add_load_options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per app")
    parser.add_argument("--connections", type=int, default=16, help="for the throughput run")
    parser.add_argument(
        "--batch-max", type=int, default=None, help="events per batched POST (default: settings)"
    )
    parser.add_argument("--linger", type=float, default=None, help="batch linger (s)")
    parser.add_argument(
        "--ingest-rate",
        type=float,
        default=None,
        help="the detector's per-caller POSTs/s (WINEQ_DRIFT_INGEST_RATE_PER_S; 0: no limit; "
        "default: the detector's own)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a src/ tree of an earlier commit (git archive REV src | tar -x -C DIR; pass "
        "DIR/src): its loggers run beside ours, as 'batched before' and 'binary before'",
    )
    args = parser.parse_args()
    duration, wines = load_setup(args)
    apps = (*APPS, *BEFORE) if args.before is not None else APPS
    tmp = Path(tempfile.mkdtemp(prefix="wineq-payload-bench-"))
    processes: list[ManagedProcess] = []
    try:
        bundle = write_model_bundle(tmp / "bundle", train_model(wines), version="bench")
        wines.sample(1000, random_state=0).to_parquet(tmp / "reference.parquet")
        (tmp / "single.json").write_bytes(wines_body(wines, 1, 1))
        script = tmp / "single.lua"
        script.write_text(lua_script(tmp / "single.json"))

        limit = {}
        if args.ingest_rate is not None:
            limit["WINEQ_DRIFT_INGEST_RATE_PER_S"] = f"{args.ingest_rate:g}"
        detector, detector_url = start_detector(tmp, env=limit)
        processes.append(detector)

        cmd = [sys.executable, "-m", "winequality.serving", "--model-dir", str(bundle),
               "--log-level", "warning"]  # fmt: skip
        base_env = dict(os.environ, WINEQ_FEEDBACK_DB=str(tmp / "feedback.sqlite"))
        for key in ("WINEQ_DETECTOR_URL", "WINEQ_PAYLOAD_BATCH_MAX", "WINEQ_PAYLOAD_LINGER_S"):
            base_env.pop(key, None)
        on_env = base_env | {"WINEQ_DETECTOR_URL": detector_url}
        envs = {
            "off": base_env,
            "batched": dict(on_env),
            "binary": on_env | {"WINEQ_PAYLOAD_BATCH_MAX": "1"},
        }
        if args.batch_max is not None:
            envs["batched"]["WINEQ_PAYLOAD_BATCH_MAX"] = str(args.batch_max)
        if args.linger is not None:
            envs["batched"]["WINEQ_PAYLOAD_LINGER_S"] = str(args.linger)
        if args.before is not None:
            earlier = {"PYTHONPATH": str(args.before.resolve())}
            envs["batched before"] = envs["batched"] | earlier
            envs["binary before"] = envs["binary"] | earlier
        servers: dict[str, Server] = {}
        for name in apps:
            log_name = f"logging_{name.replace(' ', '_')}"
            servers[name] = start(log_name, cmd, "/health/ready", tmp, envs[name])
            processes.append(servers[name].process)

        results: dict[str, dict[str, list[Measured]]] = {}
        for scenario, connections in (("latency", 1), ("throughput", args.connections)):
            runs: dict[str, list[Measured]] = {name: [] for name in apps}
            for _ in range(args.repeat):
                for name, server in servers.items():
                    runs[name].append(measure(server, script, connections, duration))
            results[scenario] = runs
        report(results, servers, detector_url, duration, args)
    finally:
        for process in processes:
            process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Measured:
    run: Run
    cpu_us_per_request: float
    """The app's own CPU time (user + system, /proc) per answered request."""


def measure(server: Server, script: Path, connections: int, duration: float) -> Measured:
    before = cpu_seconds(server.process.pid)
    run = wrk(server.url + "/predict", script, connections, duration)
    cpu = cpu_seconds(server.process.pid) - before
    drain(server)
    return Measured(run, cpu / (run.requests_per_s * duration) * 1e6)


def drain(server: Server, timeout: float = 120.0) -> None:
    """Wait until the app has delivered (or dropped) what it logged: the apps share a core, and a
    backlog still being sent would slow the next app's run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if total(scrape(server.url), "winequality_payloads_pending").get("", 0.0) == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name}: payload backlog not delivered after {timeout:g} s")


def report(
    results: dict[str, dict[str, list[Measured]]],
    servers: dict[str, Server],
    detector_url: str,
    duration: float,
    args: argparse.Namespace,
) -> None:
    linger = "default linger" if args.linger is None else f"linger {args.linger:g} s"
    print(
        f"\napps pinned to core {SERVER_CORE}, wrk and the detector (SCHED_IDLE) to core "
        f"{CLIENT_CORE}; {duration:g} s per run, medians of {args.repeat} alternating runs"
    )
    batch = "default batch size" if args.batch_max is None else f"batch max {args.batch_max}"
    print(f"batched: {batch}, {linger}; binary: one event per POST")
    apps = list(results["latency"])
    logging_on = apps[1:]
    heads = ("logging off", *logging_on, *(f"{name}/off" for name in logging_on), "target")
    width = max(12, *(len(head) + 2 for head in heads))
    print(f"{'':34}" + "".join(f"{h:>{width}}" for h in heads))
    for scenario, label in (("latency", "c=1"), ("throughput", f"c={args.connections}")):
        runs = results[scenario]

        def median(field: str, runs: dict[str, list[Measured]] = runs) -> dict[str, float]:
            return {
                name: statistics.median(
                    m.cpu_us_per_request if field == "cpu" else getattr(m.run, field)
                    for m in measured
                )
                for name, measured in runs.items()
            }

        lines = (
            (f"single-row req/s ({label})", median("requests_per_s"), ""),
            (f"single-row p50 ms ({label})", median("p50_ms"), ""),
            (f"single-row p99 ms ({label})", median("p99_ms"), f"<= {TARGET}x"),
            (f"app CPU us/request ({label})", median("cpu"), ""),
        )
        for title, values, target in lines:
            fmt = ",.0f" if "req/s" in title or "CPU" in title else ".3f"
            cells = [f"{values[k]:>{width}{fmt}}" for k in apps]
            ratios = [f"{values[k] / values['off']:>{width - 1}.2f}x" for k in logging_on]
            print(f"{title:34}" + "".join(cells) + "".join(ratios) + f"{target:>{width}}")
        cpu = median("cpu")
        print(
            f"{'logging CPU us/request (' + label + ')':34}"
            + f"{'':>{width}}"
            + "".join(f"{cpu[k] - cpu['off']:>{width}.1f}" for k in logging_on)
            + "  (app CPU minus logging off)"
        )
        each = "; ".join(
            f"{name} " + " ".join(f"{m.run.p99_ms:.3f}" for m in runs[name]) for name in apps
        )
        print(f"  p99 ms of each run ({label}): {each}")
        p99 = median("p99_ms")
        verdict = "met" if p99["batched"] <= TARGET * p99["off"] else "MISSED"
        print(f"target batched p99 <= {TARGET}x off ({label}): {verdict}")
    errors = sum(m.run.errors for s in results.values() for ms in s.values() for m in ms)
    print(f"failed requests (all apps): {errors}")
    sent_total = 0.0
    for name in logging_on:
        app = scrape(servers[name].url)
        sent = total(app, "winequality_payloads_sent_total", "type")
        dropped = total(app, "winequality_payloads_dropped_total", "reason")
        sent_total += sent.get("request", 0.0)
        logged = sum(sent.values()) + sum(dropped.values())
        delivered = sum(sent.values()) / logged if logged else 0.0
        print(
            f"{name} payload events sent: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(sent.items()))
            + "; dropped: "
            + (", ".join(f"{k} {v:,.0f}" for k, v in sorted(dropped.items())) or "0")
            + f" ({delivered:.1%} of the events logged delivered)"
        )
    detector = scrape(detector_url)
    rows = total(detector, "wineq_drift_rows_total").get("", 0.0)
    rejected = sum(total(detector, "wineq_drift_rejected_events_total", "reason").values())
    limited = total(detector, "wineq_drift_rate_limited_posts_total").get("", 0.0)
    limit = "its default" if args.ingest_rate is None else f"{args.ingest_rate:g}/s"
    print(
        f"rows received by the detector (both loggers): {rows:,.0f} of {sent_total:,.0f} "
        f"request events sent; rejected: {rejected:g}; POSTs refused by its rate limit "
        f"({limit}, 429, sent again by the logger): {limited:,.0f}"
    )


if __name__ == "__main__":
    main()
