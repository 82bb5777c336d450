"""One small interface for the two ways of running the model.

``OnnxPredictor`` runs the bundle's ONNX file in process (dev default); the remote V2 predictor
(``inference/remote.py``) talks the Open Inference Protocol to Seldon Core / Triton. The app only
sees ``Predictor``: switching is a setting, not a code change.

Failures are typed so the HTTP layer can map them without knowing the backend:
``BundleError`` (the model files are unusable: refuse to load or swap them),
``UpstreamUnavailable`` (503), ``UpstreamTimeout`` (504) and ``UpstreamBadResponse`` (502).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from winequality import artifacts
from winequality.artifacts import ModelMetadata
from winequality.contract import schema
from winequality.contract.features import Matrix, postprocess


class PredictorError(RuntimeError):
    """Base class of the failures a predictor reports; the message is shown to API clients."""


class BundleError(PredictorError):
    """The bundle cannot be used: missing or corrupt files, wrong input width, bad metadata."""


class UpstreamUnavailable(PredictorError):  # noqa: N818 (name shared with remote.py)
    """The remote inference server refused the connection or reported it is not ready (503)."""


class UpstreamTimeout(PredictorError):  # noqa: N818 (name shared with remote.py)
    """The remote inference server did not answer within the configured timeout (504)."""


class UpstreamBadResponse(PredictorError):  # noqa: N818 (name shared with remote.py)
    """The remote inference server answered, but not with a usable V2 response (502)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    quality: npt.NDArray[np.float32]
    """Score per wine, clipped to the 0-10 scale."""
    quality_class: npt.NDArray[np.int32]
    """Rounded score per wine."""


class Predictor(Protocol):
    """Turns a validated model matrix (``schema.MODEL_COLUMNS``) into predictions.

    ``predict`` raises ``PredictorError`` subclasses only; anything else is a bug.
    """

    @property
    def metadata(self) -> ModelMetadata: ...

    async def predict(self, matrix: Matrix) -> Prediction: ...

    async def ready(self) -> bool: ...

    async def self_check(self) -> None:
        """``BundleError`` unless the model gives usable scores for the schema's examples."""
        ...

    async def close(self) -> None: ...


def example_matrix() -> Matrix:
    """The schema's typical wine, once red and once white."""
    row = [f.example for f in schema.FEATURES]
    return np.array([[*row, 0.0], [*row, 1.0]], dtype=np.float32)


def check_example_scores(scores: npt.NDArray[np.float32], what: str = "scores") -> None:
    """``BundleError`` unless ``scores`` (of ``example_matrix()``) are one finite in-range score
    per example: what every ``self_check`` asserts."""
    n = len(example_matrix())
    if scores.shape != (n,):
        raise BundleError(f"expected {n} {what}, got shape {scores.shape}")
    ok = np.isfinite(scores) & (scores >= schema.QUALITY_MIN) & (scores <= schema.QUALITY_MAX)
    if not ok.all():
        raise BundleError(
            f"predictions on the schema examples {scores.tolist()} are not finite scores within "
            f"[{schema.QUALITY_MIN}, {schema.QUALITY_MAX}]"
        )


def open_onnx_session(
    model: bytes | Path, where: str, options: ort.SessionOptions | None = None
) -> tuple[ort.InferenceSession, str]:
    """An onnxruntime session for ``model`` and its input name, checked against the contract:
    one float input of ``schema.N_MODEL_COLUMNS`` columns and an output. ``BundleError`` (the
    message starts with ``where``) otherwise. The one place a model file is judged loadable."""
    try:
        session = ort.InferenceSession(
            model if isinstance(model, bytes) else str(model),
            options,
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        raise BundleError(f"{where}: not a loadable ONNX model ({exc})") from exc
    inputs = session.get_inputs()
    width = inputs[0].shape[-1] if len(inputs) == 1 and inputs[0].shape else None
    if width != schema.N_MODEL_COLUMNS or inputs[0].type != "tensor(float)":
        raise BundleError(
            f"{where}: expected one float input with {schema.N_MODEL_COLUMNS} columns, "
            f"got {[(i.name, i.type, i.shape) for i in inputs]}"
        )
    if not session.get_outputs():
        raise BundleError(f"{where}: the model has no output")
    return session, inputs[0].name


def read_bundle_metadata(bundle: Path) -> ModelMetadata:
    """``metadata.json`` of a bundle, checked against the schema contract, or ``BundleError``."""
    path = bundle / artifacts.METADATA_FILE
    try:
        metadata = artifacts.read_metadata(bundle)
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from exc
    except ValidationError as exc:
        raise BundleError(
            f"{path}: invalid metadata ({exc.error_count()} error(s): {exc})"
        ) from exc
    if tuple(metadata.model_columns) != schema.MODEL_COLUMNS:
        raise BundleError(
            f"{path}: model_columns {metadata.model_columns} differ from the schema's "
            f"{list(schema.MODEL_COLUMNS)}"
        )
    return metadata


class OnnxPredictor:
    """The bundle's ONNX model in an onnxruntime session, in this process."""

    def __init__(self, bundle: Path, threads: int = 1) -> None:
        self._metadata = read_bundle_metadata(bundle)
        model_file = bundle / artifacts.MODEL_FILE
        if not model_file.is_file():
            raise BundleError(f"{model_file}: missing")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # One session per model: spinning threads would steal the core from the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session, self._input = open_onnx_session(model_file, str(model_file), options)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def scores(self, matrix: Matrix) -> npt.NDArray[np.float32]:
        """Raw regression scores, before clipping to the quality scale."""
        (scores,) = self._session.run(None, {self._input: matrix})[:1]
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def predict_sync(self, matrix: Matrix) -> Prediction:
        """Synchronous path: onnxruntime releases the GIL and a small batch is cheaper to run
        here than a hop to a worker thread."""
        quality, klass = postprocess(self.scores(matrix))
        return Prediction(quality, klass)

    async def predict(self, matrix: Matrix) -> Prediction:
        return self.predict_sync(matrix)

    async def ready(self) -> bool:
        return True

    async def self_check(self) -> None:
        # The raw score, before the clipping of ``postprocess``, which would turn an absurd
        # model (score 1e6) into a plausible-looking 10.
        try:
            raw = self.scores(example_matrix())
        except Exception as exc:  # onnxruntime's own exception types are not exported
            raise BundleError(f"the model fails on the schema examples: {exc}") from exc
        check_example_scores(raw)

    async def close(self) -> None:
        return None
