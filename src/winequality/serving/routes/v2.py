"""Open Inference Protocol (V2) endpoints for the same model, so V2 clients work against the app.

Tensors are named as in the Triton ensemble: the 11 measurements (FP32) and ``wine_type``
(BYTES), shape [N, 1] or [N]; outputs ``quality`` (FP32) and ``quality_class`` (INT32).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Final

import numpy as np
import orjson
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import SMALL_ROWS, V2Request, parse_v2_infer
from winequality.contract.problems import Problem
from winequality.inference.predictor import Prediction
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
from winequality.serving.v2_decode import decode_v2

MODEL_PATH: Final = f"/v2/models/{schema.MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["v2"])


class V2InferEndpoint(HotEndpoint):
    route: ClassVar[str] = f"{MODEL_PATH}/infer"
    # tritonclient sends no content type, and octet-stream with the binary data extension.
    accepted_media_types: ClassVar[frozenset[bytes | None]] = frozenset(
        {b"application/json", b"application/octet-stream", None}
    )

    extra_header: ClassVar[bytes | None] = b"inference-header-content-length"

    def parse(self, body: bytes, extra: bytes | None) -> tuple[Matrix, tuple[V2Request, bool]]:
        if extra is not None and not extra.isdigit():
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
        # JSON tensors: the typed decoder takes the valid requests, the parser decides the rest.
        request = decode_v2(body, self._max_rows) if extra is None else None
        if request is None:
            length = int(extra) if extra is not None else None
            request = parse_v2_infer(body, self._max_rows, length)
        return request.matrix, (request, extra is not None)

    def respond(
        self,
        parsed: tuple[V2Request, bool],
        prediction: Prediction,
        model: LoadedModel,
        rid: str,
        body: bytes,
    ) -> tuple[bytes, bytes | Matrix]:
        request, binary = parsed
        n = len(request.matrix)
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
        if not binary:
            return out, body
        # Binary tensor data is not JSON: the logger gets the matrix as a V2 JSON request.
        small = logged_request(request.matrix)
        return out, (request.matrix if small is None else small)


@lru_cache(maxsize=SMALL_ROWS)
def _logged_template(rows: int) -> bytes:
    """``encode_request``'s output for ``rows`` rows with a ``%b`` slot per tensor's values."""
    # Imported here, as the payload logger does: aiohttp comes with the remote client.
    from winequality.inference.remote import build_v2_request

    doc = build_v2_request(np.zeros((rows, schema.N_MODEL_COLUMNS), dtype=np.float32))
    for i, tensor in enumerate(doc["inputs"]):
        tensor["data"] = f"@{i}@"
    template = orjson.dumps(doc).replace(b"%", b"%%")
    for i in range(len(doc["inputs"])):
        template = template.replace(b'"@%d@"' % i, b"[%b]", 1)
    return template


def logged_request(matrix: Matrix) -> bytes | None:
    """The payload logger's encoding of a small matrix (``remote.encode_request``, byte for
    byte), or None for a larger one (the logger encodes it). One orjson call writes the float32
    values in their shortest form, as ``encode_request`` does, instead of one per tensor."""
    rows = len(matrix)
    if rows > SMALL_ROWS:
        return None
    columns = orjson.dumps(np.ascontiguousarray(matrix.T), option=orjson.OPT_SERIALIZE_NUMPY)
    values = columns[2:-2].split(b"],[")
    values[-1] = b",".join([_WINE_TYPE_JSON[flag >= 0.5] for flag in matrix[:, -1].tolist()])
    return _logged_template(rows) % tuple(values)


_WINE_TYPE_JSON: Final = {False: b'"red"', True: b'"white"'}


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
