"""The three HTTP services started as deployed (their CLI, uvicorn, a loopback port), for the
hostile-input, schemathesis and memory tests.

Each ``start_*`` returns a started ``Service`` (a ``ManagedProcess`` plus its base URL); use it
as a context manager so it is stopped by PID whatever the test does.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from winequality.process import ManagedProcess, free_port

APP_TOKEN = "hostile-admin-token"
DETECTOR_TOKEN = "hostile-detector-token"
WEBHOOK_TOKEN = "hostile-webhook-token"
# The loop's input tokens as deployed: the app's feedback token is its admin token and the
# detector's ingestion token its admin token, so one bearer header (schemathesis') opens all.
FEEDBACK_TOKEN = APP_TOKEN
INGEST_TOKEN = DETECTOR_TOKEN


@dataclass
class Service:
    process: ManagedProcess
    url: str

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop()

    @property
    def pid(self) -> int:
        return self.process.pid


def _start(name: str, cmd: list[str], root: Path, env: Mapping[str, str], ready: str) -> Service:
    port = free_port()
    process = ManagedProcess(
        name, [*cmd, "--port", str(port)], root / f"{name}.log", {**os.environ, **env}, cwd=root
    )
    url = f"http://127.0.0.1:{port}"
    process.start()
    try:
        process.wait_ready(url=f"{url}{ready}", timeout=90)
    except BaseException:
        process.stop()
        raise
    return Service(process, url)


def start_app(root: Path, bundle: Path, **env: str) -> Service:
    """``winequality serve`` on a copy of ``bundle``, with the admin token set."""
    root.mkdir(parents=True, exist_ok=True)
    model_dir = root / "model"
    if not model_dir.exists():
        shutil.copytree(bundle, model_dir)
    cmd = [sys.executable, "-m", "winequality.cli", "serve", "--model-dir", str(model_dir)]
    settings = {
        "WINEQ_ADMIN_TOKEN": APP_TOKEN,
        "WINEQ_FEEDBACK_TOKEN": FEEDBACK_TOKEN,
        "WINEQ_FEEDBACK_DB": str(root / "feedback.db"),
        "WINEQ_RELOAD_WATCH_S": "0",
        **env,
    }
    return _start("app", [*cmd, "--log-level", "warning"], root, settings, "/health/ready")


def start_detector(root: Path, wines: pd.DataFrame, window: int = 200, **env: str) -> Service:
    """``winequality drift serve`` on a reference sample of ``wines``, calibrated (ready)."""
    root.mkdir(parents=True, exist_ok=True)
    reference = root / "reference.parquet"
    wines.sample(1000, random_state=0).to_parquet(reference)
    params = root / "params.yaml"
    params.write_text(f"drift:\n  window_size: {window}\n  p_val: 0.05\n")
    cmd = [
        sys.executable, "-m", "winequality.cli", "drift", "serve",
        "--reference", str(reference), "--params", str(params),
    ]  # fmt: skip
    settings = {
        "WINEQ_DRIFT_ADMIN_TOKEN": DETECTOR_TOKEN,
        "WINEQ_DRIFT_INGEST_TOKEN": INGEST_TOKEN,
        **env,
    }
    return _start("detector", cmd, root, settings, "/health/ready")


def start_webhook(root: Path, command: list[str], **env: str) -> Service:
    """``winequality webhook`` whose retraining job is ``command``."""
    root.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "winequality.cli", "webhook", "--log-dir", str(root / "logs"),
    ]  # fmt: skip
    settings = {
        "WINEQ_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "WINEQ_WEBHOOK_COMMAND": json.dumps(command),
        "WINEQ_WEBHOOK_COOLDOWN_S": "0",
        **env,
    }
    return _start("webhook", cmd, root, settings, "/health/ready")


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of a process: the peak of its resident set since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
