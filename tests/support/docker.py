"""A real Docker engine for the container tests, and the images of deploy/docker built on it.

``DockerEngine.acquire`` uses the daemon that answers ``docker info``. When none does (a fresh
machine after ``make system-deps``) it starts ``dockerd`` the way these machines run it: no
bridge network (containers use the host's network, or none), its socket, pidfile, exec root and
log in a folder of its own, the data root ``/var/lib/docker`` (images and build cache survive
the run) unless ``WINEQ_TEST_DOCKERD_DATA_ROOT`` names another. Every test session that uses
that daemon holds a shared lock on it; the session that started it stops it by PID once the
others are done (at its release, or when its process exits if another session still uses it).

Debian's client (``/usr/bin/docker``: the ``docker`` first on PATH may lack BuildKit) builds
with ``DOCKER_BUILDKIT=1``: the engine's built-in frontend has cache mounts and pulls nothing.
Images are built offline on the base image of ``make base-image`` (cached under the user's
cache folder), under tags of this session that are removed at its end (the layers stay cached).
``WINEQ_TEST_DOCKER_NO_CACHE=1`` builds them with ``--no-cache`` (a cold measurement).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from winequality.process import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ROOT / "deploy" / "docker"
DOCKER = os.environ.get("WINEQ_TEST_DOCKER", "/usr/bin/docker")
BASE_IMAGE = "winequality-base:bookworm"
DATA_ROOT_ENV = "WINEQ_TEST_DOCKERD_DATA_ROOT"
NO_CACHE_ENV = "WINEQ_TEST_DOCKER_NO_CACHE"
# Where a daemon started by a test session lives, so that the other sessions (xdist workers)
# find it: its socket, and the lock its users share.
OWN_DAEMON = Path(tempfile.gettempdir()) / f"wineq-dockerd-{os.getuid()}"
# What the Dockerfiles' whitelist (*.Dockerfile.dockerignore) admits, bar the model bundle.
CONTEXT_FILES = ("pyproject.toml", "uv.lock", "README.md", "params.yaml", "dvc.yaml", ".dvcignore",
                 "deploy/docker/postgres-entrypoint.sh")  # fmt: skip


class DockerError(RuntimeError):
    """A docker command failed; the message carries its output."""


@dataclass
class BuiltImage:
    tag: str
    seconds: float
    size_mb: float


@dataclass
class DockerEngine:
    """The client's environment for one daemon, and the daemon itself when we started it."""

    env: dict[str, str]
    daemon: ManagedProcess | None = None
    _users: IO[str] | None = None
    _run_dir: Path | None = None
    tags: list[str] = field(default_factory=list)

    def docker(
        self,
        *args: str,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``; raises ``DockerError`` with the output when it fails."""
        proc = subprocess.run(
            [DOCKER, *args],
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return proc

    @classmethod
    def acquire(cls) -> DockerEngine:
        """The running daemon, or one started here (see the module docstring)."""
        if _answers(dict(os.environ)):
            return cls(dict(os.environ))
        OWN_DAEMON.mkdir(mode=0o700, exist_ok=True)
        env = {**os.environ, "DOCKER_HOST": f"unix://{OWN_DAEMON / 'docker.sock'}"}
        users = (OWN_DAEMON / "users.lock").open("a")
        with _locked(OWN_DAEMON / "start.lock"):
            if _answers(env):
                fcntl.flock(users, fcntl.LOCK_SH)
                return cls(env, _users=users)
            daemon, run_dir = _start_dockerd(env)
            fcntl.flock(users, fcntl.LOCK_SH)
        return cls(env, daemon, users, run_dir)

    def build(
        self,
        dockerfile: str,
        tag: str,
        context: Path,
        *,
        base: str = BASE_IMAGE,
        target: str | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> BuiltImage:
        """Build ``deploy/docker/DOCKERFILE`` on ``base`` from ``context`` as ``tag``."""
        args = ["build", "--network", "host", "-q", "--build-arg", f"PYTHON_IMAGE={base}"]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if target:
            args += ["--target", target]
        if os.environ.get(NO_CACHE_ENV) == "1":
            args.append("--no-cache")
        started = time.monotonic()
        self.docker(
            *args, "-f", str(DOCKERFILES / dockerfile), "-t", tag, str(context),
            env={"DOCKER_BUILDKIT": "1"}, timeout=1800,
        )  # fmt: skip
        self.tags.append(tag)
        return BuiltImage(tag, time.monotonic() - started, self.size_mb(tag))

    def size_mb(self, image: str) -> float:
        return int(self.docker("image", "inspect", "-f", "{{.Size}}", image).stdout) / 1e6

    def health(self, container: str) -> str:
        """``starting``, ``healthy`` or ``unhealthy``; ``exited`` once the container stopped."""
        state = json.loads(self.docker("inspect", "-f", "{{json .State}}", container).stdout)
        if not state.get("Running"):
            return "exited"
        return str(state.get("Health", {}).get("Status", "none"))

    def wait_healthy(self, container: str, timeout: float = 120) -> float:
        """Seconds until the image's HEALTHCHECK passes; raises with the container's log."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            status = self.health(container)
            if status == "healthy":
                return time.monotonic() - started
            if status == "exited":
                break
            time.sleep(0.5)
        logs = subprocess.run(
            [DOCKER, "logs", "--tail", "40", container],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        raise DockerError(
            f"{container} is {self.health(container)} after {timeout:.0f} s:\n"
            f"{logs.stdout}{logs.stderr}"
        )

    def remove(self, container: str) -> None:
        subprocess.run(
            [DOCKER, "rm", "-f", container], env=self.env, capture_output=True, check=False
        )

    def release(self) -> None:
        """Untag this session's images; stop the daemon if we started it and no one else uses
        it (waiting for the other sessions to let go of it)."""
        if self.tags:
            subprocess.run(
                [DOCKER, "rmi", *self.tags], env=self.env, capture_output=True, check=False
            )
            self.tags.clear()
        if self._users is None:
            return
        if self.daemon is not None:
            fcntl.flock(self._users, fcntl.LOCK_UN)
            try:
                fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Another session still uses it (the other worker building images on a fresh
                # machine took over 6 minutes): waiting here counted against this module's
                # last test's timeout. The daemon is stopped when this process exits instead,
                # once the others are done.
                atexit.register(self._stop_when_unused)
                return
            self._stop_daemon()
        self._users.close()
        self._users = None

    def _stop_when_unused(self) -> None:
        if self._users is None:
            return
        fcntl.flock(self._users, fcntl.LOCK_EX)  # every other session is done with it
        self._stop_daemon()
        self._users.close()
        self._users = None

    def _stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.stop(timeout=30)
            self.daemon = None
        if self._run_dir is not None:
            _remove_run_dir(self._run_dir)
            self._run_dir = None


def _answers(env: Mapping[str, str]) -> bool:
    if shutil.which(DOCKER) is None:
        raise DockerError(f"{DOCKER} not found: apt-get install docker.io (make system-deps)")
    proc = subprocess.run(
        [DOCKER, "info", "-f", "{{.ServerVersion}}"],
        env=dict(env), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return proc.returncode == 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_run_dir(run_dir: Path) -> None:
    """The daemon's exec root, with the network namespace it leaves bind-mounted there."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for target in sorted((m.split()[1] for m in mounts), reverse=True):
        if target.startswith(f"{run_dir}/"):
            subprocess.run(["umount", target], capture_output=True, check=False)
    shutil.rmtree(run_dir, ignore_errors=True)


def _start_dockerd(env: Mapping[str, str]) -> tuple[ManagedProcess, Path]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0:
        raise DockerError(
            "no Docker daemon answers `docker info`, and starting one needs root: start the "
            "engine (e.g. `dockerd --bridge=none --iptables=false --ip-masq=false`) or add "
            "this user to the docker group"
        )
    if not Path(dockerd).is_file():
        raise DockerError("dockerd not found: apt-get install docker.io (make system-deps)")
    # Short paths: containerd's socket under the exec root must fit a Unix socket name.
    run = Path(tempfile.mkdtemp(prefix="wqd-"))
    cmd: Sequence[str] = [
        dockerd,
        f"--host=unix://{OWN_DAEMON / 'docker.sock'}",
        f"--pidfile={run / 'dockerd.pid'}",
        f"--exec-root={run / 'exec'}",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
    ]
    if data_root := os.environ.get(DATA_ROOT_ENV):
        cmd = [*cmd, f"--data-root={data_root}"]
    daemon = ManagedProcess("dockerd", cmd, OWN_DAEMON / "dockerd.log", env=dict(env))
    daemon.start()
    deadline = time.monotonic() + 60
    while not _answers(env):
        if not daemon.alive() or time.monotonic() > deadline:
            daemon.stop()
            _remove_run_dir(run)
            raise DockerError(f"dockerd did not come up:\n{daemon.log_tail()}")
        time.sleep(0.5)
    return daemon, run


def ensure_base_image(engine: DockerEngine, name: str = BASE_IMAGE) -> float:
    """``make base-image`` (deploy/docker/base-image.sh): seconds it took (0 when cached)."""
    started = time.monotonic()
    # The script takes a lock of its own: parallel workers wait for the one that makes it.
    proc = subprocess.run(
        [str(DOCKERFILES / "base-image.sh"), name],
        env={**engine.env, "DOCKER": DOCKER}, capture_output=True, text=True, check=False,
        timeout=1200,
    )  # fmt: skip
    if proc.returncode != 0:
        raise DockerError(f"base-image.sh exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return time.monotonic() - started


def build_context(dest: Path, bundle: Path | None = None) -> Path:
    """The files the Dockerfiles copy (what their whitelist admits), plus ``bundle`` as
    models/serving: a context that holds nothing of the working tree's data or models."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in CONTEXT_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    (dest / ".dvc").mkdir(exist_ok=True)
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copytree(
        ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    if bundle is not None:
        shutil.copytree(bundle.resolve(), dest / "models" / "serving")
    return dest


def image_summary(image: BuiltImage) -> str:
    """What the session summary prints for a built image (an ``image`` user property)."""
    return f"{image.tag.split(':')[0]}: {image.size_mb:.0f} MB, built in {image.seconds:.0f} s"


def container_name(image: BuiltImage, role: str = "") -> str:
    """A name of this session's own: parallel sessions share the engine."""
    return f"{image.tag.split(':')[0]}{role}-{os.getpid()}"
