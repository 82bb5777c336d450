"""Decision history: alarms with their evidence, bounds, persistence and its writer thread."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson

from winequality.monitoring import decisions, sequential
from winequality.monitoring.decisions import DecisionLog, SnapshotWriter
from winequality.monitoring.detector import N_TESTS, TEST_NAMES, DriftResult

CAL = sequential.Calibration(
    threshold=4.0,
    k=2.0,
    budget_rows=10_000_000,
    window_rows=200,
    expected_false_alarm_rows=1.2e7,
    fingerprint="f" * 16,
)


def result(drifted: tuple[str, ...] = ()) -> DriftResult:
    return DriftResult(
        is_drift=bool(drifted),
        p_values={n: (1e-12 if n in drifted else 0.5) for n in TEST_NAMES},
        distances=dict.fromkeys(TEST_NAMES, 0.1),
        drifted=list(drifted),
        threshold=0.05,
        corrected_threshold=0.05 / N_TESTS,
        correction="bonferroni",
        window_size=200,
        reference_size=1000,
    )


def feed(
    log: DecisionLog, state: sequential.SequentialState, scores: list[float], test: int
) -> sequential.SequentialState:
    """Windows scoring ``scores`` on one test (0 on the others), recorded in ``log``."""
    for z in scores:
        window = np.zeros(N_TESTS)
        window[test] = z
        after = sequential.step(state, window, 200, CAL)
        name = TEST_NAMES[test]
        log.observe(
            result((name,) if z > 5 else ()),
            rows=200,
            before=state,
            after=after,
            calibration=CAL,
            reference_source="ref.parquet",
            now=float(after.windows),
        )
        state = after
    return state


def test_an_alarm_keeps_the_windows_that_built_its_chart_and_how_it_ended() -> None:
    log = DecisionLog()
    state = sequential.initial_state(CAL)
    alcohol = TEST_NAMES.index("alcohol")
    # A quiet window (chart at 0), then three that build the alcohol chart past 4.
    state = feed(log, state, [0.0, 3.0, 3.5, 4.0], alcohol)
    assert state.alarm
    (alarm,) = log.alarms
    assert alarm.raised_by == ["alcohol"]
    assert [w.window for w in alarm.evidence] == [2, 3, 4]
    assert (alarm.window, alarm.row, alarm.cleared_by) == (4, 800, None)
    state = feed(log, state, [0.0] * 5, alcohol)
    assert not state.alarm
    assert log.alarms[0].cleared_by == "traffic"
    log.reloaded(100.0, state.windows)  # no open alarm: nothing changes
    assert log.alarms[0].cleared_by == "traffic"


def test_a_reload_ends_an_open_alarm_and_keeps_its_evidence() -> None:
    log = DecisionLog()
    state = feed(log, sequential.initial_state(CAL), [12.0], 0)
    log.reloaded(50.0, state.windows)
    (alarm,) = log.alarms
    assert (alarm.cleared_by, alarm.cleared_at, len(alarm.evidence)) == ("reload", 50.0, 1)


def test_history_and_alarms_are_bounded() -> None:
    log = DecisionLog()
    state = sequential.initial_state(CAL)
    for _ in range(decisions.MAX_ALARMS + 5):
        state = feed(log, state, [12.0] + [0.0] * 14, 0)
    assert len(log.alarms) == decisions.MAX_ALARMS
    assert len(log.windows) <= 2 * decisions.MAX_WINDOWS
    assert len(log.recent()) == decisions.MAX_WINDOWS
    assert log.recent()[-1].window == state.windows


def test_the_snapshot_round_trips_through_the_writer_thread(tmp_path: Path) -> None:
    log = DecisionLog()
    state = feed(log, sequential.initial_state(CAL), [12.0, 1.0], 3)
    path = tmp_path / "state.json"
    writer = SnapshotWriter(path)
    for _ in range(20):  # a burst: the newest document wins
        writer.submit(decisions.snapshot_document(CAL, state, log))
    writer.close()
    assert 1 <= writer.writes <= 20
    saved, history = decisions.read_snapshot(path)
    assert saved is not None
    assert saved["state"]["statistics"] == dict(zip(TEST_NAMES, state.statistics, strict=True))
    assert sequential.Calibration.from_dict(saved["calibration"]) == CAL
    assert history == log


def test_an_unreadable_snapshot_gives_an_empty_history(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": 99}')
    assert decisions.read_snapshot(path) == (None, DecisionLog())
    path.write_text("[1, 2")
    assert decisions.read_snapshot(path) == (None, DecisionLog())
    assert decisions.read_snapshot(tmp_path / "missing.json") == (None, DecisionLog())


def test_the_snapshot_json_is_the_models_dump_however_often_it_is_written() -> None:
    log = DecisionLog()
    state = feed(log, sequential.initial_state(CAL), [12.0, 1.0, 0.0, 0.0, 9.0], 2)
    document = decisions.snapshot_document(CAL, state, log)
    expected = {
        **document,
        "windows": [w.model_dump() for w in document["windows"]],
        "alarms": [a.model_dump() for a in document["alarms"]],
    }
    encode = decisions._Encoder()
    for _ in range(3):  # the second and third time from the kept records
        assert orjson.loads(encode(document)) == expected
    feed(log, state, [0.0], 2)
    document = decisions.snapshot_document(CAL, state, log)
    assert len(orjson.loads(encode(document))["windows"]) == len(log.windows)


def test_the_writer_writes_at_most_once_per_interval_and_flush_writes_at_once(
    tmp_path: Path,
) -> None:
    log = DecisionLog()
    state = feed(log, sequential.initial_state(CAL), [1.0], 0)
    writer = SnapshotWriter(tmp_path / "state.json", min_interval=30.0)
    try:
        writer.submit(decisions.snapshot_document(CAL, state, log))
        writer.flush()
        assert writer.writes == 1
        state = feed(log, state, [12.0], 0)
        writer.submit(decisions.snapshot_document(CAL, state, log))
        time.sleep(0.2)
        assert writer.writes == 1  # held back: the interval has not passed
        writer.flush()
        assert writer.writes == 2
        _, history = decisions.read_snapshot(tmp_path / "state.json")
        assert history == log
        writer.submit(decisions.snapshot_document(CAL, feed(log, state, [0.0], 0), log))
    finally:
        writer.close()  # writes what is pending, interval or not
    assert writer.writes == 3
    assert decisions.read_snapshot(tmp_path / "state.json")[1] == log
