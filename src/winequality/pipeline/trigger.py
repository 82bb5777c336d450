"""What started a retraining, and the evidence for it, carried from the webhook to the MLflow run.

The webhook writes the firing alerts it acted on (name, labels, annotations, ``startsAt``) to a
JSON file and names it to the job in ``TRIGGER_FILE_ENV``. The job reads it, fetches the
detector's ``GET /drift`` (the windows and statistics behind the alarm) while the detector still
holds the alarm state (before the retraining reloads its reference), and records both on the
retraining's MLflow run: the ``trigger`` tag is the alert name(s), the evidence goes in
``EVIDENCE_ARTIFACT``. A detector that is down does not stop the retraining: the record says the
evidence was unavailable and why.

Only the standard library and httpx: the webhook imports this and must stay small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRIGGER_FILE_ENV: Final = "WINEQ_RETRAIN_TRIGGER_FILE"
"""Environment variable naming the trigger file the webhook wrote for the job it starts."""
TRIGGER_ARTIFACT_DIR: Final = "trigger"
ALERTS_ARTIFACT: Final = "alerts.json"
EVIDENCE_ARTIFACT: Final = "evidence.json"
TAG_MAX: Final = 5000
"""MLflow's limit on a tag value (longer values are refused by the store)."""


@dataclass(frozen=True)
class TriggerAlert:
    """One firing alert as Alertmanager sent it."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Trigger:
    """The alerts that started one retraining, as received by the webhook."""

    alerts: list[TriggerAlert]
    received_at: str
    receiver: str = ""
    group_key: str = ""

    @property
    def name(self) -> str:
        """The ``trigger`` tag: the alert names, comma-separated (one in the usual case)."""
        return ",".join(sorted({a.name for a in self.alerts}))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """The detector's ``/drift`` document at the start of the job, or why it is missing."""

    source: str | None
    fetched_at: str
    drift: dict[str, Any] | None = None
    unavailable: str | None = None
    """Why there is no evidence (no detector configured, unreachable, non-200 answer)."""

    @property
    def note(self) -> str:
        """``recorded`` or ``unavailable: <why>``, for the job's summary line."""
        return "recorded" if self.drift is not None else f"unavailable: {self.unavailable}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    return datetime.now(UTC).isoformat()


def write_trigger(path: Path, trigger: Trigger) -> Path:
    """The trigger file the job reads (written before the job starts, never changed after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trigger.as_dict(), indent=2, sort_keys=True))
    return path


def read_trigger(path: Path) -> Trigger:
    """Parse a trigger file; a missing or malformed one is a ValueError naming the file."""
    try:
        doc = json.loads(path.read_text())
        alerts = [TriggerAlert(**a) for a in doc["alerts"]]
        return Trigger(
            alerts=alerts,
            received_at=str(doc["received_at"]),
            receiver=str(doc.get("receiver", "")),
            group_key=str(doc.get("group_key", "")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a retraining trigger file ({exc})") from exc


def fetch_evidence(detector_url: str | None, timeout_s: float = 10.0) -> Evidence:
    """``GET {detector_url}/drift``; never raises: an unavailable detector is recorded as such."""
    import httpx

    if not detector_url:
        return Evidence(None, now(), unavailable="no detector configured (WINEQ_DETECTOR_URL)")
    url = f"{detector_url.rstrip('/')}/drift"
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Evidence(url, now(), unavailable=f"{type(exc).__name__}: {exc}")
    if resp.status_code != 200:
        return Evidence(url, now(), unavailable=f"answered {resp.status_code}: {resp.text[:500]}")
    try:
        doc = resp.json()
    except ValueError as exc:
        return Evidence(url, now(), unavailable=f"answered 200 but not JSON: {exc}")
    if not isinstance(doc, dict):
        return Evidence(url, now(), unavailable="answered 200 but not a JSON object")
    return Evidence(url, now(), drift=doc)


def trigger_tags(trigger: Trigger | None, evidence: Evidence, fallback: str) -> dict[str, str]:
    """The run's tags: ``trigger`` (alert names, or ``fallback`` for a manual run) and a summary.

    The full documents go in artifacts; tags carry what one filters runs by in the MLflow UI.
    """
    tags: dict[str, str] = {"trigger": trigger.name if trigger else fallback}
    if trigger is not None:
        starts = sorted(a.starts_at for a in trigger.alerts if a.starts_at)
        if starts:
            tags["trigger.starts_at"] = starts[0]
        tags["trigger.received_at"] = trigger.received_at
        summaries = [a.annotations.get("summary", "") for a in trigger.alerts]
        if any(summaries):
            tags["trigger.summary"] = " | ".join(s for s in summaries if s)[:TAG_MAX]
        # An alert that states its own evidence (WineQualityDegraded: the app's statistics when
        # it fired) gets it as a tag: the detector's /drift says nothing about labels.
        for alert in trigger.alerts:
            if alert.annotations.get("evidence"):
                tags[f"trigger.{alert.name}.evidence"] = alert.annotations["evidence"][:TAG_MAX]
    tags["trigger.evidence"] = "recorded" if evidence.drift is not None else "unavailable"
    if evidence.unavailable:
        tags["trigger.evidence_unavailable"] = evidence.unavailable[:TAG_MAX]
    if evidence.drift is not None:
        drift = evidence.drift
        for key in ("drift_found", "windows_tested"):
            if key in drift:
                tags[f"trigger.detector.{key}"] = str(drift[key])
        latest = drift.get("latest")
        if isinstance(latest, Mapping) and isinstance(latest.get("drifted"), Sequence):
            tags["trigger.detector.drifted"] = ",".join(map(str, latest["drifted"]))[:TAG_MAX]
    return tags


def log_trigger(
    client: MlflowClient, run_id: str, trigger: Trigger | None, evidence: Evidence
) -> None:
    """Log the alerts and the evidence as JSON artifacts of the run (``trigger/``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, dict[str, Any]] = {EVIDENCE_ARTIFACT: evidence.as_dict()}
        if trigger is not None:
            files[ALERTS_ARTIFACT] = trigger.as_dict()
        for name, doc in files.items():
            path = Path(tmp) / name
            path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
            client.log_artifact(run_id, str(path), artifact_path=TRIGGER_ARTIFACT_DIR)
