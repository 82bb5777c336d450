"""Offline checks of deploy/k8s: schemas (core and CRDs), references, images, probes, security."""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from tests.unit.deploy.conftest import K8S, OVERLAYS, find, one
from tests.unit.deploy.kustomize import (
    KustomizeError,
    Manifest,
    build,
    containers,
    load_documents,
)

K8S_VERSION = "1.30.0"
CUSTOM_GROUPS = ("machinelearning.seldon.io/", "monitoring.coreos.com/")
WORKLOADS = ("Deployment", "SeldonDeployment")
IMAGES = {
    "wine-quality-app",
    "wine-quality-detector",
    "wine-quality-trainer",
    "wine-quality-triton",
}


def pod_specs(doc: Manifest) -> list[Manifest]:
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "SeldonDeployment":
        return [c["spec"] for p in doc["spec"]["predictors"] for c in p["componentSpecs"]]
    return []


def all_docs(base: list[Manifest], rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return base + [d for docs in rendered.values() for d in docs]


def test_core_manifests_are_valid_kubernetes_objects_strictly(
    base: list[Manifest], rendered: dict[str, list[Manifest]]
) -> None:
    checked = 0
    for doc in all_docs(base, rendered):
        if doc["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 30


def test_kubernetes_validate_rejects_a_misspelled_field(base: list[Manifest]) -> None:
    # The strict schemas are what makes the test above meaningful: prove they bite.
    app = one(base, "Deployment", "wine-quality-app")
    broken: dict[str, Any] = {**app, "spec": {**app["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_custom_resources_match_their_crd_schemas_strictly(
    base: list[Manifest],
    rendered: dict[str, list[Manifest]],
    crd_schemas: dict[tuple[str, str], Any],
) -> None:
    kinds: set[str] = set()
    for doc in all_docs(base, rendered):
        if not doc["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        key = (doc["apiVersion"], doc["kind"])
        assert key in crd_schemas, f"no CRD version serves {key}"
        errors = sorted(
            jsonschema.Draft7Validator(crd_schemas[key]).iter_errors(doc), key=lambda e: e.path
        )
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
        kinds.add(doc["kind"])
    assert kinds == {"SeldonDeployment", "PrometheusRule", "ServiceMonitor", "AlertmanagerConfig"}


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("SeldonDeployment", ("spec", "predictors", 0, "graph"), {"implementaton": "TRITON"}),
        ("ServiceMonitor", ("spec", "endpoints", 0), {"paht": "/metrics"}),
        ("AlertmanagerConfig", ("spec", "route"), {"groupby": ["alertname"]}),
        ("PrometheusRule", ("spec", "groups", 0), {"rule": []}),
    ],
)
def test_strict_crd_schemas_reject_a_misspelled_field(
    base: list[Manifest],
    crd_schemas: dict[tuple[str, str], Any],
    kind: str,
    path: tuple[str | int, ...],
    bad: dict[str, Any],
) -> None:
    import copy

    doc = copy.deepcopy(find(base, kind)[0])
    node: Any = doc
    for part in path:
        node = node[part]
    node.update(bad)
    validator = jsonschema.Draft7Validator(crd_schemas[(doc["apiVersion"], kind)])
    assert any("Additional properties" in e.message for e in validator.iter_errors(doc))


def test_overlays_set_their_namespace_on_every_namespaced_object(
    rendered: dict[str, list[Manifest]],
) -> None:
    for name, docs in rendered.items():
        namespace = f"wine-quality-{name}"
        assert [d["metadata"]["name"] for d in find(docs, "Namespace")] == [namespace]
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


def test_overlays_pin_every_image_to_a_registry_and_tag(
    rendered: dict[str, list[Manifest]],
) -> None:
    for docs in rendered.values():
        images = {c["image"] for d in docs for c in containers(d)}
        assert len(images) == len(IMAGES)
        for image in images:
            repository, _, tag = image.rpartition(":")
            assert "/" in repository, image
            assert repository.rsplit("/", 1)[-1] in IMAGES, image
            assert tag, image
            assert tag != "latest", image


def test_base_uses_only_the_four_project_images(base: list[Manifest]) -> None:
    assert {c["image"] for d in base for c in containers(d)} == IMAGES


def test_prod_runs_more_replicas_than_staging(rendered: dict[str, list[Manifest]]) -> None:
    def replicas(env: str) -> tuple[int, int]:
        docs = rendered[env]
        sdep = one(docs, "SeldonDeployment", "wine-quality")
        app = one(docs, "Deployment", "wine-quality-app")
        return sdep["spec"]["predictors"][0]["replicas"], app["spec"]["replicas"]

    assert replicas("prod")[0] > replicas("staging")[0]
    assert replicas("prod")[1] > replicas("staging")[1]


def test_model_run_id_reaches_every_model_puller_through_one_configmap(
    rendered: dict[str, list[Manifest]],
) -> None:
    for env, docs in rendered.items():
        (run_cm,) = [
            d
            for d in find(docs, "ConfigMap")
            if d["metadata"]["name"].startswith("wine-quality-model-")
        ]
        expected = (K8S / "overlays" / env / "model.env").read_text().split("MODEL_RUN_ID=")[1]
        assert run_cm["data"] == {"MODEL_RUN_ID": expected.strip()}
        pullers = [
            c for d in docs for c in containers(d) if c.get("args", [])[:2] == ["registry", "pull"]
        ]
        assert len(pullers) == 3  # Triton, app, detector
        for c in pullers:
            refs = {
                e["name"]: e["valueFrom"]["configMapKeyRef"]["name"]
                for e in c["env"]
                if "valueFrom" in e
            }
            assert refs["MODEL_RUN_ID"] == run_cm["metadata"]["name"]


def test_every_configmap_and_secret_reference_resolves_or_is_external(
    rendered: dict[str, list[Manifest]],
) -> None:
    # Secrets are created out of band (never committed); docs/runbook.md lists them.
    external_secrets = {"wine-quality-webhook", "wine-quality-mlflow", "wine-quality-loop"}
    for docs in rendered.values():
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in find(docs, "ConfigMap")}
        claims = {d["metadata"]["name"] for d in find(docs, "PersistentVolumeClaim")}
        for doc in docs:
            for c in containers(doc):
                for env in c.get("env", []):
                    source = env.get("valueFrom", {})
                    if "configMapKeyRef" in source:
                        ref = source["configMapKeyRef"]
                        assert ref["key"] in configmaps[ref["name"]], ref
                    if "secretKeyRef" in source:
                        assert source["secretKeyRef"]["name"] in external_secrets
                for env_from in c.get("envFrom", []):
                    assert env_from["secretRef"]["name"] in external_secrets
            for spec in pod_specs(doc):
                for volume in spec.get("volumes", []):
                    if "persistentVolumeClaim" in volume:
                        assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_services_select_a_workload_and_target_a_named_container_port(
    base: list[Manifest],
) -> None:
    for service in find(base, "Service"):
        selector = service["spec"]["selector"]
        matches = [
            d
            for d in find(base, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, service["metadata"]["name"]
        ports = {
            p["name"]: p["containerPort"]
            for c in containers(matches[0])
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"]


def test_app_proxies_to_the_seldon_service_of_the_seldon_deployment(
    base: list[Manifest],
) -> None:
    sdep = one(base, "SeldonDeployment", "wine-quality")
    predictor = sdep["spec"]["predictors"][0]
    app = one(base, "Deployment", "wine-quality-app")
    env = {
        e["name"]: e.get("value") for e in app["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WINEQ_BACKEND"] == "remote"
    # Seldon Core v1 names the predictor's service <deployment>-<predictor>, port 8000 for REST.
    assert env["WINEQ_REMOTE_URL"] == f"http://{sdep['metadata']['name']}-{predictor['name']}:8000"
    assert sdep["spec"]["protocol"] == "v2"
    # The V2 model name is the graph node, the container and the Triton ensemble at once.
    (model,) = predictor["componentSpecs"][0]["spec"]["containers"]
    assert env["WINEQ_REMOTE_MODEL"] == predictor["graph"]["name"] == model["name"]
    assert env["WINEQ_DETECTOR_URL"] == "http://drift-detector:8010"


def test_probes_target_declared_ports_and_real_health_paths(base: list[Manifest]) -> None:
    paths = {"/health/ready", "/health/live", "/v2/health/ready", "/v2/health/live"}
    probed = 0
    for doc in base:
        for spec in pod_specs(doc):
            for c in spec["containers"]:
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                assert "readinessProbe" in c, c["name"]
                assert "livenessProbe" in c, c["name"]
                for key in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if key not in c:
                        continue
                    probe = c[key]["httpGet"]
                    assert probe["path"] in paths
                    port = probe["port"]
                    assert port in ports or port in ports.values(), (c["name"], port)
                    probed += 1
    assert probed >= 8


def test_every_container_runs_non_root_with_a_read_only_root_and_limits(
    base: list[Manifest],
) -> None:
    for doc in base:
        for spec in pod_specs(doc):
            assert spec["securityContext"]["runAsNonRoot"] is True
            mounts_tmp = True
            for c in spec.get("initContainers", []) + spec["containers"]:
                ctx = c["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False
                assert ctx["readOnlyRootFilesystem"] is True
                assert ctx["capabilities"]["drop"] == ["ALL"]
                assert c["resources"]["requests"]
                assert c["resources"]["limits"]["memory"]
                # A read-only root needs a writable /tmp (Python, MLflow, matplotlib use it).
                mounts_tmp &= any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])
            assert mounts_tmp, doc["metadata"]["name"]


def test_model_writers_write_below_a_mount_point_not_onto_it(base: list[Manifest]) -> None:
    # registry pull and export triton replace their output by renaming a sibling directory:
    # that works for a subdirectory of a volume, never for the mount point itself.
    checked = 0
    for doc in base:
        for spec in pod_specs(doc):
            for c in spec.get("initContainers", []):
                args = c.get("args", [])
                for flag in ("--dest", "--out"):
                    if flag not in args:
                        continue
                    target = PurePosixPath(args[args.index(flag) + 1])
                    mounts = [
                        PurePosixPath(m["mountPath"])
                        for m in c["volumeMounts"]
                        if not m.get("readOnly")
                    ]
                    assert any(target.parent == m or m in target.parents for m in mounts), (
                        c["name"],
                        target,
                    )
                    assert target not in mounts
                    checked += 1
    assert checked == 4  # three pulls, one export


def test_triton_reads_the_repository_the_export_writes(base: list[Manifest]) -> None:
    spec = pod_specs(one(base, "SeldonDeployment", "wine-quality"))[0]
    export = next(c for c in spec["initContainers"] if c["args"][:2] == ["export", "triton"])
    out = export["args"][export["args"].index("--out") + 1]
    (triton,) = spec["containers"]
    assert f"--model-repository={out}" in triton["args"]
    assert export["args"][export["args"].index("--variant") + 1] == "onnxruntime"
    pulled = next(c for c in spec["initContainers"] if c["args"][:2] == ["registry", "pull"])
    bundle = pulled["args"][pulled["args"].index("--dest") + 1]
    assert export["args"][export["args"].index("--bundle") + 1] == bundle
    shared = {m["name"] for m in triton["volumeMounts"]}
    assert {
        m["name"]
        for m in export["volumeMounts"]
        if posixpath.commonpath([m["mountPath"], out]) == m["mountPath"]
    } <= shared


def test_kustomizeconfig_names_the_seldon_paths_that_hold_references() -> None:
    import yaml

    config = yaml.safe_load((K8S / "base" / "kustomizeconfig.yaml").read_text())
    (sdep,) = load_documents(K8S / "base" / "seldon-deployment.yaml")

    def resolve(node: Any, parts: list[str]) -> list[Any]:
        if not parts:
            return [node]
        if isinstance(node, list):
            return [v for item in node for v in resolve(item, parts)]
        if isinstance(node, dict) and parts[0] in node:
            return resolve(node[parts[0]], parts[1:])
        return []

    ref_paths = [f["path"] for r in config["nameReference"] for f in r["fieldSpecs"]]
    found = [v for p in ref_paths for v in resolve(sdep, p.split("/"))]
    assert set(found) == {"wine-quality-model", "wine-quality-config"}
    image_paths = [f["path"] for f in config["images"]]
    images = {v for p in image_paths for v in resolve(sdep, p.split("/"))}
    assert images == {"wine-quality-trainer", "wine-quality-triton"}


def test_renderer_refuses_features_it_does_not_render(tmp_path: Any) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nhelmCharts: []\n")
    with pytest.raises(KustomizeError, match="helmCharts"):
        build(tmp_path)


def test_renderer_refuses_a_patch_whose_target_is_missing(tmp_path: Any) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "patches:\n  - target: {kind: Deployment, name: nope}\n    patch: '[]'\n"
    )
    with pytest.raises(KustomizeError, match="matches 0 objects"):
        build(tmp_path)


@pytest.mark.parametrize("env", OVERLAYS)
def test_workloads_of_an_overlay_are_the_base_workloads(
    base: list[Manifest], rendered: dict[str, list[Manifest]], env: str
) -> None:
    def names(docs: list[Manifest]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in WORKLOADS}

    assert names(rendered[env]) == names(base)
