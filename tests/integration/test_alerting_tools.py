"""promtool / amtool accept the configs and the rule unit tests pass (Debian packages
``prometheus`` and ``prometheus-alertmanager`` provide the tools)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from winequality.monitoring import alerting_config as ac

pytestmark = pytest.mark.integration

PROM = ac.DEPLOY_DIR / "prometheus"
AM = ac.DEPLOY_DIR / "alertmanager"


def run(*cmd: str | Path) -> str:
    tool = shutil.which(str(cmd[0]))
    if tool is None:
        pytest.fail(
            f"{cmd[0]} is not installed: apt-get install prometheus prometheus-alertmanager"
        )
    done = subprocess.run(
        [tool, *map(str, cmd[1:])], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 4 rules found" in run("promtool", "check", "rules", PROM / ac.RULES_NAME)


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    assert "SUCCESS" in run("promtool", "test", "rules", *tests)


def test_promtool_checks_the_local_config() -> None:
    run("promtool", "check", "config", PROM / "prometheus.yml")


def test_promtool_checks_the_k8s_config_syntax() -> None:
    # The rule file path only exists inside the cluster's Prometheus pod.
    run("promtool", "check", "config", "--syntax-only", PROM / "prometheus.k8s.yml")


@pytest.mark.parametrize("name", ["alertmanager.yml", "alertmanager.k8s.yml"])
def test_amtool_checks_the_alertmanager_configs(name: str) -> None:
    assert "SUCCESS" in run("amtool", "check-config", AM / name)


def test_generated_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    files = ac.write_alerting_configs(
        tmp_path,
        app_port=1,
        detector_port=2,
        alertmanager_port=3,
        webhook_url="http://127.0.0.1:4/alerts",
        webhook_token="t",
        drift_for="1s",
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    run("promtool", "check", "config", files.prometheus)
    run("amtool", "check-config", files.alertmanager)


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # Guards the guard: the check above would catch a broken expression.
    bad = tmp_path / "bad.rules.yml"
    bad.write_text(
        (PROM / ac.RULES_NAME).read_text().replace("seldon_metric_drift_found == 1", "sum(")
    )
    done = subprocess.run(
        ["promtool", "check", "rules", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
