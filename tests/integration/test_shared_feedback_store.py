"""The feedback store shared by replicas, on a real PostgreSQL server (Debian's, on loopback).

Two `winequality serve` processes share one database: a label by request id is accepted by the
app that did not serve the request, and a retraining reads the labels from the database. Then
the database is killed mid-run: predictions keep succeeding, feedback answers 503 with the
reason, every label acknowledged before, during and after is in the database once it is back,
and the rows served during the outage reach it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from tests.support.postgres import PostgresServer

from winequality.contract import schema
from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

DATABASE = "shared_feedback"
FAST = {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3}
LOOKUP_WAIT_S = 10
# A label for a request no replica wrote is answered only once the lookup wait is over.
FEEDBACK_CLIENT_TIMEOUT_S = 3 * LOOKUP_WAIT_S


def wine_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    return [{str(k): v for k, v in r.items()} for r in frame.loc[:, columns].to_dict("records")]


@pytest.fixture(scope="module")
def wines(real_wines: pd.DataFrame) -> pd.DataFrame:
    return real_wines.drop_duplicates().sample(n=1700, random_state=11).reset_index(drop=True)


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> str:
    return postgres.create_database(DATABASE)


@pytest.fixture(scope="module")
def apps(
    database: str, serving_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Two replicas of the app, sharing the database and nothing else."""
    logs = tmp_path_factory.mktemp("replicas")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINEQ_", "MLFLOW_"))}
    env |= {
        "WINEQ_DATABASE_URL": database,
        "WINEQ_DATABASE_TIMEOUT_S": "1",
        "WINEQ_SERVED_ROWS_LINGER_S": "0.05",
        # A label sent to the other replica right after the answer waits for the serving one's
        # write, however late a loaded machine makes it. Free during the outage: a lookup that
        # cannot read the store fails at once, it does not wait.
        "WINEQ_SERVED_ROWS_LOOKUP_WAIT_S": str(LOOKUP_WAIT_S),
    }
    processes, urls = [], []
    for name in ("a", "b"):
        port = free_port()
        cmd = [sys.executable, "-m", "winequality.cli", "serve", "--log-level", "warning",
               "--model-dir", str(serving_bundles["1"]), "--port", str(port)]  # fmt: skip
        processes.append(ManagedProcess(f"app-{name}", cmd, logs / f"{name}.log", env).start())
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for process, url in zip(processes, urls, strict=True):
            process.wait_ready(url=f"{url}/health/ready", timeout=90)
        yield urls
    finally:
        for process in processes:
            process.stop()


def predict(client: httpx.Client, url: str, wines: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(f"{url}/predict", json={"wines": wines})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def stored_labels(postgres: PostgresServer) -> list[tuple[Any, ...]]:
    return postgres.query(
        DATABASE,
        "SELECT request_id, row_index, quality, served_quality, model_version FROM feedback"
        " ORDER BY id",
    )


def test_a_label_by_request_id_is_taken_by_the_replica_that_did_not_serve_it(
    apps: list[str], postgres: PostgresServer, wines: pd.DataFrame, tmp_path: Path
) -> None:
    a, b = apps
    labelled = wines.iloc[1500:1560]
    acknowledged = []
    with httpx.Client(timeout=FEEDBACK_CLIENT_TIMEOUT_S) as client:
        for start in range(0, len(labelled), 10):
            chunk = labelled.iloc[start : start + 10]
            served_by, labelled_by = (a, b) if start % 20 == 0 else (b, a)
            answer = predict(client, served_by, wine_records(chunk))
            for i, quality in enumerate(chunk[schema.TARGET].astype(int)):
                body = {"request_id": answer["request_id"], "index": i, "quality": quality}
                response = client.post(f"{labelled_by}/feedback", json=body)
                assert response.status_code == 201, response.text
                served = answer["predictions"][i]["quality"]
                acknowledged.append((answer["request_id"], i, quality, served))
        unknown = client.post(
            f"{b}/feedback", json={"request_id": "nobody", "index": 0, "quality": 5}
        )
        assert unknown.status_code == 404
        ready = client.get(f"{a}/health/ready").json()
    assert ready["feedback_store"]["state"] == "ok"
    rows = stored_labels(postgres)
    assert [(r[0], r[1], r[2]) for r in rows] == [(r, i, q) for r, i, q, _ in acknowledged]
    assert all(r[4] == "1" for r in rows)  # the served model version, joined from the store
    assert [r[3] for r in rows] == pytest.approx([s for *_, s in acknowledged], abs=1e-4)

    # A retraining reads the labels from the database (the embedded MLflow store here; the
    # registry lifecycle tests run MLflow itself on PostgreSQL).
    project = tmp_path / "project"
    prepared = project / "data" / "prepared"
    prepared.mkdir(parents=True)
    wines.iloc[:1000].to_parquet(prepared / "train.parquet", index=False)
    wines.iloc[1000:1500].to_parquet(prepared / "test.parquet", index=False)
    (project / "params.yaml").write_text(
        yaml.safe_dump({"train": FAST, "retrain": {"min_feedback_rows": 50}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINEQ_", "MLFLOW_"))}
    env |= {
        "WINEQ_PROJECT_DIR": str(project),
        "WINEQ_DATABASE_URL": postgres.url(DATABASE),
        "WINEQ_FEEDBACK_DB": str(project / "never-used.sqlite"),
        "WINEQ_MODEL_DIR": str(project / "serving" / "current"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "winequality.cli", "retrain", "--no-notify"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["feedback_rows"] == len(acknowledged)
    assert result["promoted"] is True, result
    assert not (project / "never-used.sqlite").exists()
    (source_file,) = (project / "data" / "retrain").glob("*/data/raw/source.json")
    assert f"feedback:{postgres.url(DATABASE)}" in json.loads(source_file.read_text())["source"]


def test_the_event_loop_writer_writes_while_running_and_what_is_left_when_closed(
    postgres: PostgresServer,
) -> None:
    import asyncio

    import numpy as np
    from prometheus_client import CollectorRegistry

    from winequality.feedback_store import FeedbackSink, FeedbackStore

    url = postgres.create_database("loop_writer")
    registry = CollectorRegistry()
    sink = FeedbackSink(url, share_served=True, linger_s=0.05, registry=registry)
    writer = sink.served_rows
    assert writer is not None
    rows = np.full((2, schema.N_MODEL_COLUMNS), 0.25, dtype=np.float32)
    scores = np.array([5.0, 6.5], dtype=np.float32)

    def written() -> float | None:
        return registry.get_sample_value("winequality_served_rows_written_total")

    async def serve() -> None:
        writer.put("early", rows, scores, "7")
        for _ in range(200):
            if written() == 2:  # committed (an empty queue may still mean a COPY in flight)
                break
            await asyncio.sleep(0.05)
        writer.put("late", rows, scores, "7")  # still queued when the app stops
        sink.close()

    asyncio.run(serve())
    store = FeedbackStore(url)
    try:
        for rid in ("early", "late"):
            found = store.served(rid)
            assert found is not None, rid
            assert found.model_version == "7"
            assert found.quality is not None
            assert found.quality.tolist() == [5.0, 6.5]
    finally:
        store.close()
    assert registry.get_sample_value("winequality_served_rows_written_total") == 4


def test_one_copy_carries_every_queued_request_exactly(postgres: PostgresServer) -> None:
    """More requests than a slice of the COPY, of several sizes, some without scores or version:
    each is read back as it was served."""
    import asyncio

    import numpy as np
    from prometheus_client import CollectorRegistry

    from winequality.feedback_store import FeedbackSink, FeedbackStore
    from winequality.feedback_store.writer import COPY_SLICE

    url = postgres.create_database("one_copy")
    registry = CollectorRegistry()
    sink = FeedbackSink(url, share_served=True, linger_s=0.2, registry=registry)
    writer = sink.served_rows
    assert writer is not None
    generator = np.random.default_rng(3)
    served = {}
    for i in range(2 * COPY_SLICE + 7):
        n = 1 + i % 4
        rows = generator.random((n, schema.N_MODEL_COLUMNS), dtype=np.float32)
        scores = None if i % 5 == 0 else generator.random(n, dtype=np.float32) * 10
        served[f"{i:032x}"] = (rows, scores, None if i % 7 == 0 else f"v{i % 3}")

    async def serve() -> None:
        for rid, (rows, scores, version) in served.items():
            writer.put(rid, rows, scores, version)
        for _ in range(200):
            if writer.pending() == 0:
                break
            await asyncio.sleep(0.05)
        await sink.aclose()

    asyncio.run(serve())
    store = FeedbackStore(url)
    try:
        for rid, (rows, scores, version) in served.items():
            found = store.served(rid)
            assert found is not None, rid
            assert found.model_version == version
            assert found.rows.tobytes() == rows.tobytes()
            if scores is None:
                assert found.quality is None
            else:
                assert found.quality is not None
                assert found.quality.tobytes() == scores.tobytes()
    finally:
        store.close()
    wines = sum(len(rows) for rows, _, _ in served.values())
    assert registry.get_sample_value("winequality_served_rows_written_total") == wines
    stored = postgres.query("one_copy", "SELECT count(*) FROM served_requests")
    assert stored[0][0] == len(served)  # each once


def test_the_event_loop_writer_sends_one_copy_a_linger_under_steady_load(
    postgres: PostgresServer,
) -> None:
    """Requests keep arriving while a COPY waits for the database: they go into the next linger's
    COPY, not into a COPY of their own right after (one transaction, ``xmin``, a COPY)."""
    import asyncio

    import numpy as np
    from prometheus_client import CollectorRegistry

    from winequality.feedback_store import FeedbackSink

    url = postgres.create_database("linger")
    registry = CollectorRegistry()
    linger = 0.5
    sink = FeedbackSink(url, share_served=True, linger_s=linger, registry=registry)
    writer = sink.served_rows
    assert writer is not None
    rows = np.full((1, schema.N_MODEL_COLUMNS), 0.25, dtype=np.float32)
    scores = np.array([5.0], dtype=np.float32)
    sent = 0

    async def settle() -> None:
        for _ in range(200):
            if writer.pending() == 0:
                break
            await asyncio.sleep(0.05)

    async def serve() -> float:
        nonlocal sent
        writer.put(f"{sent:032x}", rows, scores, "7")  # the first COPY also creates the tables
        sent += 1
        await settle()
        began = time.monotonic()
        while time.monotonic() - began < 2.5:
            writer.put(f"{sent:032x}", rows, scores, "7")
            sent += 1
            await asyncio.sleep(0.002)
        elapsed = time.monotonic() - began
        await settle()
        await sink.aclose()
        return elapsed

    elapsed = asyncio.run(serve())
    ((stored, copies),) = postgres.query(
        "linger", "SELECT count(*), count(DISTINCT xmin::text) FROM served_requests"
    )
    assert stored == sent
    assert registry.get_sample_value("winequality_served_rows_written_total") == sent
    assert copies <= 1 + elapsed / linger + 2, copies


def test_closing_the_event_loop_writer_after_a_commit_it_has_not_heard_writes_once(
    postgres: PostgresServer,
) -> None:
    """The app stops when a COPY is committed but the writer has not read the answer yet (the
    window in which giving its batch back wrote it twice): it is written once, and so are the
    requests queued after it, which go in one more COPY."""
    import asyncio

    import numpy as np
    import psycopg
    from prometheus_client import CollectorRegistry

    from winequality.feedback_store import FeedbackSink
    from winequality.feedback_store.writer import AsyncServedRowWriter

    url = postgres.url("close_mid_copy")
    postgres.create_database("close_mid_copy")
    registry = CollectorRegistry()
    sink = FeedbackSink(url, share_served=True, linger_s=0.05, registry=registry)
    writer = sink.served_rows
    assert isinstance(writer, AsyncServedRowWriter)
    rows = np.full((3, schema.N_MODEL_COLUMNS), 0.5, dtype=np.float32)
    batch, later = 200, 50
    sent = 0

    def put(n: int, prefix: str) -> None:
        nonlocal sent
        for _ in range(n):
            writer.put(f"{prefix}{sent:031x}", rows, None, "7")
            sent += 1

    async def serve() -> bool:
        put(1, "t")  # the first COPY creates the table the probe reads
        while registry.get_sample_value("winequality_served_rows_written_total") != 3:
            await asyncio.sleep(0.01)
        with psycopg.connect(url, autocommit=True) as probe:
            for _ in range(10):  # one COPY's commit, seen before its writer hears of it
                before = sent
                put(batch, "a")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    await asyncio.sleep(0)
                    if not writer.in_flight():
                        if writer.pending() == 0 and stored(probe) == sent:
                            break  # missed: the writer heard the commit first
                        continue
                    # The loop is blocked here: the writer cannot hear the commit meanwhile.
                    if stored(probe) > before:
                        put(later, "b")
                        await sink.aclose()
                        return True
        await sink.aclose()
        return False

    def stored(probe: psycopg.Connection[Any]) -> int:
        (count,) = probe.execute("SELECT count(*) FROM served_requests").fetchone() or (0,)
        return int(count)

    caught = asyncio.run(serve())
    ((count, distinct),) = postgres.query(
        "close_mid_copy", "SELECT count(*), count(DISTINCT request_id) FROM served_requests"
    )
    assert caught, "no COPY was seen committed before its writer heard of it"
    assert (count, distinct) == (sent, sent)
    assert registry.get_sample_value("winequality_served_rows_written_total") == 3 * sent
    assert writer.pending() == 0


class Traffic(threading.Thread):
    """Predictions against both replicas, one after the other, until stopped."""

    def __init__(self, urls: list[str], wines: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.urls, self.wines = urls, wines
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.request_ids: dict[str, list[str]] = {url: [] for url in urls}

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                url = self.urls[n % len(self.urls)]
                wine = self.wines[n % len(self.wines)]
                try:
                    response = client.post(f"{url}/predict", json={"wines": [wine]})
                    status = response.status_code
                    if status == 200:
                        self.request_ids[url].append(response.json()["request_id"])
                except httpx.HTTPError:
                    status = 0
                self.statuses[status] = self.statuses.get(status, 0) + 1
                n += 1
                time.sleep(0.005)


def test_killing_the_database_mid_run_fails_no_prediction_and_loses_no_acknowledged_label(
    apps: list[str], postgres: PostgresServer, wines: pd.DataFrame
) -> None:
    a, b = apps
    records = wine_records(wines.iloc[1560:1600])
    before = len(stored_labels(postgres))
    acknowledged: list[tuple[str, int, int]] = []
    refusals: list[dict[str, Any]] = []
    traffic = Traffic(apps, records)
    traffic.start()

    def label_some(
        client: httpx.Client, n: int, served_by: str, labelled_by: str, recovering: bool = False
    ) -> None:
        for k in range(n):
            answer = predict(client, served_by, [records[k % len(records)]])
            quality = 3 + k % 5
            body = {"request_id": answer["request_id"], "index": 0, "quality": quality}
            response = client.post(f"{labelled_by}/feedback", json=body)
            if response.status_code == 201:
                acknowledged.append((answer["request_id"], 0, quality))
            elif recovering:
                # Until the serving replica's writer, backing off, has caught up: not there yet.
                assert response.status_code in (404, 503), response.text
            else:
                assert response.status_code == 503, response.text
                refusals.append(response.json())

    try:
        with httpx.Client(timeout=FEEDBACK_CLIENT_TIMEOUT_S) as client:
            label_some(client, 10, a, b)
            assert len(acknowledged) == 10
            postgres.kill()
            outage_started = time.monotonic()
            label_some(client, 10, b, b)  # served here: the write alone fails
            label_some(client, 10, a, b)  # served there: the lookup fails too
            assert not acknowledged[10:], "a label was acknowledged while the database was down"
            during = traffic.request_ids[a][-1]
            assert time.monotonic() - outage_started < 30  # each refusal is quick
            ready = client.get(f"{b}/health/ready")
            assert ready.status_code == 200
            assert ready.json()["feedback_store"]["state"] == "unavailable"
            postgres.start()
            deadline = time.monotonic() + 30
            while len(acknowledged) < 11:
                assert time.monotonic() < deadline, "feedback did not recover"
                label_some(client, 1, a, b, recovering=True)
                time.sleep(0.2)
            label_some(client, 10, a, b)
            # A request served during the outage waited in its replica's queue: it is found.
            deadline = time.monotonic() + 30
            while True:
                body = {"request_id": during, "index": 0, "quality": 6}
                response = client.post(f"{b}/feedback", json=body)
                if response.status_code == 201:
                    acknowledged.append((during, 0, 6))
                    break
                assert response.status_code in (404, 503), response.text
                assert time.monotonic() < deadline, response.text
                time.sleep(0.5)
            metrics = client.get(f"{a}/metrics").text
    finally:
        traffic.stop.set()
        traffic.join(30)

    assert set(traffic.statuses) == {200}, traffic.statuses  # no prediction failed
    assert sum(traffic.statuses.values()) > 100
    assert len(refusals) == 20
    for refusal in refusals:
        assert refusal["detail"][0]["type"] == "store_unavailable"
        assert "nothing was stored" in refusal["error"]
        assert f"feedback store {postgres.url(DATABASE)} cannot" in refusal["error"]
    stored = [(r[0], r[1], r[2]) for r in stored_labels(postgres)[before:]]
    assert stored == acknowledged  # each acknowledged label once, in order; nothing else
    assert 'winequality_served_rows_dropped_total{reason="queue_full"} 0.0' in metrics
