"""The serving app factory.

``create_app(settings)`` returns a FastAPI app whose lifespan loads the model bundle. The two hot
endpoints (``POST /predict``, ``POST /v2/models/wine-quality/infer``) are raw ASGI apps that
``ServingApp`` calls before anything of FastAPI's: its middleware stack (error handling,
telemetry, body limit), routing and dependency machinery would otherwise cost more than
validation and inference together. They enforce their own body limit, answer their own errors
and record their own metrics; they are still declared as routes, so ``/docs`` documents them
with their request and response models. ``RouteTimer`` times every other route. ``/docs`` serves
its assets from the app itself (``api_docs``), so it works offline.

Nothing here imports MLflow or DVC: the app only reads the bundle directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from winequality.api_docs import add_docs
from winequality.artifacts import REFERENCE_FILE, REFERENCE_MATRIX_FILE
from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import frame_to_matrix
from winequality.contract.problems import FeatureError
from winequality.feedback_store import FeedbackSink
from winequality.http_common import install_error_handling, set_token
from winequality.inference.predictor import BundleError, PredictorError
from winequality.serving.metrics import ServingMetrics
from winequality.serving.model import LoadedModel, Loader, ModelManager, default_loader
from winequality.serving.payload_logger import PayloadLogger
from winequality.serving.quality import QualityMonitor
from winequality.serving.recent import RecentRequests
from winequality.serving.routes import admin, feedback, health, metadata, predict, v2
from winequality.serving.state import ServingState
from winequality.settings import ServingSettings

log = logging.getLogger(__name__)


def _reference_matrix(bundle: Path) -> Matrix | None:
    matrix_file = bundle / REFERENCE_MATRIX_FILE
    if matrix_file.is_file():
        matrix = np.load(matrix_file, allow_pickle=False)
        if matrix.ndim != 2 or matrix.shape[1] != schema.N_MODEL_COLUMNS:
            raise ValueError(f"{matrix_file}: shape {matrix.shape}, expected [N, 12]")
        return np.ascontiguousarray(matrix, dtype=np.float32)
    path = bundle / REFERENCE_FILE
    if not path.is_file():
        return None
    # A bundle written before reference_matrix.npy (or by hand): the app image has no pandas,
    # so there such a bundle is served without the prediction-distribution statistic.
    import pandas as pd

    return frame_to_matrix(pd.read_parquet(path))


async def start_quality_window(
    monitor: QualityMonitor, feedback: FeedbackSink, model: LoadedModel
) -> None:
    """Point the realized-quality window at a newly served model.

    The window starts from the labels already stored for its version (a restart keeps them),
    and the model's scores on its bundle's reference sample become the baseline of the
    prediction-distribution statistic. Neither may fail a swap: without them the app exports
    fewer statistics, and says why in the log.
    """
    md = model.metadata
    labelled: list[tuple[float, float]] = []
    try:
        labelled = await feedback.labelled(md.version, monitor.window)
    except (sqlite3.Error, OSError) as exc:
        log.error("labels of version %s not read from %s: %s", md.version, feedback.path, exc)
    reference = None
    try:
        matrix = await anyio.to_thread.run_sync(_reference_matrix, model.source)
        if matrix is not None:
            reference = (await model.predictor.predict(matrix)).quality.astype(np.float64)
    except (OSError, EOFError, ValueError, ImportError, FeatureError, PredictorError) as exc:
        log.error("no reference scores for version %s: %s", md.version, exc)
    rmse = md.metrics.get("rmse")
    monitor.use_model(md.version, rmse, labelled, reference, test_bias=md.metrics.get("bias"))


class ServingApp(FastAPI):
    """FastAPI, with POSTs to the hot paths handed to their endpoints before its stack."""

    hot_endpoints: Mapping[str, ASGIApp] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # X-Request-ID on every answer and JSON 500s; the hot endpoints do both themselves.
        install_error_handling(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.hot_endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class RouteTimer:
    """Pure ASGI middleware: request metrics of the routes other than the hot endpoints.

    The label is the matched route template (bounded cardinality), or ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.metrics.observe_request(label, scope["method"], status, perf_counter() - start)


def create_app(
    settings: ServingSettings | None = None,
    loader: Loader | None = None,
    *,
    freeze_gc: bool = False,
) -> FastAPI:
    """The app for ``settings``; ``loader`` overrides how a bundle becomes a predictor.

    ``freeze_gc`` (the server entry point sets it) moves everything alive once the model is loaded
    out of the garbage collector's sight: the many objects of the imports and the model would
    otherwise be traversed by every full collection (a latency spike), and none of them is
    garbage.
    """
    settings = settings or ServingSettings()
    metrics = ServingMetrics()
    quality = QualityMonitor(
        settings.quality_window,
        alpha=settings.quality_alpha,
        min_labels=settings.quality_min_labels,
    )
    feedback_sink = FeedbackSink.from_settings(settings, metrics.registry)
    recent = RecentRequests(settings.recent_requests, shared=feedback_sink.served_rows)
    metrics.watch_quality(quality, recent.scores)

    async def follow_model(model: LoadedModel) -> None:
        await start_quality_window(quality, feedback_sink, model)

    manager = ModelManager(settings, loader or default_loader(settings), metrics, follow_model)
    payloads = (
        PayloadLogger(
            settings.detector_url,
            settings.payload_queue_size,
            metrics.registry,
            batch_max=settings.payload_batch_max,
            linger_s=settings.payload_linger_s,
            detector_max_body_bytes=settings.detector_max_body_bytes,
            token=settings.detector_ingest_token,
            queue_bytes=settings.payload_queue_bytes,
        )
        if settings.detector_url
        else None
    )
    state = ServingState(
        settings,
        manager,
        metrics,
        recent,
        feedback_sink,
        quality,
        payloads,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await manager.reload()
        except BundleError as exc:
            # Stay up and unready: a bundle can still arrive (watcher, /admin/reload).
            log.error("no model loaded at startup: %s", exc)
        if payloads is not None:
            await payloads.start()
        if freeze_gc:
            gc.freeze()
        watcher = None
        if settings.reload_watch_s > 0:
            watcher = asyncio.create_task(manager.watch(settings.reload_watch_s))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if payloads is not None:
                await payloads.stop()
            await state.feedback.aclose()
            await manager.close()

    app = ServingApp(
        title="winequality",
        summary="Wine-quality prediction from physicochemical measurements.",
        version=version("winequality"),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.serving = state
    set_token(app, settings.admin_token, "set WINEQ_ADMIN_TOKEN to enable /admin/reload")
    predict_route = predict.route(state)
    infer_route = v2.infer_route(state)
    app.router.routes.extend([predict_route, infer_route])
    app.include_router(health.router)
    app.include_router(metadata.router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    feedback.install(app, settings)
    add_docs(app)
    app.hot_endpoints = {predict_route.path: predict_route.app, infer_route.path: infer_route.app}
    app.add_middleware(RouteTimer, metrics=metrics)
    return app
