"""Hostile and broken requests to every endpoint of the app, the detector and the webhook, sent
over loopback to the services as deployed: each gets a 4xx whose JSON body names the field or
the reason, with an X-Request-ID, and never a 5xx.

The table is the point: one row per bad input (body, header, content type, CloudEvent, V2 binary
section). A row says which service, what is sent, which status is expected (any 4xx when
``status`` is None) and a word the answer must contain (the field or the reason).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.services import (
    APP_TOKEN,
    FEEDBACK_TOKEN,
    INGEST_TOKEN,
    WEBHOOK_TOKEN,
    Service,
)

from winequality import artifacts
from winequality.contract import schema
from winequality.serving.schemas import example_wine

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
OCTET = {"content-type": "application/octet-stream"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
CE_REQUEST = "io.seldon.serving.inference.request"
CE_HEADERS = {
    "ce-id": "1",
    "ce-specversion": "1.0",
    "ce-source": "hostile",
    "ce-type": CE_REQUEST,
    **JSON,
}
INFER = f"/v2/models/{schema.MODEL_NAME}/infer"
DEEP = b"[" * 100_000 + b"]" * 100_000
"""Nesting far past any JSON parser's recursion limit."""
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# --- valid bodies, to break one part at a time ---------------------------------------------


def v2_json(**changes: Any) -> dict[str, Any]:
    """A valid one-row V2 request; ``changes`` replace fields of its first tensor."""
    inputs: list[dict[str, Any]] = [
        {"name": f.name, "shape": [1, 1], "datatype": "FP32", "data": [f.example]}
        for f in schema.FEATURES
    ]
    inputs.append({"name": schema.WINE_TYPE, "shape": [1, 1], "datatype": "BYTES", "data": ["red"]})
    inputs[0] |= changes
    return {"id": "hostile", "inputs": inputs}


def v2_binary(
    tamper: Callable[[list[dict[str, Any]], bytearray], None] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A valid one-row request in Triton's binary tensor data extension (what tritonclient
    sends), after ``tamper`` changed its JSON header tensors or its raw bytes."""
    inputs: list[dict[str, Any]] = []
    raw = bytearray()
    for f in schema.FEATURES:
        inputs.append(
            {
                "name": f.name,
                "shape": [1, 1],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 4},
            }
        )
        raw += struct.pack("<f", f.example)
    element = b"red"
    inputs.append(
        {
            "name": schema.WINE_TYPE,
            "shape": [1, 1],
            "datatype": "BYTES",
            "parameters": {"binary_data_size": 4 + len(element)},
        }
    )
    raw += struct.pack("<I", len(element)) + element
    if tamper is not None:
        tamper(inputs, raw)
    header = dumps({"inputs": inputs})
    headers = {**OCTET, "inference-header-content-length": str(len(header))}
    return header + bytes(raw), headers


def feedback_rows(**changes: Any) -> dict[str, Any]:
    return {"wines": [example_wine()], "quality": [6]} | changes


def cloudevent(**changes: Any) -> dict[str, Any]:
    event = {
        "id": "1",
        "source": "hostile",
        "specversion": "1.0",
        "type": CE_REQUEST,
        "datacontenttype": "application/json",
        "data": {"wines": [example_wine()]},
    }
    return {k: v for k, v in (event | changes).items() if v is not ...}


def alert(**changes: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "retrain",
        "alerts": [{"status": "firing", "labels": {"alertname": "SomethingElse"}}],
    } | changes


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    service: str
    """app, detector or webhook."""
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    """Expected status; None: any 4xx."""
    mentions: str = ""
    """A word the answer's text must contain: the field or the reason named."""
    method: str = "POST"


def _bin(tamper: Callable[[list[dict[str, Any]], bytearray], None]) -> dict[str, Any]:
    body, headers = v2_binary(tamper)
    return {"body": body, "headers": headers}


def _set_param(i: int, key: str, value: Any) -> Callable[[list[dict[str, Any]], bytearray], None]:
    def tamper(inputs: list[dict[str, Any]], _: bytearray) -> None:
        inputs[i][key] = value

    return tamper


def _set_size(i: int, value: Any) -> Callable[[list[dict[str, Any]], bytearray], None]:
    def tamper(inputs: list[dict[str, Any]], _: bytearray) -> None:
        inputs[i]["parameters"]["binary_data_size"] = value

    return tamper


def _append(extra: bytes) -> Callable[[list[dict[str, Any]], bytearray], None]:
    def tamper(_: list[dict[str, Any]], raw: bytearray) -> None:
        raw += extra

    return tamper


def _bad_bytes_element(_: list[dict[str, Any]], raw: bytearray) -> None:
    raw[-3:] = b"\xff\xfe\xfd"


def _truncated_bytes_length(inputs: list[dict[str, Any]], raw: bytearray) -> None:
    del raw[-7:]
    inputs[-1]["parameters"]["binary_data_size"] = 0
    raw += b"\x01\x00"
    inputs[-1]["parameters"]["binary_data_size"] = 2


WINE = example_wine()
A = "app"
D = "detector"
W = "webhook"
ADMIN = bearer(APP_TOKEN)
HOOK = bearer(WEBHOOK_TOKEN)

CASES: list[Case] = [
    # --- POST /predict ---
    Case("predict-not-json", A, "/predict", b"{", JSON, status=422, mentions="json_invalid"),
    Case("predict-empty", A, "/predict", b"", JSON, status=422),
    Case("predict-not-utf8", A, "/predict", b"\xff\xfe{}", JSON, status=422),
    Case("predict-array", A, "/predict", b"[]", JSON, status=422, mentions="body"),
    Case("predict-null", A, "/predict", b"null", JSON, status=422),
    Case("predict-wines-string", A, "/predict", dumps({"wines": "x"}), JSON, 422, "wines"),
    Case("predict-wines-empty", A, "/predict", dumps({"wines": []}), JSON, 422, "wines"),
    Case("predict-deep", A, "/predict", DEEP, JSON, status=422, mentions="json"),
    Case("predict-nan-literal", A, "/predict", b'{"wines":[{"alcohol":NaN}]}', JSON, 422),
    Case("predict-overflow", A, "/predict",
         b'{"wines":[' + dumps(WINE)[:-1] + b',"alcohol":1e999}]}', JSON, 422),
    Case("predict-field-list", A, "/predict", dumps({"wines": [WINE | {"alcohol": [1]}]}),
         JSON, 422, "alcohol"),
    Case("predict-field-object", A, "/predict", dumps({"wines": [WINE | {"alcohol": {}}]}),
         JSON, 422, "alcohol"),
    Case("predict-field-bool", A, "/predict", dumps({"wines": [WINE | {"pH": True}]}),
         JSON, 422, "pH"),
    Case("predict-field-string", A, "/predict", dumps({"wines": [WINE | {"pH": "3.2"}]}),
         JSON, 422, "pH"),
    Case("predict-out-of-range", A, "/predict", dumps({"wines": [WINE | {"pH": 99.0}]}),
         JSON, 422, "pH"),
    Case("predict-wine-type", A, "/predict", dumps({"wines": [WINE | {"wine_type": "rosé"}]}),
         JSON, 422, "wine_type"),
    Case("predict-wine-type-object", A, "/predict",
         dumps({"wines": [WINE | {"wine_type": {"a": 1}}]}), JSON, 422, "wine_type"),
    Case("predict-extra-field", A, "/predict", dumps({"wines": [WINE | {"x": 1}]}),
         JSON, 422, "x"),
    Case("predict-nul-key", A, "/predict", dumps({"wines": [WINE | {"\u0000": 1}]}), JSON, 422),
    Case("predict-too-many-rows", A, "/predict", dumps({"wines": [WINE] * 10_001}),
         JSON, mentions="wines"),
    Case("predict-text-plain", A, "/predict", dumps({"wines": [WINE]}),
         {"content-type": "text/plain"}, 415, "content-type"),
    Case("predict-no-content-type", A, "/predict", dumps({"wines": [WINE]}), {}, 415),
    Case("predict-form", A, "/predict", b"wines=1",
         {"content-type": "application/x-www-form-urlencoded"}, 415),
    Case("predict-declared-too-large", A, "/predict", b" " * 5_000_000, JSON, 413, "exceeds"),
    Case("predict-get", A, "/predict", method="GET", status=405),
    # --- POST /v2/models/wine-quality/infer, JSON ---
    Case("v2-not-json", A, INFER, b"{", JSON, 422, "json"),
    Case("v2-array", A, INFER, b"[]", JSON, 422, "object"),
    Case("v2-inputs-missing", A, INFER, dumps({}), JSON, 422, "inputs"),
    Case("v2-inputs-object", A, INFER, dumps({"inputs": {}}), JSON, 422, "inputs"),
    Case("v2-id-number", A, INFER, dumps(v2_json() | {"id": 5}), JSON, 422, "id"),
    Case("v2-name-list", A, INFER, dumps(v2_json(name=["alcohol"])), JSON, 422, "name"),
    Case("v2-name-object", A, INFER, dumps(v2_json(name={"a": 1})), JSON, 422, "name"),
    Case("v2-name-null", A, INFER, dumps(v2_json(name=None)), JSON, 422, "name"),
    Case("v2-datatype-list", A, INFER, dumps(v2_json(datatype=["FP32"])), JSON, 422, "datatype"),
    Case("v2-datatype-object", A, INFER, dumps(v2_json(datatype={})), JSON, 422, "datatype"),
    Case("v2-datatype-int", A, INFER, dumps(v2_json(datatype="INT8")), JSON, 422, "datatype"),
    Case("v2-parameters-list", A, INFER, dumps(v2_json(parameters=[1])), JSON, 422,
         "parameters"),
    Case("v2-parameters-string", A, INFER, dumps(v2_json(parameters="x")), JSON, 422,
         "parameters"),
    Case("v2-top-parameters-list", A, INFER, dumps(v2_json() | {"parameters": [[]]}), JSON, 422,
         "parameters"),
    Case("v2-shape-string", A, INFER, dumps(v2_json(shape="1")), JSON, 422, "shape"),
    Case("v2-shape-negative", A, INFER, dumps(v2_json(shape=[-1])), JSON, 422, "shape"),
    Case("v2-shape-float", A, INFER, dumps(v2_json(shape=[1.5])), JSON, 422, "shape"),
    Case("v2-shape-huge", A, INFER, dumps(v2_json(shape=[10**30])), JSON, 422, "shape"),
    Case("v2-data-object", A, INFER, dumps(v2_json(data={"a": 1})), JSON, 422, "data"),
    Case("v2-data-strings", A, INFER, dumps(v2_json(data=["x"])), JSON, 422),
    Case("v2-data-nested-wrong", A, INFER, dumps(v2_json(data=[[1, 2]])), JSON, 422, "data"),
    Case("v2-duplicate", A, INFER,
         dumps({"inputs": [*v2_json()["inputs"], v2_json()["inputs"][0]]}), JSON, 422, "dupl"),
    Case("v2-outputs-object", A, INFER, dumps(v2_json() | {"outputs": {}}), JSON, 422, "outputs"),
    Case("v2-outputs-name-list", A, INFER, dumps(v2_json() | {"outputs": [{"name": ["q"]}]}),
         JSON, 422, "output"),
    Case("v2-outputs-unknown", A, INFER, dumps(v2_json() | {"outputs": [{"name": "x"}]}),
         JSON, 422, "output"),
    Case("v2-text-plain", A, INFER, dumps(v2_json()), {"content-type": "text/plain"}, 415),
    # --- V2 infer, binary tensor data extension ---
    Case("v2bin-length-not-number", A, INFER, b"{}",
         {**OCTET, "inference-header-content-length": "abc"}, 422, "inference-header"),
    Case("v2bin-length-too-large", A, INFER, b"{}",
         {**OCTET, "inference-header-content-length": "99999"}, 422, "inference-header"),
    Case("v2bin-length-zero", A, INFER, b"{}",
         {**OCTET, "inference-header-content-length": "0"}, 422, "inference-header"),
    Case("v2bin-length-negative", A, INFER, b"{}",
         {**OCTET, "inference-header-content-length": "-5"}, 422, "inference-header"),
    Case("v2bin-header-not-json", A, INFER, b"\xff\xfe\x00\x01",
         {**OCTET, "inference-header-content-length": "2"}, 422, "json"),
    Case("v2bin-size-negative", A, INFER, **_bin(_set_size(0, -4)), status=422,
         mentions="binary"),
    Case("v2bin-size-string", A, INFER, **_bin(_set_size(0, "4")), status=422, mentions="binary"),
    Case("v2bin-size-list", A, INFER, **_bin(_set_size(0, [4])), status=422, mentions="binary"),
    Case("v2bin-size-huge", A, INFER, **_bin(_set_size(0, 10**12)), status=422,
         mentions="binary"),
    Case("v2bin-size-not-multiple", A, INFER, **_bin(_set_size(0, 3)), status=422),
    Case("v2bin-name-list", A, INFER, **_bin(_set_param(0, "name", ["alcohol"])), status=422,
         mentions="name"),
    Case("v2bin-name-object", A, INFER, **_bin(_set_param(0, "name", {})), status=422,
         mentions="name"),
    Case("v2bin-datatype-list", A, INFER, **_bin(_set_param(0, "datatype", ["FP32"])),
         status=422, mentions="datatype"),
    Case("v2bin-datatype-object", A, INFER, **_bin(_set_param(0, "datatype", {})), status=422,
         mentions="datatype"),
    Case("v2bin-parameters-list", A, INFER, **_bin(_set_param(0, "parameters", [4])),
         status=422),
    Case("v2bin-parameters-string", A, INFER, **_bin(_set_param(0, "parameters", "x")),
         status=422),
    Case("v2bin-trailing-bytes", A, INFER, **_bin(_append(b"\x00" * 7)), status=422,
         mentions="trailing"),
    Case("v2bin-bytes-not-utf8", A, INFER, **_bin(_bad_bytes_element), status=422,
         mentions="wine_type"),
    Case("v2bin-bytes-truncated", A, INFER, **_bin(_truncated_bytes_length), status=422,
         mentions="truncated"),
    # --- POST /feedback ---
    Case("feedback-not-json", A, "/feedback", b"{", JSON, 422, "json"),
    Case("feedback-array", A, "/feedback", b"[1]", JSON, 422, "object"),
    Case("feedback-neither", A, "/feedback", dumps({"x": 1}), JSON, 422, "request_id"),
    Case("feedback-deep", A, "/feedback", DEEP, JSON, status=422),
    Case("feedback-rid-number", A, "/feedback",
         dumps({"request_id": 5, "index": 0, "quality": 6}), JSON, 422, "request_id"),
    Case("feedback-rid-list", A, "/feedback",
         dumps({"request_id": ["a"], "index": 0, "quality": 6}), JSON, 422, "request_id"),
    Case("feedback-rid-unknown", A, "/feedback",
         dumps({"request_id": "nope", "index": 0, "quality": 6}), JSON, 404, "request_id"),
    Case("feedback-rid-nul", A, "/feedback",
         dumps({"request_id": "a\u0000b", "index": 0, "quality": 6}), JSON, None, "request_id"),
    Case("feedback-index-negative", A, "/feedback",
         dumps({"request_id": "a", "index": -1, "quality": 6}), JSON, 422, "index"),
    Case("feedback-index-bool", A, "/feedback",
         dumps({"request_id": "a", "index": True, "quality": 6}), JSON, 422, "index"),
    Case("feedback-index-huge", A, "/feedback",
         dumps({"request_id": "a", "index": 10**40, "quality": 6}), JSON, None, "index"),
    Case("feedback-quality-string", A, "/feedback",
         dumps({"request_id": "a", "index": 0, "quality": "6"}), JSON, 422, "quality"),
    Case("feedback-quality-11", A, "/feedback", dumps(feedback_rows(quality=[11])),
         JSON, 422, "quality"),
    Case("feedback-quality-object", A, "/feedback", dumps(feedback_rows(quality={})),
         JSON, 422, "quality"),
    Case("feedback-length-mismatch", A, "/feedback", dumps(feedback_rows(quality=[6, 7])),
         JSON, 422, "quality"),
    Case("feedback-wines-object", A, "/feedback", dumps(feedback_rows(wines={})),
         JSON, 422, "wines"),
    Case("feedback-wine-field-list", A, "/feedback",
         dumps(feedback_rows(wines=[WINE | {"pH": [1]}])), JSON, 422, "pH"),
    Case("feedback-extra", A, "/feedback", dumps(feedback_rows(x=1)), JSON, 422, "x"),
    Case("feedback-too-many", A, "/feedback",
         dumps(feedback_rows(wines=[WINE] * 10_001, quality=[6] * 10_001)), JSON, 422, "wines"),
    Case("feedback-text-plain", A, "/feedback", b"{}", {"content-type": "text/plain"}, 415),
    Case("feedback-declared-too-large", A, "/feedback", b" " * 5_000_000, JSON, 413, "exceeds"),
    # --- POST /admin/reload ---
    Case("reload-no-token", A, "/admin/reload", b"{}", JSON, 401, "missing_token"),
    Case("reload-wrong-token", A, "/admin/reload", b"{}", {**JSON, **bearer("x")}, 401,
         "invalid_token"),
    Case("reload-basic-auth", A, "/admin/reload", b"{}",
         {**JSON, "authorization": "Basic YTpi"}, 401, "token"),
    Case("reload-empty-bearer", A, "/admin/reload", b"{}",
         {**JSON, "authorization": "Bearer "}, 401, "token"),
    Case("reload-token-non-ascii", A, "/admin/reload", b"{}",
         {**JSON, "authorization": "Bearer h\u00e9"}, 401, "token"),
    Case("reload-token-blank", A, "/admin/reload", b"{}", {**JSON, "authorization": " "}, 401,
         "token"),
    Case("reload-not-json", A, "/admin/reload", b"{", {**JSON, **ADMIN}, 422, "json"),
    Case("reload-array", A, "/admin/reload", b"[]", {**JSON, **ADMIN}, 422),
    Case("reload-dir-number", A, "/admin/reload", dumps({"model_dir": 5}), {**JSON, **ADMIN},
         422, "model_dir"),
    Case("reload-dir-list", A, "/admin/reload", dumps({"model_dir": ["a"]}), {**JSON, **ADMIN},
         422, "model_dir"),
    Case("reload-dir-nul", A, "/admin/reload", dumps({"model_dir": "/tmp/a\u0000b"}),
         {**JSON, **ADMIN}, 422, "model_dir"),
    Case("reload-dir-long", A, "/admin/reload", dumps({"model_dir": "/" + "a" * 12_000}),
         {**JSON, **ADMIN}, 422, "not a usable path"),
    Case("reload-dir-100k", A, "/admin/reload", dumps({"model_dir": "/" + "a" * 100_000}),
         {**JSON, **ADMIN}, 413, "exceeds"),
    Case("reload-dir-component-long", A, "/admin/reload", dumps({"model_dir": "/" + "b" * 300}),
         {**JSON, **ADMIN}, 422, "model not reloaded"),
    Case("reload-dir-missing", A, "/admin/reload", dumps({"model_dir": "/no/such/bundle"}),
         {**JSON, **ADMIN}, 422, "not a directory"),
    Case("reload-dir-file", A, "/admin/reload", dumps({"model_dir": "/etc/hostname"}),
         {**JSON, **ADMIN}, 422, "not a directory"),
    Case("reload-dir-not-bundle", A, "/admin/reload", dumps({"model_dir": "/etc"}),
         {**JSON, **ADMIN}, 422, "model not reloaded"),
    Case("reload-extra", A, "/admin/reload", dumps({"x": 1}), {**JSON, **ADMIN}, 422, "x"),
    Case("reload-text-plain", A, "/admin/reload", b"{}",
         {"content-type": "text/plain", **ADMIN}, 415),
    Case("reload-get", A, "/admin/reload", method="GET", status=405),
    # --- GET endpoints of the app: wrong methods, odd paths and queries ---
    Case("app-health-post", A, "/health/live", b"{}", JSON, 405),
    Case("app-ready-post", A, "/health/ready", b"{}", JSON, 405),
    Case("app-v2-ready-delete", A, "/v2/health/ready", method="DELETE", status=405),
    Case("app-metrics-post", A, "/metrics", b"x", JSON, 405),
    Case("app-docs-post", A, "/docs", b"x", JSON, 405),
    Case("app-metadata-put", A, "/metadata", b"x", JSON, 405),
    Case("app-unknown-path", A, "/../../etc/passwd", method="GET", status=404),
    Case("app-unknown-model", A, "/v2/models/other/infer", dumps(v2_json()), JSON, 404),
    Case("app-docs-assets-traversal", A, "/docs/assets/..%2f..%2fapp.py", method="GET",
         status=404),
    Case("app-long-path", A, "/" + "x" * 8000, method="GET", status=404),
    # --- the detector: POST / (CloudEvents) ---
    Case("ce-no-headers", D, "/", dumps({"wines": [WINE]}), JSON, 400, "ce-"),
    Case("ce-text-plain", D, "/", b"hello", {"content-type": "text/plain"}, 400, "ce-"),
    Case("ce-unknown-type", D, "/", dumps({"wines": [WINE]}), {**CE_HEADERS, "ce-type": "x"},
         400, "Ce-Type"),
    Case("ce-binary-not-json", D, "/", b"{", CE_HEADERS, 400, "JSON"),
    Case("ce-binary-not-utf8", D, "/", b"\xff\xfe", CE_HEADERS, 400, "JSON"),
    Case("ce-binary-deep", D, "/", DEEP, CE_HEADERS, 400, "JSON"),
    Case("ce-binary-array", D, "/", b"[]", CE_HEADERS, 422, "object"),
    Case("ce-binary-unknown-format", D, "/", dumps({"x": 1}), CE_HEADERS, 422, "format"),
    Case("ce-binary-wines-string", D, "/", dumps({"wines": "x"}), CE_HEADERS, 422, "wines"),
    Case("ce-binary-bad-value", D, "/", dumps({"wines": [WINE | {"pH": "x"}]}), CE_HEADERS,
         422, "pH"),
    Case("ce-binary-nan", D, "/", b'{"wines":[{"pH":NaN}]}', CE_HEADERS, 400, "JSON"),
    Case("ce-binary-v2-name-list", D, "/", dumps(v2_json(name=["alcohol"])), CE_HEADERS, 422),
    Case("ce-binary-v2-datatype-object", D, "/", dumps(v2_json(datatype={})), CE_HEADERS, 422),
    Case("ce-binary-seldon-names-object", D, "/",
         dumps({"data": {"names": {"a": 1}, "ndarray": [[1]]}}), CE_HEADERS, 422),
    Case("ce-binary-seldon-ndarray-object", D, "/",
         dumps({"data": {"names": ["a"], "ndarray": {"a": 1}}}), CE_HEADERS, 422),
    Case("ce-declared-too-large", D, "/", b" " * 40_000_000, CE_HEADERS, 413, "exceeds"),
    Case("ce-structured-not-object", D, "/", b"[1]", STRUCTURED, 400, "object"),
    Case("ce-structured-missing-attrs", D, "/", dumps({"data": {}}), STRUCTURED, 400,
         "attributes"),
    Case("ce-structured-attr-number", D, "/", dumps(cloudevent(id=1)), STRUCTURED, 400, "id"),
    Case("ce-structured-type-list", D, "/", dumps(cloudevent(type=[CE_REQUEST])), STRUCTURED,
         400, "type"),
    Case("ce-structured-unknown-type", D, "/", dumps(cloudevent(type="x")), STRUCTURED, 400,
         "type"),
    Case("ce-structured-no-data", D, "/", dumps(cloudevent(data=...)), STRUCTURED, 422, "data"),
    Case("ce-structured-content-type", D, "/",
         dumps(cloudevent(datacontenttype="text/plain")), STRUCTURED, 415, "datacontenttype"),
    Case("ce-structured-content-type-number", D, "/", dumps(cloudevent(datacontenttype=5)),
         STRUCTURED, 415, "datacontenttype"),
    Case("ce-structured-base64-non-ascii", D, "/",
         dumps(cloudevent(data=..., data_base64="é")), STRUCTURED, 400, "data_base64"),
    Case("ce-structured-base64-non-ascii-valid-chars", D, "/",
         dumps(cloudevent(data=..., data_base64="eyJ3aW5lcyI6W119\u00e9")), STRUCTURED, 400,
         "data_base64"),
    Case("ce-structured-base64-invalid", D, "/", dumps(cloudevent(data=..., data_base64="@@")),
         STRUCTURED, 400, "data_base64"),
    Case("ce-structured-base64-number", D, "/", dumps(cloudevent(data=..., data_base64=5)),
         STRUCTURED, 400, "data_base64"),
    Case("ce-structured-base64-not-json", D, "/",
         dumps(cloudevent(data=..., data_base64=base64.b64encode(b"\xff{").decode())),
         STRUCTURED, 400, "data_base64"),
    Case("ce-structured-data-string", D, "/", dumps(cloudevent(data="x")), STRUCTURED, 422),
    Case("ce-structured-data-bad-value", D, "/",
         dumps(cloudevent(data={"wines": [WINE | {"alcohol": [1]}]})), STRUCTURED, 422,
         "alcohol"),
    Case("ce-structured-deep", D, "/", DEEP, STRUCTURED, 400, "JSON"),
    Case("ce-structured-not-json", D, "/", b"\x00", STRUCTURED, 400, "JSON"),
    Case("ce-batch-not-array", D, "/", dumps(cloudevent()), BATCH, 400, "array"),
    Case("ce-batch-numbers", D, "/", b"[1, 2]", BATCH, 400, "object"),
    Case("ce-batch-one-bad", D, "/", dumps([cloudevent(), cloudevent(id="")]), BATCH, 400,
         "[1]"),
    Case("ce-batch-mixed-specversion", D, "/",
         dumps([cloudevent(), cloudevent(specversion="0.3")]), BATCH, 400, "specversion"),
    Case("ce-batch-specversion-object", D, "/",
         dumps([cloudevent(specversion={}), cloudevent()]), BATCH, 400, "specversion"),
    Case("ce-batch-base64-non-ascii", D, "/",
         dumps([cloudevent(), cloudevent(data=..., data_base64="ü")]), BATCH, 400,
         "data_base64"),
    Case("ce-batch-bad-rows", D, "/",
         dumps([cloudevent(), cloudevent(data={"wines": [WINE | {"pH": None}]})]), BATCH, 422,
         "pH"),
    Case("ce-batch-deep", D, "/", DEEP, BATCH, 400, "JSON"),
    Case("ce-reload-no-token", D, "/reference/reload", b"", {}, 401, "missing_token"),
    Case("ce-reload-wrong-token", D, "/reference/reload", b"", bearer("x"), 401,
         "invalid_token"),
    Case("ce-drift-post", D, "/drift", b"{}", JSON, 405),
    Case("ce-metrics-post", D, "/metrics", b"{}", JSON, 405),
    Case("ce-get-root", D, "/", method="GET", status=405),
    Case("ce-unknown-path", D, "/nope", method="GET", status=404),
    # --- the webhook: POST /alerts, GET /status ---
    Case("alerts-no-token", W, "/alerts", dumps(alert()), JSON, 401, "missing_token"),
    Case("alerts-wrong-token", W, "/alerts", dumps(alert()), {**JSON, **bearer("x")}, 401,
         "invalid_token"),
    Case("alerts-not-json", W, "/alerts", b"{", {**JSON, **HOOK}, 422, "json"),
    Case("alerts-not-utf8", W, "/alerts", b"\xff", {**JSON, **HOOK}, 422),
    Case("alerts-deep", W, "/alerts", DEEP[:200_000] + DEEP[-200_000:], {**JSON, **HOOK}, None),
    Case("alerts-array", W, "/alerts", b"[]", {**JSON, **HOOK}, 422),
    Case("alerts-missing-version", W, "/alerts", dumps({"status": "firing", "alerts": []}),
         {**JSON, **HOOK}, 422, "version"),
    Case("alerts-status-bogus", W, "/alerts", dumps(alert(status="on fire")), {**JSON, **HOOK},
         422, "status"),
    Case("alerts-alerts-object", W, "/alerts", dumps(alert(alerts={})), {**JSON, **HOOK}, 422,
         "alerts"),
    Case("alerts-labels-numbers", W, "/alerts",
         dumps(alert(alerts=[{"status": "firing", "labels": {"alertname": 5}}])),
         {**JSON, **HOOK}, 422, "labels"),
    Case("alerts-labels-list", W, "/alerts",
         dumps(alert(alerts=[{"status": "firing", "labels": ["a"]}])), {**JSON, **HOOK}, 422,
         "labels"),
    Case("alerts-text-plain", W, "/alerts", dumps(alert()),
         {"content-type": "text/plain", **HOOK}, 415),
    Case("alerts-declared-too-large", W, "/alerts", b" " * 2_000_000, {**JSON, **HOOK}, 413,
         "exceeds"),
    Case("alerts-get", W, "/alerts", method="GET", status=405),
    Case("status-post", W, "/status", b"{}", JSON, 405),
    Case("webhook-unknown-path", W, "/nope", method="GET", status=404),
]  # fmt: skip


@pytest.fixture(scope="module")
def services(app: Service, detector: Service, webhook: Service) -> dict[str, Service]:
    return {A: app, D: detector, W: webhook}


@pytest.fixture(scope="module")
def clients(services: dict[str, Service]) -> Iterator[dict[str, httpx.Client]]:
    made = {name: httpx.Client(base_url=s.url, timeout=30) for name, s in services.items()}
    made[A].headers["authorization"] = f"Bearer {FEEDBACK_TOKEN}"
    made[D].headers["authorization"] = f"Bearer {INGEST_TOKEN}"
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


@dataclass(frozen=True)
class Answer:
    where: str
    status_code: int
    headers: httpx.Headers
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def send(
    url: str, method: str, path: str, body: bytes | None, headers: dict[str, str | bytes]
) -> Answer:
    """One request by ``http.client``, which sends header values as given (httpx refuses the
    odd ones this suite needs: blanks, non-ASCII bytes)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        return Answer(
            f"{method} {path[:80]}", response.status, httpx.Headers(response.getheaders()), text
        )
    finally:
        conn.close()


def assert_refused(response: Answer | httpx.Response, status: int | None, mentions: str) -> None:
    """A 4xx (``status`` when given) with a JSON body that contains ``mentions``, and an id."""
    where = (
        response.where
        if isinstance(response, Answer)
        else f"{response.request.method} {response.request.url.path}"
    )
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if status is not None:
        assert response.status_code == status, f"{where}: {response.text[:500]}"
    else:
        assert 400 <= response.status_code < 500, f"{where}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert body, "an empty refusal"
    assert mentions in response.text, f"{where}: {mentions!r} not in {response.text[:500]}"
    assert _SANE_ID.match(response.headers.get("x-request-id", "")), response.headers


def with_loop_token(service: str, path: str, headers: dict[str, str | bytes]) -> None:
    """The caller's token on the loop's inputs (feedback, ingestion) unless the case sets its
    own: each case is refused for the part it breaks, not for a missing token."""
    token = {(A, "/feedback"): FEEDBACK_TOKEN, (D, "/"): INGEST_TOKEN}.get((service, path))
    if token is not None and not any(k.lower() == "authorization" for k in headers):
        headers["authorization"] = f"Bearer {token}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_with_a_json_4xx(case: Case, services: dict[str, Service]) -> None:
    headers: dict[str, str | bytes] = dict(case.headers)
    with_loop_token(case.service, case.path, headers)
    response = send(services[case.service].url, case.method, case.path, case.body, headers)
    assert_refused(response, case.status, case.mentions)


def test_cases_cover_every_documented_endpoint(clients: dict[str, httpx.Client]) -> None:
    """A new endpoint must get rows in the table: every path of the app's and the detector's
    OpenAPI documents, and the webhook's, is hit by at least one case."""
    for service in (A, D, W):
        spec = clients[service].get("/openapi.json").json()
        hit = {c.path for c in CASES if c.service == service}
        templated = {p for p in spec["paths"] if "{" not in p}
        safe_gets = {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready",
                     "/v2", f"/v2/models/{schema.MODEL_NAME}",
                     f"/v2/models/{schema.MODEL_NAME}/ready", "/report"}  # fmt: skip
        missing = templated - hit - safe_gets
        assert not missing, f"{service}: no hostile case for {sorted(missing)}"


@pytest.mark.parametrize(
    "request_id", ["", " ", "a b", "x" * 129, "../../etc", "é", "\t", "id;drop", "a,b"]
)
@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        (A, "GET", "/health/live"),
        (A, "GET", "/health/ready"),
        (A, "GET", "/v2/health/ready"),
        (A, "GET", "/metadata"),
        (A, "GET", "/metrics"),
        (A, "GET", "/docs"),
        (A, "GET", "/openapi.json"),
        (A, "POST", "/predict"),
        (A, "POST", INFER),
        (A, "POST", "/feedback"),
        (A, "POST", "/admin/reload"),
        (D, "GET", "/health/ready"),
        (D, "GET", "/metrics"),
        (D, "GET", "/drift"),
        (D, "POST", "/"),
        (W, "GET", "/status"),
        (W, "POST", "/alerts"),
    ],
)
def test_every_answer_carries_a_sane_request_id(
    services: dict[str, Service], service: str, method: str, path: str, request_id: str
) -> None:
    """A bad X-Request-ID is replaced, never echoed; a good one is kept, on every endpoint but
    the two that score wines: their id is the server's (it keys the served rows that labels
    name) and the caller's comes back as X-Correlation-ID."""
    url = services[service].url
    body = b"" if method == "POST" else None
    headers: dict[str, str | bytes] = {"x-request-id": request_id.encode()}
    with_loop_token(service, path, headers)
    response = send(url, method, path, body, headers)
    assert response.status_code < 500, response.text[:300]
    given = response.headers.get("x-request-id")
    assert given is not None, path
    assert _SANE_ID.match(given), (path, given)
    assert given != request_id
    kept_headers: dict[str, str | bytes] = {"x-request-id": "caller-id-1"}
    with_loop_token(service, path, kept_headers)
    kept = send(url, method, path, body, kept_headers)
    if service == A and path in ("/predict", INFER):
        assert kept.headers.get("x-correlation-id") == "caller-id-1"
        assert _SANE_ID.match(kept.headers["x-request-id"])
        assert kept.headers["x-request-id"] != "caller-id-1"
    else:
        assert kept.headers.get("x-request-id") == "caller-id-1"


def test_valid_requests_still_succeed(clients: dict[str, httpx.Client]) -> None:
    """The table's bases are valid: each refusal is about the one part that was broken."""
    app, detector = clients[A], clients[D]
    assert app.post("/predict", json={"wines": [WINE]}).status_code == 200
    assert app.post(INFER, json=v2_json()).status_code == 200
    body, headers = v2_binary()
    assert app.post(INFER, content=body, headers=headers).status_code == 200
    assert app.post("/feedback", json=feedback_rows()).status_code == 201
    assert detector.post("/", json={"wines": [WINE]}, headers=CE_HEADERS).status_code == 200
    assert detector.post("/", content=dumps(cloudevent()), headers=STRUCTURED).status_code == 200
    encoded = base64.b64encode(dumps({"wines": [WINE]})).decode()
    structured = dumps(cloudevent(data=..., data_base64=encoded))
    assert detector.post("/", content=structured, headers=STRUCTURED).status_code == 200
    batch = dumps([cloudevent(), cloudevent(id="2")])
    assert detector.post("/", content=batch, headers=BATCH).status_code == 200
    ignored = alert()
    response = clients[W].post("/alerts", json=ignored, headers=HOOK)
    assert response.json()["action"] == "ignored"


def _count(metrics: str, route: str, status: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        labels = f'route="{route}"' in line and f'status="{status}"' in line
        if line.startswith("winequality_http_requests_total{") and labels:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_no_5xx_was_counted_and_v2_refusals_were(
    clients: dict[str, httpx.Client],
) -> None:
    """After the table: the app's request counter has no 5xx, and counts the V2 refusals."""
    app = clients[A]
    before = _count(app.get("/metrics").text, INFER, "422")
    app.post(INFER, json=v2_json(name=["alcohol"]))
    metrics = app.get("/metrics").text
    assert _count(metrics, INFER, "422") == before + 1
    server_errors = [
        line
        for line in metrics.splitlines()
        if line.startswith("winequality_http_requests_total{") and 'status="5' in line
    ]
    assert not server_errors


def test_a_bundle_without_a_version_is_refused(
    clients: dict[str, httpx.Client], tmp_path: Path, serving_bundles: dict[str, Path]
) -> None:
    import shutil

    bundle = Path(shutil.copytree(serving_bundles["2"], tmp_path / "unversioned"))
    metadata = json.loads((bundle / artifacts.METADATA_FILE).read_text())
    del metadata["version"]
    (bundle / artifacts.METADATA_FILE).write_text(json.dumps(metadata))
    app = clients[A]
    response = app.post("/admin/reload", json={"model_dir": str(bundle)}, headers=ADMIN)
    assert_refused(response, 422, "version")
    assert app.get("/metadata").json()["model"]["version"] == "1"


def test_a_retraining_command_that_cannot_start_is_a_json_503_recorded_in_status(
    broken_webhook: Service,
) -> None:
    firing = alert(alerts=[{"status": "firing", "labels": {"alertname": "WineQualityDrift"}}])
    with httpx.Client(base_url=broken_webhook.url, timeout=30) as client:
        response = client.post("/alerts", json=firing, headers=HOOK)
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert detail["reason"] == "retrain_not_started"
        assert "no-such-retrain-job" in detail["message"]
        assert response.headers["x-request-id"]
        status = client.get("/status").json()
        assert status["state"] == "idle"  # no cool-down: Alertmanager's retry tries again
        (run,) = status["runs"]
        assert run["pid"] is None
        assert "no-such-retrain-job" in run["error"]
        assert run["finished_at"] is not None
        assert client.post("/alerts", json=firing, headers=HOOK).status_code == 503
        assert len(client.get("/status").json()["runs"]) == 2


def test_chunked_bodies_over_the_limits_are_413_before_being_read(
    services: dict[str, Service],
) -> None:
    """Chunked (no Content-Length) bodies past each limit: 413, JSON, with the id."""
    targets = [
        (A, "/predict", JSON),
        (A, "/feedback", JSON),
        (A, INFER, OCTET),
        (A, "/admin/reload", {**JSON, **ADMIN}),
        (D, "/", CE_HEADERS),
        (D, "/", BATCH),
        (W, "/alerts", {**JSON, **HOOK}),
    ]
    for service, path, headers in targets:

        def chunks() -> Iterator[bytes]:
            for _ in range(5000):  # 50 MB, far past every limit
                yield b" " * 10_000

        with httpx.Client(base_url=services[service].url, timeout=60) as client:
            with_loop_token(service, path, headers)
            response = client.post(path, content=chunks(), headers=headers)
        assert_refused(response, 413, "exceeds")
