"""``POST /feedback``: by request id + index, or as labelled rows; every refusal names its cause."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.unit.serving.conftest import TestClient

from winequality.contract import schema
from winequality.feedback_store import FeedbackStore
from winequality.serving.app import create_app
from winequality.serving.schemas import example_wine
from winequality.settings import ServingSettings

V2_INFER = f"/v2/models/{schema.MODEL_NAME}/infer"


@pytest.fixture
def feedback_db(tmp_path: Path) -> Path:
    return tmp_path / "feedback" / "feedback.sqlite"


@pytest.fixture
def fb_client(model_dir: Path, feedback_db: Path) -> Iterator[TestClient]:
    settings = ServingSettings(
        model_dir=model_dir,
        feedback_db=feedback_db,
        recent_requests=3,
        max_batch_rows=50,
        _env_file=None,  # type: ignore[call-arg]
    )
    with TestClient(create_app(settings)) as c:
        yield c


def stored(db: Path) -> pd.DataFrame:
    store = FeedbackStore(db)
    try:
        return store.frame()
    finally:
        store.close()


def predict(client: TestClient, wines: list[dict[str, Any]]) -> str:
    response = client.post("/predict", json={"wines": wines})
    assert response.status_code == 200
    request_id: str = response.json()["request_id"]
    return request_id


def problems(response: Any) -> list[tuple[int | None, str | None]]:
    return [(p["index"], p["field"]) for p in response.json()["detail"]]


def test_feedback_by_request_id_stores_the_scored_wine(
    fb_client: TestClient, feedback_db: Path
) -> None:
    wines = [example_wine("red"), example_wine("white") | {"alcohol": 12.5}]
    rid = predict(fb_client, wines)
    response = fb_client.post("/feedback", json={"request_id": rid, "index": 1, "quality": 7})
    assert response.status_code == 201
    assert response.json() == {"stored": 1, "request_id": rid}
    frame = stored(feedback_db)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row[schema.TARGET] == 7
    assert row[schema.WINE_TYPE] == "white"
    assert row["alcohol"] == 12.5


def test_feedback_for_a_v2_request_recovers_the_tensor_values(
    fb_client: TestClient, feedback_db: Path
) -> None:
    wine = example_wine("white") | {"fixed_acidity": 7.4}
    inputs = [
        {"name": n, "shape": [1, 1], "datatype": "FP32", "data": [wine[n]]}
        for n in schema.FEATURE_NAMES
    ]
    inputs.append(
        {"name": schema.WINE_TYPE, "shape": [1, 1], "datatype": "BYTES", "data": ["white"]}
    )
    response = fb_client.post(V2_INFER, json={"inputs": inputs})
    assert response.status_code == 200
    rid = response.headers["x-request-id"]  # the V2 body's id echoes the request's own
    answer = fb_client.post("/feedback", json={"request_id": rid, "index": 0, "quality": 5})
    assert answer.status_code == 201
    row = stored(feedback_db).iloc[0]
    assert row["fixed_acidity"] == 7.4  # not float32's 7.400000095367432
    assert row[schema.WINE_TYPE] == "white"


def test_feedback_as_labelled_rows_stores_every_row(
    fb_client: TestClient, feedback_db: Path
) -> None:
    wines = [example_wine("red"), example_wine("white")]
    response = fb_client.post("/feedback", json={"wines": wines, "quality": [5, 6]})
    assert response.status_code == 201
    assert response.json() == {"stored": 2, "request_id": None}
    assert stored(feedback_db)[schema.TARGET].tolist() == [5, 6]


def test_unknown_request_id_is_404_naming_it(fb_client: TestClient) -> None:
    response = fb_client.post("/feedback", json={"request_id": "nope-42", "index": 0, "quality": 6})
    assert response.status_code == 404
    assert "nope-42" in response.json()["error"]
    assert problems(response) == [(None, "request_id")]


def test_forgotten_request_id_is_404_once_newer_requests_pushed_it_out(
    fb_client: TestClient,
) -> None:
    first = predict(fb_client, [example_wine()])
    later = [predict(fb_client, [example_wine()]) for _ in range(3)]  # recent_requests=3
    response = fb_client.post("/feedback", json={"request_id": first, "index": 0, "quality": 6})
    assert response.status_code == 404
    assert first in response.json()["error"]
    ok = fb_client.post("/feedback", json={"request_id": later[0], "index": 0, "quality": 6})
    assert ok.status_code == 201


def test_index_out_of_range_is_422_naming_the_index(fb_client: TestClient) -> None:
    rid = predict(fb_client, [example_wine(), example_wine("white")])
    response = fb_client.post("/feedback", json={"request_id": rid, "index": 2, "quality": 6})
    assert response.status_code == 422
    assert problems(response) == [(2, "index")]
    assert "out of range" in response.json()["error"]


@pytest.mark.parametrize("quality", [11, -1, 6.5, "6", None, True])
def test_bad_quality_by_request_is_422_naming_quality(fb_client: TestClient, quality: Any) -> None:
    rid = predict(fb_client, [example_wine()])
    response = fb_client.post("/feedback", json={"request_id": rid, "index": 0, "quality": quality})
    assert response.status_code == 422
    assert problems(response) == [(0, "quality")]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"request_id": "x", "index": -1, "quality": 6}, [(None, "index")]),
        ({"request_id": "x", "index": "0", "quality": 6}, [(None, "index")]),
        ({"request_id": 3, "index": 0, "quality": 6}, [(None, "request_id")]),
        ({"request_id": "x", "index": 0}, [(None, "quality")]),
        ({"request_id": "x", "index": 0, "quality": 6, "extra": 1}, [(None, "extra")]),
    ],
)
def test_malformed_by_request_body_is_422_naming_the_field(
    fb_client: TestClient, doc: dict[str, Any], expected: list[tuple[int | None, str]]
) -> None:
    response = fb_client.post("/feedback", json=doc)
    assert response.status_code == 422
    assert problems(response) == expected


def test_bad_rows_are_422_naming_each_wine_and_field(fb_client: TestClient) -> None:
    bad_alcohol = example_wine() | {"alcohol": 80.0}
    no_ph = {k: v for k, v in example_wine().items() if k != "ph"}
    wines = [example_wine(), bad_alcohol, no_ph]
    response = fb_client.post("/feedback", json={"wines": wines, "quality": [5, 6, 7]})
    assert response.status_code == 422
    assert problems(response) == [(1, "alcohol"), (2, "ph")]


def test_bad_labels_are_422_naming_the_row(fb_client: TestClient) -> None:
    wines = [example_wine(), example_wine("white")]
    response = fb_client.post("/feedback", json={"wines": wines, "quality": [5, 12]})
    assert response.status_code == 422
    assert problems(response) == [(1, "quality")]


def test_label_count_mismatch_is_422(fb_client: TestClient) -> None:
    response = fb_client.post("/feedback", json={"wines": [example_wine()], "quality": [5, 6]})
    assert response.status_code == 422
    assert problems(response) == [(None, "quality")]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'{"something": 1}', b'{"wines": "many", "quality": []}']
)
def test_unusable_bodies_are_422_not_500(fb_client: TestClient, raw: bytes) -> None:
    response = fb_client.post(
        "/feedback", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]


def test_unwritable_store_is_503_not_500(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = ServingSettings(
        model_dir=model_dir,
        feedback_db=blocker / "feedback.sqlite",
        _env_file=None,  # type: ignore[call-arg]
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/feedback", json={"wines": [example_wine()], "quality": [6]})
    assert response.status_code == 503
    assert "feedback store" in response.json()["error"]


def test_openapi_references_of_the_feedback_body_all_resolve(model_dir: Path) -> None:
    app = create_app(ServingSettings(model_dir=model_dir, _env_file=None))  # type: ignore[call-arg]
    document = app.openapi()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                refs.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document["paths"]["/feedback"])
    walk(document.get("components", {}))
    for ref in refs:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"{ref} points at nothing"
            target = target[part]
    body = document["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]
    titles = [variant["title"] for variant in body["schema"]["oneOf"]]
    assert titles == ["FeedbackByRequest", "FeedbackRows"]


def test_a_locked_store_answers_503_and_the_next_label_after_the_lock_is_stored(
    model_dir: Path, feedback_db: Path
) -> None:
    settings = ServingSettings(
        model_dir=model_dir,
        feedback_db=feedback_db,
        database_timeout_s=0.2,
        _env_file=None,  # type: ignore[call-arg]
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").json()["feedback_store"]["state"] == "unused"
        label = {"wines": [example_wine()], "quality": [6]}
        assert client.post("/feedback", json=label).status_code == 201
        holder = sqlite3.connect(feedback_db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        refused = client.post("/feedback", json=label)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        body = refused.json()
        assert body["detail"][0]["type"] == "store_unavailable"
        assert "nothing was stored" in body["error"]
        assert "database is locked" in body["error"]
        ready = client.get("/health/ready")
        assert ready.status_code == 200  # predictions still work: the Service keeps the pod
        assert ready.json()["feedback_store"]["state"] == "unavailable"
        assert "database is locked" in ready.json()["feedback_store"]["reason"]
        holder.execute("ROLLBACK")
        holder.close()
        for quality in (7, 8):
            assert client.post("/feedback", json=label | {"quality": [quality]}).status_code == 201
        assert client.get("/health/ready").json()["feedback_store"]["state"] == "ok"
    assert stored(feedback_db)[schema.TARGET].tolist() == [6, 7, 8]


def sharing(model_dir: Path, feedback_db: Path, **overrides: Any) -> ServingSettings:
    """An app sharing its served rows through ``feedback_db`` (a 0.05 s linger by default)."""
    return ServingSettings(
        model_dir=model_dir,
        feedback_db=feedback_db,
        served_rows_shared=True,
        **({"served_rows_linger_s": 0.05} | overrides),
        _env_file=None,  # type: ignore[call-arg]
    )


def test_feedback_by_request_id_works_on_another_app_sharing_the_store(
    model_dir: Path, feedback_db: Path
) -> None:
    with (
        TestClient(create_app(sharing(model_dir, feedback_db))) as first,
        TestClient(create_app(sharing(model_dir, feedback_db))) as second,
    ):
        wines = [example_wine("red"), example_wine("white") | {"alcohol": 12.5}]
        answer = first.post("/predict", json={"wines": wines}).json()
        rid = answer["request_id"]
        # Once the first app's write landed, however slow: a label sent before it is the next
        # test's case, whose wait is bounded.
        deadline = time.monotonic() + 30
        while "winequality_served_rows_written_total 2.0" not in (
            metrics := first.get("/metrics").text
        ):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
        # The second app never saw the request: it finds what the first one served in the store.
        response = second.post("/feedback", json={"request_id": rid, "index": 1, "quality": 7})
        assert response.status_code == 201, response.text
        unknown = second.post("/feedback", json={"request_id": "nope", "index": 0, "quality": 7})
        assert unknown.status_code == 404
        assert "among the requests the replicas served" in unknown.json()["detail"][0]["msg"]
    assert 'winequality_served_rows_dropped_total{reason="queue_full"} 0.0' in metrics
    store = FeedbackStore(feedback_db)
    try:
        assert store.labelled(answer["model_version"], 10) == [
            (7.0, pytest.approx(answer["predictions"][1]["quality"], abs=1e-4))
        ]
        frame = store.frame()
    finally:
        store.close()
    assert frame.iloc[0]["alcohol"] == 12.5
    assert frame.iloc[0][schema.WINE_TYPE] == "white"


def test_a_label_sent_before_the_serving_replica_wrote_the_request_waits_for_it(
    model_dir: Path, feedback_db: Path
) -> None:
    """The replica that answered writes a second later (its linger); the label, sent at once to
    another replica, keeps looking for the lookup wait instead of answering 404."""

    # A lookup wait far past the first app's linger: its write may come late on a loaded machine.
    with (
        TestClient(create_app(sharing(model_dir, feedback_db, served_rows_linger_s=1.0))) as first,
        TestClient(
            create_app(sharing(model_dir, feedback_db, served_rows_lookup_wait_s=10.0))
        ) as second,
    ):
        rid = first.post("/predict", json={"wines": [example_wine("red")]}).json()["request_id"]
        began = time.monotonic()
        response = second.post("/feedback", json={"request_id": rid, "index": 0, "quality": 6})
        waited = time.monotonic() - began
        assert response.status_code == 201, response.text
    assert waited > 0.5  # it was not in the store at the first looks
