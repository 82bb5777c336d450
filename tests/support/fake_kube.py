"""A small Kubernetes API server for the promotion path (``pipeline.cluster``), served over TLS on
127.0.0.1 by a real HTTP server: it keeps the model ConfigMap, the model server resource and the
Deployments, records every request, applies the patches, and plays the controllers.

The controllers' rules: a restarted Deployment's new pods pull the run the ConfigMap names at that
moment. A run in ``never_ready`` (or outside ``only_ready``, when set) never gets ready pods: the
rollout hangs with the old pods still serving. One in ``deadline`` reports
``ProgressDeadlineExceeded``; any other is rolled out after ``ready_after`` status reads. The
model server's operator copies the restart annotation of its pod metadata to the Deployment it
owns, as Seldon's and KServe's do.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def write_service_account(folder: Path, token: str) -> tuple[Path, Path]:
    """A self-signed CA / server certificate for 127.0.0.1 and a token, laid out as the mounted
    service account is (``token``, ``ca.crt``); returns (cert file, key file) for the server."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(token + "\n")
    (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = folder.parent / "apiserver.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "ca.crt", key_file


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    authorization: str | None
    body: Any


@dataclass
class _Rollout:
    run_id: str | None
    reads: int = 0


@dataclass
class FakeCluster:
    """State and rules of the fake API server (see the module)."""

    namespace: str
    run_id: str
    token: str = "t0ken"
    model_server_kind: str = "SeldonDeployment"
    model_server_name: str = "wine-quality"
    model_server_deployment: str = "wine-quality-default-0-wine-quality"
    deployments: tuple[str, ...] = ("wine-quality-app", "drift-detector")
    replicas: int = 2
    never_ready: frozenset[str] = frozenset()
    only_ready: frozenset[str] | None = None
    """If set, every run outside it never gets ready (for runs made during the test)."""
    deadline: frozenset[str] = frozenset()
    ready_after: int = 2
    forbidden: frozenset[tuple[str, str]] = frozenset()
    """(method, path) answered 403, as a missing RBAC rule is."""
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    _rollouts: dict[str, _Rollout] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        ns = self.namespace
        self.objects[self.configmap_path] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "wine-quality-model", "namespace": ns, "annotations": {}},
            "data": {"MODEL_RUN_ID": self.run_id},
        }
        for name in (self.model_server_deployment, *self.deployments):
            self.objects[self.deployment_path(name)] = self._deployment(name)
            self._rollouts[name] = _Rollout(self.run_id, reads=self.ready_after)
        if self.model_server_kind == "SeldonDeployment":
            group = "machinelearning.seldon.io/v1"
            spec: dict[str, Any] = {
                "predictors": [{"name": "default", "componentSpecs": [{"metadata": {}}]}]
            }
            spec["predictors"][0]["componentSpecs"][0]["metadata"]["annotations"] = {}
        else:
            group = "serving.kserve.io/v1beta1"
            spec = {"predictor": {"annotations": {}}}
        self.objects[self.model_server_path] = {
            "apiVersion": group,
            "kind": self.model_server_kind,
            "metadata": {"name": self.model_server_name, "namespace": ns, "generation": 1},
            "spec": spec,
        }

    # --- paths --------------------------------------------------------------------------------

    @property
    def configmap_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/wine-quality-model"

    def deployment_path(self, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}"

    @property
    def model_server_path(self) -> str:
        if self.model_server_kind == "SeldonDeployment":
            return (
                f"/apis/machinelearning.seldon.io/v1/namespaces/{self.namespace}"
                f"/seldondeployments/{self.model_server_name}"
            )
        return (
            f"/apis/serving.kserve.io/v1beta1/namespaces/{self.namespace}"
            f"/inferenceservices/{self.model_server_name}"
        )

    def _deployment(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace, "generation": 1},
            "spec": {"replicas": self.replicas, "template": {"metadata": {"annotations": {}}}},
            "status": {},
        }

    # --- what the tests read -----------------------------------------------------------------

    @property
    def served_run_id(self) -> str:
        return str(self.objects[self.configmap_path]["data"]["MODEL_RUN_ID"])

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # --- the controllers ---------------------------------------------------------------------

    def _restart(self, name: str) -> None:
        dep = self.objects[self.deployment_path(name)]
        dep["metadata"]["generation"] += 1
        self._rollouts[name] = _Rollout(self.served_run_id)

    def _status(self, name: str) -> dict[str, Any]:
        dep = self.objects[self.deployment_path(name)]
        rollout = self._rollouts[name]
        rollout.reads += 1
        generation, want = dep["metadata"]["generation"], self.replicas
        if rollout.reads == 1:  # the controller has not seen the new generation yet
            observed = generation - 1
            return {"observedGeneration": observed, "replicas": want, "updatedReplicas": 0}
        status: dict[str, Any] = {"observedGeneration": generation, "conditions": []}
        if rollout.run_id in self.deadline:
            status |= {"replicas": want + 1, "updatedReplicas": 1, "availableReplicas": want}
            status["conditions"].append(
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}-new" has timed out progressing.',
                }
            )
        elif (
            rollout.run_id in self.never_ready
            or (self.only_ready is not None and rollout.run_id not in self.only_ready)
            or rollout.reads <= self.ready_after
        ):
            # maxSurge 1, maxUnavailable 0: one new pod that is not ready, the old ones serve.
            status |= {"replicas": want + 1, "updatedReplicas": 1, "availableReplicas": want}
        else:
            status |= {"replicas": want, "updatedReplicas": want, "availableReplicas": want}
        return status

    # --- requests ----------------------------------------------------------------------------

    def handle(self, record: Recorded) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(record)
            if record.authorization != f"Bearer {self.token}":
                return 401, {"kind": "Status", "message": "Unauthorized", "code": 401}
            if (record.method, record.path) in self.forbidden:
                return 403, {"kind": "Status", "message": "forbidden by the test", "code": 403}
            obj = self.objects.get(record.path)
            if obj is None:
                return 404, {"kind": "Status", "message": f"{record.path} not found", "code": 404}
            if record.method == "GET":
                out = copy.deepcopy(obj)
                if obj["kind"] == "Deployment":
                    out["status"] = self._status(obj["metadata"]["name"])
                return 200, out
            if record.method != "PATCH":
                return 405, {"kind": "Status", "message": "method not allowed", "code": 405}
            return self._patch(record, obj)

    def _patch(self, record: Recorded, obj: dict[str, Any]) -> tuple[int, Any]:
        kind = obj["kind"]
        if kind in ("ConfigMap", "Deployment"):
            if record.content_type != "application/strategic-merge-patch+json":
                return 415, {"kind": "Status", "message": "expected a strategic merge patch"}
            _merge(obj, record.body)
            if kind == "Deployment":
                self._restart(obj["metadata"]["name"])
            return 200, obj
        if record.content_type != "application/json-patch+json":
            # Custom resources take JSON (merge) patches only, never strategic merge.
            return 415, {"kind": "Status", "message": "custom resources take a JSON patch"}
        for op in record.body:
            _json_patch_add(obj, op)
        obj["metadata"]["generation"] += 1
        annotations = _pod_annotations(obj)
        operator_owned = self.objects[self.deployment_path(self.model_server_deployment)]
        operator_owned["spec"]["template"]["metadata"]["annotations"] = dict(annotations)
        self._restart(self.model_server_deployment)
        return 200, obj


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge for the maps these patches touch (no lists): null deletes a key."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _json_patch_add(doc: dict[str, Any], op: dict[str, Any]) -> None:
    if op.get("op") != "add":
        raise ValueError(f"unsupported op {op!r}")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]  # KeyError: 422
    node[parts[-1]] = op["value"]


def _pod_annotations(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "SeldonDeployment":
        meta = obj["spec"]["predictors"][0]["componentSpecs"][0]["metadata"]
        return dict(meta["annotations"])
    return dict(obj["spec"]["predictor"]["annotations"])


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        record = Recorded(
            self.command,
            url.path,
            parse_qs(url.query),
            self.headers.get("Content-Type"),
            self.headers.get("Authorization"),
            json.loads(raw) if raw else None,
        )
        try:
            status, body = self.cluster.handle(record)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            status, body = 422, {"kind": "Status", "message": f"invalid patch: {exc!r}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve  # noqa: N815 (http.server's names)
    do_PATCH = _serve  # noqa: N815
    do_PUT = _serve  # noqa: N815
    do_POST = _serve  # noqa: N815
    do_DELETE = _serve  # noqa: N815


@dataclass
class Served:
    cluster: FakeCluster
    url: str
    service_account: Path


def serve(cluster: FakeCluster, folder: Path) -> Iterator[Served]:
    """Serve ``cluster`` on 127.0.0.1 over TLS until the generator is closed (a fixture body)."""
    account = folder / "serviceaccount"
    cert, key = write_service_account(account, cluster.token)
    handler = type("Handler", (_Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Served(cluster, f"https://127.0.0.1:{server.server_address[1]}", account)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
