"""The pipeline's files, named once: what each stage reads and writes.

Each stage writes its full report as a plain output; the one file DVC shows as metrics is
``model_metrics``, the compact set ``register`` logs on the MLflow run (one row in
``dvc metrics show`` / ``dvc exp show``).

``dvc.yaml`` spells the same paths for DVC (a unit test holds the two equal); the command-line
defaults, the registry and the retraining job take them from here. ``StagePaths().under(dir)``
is the same layout below another folder (a retraining run's work directory).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path


class StageError(RuntimeError):
    """An expected failure of a stage (a refused export, an unusable registry state): the
    commands print its message as one line and exit 1, without a traceback."""


@dataclass(frozen=True)
class StagePaths:
    """Every input and output of the DVC stages, relative to the project directory."""

    raw_dir: Path = Path("data/raw")
    raw_wines: Path = Path("data/raw/wines.csv")
    source: Path = Path("data/raw/source.json")
    validated_dir: Path = Path("data/validated")
    validated: Path = Path("data/validated/wines.parquet")
    validation_report: Path = Path("reports/validation.json")
    prepared_dir: Path = Path("data/prepared")
    train: Path = Path("data/prepared/train.parquet")
    test: Path = Path("data/prepared/test.parquet")
    reference: Path = Path("data/prepared/reference.parquet")
    data_metrics: Path = Path("metrics/data.json")
    model: Path = Path("models/model.pkl")
    train_metrics: Path = Path("metrics/train.json")
    cv_results: Path = Path("reports/cv_results.csv")
    eval_metrics: Path = Path("metrics/eval.json")
    predictions: Path = Path("reports/predictions.csv")
    plots: Path = Path("reports/plots")
    """The prediction plots (PNG) ``dvc plots show`` embeds."""
    onnx: Path = Path("models/model.onnx")
    export_metrics: Path = Path("metrics/export.json")
    registered: Path = Path("models/registered.json")
    model_metrics: Path = Path("metrics/model.json")
    promotion: Path = Path("reports/promotion.json")

    def under(self, root: Path) -> StagePaths:
        """The same layout below ``root``."""
        return replace(self, **{f.name: root / getattr(self, f.name) for f in fields(self)})

    def stages(self) -> dict[str, dict[str, list[Path]]]:
        """``{stage: {"deps" | "outs" | "metrics": [paths]}}``, as ``dvc.yaml`` declares them."""
        return {
            "ingest": {"deps": [], "outs": [self.raw_dir], "metrics": []},
            "validate": {
                "deps": [self.raw_wines],
                "outs": [self.validated_dir, self.validation_report],
                "metrics": [],
            },
            "prepare": {
                "deps": [self.validated],
                "outs": [self.prepared_dir, self.data_metrics],
                "metrics": [],
            },
            "train": {
                "deps": [self.train],
                "outs": [self.model, self.cv_results, self.train_metrics],
                "metrics": [],
            },
            "evaluate": {
                "deps": [self.model, self.test, self.train],
                "outs": [self.predictions, self.eval_metrics, self.plots],
                "metrics": [],
            },
            "export_onnx": {
                "deps": [self.model, self.test],
                "outs": [self.onnx, self.export_metrics],
                "metrics": [],
            },
            "register": {
                "deps": [
                    *self.register_inputs(),
                    self.prepared_dir,
                    self.source,
                ],
                "outs": [self.registered],
                "metrics": [self.model_metrics],
            },
            "promote": {
                "deps": [self.registered, self.test, self.train],
                "outs": [self.promotion],
                "metrics": [],
            },
        }

    def register_inputs(self) -> list[Path]:
        """The stage outputs ``register`` logs to MLflow (besides the prepared data)."""
        return [
            self.model,
            self.onnx,
            self.train_metrics,
            self.eval_metrics,
            self.export_metrics,
            self.cv_results,
            self.predictions,
        ]


PATHS = StagePaths()
"""The project's own layout (what ``dvc.yaml`` runs)."""
