"""Inference payloads -> validated rows for the drift detector.

The detector receives what the serving side logged: the app's ``/predict`` JSON
(``{"wines": [{feature: value, ..., "wine_type": "red"}]}``), Open Inference Protocol V2 requests
(one named tensor per feature plus ``wine_type``/``is_white``, or the [N, 12] model matrix), and
Seldon-protocol requests (``{"data": {"names": [...], "ndarray": [[...]]}}``). This module only
tells the formats apart: the rows are read by the contract's parsers (``contract/parsers.py``),
with the rules and the problem reports of the app's own endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Final, TypeGuard

import numpy as np

from winequality.contract import schema
from winequality.contract.features import BoolArray, FloatArray, range_problems
from winequality.contract.parsers import records_to_rows, v2_request, wines_to_rows
from winequality.contract.problems import FeatureError, Problem

_WINES: Final = itemgetter("wines")


class PayloadError(ValueError):
    """A body that is not one of the accepted request formats (the message says why)."""


def rows_from_payload(body: Any) -> tuple[FloatArray, BoolArray]:
    """Any accepted request body -> (measurements [n, 11], is_white [n]).

    Raises PayloadError for an unknown shape and FeatureError (row, field, reason) for bad values.
    """
    if not isinstance(body, Mapping):
        raise PayloadError(f"the body must be a JSON object, got {type(body).__name__}")
    if "wines" in body:
        wines = body["wines"]
        if type(wines) is not list or not wines:
            raise PayloadError("'wines' must be a non-empty list of objects")
        return _rows(wines)
    if "inputs" in body:
        return _rows_from_v2(body)
    if isinstance(body.get("data"), Mapping) and "ndarray" in body["data"]:
        return _rows_from_seldon(body["data"])
    raise PayloadError(
        "unknown request format: expected 'wines' (app /predict), 'inputs' (V2 inference "
        "request) or 'data.names' + 'data.ndarray' (Seldon protocol)"
    )


def rows_from_app_payloads(bodies: Sequence[Any]) -> tuple[FloatArray, BoolArray] | None:
    """The rows of many app ``/predict`` bodies at once, or None if any body needs a closer look.

    What the app's payload logger sends: every body ``{"wines": [...]}`` with well-formed
    wines. One pass over all their wines (``records_to_rows``) instead of one numpy conversion
    per body; anything else, including values out of range, is left to ``rows_from_payload``
    body by body, which names the problem.
    """
    # Checked a column at a time (``map`` runs in C), not body by body: one body per request.
    if set(map(type, bodies)) != {dict} or set(map(len, bodies)) != {1}:
        return None
    try:
        lists = list(map(_WINES, bodies))
    except KeyError:
        return None
    if set(map(type, lists)) != {list} or not all(lists):
        return None
    rows = records_to_rows(list(chain.from_iterable(lists)))
    if rows is None or range_problems(rows[0]):
        return None
    measurements, is_white = rows
    return measurements, np.asarray(is_white) == 1.0


def _rows(records: list[Any]) -> tuple[FloatArray, BoolArray]:
    measurements, is_white = wines_to_rows(records)
    return measurements, np.asarray(is_white) == 1.0


def _wine_type(flag: Any) -> Any:
    """``is_white`` (0/1) as the ``wine_type`` the contract reads; other values stay as they
    are, to be refused with the wine type's reason."""
    if type(flag) in (int, float) and flag in (0, 1):
        return schema.WINE_TYPES[int(flag)]
    return flag


def _with_wine_type(record: dict[str, Any]) -> dict[str, Any]:
    if schema.IS_WHITE in record and schema.WINE_TYPE not in record:
        record[schema.WINE_TYPE] = _wine_type(record.pop(schema.IS_WHITE))
    return record


def _rows_from_v2(body: Mapping[str, Any]) -> tuple[FloatArray, BoolArray]:
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("'inputs' must be a non-empty list of tensors")
    # Only string names: a list or an object is no tensor name (and cannot be a dict key).
    by_name = {
        t["name"]: t for t in inputs if isinstance(t, Mapping) and type(t.get("name")) is str
    }
    if set(schema.FEATURE_NAMES) & by_name.keys():
        tensor = by_name.get(schema.IS_WHITE)
        if tensor is not None and schema.WINE_TYPE not in by_name:
            data = tensor.get("data")
            flat = list(chain.from_iterable(data)) if _nested(data) else data
            wine_type = {
                "name": schema.WINE_TYPE,
                "datatype": "BYTES",
                "shape": tensor.get("shape"),
                "data": [_wine_type(v) for v in flat] if isinstance(flat, list) else flat,
            }
            inputs = [wine_type if t is tensor else t for t in inputs]
        return v2_request({**body, "inputs": inputs}, None).rows
    matrix = by_name.get(schema.ONNX_INPUT)
    if matrix is None:
        missing = [n for n in schema.FEATURE_NAMES if n not in by_name]
        raise PayloadError(
            f"V2 request without the feature tensors {missing} and without an "
            f"[n, {schema.N_MODEL_COLUMNS}] '{schema.ONNX_INPUT}' matrix"
        )
    return _rows_from_matrix(matrix)


def _nested(data: Any) -> TypeGuard[list[list[Any]]]:
    return isinstance(data, list) and bool(data) and all(isinstance(row, list) for row in data)


def _rows_from_matrix(tensor: Mapping[str, Any]) -> tuple[FloatArray, BoolArray]:
    """The [n, 12] model matrix (``schema.MODEL_COLUMNS``), as the ONNX model receives it."""
    name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
    if not isinstance(shape, list) or not all(type(s) is int for s in shape):
        raise PayloadError(f"input {name!r}: 'shape' must be a list of integers")
    if len(shape) != 2 or shape[1] != schema.N_MODEL_COLUMNS:
        raise PayloadError(
            f"input {name!r} must have shape [n, {schema.N_MODEL_COLUMNS}], got {shape}"
        )
    if not isinstance(data, list):
        raise PayloadError(f"input {name!r}: 'data' must be a list")
    flat = list(chain.from_iterable(data)) if _nested(data) else data
    if len(flat) != shape[0] * shape[1] or not flat:
        raise PayloadError(f"input {name!r}: {len(flat)} values do not fill shape {shape}")
    width = schema.N_MODEL_COLUMNS
    records = [
        _with_wine_type(dict(zip(schema.MODEL_COLUMNS, flat[i : i + width], strict=True)))
        for i in range(0, len(flat), width)
    ]
    return _rows(records)


def _rows_from_seldon(data: Mapping[str, Any]) -> tuple[FloatArray, BoolArray]:
    names, rows = data.get("names"), data.get("ndarray")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PayloadError("'data.names' must be a list of column names")
    if not isinstance(rows, list) or not rows:
        raise PayloadError("'data.ndarray' must be a non-empty list of rows")
    bad = [
        Problem(i, None, f"must be a list of {len(names)} values", "shape", ("data", "ndarray", i))
        for i, row in enumerate(rows)
        if not isinstance(row, list) or len(row) != len(names)
    ]
    if bad:
        raise FeatureError(bad)
    return _rows([_with_wine_type(dict(zip(names, row, strict=True))) for row in rows])
