"""The compose stack, for real: `deploy/compose.yaml` run by Debian's docker-compose on a real
engine, from the images built from this tree, with the configs of `winequality up
--compose-config` (free loopback ports, 1 s intervals) around a champion trained by the real DVC
pipeline on red wines only. White traffic through it ends with a retraining inside the webhook's
container, on the labels the app wrote into the stack's PostgreSQL, and the new version served;
`docker-compose down` leaves no container behind.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from tests.support.docker import (
    BuiltImage,
    DockerEngine,
    build_context,
    ensure_base_image,
    image_summary,
)
from tests.support.loop import run_simulate
from tests.support.project import make_pipeline_repo, pipeline_env, run

from winequality.compose import COMPOSE_FILE
from winequality.process import free_port

pytestmark = pytest.mark.e2e

IMAGES = {"app": None, "detector": None, "trainer": None, "prometheus": "debian",
          "alertmanager": "debian", "postgres": "debian"}  # fmt: skip
"""The stack's images and their build target (Prometheus, Alertmanager and PostgreSQL: Debian's
packages)."""
PIPELINE_PARAMS = {
    "prepare": {"reference_size": 500},
    "train": {"alpha_grid": [0.001, 0.01], "l1_ratio_grid": [0.5, 1.0], "cv_folds": 3},
    "drift": {"window_size": 100, "p_val": 0.01},
    "retrain": {"min_feedback_rows": 50},
}
READY = {
    "app": "/health/ready",
    "detector": "/health/ready",
    "webhook": "/health/ready",
    "mlflow": "/health",
    "prometheus": "/-/ready",
    "alertmanager": "/-/ready",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    engine = DockerEngine.acquire()
    try:
        yield engine
    finally:
        engine.release()


@pytest.fixture(scope="module")
def images(
    engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Future[dict[str, BuiltImage]]]:
    """The stack's images, built offline from this tree under this session's tags (the
    container tests' builds leave their layers cached), in the background while the pipeline
    trains the champion."""
    context = build_context(tmp_path_factory.mktemp("compose-context"))

    def build() -> dict[str, BuiltImage]:
        t0 = time.monotonic()
        ensure_base_image(engine)
        built = {
            name: engine.build(f"{name}.Dockerfile", f"wqtest-compose-{name}:{os.getpid()}",
                               context, target=target)
            for name, target in IMAGES.items()
        }  # fmt: skip
        print(f"compose images built in {time.monotonic() - t0:.1f}s")
        return built

    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(build)


@pytest.fixture(scope="module")
def red_champion(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    t0 = time.monotonic()
    source = {"data": {"source": str(shared_data_dir / "winequality-red.csv")}}
    repo = make_pipeline_repo(
        tmp_path_factory.mktemp("compose") / "project", PIPELINE_PARAMS | source
    )
    run(["dvc", "repro"], repo, pipeline_env(repo))
    assert json.loads((repo / "reports/promotion.json").read_text())["promoted"] is True
    print(f"champion pipeline in {time.monotonic() - t0:.1f}s")
    return repo


class Compose:
    """``docker-compose`` on the run's files, as a distinct compose project."""

    def __init__(self, engine: DockerEngine, run_dir: Path, images: dict[str, BuiltImage]) -> None:
        self.engine = engine
        self.project = f"wqtest-compose-{secrets.token_hex(4)}"
        self.env = {k: v for k, v in engine.env.items() if not k.startswith("WINEQ_")}
        self.env |= {f"WINEQ_{name.upper()}_IMAGE": i.tag for name, i in images.items()}
        self.env_file = run_dir / "compose.env"

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        cmd = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE),
               "--env-file", str(self.env_file), *args]  # fmt: skip
        proc = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check:
            assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout + proc.stderr

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return self.engine.docker("ps", "-a", "-q", "--filter", label).stdout.split()


def wait_ready(compose: Compose, urls: dict[str, str], names: list[str]) -> None:
    waiting = set(names)
    deadline = time.monotonic() + 180
    while waiting:
        for name in sorted(waiting):
            try:
                if httpx.get(urls[name] + READY[name], timeout=2).status_code == 200:
                    waiting.discard(name)
            except httpx.HTTPError:
                pass
        assert time.monotonic() < deadline, f"not ready: {waiting}\n{compose('logs')}"
        time.sleep(0.5)


@pytest.fixture
def compose_stack(
    tmp_path: Path,
    engine: DockerEngine,
    images: Future[dict[str, BuiltImage]],
    red_champion: Path,
) -> Iterator[tuple[Compose, dict[str, str], Path]]:
    # The project itself, not a copy: its MLflow store names its artifact folder by absolute
    # path, and the containers see only the project (the module's one test may change it).
    project = red_champion
    env = pipeline_env(project)
    run_dir = tmp_path / "compose"
    ports = [f"--{name}-port" for name in [*READY, "postgres"]]
    cmd = [sys.executable, "-m", "winequality.cli", "up", "--compose-config", str(run_dir),
           *[str(x) for p in ports for x in (p, free_port())],
           "--scrape-interval", "1s", "--evaluation-interval", "1s", "--drift-for", "1s",
           "--degraded-for", "1s", "--group-wait", "1s", "--group-interval", "1s",
           "--cooldown", "60"]  # fmt: skip
    run(cmd, project, env)
    urls: dict[str, str] = json.loads((run_dir / "stack.json").read_text())["urls"]
    compose = Compose(engine, run_dir, images.result())
    compose("config", "-q")  # the file and its variables, as this docker-compose reads them
    try:
        t0 = time.monotonic()
        compose("up", "-d")
        # MLflow, the slowest to start, serves only the UI and API here (the jobs open the store
        # itself): the traffic need not wait for it; the test asks it at the end.
        wait_ready(compose, urls, [name for name in READY if name != "mlflow"])
        print(f"compose stack up in {time.monotonic() - t0:.1f}s")
        yield compose, urls, run_dir
    finally:
        if compose.containers():
            print(compose("logs", "--tail", "30", check=False)[-6000:])
            compose("down", "--timeout", "10", check=False)


def simulate(project: Path, run_dir: Path, *args: str) -> dict[str, Any]:
    return run_simulate(run_dir, project, pipeline_env(project), *args)


def test_drift_through_the_compose_stack_retrains_serves_the_new_version_and_down_cleans_up(
    compose_stack: tuple[Compose, dict[str, str], Path],
    red_champion: Path,
    shared_data_dir: Path,
    images: Future[dict[str, BuiltImage]],
    record_property: Callable[[str, object], None],
) -> None:
    for name in ("prometheus", "alertmanager", "postgres"):  # the others': the container tests'
        record_property("image", image_summary(images.result()[name]))
    project = red_champion
    compose, urls, run_dir = compose_stack
    assert httpx.get(f"{urls['app']}/metadata").json()["model"]["version"] == "1"

    drift = simulate(
        project, run_dir,
        "--scenario", "drift", "--rows", "400", "--batch", "50",
        "--data", str(shared_data_dir), "--follow", "180",
    )  # fmt: skip
    assert drift["alert_seen"], drift
    assert drift["retraining_runs"] == 1, drift
    result = drift["results"][0]
    assert (result["promoted"], result["version"], result["trigger"]) == (
        True,
        "2",
        "WineQualityDrift",
    ), result
    assert result["feedback_rows"] == 400
    assert result["detector_reloaded"] is True
    assert drift["served_version"] == "2"
    assert httpx.get(f"{urls['app']}/metadata").json()["model"]["version"] == "2"
    # The job ran in the webhook's container and wrote into the stack's volumes on the host.
    (bundle,) = (run_dir / "models" / "bundles").glob("v2-*")
    assert result["model_dir"] == f"/var/lib/winequality/models/bundles/{bundle.name}"
    # The labels went through the app into the stack's PostgreSQL, where the job read them.
    stack_env = (run_dir / "stack.env").read_text().splitlines()
    (url,) = [ln.split("=", 1)[1] for ln in stack_env if ln.startswith("WINEQ_DATABASE_URL=")]
    with psycopg.connect(url, connect_timeout=5) as conn:
        (labels,) = conn.execute("SELECT count(*) FROM feedback").fetchone() or (0,)
    assert labels == result["feedback_rows"] == 400
    assert not (run_dir / "feedback" / "feedback.sqlite").exists()
    assert list((run_dir / "logs" / "retrain").glob("retrain-*.log"))

    # The MLflow service serves the store the job registered v2 in, as the champion.
    wait_ready(compose, urls, ["mlflow"])
    alias = httpx.get(
        f"{urls['mlflow']}/api/2.0/mlflow/registered-models/alias",
        params={"name": "wine-quality", "alias": "champion"},
        timeout=10,
    )
    assert alias.status_code == 200, alias.text
    assert alias.json()["model_version"]["version"] == "2"

    t0 = time.monotonic()
    compose("down", "--timeout", "10")
    assert compose.containers() == []
    print(f"docker-compose down in {time.monotonic() - t0:.1f}s")
