"""The whole loop, for real: `winequality up` (MLflow, app, detector, webhook, Prometheus,
Alertmanager on loopback, 1 s intervals) around a champion built by the real DVC pipeline, driven
by `winequality simulate` with the real UCI wines: a champion trained on red wines only (white
traffic is far outside it), and one trained on both (the README's demo, in its order; and
concept drift: the same held-out wines labelled higher, caught by the app's realized quality).

Each test copies a pipeline project (built once per module) so one test's new champion never
leaks into another.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from tests.support.loop import run_simulate
from tests.support.project import make_pipeline_repo, pipeline_env, run

from winequality.process import ManagedProcess, free_port
from winequality.settings import TrackingSettings
from winequality.training import tracking

pytestmark = pytest.mark.e2e

WINDOW = 100
PIPELINE_PARAMS = {
    "prepare": {"reference_size": 500},
    "train": {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3},
    # Red vs white is far beyond any threshold; 0.01 keeps false alarms of stable windows rare.
    "drift": {"window_size": WINDOW, "p_val": 0.01},
    "retrain": {"min_feedback_rows": 50},
}


@pytest.fixture(scope="module")
def red_champion(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    """`dvc repro` on the red UCI file only: champion v1 knows no white wine."""
    source = {"data": {"source": str(shared_data_dir / "winequality-red.csv")}}
    repo = make_pipeline_repo(tmp_path_factory.mktemp("e2e") / "project", PIPELINE_PARAMS | source)
    run(["dvc", "repro"], repo, pipeline_env(repo))
    assert json.loads((repo / "reports/promotion.json").read_text())["promoted"] is True
    return repo


@pytest.fixture(scope="module")
def mixed_champion(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    """`dvc repro` on both UCI files, as `make run` with the real data: a mixed champion v1."""
    source = {"data": {"source": str(shared_data_dir)}}
    repo = make_pipeline_repo(tmp_path_factory.mktemp("e2e") / "project", PIPELINE_PARAMS | source)
    run(["dvc", "repro"], repo, pipeline_env(repo))
    assert json.loads((repo / "reports/promotion.json").read_text())["promoted"] is True
    return repo


T = TypeVar("T")


def settled(look: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 60.0) -> T:
    """``look()`` once ``done`` holds for it, else the last look after ``timeout_s`` (the
    caller's asserts then say what is wrong). The app sends the payloads and Prometheus scrapes
    after the requests were answered: what they lead to arrives when it does."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = look()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(0.5)


@dataclass
class RunningStack:
    project: Path
    run_dir: Path
    up: ManagedProcess
    urls: dict[str, str]
    pids: dict[str, int]
    env: dict[str, str]
    started_s: float

    def simulate(self, *args: str, timeout: float = 240) -> dict[str, Any]:
        return run_simulate(self.run_dir, self.project, self.env, *args, timeout_s=timeout)

    def get(self, service: str, path: str) -> Any:
        return httpx.get(f"{self.urls[service]}{path}", timeout=10).json()

    def stop_and_check(self) -> None:
        """SIGINT like Ctrl-C; `up` exits 0 and none of its children survives."""
        assert self.up.proc is not None
        os.kill(self.up.pid, signal.SIGINT)
        assert self.up.proc.wait(90) == 0, self.up.log_tail()
        log = self.up.log_file.read_text()
        for name, pid in self.pids.items():
            assert f"stopped {name}" in log
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not (self.run_dir / "stack.json").exists()


@pytest.fixture
def stack(tmp_path: Path, red_champion: Path) -> Iterator[RunningStack]:
    yield from start_stack(tmp_path, red_champion, cooldown_s=60)


@pytest.fixture
def mixed_stack(tmp_path: Path, mixed_champion: Path) -> Iterator[RunningStack]:
    # A short cool-down: an alarm after the loop closed would start a second retraining.
    yield from start_stack(tmp_path, mixed_champion, cooldown_s=5)


def start_stack(tmp_path: Path, template: Path, cooldown_s: float) -> Iterator[RunningStack]:
    project = tmp_path / "project"
    shutil.copytree(template, project, symlinks=True)
    run_dir = tmp_path / "stack"
    env = pipeline_env(project)
    ports = {
        "--app-port": free_port(),
        "--detector-port": free_port(),
        "--webhook-port": free_port(),
        "--mlflow-port": free_port(),
        "--prometheus-port": free_port(),
        "--alertmanager-port": free_port(),
    }
    cmd = [sys.executable, "-m", "winequality.cli", "up", "--run-dir", str(run_dir),
           *[str(x) for kv in ports.items() for x in kv],
           "--scrape-interval", "1s", "--evaluation-interval", "1s", "--drift-for", "1s",
           "--degraded-for", "1s",
           "--group-wait", "1s", "--group-interval", "1s",
           "--cooldown", str(cooldown_s)]  # fmt: skip
    up = ManagedProcess("up", cmd, tmp_path / "up.log", env=env, cwd=project)
    t0 = time.monotonic()
    up.start()
    try:
        deadline = time.monotonic() + 180
        while "the stack is up" not in up.log_tail(60):
            assert up.alive(), up.log_tail()
            assert time.monotonic() < deadline, up.log_tail()
            time.sleep(0.2)
        state = json.loads((run_dir / "stack.json").read_text())
        yield RunningStack(
            project, run_dir, up, state["urls"], state["pids"], env, time.monotonic() - t0
        )
    finally:
        if up.alive():
            up.stop(timeout=60)


def test_drifted_traffic_retrains_once_and_the_new_model_stops_the_alarm(
    stack: RunningStack, shared_data_dir: Path
) -> None:
    assert stack.get("app", "/metadata")["model"]["version"] == "1"
    print(f"stack up in {stack.started_s:.1f}s")

    drift = stack.simulate(
        "--scenario", "drift", "--rows", "400", "--batch", "50",
        "--data", str(shared_data_dir), "--follow", "180",
    )  # fmt: skip
    assert drift["alert_seen"], drift
    assert drift["retraining_runs"] == 1, drift
    result = drift["results"][0]
    assert result["promoted"] is True, result
    assert result["version"] == "2"
    assert result["feedback_rows"] == 400
    assert result["detector_reloaded"] is True
    assert drift["served_version"] == "2"
    assert drift["drift_reset"] is not None
    print(
        "first drifted request -> alert firing {alert_firing}s, retraining started "
        "{retrain_started}s, new version served {new_version_served}s".format(**drift)
    )
    meta = stack.get("app", "/metadata")["model"]
    assert meta["version"] == "2"
    # The bundle path is a link to a version directory (artifacts.replaced_atomically): the app
    # reports the directory it loaded, ``.v2-<stamp>.v-<suffix>``.
    assert Path(meta["source"]).name.lstrip(".").startswith("v2-")

    # The new reference is a sample of the new training set: red base and the white feedback.
    reference = pd.read_parquet(Path(meta["source"]) / "reference.parquet")
    white = (reference["wine_type"] == "white").mean()
    assert 0.05 < white < 0.5, white
    status = stack.get("webhook", "/status")
    assert len(status["runs"]) == 1, status

    stack.stop_and_check()


def test_stable_traffic_raises_no_alert_and_starts_no_retraining(stack: RunningStack) -> None:
    stable = stack.simulate(
        "--scenario", "stable", "--rows", "250", "--batch", "50", "--follow", "5",
        "--no-until-loop-closed",
    )  # fmt: skip
    # 250 rows: two full windows of 100 once every payload is in, and never a third.
    detector = settled(lambda: stack.get("detector", "/drift"), lambda d: d["windows_tested"] >= 2)
    assert detector["windows_tested"] == 2, detector
    assert detector["drift_found"] is False, detector["latest"]
    # Prometheus did scrape the detector (the absence of an alert means something).
    query = settled(
        lambda: stack.get("prometheus", "/api/v1/query?query=seldon_metric_drift_found"),
        lambda q: bool(q["data"]["result"]),
    )
    assert [r["value"][1] for r in query["data"]["result"]] == ["0"], query
    assert stable["first_drift"] is None, stable
    assert not stable["alert_seen"], stable
    assert stable["retraining_runs"] == 0
    assert stack.get("webhook", "/status")["runs"] == []
    assert stack.get("app", "/metadata")["model"]["version"] == "1"

    stack.stop_and_check()


def retraining_run(project: Path, version: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Tags and ``trigger/`` artifacts of the MLflow run behind model ``version``."""
    settings = TrackingSettings(project_dir=project, mlflow_tracking_uri=None, _env_file=None)  # type: ignore[call-arg]
    client = tracking.connect(settings)
    run_id = client.get_model_version(settings.registered_model_name, version).run_id
    assert run_id is not None
    dest = project / "downloaded"
    dest.mkdir()
    folder = Path(client.download_artifacts(run_id, "trigger", str(dest)))
    docs = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
    return client.get_run(run_id).data.tags, docs


def test_readme_demo_in_order_retrains_once_and_records_why(
    mixed_stack: RunningStack, shared_data_dir: Path
) -> None:
    """`simulate --scenario drift`, then `--scenario stable`: exactly one retraining."""
    stack = mixed_stack
    assert stack.get("app", "/metadata")["model"]["version"] == "1"
    drift = stack.simulate(
        "--scenario", "drift", "--rows", "400", "--batch", "50",
        "--data", str(shared_data_dir), "--follow", "180",
    )  # fmt: skip
    assert drift["alert_seen"], drift
    assert drift["retraining_runs"] == 1, drift
    result = drift["results"][0]
    assert result["promoted"] is True, result
    assert (result["version"], result["trigger"], result["evidence"]) == (
        "2",
        "WineQualityDrift",
        "recorded",
    ), result
    assert drift["served_version"] == "2"

    # Held-out mixed rows are what v2 was trained and validated for: no drift, no retraining.
    stable = stack.simulate(
        "--scenario", "stable", "--rows", "400", "--batch", "50", "--follow", "10",
        "--no-until-loop-closed",
    )  # fmt: skip
    detector = settled(lambda: stack.get("detector", "/drift"), lambda d: d["windows_tested"] >= 8)
    assert detector["windows_tested"] == 8, detector  # 4 drifted, 4 stable (not reset by reload)
    assert detector["drift_found"] is False, detector["latest"]
    assert stable["first_drift"] is None, stable
    assert not stable["alert_seen"], stable
    assert stable["retraining_runs"] == 0, stable
    assert len(stack.get("webhook", "/status")["runs"]) == 1
    assert stack.get("app", "/metadata")["model"]["version"] == "2"

    # The retraining's MLflow run says what started it, with the detector's evidence.
    tags, docs = retraining_run(stack.project, "2")
    assert tags["trigger"] == "WineQualityDrift", tags
    assert tags["trigger.evidence"] == "recorded", tags
    assert tags["trigger.starts_at"], tags
    alerts = docs["alerts.json"]["alerts"]
    assert [a["name"] for a in alerts] == ["WineQualityDrift"]
    assert alerts[0]["labels"]["alertname"] == "WineQualityDrift"
    evidence = docs["evidence.json"]
    assert evidence["unavailable"] is None, evidence
    assert evidence["drift"]["drift_found"] is True, evidence
    assert evidence["drift"]["windows_tested"] >= 1, evidence
    assert "wine_type" in json.dumps(evidence["drift"]), evidence

    stack.stop_and_check()


def realized(stack: RunningStack, name: str) -> dict[str, float]:
    """``winequality_<name>`` on the app's /metrics, by model version."""
    text = httpx.get(f"{stack.urls['app']}/metrics", timeout=10).text
    pattern = rf'^winequality_{name}\{{model_version="([^"]*)"\}} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE)}


def test_degraded_labels_retrain_through_the_quality_alert_and_record_why(
    mixed_stack: RunningStack,
) -> None:
    """Concept drift: held-out wines (inputs as in training) labelled +1 on half the rows."""
    stack = mixed_stack
    assert stack.get("app", "/metadata")["model"]["version"] == "1"
    degraded = stack.simulate(
        "--scenario", "degraded", "--rows", "600", "--batch", "50", "--follow", "180",
    )  # fmt: skip
    # The app's decision, then the alert through Prometheus -> Alertmanager -> webhook.
    assert degraded["first_degraded"] is not None, degraded
    assert degraded["alert"] == "WineQualityDegraded"
    assert degraded["alert_seen"], degraded
    assert degraded["first_drift"] is None, degraded  # the inputs did not move
    when = degraded["realized_when_degraded"]
    assert when["realized_labels"] >= 200, when  # quality_min_labels
    assert when["realized_rmse"] > when["champion_test_rmse"], when
    assert degraded["retraining_runs"] == 1, degraded
    result = degraded["results"][0]
    assert (result["trigger"], result["promoted"], result["version"]) == (
        "WineQualityDegraded",
        True,
        "2",
    ), result
    assert result["feedback_rows"] == 600
    assert degraded["served_version"] == "2"
    assert stack.get("app", "/metadata")["model"]["version"] == "2"
    # v2 starts its own window: the labels of v1's scores say nothing about it.
    assert realized(stack, "realized_labels") == {"2": 0.0}
    assert realized(stack, "realized_degraded") == {"2": 0.0}

    # The retraining's MLflow run names the trigger and carries the app's evidence.
    tags, docs = retraining_run(stack.project, "2")
    assert tags["trigger"] == "WineQualityDegraded", tags
    evidence = dict(kv.split("=", 1) for kv in tags["trigger.WineQualityDegraded.evidence"].split())
    assert int(float(evidence["labels"])) >= 200, evidence  # quality_min_labels
    assert float(evidence["realized_rmse"]) > float(evidence["test_rmse"]), evidence
    assert float(evidence["bias_z"]) >= float(evidence["bias_z_threshold"]), evidence
    alerts = docs["alerts.json"]["alerts"]
    assert [a["name"] for a in alerts] == ["WineQualityDegraded"]
    assert alerts[0]["labels"]["model_version"] == "1"
    assert len(stack.get("webhook", "/status")["runs"]) == 1

    stack.stop_and_check()
