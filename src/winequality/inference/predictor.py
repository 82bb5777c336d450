"""One small interface for the two ways of running the model.

``OnnxPredictor`` runs the bundle's ONNX file in process (dev default); the remote V2 predictor
(``inference/remote.py``) talks the Open Inference Protocol to Seldon Core / Triton. The app only
sees ``Predictor``: switching is a setting, not a code change.

Failures are typed so the HTTP layer can map them without knowing the backend:
``BundleError`` (the model files are unusable: refuse to load or swap them),
``UpstreamUnavailable`` (503), ``UpstreamTimeout`` (504) and ``UpstreamBadResponse`` (502).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from winequality import artifacts
from winequality.artifacts import ModelMetadata
from winequality.contract import schema
from winequality.contract.features import Matrix, postprocess, read_only
from winequality.contract.parsers import SMALL_ROWS


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


_ONE_CLASS: Final = tuple(read_only(np.array([c], dtype=np.int32)) for c in schema.QUALITY_CLASSES)
"""The class array of a one-row prediction, shared (read-only): one allocation less a request."""


BOUND_ROWS: Final = 128
"""Batches of up to this many rows run through an I/O binding of their size (at most this many
bindings, each holding its input and output arrays: under 0.5 MB for all of them)."""


class _BoundRun:
    """An I/O binding of a session to an input and an output array of ``rows`` rows."""

    def __init__(
        self, session: ort.InferenceSession, input_name: str, output: str, rows: int, rank: int
    ) -> None:
        self.inputs = np.zeros((rows, schema.N_MODEL_COLUMNS), dtype=np.float32)
        self.outputs = np.zeros((rows, 1) if rank == 2 else (rows,), dtype=np.float32)
        binding = session.io_binding()
        binding.bind_cpu_input(input_name, self.inputs)
        binding.bind_output(
            output, "cpu", 0, np.float32, list(self.outputs.shape), self.outputs.ctypes.data
        )
        # InferenceSession.run_with_iobinding checks, before the call, for a GPU graph capture
        # a CPU session never does; the binding's own method is what it then calls.
        native = getattr(session, "_sess", None)
        native_binding = getattr(binding, "_iobinding", None)
        if native is not None and native_binding is not None:
            self._run: Callable[[ort.RunOptions], None] = partial(
                native.run_with_iobinding, native_binding
            )
        else:
            self._run = partial(session.run_with_iobinding, binding)
        self._binding = binding  # owns the native binding

    def run(self, matrix: Matrix, options: ort.RunOptions) -> npt.NDArray[np.float32]:
        self.inputs[...] = matrix
        self._run(options)
        return self.outputs.reshape(-1).copy()


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
        self._outputs = [self._session.get_outputs()[0].name]
        self._run_options = ort.RunOptions()
        # Without the entry, every bound run asks for it and gets an exception (graph capture
        # is a GPU feature; -1 says "none"): that exception cost more than the inference.
        self._run_options.add_run_config_entry("gpu_graph_id", "-1")
        self._output_rank = 1
        self._bound = self._bind_small_batches()
        self._bound_lock = threading.Lock()

    def _bind_small_batches(self) -> dict[int, _BoundRun]:
        """One I/O binding with preallocated input and output arrays per small batch size:
        onnxruntime then allocates, checks and converts nothing per call. None fit when the
        output is not one float per row; the bindings must agree with ``run``. Sizes up to
        ``BOUND_ROWS`` get theirs when first asked for (``scores``)."""
        out = self._session.get_outputs()[0]
        if out.type != "tensor(float)" or not out.shape or len(out.shape) > 2:
            return {}
        if len(out.shape) == 2 and out.shape[1] != 1:
            return {}
        self._output_rank = len(out.shape)
        bound = {n: self._bind(n) for n in range(1, SMALL_ROWS + 1)}
        sample = example_matrix()
        try:
            expected = self._run(sample)
            got = bound[len(sample)].run(sample, self._run_options)
        except Exception:  # onnxruntime's own exception types are not exported
            return {}
        return bound if np.array_equal(expected, got) else {}

    def _bind(self, rows: int) -> _BoundRun:
        output = self._session.get_outputs()[0].name
        return _BoundRun(self._session, self._input, output, rows, self._output_rank)

    def _run(self, matrix: Matrix) -> npt.NDArray[np.float32]:
        (scores,) = self._session.run(self._outputs, {self._input: matrix}, self._run_options)
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def scores(self, matrix: Matrix) -> npt.NDArray[np.float32]:
        """Raw regression scores, before clipping to the quality scale."""
        rows = len(matrix)
        bound = self._bound.get(rows)
        if bound is None:
            if not self._bound or rows > BOUND_ROWS:
                return self._run(matrix)
            with self._bound_lock:
                bound = self._bound.get(rows) or self._bound.setdefault(rows, self._bind(rows))
        with self._bound_lock:  # the arrays are shared; the event loop is not the only caller
            return bound.run(matrix, self._run_options)

    def predict_sync(self, matrix: Matrix) -> Prediction:
        """Synchronous path: onnxruntime releases the GIL and a small batch is cheaper to run
        here than a hop to a worker thread."""
        scores = self.scores(matrix)
        # A few rows are post-processed in Python: numpy costs more per call than the work.
        if len(scores) <= SMALL_ROWS:
            values = scores.tolist()
            # Within the scale, clipping changes nothing and round() is np.rint (half to even);
            # NaN fails the comparisons.
            if min(values) >= schema.QUALITY_MIN and max(values) <= schema.QUALITY_MAX:
                if len(values) == 1:
                    return Prediction(scores, _ONE_CLASS[round(values[0])])
                return Prediction(scores, np.array(list(map(round, values)), dtype=np.int32))
        quality, klass = postprocess(scores)
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
