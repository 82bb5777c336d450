"""Pre- and post-processing, written once.

Used by the contract's parsers (wine records, V2 tensors, frames -> rows), by the in-process
predictor, and by the Triton Python-backend ``preprocess``/``postprocess`` models, which import
this module from the model repository. It must therefore depend on numpy and
``winequality.contract.schema``/``problems`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from winequality.contract import schema
from winequality.contract.problems import FeatureError, Problem, in_order

Matrix = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Rows = tuple[FloatArray, BoolArray]
"""Validated rows: [N, 11] measurements (float64, schema order) and is_white per row."""

WINE_TYPE_FLAGS: Final[dict[object, float]] = {
    name: float(i) for i, name in enumerate(schema.WINE_TYPES)
}
"""The model's ``is_white`` value for each ``wine_type`` (red 0, white 1)."""
_MINIMA = np.array([f.minimum for f in schema.FEATURES], dtype=np.float64)
_MAXIMA = np.array([f.maximum for f in schema.FEATURES], dtype=np.float64)
_WIDTH: Final = len(schema.FEATURE_NAMES)


def wine_type_problem(row: int, value: object, loc: tuple[str | int, ...] = ()) -> Problem:
    """The refusal of a ``wine_type`` that is not ``red`` or ``white``."""
    return Problem(
        row,
        schema.WINE_TYPE,
        f"must be one of {list(schema.WINE_TYPES)}, got {value!r}",
        "literal_error",
        loc,
    )


def encode_wine_type(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """``red`` -> 0.0, ``white`` -> 1.0 (bytes accepted, as Triton passes BYTES tensors)."""
    out = np.empty(len(values), dtype=np.float32)
    problems: list[Problem] = []
    for i, v in enumerate(values):
        s = v.decode() if isinstance(v, bytes) else v
        if s == "white":
            out[i] = 1.0
        elif s == "red":
            out[i] = 0.0
        else:
            problems.append(wine_type_problem(i, s))
    if problems:
        raise FeatureError(problems)
    return out


def range_problems(values: npt.NDArray[np.floating[Any]]) -> list[tuple[int, int, str]]:
    """Non-finite and physically impossible values of an [N, 11] measurement block, as
    (row, column, reason); callers place them in their input (``Problem.loc``)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    bad = ~finite | (values < _MINIMA) | (values > _MAXIMA)
    if not bad.any():
        return []
    problems: list[tuple[int, int, str]] = []
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
        problems.append((int(r), int(c), reason))
    return problems


def validate_rows(measurements: npt.ArrayLike, wine_type: Sequence[Any] | npt.NDArray[Any]) -> Rows:
    """[N, 11] measurements + wine types -> validated rows; ``FeatureError`` names each problem."""
    values = np.asarray(measurements, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != _WIDTH:
        raise FeatureError(
            [Problem(None, None, f"expected shape [n, {_WIDTH}], got {list(values.shape)}")]
        )
    if len(wine_type) != values.shape[0]:
        raise FeatureError(
            [Problem(None, schema.WINE_TYPE, f"{len(wine_type)} values for {values.shape[0]} rows")]
        )
    problems = [
        Problem(r, schema.FEATURE_NAMES[c], reason) for r, c, reason in range_problems(values)
    ]
    try:
        is_white = encode_wine_type(wine_type) == 1.0
    except FeatureError as exc:
        problems.extend(exc.problems)
        is_white = np.zeros(values.shape[0], dtype=np.bool_)
    if problems:
        raise FeatureError(in_order(problems))
    return values, is_white


def rows_to_matrix(measurements: npt.NDArray[np.floating[Any]], is_white: npt.ArrayLike) -> Matrix:
    """Validated rows -> the float32 model matrix (``schema.MODEL_COLUMNS``)."""
    matrix = np.empty((len(measurements), schema.N_MODEL_COLUMNS), dtype=np.float32)
    matrix[:, :-1] = measurements
    matrix[:, -1] = is_white
    return matrix


def columns_to_matrix(
    columns: Mapping[str, npt.ArrayLike], wine_type: Sequence[Any] | npt.NDArray[Any]
) -> Matrix:
    """Named measurement columns + wine types -> the model matrix, validated, in schema order."""
    missing = [n for n in schema.FEATURE_NAMES if n not in columns]
    if missing:
        raise FeatureError([Problem(None, n, "missing", "missing") for n in missing])
    measurements = np.column_stack(
        [np.asarray(columns[n], dtype=np.float64).reshape(-1) for n in schema.FEATURE_NAMES]
    )
    return rows_to_matrix(*validate_rows(measurements, wine_type))


def postprocess(
    scores: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Raw regression scores -> (quality clipped to the scale, integer quality class)."""
    # The array's own clip is what np.clip calls, after a dispatch that cost twice the clip
    # itself; float32 bounds spare it converting the scale's Python numbers on every call
    # (100 scores: np.clip 2.0 us, clip method 1.1, with these bounds 0.65).
    quality = np.asarray(scores, dtype=np.float32).reshape(-1).clip(*_QUALITY_BOUNDS)
    return quality, np.rint(quality).astype(np.int32)


_Shared = TypeVar("_Shared", bound=np.ndarray)


def read_only(array: _Shared) -> _Shared:
    """``array``, made read-only: a constant shared by every request must not be written."""
    array.flags.writeable = False
    return array


_QUALITY_BOUNDS: Final = (
    read_only(np.array(schema.QUALITY_MIN, dtype=np.float32)),
    read_only(np.array(schema.QUALITY_MAX, dtype=np.float32)),
)
