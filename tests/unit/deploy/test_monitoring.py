"""Cluster monitoring objects agree with the shared Prometheus, Alertmanager and Grafana configs."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import yaml
from tests.unit.deploy import embedded
from tests.unit.deploy.conftest import ROOT, find, namespace_of, one
from tests.unit.deploy.kustomize import Manifest

PROMETHEUS_K8S = ROOT / "deploy" / "prometheus" / "prometheus.k8s.yml"
ALERTMANAGER_K8S = ROOT / "deploy" / "alertmanager" / "alertmanager.k8s.yml"
REGENERATE = "regenerate: uv run python -m tests.unit.deploy.embedded"


def test_prometheus_rule_manifest_is_generated_from_the_rules_file() -> None:
    assert embedded.PROMETHEUS_RULE.read_text() == embedded.prometheus_rule(), REGENERATE


def test_prometheus_rule_groups_equal_the_rules_file(base: list[Manifest]) -> None:
    rule = one(base, "PrometheusRule", "wine-quality")
    assert rule["spec"] == yaml.safe_load(embedded.RULES.read_text())


def test_grafana_dashboard_configmap_holds_the_dashboard_verbatim(base: list[Manifest]) -> None:
    assert embedded.GRAFANA_DASHBOARD.read_text() == embedded.grafana_dashboard(), REGENERATE
    cm = one(base, "ConfigMap", "grafana-dashboard-wine-quality")
    assert cm["data"] == {"wine-quality.json": embedded.DASHBOARD.read_text()}
    assert json.loads(cm["data"]["wine-quality.json"])["uid"] == "wine-quality"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_service_monitors_produce_the_jobs_the_rules_and_prometheus_config_use(
    base: list[Manifest],
) -> None:
    config = yaml.safe_load(PROMETHEUS_K8S.read_text())
    expected = {job["job_name"]: job["metrics_path"] for job in config["scrape_configs"]}
    jobs: dict[str, str] = {}
    for monitor in find(base, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [
            s for s in find(base, "Service") if selector.items() <= s["metadata"]["labels"].items()
        ]
        # prometheus-operator's job label: the Service's jobLabel label if set, else its name.
        label = monitor["spec"].get("jobLabel")
        job = service["metadata"]["labels"][label] if label else service["metadata"]["name"]
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            jobs[job] = endpoint["path"]
    assert jobs == expected
    rules = embedded.RULES.read_text()
    assert 'job="drift-detector"' in rules


def test_alertmanager_config_routes_drift_to_the_webhook_like_the_plain_config(
    base: list[Manifest], rendered: dict[str, list[Manifest]]
) -> None:
    plain = yaml.safe_load(ALERTMANAGER_K8S.read_text())
    (route,) = plain["route"]["routes"]
    (receiver,) = [r for r in plain["receivers"] if r["name"] == route["receiver"]]
    (hook,) = receiver["webhook_configs"]

    cr = one(base, "AlertmanagerConfig", "wine-quality-retrain")["spec"]
    assert cr["route"]["matchers"] == [
        {"name": "alertname", "matchType": "=~", "value": "WineQualityDrift|WineQualityDegraded"}
    ]
    assert route["matchers"] == ['alertname=~"WineQualityDrift|WineQualityDegraded"']
    for plain_key, cr_key in (
        ("group_wait", "groupWait"),
        ("group_interval", "groupInterval"),
        ("repeat_interval", "repeatInterval"),
    ):
        assert cr["route"][cr_key] == route[plain_key]
    (cr_receiver,) = cr["receivers"]
    assert cr["route"]["receiver"] == cr_receiver["name"] == route["receiver"]
    (cr_hook,) = cr_receiver["webhookConfigs"]
    assert cr_hook["sendResolved"] == hook["send_resolved"]
    assert cr_hook["maxAlerts"] == hook["max_alerts"]
    assert cr_hook["httpConfig"]["authorization"]["type"] == "Bearer"
    # The token Alertmanager sends is the one the webhook checks.
    webhook = one(base, "Deployment", "retrain-webhook")
    (container,) = webhook["spec"]["template"]["spec"]["containers"]
    token = next(e for e in container["env"] if e["name"] == "WINEQ_WEBHOOK_TOKEN")
    assert (
        token["valueFrom"]["secretKeyRef"] == cr_hook["httpConfig"]["authorization"]["credentials"]
    )

    plain_url = urlsplit(hook["url"])
    for env, docs in rendered.items():
        url = urlsplit(
            one(docs, "AlertmanagerConfig", "wine-quality-retrain")["spec"]["receivers"][0][
                "webhookConfigs"
            ][0]["url"]
        )
        # Alertmanager lives in another namespace: the host names the overlay's namespace.
        assert url.hostname == f"{plain_url.hostname}.{namespace_of(env)}.svc"
        assert (url.port, url.path) == (plain_url.port, plain_url.path)
        service = one(docs, "Service", "retrain-webhook")
        assert url.port in {p["port"] for p in service["spec"]["ports"]}
