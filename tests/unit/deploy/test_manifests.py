"""Offline checks of deploy/k8s: schemas (core and CRDs), references, images, probes, security,
for the shared base, both platform layers (Seldon Core, KServe), the overlays and MLflow."""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from tests.unit.deploy.conftest import (
    K8S,
    KSERVE_OVERLAYS,
    MODEL_SERVER_KINDS,
    OVERLAYS,
    PLATFORMS,
    find,
    namespace_of,
    one,
    platform_of,
)
from tests.unit.deploy.kustomize import (
    KustomizeError,
    Manifest,
    build,
    containers,
    load_documents,
)

K8S_VERSION = "1.30.0"
CUSTOM_GROUPS = ("machinelearning.seldon.io/", "monitoring.coreos.com/", "serving.kserve.io/")
WORKLOADS = ("Deployment", "StatefulSet", "SeldonDeployment", "InferenceService")
IMAGES = {
    "wine-quality-app",
    "wine-quality-detector",
    "wine-quality-trainer",
    "wine-quality-triton",
}
"""The project's images (CD builds them)."""
UPSTREAM_IMAGES = {"postgres"}
"""Pinned upstream images (the database)."""


def pod_specs(doc: Manifest) -> list[Manifest]:
    if doc["kind"] in ("Deployment", "StatefulSet"):
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "SeldonDeployment":
        return [c["spec"] for p in doc["spec"]["predictors"] for c in p["componentSpecs"]]
    if doc["kind"] == "InferenceService":
        # A predictor is a pod spec with KServe's component fields beside it.
        return [doc["spec"]["predictor"]]
    return []


def all_docs(
    base: list[Manifest], platforms: dict[str, list[Manifest]], rendered: dict[str, list[Manifest]]
) -> list[Manifest]:
    return base + [d for group in (platforms, rendered) for docs in group.values() for d in docs]


def model_server(docs: list[Manifest]) -> Manifest:
    (found,) = [d for d in docs if d["kind"] in MODEL_SERVER_KINDS.values()]
    return found


def platform_env(docs: list[Manifest]) -> dict[str, str]:
    """The wine-quality-platform ConfigMap's data (the model server, as the app and the
    retraining read it)."""
    (cm,) = [
        d
        for d in find(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("wine-quality-platform-")
    ]
    return dict(cm["data"])


def resolved_env(docs: list[Manifest], container: Manifest) -> dict[str, str | None]:
    """A container's environment with ConfigMap values looked up (Secrets stay None)."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in find(docs, "ConfigMap")}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("configMapKeyRef")
        env[e["name"]] = configmaps[ref["name"]][ref["key"]] if ref else e.get("value")
    return env


def test_core_manifests_are_valid_kubernetes_objects_strictly(
    base: list[Manifest],
    platforms: dict[str, list[Manifest]],
    rendered: dict[str, list[Manifest]],
    mlflow: list[Manifest],
) -> None:
    checked = 0
    for doc in all_docs(base, platforms, rendered) + mlflow:
        if doc["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 100


def test_kubernetes_validate_rejects_a_misspelled_field(base: list[Manifest]) -> None:
    # The strict schemas are what makes the test above meaningful: prove they bite.
    app = one(base, "Deployment", "wine-quality-app")
    broken: dict[str, Any] = {**app, "spec": {**app["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_custom_resources_match_their_crd_schemas_strictly(
    base: list[Manifest],
    platforms: dict[str, list[Manifest]],
    rendered: dict[str, list[Manifest]],
    crd_schemas: dict[tuple[str, str], Any],
) -> None:
    kinds: set[str] = set()
    for doc in all_docs(base, platforms, rendered):
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
    assert kinds == {
        "SeldonDeployment",
        "InferenceService",
        "PrometheusRule",
        "ServiceMonitor",
        "AlertmanagerConfig",
    }


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("SeldonDeployment", ("spec", "predictors", 0, "graph"), {"implementaton": "TRITON"}),
        ("ServiceMonitor", ("spec", "endpoints", 0), {"paht": "/metrics"}),
        ("AlertmanagerConfig", ("spec", "route"), {"groupby": ["alertname"]}),
        ("PrometheusRule", ("spec", "groups", 0), {"rule": []}),
        ("InferenceService", ("spec", "predictor"), {"minReplica": 1}),
        ("InferenceService", ("spec", "predictor", "containers", 0), {"readynessProbe": {}}),
    ],
)
def test_strict_crd_schemas_reject_a_misspelled_field(
    base: list[Manifest],
    platforms: dict[str, list[Manifest]],
    crd_schemas: dict[tuple[str, str], Any],
    kind: str,
    path: tuple[str | int, ...],
    bad: dict[str, Any],
) -> None:
    import copy

    docs = base + [d for p in platforms.values() for d in p]
    doc = copy.deepcopy(find(docs, kind)[0])
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
        namespace = namespace_of(name)
        assert [d["metadata"]["name"] for d in find(docs, "Namespace")] == [namespace]
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
            for subject in doc.get("subjects", []):
                assert subject["namespace"] == namespace


def test_overlays_pin_every_image_to_a_registry_and_tag(
    rendered: dict[str, list[Manifest]], mlflow: list[Manifest]
) -> None:
    for docs in [*rendered.values(), mlflow]:
        images = {c["image"] for d in docs for c in containers(d)}
        for image in images:
            repository, _, tag = image.rpartition(":")
            assert "/" in repository, image
            assert repository.rsplit("/", 1)[-1] in IMAGES | UPSTREAM_IMAGES, image
            assert tag, image
            assert tag != "latest", image
    for docs in rendered.values():
        assert len({c["image"] for d in docs for c in containers(d)}) == 5


@pytest.mark.parametrize("platform", PLATFORMS)
def test_platforms_use_only_the_four_project_images(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    assert {c["image"] for d in platforms[platform] for c in containers(d)} == IMAGES


def test_prod_runs_more_replicas_than_staging(rendered: dict[str, list[Manifest]]) -> None:
    def replicas(overlay: str) -> tuple[int, int]:
        docs = rendered[overlay]
        server = model_server(docs)
        app = one(docs, "Deployment", "wine-quality-app")
        if server["kind"] == "SeldonDeployment":
            count = server["spec"]["predictors"][0]["replicas"]
        else:
            predictor = server["spec"]["predictor"]
            assert predictor["minReplicas"] == predictor["maxReplicas"]
            count = predictor["minReplicas"]
        return count, app["spec"]["replicas"]

    for prefix in ("", "kserve-"):
        assert replicas(f"{prefix}prod")[0] > replicas(f"{prefix}staging")[0]
        assert replicas(f"{prefix}prod")[1] > replicas(f"{prefix}staging")[1]


def test_model_run_id_reaches_every_model_puller_through_one_configmap(
    rendered: dict[str, list[Manifest]],
) -> None:
    for env, docs in rendered.items():
        # One fixed name: the retraining's Role names it (resourceNames).
        run_cm = one(docs, "ConfigMap", "wine-quality-model")
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
    rendered: dict[str, list[Manifest]], mlflow: list[Manifest]
) -> None:
    # Secrets are created out of band (never committed); docs/runbook.md and the README list them.
    external_secrets = {
        "wine-quality-webhook",
        "wine-quality-mlflow",
        "wine-quality-database",
        "postgres",
        "mlflow-database",
        "wine-quality-loop",
    }
    for docs in [*rendered.values(), mlflow]:
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
                    if "configMapRef" in env_from:
                        assert env_from["configMapRef"]["name"] in configmaps
                    else:
                        assert env_from["secretRef"]["name"] in external_secrets
            for spec in pod_specs(doc):
                for volume in spec.get("volumes", []):
                    if "persistentVolumeClaim" in volume:
                        assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_services_select_a_workload_and_target_a_named_container_port(
    rendered: dict[str, list[Manifest]], mlflow: list[Manifest]
) -> None:
    for docs in [rendered["staging"], mlflow]:
        for service in find(docs, "Service"):
            _selects_one_workload_port(docs, service)


def _selects_one_workload_port(docs: list[Manifest], service: Manifest) -> None:
    selector = service["spec"]["selector"]
    matches = [
        d
        for d in find(docs, "Deployment") + find(docs, "StatefulSet")
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(matches) == 1, service["metadata"]["name"]
    ports = {
        p["name"]: p["containerPort"] for c in containers(matches[0]) for p in c.get("ports", [])
    }
    for port in service["spec"]["ports"]:
        # The port numbers are the same: a URL spells one number whichever side it names.
        assert ports[port["targetPort"]] == port["port"]


def test_app_proxies_to_the_seldon_service_of_the_seldon_deployment(
    platforms: dict[str, list[Manifest]],
) -> None:
    docs = platforms["seldon"]
    sdep = one(docs, "SeldonDeployment", "wine-quality")
    predictor = sdep["spec"]["predictors"][0]
    app = one(docs, "Deployment", "wine-quality-app")
    env = resolved_env(docs, app["spec"]["template"]["spec"]["containers"][0])
    assert env["WINEQ_BACKEND"] == "remote"
    # Seldon Core v1 names the predictor's service <deployment>-<predictor>, port 8000 for REST.
    assert env["WINEQ_REMOTE_URL"] == f"http://{sdep['metadata']['name']}-{predictor['name']}:8000"
    assert sdep["spec"]["protocol"] == "v2"
    # The V2 model name is the graph node, the container and the Triton ensemble at once.
    (model,) = predictor["componentSpecs"][0]["spec"]["containers"]
    assert env["WINEQ_REMOTE_MODEL"] == predictor["graph"]["name"] == model["name"]
    assert env["WINEQ_DETECTOR_URL"] == "http://drift-detector:8010"


def test_app_proxies_to_the_kserve_predictor_service(platforms: dict[str, list[Manifest]]) -> None:
    docs = platforms["kserve"]
    isvc = one(docs, "InferenceService", "wine-quality")
    app = one(docs, "Deployment", "wine-quality-app")
    env = resolved_env(docs, app["spec"]["template"]["spec"]["containers"][0])
    # Standard mode: Service <isvc>-predictor, port 80 to the container's first port.
    assert env["WINEQ_REMOTE_URL"] == f"http://{isvc['metadata']['name']}-predictor:80"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    (triton,) = isvc["spec"]["predictor"]["containers"]
    assert triton["name"] == "kserve-container"  # KServe's name for a custom predictor
    first_port = triton["ports"][0]["containerPort"]
    assert f"--http-port={first_port}" in triton["args"]
    assert triton["readinessProbe"]["httpGet"]["port"] == first_port
    # No storageUri: the model comes from the registry pull, not KServe's storage initializer.
    assert "storageUri" not in isvc["spec"]["predictor"]
    assert env["WINEQ_REMOTE_MODEL"] == isvc["metadata"]["name"]


def test_both_platforms_serve_the_same_triton_and_model_pull(
    platforms: dict[str, list[Manifest]],
) -> None:
    seldon = pod_specs(model_server(platforms["seldon"]))[0]
    kserve = pod_specs(model_server(platforms["kserve"]))[0]
    assert kserve["initContainers"] == seldon["initContainers"]
    assert kserve["volumes"] == seldon["volumes"]
    assert kserve["securityContext"] == seldon["securityContext"]
    (a,), (b,) = seldon["containers"], kserve["containers"]
    assert a["image"] == b["image"]
    flags = {"--model-repository", "--strict-readiness"}

    def args(c: Manifest) -> set[str]:
        return {x for x in c["args"] if x.split("=")[0] in flags}

    assert args(a) == args(b)
    for key in ("resources", "securityContext", "volumeMounts"):
        assert a[key] == b[key], key


WORKLOAD_FILES = {"seldon": "seldon-deployment.yaml", "kserve": "inference-service.yaml"}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_model_server_has_the_pod_annotations_its_restart_patches(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    from winequality.pipeline.cluster import MODEL_SERVERS

    server = model_server(platforms[platform])
    node: Any = server
    for part in MODEL_SERVERS[server["kind"]].pod_annotations.split("/")[1:]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    # JSON patch "add" of a key needs its map: present (with a harmless default) in the file.
    assert isinstance(node, dict)
    assert node == {
        "kubectl.kubernetes.io/default-container": pod_specs(server)[0]["containers"][0]["name"]
    }


def test_probes_target_declared_ports_and_real_health_paths(
    platforms: dict[str, list[Manifest]],
    rendered: dict[str, list[Manifest]],
    mlflow: list[Manifest],
) -> None:
    paths = {"/health/ready", "/health/live", "/v2/health/ready", "/v2/health/live", "/health"}
    docs = [d for p in platforms.values() for d in p] + rendered["staging"] + mlflow
    probed = 0
    for doc in docs:
        for spec in pod_specs(doc):
            for c in spec["containers"]:
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                assert "readinessProbe" in c, c["name"]
                assert "livenessProbe" in c, c["name"]
                for key in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if key not in c:
                        continue
                    if "exec" in c[key]:
                        # PostgreSQL: pg_isready on the server's own socket address.
                        assert "pg_isready -h 127.0.0.1" in " ".join(c[key]["exec"]["command"])
                        probed += 1
                        continue
                    probe = c[key]["httpGet"]
                    assert probe["path"] in paths
                    port = probe["port"]
                    assert port in ports or port in ports.values(), (c["name"], port)
                    probed += 1
    assert probed >= 20


def test_every_container_runs_non_root_with_a_read_only_root_and_limits(
    platforms: dict[str, list[Manifest]],
    rendered: dict[str, list[Manifest]],
    mlflow: list[Manifest],
) -> None:
    docs = [d for p in platforms.values() for d in p] + rendered["staging"] + mlflow
    checked = 0
    for doc in docs:
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
                checked += 1
            assert mounts_tmp, doc["metadata"]["name"]
    assert checked >= 20


@pytest.mark.parametrize("platform", PLATFORMS)
def test_model_writers_write_below_a_mount_point_not_onto_it(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    # registry pull and export triton replace their output by renaming a sibling directory:
    # that works for a subdirectory of a volume, never for the mount point itself.
    checked = 0
    for doc in platforms[platform]:
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


@pytest.mark.parametrize("platform", PLATFORMS)
def test_triton_reads_the_repository_the_export_writes(
    platforms: dict[str, list[Manifest]], platform: str
) -> None:
    spec = pod_specs(model_server(platforms[platform]))[0]
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


@pytest.mark.parametrize("platform", PLATFORMS)
def test_kustomizeconfig_names_the_paths_that_hold_references(platform: str) -> None:
    config = yaml.safe_load((K8S / platform / "kustomizeconfig.yaml").read_text())
    (server,) = load_documents(K8S / platform / WORKLOAD_FILES[platform])

    def resolve(node: Any, parts: list[str]) -> list[Any]:
        if not parts:
            return [node]
        if isinstance(node, list):
            return [v for item in node for v in resolve(item, parts)]
        if isinstance(node, dict) and parts[0] in node:
            return resolve(node[parts[0]], parts[1:])
        return []

    for rule in config["nameReference"] + config["images"]:
        for spec in rule.get("fieldSpecs", [rule]):
            assert spec["kind"] == server["kind"]
    ref_paths = [f["path"] for r in config["nameReference"] for f in r["fieldSpecs"]]
    found = [v for p in ref_paths for v in resolve(server, p.split("/"))]
    assert set(found) == {"wine-quality-model", "wine-quality-config"}
    image_paths = [f["path"] for f in config["images"]]
    images = {v for p in image_paths for v in resolve(server, p.split("/"))}
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


@pytest.mark.parametrize("env", OVERLAYS + KSERVE_OVERLAYS)
def test_workloads_of_an_overlay_are_its_platform_and_the_database(
    platforms: dict[str, list[Manifest]], rendered: dict[str, list[Manifest]], env: str
) -> None:
    def names(docs: list[Manifest]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in WORKLOADS}

    expected = names(platforms[platform_of(env)]) | {("StatefulSet", "postgres")}
    assert names(rendered[env]) == expected


KUSTOMIZE_ROOTS = [f"overlays/{o}" for o in OVERLAYS + KSERVE_OVERLAYS] + [
    "mlflow",
    "seldon",
    "kserve",
]
_HASHED = re.compile(r"\b(wine-quality-(?:config|platform))-[a-z0-9]{10}\b")


def _by_name(docs: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    text = _HASHED.sub(r"\1-<hash>", json.dumps(docs))
    return {(d["kind"], d["metadata"]["name"]): d for d in json.loads(text)}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("root", KUSTOMIZE_ROOTS)
def test_renderer_renders_what_kustomize_renders(root: str) -> None:
    # The checks above read this renderer's output; kustomize's must be the same objects, field
    # for field (the content hashes of generated names differ by design).
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / root)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    real = _by_name([d for d in yaml.safe_load_all(out) if d])
    ours = _by_name(build(K8S / root))
    assert sorted(ours) == sorted(real)
    for key, doc in ours.items():
        assert doc == real[key], key


@pytest.mark.parametrize("env", OVERLAYS + KSERVE_OVERLAYS)
def test_feedback_lives_in_one_database_that_every_replica_and_the_retraining_reach(
    rendered: dict[str, list[Manifest]], env: str
) -> None:
    docs = rendered[env]
    # No file shared between pods any more (SQLite's WAL needs one host): no RWX volume.
    for claim in find(docs, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], claim["metadata"]["name"]
    sources = {}
    for name, container in (("wine-quality-app", "app"), ("retrain-webhook", "webhook")):
        (c,) = [
            c
            for c in one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
            if c["name"] == container
        ]
        env_vars = {e["name"]: e for e in c["env"]}
        assert "WINEQ_FEEDBACK_DB" not in env_vars
        sources[name] = env_vars["WINEQ_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert sources["wine-quality-app"] == sources["retrain-webhook"]
    assert sources["wine-quality-app"] == {"name": "wine-quality-database", "key": "url"}
    # The in-namespace server the URL names by default (an external one replaces it).
    postgres = one(docs, "StatefulSet", "postgres")
    assert one(docs, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432
    (claim,) = postgres["spec"]["volumeClaimTemplates"]
    mounts = {
        m["name"]: m["mountPath"]
        for m in postgres["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    pgdata = {
        e["name"]: e.get("value")
        for e in postgres["spec"]["template"]["spec"]["containers"][0]["env"]
    }["PGDATA"]
    assert PurePosixPath(pgdata).parent == PurePosixPath(mounts[claim["metadata"]["name"]])
