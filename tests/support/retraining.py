"""A project folder ready for `winequality retrain`, and the CLI run in a child process.

The retraining tests (refusal, cluster promotion, Triton reload) each need the same thing: base
splits and labelled feedback taken from the real data, a few params files, and the real CLI run
against an embedded MLflow store inside the folder. One place keeps the layout they agree on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore

TUNED: dict[str, Any] = {
    "train": {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3}
}
"""A small search: a challenger tuned this way beats a heavily shrunk champion for sure."""
MIN_FEEDBACK_ROWS = 50


def shrunk(alpha: float) -> dict[str, Any]:
    """Params of a lasso without a search, weaker the larger ``alpha``."""
    return {"train": {"search": False, "alpha": alpha, "l1_ratio": 1.0}}


def retrain_project(
    root: Path, wines: pd.DataFrame, seed: int, params: Mapping[str, Mapping[str, Any]]
) -> Path:
    """``root`` with 1,000 train and 500 test wines, 120 labelled feedback rows in
    ``feedback.sqlite`` (all drawn from ``wines`` with ``seed``) and ``params-<name>.yaml`` for
    each of ``params`` (``retrain.min_feedback_rows`` low enough for those 120)."""
    sample = wines.drop_duplicates().sample(n=1620, random_state=seed).reset_index(drop=True)
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    sample.iloc[:1000].to_parquet(prepared / "train.parquet", index=False)
    sample.iloc[1000:1500].to_parquet(prepared / "test.parquet", index=False)
    feedback = sample.iloc[1500:]
    features = feedback.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]]
    rows = [{str(k): v for k, v in row.items()} for row in features.to_dict("records")]
    store = FeedbackStore(root / "feedback.sqlite")
    store.add(rows, feedback[schema.TARGET].astype(int).tolist())
    store.close()
    for name, body in params.items():
        full = {**body, "retrain": {"min_feedback_rows": MIN_FEEDBACK_ROWS}}
        (root / f"params-{name}.yaml").write_text(yaml.safe_dump(full))
    return root


def retrain_env(project: Path, params: str, **extra: str) -> dict[str, str]:
    """This process's environment without any WINEQ_/MLFLOW_ setting, pointed at ``project``
    and its ``params-<params>.yaml``; ``extra`` adds or overrides settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINEQ_", "MLFLOW_"))}
    return env | {
        "WINEQ_PROJECT_DIR": str(project),
        "WINEQ_PARAMS_FILE": str(project / f"params-{params}.yaml"),
        "WINEQ_FEEDBACK_DB": str(project / "feedback.sqlite"),
        "WINEQ_MODEL_DIR": str(project / "serving" / "current"),
        **extra,
    }


def run_retrain(
    project: Path, env: Mapping[str, str], *args: str, timeout_s: float = 600
) -> dict[str, Any]:
    """`winequality retrain ARGS` in ``project``; its JSON summary (the last line it prints)."""
    proc = subprocess.run(
        [sys.executable, "-m", "winequality.cli", "retrain", *args],
        cwd=project, env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
