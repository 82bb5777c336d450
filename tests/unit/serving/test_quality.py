"""Realized quality, its one-sided degradation tests (MSE and bias), the KS statistic and the
monitor's window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from winequality.serving.quality import (
    BIAS_SHARE,
    QualityMonitor,
    degradation_path,
    degradation_test,
    prediction_ks,
    realized_quality,
    z_boundary,
)


def test_realized_quality_matches_hand_computed_errors() -> None:
    q = realized_quality([5, 6, 7, 4], [5.2, 6.6, 5.5, 4.0])
    errors = np.array([0.2, 0.6, 1.5, 0.0])
    assert q.labels == 4
    assert q.rmse == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert q.mae == pytest.approx(errors.mean())
    assert q.within_0_5 == pytest.approx(0.5)
    assert q.within_1_0 == pytest.approx(0.75)
    assert q.bias == pytest.approx(np.mean([-0.2, -0.6, 1.5, 0.0]))


def test_no_labels_give_nan_quality_and_no_decision() -> None:
    q = realized_quality([], [])
    assert q.labels == 0
    assert math.isnan(q.rmse)
    test = degradation_test([], [], 0.7, alpha=0.02, min_labels=10)
    assert not test.degraded
    assert math.isnan(test.p_value)


def _errors(rng: np.random.Generator, n: int, sd: float) -> tuple[np.ndarray, np.ndarray]:
    served = rng.uniform(4, 7, n)
    return served + rng.normal(0, sd, n), served


def test_errors_as_large_as_the_test_rmse_are_not_significant() -> None:
    y, served = _errors(np.random.default_rng(1), 5_000, 0.7)
    test = degradation_test(y, served, 0.7, alpha=0.02, min_labels=200)
    assert not test.degraded
    assert test.p_value > 0.02


def test_clearly_larger_errors_are_significant_with_enough_labels() -> None:
    y, served = _errors(np.random.default_rng(2), 500, 0.9)
    test = degradation_test(y, served, 0.7, alpha=0.02, min_labels=200)
    assert test.degraded
    assert test.z >= test.z_threshold
    assert test.p_value == pytest.approx(0.5 * math.erfc(test.z / math.sqrt(2)))


def test_few_labels_never_fire_however_bad() -> None:
    y, served = _errors(np.random.default_rng(3), 50, 3.0)
    test = degradation_test(y, served, 0.7, alpha=0.02, min_labels=200)
    assert test.p_value < 0.02
    assert not test.degraded


def test_the_test_statistic_is_the_standardized_excess_of_the_squared_errors() -> None:
    y = np.array([1.0, 2.0, 0.0, 3.0])
    served = np.zeros(4)
    d = y**2
    z = (d.mean() - 0.5**2) / (d.std(ddof=1) / 2)
    assert degradation_test(y, served, 0.5, alpha=0.05, min_labels=2).z == pytest.approx(z)


def test_constant_errors_decide_on_the_excess_alone() -> None:
    worse = degradation_test([6, 6, 6], [5, 5, 5], 0.5, alpha=0.02, min_labels=2)
    better = degradation_test([6, 6, 6], [5, 5, 5], 2.0, alpha=0.02, min_labels=2)
    assert worse.z == math.inf
    assert worse.degraded
    assert better.z == -math.inf
    assert not better.degraded


def test_ks_is_zero_for_the_same_scores_and_large_for_shifted_ones() -> None:
    reference = np.random.default_rng(4).normal(5.8, 0.5, 1000)
    assert prediction_ks(reference.copy(), reference) == 0.0
    assert prediction_ks(reference + 1.0, reference) > 0.6
    assert math.isnan(prediction_ks(reference[:10], reference))


def test_ks_is_scipys_two_sample_statistic_ties_included() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(5)
    for served, reference in [
        (rng.normal(5.8, 0.5, 300), rng.normal(5.9, 0.6, 1000)),
        (rng.integers(3, 9, 400).astype(float), rng.integers(4, 8, 700).astype(float)),
    ]:
        expected = ks_2samp(served, reference).statistic
        assert prediction_ks(served, reference) == pytest.approx(expected, abs=1e-12)


def test_monitor_window_keeps_the_latest_labels_of_the_served_version_only() -> None:
    monitor = QualityMonitor(3, alpha=0.02, min_labels=2)
    assert monitor.snapshot() is None
    monitor.use_model("1", 0.7, labelled=[(5.0, 5.0), (6.0, 5.0)])
    monitor.observe("1", [7.0, 7.0], [7.0, 6.0])
    monitor.observe("0", [9.0], [1.0])  # a label of a request answered by the previous model
    snap = monitor.snapshot()
    assert snap is not None
    assert snap.model_version == "1"
    assert snap.quality.labels == 3  # the oldest of four dropped, version 0's ignored
    assert snap.quality.rmse == pytest.approx(math.sqrt(2 / 3))
    assert snap.test is not None
    assert snap.test_rmse == 0.7


def test_monitor_of_a_bundle_without_test_rmse_exports_no_test() -> None:
    monitor = QualityMonitor(10, alpha=0.02, min_labels=2)
    monitor.use_model("local", None)
    snap = monitor.snapshot()
    assert snap is not None
    assert snap.test is None


def test_a_new_version_starts_its_own_window() -> None:
    monitor = QualityMonitor(10, alpha=0.02, min_labels=2)
    monitor.use_model("1", 0.7)
    monitor.observe("1", [9.0, 9.0], [5.0, 5.0])
    monitor.use_model("2", 0.7)
    snap = monitor.snapshot()
    assert snap is not None
    assert snap.quality.labels == 0


def test_the_sequential_boundary_grows_with_many_labels_and_a_smaller_alpha() -> None:
    bounds = [z_boundary(n, 0.02) for n in (1_000, 5_000, 50_000, 500_000)]
    assert bounds == sorted(bounds)
    assert z_boundary(500, 1e-3) > z_boundary(500, 0.02)
    # Stricter than a fixed-sample test at the same level, which re-testing would overspend.
    assert z_boundary(500, 0.02) > 2.054  # the one-sided 2 % normal quantile


def test_the_boundary_is_robbins_normal_mixture() -> None:
    n, alpha, rho = 400, 0.02, 30.0
    expected = math.sqrt((1 + rho / n) * (math.log(1 + n / rho) + 2 * math.log(1 / alpha)))
    assert z_boundary(n, alpha, rho) == pytest.approx(expected)


def test_a_z_under_the_boundary_is_not_degraded_even_when_its_fixed_p_is_small() -> None:
    rng = np.random.default_rng(6)
    for _ in range(200):
        y, served = _errors(rng, 400, 0.75)
        test = degradation_test(y, served, 0.7, alpha=0.02, min_labels=200)
        if 2.33 < test.z < test.z_threshold:  # p < 1 %, yet not past the boundary
            assert not test.degraded
            return
    pytest.fail("no stream landed between the fixed and the sequential threshold")


def test_a_shift_of_the_labels_fires_the_bias_test_long_before_the_mse_test() -> None:
    rng = np.random.default_rng(7)
    y, served = _errors(rng, 200, 0.7)
    shifted = y + 0.5  # concept drift: the same wines, true quality higher
    test = degradation_test(shifted, served, 0.7, 0.0, alpha=1e-3, min_labels=200)
    assert test.degraded
    assert test.reasons == ("bias",)
    assert test.bias_z > 1.5 * test.bias_z_threshold
    assert test.z < test.z_threshold


def test_the_bias_test_is_two_sided_in_the_error_and_relative_to_the_test_bias() -> None:
    rng = np.random.default_rng(8)
    y, served = _errors(rng, 400, 0.7)
    lower = degradation_test(y - 0.5, served, 0.9, 0.0, alpha=1e-3, min_labels=200)
    assert lower.degraded
    assert lower.reasons == ("bias",)
    # A model that was as biased on its test split is not degraded by that bias.
    as_tested = degradation_test(y + 0.5, served, 0.9, 0.5, alpha=1e-3, min_labels=200)
    assert not as_tested.degraded
    assert as_tested.bias_z < as_tested.bias_z_threshold


def test_errors_that_spread_without_a_bias_fire_the_mse_test_only() -> None:
    rng = np.random.default_rng(9)
    y, served = _errors(rng, 500, 1.2)
    test = degradation_test(y, served, 0.7, 0.0, alpha=1e-3, min_labels=200)
    assert test.reasons == ("rmse",)


def test_the_level_is_split_between_the_tests_only_when_the_bias_is_known() -> None:
    y, served = _errors(np.random.default_rng(10), 300, 0.7)
    alone = degradation_test(y, served, 0.7, alpha=1e-3, min_labels=200)
    both = degradation_test(y, served, 0.7, 0.0, alpha=1e-3, min_labels=200)
    assert alone.z_threshold == pytest.approx(z_boundary(300, 1e-3))
    assert math.isnan(alone.bias_z)
    assert both.z_threshold == pytest.approx(z_boundary(300, 1e-3 * (1 - BIAS_SHARE)))
    assert both.bias_z_threshold == pytest.approx(z_boundary(300, 1e-3 * BIAS_SHARE))


def test_the_path_is_the_test_of_every_prefix() -> None:
    y, served = _errors(np.random.default_rng(11), 300, 0.8)
    path = degradation_path(y + 0.3, served, 0.7, 0.05, alpha=0.02, min_labels=50)
    for n in (2, 49, 50, 120, 300):
        test = degradation_test(y[:n] + 0.3, served[:n], 0.7, 0.05, alpha=0.02, min_labels=50)
        at = path.at(n - 1)
        assert at.labels == test.labels == n
        assert at.z == pytest.approx(test.z)
        assert at.bias_z == pytest.approx(test.bias_z)
        assert at.degraded == test.degraded
    first = path.first_degraded()
    assert first is not None
    assert first >= 50
    assert not path.degraded[: first - 1].any()


def test_the_statistics_match_the_two_pass_formulas() -> None:
    rng = np.random.default_rng(12)
    y, served = _errors(rng, 1000, 0.7)
    y = y + 100.0  # far from zero: running sums must not lose the spread
    served = served + 100.0
    e = y - served + 0.1
    test = degradation_test(e + served, served, 0.72, -0.03, alpha=0.02, min_labels=2)
    d = e**2
    assert test.z == pytest.approx((d.mean() - 0.72**2) / (d.std(ddof=1) / math.sqrt(1000)))
    bias_z = (abs(e.mean()) - 0.03) / (e.std(ddof=1) / math.sqrt(1000))
    assert test.bias_z == pytest.approx(bias_z)


def test_the_monitor_tests_the_bias_its_bundle_states() -> None:
    monitor = QualityMonitor(1000, alpha=1e-3, min_labels=200)
    monitor.use_model("1", 0.7, test_bias=0.0)
    y, served = _errors(np.random.default_rng(13), 300, 0.7)
    monitor.observe("1", list(y + 0.5), list(served))
    snap = monitor.snapshot()
    assert snap is not None
    assert snap.test_bias == 0.0
    assert snap.test is not None
    assert snap.test.degraded
    assert snap.quality.bias == pytest.approx(0.5, abs=0.15)
