"""Cost of sharing served rows: the app writing every answered request to PostgreSQL vs not.

Two instances of the app serve the same ONNX bundle (a StandardScaler + ElasticNet trained on the
real UCI data) with the same real PostgreSQL feedback store (Debian's server, started on
loopback by ``tests/support/postgres.py``): ``off`` with ``WINEQ_SERVED_ROWS_SHARED=false`` (the
baseline: only the recent cache), ``shared`` with the served-row writer on (its default for
PostgreSQL). The apps are pinned to core 0, wrk to core 1; PostgreSQL (every process of it)
also runs on core 1, under SCHED_IDLE, as a database on another machine would (it only gets the
time wrk leaves).

On a 2-core host the database is still a co-tenant of the app and of wrk, so two controls run
the ``off`` app (no sharing code at work) beside synthetic co-tenants on core 1, under
SCHED_IDLE as well:

* ``off+db``: another process (a replica on another machine) writes as many served requests a
  second into the same PostgreSQL server, through the same writer (one COPY a linger), as the
  ``shared`` app answered in that round: the database's work, without ours in the app;
* ``off+mem`` (``--memory-control``): a numpy copy loop over ``--memory-mb`` MB, a co-tenant that
  thrashes the shared L3 and memory bandwidth.

``off+db / off`` is what the co-tenant costs on this host, ``shared / off+db`` what our code
costs the app. ``--before DIR/src`` adds an earlier tree's sharing app (its own database on the
same server), so a change to the writer is compared in the same run. Figures per scenario (1
connection: latency; 16: throughput): the client's (wrk: req/s, p50, p99), the app's own (mean
of its ``/predict`` request duration histogram, the bucket bound holding 99 % of them, its CPU
time per request from /proc) and PostgreSQL's CPU per request. Each condition loads one app at a
time, alternating, ``--repeat`` times; medians are compared; each round starts one condition
later than the one before. Between runs the writer's backlog is drained. At the end: the COPY
transactions each sharing app sent (distinct ``xmin``) for the requests it stored.

    uv run python benchmarks/served_rows.py [--short] [--duration 10] [--repeat 3]
        [--memory-control] [--before DIR/src]

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
    ROOT,
    SERVER_CORE,
    Run,
    Server,
    add_load_options,
    cpu_seconds,
    latency_buckets,
    load_setup,
    lua_script,
    p99_bound,
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
BEFORE = "before"
"""``--before``: the sharing app of an earlier tree, run beside ours."""
FEED_DATABASE = "feed"
"""Where ``off+db``'s other replica writes: the same server, a table of its own (the app's
table then holds only what the ``shared`` app wrote)."""


@dataclass(frozen=True)
class Measured:
    run: Run
    cpu_us_per_request: float
    db_us_per_request: float
    server_mean_us: float
    server_p99_ms: float


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


def predict_duration(url: str) -> tuple[float, float]:
    """(sum of seconds, count) of the app's own ``/predict`` request duration histogram."""
    found = {"sum": 0.0, "count": 0.0}
    for line in scrape(url).splitlines():
        for what in found:
            prefix = f"winequality_http_request_duration_seconds_{what}{{"
            if line.startswith(prefix) and 'route="/predict"' in line:
                found[what] += float(line.rsplit(" ", 1)[1])
    return found["sum"], found["count"]


def measure(
    server: Server,
    script: Path,
    connections: int,
    duration: float,
    postgres: PostgresServer,
    cotenant: ManagedProcess | None = None,
) -> Measured:
    """One wrk run; the co-tenant (started beforehand) is stopped once the run is over."""
    buckets = latency_buckets(server.url)
    spent, served = predict_duration(server.url)
    db_before = db_cpu_seconds(postgres)
    before = cpu_seconds(server.process.pid)
    run = wrk(server.url + "/predict", script, connections, duration)
    cpu = cpu_seconds(server.process.pid) - before
    spent_after, served_after = predict_duration(server.url)
    p99 = p99_bound(buckets, latency_buckets(server.url))
    if cotenant is not None:
        db_at_end = db_cpu_seconds(postgres)  # before its backend goes with it
        cotenant.stop()
    drain(server)
    db_after = db_at_end if cotenant is not None else db_cpu_seconds(postgres)
    db = sum(t - db_before.get(pid, 0.0) for pid, t in db_after.items())
    requests = served_after - served
    return Measured(
        run,
        cpu / requests * 1e6,
        db / requests * 1e6,
        (spent_after - spent) / requests * 1e6,
        p99 * 1e3,
    )


def idle_on_client_core(name: str, args: list[str], logs: Path) -> ManagedProcess:
    """``python benchmarks/served_rows.py ARGS`` on core 1 under SCHED_IDLE, in this session
    (see ``ManagedProcess``): a co-tenant that gets only the time wrk leaves, as PostgreSQL."""
    cmd = ["taskset", "-c", CLIENT_CORE, "chrt", "--idle", "0", sys.executable,
           str(Path(__file__).resolve()), *args]  # fmt: skip
    return ManagedProcess(name, cmd, logs / f"{name}.log", cwd=ROOT, own_session=False).start()


def feed(url: str, rate: float) -> None:
    """Another replica: ``rate`` one-wine requests a second through the app's own writer (one
    COPY a linger) into ``url``, until stopped."""
    from winequality.feedback_store import FeedbackSink

    sink = FeedbackSink(url, share_served=True)
    writer = sink.served_rows
    assert writer is not None
    rows = np.random.default_rng(0).random((1, schema.N_MODEL_COLUMNS), dtype=np.float32)
    scores = np.array([5.5], dtype=np.float32)
    tick = 0.01

    async def run() -> None:
        owed = 0.0
        while True:
            owed += rate * tick
            while owed >= 1:
                writer.put(REQUEST_IDS.next(), rows.copy(), scores.copy(), "bench")
                owed -= 1
            await asyncio.sleep(tick)

    asyncio.run(run())


def hog_memory(megabytes: int) -> None:
    """Copy ``megabytes`` MB from one array to another, forever: L3 and memory bandwidth."""
    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    while True:
        np.copyto(target, source)


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
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per condition")
    parser.add_argument("--connections", type=int, default=16, help="for the throughput run")
    parser.add_argument("--linger", type=float, default=None, help="writer linger (s)")
    parser.add_argument("--memory-control", action="store_true", help="add the off+mem control")
    parser.add_argument("--memory-mb", type=int, default=64, help="the memory co-tenant's copy")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="an earlier tree's src (git archive REV src | tar -x -C DIR; pass DIR/src): its "
        "app, sharing, runs beside ours as 'before'",
    )
    parser.add_argument("--writer-only", action="store_true", help="the writer alone, no app")
    parser.add_argument("--batch", type=int, default=5000, help="requests a COPY (--writer-only)")
    parser.add_argument("--feed", nargs=2, metavar=("URL", "RATE"), help=argparse.SUPPRESS)
    parser.add_argument("--hog-memory", type=int, metavar="MB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed(args.feed[0], float(args.feed[1]))
        return
    if args.hog_memory:
        hog_memory(args.hog_memory)
        return
    found = postgres_bin()
    if isinstance(found, str):
        sys.exit(found)
    if args.writer_only:
        with PostgresServer(found) as postgres:
            writer_only(postgres.create_database("writer"), max(args.repeat, 1), args.batch)
        return
    duration, wines = load_setup(args)
    tmp = Path(tempfile.mkdtemp(prefix="wineq-served-bench-"))
    processes: list[ManagedProcess] = []
    postgres = PostgresServer(found)
    try:
        postgres.start()
        pin_to_client_core(postgres)
        url = postgres.create_database("bench")
        feed_url = postgres.create_database(FEED_DATABASE)
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
        apps: tuple[str, ...] = APPS
        if args.before is not None:
            envs[BEFORE] = envs["shared"] | {
                "PYTHONPATH": str(args.before.resolve()),
                "WINEQ_DATABASE_URL": postgres.create_database(BEFORE),  # its COPYs apart
            }
            apps = (*APPS, BEFORE)
        servers = {}
        for name in apps:
            servers[name] = start(f"served_{name}", cmd, "/health/ready", tmp, envs[name])
            processes.append(servers[name].process)
        conditions = ["off", "shared", "off+db"] + (["off+mem"] if args.memory_control else [])
        conditions += [BEFORE] if args.before is not None else []
        results: dict[str, dict[str, list[Measured]]] = {}
        for scenario, connections in (("latency", 1), ("throughput", args.connections)):
            runs: dict[str, list[Measured]] = {name: [] for name in conditions}
            for i in range(args.repeat):
                # Each round starts one condition later: a drift of the host's load during a
                # round is not always the same condition's luck. "shared" always runs before
                # "off+db" in the first round, which takes the latest shared run's rate.
                for name in conditions[i % len(conditions) :] + conditions[: i % len(conditions)]:
                    cotenant = None
                    if name == "off+db":  # as many requests a second as shared last answered
                        rate = runs["shared"][-1].run.requests_per_s
                        cotenant = idle_on_client_core(
                            "feeder", ["--feed", feed_url, f"{rate:.0f}"], tmp
                        )
                    elif name == "off+mem":
                        cotenant = idle_on_client_core(
                            "memory", ["--hog-memory", str(args.memory_mb)], tmp
                        )
                    if cotenant is not None:
                        time.sleep(2.0)  # started, connected, a COPY or two behind it
                        if not cotenant.alive():
                            raise RuntimeError(f"{name}: co-tenant died:\n{cotenant.log_tail()}")
                    server = servers[name.split("+")[0]]
                    runs[name].append(
                        measure(server, script, connections, duration, postgres, cotenant)
                    )
            results[scenario] = runs
        report(results, conditions, servers, duration, args)
        for name, database in (("shared", "bench"), (BEFORE, BEFORE)):
            if name not in servers:
                continue
            ((requests, wines_stored, copies),) = postgres.query(
                database,
                "SELECT count(*), sum(n_rows), count(DISTINCT xmin::text) FROM served_requests",
            )
            print(
                f"{name}: {requests} requests, {wines_stored} wines in PostgreSQL, in {copies} "
                f"COPY transactions ({requests / max(copies, 1):.0f} requests a COPY)"
            )
    finally:
        for process in processes:
            process.stop()
        postgres.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


FIELDS = (
    ("requests_per_s", "req/s (wrk)"),
    ("p50_ms", "p50 ms (wrk)"),
    ("p99_ms", "p99 ms (wrk)"),
    ("server_mean_us", "app request us (mean)"),
    ("server_p99_ms", "app request p99 ms <="),
    ("cpu", "app CPU us/req"),
    ("db", "PostgreSQL CPU us/req"),
)
RATIOS = (
    ("shared", "off"),
    ("off+db", "off"),
    ("shared", "off+db"),
    ("off+mem", "off"),
    ("before", "off"),
)


def value(m: Measured, field: str) -> float:
    if field == "cpu":
        return m.cpu_us_per_request
    if field == "db":
        return m.db_us_per_request
    if field in ("server_mean_us", "server_p99_ms"):
        return float(getattr(m, field))
    result: float = getattr(m.run, field)
    return result


def report(
    results: dict[str, dict[str, list[Measured]]],
    conditions: list[str],
    servers: dict[str, Server],
    duration: float,
    args: argparse.Namespace,
) -> None:
    print(
        f"\napps pinned to core {SERVER_CORE}, wrk to core {CLIENT_CORE}, PostgreSQL and the "
        f"controls' co-tenants on core {CLIENT_CORE} under SCHED_IDLE; {duration:g} s per run, "
        f"medians of {args.repeat} alternating runs"
    )
    ratios = [(a, b) for a, b in RATIOS if a in conditions and b in conditions]
    heads = [*conditions, *(f"{a}/{b}" for a, b in ratios)]
    print(f"{'':30}" + "".join(f"{h:>14}" for h in heads))
    for scenario, label in (("latency", "c=1"), ("throughput", f"c={args.connections}")):
        runs = results[scenario]
        for field, unit in FIELDS:
            values = {c: statistics.median(value(m, field) for m in runs[c]) for c in conditions}
            cells = "".join(f"{values[c]:>14.2f}" for c in conditions)
            for a, b in ratios:
                # The database does (almost) nothing for an app that does not share.
                idle_db = field == "db" and not b.endswith("+db")
                ratio = values[a] / values[b] if values[b] and not idle_db else float("nan")
                cells += f"{ratio:>14.3f}"
            print(f"{label + ' ' + unit:30}{cells}")
        errors = "".join(f"{sum(m.run.errors for m in runs[c]):>14}" for c in conditions)
        print(f"{label + ' errors':30}{errors}")
    for name, server in servers.items():
        if name == "off":
            continue
        metrics = scrape(server.url)
        written = total(metrics, "winequality_served_rows_written_total").get("", 0.0)
        dropped = total(metrics, "winequality_served_rows_dropped_total").get("", 0.0)
        print(f"{name} app: {written:.0f} wines written, {dropped:.0f} dropped")


if __name__ == "__main__":
    main()
