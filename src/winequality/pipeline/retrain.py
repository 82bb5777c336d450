"""Continuous training: refresh the data with labelled feedback, train, gate, promote, deploy.

One retraining (``winequality retrain``, started by the Alertmanager webhook on drift):

1. **Refresh the data.** The base is the prepared pipeline data (``data/prepared/train.parquet``
   and ``test.parquet``, the DVC-versioned splits the champion's pipeline was built from). Every
   labelled production row (``read_feedback``, from the store at ``WINEQ_DATABASE_URL`` or the
   SQLite file ``WINEQ_FEEDBACK_DB``) is split with a fixed seed: a share
   (``retrain.holdout_fraction``) joins the holdout, the rest the training set. The feedback is
   cumulative and the base never includes it, so a retraining is a pure function of (base data,
   feedback, params) and no row is counted twice however often the loop runs.
2. **Train and export** with the same ``train`` params, through the same stage functions as the
   DVC pipeline (tuning, evaluation, ONNX with the parity check), and **register** the run as the
   ``challenger`` (tags ``trigger=drift-retraining`` and the feedback counts).
3. **Gate** (``registry.promote``, hence ``gate.decide``): champion and challenger are re-scored on
   the refreshed holdout, which includes the new production data. A refused challenger changes
   nothing beyond its own ``promotion.*`` tags.
4. **Deploy** a promoted model: ``pull`` the champion into a new bundle directory, ask the app to
   load it (``POST /admin/reload``). The app checks the bundle before swapping; if it refuses, or
   cannot be reached, the ``champion`` alias goes back to the previous version, so the registry
   never names a model that is not served. Only then does the serving pointer
   (``settings.model_dir``, a symlink in the local stack) move to the new bundle, and the detector
   reloads its reference from there (which also resets ``drift_found``).

**The new reference sample** is a seeded sample (``retrain.reference_size`` rows, drawn as
``prepare`` draws the first one) of the refreshed training set: base training split + the
training part of the feedback. The reference states what the model was trained and validated
for, so the detector's question stays "is production outside what this model was fitted on?"
and the rows that made the retraining (now part of the training set) count in the same proportion
as in training. Recent production alone (the feedback) would be the wrong reference: after a spell
of white-only traffic it is all white, so ordinary mixed traffic then flags on ``wine_type`` in
every window and retrains again (``benchmarks/reference_after_retraining.py`` measures each
candidate against mixed and white-only windows; the README quotes the figures).
``retrain.min_feedback_rows`` guards the retraining: with fewer labels there is nothing new to
learn, so no retraining runs.

**What started it** (``pipeline.trigger``): the webhook hands the firing alerts to the job in a
file named by ``WINEQ_RETRAIN_TRIGGER_FILE``; the job fetches the detector's ``/drift`` (the
window and statistics behind the alarm) before anything reloads, and records both on the run:
tag ``trigger`` = the alert name, artifacts ``trigger/alerts.json`` and ``trigger/evidence.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from winequality import artifacts
from winequality.contract import schema
from winequality.params import Params, RetrainParams
from winequality.pipeline.trigger import Trigger, fetch_evidence, log_trigger, trigger_tags
from winequality.settings import ClusterSettings, RetrainSettings
from winequality.stages import PATHS, StagePaths

TRIGGER_TAG: Final = "trigger"
FEEDBACK_TAG: Final = "feedback_rows"
DEFAULT_TRIGGER: Final = "manual"
"""The ``trigger`` tag of a run started without a trigger file (by hand, not by an alert)."""


@dataclass(frozen=True)
class RefreshedData:
    """The data of one retraining: training set, holdout and the new drift reference."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    reference: pd.DataFrame
    feedback_train_rows: int
    feedback_holdout_rows: int


@dataclass
class RetrainResult:
    """What ``winequality retrain`` prints as its last line (JSON)."""

    promoted: bool
    version: str | None
    reason: str
    feedback_rows: int | None
    previous_version: str | None = None
    trigger: str | None = None
    """The ``trigger`` tag: the alert name(s) that started the run, or ``manual``."""
    evidence: str | None = None
    """``recorded`` or ``unavailable: <why>`` (the detector's ``/drift`` at the start)."""
    outcome: str = "skipped"
    """``promoted``, ``refused`` (gate), ``rolled_back`` (app refused it) or ``skipped``."""
    model_dir: str | None = None
    detector_reloaded: bool | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def split_feedback(
    feedback: pd.DataFrame, holdout_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split of the feedback into (training part, holdout part).

    Each part gets at least one row when there are two or more, so the gate always sees new data.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    n = len(feedback)
    if n == 0:
        return feedback.iloc[:0], feedback.iloc[:0]
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = min(max(1, round(n * holdout_fraction)), n - 1) if n > 1 else 0
    holdout = feedback.iloc[np.sort(order[:n_holdout])]
    train = feedback.iloc[np.sort(order[n_holdout:])]
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def training_reference(train: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``size`` rows of the (refreshed) training set, as ``prepare`` draws."""
    from winequality.data.prepare import reference_sample

    if size <= 0:
        raise ValueError(f"reference size must be positive, got {size}")
    return reference_sample(train, size, seed)


def refresh_data(
    base_train: pd.DataFrame,
    base_test: pd.DataFrame,
    feedback: pd.DataFrame,
    params: RetrainParams,
) -> RefreshedData:
    """Base splits + feedback split by seed; the reference is a sample of the new training set."""
    columns = list(schema.DATA_COLUMNS)
    fb_train, fb_holdout = split_feedback(
        feedback.loc[:, columns], params.holdout_fraction, params.seed
    )
    train = pd.concat([base_train.loc[:, columns], fb_train], ignore_index=True)
    holdout = pd.concat([base_test.loc[:, columns], fb_holdout], ignore_index=True)
    return RefreshedData(
        train=train,
        holdout=holdout,
        reference=training_reference(train, params.reference_size, params.seed),
        feedback_train_rows=len(fb_train),
        feedback_holdout_rows=len(fb_holdout),
    )


def new_bundle_dir(model_dir: Path, version: str) -> Path:
    """A fresh directory for a pulled bundle, next to the serving pointer, never reused."""
    return artifacts.new_bundle_dir(model_dir, f"v{version}")


def _post(url: str, token: str | None, body: dict[str, Any] | None) -> tuple[int, str]:
    """(status, text) of an authenticated POST; status 0 when the service cannot be reached."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.post(url, json=body, headers=headers, timeout=60.0)
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return resp.status_code, resp.text


def ask_app_to_reload(settings: RetrainSettings, bundle: Path) -> tuple[bool, str]:
    """(accepted, detail) of ``POST {app_url}/admin/reload`` with ``bundle``."""
    url = f"{settings.app_url.rstrip('/')}/admin/reload"
    status, text = _post(url, settings.admin_token, {"model_dir": str(bundle)})
    if status == 200:
        return True, text
    where = "unreachable" if status == 0 else f"answered {status}"
    return False, f"app at {url} {where}: {text[:500]}"


def ask_detector_to_reload(settings: RetrainSettings) -> tuple[bool | None, str]:
    """(reloaded, detail) of ``POST {detector_url}/reference/reload``; None without a detector."""
    if not settings.detector_url:
        return None, "no detector configured (WINEQ_DETECTOR_URL)"
    url = f"{settings.detector_url.rstrip('/')}/reference/reload"
    status, text = _post(url, settings.detector_admin_token, None)
    return status == 200, text[:500]


def _write_stage_files(
    paths: StagePaths, data: RefreshedData, params: Params, n_jobs: int
) -> dict[str, float]:
    """Train, evaluate and export exactly as the DVC stages do, into the files of ``paths``."""
    from winequality.export.onnx import export_with_parity
    from winequality.files import write_json
    from winequality.training.dataset import to_xy
    from winequality.training.evaluate import evaluation_report
    from winequality.training.train import save_model, train_model

    paths.train.parent.mkdir(parents=True, exist_ok=True)
    data.train.to_parquet(paths.train, index=False)
    data.holdout.to_parquet(paths.test, index=False)
    data.reference.to_parquet(paths.reference, index=False)

    result = train_model(data.train, params.train, n_jobs=n_jobs)
    save_model(result.model, paths.model)
    write_json(paths.train_metrics, result.summary(params.train))
    paths.cv_results.parent.mkdir(parents=True, exist_ok=True)
    result.cv_results.to_csv(paths.cv_results, index=False)

    evaluation, scores, table = evaluation_report(result.model, data.holdout, data.train)
    write_json(paths.eval_metrics, evaluation)
    paths.predictions.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths.predictions, index=False)

    x, _ = to_xy(data.holdout)
    onnx_model, export_report = export_with_parity(
        result.model, x, params.export.opset, params.export.parity_tolerance
    )
    paths.onnx.parent.mkdir(parents=True, exist_ok=True)
    paths.onnx.write_bytes(onnx_model)
    write_json(paths.export_metrics, export_report)
    return {k: float(v) for k, v in scores.items()}


def _roll_back(settings: RetrainSettings, version: str, previous: str | None, reason: str) -> None:
    """Give the champion alias back to ``previous`` and record why on ``version``."""
    from winequality.training import tracking
    from winequality.training.registry import CHAMPION

    client = tracking.connect(settings)
    name = settings.registered_model_name
    if previous is None:
        client.delete_registered_model_alias(name, CHAMPION)
    else:
        client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, version, "promotion.decision", "rolled_back")
    client.set_model_version_tag(name, version, "promotion.rollback_reason", reason[:4000])


def retrain(
    settings: RetrainSettings,
    params: Params,
    *,
    base_train: Path,
    base_test: Path,
    work_dir: Path,
    trigger: Trigger | None = None,
    fallback_trigger: str = DEFAULT_TRIGGER,
    notify: bool = True,
    n_jobs: int = 1,
) -> RetrainResult:
    """One retraining: refresh, train, register, gate, and deploy a promoted model.

    ``trigger`` is what the webhook received (None for a run started by hand, tagged
    ``fallback_trigger``).
    """
    from winequality.database import redact
    from winequality.feedback_store import read_feedback
    from winequality.training import tracking
    from winequality.training.dataset import read_split
    from winequality.training.registry import promote, register

    clock: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        clock[name] = round(time.perf_counter() - t0 - sum(clock.values()), 3)

    # First, while the detector still holds the alarm that started this run.
    evidence = fetch_evidence(settings.detector_url)
    tags = trigger_tags(trigger, evidence, fallback_trigger)
    evidence_note = evidence.note

    store_url = settings.store_url()
    feedback = read_feedback(store_url)
    n_feedback = len(feedback)
    if n_feedback < params.retrain.min_feedback_rows:
        return RetrainResult(
            promoted=False,
            version=None,
            reason=(
                f"only {n_feedback} labelled production row(s) in {redact(store_url)}; "
                f"retraining needs at least {params.retrain.min_feedback_rows} "
                "(retrain.min_feedback_rows)"
            ),
            feedback_rows=n_feedback,
            trigger=tags[TRIGGER_TAG],
            evidence=evidence_note,
        )
    data = refresh_data(read_split(base_train), read_split(base_test), feedback, params.retrain)
    lap("refresh")

    paths = PATHS.under(work_dir)
    paths.source.parent.mkdir(parents=True, exist_ok=True)
    paths.source.write_text(
        json.dumps(
            {
                "kind": "retraining",
                "source": f"{base_train.name}+{base_test.name}+feedback:{redact(store_url)}",
                "feedback_rows": n_feedback,
            }
        )
    )
    scores = _write_stage_files(paths, data, params, n_jobs)
    lap("train_evaluate_export")

    extra_tags = {
        **tags,
        FEEDBACK_TAG: str(n_feedback),
        "feedback_train_rows": str(data.feedback_train_rows),
        "feedback_holdout_rows": str(data.feedback_holdout_rows),
        "reference_rows": str(len(data.reference)),
        "base_train_md5": tracking.file_md5(base_train),
        "base_test_md5": tracking.file_md5(base_test),
    }
    registered = register(paths, settings, params, alias="challenger", extra_tags=extra_tags)
    log_trigger(tracking.connect(settings), registered.run_id, trigger, evidence)
    lap("register")
    decision = promote(settings, params.promote, paths.test, paths.train)
    lap("gate")
    previous = decision.champion.version if decision.champion else None
    result = RetrainResult(
        promoted=decision.promoted,
        version=registered.version,
        reason=decision.reason,
        feedback_rows=n_feedback,
        previous_version=previous,
        trigger=tags[TRIGGER_TAG],
        evidence=evidence_note,
        outcome=decision.outcome,
        scores={
            "challenger": decision.challenger.score,
            "champion": decision.champion.score if decision.champion else None,
            "baseline": decision.baseline_score,
            **{f"holdout_{k}": v for k, v in scores.items()},
        },
        durations_s=clock,
    )
    if decision.promoted:
        deploy(settings, result, registered.version, notify)
        clock["deploy"] = round(time.perf_counter() - t0 - sum(clock.values()), 3)
    return result


def deploy(settings: RetrainSettings, result: RetrainResult, version: str, notify: bool) -> None:
    """Pull the new champion into a new bundle dir; app first, then the pointer and detector.

    The app loads and checks the bundle before it swaps; if it refuses (or cannot be reached) the
    champion alias is rolled back and nothing else moves, so a broken artifact never replaces a
    working one. In a cluster (``WINEQ_CLUSTER_NAMESPACE`` set) telling means rolling the new
    run out through the Kubernetes API instead (``pipeline.cluster``), with the same rollback.
    """
    from winequality.training.registry import CHAMPION, pull

    previous = result.previous_version
    bundle = new_bundle_dir(settings.model_dir, version)
    pulled = pull(settings, bundle, alias=CHAMPION)
    result.model_dir = str(bundle)
    cluster = ClusterSettings() if notify else None
    if cluster is not None and cluster.namespace:
        _deploy_to_cluster(settings, cluster, result, version, pulled.run_id)
        return
    if notify:
        accepted, detail = ask_app_to_reload(settings, bundle)
        if not accepted:
            _roll_back(settings, version, previous, detail)
            result.promoted, result.outcome = False, "rolled_back"
            result.reason = (
                f"promoted by the gate but not deployed, champion v{previous} restored: {detail}"
            )
            return
    artifacts.point_model_dir(settings.model_dir, bundle)
    if notify:
        result.detector_reloaded, detail = ask_detector_to_reload(settings)
        if result.detector_reloaded is False:
            result.reason += f"; detector reference NOT reloaded: {detail}"


def _deploy_to_cluster(
    settings: RetrainSettings,
    cluster: ClusterSettings,
    result: RetrainResult,
    version: str,
    run_id: str | None,
) -> None:
    """The champion pulled and checked: roll it out in Kubernetes (``pipeline.cluster``); if it
    never becomes ready there, the cluster is reverted and so is the alias."""
    from winequality.pipeline.cluster import roll_out

    if run_id is None:  # pull always records it; never roll out a bundle that does not say
        detail = "the pulled bundle names no MLflow run id"
    else:
        rollout = roll_out(cluster, run_id, version)
        if rollout.ready:
            result.reason += f"; {rollout.detail}"
            return
        detail = rollout.detail
    previous = result.previous_version
    _roll_back(settings, version, previous, detail)
    result.promoted, result.outcome = False, "rolled_back"
    result.reason = (
        f"promoted by the gate but not deployed, champion v{previous} restored: {detail}"
    )
