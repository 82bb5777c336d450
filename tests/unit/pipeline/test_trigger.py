"""The trigger and evidence of a retraining: from the webhook's file to the MLflow run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import uvicorn
from mlflow import MlflowClient

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore
from winequality.monitoring.service import create_app as create_detector
from winequality.params import DriftParams, Params, RetrainParams, TrainParams
from winequality.pipeline.retrain import retrain
from winequality.pipeline.trigger import (
    Evidence,
    Trigger,
    TriggerAlert,
    fetch_evidence,
    log_trigger,
    read_trigger,
    trigger_tags,
    write_trigger,
)
from winequality.process import free_port
from winequality.settings import DetectorSettings, RetrainSettings, TrackingSettings
from winequality.training import tracking

DRIFT_ALERT = TriggerAlert(
    name="WineQualityDrift",
    labels={"alertname": "WineQualityDrift", "severity": "warning"},
    annotations={"summary": "Input drift detected for the wine-quality model"},
    starts_at="2026-12-01T21:00:00.000Z",
    fingerprint="abc",
)


def a_trigger(*alerts: TriggerAlert) -> Trigger:
    return Trigger(alerts=list(alerts or [DRIFT_ALERT]), received_at="2026-12-01T21:00:02+00:00")


@pytest.fixture
def detector(tmp_path: Path, real_wines: pd.DataFrame) -> Iterator[str]:
    """The real drift detector under uvicorn, in a thread, on a free port."""
    reference = tmp_path / "reference.parquet"
    real_wines.loc[:, list(schema.DATA_COLUMNS)].sample(400, random_state=0).to_parquet(reference)
    settings = DetectorSettings(_env_file=None)  # type: ignore[call-arg]
    port = free_port()
    app = create_detector(settings, DriftParams(window_size=50), reference)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "detector exited"
        assert time.monotonic() < deadline, "detector did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_trigger_file_round_trips_and_a_bad_one_names_the_file(tmp_path: Path) -> None:
    trigger = a_trigger()
    path = write_trigger(tmp_path / "run" / "t.json", trigger)
    assert read_trigger(path) == trigger
    assert trigger.name == "WineQualityDrift"
    (tmp_path / "bad.json").write_text('{"alerts": [{"labels": {}}]}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        read_trigger(tmp_path / "bad.json")
    with pytest.raises(ValueError, match=r"absent\.json"):
        read_trigger(tmp_path / "absent.json")


def test_evidence_from_a_running_detector_is_its_drift_document(detector: str) -> None:
    evidence = fetch_evidence(detector)
    assert evidence.unavailable is None
    assert evidence.source == f"{detector}/drift"
    assert evidence.drift is not None
    assert evidence.drift["drift_found"] is False
    assert evidence.drift["windows_tested"] == 0


def test_a_detector_that_is_down_or_unset_is_recorded_as_unavailable() -> None:
    down = fetch_evidence(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    assert down.drift is None
    assert down.unavailable is not None
    assert "Connect" in down.unavailable
    unset = fetch_evidence(None)
    assert unset.drift is None
    assert unset.unavailable is not None
    assert "WINEQ_DETECTOR_URL" in unset.unavailable
    tags = trigger_tags(a_trigger(), down, "manual")
    assert tags["trigger"] == "WineQualityDrift"
    assert tags["trigger.evidence"] == "unavailable"
    assert "Connect" in tags["trigger.evidence_unavailable"]


def test_tags_name_the_alerts_their_start_and_the_drifted_tests() -> None:
    degraded = TriggerAlert(
        name="WineQualityDegraded",
        starts_at="2026-12-01T20:59:00Z",
        annotations={"evidence": "labels=240 realized_rmse=0.9100 bias_z=9.40"},
    )
    drift = {
        "drift_found": True,
        "windows_tested": 4,
        "latest": {"is_drift": True, "drifted": ["wine_type", "residual_sugar"]},
    }
    evidence = Evidence("http://d/drift", "t", drift=drift)
    tags = trigger_tags(a_trigger(DRIFT_ALERT, degraded), evidence, "manual")
    assert tags["trigger"] == "WineQualityDegraded,WineQualityDrift"
    assert tags["trigger.starts_at"] == "2026-12-01T20:59:00Z"
    assert tags["trigger.summary"] == "Input drift detected for the wine-quality model"
    assert tags["trigger.evidence"] == "recorded"
    assert tags["trigger.detector.drift_found"] == "True"
    assert tags["trigger.detector.windows_tested"] == "4"
    assert tags["trigger.detector.drifted"] == "wine_type,residual_sugar"
    assert tags["trigger.WineQualityDegraded.evidence"] == degraded.annotations["evidence"]
    assert "trigger.WineQualityDrift.evidence" not in tags
    assert "trigger.evidence_unavailable" not in tags
    manual = trigger_tags(None, evidence, "manual")
    assert manual["trigger"] == "manual"
    assert "trigger.starts_at" not in manual


def test_alerts_and_evidence_become_artifacts_of_the_run(tmp_path: Path) -> None:
    settings = TrackingSettings(project_dir=tmp_path, mlflow_tracking_uri=None, _env_file=None)  # type: ignore[call-arg]
    client = tracking.connect(settings)
    run = client.create_run(tracking.ensure_experiment(client, settings))
    evidence = fetch_evidence(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    log_trigger(client, run.info.run_id, a_trigger(), evidence)
    docs = artifacts_of(client, run.info.run_id, tmp_path / "dl")
    assert docs["alerts.json"]["alerts"][0]["name"] == "WineQualityDrift"
    assert docs["alerts.json"]["alerts"][0]["starts_at"] == DRIFT_ALERT.starts_at
    assert docs["evidence.json"]["drift"] is None
    assert docs["evidence.json"]["unavailable"] == evidence.unavailable


def artifacts_of(client: MlflowClient, run_id: str, dest: Path) -> dict[str, dict[str, object]]:
    dest.mkdir(parents=True, exist_ok=True)
    folder = Path(client.download_artifacts(run_id, "trigger", str(dest)))
    return {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_a_retraining_run_carries_its_trigger_and_the_detector_evidence(
    tmp_path: Path, real_wines: pd.DataFrame, detector: str
) -> None:
    wines = real_wines.drop_duplicates().sample(n=900, random_state=5).reset_index(drop=True)
    base_train, base_test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    wines.iloc[:500].to_parquet(base_train, index=False)
    wines.iloc[500:700].to_parquet(base_test, index=False)
    feedback = wines.iloc[700:]
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    rows = feedback.loc[:, [*schema.FEATURE_NAMES, schema.WINE_TYPE]].to_dict("records")
    store.add([{str(k): v for k, v in r.items()} for r in rows], feedback[schema.TARGET].tolist())
    store.close()
    settings = RetrainSettings(  # type: ignore[call-arg]
        project_dir=tmp_path,
        mlflow_tracking_uri=None,
        feedback_db=tmp_path / "feedback.sqlite",
        model_dir=tmp_path / "serving" / "current",
        detector_url=detector,
        _env_file=None,
    )
    params = Params(
        train=TrainParams(search=False),
        retrain=RetrainParams(min_feedback_rows=50, reference_size=300),
    )
    result = retrain(
        settings,
        params,
        base_train=base_train,
        base_test=base_test,
        work_dir=tmp_path / "work",
        trigger=a_trigger(),
        notify=False,
    )
    assert (result.trigger, result.evidence) == ("WineQualityDrift", "recorded")
    client = tracking.connect(settings)
    assert result.version is not None
    run_id = client.get_model_version(settings.registered_model_name, result.version).run_id
    assert run_id is not None
    tags = client.get_run(run_id).data.tags
    assert tags["trigger"] == "WineQualityDrift"
    assert tags["trigger.starts_at"] == DRIFT_ALERT.starts_at
    assert tags["trigger.evidence"] == "recorded"
    docs = artifacts_of(client, run_id, tmp_path / "dl")
    assert docs["evidence.json"]["drift"]["reference_rows"] == 400  # type: ignore[index]
    assert docs["alerts.json"]["alerts"][0]["labels"]["severity"] == "warning"  # type: ignore[index]
    # The bundle's reference is a sample of the refreshed training set, not the feedback alone.
    reference = pd.read_parquet(tmp_path / "work" / "data" / "prepared" / "reference.parquet")
    train = pd.read_parquet(tmp_path / "work" / "data" / "prepared" / "train.parquet")
    assert len(reference) == 300
    assert reference.merge(train.drop_duplicates(), how="inner").shape[0] == 300
