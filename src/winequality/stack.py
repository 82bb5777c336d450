"""``winequality up``: the whole local stack as child processes, stopped cleanly on Ctrl-C.

MLflow (UI over the embedded SQLite store), the drift detector, the serving app (payload logging
to the detector, feedback enabled), the retraining webhook, Alertmanager and Prometheus, all on
127.0.0.1, stopped in reverse order, by PID. They start at once and each is reported as soon as it
answers: none needs another to be up (the app retries the detector, Prometheus and Alertmanager
retry their targets, the webhook needs MLflow only when a retraining runs), so the only wait is
the app's and the detector's for the champion model, pulled from the registry meanwhile.
Everything a run writes lives in the run folder (``.stack/`` by default):

    .stack/stack.lock  stack.json     lock (held while running) and the URLs/PIDs of this run
    .stack/params.yaml                the project's params with the run's overrides
    .stack/models/current             symlink to the serving bundle (retraining moves it)
    .stack/models/bundles/v<N>-<time> bundles pulled from the registry, never overwritten
    .stack/alerting/                  generated prometheus.yml, rules, alertmanager.yml, token
    .stack/logs/*.log                 one log per service and for the champion pull,
                                      retraining runs under logs/retrain/
    .stack/feedback.sqlite            labelled feedback (unless WINEQ_FEEDBACK_DB is set)
    .stack/feedback.token             the run's WINEQ_FEEDBACK_TOKEN (0600; `simulate` reads it)

Tokens (admin, webhook, feedback, detector ingestion) are generated per run (a feedback or
ingestion token already in the environment is kept) and handed to the children in their
environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Final

import typer
import yaml

from winequality.artifacts import new_bundle_dir, point_model_dir
from winequality.settings import (
    Ports,
    RetrainSettings,
)

if TYPE_CHECKING:
    from winequality.monitoring.alerting_config import AlertingFiles
    from winequality.process import ManagedProcess

PROMETHEUS: Final = "prometheus"
ALERTMANAGER_NAMES: Final = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT: Final = (
    "install them with `sudo apt-get install prometheus prometheus-alertmanager` "
    "(or `make system-deps`), then run `winequality up` again"
)
STATE_FILE: Final = "stack.json"
LOCK_FILE: Final = "stack.lock"
CHAMPION_JOB: Final = "champion"
PROGRESS_EVERY_S: Final = 10.0
MLFLOW_SERVER_ENV: Final[Mapping[str, str]] = {
    # MLflow's job runner (a huey consumer per GenAI job type, each a process importing MLflow)
    # runs scorers and trace rollups this stack never submits: idle, it keeps a core busy, and
    # its start competes with the server's own on a small machine.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


class StackRunningError(StackError):
    """Another ``winequality up`` holds the run folder's lock."""

    def __init__(self, run_dir: Path, pid: int | None, urls: Mapping[str, str]) -> None:
        where = f"pid {pid}" if pid else "another process"
        listed = "".join(f"\n  {name:<13} {url}" for name, url in urls.items())
        super().__init__(
            f"a stack is already running from {run_dir} ({where}); stop it with Ctrl-C in its "
            f"terminal or `kill -INT {pid or '<pid>'}`, or use another --run-dir.{listed}"
        )
        self.pid = pid


@dataclass(frozen=True)
class StackConfig:
    """Everything ``up`` needs to know; the defaults are a comfortable interactive demo."""

    run_dir: Path = Path(".stack")
    host: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    scrape_interval: str = "5s"
    evaluation_interval: str = "5s"
    drift_for: str = "10s"
    """``for:`` of WineQualityDrift; the drift metric is already a sequential decision with a
    false-alarm budget, so a short value is safe."""
    degraded_for: str | None = None
    """``for:`` of WineQualityDegraded (default: the rules file's)."""
    group_wait: str = "5s"
    group_interval: str = "1m"
    repeat_interval: str = "1h"
    window_size: int | None = None
    """Detector window (rows); default: drift.window_size of params.yaml."""
    cooldown_s: float = 120.0
    """Retraining cool-down of the webhook."""
    params_file: Path | None = None
    """Base params (default: the project's params.yaml)."""
    mlflow: bool = True


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    cmd: list[str]
    ready_url: str
    env: dict[str, str]
    timeout_s: float = 60.0
    after: tuple[str, ...] = ()
    """Jobs (by name) that must have finished before this service starts."""


@dataclass(frozen=True)
class JobSpec:
    """A one-off child the services wait for: done when it exits 0, then ``finish`` runs."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    finish: Callable[[], str]
    """Completes the job in this process; returns what to report."""
    failure: Callable[[str], str]
    """The error message, given the last line of the job's output."""
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Tools:
    prometheus: str
    alertmanager: str


def find_tools(which: Any = shutil.which) -> Tools:
    """Paths of Prometheus and Alertmanager, or a ``StackError`` saying how to install them."""
    prometheus = which(PROMETHEUS)
    alertmanager = next((p for p in map(which, ALERTMANAGER_NAMES) if p), None)
    missing = [n for n, p in ((PROMETHEUS, prometheus), ("prometheus-alertmanager", alertmanager))
               if p is None]  # fmt: skip
    if prometheus is None or alertmanager is None:
        raise StackError(f"{' and '.join(missing)} not found on PATH: {INSTALL_HINT}")
    return Tools(prometheus, alertmanager)


def urls(config: StackConfig) -> dict[str, str]:
    """Base URL of every service of the stack."""
    h, p = config.host, config.ports
    out = {
        "app": f"http://{h}:{p.app}",
        "detector": f"http://{h}:{p.detector}",
        "webhook": f"http://{h}:{p.webhook}",
        "prometheus": f"http://{h}:{p.prometheus}",
        "alertmanager": f"http://{h}:{p.alertmanager}",
    }
    if config.mlflow:
        out["mlflow"] = f"http://{h}:{p.mlflow}"
    return out


@dataclass(frozen=True)
class RunPaths:
    run_dir: Path

    @property
    def models(self) -> Path:
        return self.run_dir / "models"

    @property
    def current(self) -> Path:
        return self.models / "current"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def alerting(self) -> Path:
        return self.run_dir / "alerting"

    @property
    def params(self) -> Path:
        return self.run_dir / "params.yaml"

    @property
    def state(self) -> Path:
        return self.run_dir / STATE_FILE

    @property
    def feedback_token(self) -> Path:
        return self.run_dir / "feedback.token"


def write_token(path: Path, token: str) -> None:
    """A token file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def read_feedback_token(run_dir: Path) -> str | None:
    """``WINEQ_FEEDBACK_TOKEN``, else the token file of the run in ``run_dir`` (None: neither)."""
    token = os.environ.get("WINEQ_FEEDBACK_TOKEN")
    if token:
        return token
    named = read_state(run_dir).get("feedback_token_file")
    path = Path(named) if isinstance(named, str) else RunPaths(run_dir).feedback_token
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def run_params(base: Path, window_size: int | None) -> dict[str, Any]:
    """The project's params with the run's overrides (validated like any params file)."""
    from winequality.params import Params

    raw: dict[str, Any] = (yaml.safe_load(base.read_text()) or {}) if base.is_file() else {}
    if window_size is not None:
        raw.setdefault("drift", {})["window_size"] = window_size
    Params.model_validate(raw)
    return raw


@dataclass(frozen=True)
class ServicePaths:
    """Where the services find the run's files: the host's paths for ``up``, the mount points
    of ``deploy/compose.yaml`` for the compose stack (``winequality.compose``)."""

    project_dir: Path
    params: Path
    model_dir: Path
    feedback_db: Path
    drift_state: Path


def host_paths(settings: RetrainSettings, paths: RunPaths) -> ServicePaths:
    """The run's files as the children of ``up`` see them (an explicit feedback db is kept)."""
    feedback = (
        settings.feedback_db
        if "feedback_db" in settings.model_fields_set
        else paths.run_dir / "feedback.sqlite"
    )
    return ServicePaths(
        project_dir=settings.project_dir.resolve(),
        params=paths.params.resolve(),
        model_dir=paths.current.absolute(),
        feedback_db=feedback.absolute(),
        drift_state=(paths.run_dir / "drift-state.json").absolute(),
    )


def service_env(
    config: StackConfig,
    *,
    settings: RetrainSettings,
    paths: RunPaths,
    admin_token: str,
    webhook_token: str,
    base_env: Mapping[str, str],
    feedback_token: str | None = None,
    ingest_token: str | None = None,
    where: ServicePaths | None = None,
    webhook_command: Sequence[str] | None = None,
) -> dict[str, str]:
    """One environment for every child: where things are, the URLs, the run's tokens.

    ``where``: the files as the services see them (default: ``host_paths``);
    ``webhook_command``: the retraining job (default: ``retrain`` with this interpreter).
    """
    u = urls(config)
    seen = where or host_paths(settings, paths)
    # By default the interpreter of this run, whatever is on PATH for the webhook.
    command = webhook_command or [sys.executable, "-m", "winequality.cli", "retrain"]
    env = dict(base_env)
    env |= {
        "WINEQ_PROJECT_DIR": str(seen.project_dir),
        "WINEQ_PARAMS_FILE": str(seen.params),
        "WINEQ_MODEL_DIR": str(seen.model_dir),
        "WINEQ_FEEDBACK_DB": str(seen.feedback_db),
        "WINEQ_DRIFT_STATE_FILE": str(seen.drift_state),
        "WINEQ_ADMIN_TOKEN": admin_token,
        "WINEQ_DRIFT_ADMIN_TOKEN": admin_token,
        "WINEQ_DRIFT_APP_URL": u["app"],
        "WINEQ_WEBHOOK_TOKEN": webhook_token,
        "WINEQ_APP_URL": u["app"],
        "WINEQ_DETECTOR_URL": u["detector"],
        "WINEQ_HOST": config.host,
        "WINEQ_PORT": str(config.ports.app),
        "WINEQ_WEBHOOK_PORT": str(config.ports.webhook),
        "WINEQ_WEBHOOK_COOLDOWN_S": str(config.cooldown_s),
        "WINEQ_WEBHOOK_COMMAND": json.dumps(list(command)),
        "PYTHONUNBUFFERED": "1",
    }
    if feedback_token:
        env["WINEQ_FEEDBACK_TOKEN"] = feedback_token
    if ingest_token:  # the detector checks it, the app's payload logger sends it
        env["WINEQ_DRIFT_INGEST_TOKEN"] = ingest_token
    return env


@dataclass(frozen=True)
class Tokens:
    admin: str
    webhook: str
    feedback: str
    ingest: str


def new_tokens(environ: Mapping[str, str]) -> Tokens:
    """The run's tokens: admin and webhook new each run; a feedback or ingestion token already
    in the environment is kept (the callers that send them may hold it)."""
    return Tokens(
        admin=secrets.token_urlsafe(32),
        webhook=secrets.token_urlsafe(32),
        feedback=environ.get("WINEQ_FEEDBACK_TOKEN") or secrets.token_urlsafe(32),
        ingest=environ.get("WINEQ_DRIFT_INGEST_TOKEN") or secrets.token_urlsafe(32),
    )


@dataclass(frozen=True)
class PreparedRun:
    """The files of a run, written: its environment, tokens and alerting configs."""

    env: dict[str, str]
    tokens: Tokens
    alerting: AlertingFiles


def prepare_run(
    config: StackConfig,
    settings: RetrainSettings,
    *,
    environ: Mapping[str, str],
    base_env: Mapping[str, str],
    where: ServicePaths | None = None,
    webhook_command: Sequence[str] | None = None,
    alerting_mounted_at: Path | None = None,
) -> PreparedRun:
    """Write the run's params, feedback token and alerting configs; return its environment.

    ``up`` and the compose stack (``winequality.compose``) both start from this, so their
    services get the same configuration; ``where`` and ``alerting_mounted_at`` say where a
    container sees the files.
    """
    from winequality.monitoring.alerting_config import write_alerting_configs

    paths = RunPaths(config.run_dir)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    base = config.params_file or settings.params_path()
    paths.params.write_text(yaml.safe_dump(run_params(base, config.window_size)))
    tokens = new_tokens(environ)
    write_token(paths.feedback_token, tokens.feedback)
    env = service_env(
        config,
        settings=settings,
        paths=paths,
        admin_token=tokens.admin,
        webhook_token=tokens.webhook,
        base_env=base_env,
        feedback_token=tokens.feedback,
        ingest_token=tokens.ingest,
        where=where,
        webhook_command=webhook_command,
    )
    alerting = write_alerting_configs(
        paths.alerting,
        app_port=config.ports.app,
        detector_port=config.ports.detector,
        alertmanager_port=config.ports.alertmanager,
        webhook_url=f"{urls(config)['webhook']}/alerts",
        webhook_token=tokens.webhook,
        host=config.host,
        drift_for=config.drift_for,
        degraded_for=config.degraded_for,
        scrape_interval=config.scrape_interval,
        evaluation_interval=config.evaluation_interval,
        group_wait=config.group_wait,
        group_interval=config.group_interval,
        repeat_interval=config.repeat_interval,
        mounted_at=alerting_mounted_at,
    )
    return PreparedRun(env, tokens, alerting)


def plan(
    config: StackConfig,
    *,
    settings: RetrainSettings,
    paths: RunPaths,
    tools: Tools,
    env: Mapping[str, str],
    alerting: Any,
) -> list[ServiceSpec]:
    """The services; the app and the detector start once the champion is pulled."""
    h, p = config.host, config.ports
    wq = [sys.executable, "-m", "winequality.cli"]
    u = urls(config)
    base = dict(env)
    specs: list[ServiceSpec] = []
    if config.mlflow:
        uri = settings.tracking_uri()
        from winequality.training.tracking import artifacts_dir

        specs.append(
            ServiceSpec(
                "mlflow",
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                 "--default-artifact-root", artifacts_dir(settings).as_uri(),
                 "--host", h, "--port", str(p.mlflow), "--workers", "1"],
                f"{u['mlflow']}/health",
                {**MLFLOW_SERVER_ENV, **base},
                timeout_s=300.0,
            )
        )  # fmt: skip
    specs += [
        ServiceSpec(
            "detector",
            [
                *wq,
                "drift",
                "serve",
                "--model-dir",
                str(paths.current.absolute()),
                "--params",
                str(paths.params.resolve()),
                "--host",
                h,
                "--port",
                str(p.detector),
            ],
            f"{u['detector']}/health/ready",
            base,
            after=(CHAMPION_JOB,),
        ),
        ServiceSpec(
            "app",
            [
                *wq,
                "serve",
                "--model-dir",
                str(paths.current.absolute()),
                "--host",
                h,
                "--port",
                str(p.app),
                "--log-level",
                "warning",
            ],
            f"{u['app']}/health/ready",
            base,
            after=(CHAMPION_JOB,),
        ),
        ServiceSpec(
            "webhook",
            [
                *wq,
                "webhook",
                "--host",
                h,
                "--port",
                str(p.webhook),
                "--log-dir",
                str((paths.logs / "retrain").resolve()),
            ],
            f"{u['webhook']}/health/ready",
            base,
        ),
        ServiceSpec(
            "alertmanager",
            [
                tools.alertmanager,
                f"--config.file={alerting.alertmanager}",
                f"--storage.path={paths.run_dir.resolve() / 'alertmanager-data'}",
                f"--web.listen-address={h}:{p.alertmanager}",
                "--cluster.listen-address=",
            ],
            f"{u['alertmanager']}/-/ready",
            base,
        ),
        ServiceSpec(
            "prometheus",
            [
                tools.prometheus,
                f"--config.file={alerting.prometheus}",
                f"--storage.tsdb.path={paths.run_dir.resolve() / 'prometheus-data'}",
                f"--web.listen-address={h}:{p.prometheus}",
            ],
            f"{u['prometheus']}/-/ready",
            base,
        ),
    ]
    return specs


@contextlib.contextmanager
def run_lock(run_dir: Path, config: StackConfig) -> Iterator[IO[str]]:
    """Hold the run folder's lock for the life of the stack (the kernel drops it if we die).

    The PID inside is only for the message: ``flock`` is what decides, so a stale file left by a
    crashed run never blocks a new one.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        text = handle.read().strip()
        handle.close()
        pid = int(text) if text.isdigit() else None
        known = read_state(run_dir)
        raise StackRunningError(run_dir, pid, known.get("urls", urls(config))) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield handle
    finally:
        handle.seek(0)
        handle.truncate()
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def read_state(run_dir: Path) -> dict[str, Any]:
    """``stack.json`` of a run folder (URLs, PIDs), or {} when there is none."""
    try:
        data = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ports_in_use(config: StackConfig) -> list[str]:
    from winequality.process import port_open

    return [
        f"{name} ({config.host}:{port})"
        for name, port in asdict(config.ports).items()
        if (name != "mlflow" or config.mlflow) and port_open(config.host, port)
    ]


def champion_job(paths: RunPaths, env: Mapping[str, str]) -> JobSpec:
    """``registry pull --alias champion`` into a new bundle dir, then ``current`` points at it."""
    bundle = new_bundle_dir(paths.current, CHAMPION_JOB)

    def finish() -> str:
        point_model_dir(paths.current, bundle)
        return f"pulled into {bundle}"

    def failure(last: str) -> str:
        return (
            f"no champion model to serve ({last.removeprefix('error: ') or '?'}): "
            "run the training pipeline first (`make pipeline` or `uv run dvc repro`), "
            "which registers and promotes the first model"
        )

    return JobSpec(
        CHAMPION_JOB,
        [sys.executable, "-m", "winequality.cli", "registry", "pull", "--alias", "champion",
         "--dest", str(bundle)],
        dict(env),
        finish,
        failure,
    )  # fmt: skip


def _finished_jobs(
    pending: dict[str, tuple[JobSpec, ManagedProcess]], t0: float, echo: Any
) -> set[str]:
    """Names of the jobs that have just succeeded (removed from ``pending``, reported)."""
    finished: set[str] = set()
    for name, (job, proc) in list(pending.items()):
        if proc.alive():
            if time.monotonic() - t0 > job.timeout_s:
                raise StackError(f"{name} did not finish in {job.timeout_s:.0f}s")
            continue
        del pending[name]
        if proc.proc is None or proc.proc.returncode != 0:
            lines = [line.strip() for line in proc.log_tail(20).splitlines() if line.strip()]
            raise StackError(job.failure(lines[-1] if lines else ""))
        note = job.finish()
        finished.add(name)
        echo(f"  {name:<13} {note} after {time.monotonic() - t0:4.1f}s")
    return finished


def _ready_services(
    running: dict[str, tuple[ServiceSpec, ManagedProcess, float]], t0: float, echo: Any
) -> None:
    """Report (and drop from ``running``) the services that answer now."""
    from winequality.process import ProcessError

    for name, (spec, proc, since) in list(running.items()):
        if proc.ready_now(spec.ready_url):
            del running[name]
            echo(f"  {name:<13} ready after {time.monotonic() - t0:4.1f}s (pid {proc.pid})")
        elif time.monotonic() - since > spec.timeout_s:
            raise ProcessError(f"{name} not ready after {spec.timeout_s:.0f}s:\n{proc.log_tail()}")


class Stack:
    """Started services, stopped in reverse order."""

    def __init__(self, logs: Path, progress_every_s: float = PROGRESS_EVERY_S) -> None:
        self.logs = logs
        self.progress_every_s = progress_every_s
        self.started: list[ManagedProcess] = []
        self.jobs: list[ManagedProcess] = []

    def _launch(self, name: str, cmd: list[str], env: Mapping[str, str]) -> ManagedProcess:
        from winequality.process import ManagedProcess

        return ManagedProcess(name, cmd, self.logs / f"{name}.log", env=env).start()

    def start(self, specs: Sequence[ServiceSpec], echo: Any, jobs: Sequence[JobSpec] = ()) -> None:
        """Start the jobs and every service whose jobs are done, report each one as it becomes
        ready (seconds since this call), and say every ``progress_every_s`` what is awaited."""
        t0 = time.monotonic()
        unknown = {a for s in specs for a in s.after} - {j.name for j in jobs}
        if unknown:
            raise StackError(f"services wait for jobs that are not planned: {sorted(unknown)}")
        done: set[str] = set()
        pending: dict[str, tuple[JobSpec, ManagedProcess]] = {}
        for job in jobs:
            proc = self._launch(job.name, job.cmd, job.env)
            self.jobs.append(proc)
            pending[job.name] = (job, proc)
        waiting = list(specs)
        running: dict[str, tuple[ServiceSpec, ManagedProcess, float]] = {}
        next_note = t0 + self.progress_every_s
        while True:
            for spec in [s for s in waiting if set(s.after) <= done]:
                waiting.remove(spec)
                proc = self._launch(spec.name, spec.cmd, spec.env)
                self.started.append(proc)
                running[spec.name] = (spec, proc, time.monotonic())
            done |= _finished_jobs(pending, t0, echo)
            _ready_services(running, t0, echo)
            if not (waiting or running or pending):
                return
            if time.monotonic() >= next_note:
                awaited = [*pending, *running, *(s.name for s in waiting)]
                echo(f"  ... {time.monotonic() - t0:4.0f}s, waiting for {', '.join(awaited)}")
                next_note += self.progress_every_s
            time.sleep(0.1)

    def dead(self) -> list[str]:
        return [p.name for p in self.started if not p.alive()]

    def stop(self, echo: Any) -> None:
        for job in self.jobs:
            job.stop(timeout=5)
        self.jobs.clear()
        for proc in reversed(self.started):
            if proc.proc is None:
                continue
            code = proc.stop(timeout=15)
            echo(f"  stopped {proc.name:<13} (pid {proc.pid}, exit {code})")
        self.started.clear()


class _StopRequestedError(Exception):
    pass


def _raise_stop(signum: int, _: FrameType | None) -> None:
    raise _StopRequestedError(signal.Signals(signum).name)


def run_stack(config: StackConfig, settings: RetrainSettings, echo: Any = typer.echo) -> int:
    """Start everything, print the URLs, wait for SIGINT/SIGTERM, stop everything."""
    from winequality.process import ProcessError

    tools = find_tools()
    paths = RunPaths(config.run_dir)
    with run_lock(config.run_dir, config):
        busy = ports_in_use(config)
        if busy:
            raise StackError(
                f"port(s) already in use: {', '.join(busy)}; stop what holds them or pick "
                "other ports (see `winequality up --help`)"
            )
        run = prepare_run(config, settings, environ=os.environ, base_env=os.environ)
        env, alerting = run.env, run.alerting
        stack = Stack(paths.logs)
        previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            echo(f"starting the stack in {config.run_dir} (logs in {paths.logs}) ...")
            specs = plan(
                config, settings=settings, paths=paths, tools=tools, env=env, alerting=alerting
            )
            stack.start(specs, echo, jobs=[champion_job(paths, env)])
            state = {
                "pid": os.getpid(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "urls": urls(config),
                "pids": {p.name: p.pid for p in stack.started},
                "model_dir": str(paths.current.absolute()),
                "feedback_db": env["WINEQ_FEEDBACK_DB"],
                "feedback_token_file": str(paths.feedback_token.resolve()),
                "logs": str(paths.logs.resolve()),
            }
            paths.state.write_text(json.dumps(state, indent=2))
            echo("the stack is up:")
            for name, url in urls(config).items():
                echo(f"  {name:<13} {url}")
            echo(f"POST /feedback takes the bearer token in {paths.feedback_token}")
            echo(f"logs in {paths.logs}; Ctrl-C stops everything")
            while True:
                time.sleep(0.5)
                dead = stack.dead()
                if dead:
                    for proc in stack.started:
                        if proc.name in dead:
                            echo(f"{proc.name} exited unexpectedly:\n{proc.log_tail(20)}")
                    code = 1
                    break
        except _StopRequestedError as stop:
            echo(f"{stop.args[0]}: stopping the stack ...")
        except ProcessError as exc:
            echo(f"the stack did not start: {exc}")
            code = 1
        finally:
            # A second Ctrl-C while stopping must not leave orphans: ignore it until done.
            for s in previous:
                signal.signal(s, signal.SIG_IGN)
            stack.stop(echo)
            for s, handler in previous.items():
                signal.signal(s, handler)
            paths.state.unlink(missing_ok=True)
        return code
