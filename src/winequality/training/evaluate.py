"""The evaluate stage: test metrics and the per-row predictions table for ``dvc plots``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from winequality.contract import schema
from winequality.contract.features import postprocess
from winequality.training.dataset import check_frame, to_xy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS: Final[tuple[str, ...]] = ("rmse", "mae", "r2", "within_0_5", "within_1_0")
LOWER_IS_BETTER: Final[frozenset[str]] = frozenset({"rmse", "mae"})
"""The error metrics, the ones the promotion gate may compare (lower is better)."""


def regression_metrics(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, float]:
    """RMSE, MAE, R² and the share of predictions within ±0.5 and ±1.0 of the true score."""
    y = np.asarray(actual, dtype=np.float64).reshape(-1)
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise ValueError("cannot compute metrics on zero rows")
    if y.shape != p.shape:
        raise ValueError(f"{y.size} actual values but {p.size} predictions")
    error = np.abs(p - y)
    total = float(np.sum((y - y.mean()) ** 2))
    # R² is undefined for a constant target; NaN would poison the JSON metrics, 0.0 is the
    # score of the constant predictor in that case.
    r2 = 1.0 - float(np.sum(error**2)) / total if total > 0 else 0.0
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(error)),
        "r2": r2,
        "within_0_5": float(np.mean(error <= 0.5)),
        "within_1_0": float(np.mean(error <= 1.0)),
    }


def predict_quality(model: Any, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The served score: the model's prediction clipped to the quality scale."""
    x, _ = to_xy(frame)
    quality, _ = postprocess(model.predict(x))
    return quality.astype(np.float64)


def predictions_table(frame: pd.DataFrame, predicted: npt.ArrayLike) -> pd.DataFrame:
    """One row per wine: actual, predicted, residual (actual - predicted), wine_type."""
    actual = frame[schema.TARGET].to_numpy(dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    return pd.DataFrame(
        {
            "actual": actual,
            "predicted": np.round(p, 4),
            "residual": np.round(actual - p, 4),
            schema.WINE_TYPE: frame[schema.WINE_TYPE].astype(str).to_numpy(),
        }
    )


def evaluate_model(model: Any, test: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
    """Test metrics (overall and per wine type) and the predictions table."""
    check_frame(test, "test split")
    predicted = predict_quality(model, test)
    table = predictions_table(test, predicted)
    metrics = regression_metrics(table["actual"], predicted)
    for wine_type in schema.WINE_TYPES:
        rows = table[schema.WINE_TYPE] == wine_type
        if rows.any():
            subset = regression_metrics(table.loc[rows, "actual"], table.loc[rows, "predicted"])
            metrics[f"rmse_{wine_type}"] = subset["rmse"]
    return metrics, table


def mean_predictor_metrics(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Metrics of the baseline that always predicts the training mean (the bar to beat)."""
    check_frame(train, "train split")
    check_frame(test, "test split")
    mean = float(train[schema.TARGET].mean())
    return regression_metrics(test[schema.TARGET], np.full(len(test), mean))


def evaluation_report(
    model: Any, test: pd.DataFrame, train: pd.DataFrame | None
) -> tuple[dict[str, float | int], dict[str, float], pd.DataFrame]:
    """What the evaluate stage writes: (report with the mean-predictor baseline when ``train`` is
    given, the bare test scores, the per-row predictions table)."""
    scores, table = evaluate_model(model, test)
    report: dict[str, float | int] = dict(scores)
    if train is not None:
        baseline = mean_predictor_metrics(train, test)
        report |= {f"baseline_{k}": baseline[k] for k in ("rmse", "mae")}
    report["n_test"] = len(test)
    return report, scores, table


def plot_predictions(table: pd.DataFrame) -> Figure:
    """Predicted vs actual and residuals, side by side (for the MLflow UI)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    for wine_type, colour in zip(schema.WINE_TYPES, ("tab:red", "tab:olive"), strict=True):
        rows = table[schema.WINE_TYPE] == wine_type
        left.scatter(
            table.loc[rows, "actual"] + np.random.default_rng(0).uniform(-0.2, 0.2, rows.sum()),
            table.loc[rows, "predicted"],
            s=6,
            alpha=0.5,
            c=colour,
            label=wine_type,
        )
        right.scatter(
            table.loc[rows, "predicted"], table.loc[rows, "residual"], s=6, alpha=0.5, c=colour
        )
    lo, hi = float(table["actual"].min()) - 0.5, float(table["actual"].max()) + 0.5
    left.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    left.set(xlabel="actual quality (jittered)", ylabel="predicted quality")
    left.legend()
    right.axhline(0.0, color="grey", linewidth=1)
    right.set(xlabel="predicted quality", ylabel="residual (actual - predicted)")
    return fig
