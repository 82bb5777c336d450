"""``POST /admin/reload``: hot-swap the model, authenticated with a bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, Request
from pydantic import TypeAdapter, ValidationError

from winequality.http_common import BodyError, TokenDep, read_request_body
from winequality.inference.predictor import BundleError
from winequality.serving.model import ReloadInProgressError
from winequality.serving.schemas import ReloadRequest, ReloadResponse
from winequality.serving.state import StateDep

router = APIRouter(prefix="/admin", tags=["admin"])

MAX_RELOAD_BODY: Final = 16_384
"""A reload body names one directory."""
_RELOAD_MEDIA_TYPES: Final = frozenset({b"application/json", None})
"""The body is optional, and a client that sends none often sends no content type either."""
_BODY: Final = TypeAdapter(ReloadRequest)
"""No body, or an object: a JSON ``null`` is neither (the schema says object)."""


@router.post(
    "/reload",
    responses={
        401: {"description": "Missing or wrong bearer token, or reload disabled."},
        409: {"description": "Another reload is in progress."},
        413: {"description": "Body too large."},
        415: {"description": "Content type is not application/json."},
        422: {"description": "Invalid body, or the bundle is broken (the previous model serves)."},
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": ReloadRequest.model_json_schema()}},
        }
    },
)
async def reload(request: Request, state: StateDep, _: TokenDep) -> ReloadResponse:
    """Load a bundle beside the current model, check it, then swap atomically.

    A broken bundle (corrupt ONNX, wrong input width, bad metadata, absurd predictions) is
    refused and the current model keeps serving.
    """
    # The body is read here, after TokenDep: an unauthenticated client cannot make us read it.
    try:
        raw = await read_request_body(request, MAX_RELOAD_BODY, _RELOAD_MEDIA_TYPES)
        body = _BODY.validate_json(raw) if raw.strip() else None
    except BodyError as exc:
        raise HTTPException(exc.status, exc.message) from exc
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise HTTPException(422, [{**e, "loc": ["body", *e["loc"]]} for e in errors]) from exc
    if body and body.model_dir and "\x00" in body.model_dir:
        # No file system call takes a NUL byte: refused here, naming the field.
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "model_dir"],
                    "msg": "must not contain a NUL byte",
                    "type": "value_error",
                }
            ],
        )
    bundle = Path(body.model_dir) if body and body.model_dir else None
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
