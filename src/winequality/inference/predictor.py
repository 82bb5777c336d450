"""One small interface for the two ways of running the model.

``OnnxPredictor`` runs the bundle's ONNX file in process (dev default); the remote V2 predictor
(``inference/remote.py``) talks the Open Inference Protocol to Seldon Core / Triton. The app only
sees ``Predictor``: switching is a setting, not a code change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from winequality import artifacts, schema
from winequality.artifacts import ModelMetadata
from winequality.inference.features import Matrix, postprocess


@dataclass(frozen=True, slots=True)
class Prediction:
    quality: npt.NDArray[np.float32]
    """Score per wine, clipped to the 0-10 scale."""
    quality_class: npt.NDArray[np.int32]
    """Rounded score per wine."""


class Predictor(Protocol):
    """Turns a validated model matrix (``schema.MODEL_COLUMNS``) into predictions."""

    @property
    def metadata(self) -> ModelMetadata: ...

    async def predict(self, matrix: Matrix) -> Prediction: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class OnnxPredictor:
    """The bundle's ONNX model in an onnxruntime session, in this process."""

    def __init__(self, bundle: Path, threads: int = 1) -> None:
        self._metadata = artifacts.read_metadata(bundle)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(bundle / artifacts.MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != schema.N_MODEL_COLUMNS:
            raise ValueError(
                f"{bundle / artifacts.MODEL_FILE}: expected one input with "
                f"{schema.N_MODEL_COLUMNS} columns, got {[(i.name, i.shape) for i in inputs]}"
            )
        self._input = inputs[0].name

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict_sync(self, matrix: Matrix) -> Prediction:
        """Synchronous path: onnxruntime releases the GIL and a row takes microseconds."""
        (scores,) = self._session.run(None, {self._input: matrix})[:1]
        quality, klass = postprocess(scores)
        return Prediction(quality, klass)

    async def predict(self, matrix: Matrix) -> Prediction:
        return self.predict_sync(matrix)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
