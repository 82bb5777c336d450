from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.training.evaluate import (
    evaluate_model,
    mean_predictor_metrics,
    plot_predictions,
    predictions_table,
    regression_metrics,
)
from winequality.training.tune import build_pipeline


def test_regression_metrics_on_known_errors() -> None:
    m = regression_metrics([5, 6, 7, 5], [5.0, 6.4, 8.0, 3.0])
    assert m["mae"] == pytest.approx((0 + 0.4 + 1 + 2) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 0.16 + 1 + 4) / 4))
    assert m["within_0_5"] == 0.5
    assert m["within_1_0"] == 0.75
    total = np.sum((np.array([5, 6, 7, 5]) - 5.75) ** 2)
    assert m["r2"] == pytest.approx(1 - (0 + 0.16 + 1 + 4) / total)


def test_perfect_predictions_score_perfectly() -> None:
    m = regression_metrics([3, 9], [3, 9])
    assert m == {"rmse": 0.0, "mae": 0.0, "r2": 1.0, "within_0_5": 1.0, "within_1_0": 1.0}


def test_metrics_refuse_zero_rows_and_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="zero rows"):
        regression_metrics([], [])
    with pytest.raises(ValueError, match="3 actual values but 2 predictions"):
        regression_metrics([1, 2, 3], [1, 2])


def test_predictions_table_has_the_plot_columns() -> None:
    frame = pd.DataFrame({schema.TARGET: [5, 7], schema.WINE_TYPE: ["red", "white"]})
    table = predictions_table(frame, [5.5, 6.0])
    assert list(table.columns) == ["actual", "predicted", "residual", "wine_type"]
    assert table["residual"].tolist() == [-0.5, 1.0]


def test_evaluate_model_reports_per_wine_type_and_beats_the_mean(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from winequality.training.dataset import to_xy

    train, test = small_splits
    model = build_pipeline("elasticnet", 0).set_params(model__alpha=0.01).fit(*to_xy(train))
    metrics, table = evaluate_model(model, test)
    assert len(table) == len(test)
    assert {"rmse", "mae", "r2", "within_0_5", "within_1_0", "rmse_red", "rmse_white"} <= set(
        metrics
    )
    assert metrics["rmse"] < mean_predictor_metrics(train, test)["rmse"]
    assert plot_predictions(table).axes


def test_evaluate_model_refuses_a_test_split_without_target(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from winequality.training.dataset import DatasetError

    with pytest.raises(DatasetError, match=r"missing column\(s\) \['quality'\]"):
        evaluate_model(None, small_splits[1].drop(columns=schema.TARGET))
