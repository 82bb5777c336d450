"""The generator: deterministic, physically valid, and useful for learning the real relation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import ElasticNet
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from winequality.contract import schema
from winequality.data import synthetic
from winequality.data.ingest import read_uci_dir
from winequality.data.prepare import drop_duplicates, split


def matrix(frame: pd.DataFrame) -> np.ndarray:
    is_white = (frame[schema.WINE_TYPE] == "white").to_numpy(dtype=float)
    return np.column_stack([frame[list(schema.FEATURE_NAMES)].to_numpy(), is_white])


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return synthetic.generate(5000, seed=11)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = synthetic.write_uci_files(synthetic.generate(800, seed=3), tmp_path / "a")
    b = synthetic.write_uci_files(synthetic.generate(800, seed=3), tmp_path / "b")
    c = synthetic.write_uci_files(synthetic.generate(800, seed=4), tmp_path / "c")
    for wine_type in schema.WINE_TYPES:
        assert a[wine_type].read_bytes() == b[wine_type].read_bytes()
        assert a[wine_type].read_bytes() != c[wine_type].read_bytes()


def test_values_lie_within_the_physical_ranges(generated: pd.DataFrame) -> None:
    assert list(generated.columns) == list(schema.DATA_COLUMNS)
    for feature in schema.FEATURES:
        values = generated[feature.name]
        assert values.between(feature.minimum, feature.maximum).all(), feature.name
    assert generated[schema.TARGET].dtype == np.int64
    assert generated[schema.TARGET].between(schema.QUALITY_MIN, schema.QUALITY_MAX).all()
    assert set(generated[schema.WINE_TYPE]) == set(schema.WINE_TYPES)


def test_free_sulfur_dioxide_never_exceeds_the_total(generated: pd.DataFrame) -> None:
    assert (generated["free_sulfur_dioxide"] <= generated["total_sulfur_dioxide"]).all()


def test_marginals_and_type_shares_resemble_the_real_data(
    generated: pd.DataFrame, real_wines: pd.DataFrame
) -> None:
    red_share = (generated[schema.WINE_TYPE] == "red").mean()
    assert red_share == pytest.approx(1599 / 6497, abs=0.01)
    for wine_type in schema.WINE_TYPES:
        gen = generated[generated[schema.WINE_TYPE] == wine_type]
        real = real_wines[real_wines[schema.WINE_TYPE] == wine_type]
        for name in (*schema.FEATURE_NAMES, schema.TARGET):
            spread = real[name].quantile(0.9) - real[name].quantile(0.1)
            gap = abs(gen[name].median() - real[name].median())
            assert gap <= 0.1 * spread, (wine_type, name)


def test_rank_correlations_with_quality_follow_the_real_data(
    generated: pd.DataFrame, real_wines: pd.DataFrame
) -> None:
    for wine_type in schema.WINE_TYPES:
        cols = [*schema.FEATURE_NAMES, schema.TARGET]
        gen = generated.loc[generated[schema.WINE_TYPE] == wine_type, cols]
        real = real_wines.loc[real_wines[schema.WINE_TYPE] == wine_type, cols]
        gen_corr = gen.corr(method="spearman")[schema.TARGET]
        real_corr = real.corr(method="spearman")[schema.TARGET]
        assert (gen_corr - real_corr).abs().max() < 0.12, wine_type
        # Alcohol is the strongest single predictor in both wine types.
        assert gen_corr.drop(schema.TARGET).abs().idxmax() == "alcohol"


def test_a_linear_model_trained_on_generated_rows_predicts_real_wines(
    real_wines: pd.DataFrame,
) -> None:
    train = synthetic.generate(5000, seed=2024)
    unique, _ = drop_duplicates(real_wines)
    _, test = split(unique, test_size=0.2, seed=42)
    model = make_pipeline(StandardScaler(), ElasticNet(alpha=0.001, l1_ratio=0.5))
    model.fit(matrix(train), train[schema.TARGET])
    r2 = r2_score(test[schema.TARGET], model.predict(matrix(test)))
    assert r2 >= 0.15


def test_generated_files_use_the_uci_layout_and_read_back_identically(tmp_path: Path) -> None:
    frame = synthetic.generate(400, seed=5)
    paths = synthetic.write_uci_files(frame, tmp_path)
    header = paths["red"].read_text().splitlines()[0]
    assert header.startswith('"fixed acidity";"volatile acidity";')
    assert header.endswith('"alcohol";"quality"')
    back = read_uci_dir(tmp_path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False, atol=1e-9)


def test_embedded_statistics_are_those_of_the_real_files(real_wines: pd.DataFrame) -> None:
    embedded = synthetic.embedded_statistics()
    fresh = synthetic.summarise(real_wines)
    for wine_type in schema.WINE_TYPES:
        e, f = embedded[wine_type], fresh[wine_type]
        assert e.share == pytest.approx(f.share, abs=1e-6)
        assert e.quality_levels == f.quality_levels
        np.testing.assert_allclose(e.quality_probabilities, f.quality_probabilities, atol=1e-6)
        for column in e.quantiles:
            np.testing.assert_allclose(e.quantiles[column], f.quantiles[column], rtol=1e-5)
        np.testing.assert_allclose(e.correlation, f.correlation, atol=1e-4)


def test_rendered_statistics_parse_back(real_wines: pd.DataFrame) -> None:
    stats = synthetic.summarise(real_wines)
    parsed = synthetic.parse_statistics(synthetic.render_statistics(stats))
    assert parsed["white"].quality_levels == stats["white"].quality_levels
    assert len(parsed["red"].correlation) == len(synthetic.COPULA_COLUMNS)


def test_too_few_rows_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        synthetic.generate(1, seed=0)


def test_two_rows_give_one_wine_of_each_type() -> None:
    frame = synthetic.generate(2, seed=0)
    assert sorted(frame[schema.WINE_TYPE]) == ["red", "white"]
