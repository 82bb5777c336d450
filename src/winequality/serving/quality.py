"""Realized model quality from feedback labels joined to the predictions that were served.

Pure functions over (true quality, served score) pairs, and ``QualityMonitor``, which keeps the
rolling window of the labelled rows of the model being served. ``POST /feedback`` only appends to
the window (a deque append); the statistics are computed when ``/metrics`` is scraped, so neither
prediction nor feedback requests ever pay for them.

The degradation decision is a one-sided sequential test, not a threshold on a few rows. With
squared errors ``d_i = (y_i - yhat_i)^2`` of ``n`` labelled rows and the champion's test RMSE ``r``
(measured at training time, ``metadata.metrics["rmse"]``), H0 is ``E[d] <= r^2``, and
``z = (mean(d) - r^2) / (sd(d) / sqrt(n))`` is about standard normal at its boundary (central
limit theorem; the sample standard deviation of the squared errors, not the normal-errors
``sqrt(2) r^2``, keeps it honest for the heavy-tailed residuals of integer labels). The window is
re-tested at every scrape as labels arrive, so a fixed-sample level would be spent again and
again: a stream of labels exactly as good as the test set, tested after each label, crosses a
fixed ``p < alpha`` somewhere in its first thousands of labels far more often than ``alpha``
(``benchmarks/quality_alarms.py --fixed``). ``z`` is therefore
compared with Robbins' normal-mixture boundary ``z_boundary(n, alpha)``, which grows like
``sqrt(log n)`` and is crossed at any label count with probability at most ``alpha`` under H0
(exactly so for one version's growing window; once the window rolls the bound is approximate).
``benchmarks/quality_alarms.py`` measures the false-fire rate and the power for the defaults.

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
"""Label count at which the sequential boundary is tightest relative to a fixed-sample test
(the mixture's prior scale): near the few hundred labels a degradation should be caught at."""
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


@dataclass(frozen=True, slots=True)
class DegradationTest:
    """One-sided test of "the realized MSE exceeds the champion's test MSE"."""

    labels: int
    z: float
    p_value: float
    """Fixed-sample one-sided p-value of z (for display: the decision uses ``z_threshold``)."""
    z_threshold: float
    degraded: bool


def realized_quality(actual: npt.ArrayLike, served: npt.ArrayLike) -> RealizedQuality:
    """RMSE, MAE and the share within 0.5 / 1.0 of the label (NaN without labels)."""
    y = np.asarray(actual, dtype=np.float64)
    yhat = np.asarray(served, dtype=np.float64)
    if y.size == 0:
        nan = math.nan
        return RealizedQuality(0, nan, nan, nan, nan)
    err = np.abs(y - yhat)
    return RealizedQuality(
        labels=int(y.size),
        rmse=float(np.sqrt(np.mean(err**2))),
        mae=float(np.mean(err)),
        within_0_5=float(np.mean(err <= 0.5)),
        within_1_0=float(np.mean(err <= 1.0)),
    )


def z_boundary(labels: int, alpha: float, mixture_labels: float = MIXTURE_LABELS) -> float:
    """The z the realized squared errors must reach after ``labels`` rows (Robbins' one-sided
    normal-mixture boundary: crossed at any count with probability at most ``alpha`` while the
    realized MSE is the test MSE)."""
    n = float(labels)
    growth = 1.0 + mixture_labels / n
    return math.sqrt(growth * (math.log1p(n / mixture_labels) + 2.0 * math.log(1.0 / alpha)))


def degradation_test(
    actual: npt.ArrayLike,
    served: npt.ArrayLike,
    test_rmse: float,
    *,
    alpha: float,
    min_labels: int,
    mixture_labels: float = MIXTURE_LABELS,
) -> DegradationTest:
    """z (and its fixed-sample p-value) of the squared errors against ``test_rmse**2``;
    degraded once z crosses ``z_boundary`` with at least ``min_labels`` labels."""
    y = np.asarray(actual, dtype=np.float64)
    d = (y - np.asarray(served, dtype=np.float64)) ** 2
    n = int(d.size)
    if n < 2:
        return DegradationTest(n, math.nan, math.nan, math.nan, False)
    excess = float(d.mean()) - test_rmse**2
    se = float(d.std(ddof=1)) / math.sqrt(n)
    # se is 0 only when every squared error is the same: then the excess alone decides.
    z = excess / se if se > 0.0 else (math.copysign(math.inf, excess) if excess else 0.0)
    p = 0.5 * math.erfc(z / math.sqrt(2.0))
    bound = z_boundary(n, alpha, mixture_labels)
    return DegradationTest(n, z, p, bound, n >= min_labels and z >= bound)


def prediction_ks(served: FloatArray, reference: FloatArray) -> float:
    """Kolmogorov-Smirnov distance between served scores and the reference scores."""
    from scipy.stats import ks_2samp

    if served.size < MIN_KS_ROWS or reference.size == 0:
        return math.nan
    return float(ks_2samp(served, reference).statistic)


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """Everything ``/metrics`` exports about the served model's realized quality."""

    model_version: str
    quality: RealizedQuality
    test: DegradationTest | None
    """None when the bundle states no test RMSE."""
    test_rmse: float | None


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
        self._pairs: deque[tuple[float, float]] = deque(maxlen=window)
        self._reference: FloatArray = np.empty(0)
        self._lock = threading.Lock()

    def use_model(
        self,
        version: str,
        test_rmse: float | None,
        labelled: Iterable[tuple[float, float]] = (),
        reference_scores: FloatArray | None = None,
    ) -> None:
        """Start the window of a newly served version from its already stored labels."""
        pairs: deque[tuple[float, float]] = deque(labelled, maxlen=self.window)
        with self._lock:
            self._version = version
            self._test_rmse = test_rmse
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
            version, test_rmse = self._version, self._test_rmse
            pairs = np.array(self._pairs, dtype=np.float64).reshape(-1, 2)
        if version is None:
            return None
        y, yhat = pairs[:, 0], pairs[:, 1]
        test = (
            degradation_test(y, yhat, test_rmse, alpha=self.alpha, min_labels=self.min_labels)
            if test_rmse is not None
            else None
        )
        return QualitySnapshot(version, realized_quality(y, yhat), test, test_rmse)

    def distribution_shift(self, served: FloatArray) -> float:
        """KS distance of ``served`` scores from the current model's reference scores."""
        with self._lock:
            reference = self._reference
        return prediction_ks(served, reference)
