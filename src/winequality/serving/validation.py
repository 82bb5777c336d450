"""Request bodies -> validated model matrices, without pydantic on the hot path.

Each parser tries an optimistic pass first (shape checks with set/itemgetter operations, one numpy
conversion, the vectorised range check of ``contract/features.py``); only when that pass finds
anything wrong does a second, thorough pass walk the body to name every offending wine, field and
reason. Valid requests therefore pay for the cheap pass only, and invalid ones get full reports.

The rules are the ones ``serving/schemas.py`` documents: exactly the schema's fields, numbers only
(no booleans, strings or nulls), finite and within the physical ranges, ``wine_type`` red|white.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from winequality.contract import schema
from winequality.contract.features import (
    NUMBER_TYPES,
    V2_BYTES_RED,
    V2_BYTES_WHITE,
    WINE_TYPE_FLAGS,
    Matrix,
    range_problems,
    records_to_rows,
)

MAX_REPORTED: Final = 100
"""Problems listed in one error body; a 10,000-row garbage request must not echo 120,000 lines."""

_WINE_KEYS: Final = frozenset((*schema.FEATURE_NAMES, schema.WINE_TYPE))
_FILL: Final = tuple(f.example for f in schema.FEATURES)
_V2_DATATYPES: Final[dict[str, frozenset[str]]] = {
    **{n: frozenset({"FP32", "FP64"}) for n in schema.FEATURE_NAMES},
    schema.WINE_TYPE: frozenset({"BYTES"}),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """Why (``msg``, ``kind``) a value at ``loc`` was refused; ``index``/``field`` for clients."""

    loc: tuple[str | int, ...]
    msg: str
    kind: str
    index: int | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "loc": list(self.loc),
            "index": self.index,
            "field": self.field,
            "msg": self.msg,
            "type": self.kind,
        }


class RequestError(Exception):
    """A request the API refuses; ``status`` is the HTTP status (4xx) to answer with."""

    def __init__(
        self,
        status: int,
        problems: list[Problem],
        summary: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.status = status
        self.problems = problems
        self.kind = kind or (problems[0].kind if problems else "invalid")
        if summary is None:
            shown = "; ".join(_describe(p) for p in problems[:5])
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            summary = f"{len(problems)} problem(s): {shown}{more}"
        self.summary = summary
        super().__init__(summary)

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": self.summary, "detail": [p.as_dict() for p in self.problems[:MAX_REPORTED]]}
        )


def _describe(p: Problem) -> str:
    where = ".".join(str(x) for x in p.loc[1:]) or "body"
    return f"{where}: {p.msg}"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def parse_json(body: bytes) -> Any:
    """orjson refuses NaN/Infinity literals and overflowing numbers, as strict JSON requires."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            422, [Problem(("body",), f"invalid JSON: {exc}", "json_invalid")]
        ) from None


# --- POST /predict ------------------------------------------------------------------------------


def parse_predict(body: bytes, max_rows: int) -> Matrix:
    """``{"wines": [{...}, ...]}`` -> float32 [N, 12] matrix, or ``RequestError`` (422)."""
    doc = parse_json(body)
    matrix = _predict_fast(doc, max_rows)
    if matrix is None:
        _predict_slow(doc, max_rows)  # raises with the full list of problems
        raise AssertionError("the thorough pass accepted what the fast pass refused")
    return matrix


def _predict_fast(doc: Any, max_rows: int) -> Matrix | None:
    wines = doc.get("wines") if type(doc) is dict and len(doc) == 1 else None
    if type(wines) is not list or not 0 < len(wines) <= max_rows:
        return None
    rows = records_to_rows(wines)
    if rows is None:
        return None
    measurements, is_white = rows
    if range_problems(measurements):
        return None
    matrix = np.empty((len(wines), schema.N_MODEL_COLUMNS), dtype=np.float32)
    matrix[:, :-1] = measurements
    matrix[:, -1] = is_white
    return matrix


def _predict_slow(doc: Any, max_rows: int) -> None:
    problems: list[Problem] = []
    if type(doc) is not dict:
        raise RequestError(
            422,
            [
                Problem(
                    ("body",),
                    f"must be a JSON object with a 'wines' array, got {_type_name(doc)}",
                    "object_type",
                )
            ],
        )
    problems.extend(
        Problem(("body", str(k)), "unknown field (only 'wines' is accepted)", "extra_forbidden")
        for k in doc
        if k != "wines"
    )
    wines = doc.get("wines")
    if "wines" not in doc:
        problems.append(Problem(("body", "wines"), "field required", "missing"))
    elif type(wines) is not list:
        problems.append(
            Problem(("body", "wines"), f"must be an array, got {_type_name(wines)}", "list_type")
        )
    elif not wines:
        problems.append(Problem(("body", "wines"), "must contain at least 1 wine", "too_short"))
    elif len(wines) > max_rows:
        problems.append(
            Problem(
                ("body", "wines"),
                f"at most {max_rows} wines per request, got {len(wines)}",
                "too_long",
            )
        )
    else:
        problems.extend(wine_problems(wines))
    raise RequestError(422, problems)


def wine_problems(wines: list[Any]) -> list[Problem]:
    """Every problem of every wine (index, field, reason); empty when all are valid."""
    problems: list[Problem] = []
    # Cells that are missing or not numbers get a valid filler, so that the vectorised range check
    # reports only values that were numbers but impossible ones.
    measurements = np.array([_FILL] * len(wines), dtype=np.float64)
    for i, wine in enumerate(wines):
        loc = ("body", "wines", i)
        if type(wine) is not dict:
            problems.append(
                Problem(loc, f"must be an object, got {_type_name(wine)}", "object_type", i)
            )
            continue
        problems.extend(
            Problem((*loc, str(k)), "unknown field", "extra_forbidden", i, str(k))
            for k in wine
            if k not in _WINE_KEYS
        )
        for j, name in enumerate(schema.FEATURE_NAMES):
            if name not in wine:
                problems.append(Problem((*loc, name), "field required", "missing", i, name))
                continue
            value = wine[name]
            if type(value) not in NUMBER_TYPES:
                problems.append(
                    Problem(
                        (*loc, name),
                        f"must be a number, got {_type_name(value)}",
                        "number_type",
                        i,
                        name,
                    )
                )
                continue
            try:
                measurements[i, j] = float(value)
            except OverflowError:
                measurements[i, j] = math.inf
        if schema.WINE_TYPE not in wine:
            problems.append(
                Problem((*loc, schema.WINE_TYPE), "field required", "missing", i, schema.WINE_TYPE)
            )
        else:
            wine_type = wine[schema.WINE_TYPE]
            if type(wine_type) is not str or wine_type not in WINE_TYPE_FLAGS:
                problems.append(
                    Problem(
                        (*loc, schema.WINE_TYPE),
                        f"must be one of {list(schema.WINE_TYPES)}, got {wine_type!r}",
                        "literal_error",
                        i,
                        schema.WINE_TYPE,
                    )
                )
    problems.extend(
        Problem(("body", "wines", row, field), reason, "value_error", row, field)
        for row, field, reason in range_problems(measurements)
    )
    problems.sort(key=lambda p: (p.index if p.index is not None else -1, str(p.loc)))
    return problems


# --- POST /v2/models/{name}/infer ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class V2Request:
    matrix: Matrix
    id: str | None
    column_shape: bool
    """True when the inputs had shape [N, 1] (outputs then use it too), False for [N]."""
    outputs: tuple[str, ...]
    """Requested output names, in order (all outputs when the request names none)."""


_V2_OUTPUTS: Final = (schema.OUTPUT_QUALITY, schema.OUTPUT_CLASS)


def parse_v2_infer(body: bytes, max_rows: int, json_length: int | None = None) -> V2Request:
    """A V2 inference request with named tensors -> the model matrix (or ``RequestError``).

    ``json_length`` is the ``Inference-Header-Content-Length`` of Triton's binary tensor data
    extension (what ``tritonclient`` sends by default): the JSON header is followed by the raw
    tensor bytes, in input order, each input giving its ``binary_data_size``.
    """
    raw = b""
    if json_length is not None:
        if not 0 < json_length <= len(body):
            raise RequestError(
                422,
                [
                    Problem(
                        ("header", "inference-header-content-length"),
                        f"{json_length} does not fit a body of {len(body)} bytes",
                        "binary_header",
                    )
                ],
            )
        body, raw = body[:json_length], body[json_length:]
    doc = parse_json(body)
    if type(doc) is not dict:
        raise RequestError(
            422, [Problem(("body",), f"must be an object, got {_type_name(doc)}", "object_type")]
        )
    request_id = doc.get("id")
    if request_id is not None and type(request_id) is not str:
        raise RequestError(422, [Problem(("body", "id"), "must be a string", "string_type")])
    inputs = doc.get("inputs")
    if type(inputs) is not list:
        raise RequestError(
            422,
            [Problem(("body", "inputs"), "must be an array of tensors", "list_type")],
        )
    problems: list[Problem] = []
    binary = _v2_binary(inputs, raw, problems) if json_length is not None else {}
    tensors: dict[str, TensorData] = {}
    shapes: dict[str, list[int]] = {}
    for t, tensor in enumerate(inputs):
        loc: tuple[str | int, ...] = ("body", "inputs", t)
        parsed = _v2_tensor(tensor, loc, problems, binary)
        if parsed is None:
            continue
        name, shape, data = parsed
        if name in tensors:
            problems.append(Problem(loc, f"duplicate tensor {name!r}", "duplicate", None, name))
            continue
        tensors[name] = data
        shapes[name] = shape
    problems.extend(
        Problem(("body", "inputs"), f"missing input tensor {name!r}", "missing", None, name)
        for name in _V2_DATATYPES
        if name not in tensors and not any(p.field == name for p in problems)
    )
    outputs = _v2_outputs(doc.get("outputs"), problems)
    if problems:
        raise RequestError(422, problems)
    lengths = {len(d) for d in tensors.values()}
    if len(lengths) != 1:
        sizes = {name: len(d) for name, d in tensors.items()}
        raise RequestError(
            422,
            [Problem(("body", "inputs"), f"tensors differ in length: {sizes}", "shape_mismatch")],
        )
    (n,) = lengths
    if not 0 < n <= max_rows:
        raise RequestError(
            422,
            [
                Problem(
                    ("body", "inputs"), f"tensors must hold 1 to {max_rows} rows, got {n}", "size"
                )
            ],
        )
    column_shape = all(len(s) == 2 for s in shapes.values())
    return V2Request(_v2_matrix(tensors, n), request_id, column_shape, outputs)


def _v2_tensor(  # noqa: PLR0911 (one early return per refused part of the tensor)
    tensor: Any,
    loc: tuple[str | int, ...],
    problems: list[Problem],
    binary: dict[str, TensorData],
) -> tuple[str, list[int], TensorData] | None:
    if type(tensor) is not dict:
        problems.append(Problem(loc, "must be an object", "object_type"))
        return None
    name = tensor.get("name")
    if name not in _V2_DATATYPES:
        problems.append(
            Problem(
                (*loc, "name"),
                f"unknown input tensor {name!r}; expected {list(_V2_DATATYPES)}",
                "extra_forbidden",
                None,
                name if type(name) is str else None,
            )
        )
        return None
    datatype = tensor.get("datatype")
    if datatype not in _V2_DATATYPES[name]:
        problems.append(
            Problem(
                (*loc, "datatype"),
                f"must be one of {sorted(_V2_DATATYPES[name])}, got {datatype!r}",
                "datatype",
                None,
                name,
            )
        )
        return None
    shape = tensor.get("shape")
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or any(type(d) is not int or d < 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        problems.append(
            Problem((*loc, "shape"), f"must be [N] or [N, 1], got {shape!r}", "shape", None, name)
        )
        return None
    data = binary[name] if name in binary else tensor.get("data")
    if type(data) is not list and not isinstance(data, np.ndarray):
        problems.append(
            Problem((*loc, "data"), "must be an array (row-major)", "list_type", None, name)
        )
        return None
    if type(data) is list and data and type(data[0]) is list:
        # Nested [[x], [y]] is the non-flattened form of [N, 1], which the V2 spec also allows.
        if not all(type(row) is list and len(row) == 1 for row in data):
            problems.append(
                Problem((*loc, "data"), "nested rows must hold one value each", "shape", None, name)
            )
            return None
        data = [row[0] for row in data]
    if len(data) != shape[0]:
        problems.append(
            Problem(
                (*loc, "data"),
                f"holds {len(data)} values but shape {shape} needs {shape[0]}",
                "shape",
                None,
                name,
            )
        )
        return None
    return name, shape, data


_BINARY_DTYPES: Final = {"FP32": "<f4", "FP64": "<f8"}


TensorData = list[Any] | npt.NDArray[Any]
"""A tensor's values: a JSON list, or an array decoded from the binary data extension."""


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
        loc: tuple[str | int, ...] = ("body", "inputs", t, "parameters", "binary_data_size")
        name = tensor.get("name")
        if type(size) is not int or size < 0 or offset + size > len(raw):
            problems.append(
                Problem(loc, f"{size!r} bytes do not fit the binary data", "binary", None, name)
            )
            return decoded
        chunk = raw[offset : offset + size]
        offset += size
        datatype = tensor.get("datatype")
        if datatype in _BINARY_DTYPES:
            width = int(datatype[2:]) // 8
            if size % width:
                problems.append(
                    Problem(loc, f"{size} is not a multiple of {width}", "binary", None, name)
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
                problems.append(Problem(loc, str(exc), "binary", None, name))
        # Unknown datatypes are reported by _v2_tensor with the tensor's other problems.
    if offset != len(raw) and not problems:
        problems.append(
            Problem(
                ("body",),
                f"{len(raw) - offset} trailing bytes after the declared binary data",
                "binary",
            )
        )
    return decoded


def _wine_type_flags(chunk: bytes) -> npt.NDArray[np.float32] | None:
    """is_white (0.0/1.0) of a BYTES tensor holding only ``red`` and ``white``, else None.

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
            problems.append(
                Problem(
                    ("body", "inputs", schema.WINE_TYPE, i),
                    f"must be one of {list(schema.WINE_TYPES)}, got {value!r}",
                    "literal_error",
                    i,
                    schema.WINE_TYPE,
                )
            )
        else:
            is_white[i] = flag
    return is_white


def _v2_outputs(requested: Any, problems: list[Problem]) -> tuple[str, ...]:
    if requested is None:
        return _V2_OUTPUTS
    names: list[str] = []
    if type(requested) is list:
        for k, item in enumerate(requested):
            name = item.get("name") if type(item) is dict else None
            if name not in _V2_OUTPUTS:
                problems.append(
                    Problem(
                        ("body", "outputs", k),
                        f"unknown output {name!r}; available: {list(_V2_OUTPUTS)}",
                        "extra_forbidden",
                    )
                )
            else:
                names.append(name)
    else:
        problems.append(Problem(("body", "outputs"), "must be an array", "list_type"))
    return tuple(names)


def _v2_matrix(tensors: dict[str, TensorData], n: int) -> Matrix:
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
                        ("body", "inputs", name, i),
                        f"must be a number, got {_type_name(value)}",
                        "number_type",
                        i,
                        name,
                    )
                )
                measurements[i, j] = _FILL[j]
            else:
                try:
                    measurements[i, j] = float(value)
                except OverflowError:
                    measurements[i, j] = math.inf
    problems.extend(
        Problem(("body", "inputs", field, row), reason, "value_error", row, field)
        for row, field, reason in range_problems(measurements)
    )
    matrix[:, -1] = _v2_is_white(tensors[schema.WINE_TYPE], problems)
    if problems:
        problems.sort(key=lambda p: (p.index if p.index is not None else -1, str(p.loc)))
        raise RequestError(422, problems)
    matrix[:, :-1] = measurements
    return matrix
