"""The KS/chi-squared detector: agreement with scipy, corrections, edge cases, real-data quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from drift_data import REFERENCE_ROWS, RedSplit
from scipy import stats

from winequality.contract import schema
from winequality.contract.parsers import frame_rows
from winequality.monitoring.detector import (
    TEST_NAMES,
    ReferenceSampleError,
    build_reference,
    correct,
    detect,
    detect_frame,
    ks_p_values,
    ks_statistics,
    load_reference,
    reference_from_frame,
    wine_type_test,
)
from winequality.params import DriftParams, load_params

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("n_ref", "n_win"), [(1000, 200), (57, 200), (300, 3)])
def test_ks_statistics_and_p_values_match_scipy_with_ties(n_ref: int, n_win: int) -> None:
    rng = np.random.default_rng(n_ref + n_win)
    # Rounded values create many ties within and across the samples, the tricky case.
    reference = np.round(rng.normal(0, 1, (n_ref, 5)), 1)
    window = np.round(rng.normal(0.2, 1.3, (n_win, 5)), 1)
    d = ks_statistics(np.sort(reference, axis=0), window)
    p = ks_p_values(d, n_ref, n_win)
    for j in range(5):
        expected = stats.ks_2samp(reference[:, j], window[:, j], method="asymp")
        assert d[j] == pytest.approx(expected.statistic, abs=1e-12)
        assert p[j] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_ks_matches_scipy_on_real_wines(red_split: RedSplit) -> None:
    window = red_split.white.sample(200, random_state=3)
    features, _ = frame_rows(window)
    d = ks_statistics(red_split.reference.sorted_features, features)
    for j, name in enumerate(schema.FEATURE_NAMES):
        expected = stats.ks_2samp(
            red_split.reference_frame[name].to_numpy(), window[name].to_numpy(), method="asymp"
        )
        assert d[j] == pytest.approx(expected.statistic, abs=1e-12), name


def test_identical_samples_have_zero_distance_and_p_value_one() -> None:
    values = np.arange(50, dtype=np.float64).reshape(25, 2)
    d = ks_statistics(np.sort(values, axis=0), values)
    assert d.tolist() == [0.0, 0.0]
    assert ks_p_values(d, 25, 25).tolist() == [1.0, 1.0]


def test_wine_type_one_category_in_both_samples_is_no_evidence() -> None:
    distance, p = wine_type_test(np.array([1000, 0]), np.array([200, 0]))
    assert (distance, p) == (0.0, 1.0)


def test_wine_type_disjoint_categories_are_maximal_drift() -> None:
    distance, p = wine_type_test(np.array([1000, 0]), np.array([0, 200]))
    assert distance == 1.0
    assert p < 1e-100


def test_wine_type_matches_chi2_contingency_when_both_types_present() -> None:
    ref, win = np.array([700, 300]), np.array([100, 100])
    distance, p = wine_type_test(ref, win)
    assert distance == pytest.approx(0.2)
    assert p == pytest.approx(stats.chi2_contingency(np.vstack((ref, win))).pvalue)


def test_bonferroni_divides_the_level_by_the_number_of_tests() -> None:
    p = np.array([0.01, 0.004, 0.5, 0.9])
    significant, threshold = correct(p, 0.05, "bonferroni")
    assert threshold == pytest.approx(0.0125)
    assert significant.tolist() == [True, True, False, False]


def test_fdr_agrees_with_benjamini_hochberg_step_up_rule() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        p = rng.uniform(0, 0.2, 12) ** 2
        significant, threshold = correct(p, 0.05, "fdr")
        ranks = np.arange(1, 13)
        below = np.sort(p) < 0.05 * ranks / 12
        assert significant.any() == below.any()
        if below.any():
            assert threshold == pytest.approx(0.05 * ranks[below].max() / 12)
            assert set(np.nonzero(significant)[0]) == set(np.nonzero(p <= threshold)[0])
        else:
            assert threshold == pytest.approx(0.05 / 12)


def test_fdr_is_less_conservative_than_bonferroni() -> None:
    p = np.array([0.02, 0.025, 0.03, 0.5])
    assert not correct(p, 0.05, "bonferroni")[0].any()
    assert correct(p, 0.05, "fdr")[0][:3].all()


def test_unknown_correction_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown correction 'holm'"):
        correct(np.array([0.1]), 0.05, "holm")


def test_result_reports_all_tests_thresholds_and_sizes(red_split: RedSplit) -> None:
    params = DriftParams(p_val=0.05, correction="bonferroni")
    result = detect_frame(red_split.reference, red_split.white.sample(200, random_state=1), params)
    assert result.is_drift
    assert list(result.p_values) == list(TEST_NAMES) == list(result.distances)
    assert result.threshold == 0.05
    assert result.corrected_threshold == pytest.approx(0.05 / 12)
    assert (result.window_size, result.reference_size) == (200, 1000)
    assert "wine_type" in result.drifted
    assert all(result.p_values[n] < result.corrected_threshold for n in result.drifted)


def _flag_rates(red: pd.DataFrame, white: pd.DataFrame, params: DriftParams) -> tuple[int, int]:
    """Flagged windows out of 100 for white windows and for held-out red windows.

    Every trial draws a fresh random split of the red wines: 1000 reference rows and a window
    of held-out rows disjoint from them. Windows cut from one fixed held-out pool would overlap
    heavily and share that one split's luck (their false-positive count swings from 0 to 9
    depending on the split), which measures the split, not the detector.
    """
    red_x, red_white = frame_rows(red)
    white_x, white_white = frame_rows(white)
    rng = np.random.default_rng(20240601)
    n = params.window_size
    white_flags = red_flags = 0
    for _ in range(100):
        perm = rng.permutation(len(red_x))
        ref_rows, held_rows = perm[:REFERENCE_ROWS], perm[REFERENCE_ROWS : REFERENCE_ROWS + n]
        reference = build_reference(red_x[ref_rows], red_white[ref_rows])
        whites = rng.choice(len(white_x), size=n, replace=False)
        white_flags += detect(reference, white_x[whites], white_white[whites], params).is_drift
        red_flags += detect(reference, red_x[held_rows], red_white[held_rows], params).is_drift
    return white_flags, red_flags


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_real_data_white_windows_flagged_held_out_red_windows_not(
    real_wines: pd.DataFrame, correction: str
) -> None:
    params = DriftParams(window_size=200, p_val=0.05, correction=correction)  # type: ignore[arg-type]
    red = real_wines[real_wines[schema.WINE_TYPE] == "red"]
    white = real_wines[real_wines[schema.WINE_TYPE] == "white"]
    white_rate, red_rate = _flag_rates(red, white, params)
    print(f"{correction}: white flagged {white_rate}/100, held-out red flagged {red_rate}/100")
    assert white_rate >= 99
    assert red_rate <= 5


def test_white_windows_are_flagged_on_measurements_alone(red_split: RedSplit) -> None:
    # Without the wine_type column the measurements still tell the two wines apart.
    params = DriftParams()
    result = detect_frame(red_split.reference, red_split.white.sample(200, random_state=5), params)
    assert set(result.drifted) - {"wine_type"}


def test_window_of_one_row_is_refused(red_split: RedSplit) -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        detect(red_split.reference, np.ones((1, 11)), np.array([False]), DriftParams())


def test_reference_needs_two_rows() -> None:
    with pytest.raises(ReferenceSampleError, match="at least 2 rows"):
        build_reference(np.ones((1, 11)), np.array([False]))


def test_missing_reference_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReferenceSampleError, match="not found"):
        load_reference(tmp_path / "nope.parquet")


def test_reference_without_a_feature_column_is_refused(red_split: RedSplit, tmp_path: Path) -> None:
    path = tmp_path / "reference.parquet"
    red_split.reference_frame.drop(columns=["alcohol"]).to_parquet(path)
    with pytest.raises(ReferenceSampleError, match="alcohol: missing column"):
        load_reference(path)


def test_reference_loaded_from_parquet_equals_in_memory(reference_parquet: Path) -> None:
    loaded = load_reference(reference_parquet)
    direct = reference_from_frame(pd.read_parquet(reference_parquet))
    np.testing.assert_array_equal(loaded.sorted_features, direct.sorted_features)
    assert loaded.type_counts.tolist() == [1000, 0]
    assert loaded.source == str(reference_parquet)


def test_params_yaml_has_the_drift_block() -> None:
    drift = load_params(ROOT / "params.yaml").drift
    assert drift == DriftParams(window_size=200, p_val=0.05, correction="bonferroni")


def test_kept_p_values_are_those_computed_afresh() -> None:
    # The cache must not change a single bit: same statistic, same kstwo.sf value.
    rng = np.random.default_rng(5)
    for n_ref, n_win in [(1000, 200), (1000, 37), (57, 200)]:
        effective_n = np.round(n_ref * n_win / (n_ref + n_win))
        for _ in range(20):
            d = rng.integers(0, n_ref * n_win + 1, 11) / (n_ref * n_win)
            fresh = np.clip(stats.kstwo.sf(d, effective_n), 0.0, 1.0)
            assert ks_p_values(d, n_ref, n_win).tolist() == fresh.tolist()
            assert ks_p_values(d[::-1], n_ref, n_win).tolist() == fresh[::-1].tolist()


def test_the_kept_wine_type_test_is_the_one_computed_afresh() -> None:
    for white in (0, 1, 17, 100, 199, 200):
        win = np.array([200 - white, white])
        for ref in (np.array([700, 300]), np.array([1000, 0]), np.array([0, 1000])):
            first, again = wine_type_test(ref, win), wine_type_test(ref.copy(), win.copy())
            assert first == again
            table = np.vstack((ref, win))
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] == 2:
                assert first[1] == float(stats.chi2_contingency(table).pvalue)


def test_ks_statistics_match_scipy_over_many_sizes_and_ties() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        n_ref, n_win = (int(n) for n in rng.integers(1, 120, 2))
        decimals = int(rng.integers(0, 3))
        reference = np.round(rng.normal(0, 1, (n_ref, 3)), decimals)
        window = np.round(rng.normal(rng.normal(0, 0.7), 1, (n_win, 3)), decimals)
        d = ks_statistics(np.sort(reference, axis=0), window)
        for j in range(3):
            expected = stats.ks_2samp(reference[:, j], window[:, j], method="asymp").statistic
            assert d[j] == pytest.approx(expected, abs=1e-12), (n_ref, n_win, decimals)
