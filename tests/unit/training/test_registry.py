"""What ``register`` tells skops to trust when it logs the scikit-learn model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from winequality.params import TrainParams
from winequality.training.registry import RegistryError, skops_trusted_types
from winequality.training.tune import FAMILIES, build_pipeline

X = np.random.default_rng(0).uniform(size=(40, 12))
Y = X.sum(axis=1)


def _halve(x: np.ndarray) -> np.ndarray:
    return x / 2


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_needs_only_scikit_learn_types(family: str) -> None:
    model = build_pipeline(family, TrainParams().seed)
    model.set_params(**({"model__max_iter": 3} if family == "hist_gradient_boosting" else {}))
    trusted = skops_trusted_types(model.fit(X, Y))
    assert all(t.startswith("sklearn.") for t in trusted)
    if family == "random_forest":
        assert "sklearn.tree._tree.Tree" in trusted


def test_a_type_from_outside_scikit_learn_is_refused_by_name() -> None:
    model = Pipeline([("halve", FunctionTransformer(_halve))]).fit(X, Y)
    with pytest.raises(RegistryError, match="_halve"):
        skops_trusted_types(model)
