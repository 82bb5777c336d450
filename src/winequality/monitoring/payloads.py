"""Inference payloads -> validated rows for the drift detector.

The detector receives what the serving side logged: the app's ``/predict`` JSON
(``{"wines": [{feature: value, ..., "wine_type": "red"}]}``), Open Inference Protocol V2 requests
(one named tensor per feature plus ``wine_type``/``is_white``, or the [N, 12] model matrix), and
Seldon-protocol requests (``{"data": {"names": [...], "ndarray": [[...]]}}``). All of them are
mapped to named columns and validated with the shared schema rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from winequality.contract import schema
from winequality.contract.features import FeatureError, range_problems, records_to_rows
from winequality.monitoring.detector import BoolArray, FloatArray, validate_rows

Columns = dict[str, list[Any]]


class PayloadError(ValueError):
    """A body that is not one of the accepted request formats (the message says why)."""


def rows_from_payload(body: Any) -> tuple[FloatArray, BoolArray]:
    """Any accepted request body -> (measurements [n, 11], is_white [n]).

    Raises PayloadError for an unknown shape and FeatureError (row, field, reason) for bad values.
    """
    if not isinstance(body, Mapping):
        raise PayloadError(f"the body must be a JSON object, got {type(body).__name__}")
    if "wines" in body:
        columns = _columns_from_wines(body["wines"])
    elif "inputs" in body:
        columns = _columns_from_v2(body["inputs"])
    elif isinstance(body.get("data"), Mapping) and "ndarray" in body["data"]:
        columns = _columns_from_seldon(body["data"])
    else:
        raise PayloadError(
            "unknown request format: expected 'wines' (app /predict), 'inputs' (V2 inference "
            "request) or 'data.names' + 'data.ndarray' (Seldon protocol)"
        )
    return _rows_from_columns(columns)


def rows_from_app_payloads(bodies: Sequence[Any]) -> tuple[FloatArray, BoolArray] | None:
    """The rows of many app ``/predict`` bodies at once, or None if any body needs a closer look.

    What the app's payload logger sends: every body ``{"wines": [...]}`` with well-formed
    wines. One pass over all their wines (``records_to_rows``) instead of one numpy conversion
    per body; anything else, including values out of range, is left to ``rows_from_payload``
    body by body, which names the problem.
    """
    if not all(type(body) is dict and len(body) == 1 and type(body.get("wines")) is list
               for body in bodies):  # fmt: skip
        return None
    wines = list(chain.from_iterable(body["wines"] for body in bodies))
    rows = records_to_rows(wines) if wines and all(body["wines"] for body in bodies) else None
    if rows is None or range_problems(rows[0]):
        return None
    measurements, is_white = rows
    return measurements, np.asarray(is_white) == 1.0


def _columns_from_wines(wines: Any) -> Columns:
    if not isinstance(wines, list) or not wines:
        raise PayloadError("'wines' must be a non-empty list of objects")
    names = (*schema.FEATURE_NAMES, schema.WINE_TYPE)
    columns: Columns = {n: [] for n in names}
    problems: list[tuple[int, str, str]] = []
    for i, wine in enumerate(wines):
        if not isinstance(wine, Mapping):
            problems.append((i, "wines", f"must be an object, got {type(wine).__name__}"))
            continue
        for n in names:
            if n not in wine:
                problems.append((i, n, "missing"))
            columns[n].append(wine.get(n))
    if problems:
        raise FeatureError(problems)
    return columns


def _columns_from_v2(inputs: Any) -> Columns:
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, tuple[list[int], list[Any]]] = {}
    for k, tensor in enumerate(inputs):
        if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
            raise PayloadError(f"inputs[{k}] must be an object with a 'name'")
        shape, data = tensor.get("shape"), tensor.get("data")
        if not isinstance(shape, list) or not all(isinstance(s, int) for s in shape):
            raise PayloadError(f"input {tensor['name']!r}: 'shape' must be a list of integers")
        if not isinstance(data, list):
            raise PayloadError(f"input {tensor['name']!r}: 'data' must be a list")
        flat = np.asarray(data, dtype=object).reshape(-1).tolist()
        if len(flat) != int(np.prod(shape)):
            raise PayloadError(
                f"input {tensor['name']!r}: {len(flat)} values do not fill shape {shape}"
            )
        tensors[tensor["name"]] = (shape, flat)
    if all(n in tensors for n in schema.FEATURE_NAMES):
        columns = {n: tensors[n][1] for n in schema.FEATURE_NAMES}
        for n in (schema.WINE_TYPE, schema.IS_WHITE):
            if n in tensors:
                columns[n] = tensors[n][1]
        return columns
    for name, (shape, flat) in tensors.items():
        if len(shape) == 2 and shape[1] == schema.N_MODEL_COLUMNS:
            matrix = np.asarray(flat, dtype=object).reshape(shape)
            return {c: matrix[:, j].tolist() for j, c in enumerate(schema.MODEL_COLUMNS)}
        if name == schema.ONNX_INPUT:
            raise PayloadError(
                f"input {name!r} must have shape [n, {schema.N_MODEL_COLUMNS}], got {shape}"
            )
    missing = [n for n in schema.FEATURE_NAMES if n not in tensors]
    raise PayloadError(
        f"V2 request without the feature tensors {missing} and without an "
        f"[n, {schema.N_MODEL_COLUMNS}] '{schema.ONNX_INPUT}' matrix"
    )


def _columns_from_seldon(data: Mapping[str, Any]) -> Columns:
    names, rows = data.get("names"), data.get("ndarray")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PayloadError("'data.names' must be a list of column names")
    if not isinstance(rows, list) or not rows:
        raise PayloadError("'data.ndarray' must be a non-empty list of rows")
    columns: Columns = {n: [] for n in names}
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            raise FeatureError([(i, "data.ndarray", f"must be a list of {len(names)} values")])
        for n, v in zip(names, row, strict=True):
            columns[n].append(v)
    return columns


def _rows_from_columns(columns: Columns) -> tuple[FloatArray, BoolArray]:
    missing = [n for n in schema.FEATURE_NAMES if n not in columns]
    if missing:
        raise FeatureError([(-1, n, "missing") for n in missing])
    lengths = {len(columns[n]) for n in schema.FEATURE_NAMES}
    if len(lengths) != 1:
        raise PayloadError(f"feature columns have different lengths: {sorted(lengths)}")
    n_rows = lengths.pop()
    problems: list[tuple[int, str, str]] = []
    measurements = np.column_stack(
        [_numbers(columns[n], n, problems) for n in schema.FEATURE_NAMES]
    )
    if schema.WINE_TYPE in columns:
        wine_type: Sequence[Any] = columns[schema.WINE_TYPE]
    elif schema.IS_WHITE in columns:
        flags = _numbers(columns[schema.IS_WHITE], schema.IS_WHITE, problems)
        wine_type = ["white" if f == 1.0 else "red" if f == 0.0 else f for f in flags.tolist()]
    else:
        problems.append((-1, schema.WINE_TYPE, "missing (or give is_white as 0/1)"))
        wine_type = ["red"] * n_rows
    if len(wine_type) != n_rows:
        problems.append((-1, schema.WINE_TYPE, f"{len(wine_type)} values for {n_rows} rows"))
    if problems:
        raise FeatureError(sorted(problems))
    return validate_rows(measurements, wine_type)


def _numbers(values: list[Any], field: str, problems: list[tuple[int, str, str]]) -> FloatArray:
    out = np.full(len(values), np.nan, dtype=np.float64)
    for i, v in enumerate(values):
        # bool is an int subclass in Python: a JSON true is not a measurement.
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[i] = v
        else:
            problems.append((i, field, f"must be a number, got {v!r}"))
    return out
