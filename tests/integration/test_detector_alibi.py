"""The optional Alibi Detect backend (its own venv, run in a subprocess) agrees with ours.

The venv is built on first use by the ``alibi_venv`` fixture (under a lock: one xdist worker
builds, the other waits; about 10 s with a warm uv cache, network needed otherwise).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from winequality.contract import schema
from winequality.monitoring.alibi_backend import detect_alibi_many
from winequality.monitoring.detector import detect_frame, reference_from_frame
from winequality.params import DriftParams

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_alibi_backend_reaches_the_same_decisions(
    real_wines: pd.DataFrame, correction: str, alibi_venv: Path
) -> None:
    venv = alibi_venv
    red = real_wines[real_wines[schema.WINE_TYPE] == "red"].sample(frac=1.0, random_state=3)
    white = real_wines[real_wines[schema.WINE_TYPE] == "white"]
    reference_frame, held_out = red.iloc[:1000], red.iloc[1000:]
    reference = reference_from_frame(reference_frame)
    params = DriftParams(window_size=200, correction=correction)  # type: ignore[arg-type]
    windows = {
        "white": white.sample(200, random_state=1),
        "held-out red": held_out.sample(200, random_state=2),
        "red with 5% white": pd.concat(
            [held_out.sample(190, random_state=3), white.sample(10, random_state=3)]
        ),
    }
    alibi = detect_alibi_many(reference_frame, list(windows.values()), params, venv=venv)
    decisions = {}
    for (name, window), theirs in zip(windows.items(), alibi, strict=True):
        ours = detect_frame(reference, window, params)
        assert theirs.backend == "alibi"
        assert theirs.is_drift == ours.is_drift, name
        assert theirs.drifted == ours.drifted, name
        assert theirs.corrected_threshold == pytest.approx(ours.corrected_threshold), name
        for feature in schema.FEATURE_NAMES:
            # Alibi returns float32 p-values and distances.
            assert theirs.distances[feature] == pytest.approx(ours.distances[feature], rel=1e-6)
            assert theirs.p_values[feature] == pytest.approx(
                ours.p_values[feature], rel=1e-5, abs=1e-30
            )
        decisions[name] = ours.is_drift
    assert decisions == {"white": True, "held-out red": False, "red with 5% white": True}
