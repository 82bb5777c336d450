"""``GET /metadata`` (the model and the feature contract) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST

from winequality.contract import schema
from winequality.serving.schemas import FeatureInfo, MetadataResponse, ModelInfo
from winequality.serving.state import StateDep

router = APIRouter()

FEATURES = [
    FeatureInfo(
        name=f.name,
        unit=f.unit,
        minimum=f.minimum,
        maximum=f.maximum,
        description=f.description,
        example=f.example,
    )
    for f in schema.FEATURES
]


@router.get("/metadata", tags=["model"], responses={503: {"description": "No model loaded."}})
async def metadata(state: StateDep) -> MetadataResponse:
    """The served model (name, version, run id, training metrics) and the feature schema."""
    model = state.manager.current
    if model is None:
        raise HTTPException(503, "no model loaded yet; see /health/ready")
    md = model.metadata
    return MetadataResponse(
        model=ModelInfo(
            name=md.name,
            version=md.version,
            run_id=md.run_id,
            alias=md.alias,
            family=md.family,
            metrics=md.metrics,
            parity_max_abs_diff=md.parity_max_abs_diff,
            data_hash=md.data_hash,
            git_commit=md.git_commit,
            created_at=md.created_at,
            source=str(model.source),
            loaded_at=model.loaded_at,
            backend=state.settings.backend,
        ),
        features=FEATURES,
        wine_types=list(schema.WINE_TYPES),
        max_batch_rows=state.settings.max_batch_rows,
    )


@router.get("/metrics", tags=["monitoring"], response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition of the app's metrics."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
