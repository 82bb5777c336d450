"""The two manifests that embed shared configs: the PrometheusRule and the Grafana dashboard.

Kustomize cannot read files outside a kustomization's folder, so deploy/k8s/base carries copies of
deploy/prometheus/wine-quality.rules.yml and deploy/grafana/wine-quality.json; test_monitoring
checks they are identical. After editing either source, regenerate them from the repository root:

    uv run python -m tests.unit.deploy.embedded
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "wine-quality.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "wine-quality.json"
BASE = ROOT / "deploy" / "k8s" / "base"
PROMETHEUS_RULE = BASE / "prometheus-rule.yaml"
GRAFANA_DASHBOARD = BASE / "grafana-dashboard.yaml"

_HEADER = (
    "# Generated from {source} by `uv run python -m tests.unit.deploy.embedded`.\n"
    "# Edit the source and regenerate (tests/unit/deploy/test_monitoring.py checks they match).\n"
)


class _Literal(str):
    """A string dumped as a YAML block scalar (|), so the embedded JSON stays readable."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _dump(header_source: Path, manifest: dict[str, Any]) -> str:
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return _HEADER.format(source=header_source.relative_to(ROOT)) + body


def prometheus_rule() -> str:
    """A PrometheusRule whose spec is the rules file, group for group."""
    rules = yaml.safe_load(RULES.read_text())
    return _dump(
        RULES,
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                "name": "wine-quality",
                "labels": {"app.kubernetes.io/name": "wine-quality", "role": "alert-rules"},
            },
            "spec": {"groups": rules["groups"]},
        },
    )


def grafana_dashboard() -> str:
    """A ConfigMap the Grafana sidecar loads (label grafana_dashboard), with the JSON verbatim."""
    return _dump(
        DASHBOARD,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "grafana-dashboard-wine-quality",
                "labels": {"app.kubernetes.io/name": "wine-quality", "grafana_dashboard": "1"},
            },
            "data": {DASHBOARD.name: _Literal(DASHBOARD.read_text())},
        },
    )


def main() -> None:
    PROMETHEUS_RULE.write_text(prometheus_rule())
    GRAFANA_DASHBOARD.write_text(grafana_dashboard())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)} and {GRAFANA_DASHBOARD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
