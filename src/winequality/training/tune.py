"""Estimators per model family and the cross-validated hyperparameter search over them.

Every family is a scikit-learn ``Pipeline`` over the 12 ``schema.MODEL_COLUMNS`` whose final step
is named ``model`` and that skl2onnx converts (``export.onnx.export_onnx``). Tree models need no
scaling; ElasticNet does, so its pipeline starts with a ``StandardScaler``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from winequality.contract.features import Matrix
from winequality.params import Family, TrainParams

FAMILIES: Final[tuple[str, ...]] = get_args(Family)

# Grids for the tree families, chosen on the deduplicated UCI data so that a search takes well
# under a minute on 2 cores; params.yaml only carries the ElasticNet grids, which DVC
# experiments vary most. The first value of each list is the default used without a search.
TREE_GRIDS: Final[dict[str, dict[str, list[Any]]]] = {
    "random_forest": {
        "model__max_features": [0.33, 0.5],
        "model__min_samples_leaf": [2, 1, 4],
    },
    "hist_gradient_boosting": {
        "model__learning_rate": [0.03, 0.1],
        "model__max_leaf_nodes": [31, 15],
        "model__l2_regularization": [1.0, 0.0],
    },
}

SCORING: Final = "neg_root_mean_squared_error"


class UnknownFamilyError(ValueError):
    """A model family that this module cannot build."""

    def __init__(self, family: str) -> None:
        super().__init__(f"unknown model family {family!r}: expected one of {list(FAMILIES)}")


def build_pipeline(family: str, seed: int) -> Pipeline:
    """An unfitted pipeline of ``family`` with its fixed (non-searched) settings."""
    if family == "elasticnet":
        # max_iter well above the default: small alphas converge slowly on scaled data, and a
        # ConvergenceWarning in a search would mean a half-fitted candidate.
        return Pipeline(
            [
                ("scale", StandardScaler()),
                ("model", ElasticNet(max_iter=20_000, random_state=seed)),
            ]
        )
    if family == "random_forest":
        return Pipeline(
            [("model", RandomForestRegressor(n_estimators=150, random_state=seed, n_jobs=1))]
        )
    if family == "hist_gradient_boosting":
        # early_stopping off: with it the number of trees would depend on an internal split,
        # which makes the search noisier and the ONNX graph size unpredictable.
        return Pipeline(
            [
                (
                    "model",
                    HistGradientBoostingRegressor(
                        max_iter=200, early_stopping=False, random_state=seed
                    ),
                )
            ]
        )
    raise UnknownFamilyError(family)


def search_space(params: TrainParams) -> dict[str, list[Any]]:
    """The grid searched for ``params.family`` (one point per parameter when search is off)."""
    if params.family not in FAMILIES:
        raise UnknownFamilyError(params.family)
    if params.family == "elasticnet":
        if not params.search:
            return {"model__alpha": [params.alpha], "model__l1_ratio": [params.l1_ratio]}
        if not params.alpha_grid or not params.l1_ratio_grid:
            raise ValueError("train.alpha_grid and train.l1_ratio_grid must not be empty")
        return {
            "model__alpha": list(params.alpha_grid),
            "model__l1_ratio": list(params.l1_ratio_grid),
        }
    grid = TREE_GRIDS[params.family]
    if not params.search:
        return {name: values[:1] for name, values in grid.items()}
    return {name: list(values) for name, values in grid.items()}


@dataclass(frozen=True)
class SearchOutcome:
    """The refitted best pipeline and what the cross-validation measured."""

    model: Pipeline
    best_params: dict[str, Any]
    """Chosen hyperparameters, without the ``model__`` step prefix."""
    cv_rmse_mean: float
    cv_rmse_std: float
    cv_results: pd.DataFrame
    """One row per candidate: its parameters, mean/std RMSE over the folds, rank."""


def tune(
    pipeline: Pipeline,
    grid: dict[str, list[Any]],
    x: Matrix,
    y: npt.NDArray[np.float64],
    *,
    folds: int,
    seed: int,
    n_jobs: int = 2,
) -> SearchOutcome:
    """Exhaustive search scored by RMSE over shuffled, seeded K folds; refits the best."""
    if len(y) < folds:
        raise ValueError(f"{len(y)} training rows cannot be split into {folds} folds")
    # Plain shuffled KFold, not stratified: the best and worst quality grades have fewer rows
    # than folds, which StratifiedKFold refuses.
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    search = GridSearchCV(
        pipeline, grid, scoring=SCORING, cv=cv, n_jobs=n_jobs, refit=True, error_score="raise"
    )
    search.fit(x, y)
    best = int(search.best_index_)
    results = search.cv_results_
    table = pd.DataFrame(
        {
            **{
                name.removeprefix("param_").removeprefix("model__"): list(results[name])
                for name in results
                if name.startswith("param_")
            },
            "cv_rmse_mean": -np.asarray(results["mean_test_score"], dtype=np.float64),
            "cv_rmse_std": np.asarray(results["std_test_score"], dtype=np.float64),
            "rank": np.asarray(results["rank_test_score"], dtype=np.int64),
        }
    ).sort_values("rank", kind="stable")
    return SearchOutcome(
        model=snap_thresholds_to_float32(search.best_estimator_),
        best_params={k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()},
        cv_rmse_mean=float(-results["mean_test_score"][best]),
        cv_rmse_std=float(results["std_test_score"][best]),
        cv_results=table.reset_index(drop=True),
    )


def snap_thresholds_to_float32(pipeline: Pipeline) -> Pipeline:
    """Make a fitted HistGradientBoosting model's split thresholds exact in float32.

    Its thresholds are float64 midpoints; the ONNX tree operator stores them as float32, and
    rounding a threshold up past an input value flips that split (measured: 0.01 quality points
    on the UCI test set, a hundred times the parity tolerance). Rounding each threshold *down*
    to the nearest float32 changes nothing for float32 inputs, which is all the model ever sees
    (``x <= t`` and ``x <= floor32(t)`` agree for every float32 ``x``), so scikit-learn's
    predictions stay the same while the ONNX export agrees with them to float precision. This
    edits scikit-learn's private ``_predictors`` (checked against scikit-learn 1.5-1.7).
    """
    model = pipeline[-1]
    if not isinstance(model, HistGradientBoostingRegressor):
        return pipeline
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            rounded = nodes["num_threshold"].astype(np.float32)
            above = rounded.astype(np.float64) > nodes["num_threshold"]
            rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
            nodes["num_threshold"] = rounded.astype(np.float64)
    return pipeline


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so the parameters serialize to JSON and MLflow."""
    return value.item() if isinstance(value, np.generic) else value
