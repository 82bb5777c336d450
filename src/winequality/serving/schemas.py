"""Pydantic models of the HTTP API, generated from ``schema.FEATURES``.

They document the API (OpenAPI, ``/docs`` examples) and validate the slow endpoints (``/feedback``
through ``TypeAdapter``s). The two hot endpoints (``/predict``, V2 ``infer``) validate requests
with the hand-tuned pass in ``contract/parsers.py``, which enforces the same rules without
building these models per request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from winequality.contract import schema


def example_wine(wine_type: schema.WineType = "red") -> dict[str, Any]:
    """The schema's typical values as one request item."""
    return {f.name: f.example for f in schema.FEATURES} | {schema.WINE_TYPE: wine_type}


def _feature_field(feature: schema.Feature) -> Any:
    return Field(
        ge=feature.minimum,
        le=feature.maximum,
        allow_inf_nan=False,
        description=f"{feature.description} Unit: {feature.unit}.",
        examples=[feature.example],
        json_schema_extra={"unit": feature.unit},
    )


_wine_fields: dict[str, Any] = {f.name: (float, _feature_field(f)) for f in schema.FEATURES}
_wine_fields[schema.WINE_TYPE] = (
    Literal["red", "white"],
    Field(description="Red or white wine.", examples=["red"]),
)

Wine: type[BaseModel] = create_model(
    "Wine",
    __config__=ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [example_wine("red")]},
    ),
    __doc__="The 11 physicochemical measurements of one wine plus its type.",
    **_wine_fields,
)


class PredictRequest(BaseModel):
    """One to ``max_batch_rows`` wines."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"wines": [example_wine("red"), example_wine("white")]}]},
    )

    wines: list[Wine] = Field(min_length=1)


class WinePrediction(BaseModel):
    quality: float = Field(description="Predicted quality score, clipped to 0-10.", examples=[5.4])
    quality_class: int = Field(description="Rounded quality score (0-10).", examples=[5])


class PredictResponse(BaseModel):
    """Predictions in request order, and which model made them."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    request_id: str = Field(
        description="Issued by the app (also its X-Request-ID header): the key `/feedback` "
        "names this request by. A caller's own X-Request-ID comes back as X-Correlation-ID."
    )
    predictions: list[WinePrediction]


class ProblemDetail(BaseModel):
    """One reason a request was refused: a ``contract.problems.Problem`` as JSON
    (``serving/errors.py`` ``problem_json``)."""

    loc: list[str | int] = Field(description='Where: e.g. ["body", "wines", 3, "alcohol"].')
    index: int | None = Field(description="Index of the offending wine (or V2 row), if any.")
    field: str | None = Field(description="Offending field or tensor name, if any.")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer of the prediction endpoints."""

    error: str = Field(description="Summary (V2 clients show this field).")
    detail: list[ProblemDetail] = Field(default_factory=list)


class FeatureInfo(BaseModel):
    name: str
    unit: str
    minimum: float
    maximum: float
    description: str
    example: float


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    run_id: str | None
    alias: str | None
    family: str
    metrics: dict[str, float]
    parity_max_abs_diff: float | None
    data_hash: str | None
    git_commit: str | None
    created_at: str | None
    source: str = Field(description="Bundle directory the model was loaded from.")
    loaded_at: float = Field(description="Unix time the model started serving.")
    backend: str


class MetadataResponse(BaseModel):
    model: ModelInfo
    features: list[FeatureInfo]
    wine_types: list[str]
    max_batch_rows: int


class ReloadRequest(BaseModel):
    """Optional body of ``POST /admin/reload``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_dir: str | None = Field(
        default=None, description="Bundle directory to load; default: the configured model_dir."
    )


class ReloadResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: Literal["reloaded"]
    previous_version: str | None
    model_version: str
    model_dir: str


# --- Open Inference Protocol (V2) -----------------------------------------------------------


# As strict as the endpoint where JSON Schema can say it: the tensor names, each one's datatypes,
# [N] or [N, 1], numbers or red/white. What it cannot say (all 12 tensors, equal lengths, data
# matching the shape, the measurements' ranges) is checked by the endpoint (422).
_V2Rows = Annotated[int, Field(ge=1)]
_V2Shape = tuple[_V2Rows] | tuple[_V2Rows, Literal[1]]
_WineTypeName = Literal["red", "white"]


class V2FeatureTensor(BaseModel):
    """One measurement, a number per wine."""

    name: Literal[schema.FEATURE_NAMES] = Field(examples=["alcohol"])  # type: ignore[valid-type]
    shape: _V2Shape = Field(examples=[[1, 1]])
    datatype: Literal["FP32", "FP64"]
    data: list[float] | list[tuple[float]]
    parameters: dict[str, Any] | None = None


class V2WineTypeTensor(BaseModel):
    """``wine_type``, red or white per wine."""

    name: Literal["wine_type"]
    shape: _V2Shape = Field(examples=[[1, 1]])
    datatype: Literal["BYTES"]
    data: list[_WineTypeName] | list[tuple[_WineTypeName]]
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(BaseModel):
    name: Literal["quality", "quality_class"]
    parameters: dict[str, Any] | None = None


def _v2_example() -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [
        {"name": f.name, "shape": [1, 1], "datatype": "FP32", "data": [f.example]}
        for f in schema.FEATURES
    ]
    inputs.append({"name": schema.WINE_TYPE, "shape": [1, 1], "datatype": "BYTES", "data": ["red"]})
    return {"id": "example-1", "inputs": inputs}


class V2InferRequest(BaseModel):
    """11 FP32 measurement tensors and one BYTES ``wine_type`` tensor, shape [N, 1] or [N]."""

    model_config = ConfigDict(json_schema_extra={"examples": [_v2_example()]})

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2FeatureTensor | V2WineTypeTensor] = Field(min_length=1)
    outputs: list[V2RequestedOutput] | None = None


class V2OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["FP32", "INT32"]
    data: list[float] | list[int]


class V2InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str
    outputs: list[V2OutputTensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Error(BaseModel):
    error: str


# --- feedback --------------------------------------------------------------------------------


class FeedbackByRequest(BaseModel):
    """The true quality of one wine the app scored recently."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"request_id": "abc-123", "index": 0, "quality": 6}]},
    )

    request_id: str = Field(min_length=1, description="`request_id` of the prediction response.")
    index: int = Field(ge=0, description="Index of the wine in that request.")
    quality: int = Field(ge=0, le=10, description="True quality (0-10).")


class FeedbackRows(BaseModel):
    """Wines with their true quality, one label per wine."""

    model_config = ConfigDict(extra="forbid")

    wines: list[Wine] = Field(min_length=1)
    quality: list[Annotated[int, Field(ge=0, le=10)]] = Field(
        description="True quality (0-10) of each wine, in order."
    )


class FeedbackResponse(BaseModel):
    stored: int = Field(description="Rows written to the feedback store.")
    request_id: str | None = Field(description="The request the feedback refers to, if named.")


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place.

    For schemas placed by hand in the OpenAPI document (``openapi_extra``), where a
    ``#/$defs/...`` reference would point at nothing.
    """
    schema_ = model.model_json_schema()
    defs: dict[str, Any] = schema_.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema_)
    return resolved
