"""The retraining webhook, served for real on loopback, driven with Alertmanager payloads."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from winequality.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def alert_payload(name: str = "WineQualityDrift", state: str = "firing") -> dict[str, object]:
    return {
        "version": "4",
        "status": state,
        "receiver": "retrain",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "alerts": [
            {
                "status": state,
                "labels": {"alertname": name, "severity": "warning"},
                "annotations": {},
                "fingerprint": "abc",
            }
        ],
    }


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The webhook with a job that records each start, runs ~1.5 s and prints a JSON summary."""
    marker = tmp_path / "starts"
    job = tmp_path / "job.py"
    job.write_text(
        "import json, pathlib, sys, time\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "time.sleep(1.5)\n"
        "print(json.dumps({'promoted': True, 'version': '2'}))\n"
    )
    port = free_port()
    env = dict(os.environ)
    env |= {
        "WINEQ_WEBHOOK_TOKEN": TOKEN,
        "WINEQ_WEBHOOK_COMMAND": f'["{sys.executable}", "{job}"]',
        "WINEQ_WEBHOOK_COOLDOWN_S": "2",
    }
    proc = ManagedProcess(
        "webhook",
        [
            sys.executable,
            "-m",
            "winequality.cli",
            "webhook",
            "--port",
            str(port),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        tmp_path / "webhook.log",
        env=env,
        cwd=tmp_path,
    )
    with proc:
        proc.wait_ready(url=f"http://127.0.0.1:{port}/health/ready", timeout=30)
        yield f"http://127.0.0.1:{port}", marker


def wait_state(
    client: httpx.Client, url: str, state: str, timeout: float = 15
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"{url}/status").json()
        if body["state"] == state:
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"state never became {state}")


def test_alert_without_or_with_wrong_token_is_refused(webhook: tuple[str, Path]) -> None:
    url, marker = webhook
    assert httpx.post(f"{url}/alerts", json=alert_payload()).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert httpx.post(f"{url}/alerts", json=alert_payload(), headers=bad).status_code == 401
    assert not marker.exists()


def test_malformed_payload_is_a_422_naming_the_field(webhook: tuple[str, Path]) -> None:
    url, _ = webhook
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = httpx.post(f"{url}/alerts", json={"version": "4"}, headers=auth)
    assert resp.status_code == 422
    assert "alerts" in resp.text


def test_repeated_alerts_start_one_run_then_cool_down(webhook: tuple[str, Path]) -> None:
    url, marker = webhook
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(headers=auth) as client:
        first = client.post(f"{url}/alerts", json=alert_payload()).json()
        assert first["action"] == "started"
        for _ in range(5):
            again = client.post(f"{url}/alerts", json=alert_payload()).json()
            assert again["action"] == "already_running"
        status = wait_state(client, url, "cooling_down")
        assert client.post(f"{url}/alerts", json=alert_payload()).json()["action"] == (
            "cooling_down"
        )
        runs = status["runs"]
        assert isinstance(runs, list)
        assert len(runs) == 1
        assert runs[0]["exit_code"] == 0
        assert runs[0]["result"] == {"promoted": True, "version": "2"}
        wait_state(client, url, "idle")
        assert client.post(f"{url}/alerts", json=alert_payload()).json()["action"] == "started"
        assert len(wait_state(client, url, "cooling_down")["runs"]) == 2  # type: ignore[arg-type]
    assert marker.read_text() == "xx"


def test_resolved_and_unrelated_alerts_are_ignored(webhook: tuple[str, Path]) -> None:
    url, marker = webhook
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resolved = httpx.post(f"{url}/alerts", json=alert_payload(state="resolved"), headers=auth)
    other = httpx.post(f"{url}/alerts", json=alert_payload(name="DriftDetectorDown"), headers=auth)
    assert resolved.json()["action"] == "ignored"
    assert other.json()["action"] == "ignored"
    assert not marker.exists()
