"""`winequality up`: tools, lock, params, environment, plan, and the start of real (tiny)
services and jobs in the order their dependencies allow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from winequality.monitoring.alerting_config import write_alerting_configs
from winequality.process import free_port
from winequality.settings import RetrainSettings
from winequality.stack import (
    CHAMPION_JOB,
    INSTALL_HINT,
    JobSpec,
    Ports,
    RunPaths,
    ServiceSpec,
    Stack,
    StackConfig,
    StackError,
    StackRunningError,
    Tools,
    find_tools,
    plan,
    read_feedback_token,
    run_lock,
    run_params,
    service_env,
    urls,
    write_token,
)


def test_missing_prometheus_tools_say_how_to_install_them() -> None:
    with pytest.raises(StackError) as err:
        find_tools(lambda name: "/usr/bin/prometheus" if name == "prometheus" else None)
    assert "prometheus-alertmanager not found" in str(err.value)
    assert "sudo apt-get install prometheus prometheus-alertmanager" in INSTALL_HINT
    assert "make system-deps" in str(err.value)


def test_alertmanager_is_found_under_either_name() -> None:
    tools = find_tools(lambda name: f"/opt/{name}" if name != "prometheus-alertmanager" else None)
    assert tools == Tools("/opt/prometheus", "/opt/alertmanager")


def test_a_second_up_on_the_same_run_dir_is_refused_with_the_pid(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)
    (tmp_path / "stack.json").write_text(json.dumps({"urls": {"app": "http://127.0.0.1:1"}}))
    with run_lock(tmp_path, config):
        with pytest.raises(StackRunningError) as err, run_lock(tmp_path, config):
            pass
        assert err.value.pid == os.getpid()
        assert f"pid {os.getpid()}" in str(err.value)
        assert "http://127.0.0.1:1" in str(err.value)
    # Released: the next run may start.
    with run_lock(tmp_path, config):
        pass


def test_a_lock_held_by_another_process_is_detected(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); f.flush(); print('held', flush=True); "
         "time.sleep(30)", str(tmp_path / "stack.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StackRunningError) as err, run_lock(tmp_path, StackConfig(tmp_path)):
            pass
        assert err.value.pid == 4242
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # The holder died: its lock went with it, although the file (and its PID) remain.
    with run_lock(tmp_path, StackConfig(tmp_path)):
        pass


def test_stale_lock_file_of_a_dead_run_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "stack.lock").write_text("999999")
    with run_lock(tmp_path, StackConfig(tmp_path)) as handle:
        handle.seek(0)
        assert handle.read() == str(os.getpid())


def test_run_params_override_the_window_and_are_validated(tmp_path: Path) -> None:
    base = tmp_path / "params.yaml"
    base.write_text(yaml.safe_dump({"drift": {"window_size": 200, "p_val": 0.01}}))
    assert run_params(base, 50)["drift"] == {"window_size": 50, "p_val": 0.01}
    assert run_params(base, None)["drift"]["window_size"] == 200
    with pytest.raises(ValueError, match="window_size"):
        run_params(base, 1)


def test_every_service_gets_the_run_tokens_urls_and_paths(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path / "run", ports=Ports(app=18000, detector=18010))
    paths = RunPaths(config.run_dir)
    env = service_env(
        config,
        settings=RetrainSettings(project_dir=tmp_path),
        paths=paths,
        admin_token="adm",
        webhook_token="hook",
        base_env={"PATH": "/bin"},
        feedback_token="fb",
        ingest_token="ing",
    )
    assert env["WINEQ_FEEDBACK_TOKEN"] == "fb"
    assert env["WINEQ_DRIFT_INGEST_TOKEN"] == "ing"  # the detector's and the app's logger's
    assert env["WINEQ_ADMIN_TOKEN"] == "adm"
    assert env["WINEQ_DRIFT_ADMIN_TOKEN"] == "adm"
    assert env["WINEQ_WEBHOOK_TOKEN"] == "hook"
    assert env["WINEQ_DETECTOR_URL"] == "http://127.0.0.1:18010"
    assert env["WINEQ_APP_URL"] == "http://127.0.0.1:18000"
    assert env["WINEQ_MODEL_DIR"] == str(paths.current.absolute())
    assert env["WINEQ_FEEDBACK_DB"] == str((paths.run_dir / "feedback.sqlite").absolute())
    assert json.loads(env["WINEQ_WEBHOOK_COMMAND"])[-1] == "retrain"
    assert env["PATH"] == "/bin"
    explicit = RetrainSettings(project_dir=tmp_path, feedback_db=tmp_path / "fb.sqlite")
    env = service_env(
        config,
        settings=explicit,
        paths=paths,
        admin_token="a",
        webhook_token="w",
        base_env={},
    )
    assert env["WINEQ_FEEDBACK_DB"] == str(tmp_path / "fb.sqlite")


def test_the_feedback_token_file_is_private_and_simulate_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WINEQ_FEEDBACK_TOKEN", raising=False)
    paths = RunPaths(tmp_path / "run")
    assert read_feedback_token(paths.run_dir) is None
    write_token(paths.feedback_token, "t0k")
    assert paths.feedback_token.stat().st_mode & 0o777 == 0o600
    assert read_feedback_token(paths.run_dir) == "t0k"
    monkeypatch.setenv("WINEQ_FEEDBACK_TOKEN", "from-env")
    assert read_feedback_token(paths.run_dir) == "from-env"


def test_plan_starts_every_service_on_loopback_with_its_port(tmp_path: Path) -> None:
    ports = Ports(18000, 18010, 18082, 15000, 19090, 19093)
    config = StackConfig(run_dir=tmp_path / "run", ports=ports)
    paths = RunPaths(config.run_dir)
    alerting = write_alerting_configs(
        tmp_path / "alerting",
        app_port=ports.app,
        detector_port=ports.detector,
        alertmanager_port=ports.alertmanager,
        webhook_url=f"{urls(config)['webhook']}/alerts",
        webhook_token="hook",
    )
    specs = plan(
        config,
        settings=RetrainSettings(project_dir=tmp_path),
        paths=paths,
        tools=Tools("/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager"),
        env={},
        alerting=alerting,
    )
    names = [s.name for s in specs]
    assert names == ["mlflow", "detector", "app", "webhook", "alertmanager", "prometheus"]
    by_name = {s.name: s for s in specs}
    for name, port in (("app", 18000), ("detector", 18010), ("webhook", 18082)):
        assert str(port) in by_name[name].cmd
        assert by_name[name].ready_url.startswith(f"http://127.0.0.1:{port}/")
    assert "--web.listen-address=127.0.0.1:19090" in by_name["prometheus"].cmd
    assert "--cluster.listen-address=" in by_name["alertmanager"].cmd
    assert by_name["mlflow"].cmd[by_name["mlflow"].cmd.index("--backend-store-uri") + 1] == (
        RetrainSettings(project_dir=tmp_path).tracking_uri()
    )
    # The job runner serves GenAI jobs the stack never submits.
    assert by_name["mlflow"].env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # Only the app and the detector need the model; nothing waits for MLflow.
    assert {s.name for s in specs if s.after} == {"app", "detector"}
    assert all(s.after == (CHAMPION_JOB,) for s in specs if s.after)
    no_ui = plan(
        StackConfig(run_dir=config.run_dir, ports=ports, mlflow=False),
        settings=RetrainSettings(project_dir=tmp_path),
        paths=paths,
        tools=Tools("p", "a"),
        env={},
        alerting=alerting,
    )
    assert "mlflow" not in [s.name for s in no_ui]


def http_service(
    name: str, tmp_path: Path, delay_s: float = 0.0, needs: Path | None = None
) -> ServiceSpec:
    """A real HTTP server on a free port, answering after ``delay_s``; with ``needs``, it exits
    at once unless that file exists (as the app does without its model)."""
    port = free_port()
    code = (
        "import http.server, os, sys, time\n"
        f"if {str(needs)!r} != 'None' and not os.path.exists({str(needs)!r}): sys.exit(3)\n"
        f"time.sleep({delay_s})\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()\n"
    )
    return ServiceSpec(
        name, [sys.executable, "-c", code], f"http://127.0.0.1:{port}/", {**os.environ},
        timeout_s=30, after=("model",) if needs else (),
    )  # fmt: skip


def test_each_service_is_reported_when_it_is_ready_with_progress_meanwhile(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    stack = Stack(tmp_path / "logs", progress_every_s=0.5)
    try:
        stack.start(
            [http_service("slow", tmp_path, delay_s=2.5), http_service("fast", tmp_path)],
            lines.append,
        )
    finally:
        stack.stop(lines.append)
    ready = [line.split() for line in lines if "ready after" in line]
    assert [r[0] for r in ready] == ["fast", "slow"]
    fast_s, slow_s = (float(r[3].removesuffix("s")) for r in ready)
    assert fast_s < slow_s
    assert slow_s >= 2.5  # its own time, not the time of the last one
    # Progress while waiting, naming only what is still awaited.
    after_fast = lines[lines.index(next(x for x in lines if x.startswith("  fast"))) :]
    progress = [line for line in after_fast if "waiting for" in line]
    assert progress
    assert all("slow" in line and "fast" not in line for line in progress)


def test_a_service_starts_only_once_the_job_it_needs_has_finished(tmp_path: Path) -> None:
    marker, other_ready = tmp_path / "model", tmp_path / "other-ready"
    # The job finishes only once "other" has been reported ready: that order is the test's, not
    # a race between a server's start and a sleep; "other" needing the job would time it out.
    job = JobSpec(
        "model",
        [sys.executable, "-c",
         "import pathlib, sys, time\n"
         "deadline = time.monotonic() + 60\n"
         f"while not pathlib.Path({str(other_ready)!r}).exists():\n"
         "    if time.monotonic() > deadline: sys.exit('other was never reported ready')\n"
         "    time.sleep(0.05)\n"
         f"pathlib.Path({str(marker)!r}).write_text('m')\n"],
        {**os.environ},
        finish=lambda: "written",
        failure=lambda last: f"failed: {last}",
    )  # fmt: skip
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.split(maxsplit=1)[0] == "other" and "ready after" in line:
            other_ready.touch()

    # No progress notes: a slow start must not add lines to the order checked below.
    stack = Stack(tmp_path / "logs", progress_every_s=3600)
    try:
        stack.start(
            [http_service("app", tmp_path, needs=marker), http_service("other", tmp_path)],
            echo,
            jobs=[job],
        )
        assert [line.split()[0] for line in lines] == ["other", "model", "app"]
        assert "written after" in lines[1]
        assert [p.name for p in stack.started] == ["other", "app"]
    finally:
        stack.stop(lines.append)
    assert {line.split()[1] for line in lines if "stopped" in line} == {"other", "app"}


def test_a_failed_job_stops_the_start_with_its_last_line(tmp_path: Path) -> None:
    job = JobSpec(
        "model",
        [sys.executable, "-c", "import sys; print('downloading'); "
         "print('error: no version has alias champion'); sys.exit(1)"],
        {**os.environ},
        finish=lambda: "never",
        failure=lambda last: f"no champion ({last.removeprefix('error: ')})",
    )  # fmt: skip
    stack = Stack(tmp_path / "logs")
    app = http_service("app", tmp_path, needs=tmp_path / "m")
    with pytest.raises(StackError, match=r"no champion \(no version has alias champion\)"):
        stack.start([app], print, jobs=[job])
    assert stack.started == []  # the app never started: it needed the job
    stack.stop(print)
