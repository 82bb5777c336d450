"""Open Inference Protocol (V2) endpoints for the same model, so V2 clients work against the app.

Tensors are named as in the Triton ensemble: the 11 measurements (FP32) and ``wine_type``
(BYTES), shape [N, 1] or [N]; outputs ``quality`` (FP32) and ``quality_class`` (INT32).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import orjson
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import parse_v2_infer
from winequality.contract.problems import Problem
from winequality.http_common import Scope, header
from winequality.serving.errors import RequestError
from winequality.serving.hot import HotEndpoint, HotRoute
from winequality.serving.model import LoadedModel
from winequality.serving.schemas import (
    V2Error,
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    V2ServerMetadata,
    V2TensorMetadata,
)
from winequality.serving.state import ServingState, StateDep

MODEL_PATH: Final = f"/v2/models/{schema.MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["v2"])


class V2InferEndpoint(HotEndpoint):
    route: ClassVar[str] = f"{MODEL_PATH}/infer"
    # tritonclient sends no content type, and octet-stream with the binary data extension.
    accepted_media_types: ClassVar[frozenset[bytes | None]] = frozenset(
        {b"application/json", b"application/octet-stream", None}
    )

    async def answer(
        self, scope: Scope, body: bytes, model: LoadedModel, rid: str
    ) -> tuple[bytes, bytes | Matrix]:
        json_length = header(scope, b"inference-header-content-length")
        if json_length is not None and not json_length.isdigit():
            raise RequestError(
                422,
                [
                    Problem(
                        None,
                        None,
                        "must be a byte count",
                        "binary_header",
                        ("header", "inference-header-content-length"),
                    )
                ],
            )
        request = parse_v2_infer(
            body, self._max_rows, int(json_length) if json_length is not None else None
        )
        prediction = await model.predictor.predict(request.matrix)
        self._recent.remember(rid, request.matrix, prediction.quality, model.metadata.version)
        n = len(request.matrix)
        self._rows.inc(n)
        self.state.metrics.quality.observe_many(prediction.quality)
        shape = [n, 1] if request.column_shape else [n]
        data: dict[str, tuple[str, list[Any]]] = {
            schema.OUTPUT_QUALITY: ("FP32", prediction.quality.tolist()),
            schema.OUTPUT_CLASS: ("INT32", prediction.quality_class.tolist()),
        }
        out = orjson.dumps(
            {
                "model_name": schema.MODEL_NAME,
                "model_version": model.metadata.version,
                "id": request.id if request.id is not None else rid,
                "outputs": [
                    {"name": name, "datatype": data[name][0], "shape": shape, "data": data[name][1]}
                    for name in request.outputs
                ],
            }
        )
        # Binary tensor data is not JSON: the logger then encodes the matrix, off this path.
        return out, (body if json_length is None else request.matrix)


# OpenAPI signature of the infer route; HotRoute hands requests to V2InferEndpoint.
async def infer(body: V2InferRequest) -> V2InferResponse:  # pragma: no cover
    """V2 inference: named tensors in, `quality` and `quality_class` out.

    JSON tensors and Triton's binary tensor data extension are accepted; outputs are JSON.
    """
    raise NotImplementedError("served by V2InferEndpoint")


def infer_route(state: ServingState) -> HotRoute:
    return HotRoute(
        V2InferEndpoint.route,
        infer,
        asgi=V2InferEndpoint(state),
        methods=["POST"],
        response_model=V2InferResponse,
        responses={code: {"model": V2Error} for code in (413, 415, 422, 503, 504)},
        tags=["v2"],
    )


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=503)


@router.get("/health/live")
async def v2_live() -> dict[str, bool]:
    """V2 liveness: the process answers."""
    return {"live": True}


@router.get("/health/ready", responses={503: {"model": V2Error}})
async def v2_ready(state: StateDep) -> Response:
    """V2 readiness: a model is loaded and its predictor can serve."""
    ok, reason = await state.manager.ready()
    return JSONResponse({"ready": True}) if ok else _not_ready(reason)


@router.get("")
async def v2_server() -> V2ServerMetadata:
    """V2 server metadata."""
    from importlib.metadata import version

    return V2ServerMetadata(name="winequality", version=version("winequality"), extensions=[])


@router.get(
    f"/models/{schema.MODEL_NAME}",
    response_model=V2ModelMetadata,
    responses={503: {"model": V2Error}},
)
async def v2_model(state: StateDep) -> Response:
    """V2 model metadata: input and output tensors."""
    model = state.manager.current
    if model is None:
        return _not_ready("no model loaded")
    inputs = [
        V2TensorMetadata(name=n, datatype="FP32", shape=[-1, 1]) for n in schema.FEATURE_NAMES
    ]
    inputs.append(V2TensorMetadata(name=schema.WINE_TYPE, datatype="BYTES", shape=[-1, 1]))
    body = V2ModelMetadata(
        name=schema.MODEL_NAME,
        versions=[model.metadata.version],
        platform="onnxruntime_onnx" if state.settings.backend == "onnx" else "v2_proxy",
        inputs=inputs,
        outputs=[
            V2TensorMetadata(name=schema.OUTPUT_QUALITY, datatype="FP32", shape=[-1, 1]),
            V2TensorMetadata(name=schema.OUTPUT_CLASS, datatype="INT32", shape=[-1, 1]),
        ],
    )
    return JSONResponse(body.model_dump())


@router.get(f"/models/{schema.MODEL_NAME}/ready", responses={503: {"model": V2Error}})
async def v2_model_ready(state: StateDep) -> Response:
    """V2 model readiness."""
    ok, reason = await state.manager.ready()
    return JSONResponse({"name": schema.MODEL_NAME, "ready": True}) if ok else _not_ready(reason)
