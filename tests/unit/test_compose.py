"""`winequality up --compose-config`: the compose file and the configs it runs on agree, and say
what `up` says (same services, flags, tokens and alerting), with the containers' paths."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from winequality.cli import app
from winequality.compose import (
    COMPOSE_FILE,
    MOUNTS,
    POSTGRES_PORT,
    POSTGRES_UID,
    RETRAIN_COMMAND,
    VOLUME_DIRS,
    compose_variables,
    env_file_text,
    write_compose_config,
)
from winequality.database import normalize_url, redact
from winequality.settings import RetrainSettings
from winequality.simulate import load_urls
from winequality.stack import (
    Ports,
    RunPaths,
    StackConfig,
    StackError,
    Tools,
    plan,
    prepare_run,
    read_feedback_token,
)

PORTS = Ports(18000, 18010, 18082, 15000, 19090, 19093)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def targets(service: dict[str, Any]) -> set[str]:
    """Container side of a service's volumes (no interpolation needed: they are literal)."""
    return {re.sub(r"\$\{[^}]*\}", "", v).split(":")[1] for v in service.get("volumes", [])}


def flags(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


@pytest.fixture
def settings(tmp_path: Path) -> RetrainSettings:
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump({"drift": {"window_size": 200}}))
    return RetrainSettings(project_dir=project, _env_file=None)  # type: ignore[call-arg]


def test_the_compose_file_mounts_the_run_folder_where_the_configs_say(
    settings: RetrainSettings,
) -> None:
    services = compose()["services"]
    seen = MOUNTS.services(settings.project_dir)
    assert {str(MOUNTS.models), str(MOUNTS.feedback)} <= targets(services["app"])
    assert {str(MOUNTS.models), str(MOUNTS.detector), str(MOUNTS.params)} <= targets(
        services["detector"]
    )
    assert {str(MOUNTS.models), str(MOUNTS.feedback), str(MOUNTS.logs), str(MOUNTS.params)} <= (
        targets(services["webhook"])
    )
    for name in ("prometheus", "alertmanager"):
        assert str(MOUNTS.alerting) in targets(services[name])
    # The champion's pointer is the app's and the detector's model dir.
    assert str(seen.model_dir) in services["champion"]["command"]
    assert str(seen.model_dir) in services["detector"]["entrypoint"]
    assert str(seen.params) in services["detector"]["entrypoint"]
    assert f"{MOUNTS.logs}/retrain" in services["webhook"]["entrypoint"]


def test_every_variable_of_the_compose_file_is_written_by_compose_config(
    settings: RetrainSettings,
) -> None:
    used = set(re.findall(r"\$\{(WINEQ_COMPOSE_\w+?)[:}]", COMPOSE_FILE.read_text()))
    written = set(compose_variables(StackConfig(ports=PORTS), settings, 1000, 1000))
    assert used == written


def test_the_compose_stack_runs_ups_services_with_ups_flags(
    tmp_path: Path, settings: RetrainSettings
) -> None:
    config = StackConfig(run_dir=tmp_path / "run", ports=PORTS)
    run = prepare_run(config, settings, environ={}, base_env={})
    specs = {
        s.name: s
        for s in plan(
            config,
            settings=settings,
            paths=RunPaths(config.run_dir),
            tools=Tools("prometheus", "alertmanager"),
            env=run.env,
            alerting=run.alerting,
        )
    }
    services = compose()["services"]
    assert set(services) == {*specs, "champion", "postgres"}
    for name in ("prometheus", "alertmanager"):
        assert flags(services[name]["command"]) == flags(specs[name].cmd), name
    for name in ("mlflow", "detector", "webhook"):
        assert flags(services[name]["entrypoint"]) == flags(specs[name].cmd), name
    assert "--cluster.listen-address=" in services["alertmanager"]["command"]
    assert all(services[n]["network_mode"] == "host" for n in services)
    depends = {n: s["depends_on"] for n, s in services.items() if "depends_on" in s}
    assert set(depends) == {"app", "detector", "webhook"}
    for name in ("app", "detector"):
        condition = depends[name]["champion"]["condition"]
        assert condition == "service_completed_successfully"
    # Those that open the feedback store wait for PostgreSQL; the detector does not use it.
    assert {n for n, d in depends.items() if "postgres" in d} == {"app", "webhook"}
    assert all(d["postgres"]["condition"] == "service_healthy" for d in depends.values()
               if "postgres" in d)  # fmt: skip


def test_the_postgres_service_listens_on_the_runs_loopback_port_with_its_data_in_the_run(
    tmp_path: Path, settings: RetrainSettings
) -> None:
    service = compose()["services"]["postgres"]
    assert service["network_mode"] == "host"
    assert service["read_only"] is True
    assert service["user"] == "${WINEQ_COMPOSE_POSTGRES_USER:?}"
    assert service["environment"]["PGPORT"] == "${WINEQ_COMPOSE_POSTGRES_PORT:?}"
    assert service["command"] == ["-c", "listen_addresses=${WINEQ_COMPOSE_HOST:?}"]
    assert targets(service) == {"/var/lib/postgresql/data"}
    assert "${WINEQ_COMPOSE_DIR:?}/postgres-data:" in service["volumes"][0]
    assert service["env_file"] == ["${WINEQ_COMPOSE_DIR:?}/postgres.env"]
    assert service["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "/var/run/postgresql" in service["tmpfs"]  # the socket, on a read-only root


def test_compose_config_gives_the_services_one_postgresql_database_and_keeps_its_password(
    tmp_path: Path, settings: RetrainSettings
) -> None:
    config = StackConfig(run_dir=tmp_path / "run", ports=PORTS)
    files = write_compose_config(config, settings, environ={}, uid=7, gid=8, postgres_port=15432)
    url = read_env_file(files.stack_env)["WINEQ_DATABASE_URL"]
    postgres = config.run_dir / "postgres.env"
    credentials = read_env_file(postgres)
    assert stat.S_IMODE(postgres.stat().st_mode) == 0o600
    password = credentials["POSTGRES_PASSWORD"]
    assert len(password) >= 32
    user, db = credentials["POSTGRES_USER"], credentials["POSTGRES_DB"]
    assert url == f"postgresql://{user}:{password}@127.0.0.1:15432/{db}"
    assert normalize_url(url).startswith("postgresql+psycopg://")
    assert password not in redact(url)
    variables = read_env_file(files.compose_env)
    assert variables["WINEQ_COMPOSE_POSTGRES_PORT"] == "15432"
    assert variables["WINEQ_COMPOSE_POSTGRES_USER"] == "7:8"
    data = config.run_dir / "postgres-data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    # A second run on the same folder: its cluster was made with the first password.
    again = write_compose_config(config, settings, environ={}, uid=7, gid=8)
    assert read_env_file(config.run_dir / "postgres.env") == credentials
    again_url = read_env_file(again.stack_env)["WINEQ_DATABASE_URL"]
    assert again_url == url.replace(":15432/", f":{POSTGRES_PORT}/")
    # Another run folder, another password.
    other = write_compose_config(
        StackConfig(run_dir=tmp_path / "other", ports=PORTS), settings, environ={}, uid=7, gid=8
    )
    assert read_env_file(other.stack_env)["WINEQ_DATABASE_URL"] != again_url


def test_postgresql_runs_as_the_images_postgres_user_when_the_run_is_roots(
    tmp_path: Path, settings: RetrainSettings
) -> None:
    variables = compose_variables(StackConfig(ports=PORTS), settings, 0, 0)
    assert variables["WINEQ_COMPOSE_POSTGRES_USER"] == f"{POSTGRES_UID}:{POSTGRES_UID}"
    assert (variables["WINEQ_COMPOSE_UID"], variables["WINEQ_COMPOSE_GID"]) == ("0", "0")
    user = compose_variables(StackConfig(ports=PORTS), settings, 1000, 100)
    assert user["WINEQ_COMPOSE_POSTGRES_USER"] == "1000:100"


def test_compose_config_gives_the_services_the_containers_paths_and_the_run_tokens(
    tmp_path: Path, settings: RetrainSettings
) -> None:
    config = StackConfig(run_dir=tmp_path / "run", ports=PORTS, window_size=50)
    files = write_compose_config(
        config, settings, environ={"WINEQ_FEEDBACK_TOKEN": "fb", "PATH": "/bin"}, uid=7, gid=8
    )
    env = read_env_file(files.stack_env)
    assert stat.S_IMODE(files.stack_env.stat().st_mode) == 0o600
    assert env["WINEQ_MODEL_DIR"] == str(MOUNTS.models / "current")
    assert env["WINEQ_FEEDBACK_DB"] == str(MOUNTS.feedback / "feedback.sqlite")
    assert env["WINEQ_PARAMS_FILE"] == str(MOUNTS.params)
    assert env["WINEQ_PROJECT_DIR"] == str(settings.project_dir.resolve())
    assert json.loads(env["WINEQ_WEBHOOK_COMMAND"]) == list(RETRAIN_COMMAND)
    assert env["WINEQ_APP_URL"] == "http://127.0.0.1:18000"
    assert "PATH" not in env  # the host's environment stays out of the containers
    # The feedback token of the environment is kept, and simulate finds it and the URLs.
    assert env["WINEQ_FEEDBACK_TOKEN"] == "fb" == read_feedback_token(config.run_dir)
    assert load_urls(config.run_dir, {})["prometheus"] == "http://127.0.0.1:19090"
    # Alerting as up writes it, pointing at the containers' mount point.
    alerting = config.run_dir / "alerting"
    prometheus = yaml.safe_load((alerting / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == [str(MOUNTS.alerting / "wine-quality.rules.yml")]
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:18000"]
    alertmanager = yaml.safe_load((alerting / "alertmanager.yml").read_text())
    receiver = alertmanager["receivers"][1]["webhook_configs"][0]
    assert receiver["url"] == "http://127.0.0.1:18082/alerts"
    auth = receiver["http_config"]["authorization"]
    assert auth["credentials_file"] == str(MOUNTS.alerting / "webhook-token")
    assert (alerting / "webhook-token").read_text() == env["WINEQ_WEBHOOK_TOKEN"]
    assert yaml.safe_load((config.run_dir / "params.yaml").read_text())["drift"] == {
        "window_size": 50
    }
    variables = read_env_file(files.compose_env)
    assert (variables["WINEQ_COMPOSE_UID"], variables["WINEQ_COMPOSE_GID"]) == ("7", "8")
    assert variables["WINEQ_COMPOSE_MLFLOW_BACKEND"] == settings.tracking_uri()
    assert read_env_file(config.run_dir / "mlflow.env") == {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"
    }
    assert all((config.run_dir / d).is_dir() for d in VOLUME_DIRS)


def test_compose_config_refuses_what_the_compose_stack_cannot_run(
    tmp_path: Path, settings: RetrainSettings
) -> None:
    with pytest.raises(StackError, match="always runs MLflow"):
        write_compose_config(StackConfig(run_dir=tmp_path, mlflow=False), settings, environ={})
    remote = settings.model_copy(update={"mlflow_tracking_uri": "http://mlflow:5000"})
    with pytest.raises(StackError, match="MLFLOW_TRACKING_URI"):
        write_compose_config(StackConfig(run_dir=tmp_path), remote, environ={})
    with pytest.raises(StackError, match="WINEQ_X"):
        env_file_text({"WINEQ_X": "two\nlines"})


def test_up_with_compose_config_starts_nothing_and_prints_the_commands(
    tmp_path: Path, settings: RetrainSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WINEQ_PROJECT_DIR", str(settings.project_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "compose-run"
    result = CliRunner().invoke(
        app, ["up", "--compose-config", str(out), "--app-port", "18000", "--postgres-port", "15433"]
    )
    assert result.exit_code == 0, result.output
    assert f"--env-file {out / 'compose.env'} up -d" in result.output
    assert read_env_file(out / "stack.env")["WINEQ_PORT"] == "18000"
    assert read_env_file(out / "compose.env")["WINEQ_COMPOSE_POSTGRES_PORT"] == "15433"
    assert not list((out / "logs").glob("*.log"))  # no service was started
