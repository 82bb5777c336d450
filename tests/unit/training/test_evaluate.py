from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from winequality.contract import schema
from winequality.training.evaluate import (
    evaluate_model,
    mean_predictor_metrics,
    prediction_figures,
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
    assert m["bias"] == pytest.approx((0 - 0.4 - 1 + 2) / 4)  # actual - predicted
    total = np.sum((np.array([5, 6, 7, 5]) - 5.75) ** 2)
    assert m["r2"] == pytest.approx(1 - (0 + 0.16 + 1 + 4) / total)


def test_perfect_predictions_score_perfectly() -> None:
    m = regression_metrics([3, 9], [3, 9])
    assert m == {
        "rmse": 0.0,
        "mae": 0.0,
        "r2": 1.0,
        "within_0_5": 1.0,
        "within_1_0": 1.0,
        "bias": 0.0,
    }


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


def test_prediction_plots_span_the_whole_scale_with_the_identity_line_and_both_types() -> None:
    # A test split without 0-2 or 10 (as the real one): the axes still show the whole scale.
    frame = pd.DataFrame(
        {schema.TARGET: [3, 5, 6, 9, 5, 7], schema.WINE_TYPE: ["red"] * 3 + ["white"] * 3}
    )
    table = predictions_table(frame, [4.1, 5.2, 5.9, 6.8, 5.5, 6.0])
    figures = prediction_figures(table)
    assert set(figures) == {"predicted_vs_actual", "residuals"}

    (scatter,) = figures["predicted_vs_actual"].axes
    assert scatter.get_xlim() == scatter.get_ylim() == (-0.5, 10.5)
    identity = [line for line in scatter.get_lines() if line.get_label() == "y = x"]
    assert len(identity) == 1
    assert list(identity[0].get_xdata()) == list(identity[0].get_ydata())
    labels = [text.get_text() for text in scatter.get_legend().get_texts()]
    assert labels == ["y = x", "white (n=3)", "red (n=3)"]
    white, red = (points.get_facecolor()[0][:3] for points in scatter.collections)
    assert red[0] > 2 * red[2]  # claret
    assert min(white[:2]) > 0.8  # straw, visible on the white background

    (residuals,) = figures["residuals"].axes
    assert residuals.get_xlim() == (-0.5, 10.5)
    low, high = residuals.get_ylim()
    assert low == -high
    assert high >= 2.2  # the worst residual, 9 - 6.8, is inside the axis


def test_evaluate_model_refuses_a_test_split_without_target(
    small_splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from winequality.training.dataset import DatasetError

    with pytest.raises(DatasetError, match=r"missing column\(s\) \['quality'\]"):
        evaluate_model(None, small_splits[1].drop(columns=schema.TARGET))
