"""``POST /feedback``: the true quality of wines, by request id + index or as labelled rows.

Either ``{"request_id": "...", "index": 0, "quality": 6}`` (a wine the app scored recently: its
rows are remembered for the last ``recent_requests`` requests) or
``{"wines": [{...}], "quality": [6, ...]}``. Refusals use the prediction endpoints' error body
(each problem names the index, field and reason): 404 for an unknown or forgotten request id,
422 for anything invalid, 503 when the store cannot be written.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from winequality.contract.features import FeatureError
from winequality.feedback_store import validate_labelled_rows
from winequality.serving.schemas import (
    ErrorResponse,
    FeedbackByRequest,
    FeedbackResponse,
    FeedbackRows,
)
from winequality.serving.state import ServingState, StateDep
from winequality.serving.validation import Problem, RequestError, parse_json, wine_problems

log = logging.getLogger(__name__)

router = APIRouter(tags=["monitoring"])

_BY_REQUEST_KEYS = frozenset({"request_id", "index", "quality"})
_ROWS_KEYS = frozenset({"wines", "quality"})


def _error(exc: RequestError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type="application/json")


def _label_problems(problems: list[tuple[int, str, str]]) -> list[Problem]:
    """``validate_labelled_rows`` problems (row, field, reason) as API problems."""
    out = []
    for row, field, reason in problems:
        index = row if row >= 0 else None
        if field == "quality":
            loc: tuple[str | int, ...] = (
                ("body", "quality") if index is None else ("body", "quality", row)
            )
        else:
            loc = ("body", "wines") if index is None else ("body", "wines", row, field)
        out.append(Problem(loc, reason, "value_error", index, field))
    return out


def _extra_keys(doc: dict[str, Any], allowed: frozenset[str]) -> list[Problem]:
    return [
        Problem(
            ("body", str(k)),
            f"unknown field (accepted: {sorted(allowed)})",
            "extra_forbidden",
            None,
            str(k),
        )
        for k in doc
        if k not in allowed
    ]


async def _by_request(state: ServingState, doc: dict[str, Any]) -> tuple[int, str | None]:
    problems = _extra_keys(doc, _BY_REQUEST_KEYS)
    rid, index, quality = doc.get("request_id"), doc.get("index"), doc.get("quality")
    if type(rid) is not str or not rid:
        problems.append(
            Problem(
                ("body", "request_id"),
                "must be a non-empty string",
                "string_type",
                None,
                "request_id",
            )
        )
    if type(index) is not int or index < 0:
        problems.append(
            Problem(
                ("body", "index"),
                f"must be an integer >= 0, got {index!r}",
                "int_type",
                None,
                "index",
            )
        )
    if "quality" not in doc:
        problems.append(Problem(("body", "quality"), "field required", "missing", None, "quality"))
    if problems:
        raise RequestError(422, problems)
    assert isinstance(rid, str)
    assert isinstance(index, int)
    rows = state.recent.rows(rid)
    if rows is None:
        raise RequestError(
            404,
            [
                Problem(
                    ("body", "request_id"),
                    f"unknown or expired request id {rid!r} (the app remembers the last "
                    f"{state.settings.recent_requests} requests, fewer when they are large)",
                    "not_found",
                    None,
                    "request_id",
                )
            ],
        )
    if index >= len(rows):
        raise RequestError(
            422,
            [
                Problem(
                    ("body", "index"),
                    f"index {index} out of range: request {rid!r} had {len(rows)} wine(s)",
                    "out_of_range",
                    index,
                    "index",
                )
            ],
        )
    row = state.recent.row(rid, index)
    labels = validate_labelled_rows([row], [quality])
    if labels:
        raise RequestError(
            422,
            [
                Problem(("body", "quality"), reason, "value_error", index, field)
                for _, field, reason in labels
            ],
        )
    assert isinstance(quality, int | float)  # validate_labelled_rows accepted it
    stored = await state.feedback.add([row], [int(quality)], rid, [index])
    return stored, rid


async def _rows(state: ServingState, doc: dict[str, Any]) -> int:
    problems = _extra_keys(doc, _ROWS_KEYS)
    wines, quality = doc.get("wines"), doc.get("quality")
    limit = state.settings.max_batch_rows
    if type(wines) is not list or not 0 < len(wines) <= limit:
        problems.append(
            Problem(
                ("body", "wines"),
                f"must be an array of 1 to {limit} wines",
                "list_type",
                None,
                "wines",
            )
        )
    if type(quality) is not list:
        problems.append(
            Problem(
                ("body", "quality"),
                "must be an array with one label per wine",
                "list_type",
                None,
                "quality",
            )
        )
    if problems:
        raise RequestError(422, problems)
    assert isinstance(wines, list)
    assert isinstance(quality, list)
    problems = wine_problems(wines)
    if len(quality) != len(wines):
        problems.append(
            Problem(
                ("body", "quality"),
                f"{len(quality)} label(s) for {len(wines)} wine(s)",
                "length_mismatch",
                None,
                "quality",
            )
        )
    if problems:
        raise RequestError(422, problems)
    labels = validate_labelled_rows(wines, quality)
    if labels:
        raise RequestError(422, _label_problems(labels))
    return await state.feedback.add(wines, [int(q) for q in quality])


def _openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models taken from the OpenAPI components (Wine is
    one, through PredictRequest): pydantic's own ``#/$defs/...`` references do not resolve in
    the OpenAPI document (client generators and ReDoc fail on them)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown or forgotten request id."},
        413: {"model": ErrorResponse, "description": "Body too large."},
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
                            _openapi_schema(FeedbackByRequest),
                            _openapi_schema(FeedbackRows),
                        ]
                    }
                }
            },
        }
    },
)
async def feedback(request: Request, state: StateDep) -> Response:
    """Record the true quality of wines, for the next retraining.

    Name a wine the app scored (`request_id` from the prediction response, `index` of the wine
    in that request) or send the wines themselves with one integer `quality` (0-10) per wine.
    """
    try:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > state.settings.max_body_bytes:
            raise RequestError(
                413,
                [],
                f"request body exceeds {state.settings.max_body_bytes} bytes",
                "body_too_large",
            )
        body = await request.body()
        if len(body) > state.settings.max_body_bytes:
            raise RequestError(
                413,
                [],
                f"request body exceeds {state.settings.max_body_bytes} bytes",
                "body_too_large",
            )
        doc = parse_json(body)
        if type(doc) is not dict:
            raise RequestError(422, [Problem(("body",), "must be a JSON object", "object_type")])
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
                        ("body",),
                        "expected {request_id, index, quality} or {wines, quality}",
                        "missing",
                    )
                ],
            )
    except RequestError as exc:
        return _error(exc)
    except FeatureError as exc:
        return _error(RequestError(422, _label_problems(exc.problems)))
    except (sqlite3.Error, OSError) as exc:
        log.error("feedback store %s failed: %s", state.feedback.path, exc)
        return _error(
            RequestError(
                503, [], f"the feedback store cannot be written: {exc}", "store_unavailable"
            )
        )
    return JSONResponse(
        FeedbackResponse(stored=stored, request_id=rid).model_dump(), status_code=201
    )
