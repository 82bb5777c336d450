"""Realized model quality from feedback labels joined to the predictions that were served.

Pure functions over (true quality, served score) pairs, and ``QualityMonitor``, which keeps the
rolling window of the labelled rows of the model being served. ``POST /feedback`` only appends to
the window (a deque append); the statistics are computed when ``/metrics`` is scraped, so neither
prediction nor feedback requests ever pay for them.

The degradation decision is two one-sided sequential tests of the ``n`` labelled rows against
what the champion's bundle states about its test split (``metadata.metrics``), either of which
sets ``degraded``:

- **MSE**: with squared errors ``d_i = (y_i - yhat_i)^2`` and the test RMSE ``r``, H0 is
  ``E[d] <= r^2`` and ``z = (mean(d) - r^2) / (sd(d) / sqrt(n))``. The sample standard deviation
  (not the test set's, nor the normal-errors ``sqrt(2) r^2``) keeps it honest for the skewed
  squared errors of integer labels: a high mean comes with a high spread, which damps the
  upper tail under H0 (``benchmarks/quality_alarms.py --known-sd`` measures the alternative).
- **Bias**: with signed errors ``e_i = y_i - yhat_i`` and the test bias ``b`` (mean of
  ``actual - predicted``, ``metrics["bias"]``), H0 is ``|E[e]| <= |b|`` and
  ``z_bias = (|mean(e)| - |b|) / (sd(e) / sqrt(n))``. The MSE is ``bias^2 + spread^2``: with the
  spread as at test time a larger bias is a larger MSE. Concept drift (same wines, other true
  qualities) moves the bias first, and the signed errors are light-tailed where the squared ones
  are heavy-tailed, so this test needs a fraction of the labels the MSE test needs for the same
  shift; the MSE test still catches errors that spread without a bias. A bundle that states no
  bias gets the MSE test alone, at the whole level.

Each test is re-run at every scrape as labels arrive, so a fixed-sample level would be spent
again and again (the benchmark's ``fixed`` rule). Each ``z`` is therefore compared with
Robbins' normal-mixture boundary ``z_boundary(n, level)``, which grows like ``sqrt(log n)`` and is
crossed at any label count with probability at most ``level`` under H0 (exactly so for one
version's growing window; once the window rolls the bound is approximate). The level ``alpha``
is split ``1 - BIAS_SHARE`` / ``BIAS_SHARE`` between the MSE and the bias test (Bonferroni: the
union fires with probability at most ``alpha``); the bias test gets the small share because its
power is to spare. ``benchmarks/quality_alarms.py`` measures the false-fire rate and the power.

The prediction-distribution statistic is the two-sample Kolmogorov-Smirnov distance between the
scores served recently and the model's scores on its bundle's reference sample (the rows the
drift detector compares inputs with), computed once per model load: the bundle carries no test
set, and the reference sample is the only labelled-distribution sample it has offline.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MIXTURE_LABELS: Final = 30.0
"""The boundary's mixture scale (in labels): small, so that the boundary is already tight at the
few hundred labels a degradation should be caught at."""
BIAS_SHARE: Final = 0.1
"""Share of ``alpha`` spent on the bias test (the rest on the MSE test) when the bundle states
its test bias."""
MIN_KS_ROWS: Final = 50
"""Fewer served scores than this give no distribution statistic (too noisy to plot)."""


@dataclass(frozen=True, slots=True)
class RealizedQuality:
    """Errors of the served scores against the labels, as ``regression_metrics`` names them."""

    labels: int
    rmse: float
    mae: float
    within_0_5: float
    within_1_0: float
    bias: float = math.nan
    """Mean of label - served score (positive: the model scores too low)."""


@dataclass(frozen=True, slots=True)
class DegradationTest:
    """The two one-sided tests of "the realized errors are worse than the champion's test
    errors" after ``labels`` rows (NaN where a test has no statistic)."""

    labels: int
    z: float
    """z of the realized MSE against the test MSE."""
    p_value: float
    """Fixed-sample one-sided p-value of z (for display: the decision uses ``z_threshold``)."""
    z_threshold: float
    degraded: bool
    bias_z: float = math.nan
    """z of the realized |bias| against the test |bias| (NaN: the bundle states no bias)."""
    bias_z_threshold: float = math.nan

    @property
    def reasons(self) -> tuple[str, ...]:
        """Which tests crossed their boundary (``rmse``, ``bias``), once ``degraded``."""
        if not self.degraded:
            return ()
        crossed = (("rmse", self.z, self.z_threshold), ("bias", self.bias_z, self.bias_z_threshold))
        return tuple(name for name, z, bound in crossed if z >= bound)


def realized_quality(actual: npt.ArrayLike, served: npt.ArrayLike) -> RealizedQuality:
    """RMSE, MAE, the share within 0.5 / 1.0 of the label and the bias (NaN without labels)."""
    y = np.asarray(actual, dtype=np.float64)
    yhat = np.asarray(served, dtype=np.float64)
    if y.size == 0:
        nan = math.nan
        return RealizedQuality(0, nan, nan, nan, nan, nan)
    signed = y - yhat
    err = np.abs(signed)
    return RealizedQuality(
        labels=int(y.size),
        rmse=float(np.sqrt(np.mean(err**2))),
        mae=float(np.mean(err)),
        within_0_5=float(np.mean(err <= 0.5)),
        within_1_0=float(np.mean(err <= 1.0)),
        bias=float(np.mean(signed)),
    )


def z_boundary(
    labels: int | npt.NDArray[np.int64], alpha: float, mixture_labels: float = MIXTURE_LABELS
) -> float | FloatArray:
    """The z the statistic must reach after ``labels`` rows (Robbins' normal-mixture boundary:
    crossed at any count with probability at most ``alpha`` under H0). Element-wise on arrays."""
    n = np.asarray(labels, dtype=np.float64)
    bound = np.sqrt(
        (1.0 + mixture_labels / n) * (np.log1p(n / mixture_labels) + 2.0 * math.log(1.0 / alpha))
    )
    return float(bound) if bound.ndim == 0 else bound


def _running_z(values: FloatArray, null: float, *, absolute: bool) -> FloatArray:
    """z of the mean of ``values[:n]`` above ``null`` (of ``|mean|`` above ``|null|`` when
    ``absolute``), standardized by the sample standard deviation, for every ``n``.

    Running sums of the values minus ``null`` (near zero under H0), so that the variance from
    them loses no precision. A zero spread (every value the same) lets the excess alone decide.
    """
    n = np.arange(1, values.size + 1, dtype=np.float64)
    centred = values - null
    s1 = np.cumsum(centred)
    s2 = np.cumsum(centred**2)
    mean = s1 / n
    excess = np.abs(mean + null) - abs(null) if absolute else mean
    z = np.full(values.size, np.nan)
    many = n >= 2
    var = np.maximum(s2[many] - s1[many] * mean[many], 0.0) / (n[many] - 1.0)
    # Rounding leaves a zero spread slightly above zero: below this it counts as zero.
    spread = var > (1e-9 * (np.abs(mean[many]) + abs(null) + 1.0)) ** 2
    ex = excess[many]
    flat = np.where(np.abs(ex) > 1e-12, np.copysign(np.inf, ex), 0.0)
    z[many] = np.where(spread, ex / np.sqrt(np.where(spread, var, 1.0) / n[many]), flat)
    return z


@dataclass(frozen=True, slots=True)
class DegradationPath:
    """The tests after each of the first ``n`` labels (index ``n - 1``), as the app would have
    exported them had it been scraped after every label."""

    z: FloatArray
    z_threshold: FloatArray
    bias_z: FloatArray
    bias_z_threshold: FloatArray
    degraded: npt.NDArray[np.bool_]

    def at(self, index: int) -> DegradationTest:
        z = float(self.z[index])
        p = 0.5 * math.erfc(z / math.sqrt(2.0)) if not math.isnan(z) else math.nan
        return DegradationTest(
            labels=index + 1,
            z=z,
            p_value=p,
            z_threshold=float(self.z_threshold[index]),
            degraded=bool(self.degraded[index]),
            bias_z=float(self.bias_z[index]),
            bias_z_threshold=float(self.bias_z_threshold[index]),
        )

    def first_degraded(self) -> int | None:
        """Label count at which the decision first says degraded, or None."""
        hits = np.flatnonzero(self.degraded)
        return int(hits[0]) + 1 if hits.size else None


def degradation_path(
    actual: npt.ArrayLike,
    served: npt.ArrayLike,
    test_rmse: float,
    test_bias: float | None = None,
    *,
    alpha: float,
    min_labels: int,
    mixture_labels: float = MIXTURE_LABELS,
) -> DegradationPath:
    """The decision after every prefix of the labelled rows: the rule, in one place."""
    signed = np.asarray(actual, dtype=np.float64) - np.asarray(served, dtype=np.float64)
    n = np.arange(1, signed.size + 1)
    mse_alpha = alpha if test_bias is None else alpha * (1.0 - BIAS_SHARE)
    z = _running_z(signed**2, test_rmse**2, absolute=False)
    bound = np.asarray(z_boundary(n, mse_alpha, mixture_labels), dtype=np.float64)
    enough = n >= max(min_labels, 2)
    degraded = enough & (z >= bound)
    if test_bias is None:
        bias_z = np.full(signed.size, np.nan)
        bias_bound = np.full(signed.size, np.nan)
    else:
        bias_z = _running_z(signed, test_bias, absolute=True)
        bias_bound = np.asarray(z_boundary(n, alpha * BIAS_SHARE, mixture_labels), dtype=np.float64)
        degraded |= enough & (bias_z >= bias_bound)
    return DegradationPath(z, bound, bias_z, bias_bound, degraded)


def degradation_test(
    actual: npt.ArrayLike,
    served: npt.ArrayLike,
    test_rmse: float,
    test_bias: float | None = None,
    *,
    alpha: float,
    min_labels: int,
    mixture_labels: float = MIXTURE_LABELS,
) -> DegradationTest:
    """The decision on all the labelled rows: degraded once either z crosses its boundary with
    at least ``min_labels`` labels."""
    path = degradation_path(
        actual,
        served,
        test_rmse,
        test_bias,
        alpha=alpha,
        min_labels=min_labels,
        mixture_labels=mixture_labels,
    )
    n = path.z.size
    if n < 2:
        return DegradationTest(n, math.nan, math.nan, math.nan, False)
    return path.at(n - 1)


def prediction_ks(served: FloatArray, reference: FloatArray) -> float:
    """Kolmogorov-Smirnov distance between served scores and the reference scores.

    The two-sample statistic (``scipy.stats.ks_2samp(...).statistic``, checked against it in
    the tests), computed with numpy: the app image has no scipy, and needs no p-value.
    """
    if served.size < MIN_KS_ROWS or reference.size == 0:
        return math.nan
    a, b = np.sort(served), np.sort(reference)
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / a.size
    cdf_b = np.searchsorted(b, pooled, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """Everything ``/metrics`` exports about the served model's realized quality."""

    model_version: str
    quality: RealizedQuality
    test: DegradationTest | None
    """None when the bundle states no test RMSE."""
    test_rmse: float | None
    test_bias: float | None = None


class QualityMonitor:
    """The last ``window`` (label, served score) pairs of the model version being served.

    Labels of other versions (a request answered before a hot swap) are stored by the feedback
    store under their own version but do not enter this window: they say nothing about the new
    model. Thread-safe: feedback appends from the event loop, the scrape reads a copy.
    """

    def __init__(self, window: int, *, alpha: float, min_labels: int) -> None:
        self.window = window
        self.alpha = alpha
        self.min_labels = min_labels
        self._version: str | None = None
        self._test_rmse: float | None = None
        self._test_bias: float | None = None
        self._pairs: deque[tuple[float, float]] = deque(maxlen=window)
        self._reference: FloatArray = np.empty(0)
        self._lock = threading.Lock()

    def use_model(
        self,
        version: str,
        test_rmse: float | None,
        labelled: Iterable[tuple[float, float]] = (),
        reference_scores: FloatArray | None = None,
        test_bias: float | None = None,
    ) -> None:
        """Start the window of a newly served version from its already stored labels
        (``test_rmse`` / ``test_bias``: what its bundle states about its test split)."""
        pairs: deque[tuple[float, float]] = deque(labelled, maxlen=self.window)
        with self._lock:
            self._version = version
            self._test_rmse = test_rmse
            self._test_bias = test_bias
            self._pairs = pairs
            self._reference = np.empty(0) if reference_scores is None else np.sort(reference_scores)

    @property
    def version(self) -> str | None:
        return self._version

    def observe(self, version: str, labels: Sequence[float], served: Sequence[float]) -> None:
        """Append labelled rows served by ``version`` (ignored unless it is the current one)."""
        with self._lock:
            if version == self._version:
                self._pairs.extend(zip(labels, served, strict=True))

    def snapshot(self) -> QualitySnapshot | None:
        with self._lock:
            version, test_rmse, test_bias = self._version, self._test_rmse, self._test_bias
            pairs = np.array(self._pairs, dtype=np.float64).reshape(-1, 2)
        if version is None:
            return None
        y, yhat = pairs[:, 0], pairs[:, 1]
        test = (
            degradation_test(
                y, yhat, test_rmse, test_bias, alpha=self.alpha, min_labels=self.min_labels
            )
            if test_rmse is not None
            else None
        )
        return QualitySnapshot(version, realized_quality(y, yhat), test, test_rmse, test_bias)

    def distribution_shift(self, served: FloatArray) -> float:
        """KS distance of ``served`` scores from the current model's reference scores."""
        with self._lock:
            reference = self._reference
        return prediction_ks(served, reference)
