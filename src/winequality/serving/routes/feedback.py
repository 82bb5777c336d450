"""``POST /feedback``: the true quality of wines, by request id + index or as labelled rows.

Either ``{"request_id": "...", "index": 0, "quality": 6}`` (a wine the app scored recently: its
rows are remembered for the last ``recent_requests`` requests; the label is stored with the score
served for it and the model version, and enters that version's realized quality) or
``{"wines": [{...}], "quality": [6, ...]}``. Refusals use the prediction endpoints' error body
(each problem names the index, field and reason): 404 for an unknown or forgotten request id,
422 for anything invalid, 503 when the store cannot be written (nothing was stored: retry).

A request id is looked up in this process's recent cache first, then, when replicas share the
store, among the served rows the replicas wrote there (another replica answered it). A 201 is
sent only after the label is committed.

The request id is the one the app issued for the prediction (unguessable; a caller's
X-Request-ID never names a served row). A wine has one label: the same label again answers 200
with ``stored: 0`` (idempotent: a retried POST is harmless), another one 409 naming both.
Callers present ``WINEQ_FEEDBACK_TOKEN`` as a bearer token (401 otherwise) and stay under a
per-address rate (429 with Retry-After); both are checked before the body is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from winequality.contract.parsers import parse_json
from winequality.contract.problems import FeatureError, Problem
from winequality.feedback_store import LabelConflictError, ServedRequest, StoreError
from winequality.http_common import BodyError, read_request_body, set_token, token_dependency
from winequality.rate_limit import CallerLimiter, limit_dependency, set_limit
from winequality.serving.errors import RequestError
from winequality.serving.recent import matrix_row
from winequality.serving.schemas import (
    ErrorResponse,
    FeedbackByRequest,
    FeedbackResponse,
    FeedbackRows,
    inline_json_schema,
)
from winequality.serving.state import ServingState, StateDep
from winequality.settings import ServingSettings

log = logging.getLogger(__name__)

router = APIRouter(tags=["monitoring"])

TOKEN_NAME: Final = "feedback"  # noqa: S105 (the token's name, not a secret)


def install(app: FastAPI, settings: ServingSettings) -> None:
    """The route, with its token and per-caller limit; an open endpoint is logged."""
    app.include_router(router)
    set_token(
        app,
        settings.feedback_token,
        "set WINEQ_FEEDBACK_TOKEN",
        name=TOKEN_NAME,
        open_when_unset=True,
    )
    if not settings.feedback_token:
        log.warning(
            "WINEQ_FEEDBACK_TOKEN is not set: anyone who can reach POST /feedback can write "
            "training labels (acceptable in development only)"
        )
    set_limit(app, TOKEN_NAME, CallerLimiter(settings.feedback_rate_per_s, settings.feedback_burst))


# Built once at import; validation runs per feedback request, never on the prediction path.
# Strict: JSON types are taken as they are ("6" is not a quality, true is not an index).
_BY_REQUEST: Final = TypeAdapter(FeedbackByRequest)
_ROWS: Final = TypeAdapter(FeedbackRows)


RETRY_AFTER_S: Final = 5
"""What a 503 tells the client to wait before sending the label again."""


def _error(exc: RequestError) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
    return Response(
        exc.body(), status_code=exc.status, media_type="application/json", headers=headers
    )


def _problems(exc: ValidationError, quality_row: int | None = None) -> list[Problem]:
    """Pydantic's errors as the API's problems: the wine index is the first integer of the
    location, the field its last name. ``quality_row``: the wine a lone quality labels."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = ("body", *error["loc"])
        field = next((x for x in reversed(loc[1:]) if isinstance(x, str)), None)
        row = next((x for x in loc if isinstance(x, int)), None)
        if field == "quality" and row is None and error["type"] != "missing":
            row = quality_row
        problems.append(Problem(row, field, error["msg"], error["type"], loc))
    return problems


async def _served(state: ServingState, rid: str) -> ServedRequest | None:
    """What was served under ``rid``: here, else in the shared store (``StoreError`` when it
    cannot be read). A request another replica answered a moment ago may still wait in its
    writer's queue, or be on its way: more looks, for a linger and the lookup wait."""
    local = state.recent.get(rid)
    if local is not None or not state.feedback.shares_served_rows:
        return local
    settings = state.settings
    deadline = time.monotonic() + settings.served_rows_linger_s + settings.served_rows_lookup_wait_s
    pause = 0.1
    found = await state.feedback.served(rid)
    while found is None and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(pause, left))
        pause *= 2
        found = await state.feedback.served(rid)
    return found


async def _by_request(state: ServingState, doc: dict[str, Any]) -> tuple[int, str | None]:
    index = doc.get("index")
    try:
        body = _BY_REQUEST.validate_python(doc, strict=True)
    except ValidationError as exc:
        wine = index if type(index) is int and index >= 0 else None
        raise RequestError(422, _problems(exc, wine)) from None
    rid, index = body.request_id, body.index
    served = await _served(state, rid)
    if served is None:
        shared = (
            f", nor among the requests the replicas served in the last "
            f"{state.settings.served_rows_retention_s:.0f} s"
            if state.feedback.shares_served_rows
            else ""
        )
        raise RequestError(
            404,
            [
                Problem(
                    None,
                    "request_id",
                    f"unknown or expired request id {rid!r} (the app remembers the last "
                    f"{state.settings.recent_requests} requests, fewer when they are large"
                    f"{shared})",
                    "not_found",
                    ("body", "request_id"),
                )
            ],
        )
    rows = served.rows
    if index >= len(rows):
        raise RequestError(
            422,
            [
                Problem(
                    index,
                    "index",
                    f"index {index} out of range: request {rid!r} had {len(rows)} wine(s)",
                    "out_of_range",
                    ("body", "index"),
                )
            ],
        )
    score: float | None = None
    version = served.model_version
    if served.quality is not None and version is not None and index < len(served.quality):
        score = float(served.quality[index])
    stored = await state.feedback.add(
        [matrix_row(rows, index)],
        [body.quality],
        rid,
        [index],
        served=None if score is None else [score],
        model_version=version,
    )
    if stored and score is not None and version is not None:  # a repeated label adds nothing
        state.quality.observe(version, [float(body.quality)], [score])
    return stored, rid


async def _rows(state: ServingState, doc: dict[str, Any]) -> int:
    try:
        body = _ROWS.validate_python(doc, strict=True)
    except ValidationError as exc:
        raise RequestError(422, _problems(exc)) from None
    limit = state.settings.max_batch_rows
    problems = []
    if len(body.wines) > limit:
        problems.append(
            Problem(
                None,
                "wines",
                f"must be an array of 1 to {limit} wines",
                "too_long",
                ("body", "wines"),
            )
        )
    if len(body.quality) != len(body.wines):
        problems.append(
            Problem(
                None,
                "quality",
                f"{len(body.quality)} label(s) for {len(body.wines)} wine(s)",
                "length_mismatch",
                ("body", "quality"),
            )
        )
    if problems:
        raise RequestError(422, problems)
    return await state.feedback.add([w.model_dump() for w in body.wines], body.quality)


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    responses={
        200: {"model": FeedbackResponse, "description": "The same label again: nothing new."},
        401: {"description": "Missing or invalid bearer token (`WINEQ_FEEDBACK_TOKEN`)."},
        404: {"model": ErrorResponse, "description": "Unknown or forgotten request id."},
        409: {"model": ErrorResponse, "description": "The wine already has another label."},
        429: {"description": "Over this caller's rate; see Retry-After."},
        413: {"model": ErrorResponse, "description": "Body too large."},
        415: {"model": ErrorResponse, "description": "Content type is not application/json."},
        422: {"model": ErrorResponse, "description": "Invalid body: index, field and reason."},
        503: {"model": ErrorResponse, "description": "The feedback store cannot be written."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            inline_json_schema(FeedbackByRequest),
                            inline_json_schema(FeedbackRows),
                        ]
                    }
                }
            },
        }
    },
    dependencies=[Depends(token_dependency(TOKEN_NAME)), Depends(limit_dependency(TOKEN_NAME))],
)
async def feedback(request: Request, state: StateDep) -> Response:
    """Record the true quality of wines, for the next retraining.

    Name a wine the app scored (`request_id` from the prediction response, `index` of the wine
    in that request) or send the wines themselves with one integer `quality` (0-10) per wine.
    """
    try:
        try:
            body = await read_request_body(request, state.settings.max_body_bytes)
        except BodyError as exc:
            raise RequestError(exc.status, [], exc.message, exc.reason) from exc
        doc = parse_json(body)
        if type(doc) is not dict:
            raise RequestError(
                422, [Problem(None, None, "must be a JSON object", "object_type", ("body",))]
            )
        rid: str | None = None
        if "request_id" in doc:
            stored, rid = await _by_request(state, doc)
        elif "wines" in doc:
            stored = await _rows(state, doc)
        else:
            raise RequestError(
                422,
                [
                    Problem(
                        None,
                        None,
                        "expected {request_id, index, quality} or {wines, quality}",
                        "missing",
                        ("body",),
                    )
                ],
            )
    except RequestError as exc:
        return _error(exc)
    except FeatureError as exc:  # invalid JSON, or rows the store refused
        return _error(RequestError.invalid(exc))
    except LabelConflictError as exc:
        problem = Problem(exc.index, "quality", str(exc), "label_conflict", ("body", "quality"))
        return _error(RequestError(409, [problem], str(exc), "label_conflict"))
    except StoreError as exc:  # the database is down, locked or unwritable
        log.error("feedback not stored: %s", exc)
        why = f"the feedback store cannot be written, nothing was stored (retry later): {exc}"
        problem = Problem(None, None, why, "store_unavailable", ("body",))
        return _error(RequestError(503, [problem], why))
    return JSONResponse(
        FeedbackResponse(stored=stored, request_id=rid).model_dump(),
        status_code=201 if stored else 200,
    )
