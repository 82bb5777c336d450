"""``winequality up --compose-config DIR``: the files ``deploy/compose.yaml`` runs on.

The compose stack is ``winequality up`` with each service in its container, so its configuration
comes from the same functions (``stack.prepare_run``): the run's params, tokens, environment and
the generated Prometheus/Alertmanager configs. What differs is where the services see the files:
the run folder's parts are mounted at fixed paths (``MOUNTS``, which the compose file repeats; a
test holds them equal), and the project at its own path, because the MLflow store records its
artifact folder as an absolute path (so the project must be where its store was made, and its
artifacts inside it). Written into DIR:

    compose.env        the compose file's variables (host paths, ports, uid), for --env-file
    stack.env          the services' environment (0600: the run's tokens)
    mlflow.env         what the MLflow server alone gets (``stack.MLFLOW_SERVER_ENV``)
    postgres.env       the PostgreSQL service's user, password and database (0600)
    params.yaml        the project's params with the run's overrides
    alerting/          prometheus.yml, the rules, alertmanager.yml, the webhook token
    feedback.token     the feedback token (0600), for ``winequality simulate --run-dir DIR``
    stack.json         the stack's URLs, for ``simulate`` and ``curl``
    models/ feedback/ detector/ logs/retrain/ prometheus-data/ alertmanager-data/
    postgres-data/     the volumes, created here so that they belong to the user

The services run as the user who wrote the configs (``WINEQ_COMPOSE_UID``/``GID``), so what they
write in DIR and in the project (MLflow runs, retraining data) stays theirs. PostgreSQL too,
unless that user is root, which PostgreSQL refuses: then it runs as the images' ``postgres`` user
(``POSTGRES_UID``), given the data folder here.

The feedback store is that PostgreSQL server (``WINEQ_DATABASE_URL`` in stack.env): the app
writes labels and served rows there, the retraining job reads them. Its password is made on the
first run and kept in postgres.env (the cluster in postgres-data/ holds it). MLflow stays on the
project's embedded store: the pipeline on the host registers the champion there, and the
retraining job in the webhook's container registers into the same store, which the MLflow
service serves; a PostgreSQL backend would need the host's pipeline pointed at the container and
the existing store migrated.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from winequality.monitoring.alerting_config import DEPLOY_DIR
from winequality.settings import RetrainSettings
from winequality.stack import (
    MLFLOW_SERVER_ENV,
    RunPaths,
    ServicePaths,
    StackConfig,
    StackError,
    prepare_run,
    urls,
)

COMPOSE_FILE: Final = DEPLOY_DIR / "compose.yaml"
COMPOSE_ENV: Final = "compose.env"
STACK_ENV: Final = "stack.env"
MLFLOW_ENV: Final = "mlflow.env"
POSTGRES_ENV: Final = "postgres.env"
POSTGRES_PORT: Final = 5432
"""The PostgreSQL service's default port (``up --postgres-port``)."""
POSTGRES_UID: Final = 999
"""The ``postgres`` user of both PostgreSQL images (official and ``debian``)."""
DATABASE: Final = "winequality"
"""The PostgreSQL user and database of the feedback store."""
RETRAIN_COMMAND: Final = ("winequality", "retrain")
"""The retraining job in the webhook's container (the trainer image's entry point)."""


@dataclass(frozen=True)
class Mounts:
    """Where the containers see the run folder's parts (``deploy/compose.yaml`` mounts them)."""

    models: Path = Path("/var/lib/winequality/models")
    feedback: Path = Path("/var/lib/winequality/feedback")
    detector: Path = Path("/var/lib/winequality/detector")
    logs: Path = Path("/var/lib/winequality/logs")
    params: Path = Path("/etc/winequality/params.yaml")
    alerting: Path = Path("/etc/winequality/alerting")

    def services(self, project_dir: Path) -> ServicePaths:
        return ServicePaths(
            project_dir=project_dir,
            params=self.params,
            model_dir=self.models / "current",
            feedback_db=self.feedback / "feedback.sqlite",
            drift_state=self.detector / "drift-state.json",
        )


MOUNTS: Final = Mounts()
VOLUME_DIRS: Final = (
    "models",
    "feedback",
    "detector",
    "logs/retrain",
    "prometheus-data",
    "alertmanager-data",
    "postgres-data",
)


@dataclass(frozen=True)
class ComposeFiles:
    run_dir: Path
    compose_env: Path
    stack_env: Path

    def command(self, *args: str) -> list[str]:
        """The ``docker-compose`` command line for this run (``up -d``, ``down``, ...)."""
        return [
            "docker-compose",
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(self.compose_env),
            *args,
        ]


def env_file_text(env: Mapping[str, str]) -> str:
    """``KEY=value`` lines (compose reads values unquoted up to the line's end)."""
    for key, value in env.items():
        if "\n" in value or value[:1] in ("'", '"') or " #" in value:
            raise StackError(f"{key}: {value!r} cannot be written to an env file")
    return "".join(f"{key}={value}\n" for key, value in env.items())


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def postgres_owner(uid: int, gid: int) -> tuple[int, int]:
    """Who the PostgreSQL container runs as: the run's user, unless root (PostgreSQL refuses)."""
    return (uid, gid) if uid != 0 else (POSTGRES_UID, POSTGRES_UID)


def postgres_password(run_dir: Path) -> str:
    """The run's PostgreSQL password: the one of postgres.env if the run has one (its cluster
    was initialised with it), else a new one."""
    path = run_dir / POSTGRES_ENV
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "POSTGRES_PASSWORD" and value:
                return value
    return secrets.token_urlsafe(32)


def database_url(config: StackConfig, password: str, port: int) -> str:
    return f"postgresql://{DATABASE}:{password}@{config.host}:{port}/{DATABASE}"


def _prepare_postgres_data(folder: Path, uid: int, gid: int) -> None:
    """PostgreSQL wants its data folder owned by its user and closed to others (only root can
    give it away: anyone else runs PostgreSQL as themselves, the folder's owner)."""
    if os.geteuid() == 0 and (folder.stat().st_uid, folder.stat().st_gid) != (uid, gid):
        os.chown(folder, uid, gid)
    folder.chmod(0o700)


def compose_variables(
    config: StackConfig,
    settings: RetrainSettings,
    uid: int,
    gid: int,
    *,
    postgres_port: int = POSTGRES_PORT,
) -> dict[str, str]:
    """The variables ``deploy/compose.yaml`` interpolates (all named ``WINEQ_COMPOSE_*``, so
    none is taken for a setting, and a shell variable of the same name would win). The app's
    port is not among them: the app reads it from stack.env, as its health check does."""
    from winequality.training.tracking import artifacts_dir

    p = config.ports
    pg_uid, pg_gid = postgres_owner(uid, gid)
    return {
        "WINEQ_COMPOSE_DIR": str(config.run_dir.resolve()),
        "WINEQ_COMPOSE_PROJECT": str(settings.project_dir.resolve()),
        "WINEQ_COMPOSE_UID": str(uid),
        "WINEQ_COMPOSE_GID": str(gid),
        "WINEQ_COMPOSE_HOST": config.host,
        "WINEQ_COMPOSE_DETECTOR_PORT": str(p.detector),
        "WINEQ_COMPOSE_WEBHOOK_PORT": str(p.webhook),
        "WINEQ_COMPOSE_MLFLOW_PORT": str(p.mlflow),
        "WINEQ_COMPOSE_PROMETHEUS_PORT": str(p.prometheus),
        "WINEQ_COMPOSE_ALERTMANAGER_PORT": str(p.alertmanager),
        "WINEQ_COMPOSE_POSTGRES_PORT": str(postgres_port),
        "WINEQ_COMPOSE_POSTGRES_USER": f"{pg_uid}:{pg_gid}",
        "WINEQ_COMPOSE_MLFLOW_BACKEND": settings.tracking_uri(),
        "WINEQ_COMPOSE_MLFLOW_ARTIFACTS": artifacts_dir(settings).as_uri(),
    }


def write_compose_config(
    config: StackConfig,
    settings: RetrainSettings,
    *,
    environ: Mapping[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    postgres_port: int | None = None,
) -> ComposeFiles:
    """Write everything ``deploy/compose.yaml`` needs into ``config.run_dir``."""
    postgres_port = postgres_port or POSTGRES_PORT
    if not config.mlflow:
        raise StackError("the compose stack always runs MLflow (drop --no-mlflow)")
    if settings.mlflow_tracking_uri:
        raise StackError(
            "the compose stack serves the project's embedded MLflow store; unset "
            f"MLFLOW_TRACKING_URI ({settings.mlflow_tracking_uri})"
        )
    run_dir = config.run_dir
    paths = RunPaths(run_dir)
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    for name in VOLUME_DIRS:
        (run_dir / name).mkdir(parents=True, exist_ok=True)
    _prepare_postgres_data(run_dir / "postgres-data", *postgres_owner(uid, gid))
    password = postgres_password(run_dir)
    run = prepare_run(
        config,
        settings,
        environ=os.environ if environ is None else environ,
        base_env={},
        where=MOUNTS.services(settings.project_dir.resolve()),
        webhook_command=RETRAIN_COMMAND,
        alerting_mounted_at=MOUNTS.alerting,
    )
    env = run.env | {"WINEQ_DATABASE_URL": database_url(config, password, postgres_port)}
    stack_env = run_dir / STACK_ENV
    _write_private(stack_env, env_file_text(env))
    (run_dir / MLFLOW_ENV).write_text(env_file_text(MLFLOW_SERVER_ENV))
    postgres = {"POSTGRES_USER": DATABASE, "POSTGRES_PASSWORD": password, "POSTGRES_DB": DATABASE}
    _write_private(run_dir / POSTGRES_ENV, env_file_text(postgres))
    variables = compose_variables(config, settings, uid, gid, postgres_port=postgres_port)
    compose_env = run_dir / COMPOSE_ENV
    compose_env.write_text(env_file_text(variables))
    state = {
        "compose": str(COMPOSE_FILE),
        "urls": urls(config),
        "model_dir": str(paths.models.resolve() / "current"),
        "feedback_token_file": str(paths.feedback_token.resolve()),
        "logs": str(paths.logs.resolve()),
    }
    paths.state.write_text(json.dumps(state, indent=2))
    return ComposeFiles(run_dir, compose_env, stack_env)
