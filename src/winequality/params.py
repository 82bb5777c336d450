"""Typed view of ``params.yaml``: one model per pipeline stage, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Block):
    source: str = "auto"
    """``auto`` (UCI if downloadable, else synthetic), ``uci``, ``synthetic``, a URL or a path."""
    synthetic_rows: int = Field(6000, gt=0)
    seed: int = 42
    download_timeout_s: float = Field(10.0, gt=0)


class ValidateParams(_Block):
    policy: Literal["fail", "quarantine"] = "fail"


class PrepareParams(_Block):
    test_size: float = Field(0.2, gt=0, lt=1)
    reference_size: int = Field(1000, gt=0)
    seed: int = 42


Family = Literal["elasticnet", "random_forest", "hist_gradient_boosting"]


class TrainParams(_Block):
    family: Family = "elasticnet"
    alpha: float = Field(0.001, gt=0)
    l1_ratio: float = Field(0.5, ge=0, le=1)
    search: bool = True
    cv_folds: int = Field(5, ge=2)
    seed: int = 42
    alpha_grid: list[float] = Field(default_factory=lambda: [0.0001, 0.001, 0.01, 0.1, 1.0])
    l1_ratio_grid: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9, 1.0])


class ExportParams(_Block):
    parity_tolerance: float = Field(1e-4, gt=0)
    opset: int = 17


class PromoteParams(_Block):
    metric: Literal["rmse", "mae"] = "rmse"
    min_improvement: float = Field(0.0, ge=0)


class DriftParams(_Block):
    window_size: int = Field(200, ge=2)
    """Rows per (tumbling) detection window of the drift detector."""
    p_val: float = Field(0.05, gt=0, lt=1)
    """Family-wise significance level, before the multiple-testing correction."""
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    """``bonferroni`` (p_val / number of tests) or ``fdr`` (Benjamini-Hochberg)."""
    false_alarm_rows: int = Field(10_000_000, ge=1000)
    """False-alarm budget of the sequential decision: expected stable rows between two false
    alarms (ARL0). The CUSUM threshold is calibrated on the reference sample to meet it."""
    cusum_k: float = Field(2.0, gt=0)
    """CUSUM reference value, in probit units of a window's p-value: a window must score above
    it to add evidence (about half the score of a window drawn from drifted traffic)."""
    window_seconds: float | None = Field(None, gt=0)
    """Also close a window this many seconds after its first row (low traffic), once it holds
    ``min_window_rows``; None: windows close by row count only."""
    min_window_rows: int = Field(50, ge=2)
    """Fewest rows a time-closed window may hold; the budget assumes windows this small."""
    calibration_references: int = Field(64, ge=2)
    """Pseudo-references bootstrapped from the reference during calibration."""
    calibration_windows: int = Field(500, ge=100)
    """Stable windows simulated per pseudo-reference during calibration."""
    calibration_seed: int = 0


class RetrainParams(_Block):
    holdout_fraction: float = Field(0.3, gt=0, lt=1)
    """Share of the labelled feedback kept for the gate's holdout (the rest joins training)."""
    seed: int = 42
    """Seed of the feedback split (the same feedback always splits the same way)."""
    min_feedback_rows: int = Field(50, ge=2)
    """Fewer labelled production rows than this: no retraining (nothing new to learn from)."""
    reference_size: int = Field(1000, gt=0)
    """Rows of the new drift reference, a seeded sample of the new training set."""


class Params(_Block):
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()
    export: ExportParams = ExportParams()
    promote: PromoteParams = PromoteParams()
    drift: DriftParams = DriftParams()
    retrain: RetrainParams = RetrainParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate the parameters file; a missing file means all defaults."""
    if not path.exists():
        return Params()
    raw = yaml.safe_load(path.read_text()) or {}
    return Params.model_validate(raw)
