"""Hot reload of a Triton server in explicit model control mode: a new bundle becomes a new
version of every model, loaded beside the old one, checked, switched to, then the old unloaded.

The order is what keeps every request answered, and every answer labelled with the model that
computed it (Triton's ``docs/user_guide/model_management.md`` and
``docs/protocol/extension_model_repository.md``):

1. The bundle is checked in process first (the ONNX session and its scores on the schema's
   examples, as the ``onnx`` backend checks it): a broken bundle never reaches the server.
2. Its version ``N`` of the three step models is moved into the repository and each is loaded
   (the repository extension's ``load``, over gRPC: see ``RepositoryClient``). The steps serve
   every version on disk, so ``N`` loads beside the version the ensemble calls, which keeps
   serving. A successful load is not enough: when one version of a model fails, Triton keeps
   the others and reports success, so the repository index must show ``N`` READY. The model
   step's raw scores on the examples are then asked of version ``N`` itself.
3. The ensemble's version ``N`` (its config names the steps' ``N``) is moved in and loaded: with
   ``latest: 1`` Triton switches to it without a gap and retires the old ensemble version, whose
   in-flight requests finish on the old steps.
4. The old version directories are deleted and the steps reloaded, which unloads their old
   versions; the index must then show them unloaded.

Any failure before the switch withdraws version ``N`` from disk and from the server, and the
served version stays what it was. Triton's version numbers follow the registry's when they can
(a new champion has a higher number than the one it replaces); otherwise, a re-deployed older
version or a non-numeric one, the next free number. ``TritonReloader.versions`` maps the server's
numbers back to the bundles' metadata, for the app's answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from winequality import artifacts
from winequality.artifacts import ModelMetadata
from winequality.contract import schema
from winequality.export.triton_repository import (
    StagedVersion,
    TritonExportError,
    Variant,
    repository_versions,
    retire_versions,
    stage_version,
)
from winequality.inference.predictor import (
    BundleError,
    OnnxPredictor,
    check_example_scores,
    example_matrix,
    read_bundle_metadata,
)

if TYPE_CHECKING:
    from winequality.process import ManagedProcess

log = logging.getLogger(__name__)

ENSEMBLE: Final = schema.MODEL_NAME
LIVE_STATES: Final = frozenset({"READY", "LOADING", "UNLOADING"})
"""Index states of a version that still holds resources on the server."""


UNAVAILABLE_RETRIES: Final = 4
UNAVAILABLE_PAUSE_S: Final = 0.25
"""A repository call that lost its connection is tried again after 0.25 s, 0.5, 1 and 2 s:
about 4 s for a busy server to take connections again."""


class TritonReloadError(BundleError):
    """The server did not take the new version (the previous one keeps serving)."""


class RepositoryClient:
    """The model repository extension of one Triton server (index, load, unload), over gRPC.

    Not over HTTP: Triton's HTTP frontend runs a load on the thread that received it, and the
    inference connections served by that thread wait as long as the load takes (seconds for a
    Python-backend model, which starts a stub process). Its gRPC frontend does not.
    """

    def __init__(
        self,
        grpc_url: str,
        timeout_s: float = 300.0,
        *,
        server: ManagedProcess | None = None,
        retries: int = UNAVAILABLE_RETRIES,
    ) -> None:
        # Imported here: only the bundled Triton's reload needs the gRPC client.
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self.url = grpc_url
        self.timeout_s = timeout_s
        self.server = server
        self.retries = retries
        self._grpc = grpcclient
        self._errors: type[InferenceServerException] = InferenceServerException
        self._client = grpcclient.InferenceServerClient(grpc_url)

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method`` of the gRPC client; UNAVAILABLE (the connection dropped under the call)
        is tried again while the server runs. Each call here is idempotent: a load of what
        is loaded already changes nothing."""
        attempt = 0
        while True:
            try:
                return getattr(self._client, method)(*args, client_timeout=self.timeout_s, **kwargs)
            except self._errors as exc:
                server = self.server
                if server is not None and not server.alive():
                    code = server.proc.returncode if server.proc else None
                    raise TritonReloadError(
                        f"{what} failed: Triton at {self.url} exited with {code} "
                        f"({exc}); its log ends:\n{server.log_tail(20)}"
                    ) from exc
                if exc.status() != "StatusCode.UNAVAILABLE" or attempt == self.retries:
                    why = f"{what} failed on Triton at {self.url}: {exc}"
                    raise TritonReloadError(why) from exc
                log.warning("%s on Triton at %s: %s; trying again", what, self.url, exc)
                time.sleep(UNAVAILABLE_PAUSE_S * 2**attempt)
                attempt += 1

    def server_alive(self) -> bool:
        """False once the server this client was given has exited (True when not given)."""
        return self.server is None or self.server.alive()

    def index(self) -> dict[tuple[str, str], tuple[str, str]]:
        """``{(model, version): (state, reason)}`` of the repository index."""
        doc = self._call("the repository index", "get_model_repository_index", as_json=True)
        return {
            (str(e["name"]), str(e.get("version", ""))): (str(e["state"]), str(e.get("reason", "")))
            for e in doc.get("models", [])
        }

    def load(self, model: str) -> None:
        self._call(f"loading {model}", "load_model", model)

    def unload(self, model: str) -> None:
        self._call(f"unloading {model}", "unload_model", model)

    def require_ready(self, model: str, version: int) -> None:
        state, reason = self.index().get((model, str(version)), ("absent", "not in the index"))
        if state != "READY":
            raise TritonReloadError(f"{model} version {version} is {state}: {reason[:500]}")

    def is_ready(self, model: str, version: int) -> bool:
        try:
            return self.index().get((model, str(version)), ("", ""))[0] == "READY"
        except TritonReloadError:
            return False

    def raw_scores(self, model: str, version: int) -> npt.NDArray[np.float32]:
        """The ONNX step's scores for the schema's examples, asked of that exact version."""
        matrix = example_matrix()
        tensor = self._grpc.InferInput(schema.ONNX_INPUT, list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix)
        result = self._call(
            f"{model} version {version} on the schema examples",
            "infer",
            model,
            [tensor],
            model_version=str(version),
        )
        return np.asarray(result.as_numpy(schema.ONNX_OUTPUT), dtype=np.float32).reshape(-1)

    def wait_unloaded(
        self, versions: Iterable[tuple[str, int]], timeout_s: float
    ) -> list[tuple[str, int]]:
        """Poll the index until none of ``versions`` holds resources; those still live."""
        pending = {(m, str(v)) for m, v in versions}
        deadline = time.monotonic() + timeout_s
        while pending:
            index = self.index()
            pending = {k for k in pending if index.get(k, ("", ""))[0] in LIVE_STATES}
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return sorted((m, int(v)) for m, v in pending)

    def close(self) -> None:
        self._client.close()


def bundle_digest(bundle: Path) -> str:
    """What identifies a bundle's model: its ONNX file and its metadata."""
    digest = hashlib.sha256()
    for name in (artifacts.MODEL_FILE, artifacts.METADATA_FILE):
        try:
            digest.update((bundle / name).read_bytes())
        except OSError as exc:
            raise BundleError(f"{bundle / name}: unreadable ({exc})") from exc
    return digest.hexdigest()


def next_version(metadata: ModelMetadata, highest: int) -> int:
    """The registry version when it is a number above every version used so far, else the next
    free one (Triton serves the highest number: a lower one would never become the latest)."""
    wanted = metadata.version.strip()
    if wanted.isdigit() and int(wanted) > highest:
        return int(wanted)
    return highest + 1


def check_in_process(bundle: Path) -> None:
    """``BundleError`` unless the bundle passes the checks the in-process backend applies."""
    predictor = OnnxPredictor(bundle)
    # No loop runs in this (worker) thread; the check itself is synchronous.
    asyncio.run(predictor.self_check())


@dataclass(frozen=True, slots=True)
class Served:
    version: int
    digest: str
    metadata: ModelMetadata


class TritonReloader:
    """Deploys bundles to one running server whose repository is ``repository``."""

    def __init__(
        self,
        repository: Path,
        client: RepositoryClient,
        variant: Variant = "python",
        *,
        max_batch_size: int = 1024,
        unload_timeout_s: float = 60.0,
    ) -> None:
        self.repository = repository
        self.client = client
        self.variant: Variant = variant
        self.max_batch_size = max_batch_size
        self.unload_timeout_s = unload_timeout_s
        self.served: Served | None = None
        self.versions: dict[str, ModelMetadata] = {}
        """Server version -> the bundle's metadata (read by the predictors for each answer)."""
        on_disk = repository_versions(repository).values()
        self._highest = max((max(vs, default=0) for vs in on_disk), default=0)
        self._lock = threading.Lock()

    def deploy(self, bundle: Path, *, precheck: bool = True) -> ModelMetadata:
        """Serve ``bundle`` (blocking); ``BundleError`` leaves the served version as it was.

        ``precheck=False`` skips the in-process check, so the server's own refusal can be seen.
        """
        with self._lock:
            metadata = read_bundle_metadata(bundle)
            digest = bundle_digest(bundle)
            served = self.served
            if (
                served is not None
                and served.digest == digest
                and self.client.is_ready(ENSEMBLE, served.version)
            ):
                return served.metadata
            if precheck:
                check_in_process(bundle)
            version = next_version(metadata, self._highest)
            self._highest = version
            try:
                staged = stage_version(
                    bundle,
                    self.repository,
                    version,
                    self.variant,
                    max_batch_size=self.max_batch_size,
                )
            except TritonExportError as exc:
                raise BundleError(str(exc)) from exc
            # Before the switch: the first answer of the new version already maps to its bundle.
            self.versions[str(version)] = metadata
            try:
                self._switch(staged)
            except BundleError as exc:
                self.versions.pop(str(version), None)
                self._withdraw(staged)
                keeps = f"version {served.version}" if served else "no model"
                if not self.client.server_alive():
                    keeps = "Triton exited, so nothing"
                raise TritonReloadError(
                    f"Triton did not take {bundle} as version {version} ({exc}); "
                    f"{keeps} keeps serving"
                ) from exc
            except BaseException:
                self.versions.pop(str(version), None)
                self._withdraw(staged)
                raise
            finally:
                staged.discard()
            self.served = Served(version, digest, metadata)
            self._retire(version)
            registry = metadata.version
            log.info("Triton serves %s (registry %s) as its version %d", bundle, registry, version)
            return metadata

    def _switch(self, staged: StagedVersion) -> None:
        version = staged.version
        steps = staged.install_steps()
        for name in steps:
            self.client.load(name)
        for name in steps:
            self.client.require_ready(name, version)
        family = steps[1]
        check_example_scores(
            self.client.raw_scores(family, version), f"scores of {family} version {version}"
        )
        staged.install_ensemble()
        self.client.load(ENSEMBLE)
        self.client.require_ready(ENSEMBLE, version)

    def _withdraw(self, staged: StagedVersion) -> None:
        """Disk and server back to the served version (best effort: log what fails)."""
        installed = list(staged.installed)
        added = set(staged.added)
        staged.withdraw()
        # The ensemble first: it must call the old steps again before their new version goes.
        for name in sorted(installed, key=lambda n: n != ENSEMBLE):
            try:
                if name in added:
                    self.client.unload(name)
                else:
                    self.client.load(name)
            except TritonReloadError as exc:
                log.error("withdrawing version %d of %s: %s", staged.version, name, exc)
        self._await_unloaded([(name, staged.version) for name in installed], "withdrawn")

    def _retire(self, version: int) -> None:
        """Delete the old version directories and have the server unload them."""
        retired = retire_versions(self.repository, keep=version)
        old = [(name, v) for name, (versions, _) in retired.items() for v in versions]
        try:
            for name, (_, gone) in retired.items():
                if name == ENSEMBLE:
                    continue  # ``latest: 1``: the switch already retired its old version
                if gone:
                    self.client.unload(name)  # a model the new ensemble no longer calls
                else:
                    self.client.load(name)
        except TritonReloadError as exc:
            log.error("version %d serves, but the old versions were not unloaded: %s", version, exc)
            return
        self._await_unloaded(old, f"replaced by version {version}")

    def _await_unloaded(self, versions: list[tuple[str, int]], why: str) -> None:
        try:
            left = self.client.wait_unloaded(versions, self.unload_timeout_s)
        except TritonReloadError as exc:
            log.error("versions %s (%s) not seen unloaded: %s", versions, why, exc)
            return
        if left:
            timeout = self.unload_timeout_s
            log.warning("versions %s (%s) still loaded after %.0f s", left, why, timeout)

    def close(self) -> None:
        self.client.close()
