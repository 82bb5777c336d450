"""Sequential drift decision over the per-window tests, with a stated false-alarm budget.

The per-window tests (``detector.detect``: KS per measurement, chi-squared for ``wine_type``)
stay as they are and stay visible; this module decides *over time* whether drift is confirmed,
which is what ``seldon_metric_drift_found`` should mean.

The rule: one CUSUM chart per test. A window's uncorrected p-value ``p`` becomes a score
``z = Phi^-1(1 - p)`` (about N(0, 1) when nothing changed, large when the window drifted); each
chart accumulates ``S = min(ceiling, max(0, S + z - k))`` and the decision is 1 while any chart is
above the threshold ``h``. Evidence from several moderately unusual windows adds up (a small
shift is confirmed in a few windows), a single overwhelming window can raise the alarm on its own,
but no single window latches it: once traffic looks like the reference again every chart loses
about ``k`` per window and the decision returns to 0 (the ceiling, ``2 h``, bounds how long that
takes). Reloading the reference starts every chart from 0. One chart per test rather than one
over an aggregate of the window: a sum of the scores dilutes a one-feature shift, and its spread
under stable traffic depends on how the features co-vary, which per-feature resampling does not
reproduce; a chart over the largest score is as fast, but per-test charts say which tests carry
the evidence (``raised_by``). The multiple-testing correction moves into the budget (the
false-alarm rates of the twelve charts are summed). ``benchmarks/drift_rules.py`` compares these
candidates, and persistence rules, at one budget.

The budget is the expected number of stable rows between two false alarms (``drift.
false_alarm_rows``, ARL0). It cannot be taken from the nominal p-values: every window is compared
with the *same* finite reference, whose own sampling error shifts the stable-traffic scores of
some features persistently, and a CUSUM accumulates exactly that. So ``calibrate`` simulates what
stable traffic looks like to this reference: pseudo-references bootstrapped from the reference
(each carrying a sampling error of the size the real one has) and stable windows drawn from the
reference (the best estimate of the stable population), scored exactly as the detector scores a
window. For each pseudo-reference and test the run length of the chart follows Siegmund's
approximation ``ARL(h) = (exp(theta b) - theta b - 1) / (theta |mu|)``, ``b = h + 1.166 sd``,
where ``theta > 0`` solves ``E[exp(theta (z - k))] = 1`` on the simulated scores (the adjustment
coefficient: the exact exponential rate of the CUSUM's run length, estimated where it is
determined, at moderate scores). The approximation's prefactor is not exact for these discrete,
skewed scores, so it is anchored: at a threshold low enough that the charts, run over the
simulated windows themselves, raise a few hundred alarms, the ratio of counted to predicted
alarms (never below 1) scales the prediction. The threshold is the smallest ``h`` whose
anchored false-alarm rate, summed over the tests (a union bound: correlated features only make
it conservative) and averaged over the pseudo-references (the expected rate over the references
this one could have been), meets the budget. The estimated rate is a mean, so a budget of
``B`` rows leaves a chance of about ``N / B`` of one false alarm in ``N`` stable rows: the
default budget is ten times the million rows that should pass without one. Calibration is
deterministic (seeded) and identified by a fingerprint, so a restart reuses the persisted
threshold (``resume``) and only a new reference or new parameters recalibrate.

A window closed early by time (``window_seconds``) counts as a whole window, so with time-based
windows the budget assumes every window is as small as ``min_window_rows``. Scores are about
N(0, 1) under stable traffic whatever the window's size (they come from its p-values), so one
threshold serves windows of any size.

Measured in ``benchmarks/drift_alarms.py`` (false alarms per million stable rows, detection
delays, beside today's single-window latch and Alibi Detect's ``CVMDriftOnline``).

State (``SequentialState``) is a small frozen value with ``to_dict``/``from_dict``; it records the
fingerprint of the calibration it was computed under, so a restored state applies only to the
same reference and parameters (a state from another reference is discarded, as a reload would).

Pure functions over numpy arrays and frozen dataclasses; numpy and scipy only.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from winequality.contract.features import BoolArray, FloatArray
from winequality.monitoring.detector import (
    N_TESTS,
    TEST_NAMES,
    DriftResult,
    Reference,
)
from winequality.params import DriftParams

Z_FLOOR: Final = -3.0
"""Scores are clipped here: p = 1 (identical type mixes) would otherwise be -inf."""
Z_CAP: Final = 12.0
"""p-values below ~1e-33 say nothing more than "drifted"; the cap keeps sums finite."""
CEILING_RATIO: Final = 2.0
"""A chart never exceeds ``CEILING_RATIO * threshold``: it bounds the time back to 0."""
OVERSHOOT: Final = 1.166
"""Siegmund's correction of the threshold for the overshoot at crossing, in score sd units."""
STATE_VERSION: Final = 1

IntArray = npt.NDArray[np.int64]


def scores(p_values: npt.ArrayLike) -> FloatArray:
    """Uncorrected p-values -> probit scores ``Phi^-1(1 - p)``, clipped to [Z_FLOOR, Z_CAP]."""
    p = np.asarray(p_values, dtype=np.float64)
    return np.asarray(np.clip(special.ndtri(1.0 - np.clip(p, 0.0, 1.0)), Z_FLOOR, Z_CAP))


def result_scores(result: DriftResult) -> FloatArray:
    """Scores of one window's result, in ``TEST_NAMES`` order."""
    return scores([result.p_values[name] for name in TEST_NAMES])


# --- calibration -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Calibration:
    """Threshold of the charts for one reference, window size and budget."""

    threshold: float
    """``h``: the decision is 1 while a chart is above it."""
    k: float
    """Reference value subtracted from every score."""
    budget_rows: int
    """Stated false-alarm budget: expected stable rows between false alarms."""
    window_rows: int
    """Rows per window the budget is converted with (``min_window_rows`` with time windows)."""
    expected_false_alarm_rows: float
    """Estimated stable rows between false alarms at ``threshold`` (>= ``budget_rows``)."""
    fingerprint: str
    """Hash of the reference and parameters: a saved state applies only under the same one."""
    anchor: float = 1.0
    """Correction of Siegmund's prefactor measured on the simulated windows (>= 1)."""
    seconds: float = 0.0
    """Time the calibration took."""

    @property
    def ceiling(self) -> float:
        return CEILING_RATIO * self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "k": self.k,
            "budget_rows": self.budget_rows,
            "window_rows": self.window_rows,
            "expected_false_alarm_rows": self.expected_false_alarm_rows,
            "fingerprint": self.fingerprint,
            "anchor": self.anchor,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            threshold=float(data["threshold"]),
            k=float(data["k"]),
            budget_rows=int(data["budget_rows"]),
            window_rows=int(data["window_rows"]),
            expected_false_alarm_rows=float(data["expected_false_alarm_rows"]),
            fingerprint=str(data["fingerprint"]),
            anchor=float(data.get("anchor", 1.0)),
            seconds=float(data.get("seconds", 0.0)),
        )


def budget_window_rows(params: DriftParams) -> int:
    """Rows per window the row budget is converted with: the smallest window that can close."""
    if params.window_seconds is None:
        return params.window_size
    return min(params.min_window_rows, params.window_size)


def fingerprint(reference: Reference, params: DriftParams) -> str:
    """Identity of what a calibration depends on: the reference and the rule's parameters."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(reference.sorted_features).tobytes())
    digest.update(np.ascontiguousarray(reference.type_counts).tobytes())
    fields = (
        params.window_size,
        budget_window_rows(params),
        params.false_alarm_rows,
        params.cusum_k,
        params.calibration_references,
        params.calibration_windows,
        params.calibration_seed,
    )
    digest.update(repr(fields).encode())
    return digest.hexdigest()[:16]


@functools.cache
def _ks_sf_table(n_ref: int, n_win: int) -> tuple[FloatArray, FloatArray]:
    """log p-value of the KS statistic on a grid, as ``detector.ks_p_values`` computes it.

    ``kstwo.sf`` costs ~0.3 ms a value; calibration scores hundreds of thousands of windows, so it
    interpolates log p linearly between 513 points (error far below the scores' resolution).
    """
    big, small = max(n_ref, n_win), min(n_ref, n_win)
    effective_n = round(big * small / (big + small))
    grid = np.linspace(0.0, 1.0, 513)
    with np.errstate(divide="ignore"):
        log_p = np.asarray(np.log(np.clip(stats.kstwo.sf(grid, effective_n), 1e-300, 1.0)))
    grid.setflags(write=False)
    log_p.setflags(write=False)
    return grid, log_p


def grid_ks(ref_counts: IntArray, window_counts: IntArray, n_ref: int, n_win: int) -> FloatArray:
    """KS statistic of windows given as counts on the distinct values of a column.

    ``ref_counts`` [G], ``window_counts`` [W, G]: both CDFs only jump at these values, so the
    largest integer gap ``|cdf_win * n_ref - cdf_ref * n_win|`` over them is exactly what
    ``detector.ks_statistics`` computes from the raw values.
    """
    gap = np.abs(np.cumsum(window_counts, axis=-1) * n_ref - np.cumsum(ref_counts) * n_win)
    return np.asarray(gap.max(axis=-1) / (n_ref * n_win), np.float64)


def _ks_null_scores(
    column: FloatArray, n_win: int, n_pseudo: int, n_windows: int, rng: np.random.Generator
) -> FloatArray:
    """[n_pseudo, n_windows] scores of one feature: windows drawn from the reference column vs
    pseudo-references bootstrapped from it."""
    n_ref = column.shape[0]
    codes = np.unique(column, return_inverse=True)[1].astype(np.int64)
    n_values = int(codes.max()) + 1
    grid, log_p = _ks_sf_table(n_ref, n_win)
    out = np.empty((n_pseudo, n_windows), dtype=np.float64)
    offsets = (np.arange(n_windows, dtype=np.int64) * n_values)[:, None]
    for b in range(n_pseudo):
        pseudo = np.bincount(codes[rng.integers(0, n_ref, n_ref)], minlength=n_values)
        drawn = codes[rng.integers(0, n_ref, (n_windows, n_win))] + offsets
        counts = np.bincount(drawn.ravel(), minlength=n_windows * n_values)
        d = grid_ks(pseudo, counts.reshape(n_windows, n_values), n_ref, n_win)
        out[b] = scores(np.exp(np.interp(d, grid, log_p)))
    return out


def ks_p_values_fast(statistics: FloatArray, n_ref: int, n_win: int) -> FloatArray:
    """``detector.ks_p_values`` interpolated (see ``_ks_sf_table``): for simulations."""
    grid, log_p = _ks_sf_table(n_ref, n_win)
    return np.asarray(np.exp(np.interp(statistics, grid, log_p)), np.float64)


def yates_chi2_p(ref_white: IntArray, ref_n: int, win_white: IntArray, win_n: int) -> FloatArray:
    """p-value of ``detector.wine_type_test`` (2x2 chi-squared with Yates), vectorised."""
    observed = np.stack(
        np.broadcast_arrays(ref_n - ref_white, ref_white, win_n - win_white, win_white), axis=-1
    ).astype(np.float64)
    observed = observed.reshape(*observed.shape[:-1], 2, 2)
    rows = observed.sum(axis=-1, keepdims=True)
    cols = observed.sum(axis=-2, keepdims=True)
    total = rows.sum(axis=-2, keepdims=True)
    degenerate = (cols == 0).any(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = rows * cols / total
        diff = expected - observed
        adjusted = observed + np.sign(diff) * np.minimum(0.5, np.abs(diff))
        chi2 = ((adjusted - expected) ** 2 / expected).sum(axis=(-2, -1))
    p = stats.chi2.sf(np.where(degenerate, 0.0, chi2), 1)
    return np.asarray(np.where(degenerate, 1.0, p), np.float64)


def null_scores(
    reference: Reference, n_win: int, n_pseudo: int, n_windows: int, seed: int = 0
) -> FloatArray:
    """[n_pseudo, n_windows, N_TESTS] scores of simulated stable windows (see the module doc)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_pseudo, n_windows, N_TESTS), dtype=np.float64)
    for j in range(N_TESTS - 1):
        out[:, :, j] = _ks_null_scores(
            reference.sorted_features[:, j], n_win, n_pseudo, n_windows, rng
        )
    n_ref = reference.size
    share = float(reference.type_counts[1]) / n_ref
    pseudo_white = rng.binomial(n_ref, share, n_pseudo)[:, None]
    window_white = rng.binomial(n_win, share, (n_pseudo, n_windows))
    out[:, :, -1] = scores(yates_chi2_p(pseudo_white, n_ref, window_white, n_win))
    return out


def adjustment_coefficient(increments: FloatArray, iterations: int = 60) -> FloatArray:
    """``theta > 0`` with ``mean(exp(theta y)) = 1`` along the last axis (inf: y never > 0).

    Bisection on the convex ``log mean exp(theta y)``, which is < 0 just right of 0 when the mean
    is negative; a chart whose mean increment is >= 0 gets 0 (it drifts up: no finite budget).
    """
    y = increments
    lead = y.shape[:-1]
    never_up = (y <= 0).all(axis=-1)
    drifts_up = y.mean(axis=-1) >= 0
    lo, hi = np.zeros(lead), np.full(lead, 64.0)

    def g(theta: FloatArray) -> FloatArray:
        scaled = theta[..., None] * y
        top = scaled.max(axis=-1)
        return np.asarray(top + np.log(np.exp(scaled - top[..., None]).mean(axis=-1)))

    hi_open = g(hi) < 0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = g(mid) < 0
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    theta = 0.5 * (lo + hi)
    theta = np.where(never_up | hi_open, np.inf, theta)
    return np.asarray(np.where(drifts_up & ~never_up, 0.0, theta), np.float64)


def siegmund_arl(h: float, theta: FloatArray, mu: FloatArray, sd: FloatArray) -> FloatArray:
    """Expected windows to a false alarm of a CUSUM with threshold ``h`` (Siegmund)."""
    b = h + OVERSHOOT * sd
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tb = theta * b
        arl = (np.expm1(tb) - tb) / (theta * np.abs(mu))
        # Upward drift (theta = 0): the chart reaches h in about h / mu windows.
        arl = np.where(theta == 0, b / np.maximum(np.abs(mu), 1e-12), arl)
    return np.asarray(np.where(np.isinf(theta), np.inf, arl), np.float64)


def false_alarm_rate(h: float, theta: FloatArray, mu: FloatArray, sd: FloatArray) -> float:
    """False alarms per window: summed over tests, averaged over pseudo-references."""
    return float((1.0 / siegmund_arl(h, theta, mu, sd)).sum(axis=-1).mean())


def threshold_for(
    target_windows: float, theta: FloatArray, mu: FloatArray, sd: FloatArray
) -> float:
    """Smallest h whose false-alarm rate is at most one per ``target_windows`` windows."""
    goal = 1.0 / target_windows
    lo, hi = 0.0, 1.0
    while false_alarm_rate(hi, theta, mu, sd) > goal:
        if hi > 1e4:
            raise ValueError("no finite CUSUM threshold meets the budget: raise cusum_k")
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if false_alarm_rate(mid, theta, mu, sd) > goal else (lo, mid)
    return hi


def simulated_rate(increments: FloatArray, h: float) -> float:
    """False alarms per window of the charts run over the simulated windows themselves
    (each chart restarts after its alarm): summed over tests, averaged over pseudo-references."""
    charts = np.zeros(increments.shape[:-1])
    alarms = np.zeros(increments.shape[:-1])
    for t in range(increments.shape[-1]):
        charts = np.maximum(charts + increments[..., t], 0.0)
        over = charts > h
        alarms += over
        charts[over] = 0.0
    return float(alarms.sum(axis=-1).mean() / increments.shape[-1])


ANCHOR_ALARMS: Final = 400
"""Expected false alarms in the simulated windows at the anchoring threshold."""


def anchor_factor(
    increments: FloatArray, theta: FloatArray, mu: FloatArray, sd: FloatArray
) -> float:
    """How many times more false alarms the charts raise on the simulated windows than
    Siegmund's approximation predicts, at a threshold low enough to count them (>= 1).

    The approximation's exponential rate ``theta`` is exact, its prefactor is not (the scores
    are discrete, skewed and clipped); the budget is met with the prefactor's error measured
    where it can be, and never used to lower a threshold.
    """
    n_pseudo, _, n_windows = increments.shape
    h0 = threshold_for(n_pseudo * n_windows / ANCHOR_ALARMS, theta, mu, sd)
    predicted = false_alarm_rate(h0, theta, mu, sd)
    return max(1.0, simulated_rate(increments, h0) / predicted)


def calibrate(reference: Reference, params: DriftParams) -> Calibration:
    """Threshold meeting ``params.false_alarm_rows`` for this reference (see the module doc)."""
    start = time.perf_counter()
    window_rows = budget_window_rows(params)
    simulated = null_scores(
        reference,
        params.window_size,
        params.calibration_references,
        params.calibration_windows,
        params.calibration_seed,
    )
    increments = np.moveaxis(simulated, 1, -1) - params.cusum_k  # [pseudo, test, window]
    theta = adjustment_coefficient(increments)
    mu, sd = increments.mean(axis=-1), increments.std(axis=-1)
    factor = anchor_factor(increments, theta, mu, sd)
    target_windows = params.false_alarm_rows / window_rows
    h = threshold_for(target_windows * factor, theta, mu, sd)
    rate = factor * false_alarm_rate(h, theta, mu, sd)
    return Calibration(
        threshold=h,
        k=params.cusum_k,
        budget_rows=params.false_alarm_rows,
        window_rows=window_rows,
        expected_false_alarm_rows=math.inf if rate == 0 else window_rows / rate,
        fingerprint=fingerprint(reference, params),
        anchor=factor,
        seconds=time.perf_counter() - start,
    )


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequentialState:
    """Charts and decision after the windows seen so far (immutable; ``step`` returns a new one)."""

    statistics: tuple[float, ...]
    """CUSUM of each test, in ``TEST_NAMES`` order."""
    fingerprint: str
    """The calibration this state was computed under."""
    alarm: bool = False
    """The decision (``seldon_metric_drift_found``)."""
    windows: int = 0
    rows: int = 0
    raised_at_row: int | None = None
    """Row count when the current alarm was raised (None when there is none)."""
    alarms_raised: int = 0
    """Alarms raised since the reference was loaded."""
    raised_by: tuple[str, ...] = field(default_factory=tuple)
    """Tests above the threshold when the current alarm was raised."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "statistics": dict(zip(TEST_NAMES, self.statistics, strict=True)),
            "fingerprint": self.fingerprint,
            "alarm": self.alarm,
            "windows": self.windows,
            "rows": self.rows,
            "raised_at_row": self.raised_at_row,
            "alarms_raised": self.alarms_raised,
            "raised_by": list(self.raised_by),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SequentialState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown sequential state version {data.get('version')!r}")
        stats_by_name = data["statistics"]
        missing = [n for n in TEST_NAMES if n not in stats_by_name]
        if missing:
            raise ValueError(f"sequential state lacks statistics for {missing}")
        raised_at = data.get("raised_at_row")
        return cls(
            statistics=tuple(float(stats_by_name[n]) for n in TEST_NAMES),
            fingerprint=str(data["fingerprint"]),
            alarm=bool(data["alarm"]),
            windows=int(data["windows"]),
            rows=int(data["rows"]),
            raised_at_row=None if raised_at is None else int(raised_at),
            alarms_raised=int(data.get("alarms_raised", 0)),
            raised_by=tuple(str(n) for n in data.get("raised_by", ())),
        )


def initial_state(calibration: Calibration) -> SequentialState:
    """All charts at 0, no alarm: the state after a (re)load of the reference."""
    return SequentialState(statistics=(0.0,) * N_TESTS, fingerprint=calibration.fingerprint)


def restore(saved: Mapping[str, Any] | None, calibration: Calibration) -> SequentialState:
    """A persisted state if it was computed under this calibration, else a fresh one.

    A state saved under another reference or other parameters describes evidence against a
    reference that is no longer loaded; starting over is what a reload does.
    """
    if saved is None:
        return initial_state(calibration)
    state = SequentialState.from_dict(saved)
    if state.fingerprint != calibration.fingerprint:
        return initial_state(calibration)
    return state


def step(
    state: SequentialState, window_scores: Sequence[float] | FloatArray, rows: int, cal: Calibration
) -> SequentialState:
    """One closed window (its scores, ``rows`` rows) -> the next state."""
    z = np.asarray(window_scores, dtype=np.float64)
    if z.shape != (N_TESTS,):
        raise ValueError(f"expected {N_TESTS} scores, got shape {list(z.shape)}")
    previous = np.asarray(state.statistics, dtype=np.float64)
    charts = np.clip(previous + z - cal.k, 0.0, cal.ceiling)
    above = charts > cal.threshold
    alarm = bool(above.any())
    total_rows = state.rows + rows
    raised = alarm and not state.alarm
    return SequentialState(
        statistics=tuple(charts.tolist()),
        fingerprint=state.fingerprint,
        alarm=alarm,
        windows=state.windows + 1,
        rows=total_rows,
        raised_at_row=(total_rows if raised else state.raised_at_row) if alarm else None,
        alarms_raised=state.alarms_raised + int(raised),
        raised_by=(
            tuple(n for n, a in zip(TEST_NAMES, above, strict=True) if a)
            if raised
            else (state.raised_by if alarm else ())
        ),
    )


def run(
    state: SequentialState, window_scores: FloatArray, rows: int, cal: Calibration
) -> tuple[SequentialState, BoolArray]:
    """Several windows ([n, N_TESTS] scores, ``rows`` each) -> final state, decision per window."""
    decisions = np.empty(window_scores.shape[0], dtype=np.bool_)
    for i, z in enumerate(window_scores):
        state = step(state, z, rows, cal)
        decisions[i] = state.alarm
    return state, decisions


def snapshot(calibration: Calibration, state: SequentialState) -> dict[str, Any]:
    """What the detector persists after every window (JSON-serialisable)."""
    return {"calibration": calibration.to_dict(), "state": state.to_dict()}


def resume(
    reference: Reference, params: DriftParams, saved: Mapping[str, Any] | None
) -> tuple[Calibration, SequentialState]:
    """Calibration and state at detector start from what it persisted (or None).

    Same reference and parameters: the saved calibration is reused (no recalibration) and the
    charts continue where they were, so a restart neither hides nor invents an alarm. Anything
    else (another reference, other parameters, nothing saved) calibrates and starts over, as a
    reload does.
    """
    current = fingerprint(reference, params)
    if saved is not None and saved.get("calibration", {}).get("fingerprint") == current:
        calibration = Calibration.from_dict(saved["calibration"])
        return calibration, restore(saved.get("state"), calibration)
    calibration = calibrate(reference, params)
    return calibration, initial_state(calibration)


# --- windows closed by row count or by time ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """When a window closes: at ``rows`` rows, or ``seconds`` after its first row once it holds
    ``min_rows`` (a window too small to test waits for more rows)."""

    rows: int
    seconds: float | None = None
    min_rows: int = 2

    @classmethod
    def from_params(cls, params: DriftParams) -> WindowPolicy:
        return cls(
            params.window_size,
            params.window_seconds,
            min(params.min_window_rows, params.window_size),
        )

    def due(self, fill: int, opened_at: float | None, now: float) -> bool:
        """True when a window holding ``fill`` rows, opened at ``opened_at``, closes at ``now``."""
        if fill >= self.rows:
            return True
        if self.seconds is None or opened_at is None or fill < self.min_rows:
            return False
        return now - opened_at >= self.seconds


Window = tuple[FloatArray, BoolArray]


class WindowBuffer:
    """Rows -> closed windows under a WindowPolicy (the one mutable piece; the service owns it).

    ``add`` first closes a window that became due by time before these rows arrived, then fills
    and closes by count (and by time, if the window reached ``min_rows`` late); ``tick`` closes a
    window due by time when no rows arrive (the service calls it from a timer).
    """

    def __init__(self, policy: WindowPolicy, n_features: int) -> None:
        self.policy = policy
        self._x = np.empty((policy.rows, n_features), dtype=np.float64)
        self._white = np.empty(policy.rows, dtype=np.bool_)
        self.fill = 0
        self.opened_at: float | None = None

    def _close(self) -> Window:
        window = (self._x[: self.fill].copy(), self._white[: self.fill].copy())
        self.fill, self.opened_at = 0, None
        return window

    def tick(self, now: float) -> Window | None:
        if self.fill and self.policy.due(self.fill, self.opened_at, now):
            return self._close()
        return None

    def add(self, features: FloatArray, is_white: BoolArray, now: float) -> list[Window]:
        closed = [w for w in (self.tick(now),) if w is not None]
        start = 0
        while start < features.shape[0]:
            if self.fill == 0:
                self.opened_at = now
            take = min(self.policy.rows - self.fill, features.shape[0] - start)
            self._x[self.fill : self.fill + take] = features[start : start + take]
            self._white[self.fill : self.fill + take] = is_white[start : start + take]
            self.fill += take
            start += take
            if self.fill == self.policy.rows:
                closed.append(self._close())
        late = self.tick(now)
        return closed if late is None else [*closed, late]

    def rows(self) -> Window:
        """A copy of the rows of the window being filled."""
        return self._x[: self.fill].copy(), self._white[: self.fill].copy()

    def reset(self) -> None:
        self.fill, self.opened_at = 0, None
