"""The model being served and its hot swap.

A new bundle is loaded beside the current one (in a worker thread, so requests keep flowing),
checked, and only then published with a single reference assignment: a request reads
``manager.current`` once and uses that model to the end, so it never sees half a swap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio.to_thread

from winequality.artifacts import METADATA_FILE, ModelMetadata
from winequality.inference.predictor import (
    BundleError,
    OnnxPredictor,
    Predictor,
    UpstreamTimeout,
    UpstreamUnavailable,
    example_matrix,
    read_bundle_metadata,
)

__all__ = ["LoadedModel", "Loader", "ModelManager", "default_loader", "example_matrix"]
from winequality.serving.metrics import ServingMetrics
from winequality.settings import ServingSettings

log = logging.getLogger(__name__)

Loader = Callable[[Path], Predictor]
"""Builds a predictor from a bundle directory (blocking; runs in a worker thread)."""

CLOSE_GRACE_S: Final = 5.0
"""How long a replaced predictor stays open for requests that started before the swap."""


def default_loader(settings: ServingSettings) -> Loader:
    """The predictor the settings ask for: in-process ONNX or the remote V2 server."""
    if settings.backend == "onnx":
        return lambda bundle: OnnxPredictor(bundle, threads=settings.onnx_threads)

    def remote(bundle: Path) -> Predictor:
        # Imported here: aiohttp and the V2 client are only needed in remote mode.
        from winequality.inference.remote import RemoteV2Predictor

        return RemoteV2Predictor.from_settings(settings, read_bundle_metadata(bundle))

    return remote


def _shown(path: Path, most: int = 300) -> str:
    """A path for a message: a 100 kB one is not echoed back whole."""
    text = str(path)
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def _require_version(bundle: Path) -> None:
    """A bundle must say which version it is: one without would be served as "0" and the
    version labels of the metrics, the feedback and the payloads would all lie."""
    metadata = read_bundle_metadata(bundle)
    if "version" not in metadata.model_fields_set or not metadata.version.strip():
        raise BundleError(f"{bundle / METADATA_FILE}: no model version (a non-empty 'version')")


@dataclass(frozen=True, slots=True)
class LoadedModel:
    predictor: Predictor
    source: Path
    loaded_at: float

    @property
    def metadata(self) -> ModelMetadata:
        # Read through: a remote predictor learns the served version from its upstream.
        return self.predictor.metadata


class ReloadInProgressError(RuntimeError):
    """Another reload is running; the caller should retry later (409)."""


SwapHook = Callable[["LoadedModel"], Awaitable[None]]
"""Runs after each swap with the new model (it must not raise: the swap has happened)."""


class ModelManager:
    """Holds the served model; ``reload`` swaps it only for one that passed the checks."""

    def __init__(
        self,
        settings: ServingSettings,
        loader: Loader,
        metrics: ServingMetrics,
        on_swap: SwapHook | None = None,
    ) -> None:
        self.settings = settings
        self._on_swap = on_swap
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._loader = loader
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._retired: dict[asyncio.Task[None], Predictor] = {}
        self._watched: tuple[int, int, int] | None = None

    async def load(self, bundle: Path) -> LoadedModel:
        """Build and check a predictor for ``bundle`` without publishing it."""
        try:
            bundle = bundle.resolve()
            is_dir = bundle.is_dir()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop of links
            raise BundleError(
                f"{_shown(bundle)}: not a usable path ({exc.__class__.__name__})"
            ) from exc
        if not is_dir:
            raise BundleError(f"{_shown(bundle)}: not a directory")
        _require_version(bundle)
        predictor = await anyio.to_thread.run_sync(self._loader, bundle)
        try:
            await predictor.self_check()
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            # Remote mode: the bundle is only metadata and the server may come back later;
            # readiness reports the outage in the meantime.
            log.warning("could not smoke-test %s against the upstream server: %s", bundle, exc)
        except BaseException:
            await predictor.close()
            raise
        return LoadedModel(predictor, bundle, time.time())

    async def reload(self, bundle: Path | None = None) -> tuple[LoadedModel, LoadedModel | None]:
        """Load ``bundle`` (default: the configured dir) beside the current model, then swap."""
        if self._lock.locked():
            raise ReloadInProgressError("a reload is already in progress")
        async with self._lock:
            try:
                new = await self.load(bundle or self.settings.model_dir)
            except BundleError as exc:
                self.last_error = str(exc)
                self._metrics.reloads.labels("refused").inc()
                raise
            old = self.current
            self.current = new  # the swap: one reference assignment
            self.last_error = None
            self._metrics.reloads.labels("ok").inc()
            self._metrics.set_model(
                new.metadata.name, new.metadata.version, new.metadata.run_id, self.settings.backend
            )
            if old is not None and old.predictor is not new.predictor:
                self._close_later(old.predictor)
            if self._on_swap is not None:
                await self._on_swap(new)
            log.info(
                "serving %s version %s from %s",
                new.metadata.name,
                new.metadata.version,
                new.source,
            )
            return new, old

    def _close_later(self, predictor: Predictor) -> None:
        async def close() -> None:
            await asyncio.sleep(CLOSE_GRACE_S)
            await predictor.close()

        task = asyncio.get_running_loop().create_task(close())
        self._retired[task] = predictor
        task.add_done_callback(self._retired.pop)

    async def ready(self) -> tuple[bool, str]:
        """(ready, reason): a model is loaded and its predictor can serve."""
        model = self.current
        if model is None:
            return False, f"no model loaded ({self.last_error or 'not started'})"
        try:
            ok = await model.predictor.ready()
        except Exception as exc:  # a readiness probe must answer, whatever the backend raises
            return False, f"predictor readiness check failed: {exc}"
        return (True, "ready") if ok else (False, "the predictor is not ready (upstream down?)")

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = (self.settings.model_dir / METADATA_FILE).stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    async def watch(self, interval_s: float) -> None:
        """Reload whenever the model dir's metadata.json changes (a new bundle was pulled).

        ``write_bundle`` switches the model dir's link to a complete new version directory in
        one rename, so the metadata file is a new one (new inode) exactly when a whole bundle is
        in place.
        """
        self._watched = self._stamp()
        while True:
            await asyncio.sleep(interval_s)
            stamp = self._stamp()
            if stamp is None or stamp == self._watched:
                continue
            self._watched = stamp
            try:
                await self.reload()
            except (BundleError, ReloadInProgressError) as exc:
                log.error("model dir changed but the new bundle was not loaded: %s", exc)

    async def close(self) -> None:
        retired = list(self._retired.items())
        for task, _ in retired:
            task.cancel()
        for _, predictor in retired:
            await predictor.close()
        if self.current is not None:
            await self.current.predictor.close()
