"""``winequality up``: the whole local stack as child processes, stopped cleanly on Ctrl-C.

MLflow (UI over the embedded SQLite store), the drift detector, the serving app (payload logging
to the detector, feedback enabled), the retraining webhook, Alertmanager and Prometheus, all on
127.0.0.1, started in that order (each waits for the ones it talks to) and stopped in reverse
order, by PID. Everything a run writes lives in the run folder (``.stack/`` by default):

    .stack/stack.lock  stack.json     lock (held while running) and the URLs/PIDs of this run
    .stack/params.yaml                the project's params with the run's overrides
    .stack/models/current             symlink to the serving bundle (retraining moves it)
    .stack/models/bundles/v<N>-<time> bundles pulled from the registry, never overwritten
    .stack/alerting/                  generated prometheus.yml, rules, alertmanager.yml, token
    .stack/logs/*.log                 one log per service, retraining runs under logs/retrain/
    .stack/feedback.sqlite            labelled feedback (unless WINEQ_FEEDBACK_DB is set)

Tokens (admin, webhook) are generated per run and handed to the children in their environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, Any, Final

import typer
import yaml

from winequality.settings import (
    DetectorSettings,
    Ports,
    RetrainSettings,
    ServingSettings,
    WebhookSettings,
)

PROMETHEUS: Final = "prometheus"
ALERTMANAGER_NAMES: Final = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT: Final = (
    "install them with `sudo apt-get install prometheus prometheus-alertmanager` "
    "(or `make system-deps`), then run `winequality up` again"
)
STATE_FILE: Final = "stack.json"
LOCK_FILE: Final = "stack.lock"


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
    """``for:`` of WineQualityDrift; the drift metric latches, so a short value is safe."""
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


def run_params(base: Path, window_size: int | None) -> dict[str, Any]:
    """The project's params with the run's overrides (validated like any params file)."""
    from winequality.params import Params

    raw: dict[str, Any] = (yaml.safe_load(base.read_text()) or {}) if base.is_file() else {}
    if window_size is not None:
        raw.setdefault("drift", {})["window_size"] = window_size
    Params.model_validate(raw)
    return raw


def service_env(
    config: StackConfig,
    *,
    settings: RetrainSettings,
    paths: RunPaths,
    admin_token: str,
    webhook_token: str,
    base_env: Mapping[str, str],
) -> dict[str, str]:
    """One environment for every child: where things are, the URLs, the run's tokens."""
    u = urls(config)
    feedback = (
        settings.feedback_db
        if "feedback_db" in settings.model_fields_set
        else paths.run_dir / "feedback.sqlite"
    )
    env = dict(base_env)
    env |= {
        "WINEQ_PROJECT_DIR": str(settings.project_dir.resolve()),
        "WINEQ_PARAMS_FILE": str(paths.params.resolve()),
        "WINEQ_MODEL_DIR": str(paths.current.absolute()),
        "WINEQ_FEEDBACK_DB": str(feedback.absolute()),
        "WINEQ_ADMIN_TOKEN": admin_token,
        "WINEQ_DRIFT_ADMIN_TOKEN": admin_token,
        "WINEQ_WEBHOOK_TOKEN": webhook_token,
        "WINEQ_APP_URL": u["app"],
        "WINEQ_DETECTOR_URL": u["detector"],
        "WINEQ_HOST": config.host,
        "WINEQ_PORT": str(config.ports.app),
        "WINEQ_WEBHOOK_PORT": str(config.ports.webhook),
        "WINEQ_WEBHOOK_COOLDOWN_S": str(config.cooldown_s),
        # The interpreter of this run, whatever is on PATH for the webhook.
        "WINEQ_WEBHOOK_COMMAND": json.dumps([sys.executable, "-m", "winequality.cli", "retrain"]),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def plan(
    config: StackConfig,
    *,
    settings: RetrainSettings,
    paths: RunPaths,
    tools: Tools,
    env: Mapping[str, str],
    alerting: Any,
) -> list[ServiceSpec]:
    """The services in start order (each one's dependencies come before it)."""
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
                base,
                timeout_s=120.0,
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


def pull_champion(paths: RunPaths, env: Mapping[str, str]) -> Path:
    """``registry pull --alias champion`` into a new bundle dir; point ``current`` at it."""
    from winequality.artifacts import point_model_dir

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    bundle = (paths.models / "bundles" / f"champion-{stamp}").absolute()
    proc = subprocess.run(
        [sys.executable, "-m", "winequality.cli", "registry", "pull", "--alias", "champion",
         "--dest", str(bundle)],
        env=dict(env), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1]
        raise StackError(
            f"no champion model to serve ({last.removeprefix('error: ')}): "
            "run the training pipeline first (`make pipeline` or `uv run dvc repro`), "
            "which registers and promotes the first model"
        )
    point_model_dir(paths.current, bundle)
    return bundle


class Stack:
    """Started services, stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        from winequality.process import ManagedProcess

        self.logs = logs
        self.started: list[ManagedProcess] = []

    def start(self, specs: Sequence[ServiceSpec], echo: Any) -> None:
        """Start every service at once, then wait for each: no service needs another to be
        up to start (they retry or tolerate a missing peer), and MLflow alone takes seconds."""
        from winequality.process import ManagedProcess

        t0 = time.monotonic()
        ready: list[tuple[ServiceSpec, ManagedProcess]] = []
        for spec in specs:
            proc = ManagedProcess(spec.name, spec.cmd, self.logs / f"{spec.name}.log", env=spec.env)
            self.started.append(proc)
            ready.append((spec, proc.start()))
        for spec, proc in ready:
            proc.wait_ready(spec.ready_url, timeout=spec.timeout_s)
            echo(f"  {spec.name:<13} ready after {time.monotonic() - t0:4.1f}s (pid {proc.pid})")

    def dead(self) -> list[str]:
        return [p.name for p in self.started if not p.alive()]

    def stop(self, echo: Any) -> None:
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
    from winequality.monitoring.alerting_config import write_alerting_configs
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
        base = config.params_file or settings.params_path()
        paths.params.write_text(yaml.safe_dump(run_params(base, config.window_size)))
        admin_token, webhook_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        env = service_env(
            config,
            settings=settings,
            paths=paths,
            admin_token=admin_token,
            webhook_token=webhook_token,
            base_env=os.environ,
        )
        pull_champion(paths, env)
        alerting = write_alerting_configs(
            paths.alerting,
            app_port=config.ports.app,
            detector_port=config.ports.detector,
            alertmanager_port=config.ports.alertmanager,
            webhook_url=f"{urls(config)['webhook']}/alerts",
            webhook_token=webhook_token,
            host=config.host,
            drift_for=config.drift_for,
            scrape_interval=config.scrape_interval,
            evaluation_interval=config.evaluation_interval,
            group_wait=config.group_wait,
            group_interval=config.group_interval,
            repeat_interval=config.repeat_interval,
        )
        stack = Stack(paths.logs)
        previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            echo(f"starting the stack in {config.run_dir} ...")
            specs = plan(
                config, settings=settings, paths=paths, tools=tools, env=env, alerting=alerting
            )
            stack.start(specs, echo)
            state = {
                "pid": os.getpid(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "urls": urls(config),
                "pids": {p.name: p.pid for p in stack.started},
                "model_dir": str(paths.current.absolute()),
                "feedback_db": env["WINEQ_FEEDBACK_DB"],
                "logs": str(paths.logs.resolve()),
            }
            paths.state.write_text(json.dumps(state, indent=2))
            echo("the stack is up:")
            for name, url in urls(config).items():
                echo(f"  {name:<13} {url}")
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


def _parse_ports(values: Sequence[int | None]) -> Ports:
    names = ("app", "detector", "webhook", "mlflow", "prometheus", "alertmanager")
    return Ports(**{n: v for n, v in zip(names, values, strict=True) if v is not None})


def up(
    *,
    run_dir: Annotated[Path, typer.Option(help="Run folder (configs, logs, data).")] = Path(
        ".stack"
    ),
    app_port: Annotated[int | None, typer.Option(help="Serving app (default 8000).")] = None,
    detector_port: Annotated[int | None, typer.Option(help="Drift detector (default 8010).")] = (
        None
    ),
    webhook_port: Annotated[int | None, typer.Option(help="Retraining webhook (8082).")] = None,
    mlflow_port: Annotated[int | None, typer.Option(help="MLflow UI (default 5000).")] = None,
    prometheus_port: Annotated[int | None, typer.Option(help="Prometheus (9090).")] = None,
    alertmanager_port: Annotated[int | None, typer.Option(help="Alertmanager (9093).")] = None,
    scrape_interval: Annotated[str, typer.Option(help="Prometheus scrape interval.")] = "5s",
    evaluation_interval: Annotated[str, typer.Option(help="Rule evaluation interval.")] = "5s",
    drift_for: Annotated[str, typer.Option(help="`for:` of the WineQualityDrift alert.")] = "10s",
    group_wait: Annotated[str, typer.Option(help="Alertmanager group_wait.")] = "5s",
    group_interval: Annotated[str, typer.Option(help="Alertmanager group_interval.")] = "1m",
    window_size: Annotated[
        int | None, typer.Option(help="Detector window (default: drift.window_size).")
    ] = None,
    cooldown: Annotated[float, typer.Option(help="Retraining cool-down, seconds.")] = 120.0,
    params_file: Annotated[
        Path | None, typer.Option("--params", help="Base params (default: params.yaml).")
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="Start the MLflow UI.")] = True,
) -> None:
    """Start the local stack (MLflow, app, detector, webhook, Prometheus, Alertmanager).

    Needs a champion model in the registry (run the pipeline first) and the prometheus and
    prometheus-alertmanager binaries. Prints the URLs; Ctrl-C stops everything.
    """
    settings = RetrainSettings()
    config = StackConfig(
        run_dir=run_dir,
        ports=_parse_ports(
            [
                app_port or ServingSettings().port,
                detector_port or DetectorSettings().port,
                webhook_port or WebhookSettings().port,
                mlflow_port,
                prometheus_port,
                alertmanager_port,
            ]
        ),
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
        drift_for=drift_for,
        group_wait=group_wait,
        group_interval=group_interval,
        window_size=window_size,
        cooldown_s=cooldown,
        params_file=params_file,
        mlflow=mlflow,
    )
    try:
        code = run_stack(config, settings)
    except StackError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2 if isinstance(exc, StackRunningError) else 1) from exc
    raise typer.Exit(code)
