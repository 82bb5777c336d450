"""Who may feed the drift windows: the ingestion token, checked before the body is read, and a
per-caller rate."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from drift_data import RedSplit

from winequality.contract import schema
from winequality.monitoring.service import CE_REQUEST, create_app
from winequality.params import DriftParams
from winequality.settings import DetectorSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "ingest-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def headers(**extra: str) -> dict[str, str]:
    return {
        "Ce-Id": "e-1",
        "Ce-Specversion": "0.3",
        "Ce-Source": "http://wine-quality-app",
        "Ce-Type": CE_REQUEST,
        "Content-Type": "application/json",
    } | extra


def body(red_split: RedSplit, n: int = 5) -> str:
    cols = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    return json.dumps({"wines": red_split.held_out.loc[: n - 1, cols].to_dict(orient="records")})


def app_for(reference: Path, **settings: Any) -> Any:
    options: dict[str, Any] = {"ingest_token": TOKEN} | settings
    return create_app(
        DetectorSettings(state_file=reference.parent.parent / "state.json", **options),
        DriftParams(window_size=50),
        reference,
    )


@pytest.mark.parametrize(
    ("auth", "reason"),
    [({}, "missing_token"), ({"Authorization": "Bearer nope"}, "invalid_token")],
)
def test_events_without_the_ingestion_token_are_401_and_count_no_row(
    reference_parquet: Path, red_split: RedSplit, auth: dict[str, str], reason: str
) -> None:
    with TestClient(app_for(reference_parquet)) as client:
        refused = client.post("/", content=body(red_split), headers=headers(**auth))
        assert refused.status_code == 401
        assert refused.json()["detail"]["reason"] == reason
        assert client.get("/drift").json()["window_fill"] == 0
        ok = client.post("/", content=body(red_split), headers=headers(**AUTH))
        assert ok.status_code == 200
        assert ok.json()["rows"] == 5


def test_the_ingestion_token_is_checked_before_the_body_is_read(reference_parquet: Path) -> None:
    app = app_for(reference_parquet)
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"[" * 1_000_000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/cloudevents-batch+json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401
    assert reads == 0


def test_over_the_per_caller_rate_ingestion_is_429_with_retry_after(
    reference_parquet: Path, red_split: RedSplit
) -> None:
    app = app_for(reference_parquet, ingest_rate_per_s=0.01, ingest_burst=2)
    with TestClient(app) as client:
        codes = [
            client.post("/", content=body(red_split), headers=headers(**AUTH)).status_code
            for _ in range(3)
        ]
        assert codes[:2] == [200, 200]
        assert codes[2] == 429
        refused = client.post("/", content=body(red_split), headers=headers(**AUTH))
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"]["reason"] == "rate_limited"
        assert client.get("/drift").json()["window_fill"] == 10


def test_without_a_token_ingestion_is_open_and_the_startup_log_says_so(
    reference_parquet: Path, red_split: RedSplit, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(app_for(reference_parquet, ingest_token=None)) as client:
        assert client.post("/", content=body(red_split), headers=headers()).status_code == 200
    assert "WINEQ_DRIFT_INGEST_TOKEN is not set" in caplog.text
