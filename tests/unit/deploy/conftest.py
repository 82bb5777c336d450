"""Fixtures of the offline deployment checks: rendered layers and overlays, strict CRD schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.deploy.kustomize import Manifest, build

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
CRDS = ROOT.parent / "shared" / "k8s-crds"
COMPOSE_ONLY_DOCKERFILES = (
    "alertmanager.Dockerfile",
    "postgres.Dockerfile",
    "prometheus.Dockerfile",
)
"""Images of the compose stack only (Debian's packages, no Python; the cluster runs the
Prometheus operator's and the official PostgreSQL)."""
OVERLAYS = ("staging", "prod")
"""The environments CD deploys (Seldon Core)."""
KSERVE_OVERLAYS = ("kserve-staging", "kserve-prod")
"""The same environments on KServe."""
PLATFORMS = ("seldon", "kserve")
"""The model server layers on top of the shared base."""
MODEL_SERVER_KINDS = {"seldon": "SeldonDeployment", "kserve": "InferenceService"}
CRD_FILES = {
    "machinelearning.seldon.io": "seldondeployments.machinelearning.seldon.io.yaml",
    "monitoring.coreos.com/PrometheusRule": "prometheusrules.monitoring.coreos.com.yaml",
    "monitoring.coreos.com/ServiceMonitor": "servicemonitors.monitoring.coreos.com.yaml",
    "monitoring.coreos.com/AlertmanagerConfig": "alertmanagerconfigs.monitoring.coreos.com.yaml",
    "serving.kserve.io/InferenceService": "inferenceservices.serving.kserve.io.yaml",
}


class _CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML reads a bare ``=`` (an enum value in the AlertmanagerConfig CRD) as the YAML 1.1
    ``value`` tag; Kubernetes reads it as the string "="."""


_CrdLoader.add_constructor(
    "tag:yaml.org,2002:value",
    lambda loader, node: loader.construct_scalar(node),  # type: ignore[arg-type]
)


def strict(schema: Any) -> Any:
    """Forbid unknown keys where the API server would drop them (see k8s-crds/README.md)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_key(manifest: Manifest) -> str:
    group = manifest["apiVersion"].split("/")[0]
    return group if group == "machinelearning.seldon.io" else f"{group}/{manifest['kind']}"


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of that served version."""
    if not CRDS.is_dir():
        pytest.fail(f"the CRD schemas are missing at {CRDS} (see .github/workflows/ci.yml)")
    schemas: dict[tuple[str, str], Any] = {}
    for name in CRD_FILES.values():
        crd = yaml.load((CRDS / name).read_text(), Loader=_CrdLoader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@pytest.fixture(scope="session")
def base() -> list[Manifest]:
    return build(K8S / "base")


@pytest.fixture(scope="session")
def platforms() -> dict[str, list[Manifest]]:
    """Each platform layer (base + its model server), rendered without an overlay."""
    return {name: build(K8S / name) for name in PLATFORMS}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Each overlay (Seldon and KServe), rendered."""
    return {name: build(K8S / "overlays" / name) for name in OVERLAYS + KSERVE_OVERLAYS}


@pytest.fixture(scope="session")
def mlflow() -> list[Manifest]:
    """The MLflow server on PostgreSQL (its own namespace), rendered."""
    return build(K8S / "mlflow")


def namespace_of(overlay: str) -> str:
    """An overlay's namespace: the environment's, whichever platform serves it."""
    return f"wine-quality-{overlay.removeprefix('kserve-')}"


def platform_of(overlay: str) -> str:
    return "kserve" if overlay.startswith("kserve-") else "seldon"


def find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
