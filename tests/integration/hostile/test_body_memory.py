"""No request of any size raises a service's peak memory by more than 20 MB over its body limit.

Each service runs as deployed, fresh (its peak resident set, ``VmHWM``, is then only its own
start-up's); a 200 MB chunked body (no Content-Length: the limit can only be enforced while
reading) goes to every endpoint that reads a body, with and without the bearer token where one
is asked for, and the service's ``VmHWM`` after each is compared with the one before it.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.support.services import (
    APP_TOKEN,
    FEEDBACK_TOKEN,
    INGEST_TOKEN,
    WEBHOOK_TOKEN,
    Service,
    peak_rss_bytes,
    start_app,
    start_detector,
    start_webhook,
)

from winequality.pipeline.webhook import MAX_ALERT_BODY
from winequality.serving.routes.admin import MAX_RELOAD_BODY
from winequality.settings import DEFAULT_DETECTOR_MAX_BODY_BYTES, ServingSettings

from .conftest import QUICK_JOB

pytestmark = pytest.mark.integration

BODY_BYTES = 200 * 1024 * 1024
CHUNK = b" " * (1024 * 1024)
SLACK = 20 * 1024 * 1024
APP_LIMIT = ServingSettings.model_fields["max_body_bytes"].default


@pytest.fixture(scope="module")
def fresh(
    tmp_path_factory: pytest.TempPathFactory,
    serving_bundles: dict[str, Path],
    real_wines: pd.DataFrame,
) -> Iterator[dict[str, Service]]:
    root = tmp_path_factory.mktemp("memory")
    with (
        start_app(root / "app", serving_bundles["1"]) as app,
        start_detector(root / "detector", real_wines) as detector,
        start_webhook(root / "webhook", QUICK_JOB) as webhook,
    ):
        yield {"app": app, "detector": detector, "webhook": webhook}


def send_chunked(url: str, path: str, headers: dict[str, str], total: int) -> int | None:
    """POST ``total`` bytes of chunked body; the status, or None if the server closed the
    connection before answering (it may stop reading once it has refused the body)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
        try:
            for _ in range(total // len(CHUNK)):
                sock.sendall(frame)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body and closed: the answer may still be in the socket
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return None
        response.read()
        return response.status
    finally:
        sock.close()


TARGETS = [
    # service, path, headers, the limit of what it may read, the expected answer
    ("app", "/feedback", {"content-type": "application/json"}, 0, 401),
    ("app", "/feedback",
     {"content-type": "application/json", "authorization": f"Bearer {FEEDBACK_TOKEN}"},
     APP_LIMIT, 413),
    ("app", "/predict", {"content-type": "application/json"}, APP_LIMIT, 413),
    ("app", "/v2/models/wine-quality/infer", {"content-type": "application/octet-stream"},
     APP_LIMIT, 413),
    ("app", "/admin/reload", {"content-type": "application/json"}, 0, 401),
    ("app", "/admin/reload",
     {"content-type": "application/json", "authorization": f"Bearer {APP_TOKEN}"},
     MAX_RELOAD_BODY, 413),
    ("detector", "/", {"content-type": "application/cloudevents-batch+json"}, 0, 401),
    ("detector", "/", {"content-type": "application/cloudevents-batch+json",
                       "authorization": f"Bearer {INGEST_TOKEN}"},
     DEFAULT_DETECTOR_MAX_BODY_BYTES, 413),
    ("detector", "/", {"content-type": "application/json", "ce-id": "1", "ce-source": "m",
                       "ce-specversion": "1.0", "ce-type": "io.seldon.serving.inference.request",
                       "authorization": f"Bearer {INGEST_TOKEN}"},
     DEFAULT_DETECTOR_MAX_BODY_BYTES, 413),
    ("detector", "/reference/reload", {}, 0, 401),
    ("detector", "/reference/reload", {"authorization": "Bearer wrong"}, 0, 401),
    ("webhook", "/alerts", {"content-type": "application/json"}, 0, 401),
    ("webhook", "/alerts",
     {"content-type": "application/json", "authorization": f"Bearer {WEBHOOK_TOKEN}"},
     MAX_ALERT_BODY, 413),
]  # fmt: skip


@pytest.mark.parametrize(
    ("service", "path", "headers", "limit", "expected"),
    TARGETS,
    ids=[f"{t[0]}{t[1]}-{'token' if 'authorization' in t[2] else 'anonymous'}" for t in TARGETS],
)
def test_a_200_mb_body_costs_at_most_its_limit_plus_20_mb(
    fresh: dict[str, Service],
    service: str,
    path: str,
    headers: dict[str, str],
    limit: int,
    expected: int,
) -> None:
    served = fresh[service]
    before = peak_rss_bytes(served.pid)
    status = send_chunked(served.url, path, headers, BODY_BYTES)
    after = peak_rss_bytes(served.pid)
    assert status in (expected, None), status
    rise = after - before
    assert rise <= limit + SLACK, (
        f"{service} {path}: peak RSS rose {rise / 2**20:.1f} MB for a {limit / 2**20:.1f} MB limit"
    )
    assert served.process.alive()


def test_the_services_still_answer_after_the_large_bodies(fresh: dict[str, Service]) -> None:
    import httpx

    for served in fresh.values():
        assert httpx.get(f"{served.url}/health/ready", timeout=30).status_code == 200
