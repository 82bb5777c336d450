"""``ServedRowWriter``: served requests reach the store off the request path; when the store
cannot take them they wait (bounded), overflow is dropped and counted, nothing is written twice."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore, ServedRowWriter, StoreError
from winequality.feedback_store.writer import Entry


def rows(n: int) -> np.ndarray:
    return np.full((n, schema.N_MODEL_COLUMNS), 0.5, dtype=np.float32)


class FlakyStore:
    """A real SQLite store behind a switch that makes it refuse, as a database that is down."""

    def __init__(self, path: Path) -> None:
        self.store = FeedbackStore(path)
        self.down = False
        self.broken = False
        self.calls = 0
        self.round_trip_s = 0.0

    def add_served(self, requests: Sequence[Entry]) -> int:
        self.calls += 1
        time.sleep(self.round_trip_s)
        if self.down:
            raise StoreError("feedback store test cannot store the served rows: down")
        if self.broken:
            raise ValueError("not a store outage")
        return self.store.add_served(requests)

    def prune_served(self, before: float) -> int:
        return self.store.prune_served(before)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def flaky(tmp_path: Path) -> FlakyStore:
    return FlakyStore(tmp_path / "fb.sqlite")


def writer_for(store: FlakyStore, registry: CollectorRegistry, **kw: object) -> ServedRowWriter:
    options: dict[str, object] = {
        "max_requests": 100, "max_rows": 1_000, "linger_s": 0.02, "retention_s": 3600.0,
    } | kw  # fmt: skip
    return ServedRowWriter(lambda: store, registry=registry, **options)  # type: ignore[arg-type]


def test_served_requests_are_written_in_batches_by_the_thread(flaky: FlakyStore) -> None:
    registry = CollectorRegistry()
    writer = writer_for(flaky, registry)
    for i in range(50):
        writer.put(f"r{i}", rows(2), np.array([5.0, 6.0], dtype=np.float32), "1")
    wait_for(lambda: writer.pending() == 0)
    writer.close()
    assert sample(registry, "winequality_served_rows_written_total") == 100
    assert flaky.calls < 50  # batched, not one insert a request
    found = flaky.store.served("r49")
    assert found is not None
    assert found.model_version == "1"


def test_requests_arriving_during_a_write_wait_for_the_next_linger(flaky: FlakyStore) -> None:
    """A write that takes a while does not turn into a stream of small ones under steady load:
    one batch a linger (plus the write's own time), whatever arrives meanwhile."""
    registry = CollectorRegistry()
    flaky.round_trip_s = 0.05
    writer = writer_for(flaky, registry, max_requests=10_000, max_rows=10_000, linger_s=0.3)
    began = time.monotonic()
    n = 0
    while time.monotonic() - began < 1.5:
        writer.put(f"r{n}", rows(1), None, None)
        n += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - began
    writer.close()
    assert sample(registry, "winequality_served_rows_written_total") == n
    # Draining whenever something was queued would write every round trip (about 30 times).
    assert flaky.calls <= elapsed / 0.3 + 2


def test_while_the_store_is_down_requests_wait_overflow_is_counted_and_the_rest_arrives(
    flaky: FlakyStore,
) -> None:
    registry = CollectorRegistry()
    outcomes: list[str | None] = []
    # A linger long enough for the 15 puts to land before the first attempt takes the queue:
    # taken earlier, the emptied queue would accept more than 10 and get them back on top.
    writer = ServedRowWriter(
        lambda: flaky, max_requests=10, max_rows=1_000, linger_s=0.5, retention_s=3600.0,
        registry=registry, outcome=outcomes.append,
    )  # fmt: skip
    flaky.down = True
    for i in range(15):
        writer.put(f"r{i}", rows(3), None, None)
    # Retried, still down; the batch goes back to the queue after each attempt.
    wait_for(lambda: flaky.calls >= 2 and writer.pending() == 10)
    assert sample(registry, "winequality_served_rows_dropped_total", reason="queue_full") == 15
    assert outcomes[-1] is not None
    assert "down" in outcomes[-1]
    flaky.down = False
    wait_for(lambda: writer.pending() == 0)
    writer.close()
    assert outcomes[-1] is None
    assert sample(registry, "winequality_served_rows_written_total") == 30
    assert [flaky.store.served(f"r{i}") is not None for i in range(15)] == [True] * 10 + [False] * 5


def test_the_row_budget_bounds_the_queue_too(flaky: FlakyStore) -> None:
    registry = CollectorRegistry()
    writer = writer_for(flaky, registry, max_rows=10, linger_s=60.0)  # no flush meanwhile
    flaky.down = True
    writer.put("big", rows(8), None, None)
    writer.put("too-big", rows(5), None, None)
    writer.put("fits", rows(2), None, None)
    assert writer.pending() == 2
    assert sample(registry, "winequality_served_rows_dropped_total", reason="queue_full") == 5
    writer.close()
    assert sample(registry, "winequality_served_rows_dropped_total", reason="shutdown") == 10


def test_close_writes_what_is_queued(flaky: FlakyStore) -> None:
    registry = CollectorRegistry()
    writer = writer_for(flaky, registry, linger_s=60.0)
    writer.put("last", rows(1), None, None)
    writer.close()
    assert flaky.store.served("last") is not None
    assert sample(registry, "winequality_served_rows_dropped_total", reason="shutdown") == 0


def test_an_unexpected_failure_drops_that_batch_counted_and_the_writer_keeps_going(
    flaky: FlakyStore,
) -> None:
    registry = CollectorRegistry()
    writer = writer_for(flaky, registry)
    flaky.broken = True
    writer.put("lost", rows(2), None, None)
    wait_for(lambda: sample(registry, "winequality_served_rows_dropped_total", reason="error") == 2)
    assert writer.pending() == 0
    flaky.broken = False
    writer.put("kept", rows(1), None, None)
    wait_for(lambda: flaky.store.served("kept") is not None)
    writer.close()
    assert flaky.store.served("lost") is None
