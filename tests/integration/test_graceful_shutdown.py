"""The app, the drift detector and the webhook as deployed (their CLI commands, one server
runner, ``http_server``), on loopback ports: SIGTERM under load, and bodies that never finish."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.http_load import Response, Tally, http_request, load, read_response

from winequality.process import ManagedProcess, free_port
from winequality.serving.schemas import example_wine

pytestmark = pytest.mark.integration

CONNECTIONS = 16
TOKEN = "graceful-token"
READ_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Service:
    name: str
    process: ManagedProcess
    port: int
    load_request: bytes
    """What the load sends: the service's real work where it is cheap enough to hammer."""


def start(name: str, root: Path, bundle: Path, env: dict[str, str] | None = None) -> Service:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "winequality.cli"]
    env = {**os.environ, **(env or {})}
    if name == "app":
        model_dir = shutil.copytree(bundle, root / "model", dirs_exist_ok=True)
        cmd = [*base, "serve", "--model-dir", str(model_dir), "--log-level", "warning"]
        env["WINEQ_FEEDBACK_DB"] = str(root / "feedback.sqlite")
        body = json.dumps({"wines": [example_wine()]}).encode()
        load_request = http_request("POST", "/predict", body, {"content-type": "application/json"})
    elif name == "detector":
        # No reference sample: the detector stays up (not ready) and calibrates nothing, which
        # would only compete for the CPU; the server runner is what is under test.
        params = root / "params.yaml"
        params.write_text("drift:\n  window_size: 100\n")
        missing = root / "none" / "reference.parquet"
        cmd = [*base, "drift", "serve", "--reference", str(missing), "--params", str(params)]
        load_request = http_request("GET", "/health/live")
    else:
        cmd = [*base, "webhook", "--log-dir", str(root / "logs")]
        env["WINEQ_WEBHOOK_TOKEN"] = TOKEN
        load_request = http_request("GET", "/status")
    process = ManagedProcess(name, [*cmd, "--port", str(port)], root / f"{name}.log", env, root)
    process.start()
    process.wait_ready(url=f"http://127.0.0.1:{port}/health/live", timeout=60)
    return Service(name, process, port, load_request)


# --- SIGTERM under load ----------------------------------------------------------------------


@dataclass
class Probe:
    """A keep-alive connection asking ``GET /health/ready``: every 50 ms until paused, then once
    more, its headers completed only when the drain has begun (before, the answer would be the
    app's own)."""

    pause: asyncio.Event = field(default_factory=asyncio.Event)
    paused: asyncio.Event = field(default_factory=asyncio.Event)
    draining: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, port: int) -> Response:
        request = http_request("GET", "/health/ready")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not self.pause.is_set():
                writer.write(request)
                await read_response(reader)
                await asyncio.sleep(0.05)
            # The last request begun before SIGTERM: a connection idle since its last answer
            # would be closed by the drain once idle for its grace (1 s), which a loaded machine
            # can take to get from SIGTERM to ``draining``; one with a request begun is not.
            writer.write(request[:-2])
            await writer.drain()
            self.paused.set()
            await self.draining.wait()
            writer.write(request[-2:])
            return await read_response(reader)
        finally:
            writer.close()


async def sigterm_under_load(service: Service) -> tuple[Tally, Response]:
    stop, probe = asyncio.Event(), Probe()
    running = asyncio.gather(
        load("127.0.0.1", service.port, service.load_request, CONNECTIONS, stop, probe.draining),
        probe.run(service.port),
    )
    await asyncio.sleep(1.5)
    probe.pause.set()
    await probe.paused.wait()
    os.kill(service.process.pid, signal.SIGTERM)
    # Safety net only: the workers stop on their own once connects are refused.
    asyncio.get_running_loop().call_later(20, stop.set)
    tally, readiness = await running
    return tally, readiness


@pytest.mark.parametrize("name", ["app", "detector", "webhook"])
def test_sigterm_under_load_resets_nothing_answers_every_request_and_exits_0(
    name: str, tmp_path: Path, serving_bundles: dict[str, Path]
) -> None:
    service = start(name, tmp_path, serving_bundles["1"])
    with service.process:
        tally, readiness = asyncio.run(sigterm_under_load(service))
        code = service.process.proc.wait(20) if service.process.proc else None
    assert tally.resets == 0, tally
    assert tally.unanswered == 0, tally
    assert tally.answered > CONNECTIONS, tally  # the load was real
    assert set(tally.statuses) == {200}, tally
    # Every connection ended the clean way: an answer saying Connection: close, then a FIN;
    # reconnecting was refused (the listener closed), nothing was sent on those.
    assert tally.clean_closes == CONNECTIONS, tally
    assert tally.refused == CONNECTIONS, tally
    assert readiness.status == 503
    assert json.loads(readiness.body)["reason"] == "draining"
    assert readiness.closes
    assert code == 0, service.process.log_tail()


# --- bodies that never finish ----------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_read_services(
    tmp_path_factory: pytest.TempPathFactory, serving_bundles: dict[str, Path]
) -> Iterator[dict[str, Service]]:
    root = tmp_path_factory.mktemp("read-timeout")
    env = {
        "WINEQ_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "WINEQ_DRIFT_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "WINEQ_WEBHOOK_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    services = {}
    try:
        for name in ("app", "detector", "webhook"):
            services[name] = start(name, root / name, serving_bundles["1"], env)
        yield services
    finally:
        for service in services.values():
            service.process.stop()


SLOW_BODIES = {
    "app /predict": ("app", "/predict", {"content-type": "application/json"}),
    "app V2 infer": ("app", "/v2/models/wine-quality/infer", {"content-type": "application/json"}),
    "detector batch": ("detector", "/", {"content-type": "application/cloudevents-batch+json"}),
    "webhook /alerts": (
        "webhook",
        "/alerts",
        {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
    ),
}


@pytest.mark.parametrize("case", SLOW_BODIES)
def test_a_body_that_never_finishes_gets_a_json_408_in_time_and_the_connection_is_freed(
    case: str, slow_read_services: dict[str, Service]
) -> None:
    name, path, headers = SLOW_BODIES[case]
    service = slow_read_services[name]
    head = http_request("POST", path, b"", {**headers, "content-length": "100000"})
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head + b'[{"never": "finished')
        data = b""
        while chunk := sock.recv(65536):  # until the server closes: the connection is freed
            data += chunk
        elapsed = time.monotonic() - started
    head_part, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head_part.decode().split("\r\n")
    answer = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert status_line.split()[1] == "408", data
    assert answer["content-type"] == "application/json"
    assert answer["connection"] == "close"
    assert "read timeout" in str(json.loads(body))
    if name == "app":
        assert answer["x-request-id"]
    # The configured timeout, not the services' default of 10 s (nor the socket's timeout).
    assert READ_TIMEOUT_S * 0.9 <= elapsed < READ_TIMEOUT_S + 5
