"""A promotion reaching the cluster: point the model ConfigMap at the new run, restart what
serves it, wait until it is ready, and undo all of it if it never is.

The retraining job (``pipeline.retrain.deploy``) calls ``roll_out`` after the gate promoted a
new champion and the bundle was pulled and checked locally:

1. read the model ConfigMap (``MODEL_RUN_ID``: the run served now, kept for the way back);
2. patch it to the new run id (and its version, as an annotation);
3. restart the model server (SeldonDeployment or InferenceService: a JSON patch of its pod
   annotations, which its operator copies to the Deployment it owns) and the app and detector
   Deployments (a strategic-merge patch of ``kubectl.kubernetes.io/restartedAt``, exactly what
   ``kubectl rollout restart`` sends): every pod's model-pull initContainer then reads the new
   run id;
4. poll each Deployment as ``kubectl rollout status`` does (the template carries this restart,
   ``observedGeneration``, updated / available replicas, no old replica left, progress
   deadline) until all are done, one fails, or ``rollout_timeout_s`` passes;
5. on failure: patch the ConfigMap back, restart again and wait again, and report; the caller
   moves the ``champion`` alias back. Old pods keep serving throughout (``maxUnavailable: 0``
   for the app), so a model that never becomes ready is never the only one.

The client is a few typed requests over httpx with the pod's service account (token and CA
under ``/var/run/secrets/kubernetes.io/serviceaccount``). ``request_table`` is the one list of
what it may do (verb, API group, resource, names): it refuses anything else, and the webhook's
Role in ``deploy/k8s`` grants exactly that table (``tests/unit/deploy/test_rbac.py``).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx

from winequality.settings import ClusterSettings

STRATEGIC_MERGE: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
RESTARTED_AT: Final = "kubectl.kubernetes.io/restartedAt"
"""The pod annotation ``kubectl rollout restart`` sets: ours and a human's restart look alike."""
RUN_ID_KEY: Final = "MODEL_RUN_ID"
VERSION_ANNOTATION: Final = "winequality/model-version"
FIELD_MANAGER: Final = "winequality-retrain"
"""Owner of the fields the job patches (server-side apply sees who moved ``MODEL_RUN_ID``)."""

Verb = Literal["get", "patch"]
State = Literal["done", "waiting", "failed"]


class ClusterError(RuntimeError):
    """The API server refused or could not be reached, or a request is outside the table."""


@dataclass(frozen=True)
class Endpoint:
    """One kind of request: its RBAC verb, API group / version, resource and patch type."""

    verb: Verb
    group: str
    version: str
    resource: str
    content_type: str | None = None

    def path(self, namespace: str, name: str) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{prefix}/namespaces/{namespace}/{self.resource}/{name}"


@dataclass(frozen=True)
class ModelServerKind:
    """Where a model server resource lives in the API, and the JSON pointer of the annotations
    its operator puts on the pods (the map must exist in the manifest: JSON patch ``add``
    needs the parent)."""

    group: str
    version: str
    resource: str
    pod_annotations: str


MODEL_SERVERS: Final[dict[str, ModelServerKind]] = {
    "SeldonDeployment": ModelServerKind(
        "machinelearning.seldon.io",
        "v1",
        "seldondeployments",
        "/spec/predictors/0/componentSpecs/0/metadata/annotations",
    ),
    "InferenceService": ModelServerKind(
        "serving.kserve.io", "v1beta1", "inferenceservices", "/spec/predictor/annotations"
    ),
}


def request_table(settings: ClusterSettings) -> tuple[tuple[Endpoint, tuple[str, ...]], ...]:
    """Every request the client may make, with the resource names it may make it on."""
    server = MODEL_SERVERS[settings.model_server_kind]
    configmap = (settings.model_configmap,)
    return (
        (Endpoint("get", "", "v1", "configmaps"), configmap),
        (Endpoint("patch", "", "v1", "configmaps", STRATEGIC_MERGE), configmap),
        (
            Endpoint("patch", server.group, server.version, server.resource, JSON_PATCH),
            (settings.model_server_name,),
        ),
        (Endpoint("patch", "apps", "v1", "deployments", STRATEGIC_MERGE), settings.deployments),
        (
            Endpoint("get", "apps", "v1", "deployments"),
            (settings.model_server_deployment, *settings.deployments),
        ),
    )


def _message(response: httpx.Response) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("message", body))[:300] if isinstance(body, dict) else str(body)[:300]


class KubeClient:
    """The requests of ``request_table``, authenticated as the pod's service account."""

    def __init__(
        self, settings: ClusterSettings, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not settings.namespace:
            raise ClusterError("no namespace: WINEQ_CLUSTER_NAMESPACE is not set")
        self.namespace = settings.namespace
        account = settings.service_account_dir
        try:
            token = (account / "token").read_text().strip()
        except OSError as exc:
            raise ClusterError(f"no service account token: {exc}") from exc
        ca = account / "ca.crt"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True
        )
        self._table = {
            (e.verb, e.group, e.resource): (e, names) for e, names in request_table(settings)
        }
        self._http = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            verify=verify,
            timeout=settings.request_timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _request(
        self, verb: Verb, group: str, resource: str, name: str, body: Any = None
    ) -> dict[str, Any]:
        entry = self._table.get((verb, group, resource))
        if entry is None or name not in entry[1]:
            raise ClusterError(f"{verb} {group or 'core'}/{resource}/{name} is not in the table")
        endpoint = entry[0]
        path = endpoint.path(self.namespace, name)
        method = verb.upper()
        try:
            if verb == "patch":
                response = self._http.request(
                    method,
                    path,
                    params={"fieldManager": FIELD_MANAGER},
                    content=json.dumps(body).encode(),
                    headers={"Content-Type": str(endpoint.content_type)},
                )
            else:
                response = self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise ClusterError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ClusterError(f"{method} {path}: {response.status_code} {_message(response)}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ClusterError(f"{method} {path}: the answer is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ClusterError(f"{method} {path}: expected a JSON object")
        return data

    def model_configmap(self, name: str) -> dict[str, Any]:
        return self._request("get", "", "configmaps", name)

    def set_model(self, name: str, run_id: str, version: str | None) -> None:
        # A null version removes the annotation (strategic merge): a map reverted to a run
        # that had none says none.
        patch = {
            "data": {RUN_ID_KEY: run_id},
            "metadata": {"annotations": {VERSION_ANNOTATION: version}},
        }
        self._request("patch", "", "configmaps", name, patch)

    def restart_deployment(self, name: str, stamp: str) -> None:
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        self._request("patch", "apps", "deployments", name, patch)

    def restart_model_server(self, kind: str, name: str, stamp: str) -> None:
        server = MODEL_SERVERS[kind]
        key = RESTARTED_AT.replace("~", "~0").replace("/", "~1")
        ops = [{"op": "add", "path": f"{server.pod_annotations}/{key}", "value": stamp}]
        self._request("patch", server.group, server.resource, name, ops)

    def deployment(self, name: str) -> dict[str, Any]:
        return self._request("get", "apps", "deployments", name)


def rollout_status(deployment: dict[str, Any], stamp: str) -> tuple[State, str]:
    """Where a Deployment's rollout of restart ``stamp`` stands, as ``kubectl rollout status``
    judges it (plus: its template carries the stamp, i.e. an operator has passed it on)."""
    meta, spec = deployment.get("metadata", {}), deployment.get("spec", {})
    status = deployment.get("status", {})
    name = meta.get("name", "?")
    annotations = spec.get("template", {}).get("metadata", {}).get("annotations") or {}
    if annotations.get(RESTARTED_AT) != stamp:
        return "waiting", f"{name}: the pod template does not carry restart {stamp} yet"
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "waiting", f"{name}: the new generation is not observed yet"
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return "failed", f"{name}: {condition.get('message', 'progress deadline exceeded')}"
    return _replicas(name, int(spec.get("replicas", 1)), status)


def _replicas(name: str, want: int, status: dict[str, Any]) -> tuple[State, str]:
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < want:
        return "waiting", f"{name}: {updated} of {want} replicas updated"
    if total > updated:
        return "waiting", f"{name}: {total - updated} old replica(s) still running"
    if available < updated:
        return "waiting", f"{name}: {available} of {updated} updated replicas available"
    return "done", f"{name}: {available} of {want} replicas ready"


@dataclass
class Rollout:
    """What ``roll_out`` did; ``ready`` False means the caller must give the alias back."""

    ready: bool
    detail: str
    run_id: str
    previous_run_id: str | None = None
    reverted: bool = False
    """The ConfigMap went back to the previous run and the workloads were restarted on it."""
    revert_ready: bool | None = None
    """Whether that second rollout became ready (None: no revert was needed or possible)."""
    seconds: float = 0.0


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class _Rollouts:
    """One promotion's restarts and waits (the clock and the sleep are injectable)."""

    def __init__(
        self,
        settings: ClusterSettings,
        client: KubeClient,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.settings, self.client, self.clock, self.sleep = settings, client, clock, sleep

    def restart_all(self) -> str:
        stamp = _stamp()
        s = self.settings
        self.client.restart_model_server(s.model_server_kind, s.model_server_name, stamp)
        for name in s.deployments:
            self.client.restart_deployment(name, stamp)
        return stamp

    def wait(self, stamp: str) -> tuple[bool, str]:
        s = self.settings
        names = (s.model_server_deployment, *s.deployments)
        deadline = self.clock() + s.rollout_timeout_s
        while True:
            states: list[tuple[State, str]] = []
            for name in names:
                try:
                    states.append(rollout_status(self.client.deployment(name), stamp))
                except ClusterError as exc:  # a blip of the API server: ask again
                    states.append(("waiting", str(exc)))
            failed = [detail for state, detail in states if state == "failed"]
            if failed:
                return False, "; ".join(failed)
            pending = [detail for state, detail in states if state != "done"]
            if not pending:
                return True, "; ".join(detail for _, detail in states)
            if self.clock() >= deadline:
                return False, f"not ready after {s.rollout_timeout_s:g} s: " + "; ".join(pending)
            self.sleep(s.poll_interval_s)


def roll_out(
    settings: ClusterSettings,
    run_id: str,
    version: str | None,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Rollout:
    """Serve ``run_id`` in the cluster, or leave it serving what it served (see the module)."""
    start = clock()
    client = KubeClient(settings, transport)
    try:
        steps = _Rollouts(settings, client, clock, sleep)
        name = settings.model_configmap
        try:
            current = client.model_configmap(name)
            previous = current.get("data", {}).get(RUN_ID_KEY)
            annotations = current.get("metadata", {}).get("annotations") or {}
            previous_version = annotations.get(VERSION_ANNOTATION)
            client.set_model(name, run_id, version)
        except ClusterError as exc:
            # Nothing was changed yet: the alias goes back, the cluster is as it was.
            return Rollout(False, f"the model ConfigMap was not changed: {exc}", run_id)
        result = Rollout(False, "", run_id, previous_run_id=previous)
        try:
            stamp = steps.restart_all()
            ready, detail = steps.wait(stamp)
        except ClusterError as exc:
            ready, detail = False, f"restart refused: {exc}"
        if ready:
            result.ready, result.detail = True, f"run {run_id} rolled out: {detail}"
            result.seconds = round(clock() - start, 3)
            return result
        result.detail = f"run {run_id} never became ready ({detail})"
        if previous is None:
            result.detail += f"; the ConfigMap had no {RUN_ID_KEY} to go back to"
            return result
        try:
            client.set_model(name, previous, previous_version)
            result.reverted = True
            back, back_detail = steps.wait(steps.restart_all())
        except ClusterError as exc:
            back, back_detail = False, f"revert refused: {exc}"
        result.revert_ready = back
        result.detail += (
            f"; reverted to run {previous}: "
            + ("ready" if back else "NOT ready")
            + f" ({back_detail})"
        )
        result.seconds = round(clock() - start, 3)
        return result
    finally:
        client.close()
