"""Cost of sharing served rows: the app writing every answered request to PostgreSQL vs not.

Two instances of the app serve the same ONNX bundle (a StandardScaler + ElasticNet trained on the
real UCI data) with the same real PostgreSQL feedback store (Debian's server, started on
loopback by ``tests/support/postgres.py``): ``off`` with ``WINEQ_SERVED_ROWS_SHARED=false`` (the
baseline: only the recent cache), ``shared`` with the served-row writer on (its default for
PostgreSQL). The apps are pinned to core 0, wrk to core 1; PostgreSQL (every process of it)
also runs on core 1, under SCHED_IDLE, as a database on another machine would (it only gets the
time wrk leaves). Its CPU per request is shown apart: on one host it still delays wrk, so at one
connection the database's own work shows in the shared app's req/s and latency.

Each scenario (1 connection: latency; 16: throughput) loads one app at a time, alternating,
``--repeat`` times; medians are compared, with the app's own CPU time per request (/proc) and
the rows the writer wrote and dropped. Between runs the writer's backlog is drained.

    uv run python benchmarks/served_rows.py [--short] [--duration 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bundles import train_model, write_model_bundle
from tests.support.postgres import PostgresServer, postgres_bin

from benchmarks.payload_logging import scrape, total
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
    wines_body,
    wrk,
)
from winequality.process import ManagedProcess

APPS = ("off", "shared")


@dataclass(frozen=True)
class Measured:
    run: Run
    cpu_us_per_request: float
    db_us_per_request: float


def family(root: int) -> list[int]:
    """``root`` and its children (PostgreSQL's postmaster and the processes it forked)."""
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == root:
                pids.append(int(entry.name))
    return pids


def db_cpu_seconds(postgres: PostgresServer) -> dict[int, float]:
    out = {}
    for pid in family(postgres.pid):
        with contextlib.suppress(OSError):
            out[pid] = cpu_seconds(pid)
    return out


def pin_to_client_core(postgres: PostgresServer) -> None:
    """The server and the processes it forked before (writer, checkpointer, ...); backends
    forked later inherit it."""
    for pid in family(postgres.pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {int(CLIENT_CORE)})
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def drain(server: Server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if total(scrape(server.url), "winequality_served_rows_pending").get("", 0.0) == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name}: served-row backlog not written after {timeout:g} s")


def measure(
    server: Server, script: Path, connections: int, duration: float, postgres: PostgresServer
) -> Measured:
    db_before = db_cpu_seconds(postgres)
    before = cpu_seconds(server.process.pid)
    run = wrk(server.url + "/predict", script, connections, duration)
    cpu = cpu_seconds(server.process.pid) - before
    drain(server)
    db_after = db_cpu_seconds(postgres)
    db = sum(t - db_before.get(pid, 0.0) for pid, t in db_after.items())
    requests = run.requests_per_s * duration
    return Measured(run, cpu / requests * 1e6, db / requests * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per app")
    parser.add_argument("--connections", type=int, default=16, help="for the throughput run")
    parser.add_argument("--linger", type=float, default=None, help="writer linger (s)")
    args = parser.parse_args()
    duration, wines = load_setup(args)
    found = postgres_bin()
    if isinstance(found, str):
        sys.exit(found)
    tmp = Path(tempfile.mkdtemp(prefix="wineq-served-bench-"))
    processes: list[ManagedProcess] = []
    postgres = PostgresServer(found)
    try:
        postgres.start()
        pin_to_client_core(postgres)
        url = postgres.create_database("bench")
        bundle = write_model_bundle(tmp / "bundle", train_model(wines), version="bench")
        (tmp / "single.json").write_bytes(wines_body(wines, 1, 1))
        script = tmp / "single.lua"
        script.write_text(lua_script(tmp / "single.json"))
        cmd = [sys.executable, "-m", "winequality.serving", "--model-dir", str(bundle),
               "--log-level", "warning"]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith("WINEQ_")}
        base |= {"WINEQ_DATABASE_URL": url, "WINEQ_DETECTOR_URL": ""}
        envs = {
            "off": base | {"WINEQ_SERVED_ROWS_SHARED": "false"},
            "shared": base | {"WINEQ_SERVED_ROWS_SHARED": "true"},
        }
        if args.linger is not None:
            envs["shared"]["WINEQ_SERVED_ROWS_LINGER_S"] = str(args.linger)
        servers = {}
        for name in APPS:
            servers[name] = start(f"served_{name}", cmd, "/health/ready", tmp, envs[name])
            processes.append(servers[name].process)
        results: dict[str, dict[str, list[Measured]]] = {}
        for scenario, connections in (("latency", 1), ("throughput", args.connections)):
            runs: dict[str, list[Measured]] = {name: [] for name in APPS}
            for _ in range(args.repeat):
                for name, server in servers.items():
                    runs[name].append(measure(server, script, connections, duration, postgres))
            results[scenario] = runs
        report(results, servers, duration, args)
        stored = postgres.query("bench", "SELECT count(*), sum(n_rows) FROM served_requests")
        print(f"served_requests in PostgreSQL: {stored[0][0]} requests, {stored[0][1]} wines")
    finally:
        for process in processes:
            process.stop()
        postgres.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def value(m: Measured, field: str) -> float:
    if field == "cpu":
        return m.cpu_us_per_request
    if field == "db":
        return m.db_us_per_request
    result: float = getattr(m.run, field)
    return result


def report(
    results: dict[str, dict[str, list[Measured]]],
    servers: dict[str, Server],
    duration: float,
    args: argparse.Namespace,
) -> None:
    print(
        f"\napps pinned to core {SERVER_CORE}, wrk and PostgreSQL (SCHED_IDLE) to core "
        f"{CLIENT_CORE}; {duration:g} s per run, medians of {args.repeat} alternating runs"
    )
    heads = ("off", "shared", "shared/off")
    print(f"{'':30}" + "".join(f"{h:>12}" for h in heads))
    for scenario, label in (("latency", "c=1"), ("throughput", f"c={args.connections}")):
        runs = results[scenario]
        for field, unit in (("requests_per_s", "req/s"), ("p50_ms", "p50 ms"),
                            ("p99_ms", "p99 ms"), ("cpu", "CPU us/req"),
                            ("db", "PostgreSQL CPU us/req")):  # fmt: skip
            values = {name: statistics.median(value(m, field) for m in runs[name]) for name in APPS}
            ratio = values["shared"] / values["off"] if values["off"] else float("nan")
            if field == "db":
                ratio = float("nan")  # off writes nothing: the database's cost of sharing
            cells = f"{values['off']:>12.2f}{values['shared']:>12.2f}{ratio:>12.3f}"
            print(f"{label + ' ' + unit:30}{cells}")
        errors = {name: sum(m.run.errors for m in runs[name]) for name in APPS}
        print(f"{label + ' errors':30}{errors['off']:>12}{errors['shared']:>12}")
    metrics = scrape(servers["shared"].url)
    written = total(metrics, "winequality_served_rows_written_total").get("", 0.0)
    dropped = total(metrics, "winequality_served_rows_dropped_total").get("", 0.0)
    print(f"shared app: {written:.0f} wines written, {dropped:.0f} dropped")


if __name__ == "__main__":
    main()
