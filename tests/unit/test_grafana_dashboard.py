"""The Grafana dashboard: valid dashboard JSON, and every metric it queries really exists.

The exported names are read from the registries of a real app (serving a real model, so its
realized-quality gauges exist) and a real detector built in-process (not from a list kept beside
the dashboard), so renaming a metric breaks this test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from tests.support.bundles import train_model, write_model_bundle
from tests.unit.serving.conftest import TestClient

from winequality.monitoring.service import create_app as create_detector
from winequality.params import DriftParams
from winequality.serving.app import create_app
from winequality.settings import DetectorSettings, ServingSettings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "wine-quality.json"

# PromQL words that look like metric names: functions, aggregations, modifiers, keywords.
PROMQL_WORDS = frozenset(
    {
        "sum", "max", "min", "avg", "count", "by", "without", "rate", "irate", "increase",
        "histogram_quantile", "on", "ignoring", "group_left", "group_right", "and", "or",
        "unless", "bool", "offset", "topk", "bottomk", "abs", "clamp_min", "clamp_max",
    }
)  # fmt: skip
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_strings = re.sub(r'"[^"]*"', "", without_ranges)
    # Label lists of aggregations and vector matching name labels, not metrics.
    without_strings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_strings
    )
    words = set(re.findall(r"(?<![\w$.])[a-zA-Z_:][\w:]*", without_strings))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def real_exports(tmp_path_factory: pytest.TempPathFactory, real_wines: pd.DataFrame) -> set[str]:
    tmp = tmp_path_factory.mktemp("dashboard")
    # A bundle that states its test bias: the app then exports both degradation tests.
    bundle = write_model_bundle(
        tmp / "bundle", train_model(real_wines), metrics={"rmse": 0.74, "bias": 0.0}
    )
    settings = ServingSettings(
        model_dir=bundle,
        feedback_db=tmp / "feedback.sqlite",
        detector_url="http://127.0.0.1:9",
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    reference = tmp / "reference.parquet"
    real_wines.sample(300, random_state=0).to_parquet(reference)
    detector = create_detector(
        DetectorSettings(_env_file=None),  # type: ignore[call-arg]
        DriftParams(),
        reference,
    )
    with TestClient(app):  # the lifespan loads the model, which starts its quality window
        served = exported_names(app.state.serving.metrics.registry)
    return served | exported_names(detector.state.detector.metrics.registry)


def test_dashboard_has_the_schema_essentials(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "wine-quality"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in panels(dashboard):
        assert {"id", "type", "title", "gridPos"} <= panel.keys(), panel.get("title")
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["expr"].strip(), panel["title"]
            assert target["refId"]
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__range"}
            assert used <= variables, f"{panel['title']}: undefined variables {used - variables}"


def test_dashboard_covers_serving_payload_logging_and_drift(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for needed in (
        "winequality_http_requests_total",
        "winequality_http_errors_total",
        "histogram_quantile(0.99",
        "histogram_quantile(0.5",
        "winequality_predicted_quality_bucket",
        "winequality_model_info",
        "winequality_payloads_sent_total",
        "winequality_payloads_dropped_total",
        "seldon_metric_drift_found",
        "seldon_metric_drift_p_val",
        "seldon_metric_drift_distance",
        "winequality_drift_cusum{",
        "winequality_drift_cusum_threshold",
    ):
        assert needed in exprs, needed


def test_the_sequential_statistic_is_drawn_against_its_threshold(
    dashboard: dict[str, Any],
) -> None:
    (panel,) = [
        p
        for p in panels(dashboard)
        if any("winequality_drift_cusum{" in t["expr"] for t in p.get("targets", []))
    ]
    exprs = [t["expr"] for t in panel["targets"]]
    assert any("winequality_drift_cusum_threshold" in e for e in exprs), exprs


def test_dashboard_shows_realized_quality_and_the_degraded_decision(
    dashboard: dict[str, Any],
) -> None:
    exprs = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    for needed in (
        "winequality_realized_rmse{",
        "winequality_realized_mae",
        "winequality_realized_within_0_5",
        "winequality_realized_within_1_0",
        "winequality_realized_labels",
        "winequality_realized_degraded",
        "winequality_champion_test_rmse",
        "winequality_realized_bias{",
        "winequality_prediction_ks",
    ):
        assert needed in exprs, needed
    # Each degradation test is drawn against its own boundary.
    (panel,) = [
        p
        for p in panels(dashboard)
        if any("winequality_realized_rmse_z{" in t["expr"] for t in p.get("targets", []))
    ]
    exprs_of_panel = " ".join(t["expr"] for t in panel["targets"])
    for needed in (
        "winequality_realized_rmse_z_threshold",
        "winequality_realized_bias_z{",
        "winequality_realized_bias_z_threshold",
    ):
        assert needed in exprs_of_panel, needed


def test_every_queried_metric_is_exported_by_the_app_or_the_detector(
    dashboard: dict[str, Any], real_exports: set[str]
) -> None:
    queried = {
        name
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        for name in metric_names(target["expr"])
    }
    assert queried, "no metric found in the panel queries"
    unknown = queried - real_exports
    assert not unknown, f"queried but exported by neither service: {sorted(unknown)}"


def test_the_name_extraction_sees_metrics_not_labels_or_functions() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(foo_bucket{job="$x", a=~"5.."}[5m])))'
    assert metric_names(expr) == {"foo_bucket"}
