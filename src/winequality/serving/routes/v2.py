"""Open Inference Protocol (V2) endpoints for the same model, so V2 clients work against the app.

Tensors are named as in the Triton ensemble: the 11 measurements (FP32) and ``wine_type``
(BYTES), shape [N, 1] or [N]; outputs ``quality`` (FP32) and ``quality_class`` (INT32).
"""

from __future__ import annotations

from itertools import chain
from typing import ClassVar, Final

import orjson
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import parse_v2_infer
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
from winequality.serving.v2_decode import V2BinaryDecoder, V2Infer, V2JsonDecoder

MODEL_PATH: Final = f"/v2/models/{schema.MODEL_NAME}"

router = APIRouter(prefix="/v2", tags=["v2"])


class V2InferEndpoint(HotEndpoint):
    route: ClassVar[str] = f"{MODEL_PATH}/infer"
    # tritonclient sends no content type, and octet-stream with the binary data extension.
    accepted_media_types: ClassVar[frozenset[bytes | None]] = frozenset(
        {b"application/json", b"application/octet-stream", None}
    )

    extra_header: ClassVar[bytes | None] = b"inference-header-content-length"

    def __init__(self, state: ServingState) -> None:
        super().__init__(state)
        self._binary = V2BinaryDecoder(self._max_rows)
        self._json = V2JsonDecoder(self._max_rows)
        self._answers = AnswerEncoder()

    def parse(self, body: bytes, extra: bytes | None) -> tuple[Matrix, tuple[V2Infer, bool]]:
        if extra is None:
            # JSON tensors: the typed decoder takes the valid requests, the parser the rest.
            request = self._json.decode(body)
            if request is None:
                request = V2Infer.of(parse_v2_infer(body, self._max_rows))
            return request.matrix, (request, False)
        if not extra.isdigit():
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
        length = int(extra)
        request = self._binary.decode(body, length)
        if request is None:
            request = V2Infer.of(parse_v2_infer(body, self._max_rows, length))
        return request.matrix, (request, True)

    def respond(
        self,
        parsed: tuple[V2Infer, bool],
        prediction: Prediction,
        model: LoadedModel,
        rid: str,
        body: bytes,
    ) -> tuple[bytes, bytes | Matrix]:
        request, binary = parsed
        request_id = request.id if request.id is not None else rid
        out = self._answers.encode(model.metadata.version, request_id, request, prediction)
        # Binary tensor data is not JSON: the logger gets the matrix (its worker writes it as a
        # V2 JSON request, and only for the exchanges it sends).
        return out, (request.matrix if binary else body)


class AnswerEncoder:
    """V2 answers as orjson writes the document, byte for byte, from a template per (model
    version, outputs, output shape) with a slot for the id and each output's rows and values:
    small orjson calls and one bytes ``%`` instead of a document built and written.

    The template of the last answer is kept beside the others and compared first (a client
    asks for the same outputs of the same model every time), and a single row's class is one
    of a few texts: 0.63 µs a single-row answer where the lookup by a tuple key and an orjson
    call per output took 0.77.
    """

    max_templates: Final = 64

    def __init__(self) -> None:
        self._templates: dict[tuple[str, tuple[str, ...], bool], bytes] = {}
        self._last: tuple[str, tuple[str, ...], bool, bytes] = ("", (), False, b"")

    def encode(
        self, version: str, request_id: str, request: V2Infer, prediction: Prediction
    ) -> bytes:
        outputs, column_shape = request.outputs, request.column_shape
        last_version, last_outputs, last_shape, template = self._last
        if version != last_version or outputs != last_outputs or column_shape != last_shape:
            template = self._templates.get((version, outputs, column_shape)) or self._template(
                version, outputs, column_shape
            )
            self._last = (version, outputs, column_shape, template)
        n = len(prediction.quality)
        # Python floats of the float32 scores: the values as the document writes them.
        quality = orjson.dumps(prediction.quality.tolist())
        classes = (
            _ONE_CLASS_TEXT.get(prediction.quality_class.item()) if n == 1 else None
        ) or orjson.dumps(prediction.quality_class.tolist())
        if outputs == schema.OUTPUTS:  # what a request naming no outputs gets
            return template % (orjson.dumps(request_id), n, quality, n, classes)
        data = {schema.OUTPUT_QUALITY: quality, schema.OUTPUT_CLASS: classes}
        slots = chain.from_iterable((n, data[name]) for name in outputs)
        return template % (orjson.dumps(request_id), *slots)

    def _template(self, version: str, outputs: tuple[str, ...], column_shape: bool) -> bytes:
        if len(self._templates) >= self.max_templates:
            self._templates.clear()
        template = answer_template(version, outputs, column_shape)
        self._templates[version, outputs, column_shape] = template
        return template


_ONE_CLASS_TEXT: Final = {c: orjson.dumps([c]) for c in schema.QUALITY_CLASSES}
"""A single row's class as its output's data, by class (what orjson writes)."""

_OUTPUT_DATATYPES: Final = {schema.OUTPUT_QUALITY: "FP32", schema.OUTPUT_CLASS: "INT32"}


def answer_template(version: str, outputs: tuple[str, ...], column_shape: bool) -> bytes:
    """The answer's JSON with a ``%b`` slot for the id, and a ``%d`` (rows) and a ``%b``
    (values) slot per output."""
    doc = {
        "model_name": schema.MODEL_NAME,
        "model_version": "@version@",
        "id": "@id@",
        "outputs": [
            {
                "name": name,
                "datatype": _OUTPUT_DATATYPES[name],
                "shape": ["@rows@", 1] if column_shape else ["@rows@"],
                "data": "@data@",
            }
            for name in outputs
        ],
    }
    template = orjson.dumps(doc)
    for slot, fmt in ((b'"@id@"', b"%b"), (b'"@rows@"', b"%d"), (b'"@data@"', b"%b")):
        template = template.replace(slot, fmt)
    # The version last, escaped: no text of it is ever taken for a slot.
    return template.replace(b'"@version@"', orjson.dumps(version).replace(b"%", b"%%"), 1)


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
            V2TensorMetadata(name=name, datatype=_OUTPUT_DATATYPES[name], shape=[-1, 1])
            for name in schema.OUTPUTS
        ],
    )
    return JSONResponse(body.model_dump())


@router.get(f"/models/{schema.MODEL_NAME}/ready", responses={503: {"model": V2Error}})
async def v2_model_ready(state: StateDep) -> Response:
    """V2 model readiness."""
    ok, reason = await state.manager.ready()
    return JSONResponse({"name": schema.MODEL_NAME, "ready": True}) if ok else _not_ready(reason)
