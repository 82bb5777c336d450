"""`winequality up` without starting anything: tools, lock, params, environment, plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from winequality.monitoring.alerting_config import write_alerting_configs
from winequality.settings import RetrainSettings
from winequality.stack import (
    INSTALL_HINT,
    Ports,
    RunPaths,
    StackConfig,
    StackError,
    StackRunningError,
    Tools,
    find_tools,
    plan,
    run_lock,
    run_params,
    service_env,
    urls,
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
    )
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
    no_ui = plan(
        StackConfig(run_dir=config.run_dir, ports=ports, mlflow=False),
        settings=RetrainSettings(project_dir=tmp_path),
        paths=paths,
        tools=Tools("p", "a"),
        env={},
        alerting=alerting,
    )
    assert "mlflow" not in [s.name for s in no_ui]
