"""``POST /predict``: named features for 1..N wines -> quality score and class per wine."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import orjson

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
        return list(np.round(quality.astype(np.float64), 4).tolist())
    return [round(q * 10000.0) / 10000.0 if not math.isnan(q) else q for q in quality.tolist()]


class PredictEndpoint(HotEndpoint):
    route: ClassVar[str] = "/predict"

    def parse(self, body: bytes, extra: bytes | None) -> tuple[Matrix, None]:
        # The typed decoder takes the valid bodies; the contract's parser decides the rest.
        matrix = decode_wines(body, self._max_rows)
        return (parse_predict(body, self._max_rows) if matrix is None else matrix), None

    def respond(
        self, parsed: None, prediction: Prediction, model: LoadedModel, rid: str, body: bytes
    ) -> tuple[bytes, bytes | Matrix]:
        md = model.metadata
        out = orjson.dumps(
            {
                "model_name": md.name,
                "model_version": md.version,
                "request_id": rid,
                "predictions": [
                    {"quality": q, "quality_class": c}
                    for q, c in zip(
                        round4(prediction.quality), prediction.quality_class.tolist(), strict=True
                    )
                ],
            }
        )
        return out, body


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
