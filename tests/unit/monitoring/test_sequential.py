"""The sequential drift decision: calibration to a budget, reset, restart, time-closed windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from drift_data import RedSplit

from winequality.contract import schema
from winequality.contract.parsers import frame_rows
from winequality.monitoring import sequential as sq
from winequality.monitoring.detector import (
    N_TESTS,
    Reference,
    build_reference,
    detect,
    ks_p_values,
    ks_statistics,
    wine_type_test,
)
from winequality.params import DriftParams

N_FEATURES = len(schema.FEATURE_NAMES)


def synthetic_population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a fixed synthetic population, rounded like the real measurements (ties)."""
    x = np.round(np.abs(rng.normal(5.0, 1.0, (n, N_FEATURES))), 1)
    return x, rng.random(n) < 0.7


@pytest.fixture(scope="module")
def synthetic_reference() -> Reference:
    x, white = synthetic_population(np.random.default_rng(11), 1000)
    return build_reference(x, white, "synthetic")


def test_interpolated_ks_p_values_match_the_detector() -> None:
    d = np.linspace(0.0, 0.5, 200)
    exact = ks_p_values(d, 1000, 200)
    fast = sq.ks_p_values_fast(d, 1000, 200)
    assert np.allclose(np.log(fast), np.log(np.maximum(exact, 1e-300)), atol=1e-3)


def test_grid_ks_is_the_detector_ks_statistic(synthetic_reference: Reference) -> None:
    rng = np.random.default_rng(3)
    column = synthetic_reference.sorted_features[:, 0]
    values, codes = np.unique(column, return_inverse=True)
    windows = rng.integers(0, column.shape[0], (20, 200))
    counts = np.stack([np.bincount(codes[w], minlength=values.shape[0]) for w in windows])
    ref_counts = np.bincount(codes, minlength=values.shape[0])
    grid = sq.grid_ks(ref_counts, counts, column.shape[0], 200)
    exact = [ks_statistics(column[:, None], column[w][:, None])[0] for w in windows]
    assert np.array_equal(grid, exact)


def test_vectorised_yates_chi_squared_matches_the_detector() -> None:
    ref = np.array([0, 1, 300, 999, 1000])
    for win_white in (0, 3, 140, 200):
        expected = [
            wine_type_test(np.array([1000 - r, r]), np.array([200 - win_white, win_white]))[1]
            for r in ref
        ]
        got = sq.yates_chi2_p(ref, 1000, np.full(ref.shape, win_white), 200)
        assert np.allclose(got, expected, rtol=1e-12, atol=0)


def test_scores_follow_the_p_values_and_stay_finite() -> None:
    z = sq.scores([1.0, 0.5, 0.05, 1e-10, 0.0])
    assert z[0] == sq.Z_FLOOR
    assert z[-1] == sq.Z_CAP
    assert z[1] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(z) > 0)


def stable_window_scores(
    reference: Reference, n_windows: int, window: int, rng: np.random.Generator
) -> np.ndarray:
    """[n_windows, N_TESTS] scores of windows drawn from the reference's population.

    Vectorised: the synthetic values lie on a 0.1 grid, so the KS statistic is ``grid_ks`` on
    counts per grid value (the same statistic as the detector's, see the test above).
    """
    x, white = synthetic_population(rng, n_windows * window)
    codes = np.rint(x * 10).astype(np.int64)
    ref_codes = np.rint(reference.sorted_features * 10).astype(np.int64)
    n_values = int(max(codes.max(), ref_codes.max())) + 1
    offsets = np.repeat(np.arange(n_windows, dtype=np.int64) * n_values, window)
    p = np.empty((n_windows, N_TESTS))
    for j in range(N_FEATURES):
        ref_counts = np.bincount(ref_codes[:, j], minlength=n_values)
        counts = np.bincount(codes[:, j] + offsets, minlength=n_windows * n_values)
        d = sq.grid_ks(ref_counts, counts.reshape(n_windows, n_values), reference.size, window)
        p[:, j] = sq.ks_p_values_fast(d, reference.size, window)
    window_white = white.reshape(n_windows, window).sum(axis=1)
    p[:, -1] = sq.yates_chi2_p(
        np.asarray(reference.type_counts[1]), reference.size, window_white, window
    )
    return sq.scores(p)


@pytest.mark.parametrize("budget_windows", [50, 200])
def test_stable_stream_meets_the_calibrated_budget(
    synthetic_reference: Reference, budget_windows: int
) -> None:
    """Empirical rows between false alarms on a stable stream ~ the stated budget (x2 either way:
    the calibration neither breaks the budget nor buys it with a threshold far too high)."""
    window = 50
    params = DriftParams(
        window_size=window,
        false_alarm_rows=budget_windows * window,
        calibration_references=32,
        calibration_windows=500,
    )
    cal = sq.calibrate(synthetic_reference, params)
    n_windows = 40 * budget_windows
    stream = stable_window_scores(synthetic_reference, n_windows, window, np.random.default_rng(5))
    state, raises = sq.initial_state(cal), 0
    for z in stream:
        state = sq.step(state, z, window, cal)
        if state.alarm:
            raises += 1
            state = sq.initial_state(cal)  # the alarm's retraining reloads the reference
    measured_rows = n_windows * window / max(raises, 1)
    assert params.false_alarm_rows / 2 <= measured_rows <= params.false_alarm_rows * 2


def test_a_larger_budget_raises_the_threshold(synthetic_reference: Reference) -> None:
    quick = DriftParams(calibration_references=16, calibration_windows=200)
    small = sq.calibrate(
        synthetic_reference, quick.model_copy(update={"false_alarm_rows": 100_000})
    )
    large = sq.calibrate(
        synthetic_reference, quick.model_copy(update={"false_alarm_rows": 100_000_000})
    )
    assert large.threshold > small.threshold
    assert small.expected_false_alarm_rows >= 100_000


def test_calibration_is_reproducible_and_round_trips(synthetic_reference: Reference) -> None:
    params = DriftParams(calibration_references=16, calibration_windows=200)
    first, second = (sq.calibrate(synthetic_reference, params) for _ in range(2))
    assert first.threshold == second.threshold
    assert first.fingerprint == second.fingerprint
    restored = sq.Calibration.from_dict(json.loads(json.dumps(first.to_dict())))
    assert restored == first


def test_time_windows_assume_the_smallest_window_in_the_budget(
    synthetic_reference: Reference,
) -> None:
    by_count = DriftParams(calibration_references=16, calibration_windows=200)
    by_time = by_count.model_copy(update={"window_seconds": 60.0, "min_window_rows": 20})
    assert sq.budget_window_rows(by_time) == 20
    assert (
        sq.calibrate(synthetic_reference, by_time).threshold
        > sq.calibrate(synthetic_reference, by_count).threshold
    )
    assert sq.fingerprint(synthetic_reference, by_time) != sq.fingerprint(
        synthetic_reference, by_count
    )


# --- decision semantics on real windows --------------------------------------------------------


@pytest.fixture(scope="module")
def red_calibration(red_split: RedSplit) -> sq.Calibration:
    return sq.calibrate(red_split.reference, DriftParams(calibration_windows=500))


def window_scores(split: RedSplit, frame: pd.DataFrame) -> np.ndarray:
    x, white = frame_rows(frame)
    return sq.result_scores(detect(split.reference, x, white, DriftParams()))


def real_windows(split: RedSplit, frame: pd.DataFrame, n: int, seed: int) -> list[np.ndarray]:
    return [
        window_scores(split, frame.sample(200, replace=True, random_state=seed + i))
        for i in range(n)
    ]


def test_drifted_traffic_raises_and_reference_traffic_clears(
    red_split: RedSplit, red_calibration: sq.Calibration
) -> None:
    state = sq.initial_state(red_calibration)
    for z in real_windows(red_split, red_split.white, 3, 0):
        state = sq.step(state, z, 200, red_calibration)
    assert state.alarm
    assert state.raised_at_row is not None
    assert state.alarms_raised == 1
    assert "wine_type" in state.raised_by
    # Back to traffic like the reference: the charts lose about k a window and the decision
    # clears within the windows the ceiling allows, without a reload.
    cal = red_calibration
    allowed = int(np.ceil((cal.ceiling - cal.threshold) / cal.k)) + 2
    decisions = []
    for z in real_windows(red_split, red_split.reference_frame, allowed + 3, 100):
        state = sq.step(state, z, 200, cal)
        decisions.append(state.alarm)
    assert not decisions[-1]
    assert decisions.index(False) <= allowed
    assert decisions[decisions.index(False) :] == [False] * (
        len(decisions) - decisions.index(False)
    )
    assert state.raised_at_row is None
    assert state.raised_by == ()


def test_no_single_window_latches_the_decision(red_calibration: sq.Calibration) -> None:
    cal = red_calibration
    extreme = np.full(N_TESTS, sq.Z_CAP)
    calm = np.zeros(N_TESTS)
    state = sq.step(sq.initial_state(cal), extreme, 200, cal)
    assert state.alarm  # overwhelming evidence raises at once ...
    for _ in range(int(np.ceil(cal.ceiling / cal.k))):
        state = sq.step(state, calm, 200, cal)
    assert not state.alarm  # ... but does not hold the alarm without more of it
    assert max(state.statistics) == 0.0


def test_a_reload_starts_over(red_split: RedSplit, red_calibration: sq.Calibration) -> None:
    state = sq.initial_state(red_calibration)
    for z in real_windows(red_split, red_split.white, 2, 7):
        state = sq.step(state, z, 200, red_calibration)
    assert state.alarm
    reloaded = sq.initial_state(red_calibration)
    assert not reloaded.alarm
    assert reloaded.statistics == (0.0,) * N_TESTS
    # A persisted state of the previous reference does not survive a reload to another one.
    other = sq.calibrate(
        build_reference(*frame_rows(red_split.white.iloc[:1000])),
        DriftParams(calibration_windows=200),
    )
    assert sq.restore(state.to_dict(), other) == sq.initial_state(other)


def test_a_restart_neither_hides_nor_invents_an_alarm(
    red_split: RedSplit, red_calibration: sq.Calibration
) -> None:
    cal = red_calibration
    stream = [
        *real_windows(red_split, red_split.held_out, 4, 20),
        *real_windows(red_split, red_split.white, 2, 30),
        *real_windows(red_split, red_split.held_out, 6, 40),
    ]
    straight = sq.initial_state(cal)
    decisions = []
    for z in stream:
        straight = sq.step(straight, z, 200, cal)
        decisions.append(straight.alarm)
    assert True in decisions
    assert decisions[0] is False
    for cut in range(1, len(stream)):
        state = sq.initial_state(cal)
        for z in stream[:cut]:
            state = sq.step(state, z, 200, cal)
        saved = json.loads(json.dumps(state.to_dict()))  # what the detector persists
        restored = sq.restore(saved, cal)
        assert restored == state
        assert restored.alarm == decisions[cut - 1]
        for z in stream[cut:]:
            restored = sq.step(restored, z, 200, cal)
        assert restored == straight


def test_resume_reuses_a_matching_snapshot_and_discards_another(red_split: RedSplit) -> None:
    params = DriftParams(calibration_references=16, calibration_windows=200)
    cal, state = sq.resume(red_split.reference, params, None)
    for z in real_windows(red_split, red_split.white, 2, 50):
        state = sq.step(state, z, 200, cal)
    assert state.alarm
    saved = json.loads(json.dumps(sq.snapshot(cal, state)))
    # Restart, same reference and parameters: same calibration, alarm still raised.
    assert sq.resume(red_split.reference, params, saved) == (cal, state)
    # Restart with another budget: recalibrated, and the old evidence does not carry over.
    other = params.model_copy(update={"false_alarm_rows": 50_000_000})
    new_cal, new_state = sq.resume(red_split.reference, other, saved)
    assert new_cal.fingerprint != cal.fingerprint
    assert new_state == sq.initial_state(new_cal)


def test_a_corrupt_state_is_refused(red_calibration: sq.Calibration) -> None:
    saved = sq.initial_state(red_calibration).to_dict()
    with pytest.raises(ValueError, match="version"):
        sq.SequentialState.from_dict({**saved, "version": 99})
    with pytest.raises(ValueError, match="lacks statistics"):
        sq.SequentialState.from_dict({**saved, "statistics": {"alcohol": 1.0}})


def test_step_refuses_scores_of_the_wrong_shape(red_calibration: sq.Calibration) -> None:
    with pytest.raises(ValueError, match="12 scores"):
        sq.step(sq.initial_state(red_calibration), np.zeros(3), 200, red_calibration)


# --- windows closed by count or by time --------------------------------------------------------


def rows(n: int, value: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, N_FEATURES), value), np.zeros(n, dtype=np.bool_)


def test_windows_close_by_row_count() -> None:
    buffer = sq.WindowBuffer(sq.WindowPolicy(rows=200), N_FEATURES)
    closed = buffer.add(*rows(450), now=0.0)
    assert [w[0].shape[0] for w in closed] == [200, 200]
    assert buffer.fill == 50
    assert buffer.tick(now=1e9) is None  # no time limit set


def test_windows_close_by_time_once_large_enough() -> None:
    buffer = sq.WindowBuffer(sq.WindowPolicy(rows=200, seconds=60.0, min_rows=20), N_FEATURES)
    assert buffer.add(*rows(30), now=0.0) == []
    assert buffer.tick(now=59.0) is None
    window = buffer.tick(now=60.0)
    assert window is not None
    assert window[0].shape[0] == 30
    assert buffer.fill == 0
    # Too few rows when the time is up: the window waits for min_rows, then closes.
    assert buffer.add(*rows(5), now=100.0) == []
    assert buffer.tick(now=500.0) is None
    late = buffer.add(*rows(15, 2.0), now=501.0)
    assert [w[0].shape[0] for w in late] == [20]


def test_rows_after_the_deadline_open_the_next_window() -> None:
    buffer = sq.WindowBuffer(sq.WindowPolicy(rows=200, seconds=60.0, min_rows=20), N_FEATURES)
    buffer.add(*rows(25, 1.0), now=0.0)
    closed = buffer.add(*rows(10, 2.0), now=61.0)
    assert len(closed) == 1
    assert np.all(closed[0][0] == 1.0)
    assert buffer.fill == 10
    assert buffer.opened_at == 61.0


def test_window_policy_from_params() -> None:
    policy = sq.WindowPolicy.from_params(
        DriftParams(window_size=200, window_seconds=30.0, min_window_rows=40)
    )
    assert policy == sq.WindowPolicy(rows=200, seconds=30.0, min_rows=40)
    assert policy.due(200, None, 0.0)
    assert not policy.due(39, 0.0, 100.0)
    assert policy.due(40, 0.0, 30.0)
    assert not policy.due(40, 0.0, 29.9)
