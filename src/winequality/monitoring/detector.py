"""Data-drift tests of a window of live rows against the reference sample.

One two-sample Kolmogorov-Smirnov test per measurement and one chi-squared test for ``wine_type``,
followed by a multiple-testing correction over all of them (Bonferroni, or Benjamini-Hochberg FDR).
The KS statistic of all features is computed in one vectorised pass and its p-value uses Smirnov's
asymptotic distribution, exactly as ``scipy.stats.ks_2samp(..., method="asymp")`` does (which is
what Alibi Detect's ``KSDrift`` calls), so decisions agree with the Alibi backend.

Pure functions over numpy arrays (rows validated by ``contract/parsers.py``); imports numpy,
scipy, pandas, pydantic and the contract only (the detector service must start fast and never
pull in MLflow or DVC).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel
from scipy import stats

from winequality.contract import schema
from winequality.contract.features import BoolArray, FloatArray
from winequality.contract.parsers import frame_rows
from winequality.contract.problems import FeatureError
from winequality.params import DriftParams

IntArray = npt.NDArray[np.int64]

TEST_NAMES: Final[tuple[str, ...]] = (*schema.FEATURE_NAMES, schema.WINE_TYPE)
"""Order of the tests: the 11 measurements (KS), then ``wine_type`` (chi-squared)."""
N_TESTS: Final = len(TEST_NAMES)


class ReferenceSampleError(ValueError):
    """The reference sample is missing, unreadable or does not follow ``schema.DATA_COLUMNS``."""


@dataclass(frozen=True, slots=True)
class Reference:
    """The reference sample in the form the tests need."""

    sorted_features: FloatArray
    """[n, 11] measurements, each column sorted ascending (columns are tested independently)."""
    type_counts: IntArray
    """Rows per wine type, in ``schema.WINE_TYPES`` order."""
    source: str = ""
    """Where it was loaded from (shown in reports and ``/drift``)."""

    @property
    def size(self) -> int:
        return int(self.sorted_features.shape[0])


class DriftResult(BaseModel):
    """Outcome of one window; the JSON of ``GET /drift`` and of the Alibi subprocess."""

    is_drift: bool
    p_values: dict[str, float]
    """Uncorrected p-value per test (features, then ``wine_type``)."""
    distances: dict[str, float]
    """KS statistic per feature; total-variation distance of the type mix for ``wine_type``."""
    drifted: list[str]
    """Tests significant after the correction."""
    threshold: float
    """Family-wise significance level before the correction (``drift.p_val``)."""
    corrected_threshold: float
    """Level a single p-value is compared with after the correction."""
    correction: str
    window_size: int
    reference_size: int
    backend: str = "ks"


def type_counts(is_white: BoolArray) -> IntArray:
    """Rows per wine type in ``schema.WINE_TYPES`` order (red, white)."""
    white = int(np.count_nonzero(is_white))
    return np.array([is_white.shape[0] - white, white], dtype=np.int64)


def build_reference(measurements: FloatArray, is_white: BoolArray, source: str = "") -> Reference:
    """Validated rows -> a Reference (columns sorted once here, not per window)."""
    if measurements.shape[0] < 2:
        raise ReferenceSampleError(
            f"the reference needs at least 2 rows, got {measurements.shape[0]}"
        )
    return Reference(np.sort(measurements, axis=0), type_counts(is_white), source)


def reference_from_frame(frame: pd.DataFrame, source: str = "") -> Reference:
    """A frame following ``schema.DATA_COLUMNS`` (``quality`` is not needed) -> a Reference."""
    try:
        measurements, is_white = frame_rows(frame)
    except FeatureError as exc:
        raise ReferenceSampleError(f"invalid reference {source or 'frame'}: {exc}") from exc
    return build_reference(measurements, is_white, source)


def load_reference(path: Path) -> Reference:
    """Read a reference parquet file (the bundle's ``reference.parquet``)."""
    if not path.is_file():
        raise ReferenceSampleError(f"reference sample not found: {path}")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ReferenceSampleError(f"cannot read reference sample {path}: {exc}") from exc
    return reference_from_frame(frame, str(path))


def ks_statistics(sorted_reference: FloatArray, window: FloatArray) -> FloatArray:
    """Two-sample KS statistic of every column at once (same values as ``ks_2samp``).

    The difference of the two empirical CDFs, in integer units (``count_ref * n_win -
    count_win * n_ref``, so ties and rounding behave exactly like scipy's evaluation), is a step
    function; between two consecutive distinct window values the window's CDF is constant and
    the reference's only grows, so the largest gap is reached at a window value (counts ``<=``
    it) or just below one (counts ``<`` it). Hence only the sorted window is looked up in the
    already sorted reference (``searchsorted``, right and left, per column): no merged sort of
    both samples per window.
    """
    n_ref, n_win = sorted_reference.shape[0], window.shape[0]
    reference = np.ascontiguousarray(sorted_reference.T)
    values = np.sort(window.T, axis=1)  # [columns, n_win], each row sorted
    first = np.ones(values.shape, dtype=np.bool_)  # first of a run of equal values
    first[:, 1:] = values[:, 1:] != values[:, :-1]
    last = np.ones(values.shape, dtype=np.bool_)
    last[:, :-1] = first[:, 1:]
    at_most = np.empty(values.shape, dtype=np.int64)  # reference rows <= each window value
    below = np.empty(values.shape, dtype=np.int64)  # reference rows < each window value
    for j, column in enumerate(reference):
        at_most[j] = column.searchsorted(values[j], "right")
        below[j] = column.searchsorted(values[j], "left")
    position = np.arange(n_win, dtype=np.int64)
    at = np.where(last, np.abs(at_most * n_win - (position + 1) * n_ref), 0).max(axis=1)
    before = np.where(first, np.abs(below * n_win - position * n_ref), 0).max(axis=1)
    return np.asarray(np.maximum(at, before) / (n_ref * n_win), np.float64)


_KS_SF_CACHE: dict[float, dict[float, float]] = {}
"""``kstwo.sf`` by effective sample size, then by statistic: the statistic of an ``n_ref``-row
reference against an ``n_win``-row window is a multiple of ``1 / lcm(n_ref, n_win)``, so a
stream of windows of one size meets few distinct values, and ``kstwo.sf`` costs a fraction of a
millisecond per value (a Python-level series per element)."""
_KS_SF_CACHE_SIZE: Final = 1 << 16


def ks_p_values(statistics: FloatArray, n_ref: int, n_win: int) -> FloatArray:
    """Smirnov's asymptotic two-sided p-values, as ``ks_2samp(method="asymp")`` computes them.

    Every value is ``kstwo.sf`` of that very statistic (element-wise, so computing it once and
    keeping it gives the same float as computing it again).
    """
    big, small = max(n_ref, n_win), min(n_ref, n_win)
    effective_n = float(np.round(big * small / (big + small)))
    values = np.asarray(statistics, np.float64)
    if values.ndim != 1 or not np.isfinite(values).all():
        return _ks_sf(values, effective_n)
    table = _KS_SF_CACHE.setdefault(effective_n, {})
    keys = values.tolist()
    found = list(map(table.get, keys))
    if None in found:
        missing = sorted({d for d, p in zip(keys, found, strict=True) if p is None})
        fresh = dict(zip(missing, _ks_sf(np.asarray(missing), effective_n).tolist(), strict=True))
        if len(table) + len(fresh) > _KS_SF_CACHE_SIZE:
            table.clear()
        table.update(fresh)
        found = [fresh[d] if p is None else p for d, p in zip(keys, found, strict=True)]
    return np.asarray(found, np.float64)


def _ks_sf(statistics: FloatArray, effective_n: float) -> FloatArray:
    return np.asarray(np.clip(stats.kstwo.sf(statistics, effective_n), 0.0, 1.0), np.float64)


def wine_type_test(reference_counts: IntArray, window_counts: IntArray) -> tuple[float, float]:
    """Chi-squared test of the red/white mix -> (total-variation distance, p-value).

    Categories absent from both samples carry no information and would make the expected
    frequencies zero, so they are dropped; with fewer than two categories left (e.g. a red-only
    reference and a red-only window) the mixes are identical and the p-value is 1. A function
    of the counts alone, kept per pair of counts (a window of ``n`` rows has ``n + 1`` mixes;
    ``chi2_contingency`` costs more than the rest of a window's tests).
    """
    return _wine_type_test(
        tuple(np.asarray(reference_counts).tolist()), tuple(np.asarray(window_counts).tolist())
    )


@functools.lru_cache(maxsize=4096)
def _wine_type_test(reference: tuple[int, ...], window: tuple[int, ...]) -> tuple[float, float]:
    reference_counts, window_counts = np.asarray(reference), np.asarray(window)
    ref_share = reference_counts / max(int(reference_counts.sum()), 1)
    win_share = window_counts / max(int(window_counts.sum()), 1)
    distance = 0.5 * float(np.abs(ref_share - win_share).sum())
    table = np.vstack((reference_counts, window_counts))
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return distance, 1.0
    return distance, float(stats.chi2_contingency(table).pvalue)


def correct(p_values: FloatArray, p_val: float, correction: str) -> tuple[BoolArray, float]:
    """Multiple-testing correction -> (significant per test, corrected per-test threshold).

    Bonferroni compares each p-value with ``p_val / m``. FDR uses Benjamini-Hochberg adjusted
    p-values; its threshold is the largest ``k * p_val / m`` that a sorted p-value beats (or
    ``p_val / m`` when none does), the value Alibi Detect reports. Comparisons are strict, as in
    Alibi Detect.
    """
    m = p_values.shape[0]
    if correction == "bonferroni":
        threshold = p_val / m
        return p_values < threshold, threshold
    if correction == "fdr":
        adjusted = stats.false_discovery_control(p_values, method="bh")
        critical = p_val * np.arange(1, m + 1) / m
        below = np.sort(p_values) < critical
        threshold = float(critical[np.nonzero(below)[0].max()]) if below.any() else p_val / m
        return np.asarray(adjusted < p_val, np.bool_), threshold
    raise ValueError(f"unknown correction {correction!r}: use 'bonferroni' or 'fdr'")


def detect(
    reference: Reference,
    measurements: FloatArray,
    is_white: BoolArray,
    params: DriftParams,
) -> DriftResult:
    """Test one window (validated rows) against the reference."""
    n_win = measurements.shape[0]
    if n_win < 2:
        raise ValueError(f"a window needs at least 2 rows, got {n_win}")
    distances = np.empty(N_TESTS, dtype=np.float64)
    p_values = np.empty(N_TESTS, dtype=np.float64)
    distances[:-1] = ks_statistics(reference.sorted_features, measurements)
    p_values[:-1] = ks_p_values(distances[:-1], reference.size, n_win)
    distances[-1], p_values[-1] = wine_type_test(reference.type_counts, type_counts(is_white))
    significant, corrected = correct(p_values, params.p_val, params.correction)
    return DriftResult(
        is_drift=bool(significant.any()),
        p_values=dict(zip(TEST_NAMES, p_values.tolist(), strict=True)),
        distances=dict(zip(TEST_NAMES, distances.tolist(), strict=True)),
        drifted=[name for name, s in zip(TEST_NAMES, significant, strict=True) if s],
        threshold=params.p_val,
        corrected_threshold=corrected,
        correction=params.correction,
        window_size=n_win,
        reference_size=reference.size,
    )


def detect_frame(reference: Reference, frame: pd.DataFrame, params: DriftParams) -> DriftResult:
    """Convenience wrapper: a frame with the feature columns and ``wine_type`` as the window."""
    measurements, is_white = frame_rows(frame)
    return detect(reference, measurements, is_white, params)
