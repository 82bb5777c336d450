"""Pre- and post-processing, written once.

Used by training (frame -> matrix), by the in-process predictor, and by the Triton Python-backend
``preprocess``/``postprocess`` models, which import this module from the model repository. It must
therefore depend on numpy and ``winequality.contract.schema`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from winequality.contract import schema

Matrix = npt.NDArray[np.float32]

WINE_TYPE_FLAGS: Final[dict[object, float]] = {
    name: float(i) for i, name in enumerate(schema.WINE_TYPES)
}
"""The model's ``is_white`` value for each ``wine_type`` (red 0, white 1)."""
V2_BYTES_RED: Final = len(b"red").to_bytes(4, "little") + b"red"
V2_BYTES_WHITE: Final = len(b"white").to_bytes(4, "little") + b"white"
"""``wine_type`` values as V2 BYTES tensors carry them in binary data: a 4-byte little-endian
length, then the bytes."""
_MEASUREMENTS = itemgetter(*schema.FEATURE_NAMES)
_WINE_TYPE = itemgetter(schema.WINE_TYPE)
_ONLY_DICT: Final = {dict}
_RECORD_SIZE: Final = {len(schema.FEATURE_NAMES) + 1}
NUMBER_TYPES: Final = frozenset({float, int})
"""What a measurement may be in JSON: int or float exactly (a boolean is an int subclass)."""
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


def records_to_rows(
    wines: Sequence[Any],
) -> tuple[npt.NDArray[np.float64], list[float]] | None:
    """JSON wine records -> ([N, 11] measurements, is_white 0.0/1.0 per wine), or None.

    The fast path of every reader of ``{"wines": [...]}`` (the app's requests, the drift
    detector's payloads): None as soon as a record is not exactly the schema's fields with
    numbers (no booleans) and ``red``/``white``; ranges are not checked here. Callers then take a
    thorough pass that names each problem. The per-record work runs in C (``map`` over
    ``itemgetter``s), not in a Python loop.
    """
    # A record with exactly as many keys as the schema has fields, all of them present
    # (itemgetter raises KeyError otherwise), has no unknown key: no set comparison needed.
    if set(map(type, wines)) != _ONLY_DICT or set(map(len, wines)) != _RECORD_SIZE:
        return None
    n, width = len(wines), len(schema.FEATURE_NAMES)
    try:
        rows = list(map(_MEASUREMENTS, wines))
        is_white = list(map(WINE_TYPE_FLAGS.__getitem__, map(_WINE_TYPE, wines)))
        if not set(map(type, chain.from_iterable(rows))) <= NUMBER_TYPES:
            return None
        measurements = np.fromiter(chain.from_iterable(rows), np.float64, n * width)
    # A field missing; a wine type unknown or unhashable; an integer beyond float range.
    except (KeyError, TypeError, OverflowError):
        return None
    return measurements.reshape(n, width), is_white


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
