"""Pre- and post-processing, written once.

Used by training (frame -> matrix), by the in-process predictor, and by the Triton Python-backend
``preprocess``/``postprocess`` models, which import this module from the model repository. It must
therefore depend on numpy and ``winequality.schema`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from winequality import schema

Matrix = npt.NDArray[np.float32]

_MINIMA = np.array([f.minimum for f in schema.FEATURES], dtype=np.float64)
_MAXIMA = np.array([f.maximum for f in schema.FEATURES], dtype=np.float64)


class FeatureError(ValueError):
    """Input that cannot be turned into a model matrix; ``problems`` lists (row, field, reason)."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"row {r}, {f}: {why}" for r, f, why in problems[:10])
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} invalid value(s): {shown}{more}")


def encode_wine_type(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """``red`` -> 0.0, ``white`` -> 1.0 (bytes accepted, as Triton passes BYTES tensors)."""
    out = np.empty(len(values), dtype=np.float32)
    problems: list[tuple[int, str, str]] = []
    for i, v in enumerate(values):
        s = v.decode() if isinstance(v, bytes) else v
        if s == "white":
            out[i] = 1.0
        elif s == "red":
            out[i] = 0.0
        else:
            problems.append(
                (i, schema.WINE_TYPE, f"must be one of {list(schema.WINE_TYPES)}, got {s!r}")
            )
    if problems:
        raise FeatureError(problems)
    return out


def range_problems(values: npt.NDArray[np.floating[Any]]) -> list[tuple[int, str, str]]:
    """Non-finite and physically impossible values of an [N, 11] measurement block."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    bad = ~finite | (values < _MINIMA) | (values > _MAXIMA)
    if not bad.any():
        return []
    problems: list[tuple[int, str, str]] = []
    for r, c in zip(*np.nonzero(bad), strict=True):
        feature = schema.FEATURES[int(c)]
        v = float(values[r, c])
        if not finite[r, c]:
            reason = f"must be a finite number, got {v}"
        else:
            reason = (
                f"{v} is outside the physical range [{feature.minimum}, {feature.maximum}]"
                f" {feature.unit}"
            )
        problems.append((int(r), feature.name, reason))
    return problems


def columns_to_matrix(
    columns: Mapping[str, npt.ArrayLike], wine_type: Sequence[Any] | npt.NDArray[Any]
) -> Matrix:
    """Named measurement columns + wine types -> the model matrix, validated, in schema order."""
    missing = [n for n in schema.FEATURE_NAMES if n not in columns]
    if missing:
        raise FeatureError([(-1, n, "missing") for n in missing])
    measurements = np.column_stack(
        [np.asarray(columns[n], dtype=np.float64).reshape(-1) for n in schema.FEATURE_NAMES]
    )
    return _assemble(measurements, wine_type)


def frame_to_matrix(frame: Any) -> Matrix:
    """A DataFrame with ``schema.FEATURE_NAMES`` and ``wine_type`` -> the model matrix."""
    missing = [n for n in (*schema.FEATURE_NAMES, schema.WINE_TYPE) if n not in frame.columns]
    if missing:
        raise FeatureError([(-1, n, "missing column") for n in missing])
    measurements = frame.loc[:, list(schema.FEATURE_NAMES)].to_numpy(dtype=np.float64)
    return _assemble(measurements, frame[schema.WINE_TYPE].to_numpy())


def _assemble(measurements: npt.NDArray[np.float64], wine_type: Any) -> Matrix:
    problems = range_problems(measurements)
    try:
        is_white = encode_wine_type(wine_type)
    except FeatureError as exc:
        problems.extend(exc.problems)
        is_white = np.zeros(len(measurements), dtype=np.float32)
    if problems:
        raise FeatureError(sorted(problems))
    matrix = np.empty((len(measurements), schema.N_MODEL_COLUMNS), dtype=np.float32)
    matrix[:, :-1] = measurements
    matrix[:, -1] = is_white
    return matrix


def postprocess(
    scores: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Raw regression scores -> (quality clipped to the scale, integer quality class)."""
    quality = np.clip(
        np.asarray(scores, dtype=np.float32).reshape(-1), schema.QUALITY_MIN, schema.QUALITY_MAX
    )
    return quality, np.rint(quality).astype(np.int32)
