"""The Triton Inference Server bundled in the ``nvidia-pytriton`` wheel: fetch it, start it, and
run it behind the app (``winequality serve --backend triton``, ``BundledTriton``).

The wheel pins numpy<2, so it is never installed: ``pip download --no-deps`` fetches it into the
cache folder and only the server (``pytriton/tritonserver``) and its shared libraries
(``nvidia_pytriton.libs``) are unpacked. That build has the Python backend and ensembles but no
onnxruntime backend, hence the ``python`` variant of the model repository.

The Python backend's stub embeds the interpreter: it needs the interpreter's ``libpython`` on
``LD_LIBRARY_PATH`` (else it picks up the system one) and finds site-packages through the
``python3`` first on ``PATH``. The stub is built with a pybind11 that predates numpy 2's ABI:
under numpy 2 every tensor it hands to Python has a zero stride (BYTES inputs decode as garbage,
outputs are rejected for their size). So the models run in a small environment of their own,
created once next to the server: this interpreter's version, ``numpy<2`` and the project's
onnxruntime version (the same runtime as the in-process predictor).

``BundledTriton`` runs the server in explicit model control mode on a repository of its own and
hands the app a loader that deploys each bundle the app loads (startup, ``/admin/reload``, the
model dir watcher) as a new version of the running server (``triton_reload``), so a promotion
reaches Triton without a restart and without a failed request.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal

from winequality.artifacts import replaced_atomically
from winequality.files import file_lock
from winequality.process import ManagedProcess, free_port
from winequality.settings import ServingSettings

if TYPE_CHECKING:
    from winequality.inference.predictor import Predictor
    from winequality.triton_reload import TritonReloader

log = logging.getLogger(__name__)

PYTRITON_VERSION: Final = "0.5.14"
"""The wheel that embeds Triton Inference Server 2.51.0."""
_UNPACKED = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")
STUB_NUMPY: Final = "numpy>=1.26,<2"


class TritonFetchError(RuntimeError):
    """The wheel could not be downloaded or does not contain the server."""


@dataclass(frozen=True, slots=True)
class TritonDistribution:
    """An unpacked server, ready to run with the current Python's stub."""

    root: Path
    binary: Path
    libs_dir: Path
    backends_dir: Path
    caches_dir: Path
    python_bin: Path
    """``bin`` of the environment the Python-backend models run in."""


def _pip_download() -> list[str]:
    """A pip that can download: this interpreter's, else one on PATH, else uv's."""
    if _has_module("pip"):
        return [sys.executable, "-m", "pip", "download"]
    for pip in ("pip3", "pip"):
        found = shutil.which(pip)
        if found:
            return [found, "download"]
    uvx = shutil.which("uvx")
    if uvx:
        return [uvx, "pip", "download"]
    raise TritonFetchError("no pip found to download nvidia-pytriton (install pip or uv)")


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def download_wheel(dest: Path, version: str = PYTRITON_VERSION) -> Path:
    """``pip download --no-deps nvidia-pytriton==version`` into ``dest`` (kept if present)."""
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"nvidia_pytriton-{version}-*.whl"
    existing = sorted(dest.glob(pattern))
    if existing:
        return existing[0]
    cmd = [
        *_pip_download(),
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        f"nvidia-pytriton=={version}",
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob(pattern))
    if proc.returncode != 0 or not found:
        raise TritonFetchError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return found[0]


def _unpack(wheel: Path, dest: Path) -> None:
    """Extract the server and its libraries, keeping the executable bits zipfile drops."""
    with zipfile.ZipFile(wheel) as zf:
        members = [i for i in zf.infolist() if i.filename.startswith(_UNPACKED)]
        if not any(i.filename.endswith("bin/tritonserver") for i in members):
            raise TritonFetchError(
                f"{wheel} does not contain pytriton/tritonserver/bin/tritonserver"
            )
        for info in members:
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if not info.is_dir():
                path.chmod((mode or 0o644) | (0o755 if mode & 0o111 else 0o644))


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def ensure_tritonserver(cache_dir: Path, version: str = PYTRITON_VERSION) -> TritonDistribution:
    """Download and unpack the server once; later calls return the cached copy at once."""
    base = cache_dir.expanduser().resolve() / "tritonserver" / f"pytriton-{version}"
    root = base / "dist"
    server = root / "pytriton" / "tritonserver"
    tag = _python_tag()
    # The Python backend runs the stub found in its own directory, and the stub is built per
    # Python minor version: one backends folder per interpreter version.
    backends = base / f"backends-py{tag}"
    with file_lock(base.parent / f".pytriton-{version}.lock"):
        if not (server / "bin" / "tritonserver").is_file():
            wheel = download_wheel(cache_dir.expanduser().resolve() / "wheels", version)
            with replaced_atomically(root) as tmp:
                _unpack(wheel, tmp)
        stub = server / "python_backend_stubs" / tag / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonFetchError(
                f"nvidia-pytriton {version} has no Python backend stub for {tag}"
            )
        if not (backends / "python" / "triton_python_backend_stub").is_file():
            with replaced_atomically(backends) as tmp:
                shutil.copytree(server / "backends" / "python", tmp / "python")
                shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        python_bin = ensure_backend_python(base / f"python-env-py{tag}")
    return TritonDistribution(
        root=root,
        binary=server / "bin" / "tritonserver",
        libs_dir=root / "nvidia_pytriton.libs",
        backends_dir=backends,
        caches_dir=server / "caches",
        python_bin=python_bin,
    )


def backend_requirements() -> list[str]:
    """What the Python-backend models import: numpy (pre 2.0, see above) and onnxruntime."""
    return [STUB_NUMPY, f"onnxruntime=={dist_version('onnxruntime')}"]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TritonFetchError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )


def ensure_backend_python(env_dir: Path) -> Path:
    """Create (once) the stub's environment; returns its ``bin`` directory.

    The interpreter is this one's base installation, whose ``libpython`` the stub loads.
    """
    requirements = backend_requirements()
    marker = env_dir / ".winequality-requirements"
    bin_dir = env_dir / "bin"
    if marker.is_file() and marker.read_text().splitlines() == requirements:
        return bin_dir
    shutil.rmtree(env_dir, ignore_errors=True)
    base_python = Path(str(sysconfig.get_config_var("BINDIR"))) / f"python{_python_tag()}"
    python = str(base_python) if base_python.is_file() else sys.executable
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` exports its own path as UV
    if uv:
        _run([uv, "venv", "--quiet", "--python", python, str(env_dir)])
        _run([uv, "pip", "install", "--quiet", "--python", str(bin_dir / "python"), *requirements])
    else:
        _run([python, "-m", "venv", str(env_dir)])
        _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *requirements])
    marker.write_text("\n".join(requirements) + "\n")
    return bin_dir


def server_env(dist: TritonDistribution) -> dict[str, str]:
    """The environment the server and its Python stubs need (see the module docstring)."""
    env = dict(os.environ)
    # Not inherited: a virtualenv's activation would point the stub at the wrong site-packages.
    for inherited in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"):
        env.pop(inherited, None)
    env["PATH"] = os.pathsep.join([str(dist.python_bin), env.get("PATH", "")]).rstrip(os.pathsep)
    libdir = sysconfig.get_config_var("LIBDIR")
    libs = [str(libdir)] if libdir else []
    libs.append(str(dist.libs_dir))
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    return env


@dataclass(frozen=True, slots=True)
class TritonPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> TritonPorts:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        http, grpc, metrics = sorted(ports)
        return cls(http, grpc, metrics)


ModelControl = Literal["none", "explicit"]


def server_command(
    dist: TritonDistribution,
    repository: Path,
    ports: TritonPorts,
    host: str = "127.0.0.1",
    model_control: ModelControl = "none",
) -> list[str]:
    """The ``tritonserver`` command line: loopback only, quick shutdown.

    ``none`` loads the whole repository at startup; ``explicit`` loads nothing until asked
    through the repository API (``POST /v2/repository/models/{name}/load``).
    """
    return [
        str(dist.binary),
        f"--model-repository={repository.resolve()}",
        f"--model-control-mode={model_control}",
        f"--backend-directory={dist.backends_dir}",
        f"--cache-directory={dist.caches_dir}",
        f"--http-address={host}",
        f"--http-port={ports.http}",
        f"--grpc-address={host}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={host}",
        f"--metrics-port={ports.metrics}",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        # In explicit mode a version the server refused stays in its index as UNAVAILABLE, and
        # strict readiness would report the whole server unready while the served version
        # answers; readiness is then asked of the model (``/v2/models/{name}/ready``).
        f"--strict-readiness={'true' if model_control == 'none' else 'false'}",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
        # No GPU: skip the pinned host buffer Triton otherwise tries to reserve through CUDA.
        "--pinned-memory-pool-byte-size=0",
        # Python stubs talk to the server over /dev/shm regions named by this prefix; a unique
        # prefix lets several servers (parallel tests, other users) share one machine.
        f"--backend-config=python,shm-region-prefix-name=wineq{os.getpid()}_{secrets.token_hex(3)}_",
    ]


@dataclass
class TritonServer:
    """A running tritonserver child process on loopback."""

    process: ManagedProcess
    ports: TritonPorts
    host: str = "127.0.0.1"
    startup_s: float = 0.0
    """Seconds from spawn to ``/v2/health/ready``."""

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    def stop(self) -> int | None:
        return self.process.stop()

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_tritonserver(
    repository: Path,
    dist: TritonDistribution,
    log_file: Path,
    ports: TritonPorts | None = None,
    ready_timeout: float = 180.0,
    *,
    model_control: ModelControl = "none",
) -> TritonServer:
    """Start the server on free loopback ports and wait until every model is ready."""
    ports = ports or TritonPorts.free()
    process = ManagedProcess(
        "tritonserver",
        server_command(dist, repository, ports, model_control=model_control),
        log_file,
        env=server_env(dist),
    )
    started = time.monotonic()
    process.start()
    try:
        process.wait_ready(
            url=f"http://127.0.0.1:{ports.http}/v2/health/ready", timeout=ready_timeout
        )
    except BaseException:
        process.stop()
        raise
    return TritonServer(process, ports, startup_s=time.monotonic() - started)


class BundledTriton:
    """Triton serving the app's bundles; ``settings_for_app`` points the app at it and
    ``loader`` deploys each bundle the app loads to it."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.server: TritonServer | None = None
        self.reloader: TritonReloader | None = None
        self._workdir: Path | None = None

    def start(self) -> TritonServer:
        """Start the server on an empty repository: the app's first load deploys the bundle."""
        # Imported here: only this backend needs the exporter and the repository client.
        from winequality.triton_reload import RepositoryClient, TritonReloader

        self._workdir = Path(tempfile.mkdtemp(prefix="wineq-triton-"))
        repository = self._workdir / "repository"
        repository.mkdir()
        dist = ensure_tritonserver(self.settings.cache_dir)
        log_file = self._workdir / "tritonserver.log"
        log.info("starting tritonserver on %s (log: %s)", repository, log_file)
        self.server = start_tritonserver(repository, dist, log_file, model_control="explicit")
        log.info("tritonserver ready at %s in %.1f s", self.server.http_url, self.server.startup_s)
        self.reloader = TritonReloader(
            repository,
            RepositoryClient(self.server.grpc_url, server=self.server.process),
            "python",
            max_batch_size=self.settings.triton_max_batch_size,
        )
        return self.server

    def loader(self) -> Callable[[Path], Predictor]:
        """The app's loader: deploy the bundle to the server, then proxy to it."""
        from winequality.inference.remote import RemoteV2Predictor

        reloader = self.reloader
        if reloader is None:
            raise RuntimeError("BundledTriton.start() was not called")
        settings = self.settings_for_app()

        def load(bundle: Path) -> Predictor:
            metadata = reloader.deploy(bundle)
            return RemoteV2Predictor.from_settings(settings, metadata, reloader.versions)

        return load

    def settings_for_app(self) -> ServingSettings:
        if self.server is None:
            raise RuntimeError("BundledTriton.start() was not called")
        return self.settings.model_copy(
            update={"backend": "remote", "remote_url": self.server.http_url}
        )

    def stop(self) -> None:
        if self.reloader is not None:
            self.reloader.close()
            self.reloader = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> BundledTriton:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover
    # `python -m winequality.bundled_triton`: fetch once (CI cache warm-up), print the binary.
    print(ensure_tritonserver(ServingSettings().cache_dir).binary)
