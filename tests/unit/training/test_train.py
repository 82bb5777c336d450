from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.contract.features import FeatureError
from winequality.params import TrainParams
from winequality.training.dataset import DatasetError, read_split
from winequality.training.train import load_model, save_model, train_model

FAST = TrainParams(alpha_grid=[0.01, 0.1], l1_ratio_grid=[0.5, 1.0], cv_folds=3)


def test_train_model_fits_the_best_candidate_on_the_12_model_columns(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    result = train_model(small_splits[0], FAST, n_jobs=1)
    assert result.model.n_features_in_ == schema.N_MODEL_COLUMNS
    assert set(result.best_params) == {"alpha", "l1_ratio"}
    assert len(result.cv_results) == 4
    assert result.n_train == 600
    summary = result.summary(FAST)
    assert summary["family"] == "elasticnet"
    assert summary["cv_folds"] == 3
    assert 0.5 < summary["cv_rmse_mean"] < 0.9


def test_train_model_is_reproducible_for_a_seed(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    params = TrainParams(family="random_forest", search=False, cv_folds=2)
    first = train_model(small_splits[0].head(200), params, n_jobs=1)
    second = train_model(small_splits[0].head(200), params, n_jobs=1)
    x = np.asarray(first.model.predict(np.zeros((1, 12), dtype=np.float32)))
    assert first.cv_rmse_mean == second.cv_rmse_mean
    assert np.array_equal(x, second.model.predict(np.zeros((1, 12), dtype=np.float32)))


def test_train_model_refuses_an_empty_frame() -> None:
    empty = pd.DataFrame(columns=list(schema.DATA_COLUMNS))
    with pytest.raises(DatasetError, match="no rows"):
        train_model(empty, FAST, n_jobs=1)


def test_train_model_names_a_missing_column(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['alcohol'\]"):
        train_model(small_splits[0].drop(columns="alcohol"), FAST, n_jobs=1)


def test_train_model_names_the_row_with_an_impossible_value(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frame = small_splits[0].copy()
    frame.loc[7, "ph"] = 15.0
    with pytest.raises(FeatureError, match="row 7, ph"):
        train_model(frame, FAST, n_jobs=1)


def test_train_model_names_the_row_with_a_missing_target(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frame = small_splits[0].copy()
    frame[schema.TARGET] = frame[schema.TARGET].astype(float)
    frame.loc[3, schema.TARGET] = np.nan
    with pytest.raises(DatasetError, match="row 3, quality"):
        train_model(frame, FAST, n_jobs=1)


def test_read_split_of_a_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.parquet: no such file"):
        read_split(tmp_path / "nope.parquet")


def test_saved_model_loads_and_predicts_the_same(
    tmp_path: Path, small_splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    result = train_model(small_splits[0], FAST, n_jobs=1)
    path = tmp_path / "models" / "model.pkl"
    save_model(result.model, path)
    x = np.ones((2, 12), dtype=np.float32)
    assert np.array_equal(load_model(path).predict(x), result.model.predict(x))


def test_load_model_refuses_what_is_not_a_pipeline(tmp_path: Path) -> None:
    import joblib

    joblib.dump({"not": "a model"}, tmp_path / "model.pkl")
    with pytest.raises(TypeError, match="expected a scikit-learn Pipeline, got dict"):
        load_model(tmp_path / "model.pkl")


def test_load_model_of_a_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model.pkl: no such model file"):
        load_model(tmp_path / "model.pkl")
