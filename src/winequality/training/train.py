"""The train stage: prepared training split -> tuned, fitted pipeline + cross-validation summary.

Pure with respect to MLflow: the fitted model and the figures go to files, and ``register`` is the
only place that talks to the tracking server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from winequality.params import TrainParams
from winequality.training.dataset import to_xy
from winequality.training.tune import build_pipeline, search_space, tune


@dataclass(frozen=True)
class TrainResult:
    model: Pipeline
    family: str
    best_params: dict[str, Any]
    cv_rmse_mean: float
    cv_rmse_std: float
    cv_results: pd.DataFrame
    n_train: int
    train_rmse: float
    """In-sample RMSE; next to the CV figure it shows how much the model overfits."""

    def summary(self, params: TrainParams) -> dict[str, Any]:
        """The ``metrics/train.json`` content (also read by ``register``)."""
        return {
            "family": self.family,
            "best_params": self.best_params,
            "cv_rmse_mean": self.cv_rmse_mean,
            "cv_rmse_std": self.cv_rmse_std,
            "cv_folds": params.cv_folds,
            "n_candidates": len(self.cv_results),
            "n_train": self.n_train,
            "train_rmse": self.train_rmse,
        }


def train_model(frame: pd.DataFrame, params: TrainParams, n_jobs: int = 2) -> TrainResult:
    """Search the grid of ``params.family`` by cross-validation and refit the best on ``frame``."""
    x, y = to_xy(frame)
    outcome = tune(
        build_pipeline(params.family, params.seed),
        search_space(params),
        x,
        y,
        folds=params.cv_folds,
        seed=params.seed,
        n_jobs=n_jobs,
    )
    fitted = np.asarray(outcome.model.predict(x), dtype=np.float64)
    return TrainResult(
        model=outcome.model,
        family=params.family,
        best_params=outcome.best_params,
        cv_rmse_mean=outcome.cv_rmse_mean,
        cv_rmse_std=outcome.cv_rmse_std,
        cv_results=outcome.cv_results,
        n_train=len(y),
        train_rmse=float(np.sqrt(np.mean((fitted - y) ** 2))),
    )


def save_model(model: Pipeline, path: Path) -> None:
    """joblib (pickle) file: the pipeline only ever loads files this project wrote itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)


def load_model(path: Path) -> Pipeline:
    """Load a pipeline written by ``save_model``; refuse anything that is not a fitted regressor."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file (run the train stage first)")
    model = joblib.load(path)
    if not isinstance(model, Pipeline) or not hasattr(model, "predict"):
        raise TypeError(f"{path}: expected a scikit-learn Pipeline, got {type(model).__name__}")
    return model
