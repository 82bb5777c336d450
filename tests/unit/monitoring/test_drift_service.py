"""The detector app in process: events, windows, metrics, report, reload, errors."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from drift_data import RedSplit

from winequality import schema
from winequality.monitoring.service import CE_REQUEST, CE_RESPONSE, create_app
from winequality.params import DriftParams
from winequality.settings import Settings

with warnings.catch_warnings():
    # Starlette asks for httpx2 at import; the project pins httpx, which works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "s3cret-admin"
WINDOW = 50


def ce_headers(ce_type: str = CE_REQUEST, event_id: str = "e-1") -> dict[str, str]:
    return {
        "Ce-Id": event_id,
        "Ce-Specversion": "0.3",
        "Ce-Source": "http://wine-quality-app",
        "Ce-Type": ce_type,
        "Ce-Requestid": event_id,
        "Ce-Modelid": "wine-quality",
        "Content-Type": "application/json",
    }


def wines(frame: pd.DataFrame) -> dict[str, Any]:
    cols = [*schema.FEATURE_NAMES, schema.WINE_TYPE]
    return {"wines": frame.loc[:, cols].to_dict(orient="records")}


def make_client(reference: Path, **settings: Any) -> TestClient:
    app = create_app(
        Settings(admin_token=TOKEN, **settings), DriftParams(window_size=WINDOW), reference
    )
    return TestClient(app)


@pytest.fixture
def client(reference_parquet: Path) -> Iterator[TestClient]:
    with make_client(reference_parquet) as c:
        yield c


def post(client: TestClient, frame: pd.DataFrame, **kw: Any) -> Any:
    return client.post("/", content=json.dumps(wines(frame)), headers=ce_headers(**kw))


def metric(client: TestClient, line_prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_prefix} not exported")


def test_rows_accumulate_until_the_window_is_full(client: TestClient, red_split: RedSplit) -> None:
    held = red_split.held_out
    first = post(client, held.iloc[:30]).json()
    assert (first["window_fill"], first["windows_tested"]) == (30, 0)
    assert client.get("/drift").json()["latest"] is None
    second = post(client, held.iloc[30:60]).json()
    assert (second["window_fill"], second["windows_tested"]) == (10, 1)
    latest = client.get("/drift").json()["latest"]
    assert latest["window_size"] == WINDOW
    assert latest["reference_size"] == 1000
    assert metric(client, "wineq_drift_rows_total") == 60
    assert metric(client, "wineq_drift_windows_total") == 1


def test_a_big_batch_fills_several_windows(client: TestClient, red_split: RedSplit) -> None:
    body = post(client, red_split.white.iloc[:130]).json()
    assert (body["windows_tested"], body["window_fill"]) == (2, 30)
    assert body["drift"] == [True, True]


def test_drift_latches_metrics_until_reference_reload(
    client: TestClient, red_split: RedSplit
) -> None:
    post(client, red_split.white.iloc[:WINDOW])
    assert metric(client, "seldon_metric_drift_found") == 1
    assert metric(client, "seldon_metric_drift_is_drift") == 1
    assert metric(client, 'seldon_metric_drift_p_val{feature="wine_type"}') < 1e-10
    assert metric(client, 'seldon_metric_drift_distance{feature="wine_type"}') == 1.0
    assert metric(client, 'seldon_metric_drift_threshold{feature="alcohol"}') == pytest.approx(
        0.05 / 12
    )
    # A clean window afterwards clears is_drift but not the latch the alert relies on.
    post(client, red_split.reference_frame.iloc[:WINDOW])
    assert metric(client, "seldon_metric_drift_is_drift") == 0
    assert metric(client, "seldon_metric_drift_found") == 1
    assert client.get("/drift").json()["drift_found"] is True

    ok = client.post("/reference/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert metric(client, "seldon_metric_drift_found") == 0
    assert "seldon_metric_drift_p_val{" not in client.get("/metrics").text
    state = client.get("/drift").json()
    assert (state["drift_found"], state["window_fill"], state["latest"]) == (False, 0, None)


def test_response_events_are_counted_and_ignored(client: TestClient, red_split: RedSplit) -> None:
    resp = client.post(
        "/", content=json.dumps({"predictions": [5.0]}), headers=ce_headers(CE_RESPONSE)
    )
    assert resp.status_code == 200
    assert resp.json() == {"ignored": "response event"}
    assert metric(client, 'wineq_drift_events_total{kind="response"}') == 1
    assert metric(client, "wineq_drift_rows_total") == 0


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"Content-Type": "application/json"}, b"{}", 400, "missing headers"),
        (ce_headers("com.example.other"), b"{}", 400, "unsupported Ce-Type"),
        (ce_headers(), b"{not json", 400, "not valid JSON"),
        (ce_headers(), b'{"instances": [[1, 2]]}', 422, "unknown request format"),
    ],
)
def test_bad_events_are_4xx_with_a_reason(
    client: TestClient, headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    resp = client.post("/", content=body, headers=headers)
    assert resp.status_code == status
    assert message in resp.json()["detail"]["message"]
    assert "wineq_drift_rejected_events_total{" in client.get("/metrics").text


def test_invalid_values_list_row_and_field(client: TestClient, red_split: RedSplit) -> None:
    body = wines(red_split.held_out.iloc[:3])
    body["wines"][1]["chlorides"] = -1.0
    resp = client.post("/", content=json.dumps(body), headers=ce_headers())
    assert resp.status_code == 422
    problems = resp.json()["detail"]["problems"]
    assert [(p["row"], p["field"]) for p in problems] == [(1, "chlorides")]
    assert client.get("/drift").json()["window_fill"] == 0


def test_oversized_body_is_413(reference_parquet: Path, red_split: RedSplit) -> None:
    with make_client(reference_parquet, max_body_bytes=500) as c:
        resp = post(c, red_split.held_out.iloc[:20])
    assert resp.status_code == 413


def test_reload_requires_the_admin_token(client: TestClient) -> None:
    assert client.post("/reference/reload").status_code == 401
    wrong = client.post("/reference/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_reload_is_disabled_without_an_admin_token(reference_parquet: Path) -> None:
    app = create_app(Settings(admin_token=None), DriftParams(), reference_parquet)
    with TestClient(app) as c:
        resp = c.post("/reference/reload", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 401
    assert "WINEQ_ADMIN_TOKEN" in resp.json()["detail"]["message"]


def test_failed_reload_keeps_the_previous_reference(
    client: TestClient, reference_parquet: Path, red_split: RedSplit
) -> None:
    post(client, red_split.white.iloc[:WINDOW])
    reference_parquet.write_bytes(b"not parquet")
    resp = client.post("/reference/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 409
    assert "previous reference kept" in resp.json()["detail"]["message"]
    assert metric(client, "seldon_metric_drift_found") == 1
    assert client.get("/health/ready").status_code == 200


def test_reload_picks_up_a_new_bundle_reference(
    client: TestClient, reference_parquet: Path, real_wines: pd.DataFrame
) -> None:
    real_wines.sample(700, random_state=4).to_parquet(reference_parquet)
    resp = client.post("/reference/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.json()["reference_rows"] == 700
    assert metric(client, "wineq_drift_reference_rows") == 700


def test_not_ready_without_reference_then_ready_after_reload(
    tmp_path: Path, red_split: RedSplit
) -> None:
    path = tmp_path / "reference.parquet"
    with make_client(path) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert "not found" in ready.json()["detail"]["message"]
        assert post(c, red_split.held_out.iloc[:5]).status_code == 503
        red_split.reference_frame.to_parquet(path)
        assert (
            c.post("/reference/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            == 200
        )
        assert c.get("/health/ready").status_code == 200


def test_report_shows_plots_and_the_latest_result(client: TestClient, red_split: RedSplit) -> None:
    empty = client.get("/report")
    assert empty.status_code == 200
    assert "No live rows received yet" in empty.text
    post(client, red_split.white.iloc[:WINDOW])
    page = client.get("/report")
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == len(schema.FEATURE_NAMES) + 1
    assert "DRIFT" in page.text
    for name in schema.FEATURE_NAMES:
        assert f"<td>{name}</td>" in page.text
