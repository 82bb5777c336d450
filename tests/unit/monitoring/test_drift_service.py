"""The detector app in process: events, windows, metrics, report, reload, errors."""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from drift_data import RedSplit

from winequality.contract import schema
from winequality.monitoring.service import CE_REQUEST, CE_RESPONSE, create_app
from winequality.params import DriftParams
from winequality.settings import DetectorSettings

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


def make_client(reference: Path, params: DriftParams | None = None, **settings: Any) -> TestClient:
    settings.setdefault("state_file", reference.parent.parent / "drift-state.json")
    app = create_app(
        DetectorSettings(admin_token=TOKEN, **settings),
        params or DriftParams(window_size=WINDOW),
        reference,
    )
    return TestClient(app)


def wait_ready(client: TestClient, timeout: float = 120.0) -> None:
    """Until the threshold is calibrated (seconds, in a worker thread; cached per process)."""
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health/ready").text
        time.sleep(0.05)


@pytest.fixture
def client(reference_parquet: Path) -> Iterator[TestClient]:
    with make_client(reference_parquet) as c:
        wait_ready(c)
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


def test_one_drifted_window_raises_the_alarm_and_reference_traffic_clears_it(
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
    threshold = metric(client, "winequality_drift_cusum_threshold")
    assert metric(client, 'winequality_drift_cusum{test="wine_type"}') > threshold
    decision = client.get("/drift").json()["sequential"]
    assert decision["alarm"] is True
    assert "wine_type" in decision["raised_by"]
    assert decision["raised_at_row"] == WINDOW

    # Traffic like the reference: no single window latches the decision, the charts fall back.
    held = red_split.held_out
    cleared_after = None
    for i in range(10):
        post(client, held.iloc[i * WINDOW : (i + 1) * WINDOW])
        assert metric(client, "seldon_metric_drift_is_drift") == 0
        if metric(client, "seldon_metric_drift_found") == 0:
            cleared_after = i + 1
            break
    assert cleared_after is not None
    assert cleared_after >= 2  # the charts hold the evidence for a few windows
    state = client.get("/drift").json()
    assert state["drift_found"] is False
    (alarm,) = state["alarms"]
    assert (alarm["cleared_by"], alarm["window"]) == ("traffic", 1)
    assert [w["alarm"] for w in state["history"]] == [True] * cleared_after + [False]


def test_reload_clears_the_alarm_and_keeps_its_evidence(
    client: TestClient, red_split: RedSplit
) -> None:
    post(client, red_split.white.iloc[:WINDOW])
    post(client, red_split.white.iloc[WINDOW : 2 * WINDOW])
    assert metric(client, "seldon_metric_drift_found") == 1
    ok = client.post("/reference/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert metric(client, "seldon_metric_drift_found") == 0
    assert metric(client, 'winequality_drift_cusum{test="wine_type"}') == 0
    assert "seldon_metric_drift_p_val{" not in client.get("/metrics").text
    state = client.get("/drift").json()
    assert (state["drift_found"], state["window_fill"], state["latest"]) == (False, 0, None)
    (alarm,) = state["alarms"]
    assert alarm["cleared_by"] == "reload"
    assert [w["window"] for w in alarm["evidence"]] == [1]
    assert len(state["history"]) == 2
    page = client.get("/report").text
    assert "Sequential decision" in page
    assert "reload" in page


def test_a_restart_neither_hides_nor_invents_an_alarm(
    reference_parquet: Path, red_split: RedSplit
) -> None:
    with make_client(reference_parquet) as first:
        wait_ready(first)
        post(first, red_split.white.iloc[:WINDOW])
        before = first.get("/drift").json()["sequential"]
        assert before["alarm"] is True
    with make_client(reference_parquet) as second:
        # The saved calibration applies: ready at once, the alarm and its charts as they were.
        assert second.get("/health/ready").status_code == 200
        assert metric(second, "seldon_metric_drift_found") == 1
        assert second.get("/drift").json()["sequential"] == before
        assert len(second.get("/drift").json()["alarms"]) == 1
        held = red_split.held_out
        for i in range(10):
            post(second, held.iloc[i * WINDOW : (i + 1) * WINDOW])
        after = second.get("/drift").json()["sequential"]
        assert after["alarm"] is False
    with make_client(reference_parquet) as third:
        assert metric(third, "seldon_metric_drift_found") == 0
        assert third.get("/drift").json()["sequential"] == after


def test_a_corrupt_state_file_is_ignored(reference_parquet: Path, red_split: RedSplit) -> None:
    (reference_parquet.parent.parent / "drift-state.json").write_text("{not json")
    with make_client(reference_parquet) as c:
        wait_ready(c)
        assert metric(c, "seldon_metric_drift_found") == 0
        assert post(c, red_split.white.iloc[:WINDOW]).status_code == 200
        assert metric(c, "seldon_metric_drift_found") == 1


def test_windows_close_by_time_with_window_seconds(
    reference_parquet: Path, red_split: RedSplit
) -> None:
    params = DriftParams(window_size=WINDOW, window_seconds=0.3, min_window_rows=10)
    with make_client(reference_parquet, params) as c:
        wait_ready(c)
        assert post(c, red_split.held_out.iloc[:5]).json()["windows_tested"] == 0
        time.sleep(0.6)  # too few rows: the window waits for more
        assert c.get("/drift").json()["windows_tested"] == 0
        post(c, red_split.held_out.iloc[5:15])
        deadline = time.monotonic() + 10
        while c.get("/drift").json()["windows_tested"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        latest = c.get("/drift").json()["latest"]
        assert latest["window_size"] == 15


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
    app = create_app(DetectorSettings(admin_token=None), DriftParams(), reference_parquet)
    with TestClient(app) as c:
        resp = c.post("/reference/reload", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 401
    assert "WINEQ_DRIFT_ADMIN_TOKEN" in resp.json()["detail"]["message"]


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
    # The decision's chart plot, then one plot per feature and the type mix.
    assert page.text.count("<svg") == 1 + len(schema.FEATURE_NAMES) + 1
    assert "DRIFT CONFIRMED" in page.text
    assert page.text.index("Sequential decision") < page.text.index("Distributions")
    for name in schema.FEATURE_NAMES:
        assert f"<td>{name}</td>" in page.text


# --- structured and batched content modes ------------------------------------------------------

BATCH = {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}


def structured(
    data: Any, ce_type: str = CE_REQUEST, event_id: str = "e-1", **attributes: Any
) -> dict[str, Any]:
    """A JSON-format event as our app's payload logger writes it."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "winequality-app/test",
        "type": ce_type,
        "datacontenttype": "application/json",
        "requestid": event_id,
        "modelid": schema.MODEL_NAME,
        "data": data,
        **attributes,
    }


def exchange_events(frame: pd.DataFrame, event_id: str) -> list[dict[str, Any]]:
    return [
        structured(wines(frame), event_id=event_id + ".req"),
        structured({"predictions": [5.0] * len(frame)}, CE_RESPONSE, event_id + ".res"),
    ]


def post_batch(client: TestClient, events: Any) -> Any:
    return client.post("/", content=json.dumps(events), headers=BATCH)


def test_a_batch_adds_the_rows_of_every_request_event_and_counts_responses(
    client: TestClient, red_split: RedSplit
) -> None:
    held = red_split.held_out
    events = exchange_events(held.iloc[:30], "a") + exchange_events(held.iloc[30:60], "b")
    resp = post_batch(client, events)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["events"], body["requests"], body["responses"]) == (4, 2, 2)
    assert (body["rows"], body["window_fill"], body["windows_tested"]) == (60, 10, 1)
    assert metric(client, "wineq_drift_rows_total") == 60
    assert metric(client, 'wineq_drift_events_total{kind="request"}') == 2
    assert metric(client, 'wineq_drift_events_total{kind="response"}') == 2


def test_batched_and_binary_events_fill_the_same_window(
    client: TestClient, red_split: RedSplit
) -> None:
    held = red_split.held_out
    post(client, held.iloc[:20])
    post_batch(client, exchange_events(held.iloc[20:40], "a"))
    assert client.get("/drift").json()["window_fill"] == 40


def test_an_empty_batch_is_accepted(client: TestClient) -> None:
    resp = post_batch(client, [])
    assert resp.status_code == 200
    assert (resp.json()["events"], resp.json()["rows"]) == (0, 0)


def test_a_structured_mode_event_is_accepted(client: TestClient, red_split: RedSplit) -> None:
    resp = client.post(
        "/",
        content=json.dumps(structured(wines(red_split.held_out.iloc[:7]))),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["rows"] == 7


def test_base64_data_is_decoded(client: TestClient, red_split: RedSplit) -> None:
    raw = json.dumps(wines(red_split.held_out.iloc[:4])).encode()
    event = structured(None)
    del event["data"]
    event["data_base64"] = base64.b64encode(raw).decode()
    resp = post_batch(client, [event])
    assert resp.status_code == 200, resp.text
    assert resp.json()["rows"] == 4


def test_one_bad_element_refuses_the_whole_batch_naming_it(
    client: TestClient, red_split: RedSplit
) -> None:
    held = red_split.held_out
    events = exchange_events(held.iloc[:10], "a") + exchange_events(held.iloc[10:13], "b")
    events[2]["data"]["wines"][1]["chlorides"] = -1.0
    resp = post_batch(client, events)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "event [2]" in detail["message"]
    assert "nothing applied" in detail["message"]
    assert detail["invalid_events"] == 1
    (error,) = detail["errors"]
    assert (error["index"], error["reason"]) == (2, "invalid_values")
    assert [(p["row"], p["field"]) for p in error["problems"]] == [(1, "chlorides")]
    # Nothing of the batch applied, not even the valid first exchange.
    assert client.get("/drift").json()["window_fill"] == 0
    assert metric(client, "wineq_drift_rows_total") == 0
    assert metric(client, 'wineq_drift_rejected_events_total{reason="invalid_values"}') == 1
    assert metric(client, 'wineq_drift_rejected_events_total{reason="batch_refused"}') == 3


def _without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}


@pytest.mark.parametrize(
    ("element", "status", "reason", "message"),
    [
        ([1, 2], 400, "not_cloudevent", "must be a JSON object"),
        (_without(structured({}), "source"), 400, "not_cloudevent", "['source']"),
        (structured({}, ce_type="com.example.other"), 400, "unknown_type", "unsupported type"),
        (structured({}, specversion="0.3"), 400, "mixed_specversion", "differs"),
        (_without(structured({}), "data"), 422, "no_data", "without data"),
        (structured({}, datacontenttype="text/csv"), 415, "unsupported_media_type", "text/csv"),
        (structured({"instances": [[1]]}), 422, "unknown_format", "unknown request format"),
        (structured(None, data_base64="%%%"), 400, "invalid_base64", "not base64"),
    ],
    ids=[
        "not-object", "no-source", "unknown-type", "mixed-specversion", "no-data",
        "not-json-data", "unknown-format", "bad-base64",
    ],
)  # fmt: skip
def test_bad_batch_elements_are_4xx_with_index_and_reason(
    client: TestClient,
    red_split: RedSplit,
    element: Any,
    status: int,
    reason: str,
    message: str,
) -> None:
    events = [*exchange_events(red_split.held_out.iloc[:5], "ok"), element]
    resp = post_batch(client, events)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert detail["errors"][0]["index"] == 2
    assert detail["errors"][0]["reason"] == reason
    assert message in detail["errors"][0]["message"]
    assert "event [2]" in detail["message"]
    assert client.get("/drift").json()["window_fill"] == 0


def test_every_bad_element_is_listed(client: TestClient, red_split: RedSplit) -> None:
    events = [e for k in "abc" for e in exchange_events(red_split.held_out.iloc[:5], k)]
    events[0] = structured({"instances": []})
    events[4]["type"] = "nope"
    detail = post_batch(client, events).json()["detail"]
    assert [(e["index"], e["reason"]) for e in detail["errors"]] == [
        (0, "unknown_format"),
        (4, "unknown_type"),
    ]


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"[{", 400, "not valid JSON"),
        (b'{"specversion": "1.0"}', 400, "must be a JSON array"),
    ],
)
def test_a_body_that_is_not_a_batch_is_400(
    client: TestClient, content: bytes, status: int, message: str
) -> None:
    resp = client.post("/", content=content, headers=BATCH)
    assert resp.status_code == status
    assert message in resp.json()["detail"]["message"]


def test_an_oversized_batch_is_413(reference_parquet: Path, red_split: RedSplit) -> None:
    with make_client(reference_parquet, max_body_bytes=500) as c:
        resp = post_batch(c, exchange_events(red_split.held_out.iloc[:20], "a"))
    assert resp.status_code == 413


def test_a_batch_without_reference_is_503_and_not_applied(
    tmp_path: Path, red_split: RedSplit
) -> None:
    with make_client(tmp_path / "missing.parquet") as c:
        resp = post_batch(c, exchange_events(red_split.held_out.iloc[:5], "a"))
        assert resp.status_code == 503
        assert metric(c, "wineq_drift_rows_total") == 0
