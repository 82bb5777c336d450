"""``POST /predict``: named features for 1..N wines -> quality score and class per wine."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import orjson
from starlette.types import Scope

from winequality.contract.features import Matrix
from winequality.contract.parsers import parse_predict
from winequality.serving.hot import HotEndpoint, HotRoute
from winequality.serving.model import LoadedModel
from winequality.serving.schemas import ErrorResponse, PredictRequest, PredictResponse
from winequality.serving.state import ServingState


class PredictEndpoint(HotEndpoint):
    route: ClassVar[str] = "/predict"

    async def answer(
        self, scope: Scope, body: bytes, model: LoadedModel, rid: str
    ) -> tuple[bytes, bytes | Matrix]:
        matrix = parse_predict(body, self._max_rows)
        prediction = await model.predictor.predict(matrix)
        self._recent.remember(rid, matrix, prediction.quality, model.metadata.version)
        self._rows.inc(len(matrix))
        self.state.metrics.quality.observe_many(prediction.quality)
        quality = np.round(prediction.quality.astype(np.float64), 4).tolist()
        classes = prediction.quality_class.tolist()
        out = orjson.dumps(
            {
                "model_name": model.metadata.name,
                "model_version": model.metadata.version,
                "request_id": rid,
                "predictions": [
                    {"quality": q, "quality_class": c}
                    for q, c in zip(quality, classes, strict=True)
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
