"""``POST /predict``: named features for 1..N wines -> quality score and class per wine."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import orjson

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import SMALL_ROWS, parse_predict
from winequality.inference.predictor import Prediction
from winequality.serving.hot import HotEndpoint, HotRoute
from winequality.serving.model import LoadedModel
from winequality.serving.schemas import ErrorResponse, PredictRequest, PredictResponse
from winequality.serving.state import ServingState
from winequality.serving.typed_decode import decode_wines


def round4(quality: npt.NDArray[np.float32]) -> list[float]:
    """Scores to 4 decimals, as ``np.round`` does it (scale, round half to even, unscale): in
    Python for a few values, where numpy's fixed cost is most of the work."""
    if len(quality) > SMALL_ROWS:
        rounded: list[float] = quality.astype(np.float64).round(4).tolist()
        return rounded
    return [round(q * 10000.0) / 10000.0 if not math.isnan(q) else q for q in quality.tolist()]


class PredictEndpoint(HotEndpoint):
    route: ClassVar[str] = "/predict"
    _head: tuple[str, str, bytes] = ("", "", b"")
    """(model name, version, the answer's bytes before the request id), made once per model."""

    def parse(self, body: bytes, extra: bytes | None) -> tuple[Matrix, None]:
        # The typed decoder takes the valid bodies; the contract's parser decides the rest.
        matrix = decode_wines(body, self._max_rows)
        return (parse_predict(body, self._max_rows) if matrix is None else matrix), None

    def respond(
        self, parsed: None, prediction: Prediction, model: LoadedModel, rid: str, body: bytes
    ) -> tuple[bytes, bytes | Matrix]:
        md = model.metadata
        quality = round4(prediction.quality)
        try:
            # The answer spliced from its parts: the scores as orjson writes them (one call for
            # all), each followed by its class's piece. Building 100 dicts only to encode them
            # cost more than the rest of the answer.
            pieces = list(map(_CLASS_PIECES.__getitem__, prediction.quality_class.tolist()))
        except KeyError:  # a class off the scale (a NaN score): encoded from a dict, as ever
            return _encode(md.name, md.version, rid, quality, prediction), body
        pieces[-1] = _LAST_PIECES[pieces[-1]]
        name, version, head = self._head
        if name != md.name or version != md.version:
            head = b'{"model_name":%b,"model_version":%b,"request_id":"' % (
                orjson.dumps(md.name),
                orjson.dumps(md.version),
            )
            self._head = (md.name, md.version, head)
        parts: list[bytes] = [b""] * (2 * len(pieces) + 2)
        parts[0] = head
        parts[1] = rid.encode() + _AFTER_ID
        parts[2::2] = orjson.dumps(quality)[1:-1].split(b",")
        parts[3::2] = pieces
        return b"".join(parts), body


def _encode(
    name: str, version: str, rid: str, quality: list[float], prediction: Prediction
) -> bytes:
    """The answer encoded by orjson from a dict: the bytes ``respond`` splices."""
    return orjson.dumps(
        {
            "model_name": name,
            "model_version": version,
            "request_id": rid,
            "predictions": [
                {"quality": q, "quality_class": c}
                for q, c in zip(quality, prediction.quality_class.tolist(), strict=True)
            ],
        }
    )


# What follows the request id (hex: it needs no escaping) up to the first score, and what follows
# a score, by its class: the class and the next score's key, or (the last wine) the document's end.
_AFTER_ID: Final = b'","predictions":[{"quality":'
_CLASS_PIECES: Final = {c: b',"quality_class":%d},{"quality":' % c for c in schema.QUALITY_CLASSES}
_LAST_PIECES: Final = {
    piece: piece.removesuffix(b',{"quality":') + b"]}" for piece in _CLASS_PIECES.values()
}


# The route's OpenAPI signature: FastAPI documents the body and response models from it, while
# HotRoute hands the requests to PredictEndpoint, which enforces the same rules faster.
async def predict(body: PredictRequest) -> PredictResponse:  # pragma: no cover
    """Predict the quality of 1 to `max_batch_rows` wines.

    Every field is required; values must be finite numbers within the physical ranges given in
    the schema (and by `GET /metadata`). Invalid requests get a 422 naming each offending wine
    index, field and reason; bodies over `max_body_bytes` a 413; non-JSON content types a 415.
    """
    raise NotImplementedError("served by PredictEndpoint")


def route(state: ServingState) -> HotRoute:
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": why}
        for code, why in {
            413: "Body too large.",
            415: "Content type is not application/json.",
            422: "Invalid wines: each problem names the wine index, field and reason.",
            503: "No model loaded, or the upstream inference server is unavailable.",
            504: "The upstream inference server timed out.",
        }.items()
    }
    return HotRoute(
        PredictEndpoint.route,
        predict,
        asgi=PredictEndpoint(state),
        methods=["POST"],
        response_model=PredictResponse,
        responses=errors,
        tags=["prediction"],
    )
