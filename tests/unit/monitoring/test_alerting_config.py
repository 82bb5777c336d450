"""Generated Prometheus/Alertmanager configs: checked-in copies in sync, overrides, secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from winequality.monitoring import alerting_config as ac

CHECKED_IN = [
    ("prometheus/prometheus.yml", "local_prometheus_config", ac.local_prometheus_config),
    ("prometheus/prometheus.k8s.yml", "k8s_prometheus_config", ac.k8s_prometheus_config),
    ("alertmanager/alertmanager.yml", "local_alertmanager_config", ac.local_alertmanager_config),
    ("alertmanager/alertmanager.k8s.yml", "k8s_alertmanager_config", ac.k8s_alertmanager_config),
]


@pytest.mark.parametrize(("path", "name", "generator"), CHECKED_IN)
def test_checked_in_configs_match_their_generator(path: str, name: str, generator) -> None:  # type: ignore[no-untyped-def]
    assert (ac.DEPLOY_DIR / path).read_text() == ac.dump(generator(), name)


def test_drift_and_degraded_alerts_route_to_the_webhook_with_a_bearer_token_file() -> None:
    config = ac.alertmanager_config(webhook_url="http://x:1/alerts", credentials_file="/t")
    route = config["route"]["routes"][0]
    assert route["matchers"] == ['alertname=~"WineQualityDrift|WineQualityDegraded"']
    receiver = next(r for r in config["receivers"] if r["name"] == route["receiver"])
    hook = receiver["webhook_configs"][0]
    assert hook["url"] == "http://x:1/alerts"
    assert hook["http_config"]["authorization"] == {"type": "Bearer", "credentials_file": "/t"}


def test_rules_for_override_changes_only_the_named_alert() -> None:
    base = ac.rules_config()
    fast = ac.rules_config(for_overrides={"WineQualityDrift": "1s"})
    base_rules = {r["alert"]: r for r in base["groups"][0]["rules"]}
    fast_rules = {r["alert"]: r for r in fast["groups"][0]["rules"]}
    assert fast_rules["WineQualityDrift"]["for"] == "1s"
    assert base_rules["WineQualityDrift"]["for"] == "2m"
    assert fast_rules["DriftDetectorDown"] == base_rules["DriftDetectorDown"]
    assert set(fast_rules) == {
        "WineQualityDrift",
        "WineQualityDegraded",
        "DriftDetectorDown",
        "ServingHighErrorRate",
    }


def test_rules_override_of_an_unknown_alert_is_refused() -> None:
    with pytest.raises(ValueError, match="no such alert"):
        ac.rules_config(for_overrides={"NoSuchAlert": "1s"})


def test_write_alerting_configs_uses_the_given_ports_and_hides_the_token(tmp_path: Path) -> None:
    files = ac.write_alerting_configs(
        tmp_path,
        app_port=18000,
        detector_port=18010,
        alertmanager_port=19093,
        webhook_url="http://127.0.0.1:18082/alerts",
        webhook_token="tok-123",
        drift_for="1s",
    )
    prom = yaml.safe_load(files.prometheus.read_text())
    targets = {s["job_name"]: s["static_configs"][0]["targets"] for s in prom["scrape_configs"]}
    assert targets == {
        "wine-quality-app": ["127.0.0.1:18000"],
        "drift-detector": ["127.0.0.1:18010"],
    }
    assert prom["rule_files"] == [str(files.rules)]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:19093"
    ]
    am = yaml.safe_load(files.alertmanager.read_text())
    auth = am["receivers"][1]["webhook_configs"][0]["http_config"]["authorization"]
    assert auth["credentials_file"] == str(files.token)
    assert "tok-123" not in files.alertmanager.read_text()
    assert files.token.read_text() == "tok-123"
    assert stat.S_IMODE(files.token.stat().st_mode) == 0o600
    rules = yaml.safe_load(files.rules.read_text())
    assert rules["groups"][0]["rules"][0]["for"] == "1s"


def test_configs_written_to_a_relative_folder_point_at_absolute_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prometheus and Alertmanager resolve relative paths against the config file's folder, so a
    # relative run folder such as `.stack/alerting` would make them load no rules at all.
    monkeypatch.chdir(tmp_path)
    files = ac.write_alerting_configs(
        Path(".stack/alerting"),
        app_port=1,
        detector_port=2,
        alertmanager_port=3,
        webhook_url="http://127.0.0.1:4/alerts",
        webhook_token="t",
    )
    (rule_file,) = yaml.safe_load(files.prometheus.read_text())["rule_files"]
    assert Path(rule_file).is_absolute()
    assert Path(rule_file).is_file()
    am = yaml.safe_load(files.alertmanager.read_text())
    token_file = am["receivers"][1]["webhook_configs"][0]["http_config"]["authorization"][
        "credentials_file"
    ]
    assert Path(token_file).is_absolute()
