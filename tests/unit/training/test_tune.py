from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from winequality.export.onnx import check_parity, export_onnx
from winequality.params import TrainParams
from winequality.training.dataset import to_xy
from winequality.training.tune import (
    FAMILIES,
    TREE_GRIDS,
    UnknownFamilyError,
    build_pipeline,
    search_space,
    snap_thresholds_to_float32,
    tune,
)


def test_unknown_family_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownFamilyError, match=r"'xgboost'.*elasticnet"):
        build_pipeline("xgboost", seed=0)


def test_params_refuse_an_unknown_family() -> None:
    with pytest.raises(ValidationError, match="family"):
        TrainParams(family="xgboost")  # type: ignore[arg-type]


def test_elasticnet_space_comes_from_the_params_grids() -> None:
    params = TrainParams(alpha_grid=[0.1, 1.0], l1_ratio_grid=[0.5])
    assert search_space(params) == {"model__alpha": [0.1, 1.0], "model__l1_ratio": [0.5]}


def test_without_search_the_fixed_alpha_and_l1_ratio_are_used() -> None:
    params = TrainParams(search=False, alpha=0.2, l1_ratio=0.3)
    assert search_space(params) == {"model__alpha": [0.2], "model__l1_ratio": [0.3]}


def test_empty_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        search_space(TrainParams(alpha_grid=[]))


@pytest.mark.parametrize("family", ["random_forest", "hist_gradient_boosting"])
def test_tree_families_without_search_use_one_point_per_parameter(family: str) -> None:
    space = search_space(TrainParams(family=family, search=False))  # type: ignore[arg-type]
    assert set(space) == set(TREE_GRIDS[family])
    assert all(len(values) == 1 for values in space.values())


def test_tune_reports_the_best_candidate_and_every_candidate(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    x, y = to_xy(small_splits[0])
    grid = {"model__alpha": [0.01, 10.0], "model__l1_ratio": [0.5]}
    outcome = tune(build_pipeline("elasticnet", 0), grid, x, y, folds=3, seed=0, n_jobs=1)
    # alpha=10 zeroes every coefficient (the mean predictor): it must lose.
    assert outcome.best_params == {"alpha": 0.01, "l1_ratio": 0.5}
    assert len(outcome.cv_results) == 2
    assert outcome.cv_results["rank"].tolist() == [1, 2]
    assert outcome.cv_rmse_mean == pytest.approx(outcome.cv_results["cv_rmse_mean"].iloc[0])
    assert outcome.cv_rmse_mean < outcome.cv_results["cv_rmse_mean"].iloc[1]


def test_tune_refuses_fewer_rows_than_folds() -> None:
    x = np.zeros((3, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="3 training rows cannot be split into 5 folds"):
        tune(build_pipeline("elasticnet", 0), {}, x, np.zeros(3), folds=5, seed=0, n_jobs=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_exports_to_onnx_within_the_parity_tolerance(
    family: str, small_splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = small_splits
    x, y = to_xy(train)
    model = build_pipeline(family, seed=0)
    if family == "random_forest":
        model.set_params(model__n_estimators=20)
    model = snap_thresholds_to_float32(model.fit(x, y))
    onnx_model = export_onnx(model)
    diff = check_parity(onnx_model, model, to_xy(test)[0], tolerance=1e-4)
    assert 0.0 <= diff <= 1e-4


def test_snapping_hgb_thresholds_keeps_sklearn_predictions_and_fixes_onnx_parity(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from winequality.export.onnx import ParityError

    train, test = small_splits
    model = build_pipeline("hist_gradient_boosting", seed=0).fit(*to_xy(train))
    x_test = to_xy(test)[0]
    with pytest.raises(ParityError):
        check_parity(export_onnx(model), model, x_test, tolerance=1e-4)
    before = model.predict(x_test)
    snap_thresholds_to_float32(model)
    assert np.array_equal(model.predict(x_test), before)
    assert check_parity(export_onnx(model), model, x_test, tolerance=1e-4) <= 1e-4
