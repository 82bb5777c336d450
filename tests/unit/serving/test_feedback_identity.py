"""Who may label what: the feedback token, one label a wine, per-caller limits, and request ids
that a caller cannot choose or take over."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.serving.conftest import TestClient

from winequality.feedback_store import FeedbackStore
from winequality.serving.app import create_app
from winequality.serving.schemas import example_wine
from winequality.settings import ServingSettings

TOKEN = "feedback-s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def make_settings(model_dir: Path, db: Path, **changes: Any) -> ServingSettings:
    options: dict[str, Any] = {"feedback_token": TOKEN} | changes
    return ServingSettings(
        model_dir=model_dir,
        feedback_db=db,
        _env_file=None,  # type: ignore[call-arg]
        **options,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "feedback.sqlite"


@pytest.fixture
def client(model_dir: Path, db: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_dir, db))) as c:
        yield c


def predict(client: TestClient, wine: dict[str, Any], **headers: str) -> str:
    response = client.post("/predict", json={"wines": [wine]}, headers=headers)
    assert response.status_code == 200
    rid: str = response.json()["request_id"]
    return rid


def label(client: TestClient, rid: str, quality: int, headers: dict[str, str] = AUTH) -> Any:
    return client.post(
        "/feedback", json={"request_id": rid, "index": 0, "quality": quality}, headers=headers
    )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_token"),
        ({"authorization": "Bearer wrong"}, "invalid_token"),
        ({"authorization": f"Basic {TOKEN}"}, "missing_token"),
    ],
)
def test_feedback_without_the_token_is_401_and_stores_nothing(
    client: TestClient, db: Path, headers: dict[str, str], reason: str
) -> None:
    rid = predict(client, example_wine())
    response = label(client, rid, 6, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"]["reason"] == reason
    rows = client.post(
        "/feedback", json={"wines": [example_wine()], "quality": [5]}, headers=headers
    )
    assert rows.status_code == 401
    assert FeedbackStore(db).count() == 0


def test_the_token_is_checked_before_the_body_is_read(model_dir: Path, db: Path) -> None:
    app = create_app(make_settings(model_dir, db))
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1_000_000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/feedback", "raw_path": b"/feedback", "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401
    assert reads == 0


def test_with_the_token_a_label_is_stored_once_and_a_different_one_is_409(
    client: TestClient, db: Path
) -> None:
    rid = predict(client, example_wine())
    first = label(client, rid, 6)
    assert first.status_code == 201
    assert first.json() == {"stored": 1, "request_id": rid}
    again = label(client, rid, 6)  # a retried POST: idempotent
    assert again.status_code == 200
    assert again.json() == {"stored": 0, "request_id": rid}
    other = label(client, rid, 3)
    assert other.status_code == 409
    body = other.json()
    assert "already labelled 6" in body["error"]
    assert body["detail"][0]["type"] == "label_conflict"
    assert body["detail"][0]["field"] == "quality"
    assert FeedbackStore(db).frame()["quality"].tolist() == [6]


def test_a_repeated_label_counts_once_in_the_realized_quality(client: TestClient) -> None:
    rid = predict(client, example_wine())
    for _ in range(3):
        label(client, rid, 6)
    metrics = client.get("/metrics").text
    counted = [
        line for line in metrics.splitlines() if line.startswith("winequality_realized_labels")
    ]
    assert counted == ['winequality_realized_labels{model_version="1"} 1.0'], counted


def test_a_caller_chosen_request_id_names_no_served_row(client: TestClient) -> None:
    issued = predict(client, example_wine(), **{"x-request-id": "mine-1"})
    assert issued != "mine-1"
    assert label(client, "mine-1", 6).status_code == 404


def test_reusing_another_callers_request_id_does_not_take_over_its_wine(
    client: TestClient, db: Path
) -> None:
    victim = predict(client, example_wine("red"))
    # The attacker sends its own wine under the victim's id: it gets an id of its own, and the
    # victim's id still names the victim's wine.
    attacker = predict(
        client, example_wine("white") | {"alcohol": 14.0}, **{"x-request-id": victim}
    )
    assert attacker != victim
    assert label(client, victim, 6).status_code == 201
    row = FeedbackStore(db).frame().iloc[0]
    assert row["wine_type"] == "red"
    assert row["alcohol"] == example_wine("red")["alcohol"]


def test_over_the_per_caller_rate_feedback_is_429_with_retry_after(
    model_dir: Path, db: Path
) -> None:
    settings = make_settings(model_dir, db, feedback_rate_per_s=0.01, feedback_burst=2)
    with TestClient(create_app(settings)) as client:
        rows = {"wines": [example_wine()], "quality": [5]}
        codes = [client.post("/feedback", json=rows, headers=AUTH).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        refused = client.post("/feedback", json=rows, headers=AUTH)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"]["reason"] == "rate_limited"
        assert FeedbackStore(db).count() == 2
        # Predictions are not limited by it.
        assert client.post("/predict", json={"wines": [example_wine()]}).status_code == 200


def test_without_a_token_feedback_is_open_and_the_startup_log_says_so(
    model_dir: Path, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(model_dir, db, feedback_token=None)
    with TestClient(create_app(settings)) as client:
        rows = {"wines": [example_wine()], "quality": [5]}
        assert client.post("/feedback", json=rows).status_code == 201
    assert "WINEQ_FEEDBACK_TOKEN is not set" in caplog.text
