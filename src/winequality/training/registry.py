"""Every MLflow side effect of the pipeline: log + register, the promotion gate, pull by alias.

The stages before ``register`` only write files; this module turns those files into one MLflow
run and a registered model version, applies the gate to the ``challenger``/``champion`` aliases,
and pulls a version back out as a serving bundle. ``pull`` needs nothing but the tracking URI
(artifacts are proxied by the server), so a Kubernetes initContainer can run it.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from winequality import artifacts
from winequality.artifacts import ModelMetadata
from winequality.contract import schema
from winequality.contract.features import postprocess
from winequality.params import Params, PromoteParams
from winequality.settings import TrackingSettings
from winequality.stages import PATHS, StageError, StagePaths
from winequality.training import tracking
from winequality.training.dataset import read_split, to_xy
from winequality.training.evaluate import (
    LOWER_IS_BETTER,
    METRICS,
    mean_predictor_metrics,
    regression_metrics,
)
from winequality.training.gate import Candidate, Decision, decide

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from onnxruntime import InferenceSession

CHALLENGER: Final = "challenger"
CHAMPION: Final = "champion"

# Artifact paths inside a run; ``pull`` reads the same names.
ONNX_ARTIFACT: Final = f"onnx/{artifacts.MODEL_FILE}"
REFERENCE_ARTIFACT: Final = f"reference/{artifacts.REFERENCE_FILE}"
SKLEARN_MODEL: Final = "model"

# Tag keys on runs and model versions.
TAG_GIT_COMMIT: Final = "git_commit"
TAG_DATA_HASH: Final = "dvc_data_hash"
TAG_DATA_SOURCE: Final = "data_source"
TAG_FAMILY: Final = "family"
PARITY_METRIC: Final = "onnx_parity_max_abs_diff"


class RegistryError(StageError):
    """The registry is not in a state the command can work with (e.g. no challenger)."""


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id}


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: no such file (run the stage that writes it first)")
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def run_metrics(
    train_summary: dict[str, Any], evaluation: dict[str, Any], export: dict[str, Any]
) -> dict[str, float]:
    """The run's metrics: ``test_*`` from evaluate, ``cv_*`` from train, the parity figure."""
    out: dict[str, float] = {}
    for key, value in evaluation.items():
        if key in METRICS or key.startswith("rmse_"):
            out[f"test_{key}"] = float(value)
        elif key.startswith("baseline_"):
            out[key] = float(value)
    for key in ("cv_rmse_mean", "cv_rmse_std", "train_rmse"):
        if key in train_summary:
            out[key] = float(train_summary[key])
    if "parity_max_abs_diff" in export:
        out[PARITY_METRIC] = float(export["parity_max_abs_diff"])
    return out


# The run metrics `dvc metrics show` lists (one compact row); MLflow has them all.
HEADLINE_METRICS: Final = (
    "test_rmse",
    "test_mae",
    "test_r2",
    "test_within_0_5",
    "test_within_1_0",
    "baseline_rmse",
    "cv_rmse_mean",
)


def headline_metrics(paths: StagePaths) -> dict[str, float | str]:
    """What the register stage writes for DVC: the family, the headline run metrics, rounded
    to 4 decimals, and the ONNX parity in scientific notation (DVC prints numbers to 5
    decimals, which would show a parity of 9.5e-07 as 0.0; MLflow keeps the raw float)."""
    train_summary = _read_json(paths.train_metrics, required=False)
    metrics = run_metrics(
        train_summary,
        _read_json(paths.eval_metrics, required=True),
        _read_json(paths.export_metrics, required=True),
    )
    out: dict[str, float | str] = {"family": str(train_summary.get("family", "?"))}
    out |= {key: round(metrics[key], 4) for key in HEADLINE_METRICS if key in metrics}
    if PARITY_METRIC in metrics:
        out["onnx_parity"] = f"{metrics[PARITY_METRIC]:.2e}"
    return out


def run_params(params: Params, train_summary: dict[str, Any]) -> dict[str, str]:
    """``train.*`` from params.yaml plus the chosen hyperparameters as ``best.*``."""
    out = {f"train.{k}": str(v) for k, v in params.train.model_dump().items()}
    out["family"] = str(train_summary.get("family", params.train.family))
    for key, value in dict(train_summary.get("best_params", {})).items():
        out[f"best.{key}"] = str(value)
    for key in ("n_train", "n_candidates"):
        if key in train_summary:
            out[key] = str(train_summary[key])
    return out


def register(
    inputs: StagePaths,
    settings: TrackingSettings,
    params: Params,
    alias: str = CHALLENGER,
    extra_tags: dict[str, str] | None = None,
) -> Registered:
    """Log one run with everything needed to audit and serve the model; register it as ``alias``.

    ``inputs`` names the files the earlier stages wrote; the optional ones (train metrics, the
    reports, the reference sample) are logged when present. ``extra_tags`` go on the run.
    """
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    from winequality.training.train import load_model

    tracking.quiet_mlflow()
    model = load_model(inputs.model)
    onnx_bytes = inputs.onnx.read_bytes() if inputs.onnx.is_file() else None
    if onnx_bytes is None:
        raise FileNotFoundError(f"{inputs.onnx}: no such file (run `winequality export onnx`)")
    train_summary = _read_json(inputs.train_metrics, required=False)
    evaluation = _read_json(inputs.eval_metrics, required=True)
    export = _read_json(inputs.export_metrics, required=True)
    train, test = read_split(inputs.train), read_split(inputs.test)

    hashes = tracking.data_hashes(
        {"train": inputs.train, "test": inputs.test, "reference": inputs.reference}
    )
    data_hash = hashes.get("dir", hashes["train"])
    commit = tracking.git_commit(Path.cwd())
    source = tracking.data_source(inputs.source)
    family = str(train_summary.get("family", params.train.family))
    tags = {
        TAG_FAMILY: family,
        TAG_DATA_HASH: data_hash,
        **{f"dvc_md5.{name}": value for name, value in hashes.items() if name != "dir"},
        **({TAG_GIT_COMMIT: commit} if commit else {}),
        **({TAG_DATA_SOURCE: source} if source else {}),
        **(extra_tags or {}),
    }

    x_train, _ = to_xy(train)
    example = x_train[:5]
    signature = infer_signature(example, np.asarray(model.predict(example), dtype=np.float64))

    client = tracking.connect(settings)
    experiment_id = tracking.ensure_experiment(client, settings)
    run_name = f"{family}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_params(run_params(params, train_summary))
        mlflow.log_metrics(run_metrics(train_summary, evaluation, export))
        for split, frame, path, context in (
            ("train", train, inputs.train, "training"),
            ("test", test, inputs.test, "testing"),
        ):
            dataset = from_pandas(
                frame,
                source=str(path.resolve()),
                targets=schema.TARGET,
                name=split,
                digest=hashes[split],
            )
            mlflow.log_input(dataset, context=context)
        model_info = mlflow.sklearn.log_model(
            model,
            name=SKLEARN_MODEL,
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=skops_trusted_types(model),
            # Explicit requirements: inferring them loads the model in a subprocess (seconds).
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
        with tempfile.TemporaryDirectory() as tmp:
            onnx_file = Path(tmp) / artifacts.MODEL_FILE
            onnx_file.write_bytes(onnx_bytes)
            mlflow.log_artifact(str(onnx_file), artifact_path=ONNX_ARTIFACT.rsplit("/", 1)[0])
        if inputs.reference.is_file():
            mlflow.log_artifact(str(inputs.reference), artifact_path="reference")
        for optional in (
            inputs.predictions,
            inputs.cv_results,
            inputs.train_metrics,
            inputs.eval_metrics,
            inputs.export_metrics,
        ):
            if optional.is_file():
                mlflow.log_artifact(str(optional), artifact_path="reports")
        if inputs.predictions.is_file():
            import pandas as pd

            from winequality.training.evaluate import prediction_figures

            table = pd.read_csv(inputs.predictions)
            for name, figure in prediction_figures(table).items():
                mlflow.log_figure(figure, f"plots/{name}.png")
        run_id = run.info.run_id

    name = settings.registered_model_name
    # mlflow.register_model resolves the logged model's source for every kind of store; its
    # "Successfully registered ..." lines go to stderr, which carries only our own progress.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(
            model_info.model_uri,
            name,
            tags={k: v for k, v in tags.items() if k in (TAG_FAMILY, TAG_DATA_HASH, TAG_GIT_COMMIT)}
            | {"run_id": run_id},
        )
    client.set_registered_model_alias(name, alias, version.version)
    return Registered(name, str(version.version), run_id)


# Modules whose classes a fitted pipeline of ours may contain; skops refuses any other type.
TRUSTED_MODULES: Final = ("sklearn.", "numpy.", "scipy.")


def skops_trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to load ``model`` back (tree models hold
    ``sklearn.tree._tree.Tree`` and the like, which skops does not trust by default).

    Only scikit-learn's, NumPy's and SciPy's own types are trusted; anything else in the
    pipeline is refused with a ``RegistryError`` naming it, rather than logged unloadable.
    """
    import skops.io  # type: ignore[import-untyped]

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [t for t in found if not t.startswith(TRUSTED_MODULES)]
    if foreign:
        raise RegistryError(f"the model holds types skops cannot load safely: {foreign}")
    return list(found)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version of a registered model; empty when the model does not exist yet."""
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    if not found:
        return {}
    return {alias: str(version) for alias, version in found[0].aliases.items()}


def _version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    version = _aliases(client, name).get(alias)
    return None if version is None else client.get_model_version(name, version)


def _download(uri: str, run_id: str, artifact: str, dest: Path) -> Path:
    """One run artifact into ``dest`` (through the server's artifact proxy when remote)."""
    import mlflow

    dest.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=str(dest), tracking_uri=uri
        )
    )


def score_onnx(onnx_model: bytes, test: Any, metric: str, where: str = "ONNX model") -> float:
    """Re-score a registered ONNX model on ``test`` (what is served, whatever sklearn made it)."""
    x, y = to_xy(test)
    session = _check_onnx(onnx_model, where)
    (scores,) = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[:1]
    quality, _ = postprocess(np.asarray(scores, dtype=np.float64).reshape(-1))
    return regression_metrics(y, quality)[metric]


def promote(
    settings: TrackingSettings,
    gate: PromoteParams,
    test_path: Path = PATHS.test,
    train_path: Path = PATHS.train,
    metric: str | None = None,
) -> Decision:
    """Re-score challenger and champion on the current test split, decide, record, apply.

    The decision and its reason become ``promotion.*`` tags of the challenger's version; the
    ``champion`` alias moves only when the challenger wins.
    """
    metric = metric or gate.metric
    if metric not in LOWER_IS_BETTER:
        raise ValueError(
            f"promotion metric must be one of {sorted(LOWER_IS_BETTER)} (lower is better), "
            f"got {metric!r}"
        )
    tracking.quiet_mlflow()
    client = tracking.connect(settings)
    name = settings.registered_model_name
    test, train = read_split(test_path), read_split(train_path)
    challenger_mv = _version(client, name, CHALLENGER)
    if challenger_mv is None:
        raise RegistryError(f"model {name!r} has no {CHALLENGER!r} alias: run `register` first")
    champion_mv = _version(client, name, CHAMPION)

    def candidate(mv: ModelVersion, tmp: Path) -> Candidate:
        run_id = str(mv.run_id)
        onnx_file = _download(settings.tracking_uri(), run_id, ONNX_ARTIFACT, tmp / str(mv.version))
        score = score_onnx(onnx_file.read_bytes(), test, metric, f"v{mv.version}: {ONNX_ARTIFACT}")
        return Candidate(str(mv.version), run_id, score)

    with tempfile.TemporaryDirectory() as tmp:
        challenger = candidate(challenger_mv, Path(tmp))
        champion = candidate(champion_mv, Path(tmp)) if champion_mv is not None else None
    baseline = mean_predictor_metrics(train, test)[metric]
    decision = decide(metric, challenger, champion, baseline, gate.min_improvement)

    if decision.outcome != "unchanged":
        tags = {
            "promotion.decision": decision.outcome,
            "promotion.reason": decision.reason,
            "promotion.metric": metric,
            "promotion.challenger_score": f"{challenger.score:.6f}",
            "promotion.baseline_score": f"{baseline:.6f}",
            "promotion.champion_version": champion.version if champion else "none",
            "promotion.champion_score": f"{champion.score:.6f}" if champion else "none",
            "promotion.test_data_md5": tracking.file_md5(test_path),
            "promotion.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, challenger.version, key, value)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    return decision


def _check_onnx(onnx_model: bytes, where: str) -> InferenceSession:
    """A session on ``onnx_model``, or ``RegistryError`` when it is not the model the contract
    expects (``inference.predictor.open_onnx_session`` judges)."""
    from winequality.inference.predictor import BundleError, open_onnx_session

    try:
        session, _ = open_onnx_session(onnx_model, where)
    except BundleError as exc:
        raise RegistryError(str(exc)) from exc
    return session


def pull(
    settings: TrackingSettings, dest: Path, alias: str | None = None, run_id: str | None = None
) -> ModelMetadata:
    """Download a model version (by alias) or a run (by id) and write it as a serving bundle."""
    if (alias is None) == (run_id is None):
        raise ValueError("give exactly one of alias or run_id")
    tracking.quiet_mlflow()
    client = tracking.connect(settings)
    uri = settings.tracking_uri()
    name = settings.registered_model_name
    created: int | None
    if alias is not None:
        mv = _version(client, name, alias)
        if mv is None:
            raise RegistryError(f"model {name!r} has no alias {alias!r}")
        run_id, version, created = str(mv.run_id), str(mv.version), mv.creation_timestamp
    elif run_id is not None:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        latest = max(versions, key=lambda v: int(v.version), default=None)
        # A run that was logged but never registered still makes a usable bundle.
        version = str(latest.version) if latest else f"run-{run_id[:8]}"
        created = latest.creation_timestamp if latest else None
    else:  # unreachable: checked above, kept for the type checker
        raise ValueError("give exactly one of alias or run_id")
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = _download(uri, run_id, ONNX_ARTIFACT, Path(tmp)).read_bytes()
        _check_onnx(onnx_model, f"run {run_id}: {ONNX_ARTIFACT}")
        listed = {a.path for a in client.list_artifacts(run_id, "reference")}
        reference = (
            _download(uri, run_id, REFERENCE_ARTIFACT, Path(tmp))
            if REFERENCE_ARTIFACT in listed
            else None
        )
        data, tags = run.data, run.data.tags
        stamp = created or run.info.start_time
        metadata = ModelMetadata(
            name=name,
            version=version,
            run_id=run_id,
            alias=alias,
            family=data.params.get("family", "elasticnet"),
            metrics={
                k.removeprefix("test_"): float(v)
                for k, v in data.metrics.items()
                if k.startswith("test_")
            },
            parity_max_abs_diff=data.metrics.get(PARITY_METRIC),
            data_source=tags.get(TAG_DATA_SOURCE),
            data_hash=tags.get(TAG_DATA_HASH),
            git_commit=tags.get(TAG_GIT_COMMIT),
            created_at=(
                datetime.fromtimestamp(stamp / 1000, UTC).isoformat(timespec="seconds")
                if stamp
                else None
            ),
        )
        artifacts.write_bundle(dest, onnx_model, metadata, reference)
    return metadata
