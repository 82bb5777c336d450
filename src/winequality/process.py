"""Child processes on loopback: start, wait until they answer, stop by PID.

Used by ``winequality up`` and by the integration tests, which run the real services (MLflow,
Triton, Prometheus, Alertmanager, the apps) this way rather than mocking them.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

LISTEN_PORTS: Final = (20_000, 32_768)
"""Where ``free_port`` looks first: below Linux's default ephemeral range (32768-60999)."""
_PICK: Final = random.SystemRandom()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return LISTEN_PORTS[1]


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``.

    Picked at random below the ephemeral range when it can be: a port the kernel hands out for
    binding to 0 is also a source port it may give an outgoing connection before the service
    that was promised it binds (seen as "address already in use" under parallel tests).
    """
    low, high = LISTEN_PORTS[0], min(LISTEN_PORTS[1], _ephemeral_floor())
    for _ in range(50):
        if low < high:
            port = _PICK.randrange(low, high)
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URLs)
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ProcessError(RuntimeError):
    """A child process died or did not become ready; the message carries its log tail."""


class ManagedProcess:
    """A child process in its own session (and process group), logging to a file, stopped by
    PID.

    ``own_session=False`` keeps it in the caller's session, for benchmarks: with the kernel's
    autogroup scheduling every session is a scheduling group, so a child in a session of its own
    competes with the caller's processes as a group, whatever its own nice value or policy.
    It is then stopped alone, not as a group.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        *,
        own_session: bool = True,
    ) -> None:
        self.name = name
        self.own_session = own_session
        self.cmd = list(cmd)
        self.log_file = log_file
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} is not started")
        return self.proc.pid

    def start(self) -> ManagedProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        # A new session lets stop() signal the whole group (servers that fork workers).
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=self.own_session,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(
        self,
        url: str | None = None,
        port: int | None = None,
        timeout: float = 30.0,
        host: str = "127.0.0.1",
    ) -> ManagedProcess:
        """Block until ``url`` answers 2xx (or ``port`` accepts connections)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_now(url, port, host):
                return self
            time.sleep(0.05)
        raise ProcessError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def ready_now(
        self, url: str | None = None, port: int | None = None, host: str = "127.0.0.1"
    ) -> bool:
        """One readiness probe (for callers that wait on several processes at once); raises
        ``ProcessError`` when the process has exited."""
        if not self.alive():
            raise ProcessError(
                f"{self.name} exited with {self.proc.returncode if self.proc else '?'}:\n"
                f"{self.log_tail()}"
            )
        return (url is not None and http_ok(url)) or (port is not None and port_open(host, port))

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group (or the process), SIGKILL what is left after ``timeout``;
        returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            signal_ = os.killpg if self.own_session else os.kill
            with contextlib.suppress(ProcessLookupError):
                signal_(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    signal_(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
