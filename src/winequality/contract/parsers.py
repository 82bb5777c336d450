"""Inputs -> validated rows, written once for every component: wine records, V2 tensors, frames.

The app's ``/predict`` and V2 ``infer``, the drift detector, the feedback store and training read
their inputs here. Each JSON reader tries an optimistic pass first (shape checks with
set/itemgetter operations, one numpy conversion, the vectorised range check of
``contract/features.py``); only when that pass finds anything wrong does a second, thorough pass
walk the input to name every offending wine, field and reason in a ``FeatureError``. Valid inputs
pay for the cheap pass only, and invalid ones get full reports. Requests of up to
``SMALL_ROWS`` wines (or V2 rows) take an optimistic pass in plain Python instead: numpy's fixed
cost per call is several times the work on so few values. Whatever that pass does not accept
goes through the numpy pass, so the answers and refusals are the same either way.

The rules are the ones ``serving/schemas.py`` documents: exactly the schema's fields, numbers only
(no booleans, strings or nulls), finite and within the physical ranges, ``wine_type`` red|white.
A problem's ``loc`` starts with ``"body"``, the document read.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter, le
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from winequality.contract import schema
from winequality.contract.features import (
    WINE_TYPE_FLAGS,
    BoolArray,
    FloatArray,
    Matrix,
    Rows,
    range_problems,
    rows_to_matrix,
    validate_rows,
    wine_type_problem,
)
from winequality.contract.problems import FeatureError, Loc, Problem, in_order

NUMBER_TYPES: Final = frozenset({float, int})
"""What a measurement may be in JSON: int or float exactly (a boolean is an int subclass)."""
V2_BYTES_RED: Final = len(b"red").to_bytes(4, "little") + b"red"
V2_BYTES_WHITE: Final = len(b"white").to_bytes(4, "little") + b"white"
"""``wine_type`` values as V2 BYTES tensors carry them in binary data: a 4-byte little-endian
length, then the bytes."""

_MEASUREMENTS = itemgetter(*schema.FEATURE_NAMES)
_WINE_TYPE = itemgetter(schema.WINE_TYPE)
_ONLY_DICT: Final = {dict}
_RECORD_SIZE: Final = {len(schema.FEATURE_NAMES) + 1}
_WINE_KEYS: Final = frozenset((*schema.FEATURE_NAMES, schema.WINE_TYPE))
_FILL: Final = tuple(f.example for f in schema.FEATURES)
_MINIMA: Final = tuple(f.minimum for f in schema.FEATURES)
_MAXIMA: Final = tuple(f.maximum for f in schema.FEATURES)
SMALL_ROWS: Final = 8
"""Up to this many rows, the optimistic pass runs in plain Python (see the module docstring)."""
V2_DATATYPES: Final[dict[str, frozenset[str]]] = {
    **{n: frozenset({"FP32", "FP64"}) for n in schema.FEATURE_NAMES},
    schema.WINE_TYPE: frozenset({"BYTES"}),
}
"""The datatypes each V2 input tensor may declare."""


def _type_name(value: object) -> str:
    """JSON's name for the type of a decoded value."""
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _refuse(loc: Loc, reason: str, kind: str) -> FeatureError:
    """A refusal of the input as a whole (no one row or field at fault)."""
    return FeatureError([Problem(None, None, reason, kind, loc)])


def parse_json(body: bytes | str) -> Any:
    """orjson refuses NaN/Infinity literals and overflowing numbers, as strict JSON requires."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _refuse(("body",), f"invalid JSON: {exc}", "json_invalid") from None


# --- wine records: {"wines": [{...}, ...]} ------------------------------------------------------


def records_to_rows(wines: list[Any]) -> tuple[FloatArray, list[float]] | None:
    """JSON wine records -> ([N, 11] measurements, is_white 0.0/1.0 per wine), or None.

    The fast path of every reader of ``{"wines": [...]}``: None as soon as a record is not exactly
    the schema's fields with numbers (no booleans) and ``red``/``white``; ranges are not checked
    here. The per-record work runs in C (``map`` over ``itemgetter``s), not in a Python loop.
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


def _measurements_ok(values: tuple[Any, ...]) -> list[float] | None:
    """One wine's measurements (schema order) as floats when all are numbers within their
    physical ranges, else None. NaN and infinities fail the comparisons."""
    if not set(map(type, values)) <= NUMBER_TYPES:
        return None
    try:
        floats = list(map(float, values))
    except OverflowError:
        return None
    if all(map(le, _MINIMA, floats)) and all(map(le, floats, _MAXIMA)):
        return floats
    return None


def small_records_matrix(wines: list[Any]) -> Matrix | None:
    """A few valid wine records -> the model matrix, in plain Python; None when any record is
    not exactly valid (the numpy pass then decides, and names the problems)."""
    rows = []
    for wine in wines:
        if type(wine) is not dict or len(wine) != len(_WINE_KEYS):
            return None
        try:
            values = _MEASUREMENTS(wine)
            flag = WINE_TYPE_FLAGS[_WINE_TYPE(wine)]
        except (KeyError, TypeError):  # a field missing; a wine type unknown or unhashable
            return None
        floats = _measurements_ok(values)
        if floats is None:
            return None
        floats.append(flag)
        rows.append(floats)
    # float64 -> float32 as rows_to_matrix casts: the same matrix as the numpy pass.
    return np.array(rows, dtype=np.float32)


def wines_to_rows(wines: list[Any]) -> tuple[FloatArray, list[float]]:
    """A list of wine records -> (measurements, is_white), or ``FeatureError`` naming each
    problem of each wine."""
    rows = records_to_rows(wines)
    if rows is None or range_problems(rows[0]):
        raise FeatureError(wine_problems(wines))
    return rows


def parse_wines(doc: Any, max_rows: int | None = None) -> Matrix:
    """``{"wines": [{...}, ...]}`` (decoded) -> float32 [N, 12] matrix, or ``FeatureError``."""
    wines = doc.get("wines") if type(doc) is dict and len(doc) == 1 else None
    if type(wines) is list and wines and (max_rows is None or len(wines) <= max_rows):
        if len(wines) <= SMALL_ROWS and (matrix := small_records_matrix(wines)) is not None:
            return matrix
        if (rows := records_to_rows(wines)) is not None and not range_problems(rows[0]):
            return rows_to_matrix(*rows)
    raise FeatureError(_wines_document_problems(doc, max_rows))


def parse_predict(body: bytes, max_rows: int) -> Matrix:
    """The JSON text of ``{"wines": [...]}`` -> the model matrix, or ``FeatureError``."""
    return parse_wines(parse_json(body), max_rows)


def _wines_document_problems(doc: Any, max_rows: int | None) -> list[Problem]:
    if type(doc) is not dict:
        return [
            Problem(
                None,
                None,
                f"must be a JSON object with a 'wines' array, got {_type_name(doc)}",
                "object_type",
                ("body",),
            )
        ]
    problems = [
        Problem(
            None,
            None,
            "unknown field (only 'wines' is accepted)",
            "extra_forbidden",
            ("body", str(k)),
        )
        for k in doc
        if k != "wines"
    ]
    wines = doc.get("wines")
    loc: Loc = ("body", "wines")
    if "wines" not in doc:
        problems.append(Problem(None, None, "field required", "missing", loc))
    elif type(wines) is not list:
        problems.append(
            Problem(None, None, f"must be an array, got {_type_name(wines)}", "list_type", loc)
        )
    elif not wines:
        problems.append(Problem(None, None, "must contain at least 1 wine", "too_short", loc))
    elif max_rows is not None and len(wines) > max_rows:
        problems.append(
            Problem(
                None,
                None,
                f"at most {max_rows} wines per request, got {len(wines)}",
                "too_long",
                loc,
            )
        )
    else:
        problems.extend(wine_problems(wines))
    return problems


def wine_problems(wines: list[Any]) -> list[Problem]:
    """Every problem of every wine (index, field, reason); empty when all are valid."""
    problems: list[Problem] = []
    # Cells that are missing or not numbers get a valid filler, so that the vectorised range check
    # reports only values that were numbers but impossible ones.
    measurements = np.array([_FILL] * len(wines), dtype=np.float64)
    for i, wine in enumerate(wines):
        loc: Loc = ("body", "wines", i)
        if type(wine) is not dict:
            problems.append(
                Problem(i, None, f"must be an object, got {_type_name(wine)}", "object_type", loc)
            )
            continue
        problems.extend(
            Problem(i, str(k), "unknown field", "extra_forbidden", (*loc, str(k)))
            for k in wine
            if k not in _WINE_KEYS
        )
        for j, name in enumerate(schema.FEATURE_NAMES):
            if name not in wine:
                problems.append(Problem(i, name, "field required", "missing", (*loc, name)))
                continue
            value = wine[name]
            if type(value) not in NUMBER_TYPES:
                problems.append(
                    Problem(
                        i,
                        name,
                        f"must be a number, got {_type_name(value)}",
                        "number_type",
                        (*loc, name),
                    )
                )
                continue
            try:
                measurements[i, j] = float(value)
            except OverflowError:
                measurements[i, j] = math.inf
        wine_loc = (*loc, schema.WINE_TYPE)
        if schema.WINE_TYPE not in wine:
            problems.append(Problem(i, schema.WINE_TYPE, "field required", "missing", wine_loc))
        else:
            wine_type = wine[schema.WINE_TYPE]
            if type(wine_type) is not str or wine_type not in WINE_TYPE_FLAGS:
                problems.append(wine_type_problem(i, wine_type, wine_loc))
    problems.extend(
        Problem(
            row,
            schema.FEATURE_NAMES[col],
            reason,
            "value_error",
            ("body", "wines", row, schema.FEATURE_NAMES[col]),
        )
        for row, col, reason in range_problems(measurements)
    )
    return in_order(problems)


# --- V2 (Open Inference Protocol) requests: named tensors, JSON or binary data -----------------


@dataclass(frozen=True, slots=True)
class V2Request:
    matrix: Matrix
    measurements: FloatArray
    """The [N, 11] measurements at the precision they were sent (the matrix is float32)."""
    id: str | None
    column_shape: bool
    """True when the inputs had shape [N, 1] (outputs then use it too), False for [N]."""
    outputs: tuple[str, ...]
    """Requested output names, in order (all outputs when the request names none)."""

    @property
    def rows(self) -> Rows:
        return self.measurements, self.matrix[:, -1] == 1.0


TensorData = list[Any] | npt.NDArray[Any]
"""A tensor's values: a JSON list, or an array decoded from the binary data extension."""
_BINARY_DTYPES: Final = {"FP32": "<f4", "FP64": "<f8"}


def parse_v2_infer(body: bytes, max_rows: int | None, json_length: int | None = None) -> V2Request:
    """A V2 inference request with named tensors -> the model matrix (or ``FeatureError``).

    ``json_length`` is the ``Inference-Header-Content-Length`` of Triton's binary tensor data
    extension (what ``tritonclient`` sends by default): the JSON header is followed by the raw
    tensor bytes, in input order, each input giving its ``binary_data_size``.
    """
    raw = b""
    if json_length is not None:
        if not 0 < json_length <= len(body):
            raise _refuse(
                ("header", "inference-header-content-length"),
                f"{json_length} does not fit a body of {len(body)} bytes",
                "binary_header",
            )
        body, raw = body[:json_length], body[json_length:]
    return v2_request(parse_json(body), max_rows, raw if json_length is not None else None)


def v2_request(doc: Any, max_rows: int | None, raw: bytes | None = None) -> V2Request:
    """A decoded V2 request (``raw``: its binary tensor data, if it used the extension)."""
    small = _small_v2_request(doc, max_rows, raw)
    if small is not None:
        return small
    if type(doc) is not dict:
        raise _refuse(("body",), f"must be an object, got {_type_name(doc)}", "object_type")
    request_id = doc.get("id")
    if request_id is not None and type(request_id) is not str:
        raise _refuse(("body", "id"), "must be a string", "string_type")
    parameters = doc.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise _refuse(("body", "parameters"), "must be an object", "dict_type")
    inputs = doc.get("inputs")
    if type(inputs) is not list:
        raise _refuse(("body", "inputs"), "must be an array of tensors", "list_type")
    problems: list[Problem] = []
    binary = _v2_binary(inputs, raw, problems) if raw is not None else {}
    tensors: dict[str, TensorData] = {}
    shapes: dict[str, list[int]] = {}
    for t, tensor in enumerate(inputs):
        loc: Loc = ("body", "inputs", t)
        parsed = _v2_tensor(tensor, loc, problems, binary)
        if parsed is None:
            continue
        name, shape, data = parsed
        if name in tensors:
            problems.append(Problem(None, name, f"duplicate tensor {name!r}", "duplicate", loc))
            continue
        tensors[name] = data
        shapes[name] = shape
    problems.extend(
        Problem(None, name, f"missing input tensor {name!r}", "missing", ("body", "inputs"))
        for name in V2_DATATYPES
        if name not in tensors and not any(p.field == name for p in problems)
    )
    outputs = _v2_outputs(doc.get("outputs"), problems)
    if problems:
        raise FeatureError(problems)
    lengths = {len(d) for d in tensors.values()}
    if len(lengths) != 1:
        sizes = {name: len(d) for name, d in tensors.items()}
        raise _refuse(("body", "inputs"), f"tensors differ in length: {sizes}", "shape_mismatch")
    (n,) = lengths
    if n == 0 or (max_rows is not None and n > max_rows):
        most = "" if max_rows is None else f" to {max_rows}"
        raise _refuse(("body", "inputs"), f"tensors must hold 1{most} rows, got {n}", "size")
    column_shape = all(len(s) == 2 for s in shapes.values())
    matrix, measurements = _v2_matrix(tensors, n)
    return V2Request(matrix, measurements, request_id, column_shape, outputs)


V2_STRUCT_CODES: Final = {"FP32": ("f", 4), "FP64": ("d", 8)}
"""(``struct`` code, bytes) of a measurement tensor's element in binary data, by datatype."""


def _small_v2_request(  # noqa: PLR0911, PLR0912 (one early return per refusal)
    doc: Any, max_rows: int | None, raw: bytes | None
) -> V2Request | None:
    """A valid V2 request of up to ``SMALL_ROWS`` rows, all JSON tensors or all binary, in
    plain Python; None for anything else (``v2_request``'s full pass then decides)."""
    if type(doc) is not dict:
        return None
    inputs, request_id, requested = doc.get("inputs"), doc.get("id"), doc.get("outputs")
    if type(inputs) is not list or len(inputs) != len(V2_DATATYPES):
        return None
    if request_id is not None and type(request_id) is not str:
        return None
    parameters = doc.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        return None
    outputs: tuple[str, ...] = schema.OUTPUTS
    if requested is not None:
        refused: list[Problem] = []
        outputs = _v2_outputs(requested, refused)
        if refused:
            return None
    columns: dict[str, list[Any]] = {}
    column_shape = True
    offset = 0
    for tensor in inputs:
        column = _small_v2_column(tensor, raw, offset)
        if column is None or column[0] in columns:
            return None
        name, data, two_dims, offset = column
        columns[name] = data
        column_shape = column_shape and two_dims
    n = len(columns[schema.WINE_TYPE])
    if (raw is not None and offset != len(raw)) or (max_rows is not None and n > max_rows):
        return None
    if any(len(d) != n for d in columns.values()):
        return None
    try:
        flags = [WINE_TYPE_FLAGS[v] for v in columns[schema.WINE_TYPE] if type(v) is str]
    except KeyError:
        return None
    rows = []
    for i in range(n):
        floats = _measurements_ok(tuple(columns[name][i] for name in schema.FEATURE_NAMES))
        if floats is None:
            return None
        rows.append(floats)
    if len(flags) != n:
        return None
    measurements = np.array(rows, dtype=np.float64)
    matrix = np.array([[*row, flag] for row, flag in zip(rows, flags, strict=True)], np.float32)
    return V2Request(matrix, measurements, request_id, column_shape, outputs)


def _small_v2_column(  # noqa: PLR0911, PLR0912 (one early return per refusal)
    tensor: Any, raw: bytes | None, offset: int
) -> tuple[str, list[Any], bool, int] | None:
    """(name, values, shape [N, 1], offset of the next binary chunk) of one small valid input
    tensor, or None."""
    if type(tensor) is not dict:
        return None
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if type(name) is not str or name not in V2_DATATYPES:
        return None
    if type(datatype) is not str or datatype not in V2_DATATYPES[name]:
        return None
    if type(shape) is not list or not 1 <= len(shape) <= 2 or type(shape[0]) is not int:
        return None
    if len(shape) == 2 and (type(shape[1]) is not int or shape[1] != 1):
        return None
    n = shape[0]
    if not 1 <= n <= SMALL_ROWS:
        return None
    params = tensor.get("parameters")
    if params is not None and type(params) is not dict:
        return None
    if raw is None:
        data = tensor.get("data")
        if type(data) is not list or len(data) != n:
            return None
        if type(data[0]) is list:
            if not all(type(row) is list and len(row) == 1 for row in data):
                return None
            data = [row[0] for row in data]
        return name, data, len(shape) == 2, offset
    size = params.get("binary_data_size") if params is not None else None
    if type(size) is not int or size < 0 or offset + size > len(raw):
        return None
    chunk = raw[offset : offset + size]
    if datatype == "BYTES":
        try:
            data = _decode_bytes_tensor(chunk)
        except ValueError:
            return None
    else:
        code, width = V2_STRUCT_CODES[datatype]
        if size != n * width:
            return None
        data = list(struct.unpack(f"<{n}{code}", chunk))
    if len(data) != n:
        return None
    return name, data, len(shape) == 2, offset + size


def _v2_tensor(  # noqa: PLR0911 (one early return per refused part of the tensor)
    tensor: Any,
    loc: Loc,
    problems: list[Problem],
    binary: dict[str, TensorData],
) -> tuple[str, list[int], TensorData] | None:
    if type(tensor) is not dict:
        problems.append(Problem(None, None, "must be an object", "object_type", loc))
        return None
    name = tensor.get("name")
    if type(name) is not str or name not in V2_DATATYPES:
        problems.append(
            Problem(
                None,
                name if type(name) is str else None,
                f"unknown input tensor {name!r}; expected {list(V2_DATATYPES)}",
                "extra_forbidden",
                (*loc, "name"),
            )
        )
        return None
    datatype = tensor.get("datatype")
    if type(datatype) is not str or datatype not in V2_DATATYPES[name]:
        problems.append(
            Problem(
                None,
                name,
                f"must be one of {sorted(V2_DATATYPES[name])}, got {datatype!r}",
                "datatype",
                (*loc, "datatype"),
            )
        )
        return None
    parameters = tensor.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        problems.append(Problem(None, name, "must be an object", "dict_type", (*loc, "parameters")))
        return None
    shape = tensor.get("shape")
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or any(type(d) is not int or d < 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        problems.append(
            Problem(None, name, f"must be [N] or [N, 1], got {shape!r}", "shape", (*loc, "shape"))
        )
        return None
    data = binary[name] if name in binary else tensor.get("data")
    if type(data) is not list and not isinstance(data, np.ndarray):
        problems.append(
            Problem(None, name, "must be an array (row-major)", "list_type", (*loc, "data"))
        )
        return None
    if type(data) is list and data and type(data[0]) is list:
        # Nested [[x], [y]] is the non-flattened form of [N, 1], which the V2 spec also allows.
        if not all(type(row) is list and len(row) == 1 for row in data):
            problems.append(
                Problem(None, name, "nested rows must hold one value each", "shape", (*loc, "data"))
            )
            return None
        data = [row[0] for row in data]
    if len(data) != shape[0]:
        problems.append(
            Problem(
                None,
                name,
                f"holds {len(data)} values but shape {shape} needs {shape[0]}",
                "shape",
                (*loc, "data"),
            )
        )
        return None
    return name, shape, data


def _v2_binary(inputs: list[Any], raw: bytes, problems: list[Problem]) -> dict[str, TensorData]:
    """Decode the binary sections of the inputs that declare a ``binary_data_size``.

    Numbers stay arrays (no per-value Python objects: they are numbers by construction); a
    ``wine_type`` tensor of only ``red``/``white`` becomes its 0/1 column at once.
    """
    decoded: dict[str, TensorData] = {}
    offset = 0
    for t, tensor in enumerate(inputs):
        params = tensor.get("parameters") if type(tensor) is dict else None
        size = params.get("binary_data_size") if type(params) is dict else None
        if size is None:
            continue
        loc: Loc = ("body", "inputs", t, "parameters", "binary_data_size")
        name = tensor.get("name")
        if type(size) is not int or size < 0 or offset + size > len(raw):
            problems.append(
                Problem(None, name, f"{size!r} bytes do not fit the binary data", "binary", loc)
            )
            return decoded
        chunk = raw[offset : offset + size]
        offset += size
        datatype = tensor.get("datatype")
        if type(name) is not str or type(datatype) is not str:
            continue  # _v2_tensor names the problem
        if datatype in _BINARY_DTYPES:
            width = int(datatype[2:]) // 8
            if size % width:
                problems.append(
                    Problem(None, name, f"{size} is not a multiple of {width}", "binary", loc)
                )
                continue
            decoded[name] = np.frombuffer(chunk, dtype=_BINARY_DTYPES[datatype])
        elif datatype == "BYTES":
            flags = _wine_type_flags(chunk) if name == schema.WINE_TYPE else None
            if flags is not None:
                decoded[name] = flags
                continue
            try:
                decoded[name] = _decode_bytes_tensor(chunk)
            except ValueError as exc:
                problems.append(Problem(None, name, str(exc), "binary", loc))
        # Unknown datatypes are reported by _v2_tensor with the tensor's other problems.
    if offset != len(raw) and not problems:
        problems.append(
            Problem(
                None,
                None,
                f"{len(raw) - offset} trailing bytes after the declared binary data",
                "binary",
                ("body",),
            )
        )
    return decoded


def v2_wine_type_digits(chunk: bytes) -> bytes | None:
    """``b"0"`` (red) or ``b"1"`` (white) per element of a BYTES tensor holding only ``red`` and
    ``white``, else None.

    Each element becomes one digit by two C-level replaces. The chunk is made of such elements
    only if nothing but digits is left and the digits account for every byte (a stray ``0`` or
    ``1`` byte would not).
    """
    digits = chunk.replace(V2_BYTES_RED, b"0").replace(V2_BYTES_WHITE, b"1")
    if not digits or digits.strip(b"01"):
        return None
    whites = digits.count(b"1")
    if len(V2_BYTES_RED) * (len(digits) - whites) + len(V2_BYTES_WHITE) * whites != len(chunk):
        return None
    return digits


def _wine_type_flags(chunk: bytes) -> npt.NDArray[np.float32] | None:
    """is_white (0.0/1.0) of a BYTES tensor holding only ``red`` and ``white``, else None."""
    digits = v2_wine_type_digits(chunk)
    if digits is None:
        return None
    return np.frombuffer(digits, dtype=np.uint8).astype(np.float32) - ord("0")


def _decode_bytes_tensor(chunk: bytes) -> list[Any]:
    """Triton's BYTES serialisation: per element a 4-byte little-endian length, then the bytes."""
    values: list[Any] = []
    pos = 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise ValueError("truncated BYTES element length")
        length = int.from_bytes(chunk[pos : pos + 4], "little")
        pos += 4
        if pos + length > len(chunk):
            raise ValueError("truncated BYTES element")
        try:
            values.append(chunk[pos : pos + length].decode())
        except UnicodeDecodeError:
            raise ValueError(f"BYTES element {len(values)} is not UTF-8") from None
        pos += length
    return values


def _v2_is_white(wine_types: TensorData, problems: list[Problem]) -> npt.NDArray[np.float32]:
    if isinstance(wine_types, np.ndarray):  # already the 0/1 column (binary red/white)
        return wine_types.astype(np.float32, copy=False)
    is_white = np.zeros(len(wine_types), dtype=np.float32)
    for i, value in enumerate(wine_types):
        flag = WINE_TYPE_FLAGS.get(value) if type(value) is str else None
        if flag is None:
            problems.append(wine_type_problem(i, value, ("body", "inputs", schema.WINE_TYPE, i)))
        else:
            is_white[i] = flag
    return is_white


def _v2_outputs(requested: Any, problems: list[Problem]) -> tuple[str, ...]:
    if requested is None:
        return schema.OUTPUTS
    names: list[str] = []
    if type(requested) is list:
        for k, item in enumerate(requested):
            name = item.get("name") if type(item) is dict else None
            parameters = item.get("parameters") if type(item) is dict else None
            if parameters is not None and type(parameters) is not dict:
                problems.append(
                    Problem(None, None, "must be an object", "dict_type", ("body", "outputs", k))
                )
            elif name not in schema.OUTPUTS:
                problems.append(
                    Problem(
                        None,
                        None,
                        f"unknown output {name!r}; available: {list(schema.OUTPUTS)}",
                        "extra_forbidden",
                        ("body", "outputs", k),
                    )
                )
            else:
                names.append(name)
    else:
        problems.append(Problem(None, None, "must be an array", "list_type", ("body", "outputs")))
    return tuple(names)


def _v2_matrix(tensors: dict[str, TensorData], n: int) -> tuple[Matrix, FloatArray]:
    problems: list[Problem] = []
    matrix = np.empty((n, schema.N_MODEL_COLUMNS), dtype=np.float32)
    measurements = np.empty((n, len(schema.FEATURE_NAMES)), dtype=np.float64)
    for j, name in enumerate(schema.FEATURE_NAMES):
        data = tensors[name]
        if isinstance(data, np.ndarray):  # binary: numbers by construction
            measurements[:, j] = data
            continue
        if set(map(type, data)) <= NUMBER_TYPES:
            try:
                measurements[:, j] = data
                continue
            except OverflowError:
                pass
        for i, value in enumerate(data):
            if type(value) not in NUMBER_TYPES:
                problems.append(
                    Problem(
                        i,
                        name,
                        f"must be a number, got {_type_name(value)}",
                        "number_type",
                        ("body", "inputs", name, i),
                    )
                )
                measurements[i, j] = _FILL[j]
            else:
                try:
                    measurements[i, j] = float(value)
                except OverflowError:
                    measurements[i, j] = math.inf
    problems.extend(
        Problem(
            row,
            schema.FEATURE_NAMES[col],
            reason,
            "value_error",
            ("body", "inputs", schema.FEATURE_NAMES[col], row),
        )
        for row, col, reason in range_problems(measurements)
    )
    matrix[:, -1] = _v2_is_white(tensors[schema.WINE_TYPE], problems)
    if problems:
        raise FeatureError(in_order(problems))
    matrix[:, :-1] = measurements
    return matrix, measurements


# --- frames: a table with the feature columns and wine_type ------------------------------------


def frame_rows(frame: Any) -> tuple[FloatArray, BoolArray]:
    """A DataFrame with ``schema.FEATURE_NAMES`` and ``wine_type`` -> validated rows."""
    missing = [n for n in (*schema.FEATURE_NAMES, schema.WINE_TYPE) if n not in frame.columns]
    if missing:
        raise FeatureError([Problem(None, n, "missing column", "missing") for n in missing])
    return validate_rows(
        frame.loc[:, list(schema.FEATURE_NAMES)].to_numpy(dtype=np.float64),
        frame[schema.WINE_TYPE].to_numpy(),
    )


def frame_to_matrix(frame: Any) -> Matrix:
    """A DataFrame with ``schema.FEATURE_NAMES`` and ``wine_type`` -> the model matrix."""
    return rows_to_matrix(*frame_rows(frame))
