"""``POST /admin/reload``: hot-swap the model, authenticated with a bearer token."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from winequality.inference.predictor import BundleError
from winequality.serving.model import ReloadInProgressError
from winequality.serving.schemas import ReloadRequest, ReloadResponse
from winequality.serving.state import StateDep

router = APIRouter(prefix="/admin", tags=["admin"])

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_admin(state: StateDep, credentials: Credentials) -> None:
    expected = state.settings.admin_token
    given = credentials.credentials if credentials is not None else ""
    # compare_digest takes time independent of where the strings differ: no timing oracle.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        reason = "reload is disabled (no admin token configured)" if not expected else None
        raise HTTPException(
            401,
            reason or "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.post(
    "/reload",
    dependencies=[Depends(require_admin)],
    responses={
        401: {"description": "Missing or wrong bearer token."},
        409: {"description": "Another reload is in progress."},
        422: {"description": "The bundle is broken; the previous model keeps serving."},
    },
)
async def reload(state: StateDep, request: ReloadRequest | None = None) -> ReloadResponse:
    """Load a bundle beside the current model, check it, then swap atomically.

    A broken bundle (corrupt ONNX, wrong input width, bad metadata, absurd predictions) is
    refused and the current model keeps serving.
    """
    bundle = Path(request.model_dir) if request and request.model_dir else None
    try:
        new, old = await state.manager.reload(bundle)
    except ReloadInProgressError as exc:
        raise HTTPException(409, str(exc)) from exc
    except BundleError as exc:
        raise HTTPException(
            422, f"model not reloaded, the previous one keeps serving: {exc}"
        ) from exc
    return ReloadResponse(
        status="reloaded",
        previous_version=old.metadata.version if old else None,
        model_version=new.metadata.version,
        model_dir=str(new.source),
    )
