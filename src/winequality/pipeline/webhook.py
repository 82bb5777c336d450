"""The Alertmanager webhook receiver that starts the retraining job.

Alertmanager retries a webhook until it answers 2xx and re-sends firing alerts every
``repeat_interval``, so the receiver must be idempotent: one retraining at a time, duplicates and
repeats acknowledged (200) but not queued, and a cool-down after each run so a drift alert that is
still firing while the new model settles does not start a second run.

The job runs as a child process (``WebhookSettings.command``): the webhook stays small and never
imports the training stack, and a crashing job cannot take the receiver down. The alerts that
started it (name, labels, annotations, ``startsAt``) go to the job in a JSON file beside its log,
named by ``WINEQ_RETRAIN_TRIGGER_FILE`` (``pipeline.trigger``), so its MLflow run records them.

A command that cannot be started (missing, not executable) is recorded in ``/status`` as a run
with its ``error`` and answered 503 ``{"detail": {"reason": "retrain_not_started", ...}}``: not
the alert's fault, and Alertmanager retries a 5xx, so the retraining starts once the job is
fixed. No cool-down follows a run that never started.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, ValidationError

from winequality.http_common import (
    BodyError,
    TokenDep,
    install_error_handling,
    read_request_body,
    set_token,
)
from winequality.pipeline.trigger import (
    TRIGGER_FILE_ENV,
    Trigger,
    TriggerAlert,
    now,
    write_trigger,
)
from winequality.serving.schemas import inline_json_schema
from winequality.settings import WebhookSettings

Action = Literal["started", "already_running", "cooling_down", "ignored"]


class RetrainStartError(RuntimeError):
    """The retraining command could not be started (recorded in ``Retrainer.runs``)."""


MAX_ALERT_BODY: Final = 1_000_000
"""Largest Alertmanager notification read: a group of alerts with their labels, far below it."""


class Alert(BaseModel):
    """One alert of Alertmanager's webhook payload (only the fields we use are required)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: str | None = None  # noqa: N815 (Alertmanager's field name)
    fingerprint: str | None = None


class AlertmanagerPayload(BaseModel):
    """Alertmanager webhook body, version 4."""

    model_config = ConfigDict(extra="allow")
    version: str
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""  # noqa: N815 (Alertmanager's field name)
    alerts: list[Alert]


@dataclass
class RunRecord:
    started_at: str
    reason: str
    pid: int | None
    """None when the command did not start (see ``error``)."""
    trigger_file: str | None = None
    """The alerts handed to the job (``pipeline.trigger``), if any."""
    finished_at: str | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    """The last JSON object the job printed (its summary), if any."""
    error: str | None = None
    """Why the command did not start (then nothing ran)."""


@dataclass
class Retrainer:
    """Runs the retraining command at most once at a time, with a cool-down after each run."""

    command: Sequence[str]
    cooldown_s: float
    log_dir: Path
    env: dict[str, str] | None = None
    runs: list[RunRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _proc: subprocess.Popen[bytes] | None = None
    _cooldown_until: float = 0.0

    def state(self) -> Literal["idle", "running", "cooling_down"]:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> Literal["idle", "running", "cooling_down"]:
        if self._proc is not None:
            return "running"
        if time.monotonic() < self._cooldown_until:
            return "cooling_down"
        return "idle"

    def trigger(self, reason: str, alerts: Trigger | None = None) -> Action:
        """Start the job unless one runs or the cool-down is on; never blocks on the job.

        ``alerts`` (what Alertmanager sent) is written beside the run's log for the job to read.
        """
        with self._lock:
            current = self._state_locked()
            if current == "running":
                return "already_running"
            if current == "cooling_down":
                return "cooling_down"
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            log_path = self.log_dir / f"retrain-{stamp}.log"
            env = dict(self.env if self.env is not None else os.environ)
            trigger_file = None
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                if alerts is not None:
                    trigger_file = write_trigger(
                        self.log_dir / f"retrain-{stamp}.trigger.json", alerts
                    )
                    env[TRIGGER_FILE_ENV] = str(trigger_file.absolute())
                with log_path.open("wb") as log:
                    self._proc = subprocess.Popen(
                        list(self.command),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
            except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the command
                failed = datetime.now(UTC).isoformat()
                error = f"cannot start {list(self.command)}: {exc}"
                self.runs.append(
                    RunRecord(
                        failed,
                        reason,
                        None,
                        str(trigger_file) if trigger_file else None,
                        finished_at=failed,
                        error=error,
                    )
                )
                raise RetrainStartError(error) from exc
            record = RunRecord(
                datetime.now(UTC).isoformat(),
                reason,
                self._proc.pid,
                str(trigger_file) if trigger_file else None,
            )
            self.runs.append(record)
            threading.Thread(
                target=self._wait, args=(self._proc, record, log_path), daemon=True
            ).start()
            return "started"

    def _wait(self, proc: subprocess.Popen[bytes], record: RunRecord, log_path: Path) -> None:
        code = proc.wait()
        with self._lock:
            record.exit_code = code
            record.finished_at = datetime.now(UTC).isoformat()
            record.result = _last_json_object(log_path)
            self._proc = None
            self._cooldown_until = time.monotonic() + self.cooldown_s

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self._state_locked(),
                "runs": [asdict(r) for r in self.runs],
                "cooldown_remaining_s": max(0.0, self._cooldown_until - time.monotonic()),
            }

    def stop(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def _last_json_object(log_path: Path) -> dict[str, Any] | None:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        line = raw.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def create_app(settings: WebhookSettings, retrainer: Retrainer) -> FastAPI:
    """The webhook app: ``POST /alerts`` (Alertmanager), ``GET /status``, health."""
    app = FastAPI(title="winequality retraining webhook", version="1")
    set_token(app, settings.token, "set WINEQ_WEBHOOK_TOKEN on the webhook")
    install_error_handling(app)

    @app.post(
        "/alerts",
        responses={
            401: {"description": "Missing or wrong bearer token."},
            413: {"description": "Body too large."},
            415: {"description": "Content type is not application/json."},
            422: {"description": "Not an Alertmanager webhook payload."},
            503: {"description": "The retraining command could not be started (recorded)."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    # Inlined: a "#/$defs/Alert" reference would point at nothing in OpenAPI.
                    "application/json": {"schema": inline_json_schema(AlertmanagerPayload)}
                },
            }
        },
    )
    async def alerts(request: Request, _: TokenDep) -> dict[str, Any]:
        # The body is read here, after TokenDep: an unauthenticated client cannot make us read it.
        try:
            raw = await read_request_body(request, MAX_ALERT_BODY)
            payload = AlertmanagerPayload.model_validate_json(raw)
        except BodyError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise HTTPException(422, [{**e, "loc": ["body", *e["loc"]]} for e in errors]) from exc
        firing = [
            a
            for a in payload.alerts
            if a.status == "firing" and a.labels.get("alertname") in settings.alerts
        ]
        if not firing:
            return {"action": "ignored", "reason": "no firing alert that triggers retraining"}
        names = sorted({a.labels["alertname"] for a in firing})
        handed = Trigger(
            alerts=[
                TriggerAlert(
                    name=a.labels["alertname"],
                    labels=a.labels,
                    annotations=a.annotations,
                    starts_at=a.startsAt,
                    fingerprint=a.fingerprint,
                )
                for a in firing
            ],
            received_at=now(),
            receiver=payload.receiver,
            group_key=payload.groupKey,
        )
        # trigger starts a process: off the event loop.
        try:
            action = await run_in_threadpool(retrainer.trigger, ",".join(names), handed)
        except RetrainStartError as exc:
            raise HTTPException(
                503, {"reason": "retrain_not_started", "message": str(exc), "alerts": names}
            ) from exc
        return {"action": action, "alerts": names, "state": retrainer.state()}

    @app.get("/status")
    def status_() -> dict[str, Any]:
        return retrainer.status()

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app
