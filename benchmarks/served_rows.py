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

``--writer-only``: the writer alone, no app, no wrk: the client CPU a request of the previous
``COPY`` (text, one ``write_row`` a request) vs the binary one built from the arrays' buffers,
and the database CPU a row with the previous indexes (two B-trees) vs hash + BRIN, alternating
rounds of ``--batch`` requests on one connection each.

    uv run python benchmarks/served_rows.py --writer-only [--repeat 10] [--batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
from winequality.contract import schema
from winequality.feedback_store.rows import (
    COPY_SIGNATURE,
    COPY_TRAILER,
    SERVED_COLUMNS,
    ServedRequest,
    served_copy_rows,
    served_record,
)
from winequality.feedback_store.writer import COPY_SLICE
from winequality.process import ManagedProcess
from winequality.serving.recent import REQUEST_IDS

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


def served_requests(n: int) -> list[tuple[str, float, ServedRequest]]:
    rng = np.random.default_rng(0)
    rows = rng.random((1, schema.N_MODEL_COLUMNS), dtype=np.float32)
    scores = np.array([5.5], dtype=np.float32)
    return [(REQUEST_IDS.next(), time.time(), ServedRequest(rows, scores, "7")) for _ in range(n)]


def on_cpu_seconds(pid: int) -> float:
    """Time on CPU in nanoseconds (``schedstat``), not clock ticks: a COPY takes a few ticks."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def copy_round(conn: Any, table: str, binary: bool, batch: int) -> tuple[float, float]:
    """(client CPU s, database backend CPU s) of one COPY of ``batch`` new requests."""
    pid = conn.info.backend_pid
    requests = served_requests(batch)
    columns = ", ".join(SERVED_COLUMNS)
    db, client = on_cpu_seconds(pid), time.process_time()
    async with conn.cursor() as cursor:
        if binary:
            statement = f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"
            async with cursor.copy(statement) as copy:
                await copy.write(COPY_SIGNATURE)
                for start in range(0, batch, COPY_SLICE):
                    chunk = requests[start : start + COPY_SLICE]
                    await copy.write(served_copy_rows(chunk, conn.info.encoding))
                await copy.write(COPY_TRAILER)
        else:
            async with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for rid, at, served in requests:
                    await copy.write_row(served_record(rid, at, served))
    await conn.commit()
    return time.process_time() - client, on_cpu_seconds(pid) - db


def writer_only(url: str, repeat: int, batch: int) -> None:
    import psycopg

    from winequality.feedback_store import FeedbackStore

    FeedbackStore(url).close()  # served_requests, with this version's indexes
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE served_btree (LIKE served_requests INCLUDING DEFAULTS)")
        conn.execute("CREATE INDEX ON served_btree (request_id, id)")
        conn.execute("CREATE INDEX ON served_btree (served_at)")

    async def run() -> dict[str, list[tuple[float, float]]]:
        ways = {"text COPY, B-trees (before)": ("served_btree", False),
                "binary COPY, hash + BRIN (now)": ("served_requests", True)}  # fmt: skip
        conns = {name: await psycopg.AsyncConnection.connect(url) for name in ways}
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for i in range(repeat + 1):
            for name, (table, binary) in ways.items():
                measured = await copy_round(conns[name], table, binary, batch)
                if i:  # the first round warms up
                    rounds[name].append(measured)
        for conn in conns.values():
            await conn.close()
        return rounds

    rounds = asyncio.run(run())
    print(f"\nmedians of {repeat} alternating COPYs of {batch} one-wine requests")
    print(f"{'':34}{'client us/req':>15}{'database us/row':>17}")
    for name, measured in rounds.items():
        client = statistics.median(c for c, _ in measured) / batch * 1e6
        db = statistics.median(d for _, d in measured) / batch * 1e6
        print(f"{name:34}{client:>15.2f}{db:>17.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per app")
    parser.add_argument("--connections", type=int, default=16, help="for the throughput run")
    parser.add_argument("--linger", type=float, default=None, help="writer linger (s)")
    parser.add_argument("--writer-only", action="store_true", help="the writer alone, no app")
    parser.add_argument("--batch", type=int, default=5000, help="requests a COPY (--writer-only)")
    args = parser.parse_args()
    if args.writer_only:
        found = postgres_bin()
        if isinstance(found, str):
            sys.exit(found)
        with PostgresServer(found) as postgres:
            writer_only(postgres.create_database("writer"), max(args.repeat, 1), args.batch)
        return
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
