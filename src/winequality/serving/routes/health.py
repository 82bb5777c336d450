"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from winequality.serving.state import StateDep

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """The process answers (restart it if this fails)."""
    return {"status": "alive"}


@router.get("/ready", responses={503: {"description": "No model, or the predictor is down."}})
async def ready(state: StateDep) -> JSONResponse:
    """A model is loaded and its predictor can serve (route traffic here only then).

    ``feedback_store`` reports the store's latest outcome (``ok``, ``unavailable`` and why, or
    ``unused``) without deciding readiness: predictions never need it, and replicas sharing a
    database that is down would otherwise all leave the Service at once.
    """
    ok, reason = await state.manager.ready()
    model = state.manager.current
    body = {
        "status": "ready" if ok else "not ready",
        "reason": reason,
        "model_version": model.metadata.version if model else None,
        "feedback_store": state.feedback.status(),
    }
    return JSONResponse(body, status_code=200 if ok else 503)
