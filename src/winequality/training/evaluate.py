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
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

METRICS: Final[tuple[str, ...]] = ("rmse", "mae", "r2", "within_0_5", "within_1_0", "bias")
LOWER_IS_BETTER: Final[frozenset[str]] = frozenset({"rmse", "mae"})
"""The error metrics, the ones the promotion gate may compare (lower is better)."""


def regression_metrics(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, float]:
    """RMSE, MAE, R², the share of predictions within ±0.5 and ±1.0 of the true score, and the
    bias (mean of actual - predicted: the served app tests its labels' bias against it)."""
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
        "bias": float(np.mean(y - p)),
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


# Fill and edge per wine type: red wine in claret, white wine in straw (white would not show).
TYPE_COLOURS: Final[dict[str, tuple[str, str]]] = {
    "red": ("#9b1b30", "#5c0f1c"),
    "white": ("#f2d16b", "#9c7a12"),
}
# The whole quality scale, whatever the split holds: a plot cut at the highest score seen hides
# how a model treats the rare 3s and 9s.
QUALITY_LIMITS: Final = (schema.QUALITY_MIN - 0.5, schema.QUALITY_MAX + 0.5)
QUALITY_TICKS: Final = schema.QUALITY_CLASSES


def _scatter_by_type(ax: Axes, table: pd.DataFrame, x: pd.Series, y: str) -> None:
    # White first: the far more numerous whites would otherwise hide the reds.
    for wine_type in sorted(schema.WINE_TYPES, key=lambda t: t != "white"):
        rows = table[schema.WINE_TYPE] == wine_type
        colour, edge = TYPE_COLOURS[wine_type]
        ax.scatter(
            x[rows],
            table.loc[rows, y],
            s=12,
            alpha=0.6,
            c=colour,
            edgecolors=edge,
            linewidths=0.4,
            label=f"{wine_type} (n={int(rows.sum())})",
        )


def plot_predicted_vs_actual(table: pd.DataFrame) -> Figure:
    """Predicted against actual quality on the whole 0-10 scale, with the y = x line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    # Qualities are integers: a small jitter keeps the points of one score apart.
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(table))
    ax.plot(
        QUALITY_LIMITS, QUALITY_LIMITS, color="0.35", linestyle="--", linewidth=1, label="y = x"
    )
    _scatter_by_type(ax, table, table["actual"] + jitter, "predicted")
    ax.set(xlim=QUALITY_LIMITS, ylim=QUALITY_LIMITS, xticks=QUALITY_TICKS, yticks=QUALITY_TICKS)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set(
        xlabel="actual quality (jittered)",
        ylabel="predicted quality",
        title="Predicted vs actual quality (test split)",
    )
    ax.legend(loc="upper left")
    return fig


def plot_residuals(table: pd.DataFrame) -> Figure:
    """Residual (actual - predicted) against the prediction, symmetric around zero."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    worst = float(np.abs(table["residual"]).max()) if len(table) else 0.0
    limit = max(2.0, np.ceil(worst) + 0.5)
    ax.axhline(0.0, color="0.35", linestyle="--", linewidth=1, label="residual 0")
    _scatter_by_type(ax, table, table["predicted"], "residual")
    ax.set(xlim=QUALITY_LIMITS, xticks=QUALITY_TICKS, ylim=(-limit, limit))
    ax.grid(alpha=0.3)
    ax.set(
        xlabel="predicted quality",
        ylabel="residual (actual - predicted)",
        title="Residuals (test split)",
    )
    ax.legend(loc="upper left")
    return fig


def prediction_figures(table: pd.DataFrame) -> dict[str, Figure]:
    """The plots of the predictions table, by name (``<name>.png`` for DVC and MLflow)."""
    return {
        "predicted_vs_actual": plot_predicted_vs_actual(table),
        "residuals": plot_residuals(table),
    }


def write_prediction_plots(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``prediction_figures`` as PNG files in ``out_dir``: static images that ``dvc plots show``
    embeds as they are, with no JavaScript from a CDN."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in prediction_figures(table).items():
        path = out_dir / f"{name}.png"
        # No "Software" stamp: the file changes only when the plot does.
        fig.savefig(path, format="png", metadata={"Software": None})
        written.append(path)
    return written
