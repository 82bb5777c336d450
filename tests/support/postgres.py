"""A real PostgreSQL server for the tests, from the Debian package, on a loopback port.

``PostgresServer`` runs ``initdb`` into a data directory of its own under a temporary folder and
starts ``postgres`` on 127.0.0.1 (no Unix socket, trust authentication: nothing but this machine
can reach it). PostgreSQL refuses to run as root, so as root the folder is given to the
``postgres`` user and both commands run as it. ``kill`` is a crash (SIGKILL to the server and its
backends), ``start`` after it runs crash recovery on the same data, ``stop`` is a fast shutdown;
all by PID.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from winequality.process import free_port, port_open

PG_ROOT = Path("/usr/lib/postgresql")
BIN_ENV = "WINEQ_TEST_PG_BIN"
SUPERUSER = "postgres"


def postgres_bin() -> Path | str:
    """The folder holding ``initdb`` and ``postgres`` (newest Debian version), or why none."""
    if explicit := os.environ.get(BIN_ENV):
        folder = Path(explicit)
        candidates = [folder]
    else:
        versions = sorted(
            (p for p in PG_ROOT.glob("*/bin") if p.parent.name.isdigit()),
            key=lambda p: int(p.parent.name),
        )
        candidates = versions[::-1]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    where = os.environ.get(BIN_ENV) or f"{PG_ROOT}/<version>/bin"
    return (
        f"no PostgreSQL server binaries (initdb, postgres) in {where}: apt-get install postgresql"
    )


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class PostgresServer:
    """One PostgreSQL cluster; ``url(db)`` is a ``postgresql://`` URL of one of its databases."""

    def __init__(self, bin_dir: Path, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wineq-pg-"))
        self.data = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as = _run_as()
        if self._as:
            os.chown(self.root, self._as["user"], self._as["group"])
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "HOME": str(self.root)}
        self._env = env
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            cwd=self.root, env=env, check=True, capture_output=True, **self._as,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("postgres is not running")
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> PostgresServer:
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "max_connections=100"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
            env=self._env, start_new_session=True, **self._as,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}:\n{self.log_tail()}")
            if port_open("127.0.0.1", self.port) and self._accepts():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False  # still starting (or recovering)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def query(self, database: str, statement: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(database)) as conn:
            return list(conn.execute(statement).fetchall())  # type: ignore[arg-type]

    def kill(self) -> None:
        """Crash the server: SIGKILL to its process group (the postmaster and every backend)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._wait_backends_gone()
        self.proc = None

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT to the postmaster), SIGKILL to the group after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._wait_backends_gone()
        self.proc = None

    def _wait_backends_gone(self, timeout: float = 10.0) -> None:
        # A restart on the same data refuses while a backend still holds the shared memory.
        pgid = self.proc.pid if self.proc is not None else None
        deadline = time.monotonic() + timeout
        while pgid is not None and time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start() if self.proc is None else self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
