"""What the detector's OpenAPI document says of its endpoints beyond their signatures.

The CloudEvents endpoint reads its body itself (three content modes, told apart by content type
and ``Ce-*`` headers), so FastAPI cannot infer the request from the signature: the request body,
headers and answers are declared here, as ``@router`` keyword arguments. The request schemas are
the app's own models (``serving.schemas``), with their ``$defs`` written in place.
"""

from __future__ import annotations

from typing import Any, Final

from winequality.serving.schemas import PredictRequest, inline_json_schema

CE_REQUEST: Final = "io.seldon.serving.inference.request"
CE_RESPONSE: Final = "io.seldon.serving.inference.response"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["detail"],
                    "properties": {"detail": {}},
                }
            }
        },
    }


_JSON_MEDIA_TYPE: Final = r"^[^;/]*/([^;]*\+)?[jJ][sS][oO][nN]\s*(;[\s\S]*)?$"
"""``*/json`` or ``*/*+json`` with parameters, as ``service._is_json_media_type`` reads it."""


def _payload() -> dict[str, Any]:
    """An app ``/predict`` body; other keys beside ``wines`` are ignored, not refused."""
    schema = inline_json_schema(PredictRequest)
    schema.pop("additionalProperties", None)
    return schema


def _structured_event() -> dict[str, Any]:
    """A JSON-format CloudEvent carrying an app ``/predict`` body as its ``data``."""
    return {
        "type": "object",
        "required": ["id", "source", "specversion", "type", "data"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "specversion": {"type": "string", "minLength": 1, "examples": ["1.0"]},
            "type": {"type": "string", "enum": [CE_REQUEST]},
            "datacontenttype": {"type": ["string", "null"], "pattern": _JSON_MEDIA_TYPE},
            "data": _payload(),
        },
    }


def _ce_header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": f"{description} (binary content mode only).",
        "schema": {"type": "string"},
    }


RECEIVE_EVENT: Final[dict[str, Any]] = {
    "responses": {
        200: {"description": "Applied: the events, their rows and the windows they closed."},
        400: _problem("Not a CloudEvent, not JSON, or a bad event of a batch (named)."),
        401: _problem("Missing or wrong bearer token (WINEQ_DRIFT_INGEST_TOKEN)."),
        413: _problem("Body too large."),
        415: _problem("A datacontenttype that is not JSON."),
        422: _problem("A request payload of unknown format or with invalid values (named)."),
        429: _problem("Over this caller's rate; see Retry-After."),
        503: _problem("No reference sample loaded yet."),
    },
    "openapi_extra": {
        "parameters": [
            _ce_header("ce-id", "Event id"),
            _ce_header("ce-specversion", "CloudEvents version"),
            _ce_header("ce-source", "Event source"),
            _ce_header("ce-type", f"{CE_REQUEST} or {CE_RESPONSE}"),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _payload(),
                    "description": "Binary mode: the request payload, Ce-* headers required.",
                },
                "application/cloudevents+json": {"schema": _structured_event()},
                "application/cloudevents-batch+json": {
                    "schema": {"type": "array", "items": _structured_event()}
                },
            },
        },
    },
}
"""Keyword arguments of ``POST /``."""

METRICS: Final[dict[str, Any]] = {
    "responses": {
        200: {
            "description": "Prometheus text exposition.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}
"""Keyword arguments of ``GET /metrics``."""

RELOAD_REFERENCE: Final[dict[str, Any]] = {
    "responses": {
        401: _problem("Missing or wrong bearer token, or reload disabled."),
        409: _problem("The new reference is unusable; the previous one is kept."),
    },
}
"""Keyword arguments of ``POST /reference/reload``."""

READY: Final[dict[str, Any]] = {
    "responses": {503: _problem("No reference loaded, or its threshold is being calibrated.")},
}
"""Keyword arguments of ``GET /health/ready``."""
