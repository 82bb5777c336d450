"""Typed decoders for valid V2 ``infer`` requests of up to ``SMALL_ROWS`` rows, JSON tensors or
Triton's binary tensor data extension, straight into the model matrix.

msgspec checks each input tensor's name, datatype, shape and, for JSON tensors, each value while
decoding: a single JSON row with its tensors in column order (what clients send) as one fixed
tuple of structs, checked whole; anything else through a union of structs tagged by the tensor's
name, with what is left (each tensor once, the shapes agreeing) run once over the tensors here.
Whatever these decoders do not accept goes to ``contract.parsers.parse_v2_infer``, which decides
and names the problems: they only ever accept what that parser accepts, with the same matrix,
id, output shape and outputs (``tests/unit/serving/test_v2_decode.py`` compares them).

A client sends the same JSON document for every single-row request but for the values:
``V2JsonDecoder`` keeps the last one (without an id) as a template cut at each ``]``, so a
request that fits it is compared piece by piece in C and only its 12 value texts are decoded,
as one JSON array of the row's types. msgspec reading the whole 958-byte document was most of
what V2 JSON cost over ``/predict`` (the server's protocol reads the larger body for nothing
more: ``benchmarks/serving.py``'s floor-proto).

A binary request's JSON header describes where each tensor's bytes lie, not their values, and a
client sends the same header for every request of a given shape (tritonclient does, unless told
a request id): ``V2BinaryDecoder`` keeps the layout it read from a header, keyed by the header's
bytes, so a repeated header costs one dictionary lookup. A client that names a request id sends
the same header but for the id's text: the decoder keeps the last such header as a template
(the bytes around the id), so a request that fits it costs two comparisons and the id's
decoding, not the header's reading (8 µs: the JSON, a ``struct`` format compiled). The values
are read with one
precompiled ``struct.Struct`` over the whole binary section and checked against the physical
ranges in plain Python (numpy's fixed cost per call is several times the work on so few values).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter, le
from typing import Annotated, Any, Final, Literal, NamedTuple, Union

import msgspec
import numpy as np

from winequality.contract import schema
from winequality.contract.features import WINE_TYPE_FLAGS, Matrix
from winequality.contract.parsers import (
    SMALL_ROWS,
    V2_BYTES_RED,
    V2_BYTES_WHITE,
    V2_DATATYPES,
    V2_STRUCT_CODES,
    V2Request,
    v2_wine_type_digits,
)
from winequality.serving.typed_decode import MEASUREMENTS, WineType


class V2Infer(msgspec.Struct, frozen=True, gc=False):
    """What the V2 endpoint needs of a request (``contract.parsers.V2Request`` without the
    float64 measurements, which only the drift detector reads). A struct: made in C, where a
    named tuple's constructor is Python."""

    matrix: Matrix
    id: str | None
    column_shape: bool
    """True when every input had shape [N, 1] (outputs then use it too), False otherwise."""
    outputs: tuple[str, ...]
    """Requested output names, in order (all outputs when the request names none)."""

    @classmethod
    def of(cls, request: V2Request) -> V2Infer:
        return cls(request.matrix, request.id, request.column_shape, request.outputs)


_N_FEATURES: Final = len(schema.FEATURE_NAMES)
_N_INPUTS: Final = _N_FEATURES + 1
_FLAGS: Final = WINE_TYPE_FLAGS.__getitem__
_MINIMA: Final = tuple(f.minimum for f in schema.FEATURES)
_MAXIMA: Final = tuple(f.maximum for f in schema.FEATURES)
# Row-major bounds of n rows of measurements, for one ``map(le, ...)`` over all the values.
_ROW_MINIMA: Final = {n: _MINIMA * n for n in range(1, SMALL_ROWS + 1)}
_ROW_MAXIMA: Final = {n: _MAXIMA * n for n in range(1, SMALL_ROWS + 1)}


def _one_row_check() -> Callable[[Sequence[float]], bool]:
    """Whether the 11 measurements of one row lie within their ranges: one chained comparison
    per value, written from the schema's ranges (``repr`` of a float reads back as itself).
    0.28 µs where ``map(le, ...)`` over the bounds and the values, twice, took 0.53."""
    names = [f"v{i}" for i in range(_N_FEATURES)]
    checks = " and ".join(
        f"{f.minimum!r} <= {name} <= {f.maximum!r}"
        for f, name in zip(schema.FEATURES, names, strict=True)
    )
    source = f"def in_range(values):\n    {', '.join(names)} = values\n    return {checks}\n"
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 (the schema's own floats, nothing from a request)
    check: Callable[[Sequence[float]], bool] = namespace["in_range"]
    return check


_ONE_ROW_IN_RANGE: Final = _one_row_check()
_SHAPES: Final = {n: frozenset({(n,), (n, 1)}) for n in range(1, SMALL_ROWS + 1)}
_F32: Final = np.dtype("<f4")
_MATRIX_BYTES: Final = {n: struct.Struct(f"<{n * _N_INPUTS}f") for n in range(1, SMALL_ROWS + 1)}


def _matrix(values: Sequence[float], n: int) -> Matrix:
    """The model matrix of ``n`` rows given row by row (12 values each), each value rounded to
    float32 as numpy casts it (struct's ``f`` is the same C cast): one array over the packed
    bytes costs less than numpy reading nested lists. Read-only, as nothing writes to it."""
    return np.ndarray((n, _N_INPUTS), _F32, _MATRIX_BYTES[n].pack(*values))


class _V2Output(msgspec.Struct, gc=False):
    name: Literal[schema.OUTPUT_QUALITY, schema.OUTPUT_CLASS]  # type: ignore[valid-type]
    parameters: dict[str, Any] | None = None


def _outputs(requested: list[_V2Output] | None) -> tuple[str, ...]:
    return schema.OUTPUTS if requested is None else tuple(o.name for o in requested)


def _doc_type(name: str, tensors: tuple[Any, ...]) -> Any:
    return msgspec.defstruct(
        name,
        [
            ("inputs", list[Union[tensors]]),  # type: ignore[valid-type]  # noqa: UP007
            ("id", str | None, None),
            ("parameters", dict[str, Any] | None, None),
            ("outputs", list[_V2Output] | None, None),
        ],
        gc=False,
    )


def _datatypes(name: str) -> Any:
    return Literal[tuple(sorted(V2_DATATYPES[name]))]


# --- JSON tensors -------------------------------------------------------------------------------


def _json_tensor_type(name: str, value: Any) -> Any:
    """The struct of one named input tensor in JSON: checks its datatype and each value (number
    in range, or red/white) while decoding."""
    return msgspec.defstruct(
        f"_V2Tensor_{name}",
        [
            ("datatype", _datatypes(name)),
            ("shape", tuple[int, ...]),
            # Flat data only: nested rows ([[x], [y]]) are the parser's, as rarer.
            ("data", list[value]),
            ("parameters", dict[str, Any] | None, None),
        ],
        tag_field="name",
        tag=name,
        gc=False,
    )


_JSON_TENSORS: Final = (
    *(
        _json_tensor_type(f.name, kind)
        for f, kind in zip(schema.FEATURES, MEASUREMENTS, strict=True)
    ),
    _json_tensor_type(schema.WINE_TYPE, Literal[schema.WINE_TYPES]),
)
"""In the model's column order: the 11 measurements, then ``wine_type``."""
_JSON_DECODER: Final = msgspec.json.Decoder(_doc_type("_V2Doc", _JSON_TENSORS))
_JSON_COLUMN: Final = {t: i for i, t in enumerate(_JSON_TENSORS)}
_DATA = attrgetter("data")
_SHAPE = attrgetter("shape")


def _in_column_order(inputs: list[Any], types: tuple[type, ...]) -> list[Any] | None:
    """The input tensors in the model's column order (each exactly once), or None."""
    if types == _JSON_TENSORS:  # as clients usually send them
        return inputs
    if len(types) != _N_INPUTS or len(set(types)) != _N_INPUTS:
        return None  # a tensor missing or repeated
    return sorted(inputs, key=lambda t: _JSON_COLUMN[type(t)])


def _row_decoder(shape: Any) -> msgspec.json.Decoder[Any]:
    """A decoder of one row whose tensors come in the model's column order (as clients usually
    send them), each of ``shape``: the whole request checked by msgspec."""

    def tensor(name: str, value: Any) -> Any:
        # ``name`` a plain field: a tag outside a union may be left out.
        return msgspec.defstruct(
            f"_V2RowTensor_{name}",
            [
                ("name", Literal[name]),
                ("datatype", _datatypes(name)),
                ("shape", shape),
                ("data", tuple[value]),
                ("parameters", dict[str, Any] | None, None),
            ],
            gc=False,
        )

    tensors = (
        *(tensor(f.name, kind) for f, kind in zip(schema.FEATURES, MEASUREMENTS, strict=True)),
        tensor(schema.WINE_TYPE, Literal[schema.WINE_TYPES]),
    )
    doc = msgspec.defstruct(
        "_V2RowDoc",
        [
            ("inputs", tuple[tensors]),  # type: ignore[valid-type]
            ("id", str | None, None),
            ("parameters", dict[str, Any] | None, None),
            ("outputs", list[_V2Output] | None, None),
        ],
        gc=False,
    )
    return msgspec.json.Decoder(doc)


_ROW_DECODERS: Final = (
    (True, _row_decoder(tuple[Literal[1], Literal[1]])),
    (False, _row_decoder(tuple[Literal[1]])),
)
"""By output shape [N, 1]: the decoders of rows with every tensor [1, 1], or every one [1]."""


def decode_v2(body: bytes, max_rows: int) -> V2Infer | None:
    """A valid V2 request of up to ``SMALL_ROWS`` rows in flat JSON tensors, as
    ``contract.parsers.parse_v2_infer`` reads it; None for anything else (the parser decides).

    msgspec checks each tensor's datatype and values while decoding. A single row with its
    tensors in column order and of one shape is checked whole by msgspec; any other request is
    checked for the 12 tensors once each, shape [N] or [N, 1] with N values each, here.
    """
    if max_rows >= 1:
        for column_shape, decoder in _ROW_DECODERS:
            try:
                doc: Any = decoder.decode(body)
            except msgspec.DecodeError:
                continue
            row = [tensor.data[0] for tensor in doc.inputs]
            row[-1] = _FLAGS(row[-1])
            return V2Infer(_matrix(row, 1), doc.id, column_shape, _outputs(doc.outputs))
    return _decode_rows(body, max_rows)


# tuple[...] of the types as values (a type expression mypy cannot read).
_ROW_TYPE: Any = tuple.__class_getitem__((*MEASUREMENTS, WineType))
_WINE_ROW: Final[msgspec.json.Decoder[tuple[float, ...]]] = msgspec.json.Decoder(_ROW_TYPE)
"""One row's 12 values as a JSON array, checked as the row decoders check each tensor's value
(``wine_type`` read as its flag, ``typed_decode``'s enum of floats)."""
_VALUE_PIECES: Final = 2 * _N_INPUTS
"""The pieces of a body split at each ``]`` that the template reads: a value piece (the text
before a tensor's ``]``) after each of the 12 constant ones."""


class _JsonTemplate(NamedTuple):
    """A valid single-row request cut at each ``]``: wherever the tensors' ``data`` member
    follows their ``shape`` (as clients write them), the value pieces alternate with constant
    ones, and each value piece is one constant prefix (``, "data": [``) and the value's text."""

    pieces: int
    constant: list[bytes]
    """The pieces before each value piece."""
    tail: list[bytes]
    """The pieces after the last value piece."""
    prefix: bytes
    separator: bytes
    """``]`` and the prefix: what lies between two values once the value pieces are joined."""
    request: V2Infer
    """The template's own request: its id, output shape and outputs are every match's."""

    def read(self, body: bytes) -> V2Infer | None:
        """The request of a body that is the template with other values, or None.

        The constant pieces compare whole; the value texts, joined by commas, must then read as
        exactly 12 JSON values of the row's types: a value that is not one JSON number (or red
        or white) in range, or that does not sit alone in its piece after the prefix, breaks
        the array (a ``]`` left in it, a member's text, a count other than 12) and is declined.
        """
        count, constant, tail, prefix, separator, request = self
        pieces = body.split(b"]")
        if (
            len(pieces) != count
            or pieces[0:_VALUE_PIECES:2] != constant
            or pieces[_VALUE_PIECES:] != tail
        ):
            return None
        joined = b"]".join(pieces[1:_VALUE_PIECES:2])
        if not joined.startswith(prefix):
            return None
        try:
            row = _WINE_ROW.decode(b"[%b]" % joined[len(prefix) :].replace(separator, b","))
        except msgspec.DecodeError:
            return None
        return V2Infer(_matrix(row, 1), None, request.column_shape, request.outputs)


def _json_template(body: bytes, request: V2Infer) -> _JsonTemplate | None:
    """The template of a valid single-row request without an id (an id per request would
    make a template per request), when its layout makes one; checked by reading the body."""
    pieces = body.split(b"]")
    if request.id is not None or len(pieces) <= _VALUE_PIECES:
        return None
    values = pieces[1:_VALUE_PIECES:2]
    prefix = values[0][: values[0].rfind(b"[") + 1]
    if not prefix or not all(value.startswith(prefix) for value in values):
        return None
    template = _JsonTemplate(
        len(pieces),
        pieces[0:_VALUE_PIECES:2],
        pieces[_VALUE_PIECES:],
        prefix,
        b"]" + prefix,
        request,
    )
    read = template.read(body)
    if read is None or not np.array_equal(read.matrix, request.matrix):
        return None
    return template


class V2JsonDecoder:
    """``decode_v2`` with the layout of the last valid single-row request kept as a template
    (a client sends the same document but for the values): a request that fits it costs a
    split, a list comparison and the decoding of its 12 values (2.5-2.9 µs where msgspec reading
    the whole document and taking the values out of its structs took 3.6-4.7)."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._template: _JsonTemplate | None = None

    def decode(self, body: bytes) -> V2Infer | None:
        template = self._template
        if template is not None:  # made of a request decode_v2 took: max_rows >= 1
            request = template.read(body)
            if request is not None:
                return request
        request = decode_v2(body, self._max_rows)
        if request is not None and len(request.matrix) == 1:
            self._template = _json_template(body, request) or template
        return request


def _decode_rows(body: bytes, max_rows: int) -> V2Infer | None:
    """``decode_v2`` for any number of rows and tensors in any order."""
    try:
        doc: Any = _JSON_DECODER.decode(body)
    except msgspec.DecodeError:  # ValidationError is one: any refusal is the parser's to name
        return None
    inputs = _in_column_order(doc.inputs, tuple(map(type, doc.inputs)))
    if inputs is None:
        return None
    data = list(map(_DATA, inputs))
    n = len(data[0])
    if not 0 < n <= min(SMALL_ROWS, max_rows) or set(map(len, data)) != {n}:
        return None
    shapes = set(map(_SHAPE, inputs))
    if not shapes <= _SHAPES[n]:
        return None
    flat = [value for row in zip(*data, strict=True) for value in row]
    flat[_N_FEATURES::_N_INPUTS] = map(_FLAGS, data[-1])
    return V2Infer(_matrix(flat, n), doc.id, (n,) not in shapes, _outputs(doc.outputs))


# --- binary tensor data extension ---------------------------------------------------------------


class _BinaryParameters(msgspec.Struct, gc=False):
    # Other parameters are ignored, as the parser ignores them.
    binary_data_size: Annotated[int, msgspec.Meta(ge=0)]


def _binary_tensor_type(name: str) -> Any:
    """The struct of one named input tensor whose bytes follow the JSON header (its ``data``,
    if any, is not read: the parser reads the bytes)."""
    return msgspec.defstruct(
        f"_V2BinaryTensor_{name}",
        [
            ("datatype", _datatypes(name)),
            ("shape", Annotated[tuple[int, ...], msgspec.Meta(min_length=1, max_length=2)]),
            ("parameters", _BinaryParameters),
        ],
        tag_field="name",
        tag=name,
        gc=False,
    )


_BINARY_TENSORS: Final = tuple(
    _binary_tensor_type(n) for n in (*schema.FEATURE_NAMES, schema.WINE_TYPE)
)
_BINARY_DECODER: Final = msgspec.json.Decoder(_doc_type("_V2BinaryDoc", _BINARY_TENSORS))
_BINARY_COLUMN: Final = {t: i for i, t in enumerate(_BINARY_TENSORS)}
_WINE_TYPE_ELEMENTS: Final = {
    V2_BYTES_RED: WINE_TYPE_FLAGS["red"],
    V2_BYTES_WHITE: WINE_TYPE_FLAGS["white"],
}
"""is_white of a one-element BYTES tensor, by its bytes."""
_ZERO: Final = float(ord("0"))


class _Layout(NamedTuple):
    """Where a binary request's values lie, as its JSON header declares them."""

    rows: int
    size: int
    """Bytes of the binary section."""
    values: struct.Struct
    """All the measurements of the binary section, in its order (``wine_type``'s bytes
    skipped)."""
    row_major: itemgetter[Any] | None
    """The unpacked values -> the measurements row by row, in the schema's order (None when
    they come in that order)."""
    wine_type: tuple[int, int]
    """Where ``wine_type``'s bytes lie in the binary section (start, end)."""
    id: str | None
    column_shape: bool
    outputs: tuple[str, ...]


def _layout(header: bytes) -> _Layout | None:
    """The layout of a valid JSON header of up to ``SMALL_ROWS`` rows, or None."""
    try:
        doc: Any = _BINARY_DECODER.decode(header)
    except msgspec.DecodeError:
        return None
    inputs = doc.inputs
    types = tuple(map(type, inputs))
    if len(types) != _N_INPUTS or len(set(types)) != _N_INPUTS:
        return None
    n = inputs[0].shape[0]
    if not 0 < n <= SMALL_ROWS:
        return None
    allowed = _SHAPES[n]
    fmt = ["<"]
    starts = [0] * _N_FEATURES
    """Per measurement column (schema order): its first value's index in the unpacked tuple."""
    offset = unpacked = 0
    wine_type = (0, 0)
    column_shape = True
    for tensor, kind in zip(inputs, types, strict=True):
        size = tensor.parameters.binary_data_size
        if tensor.shape not in allowed:
            return None
        column_shape = column_shape and len(tensor.shape) == 2
        column = _BINARY_COLUMN[kind]
        if column == _N_FEATURES:
            fmt.append(f"{size}x")
            wine_type = (offset, offset + size)
        else:
            code, width = V2_STRUCT_CODES[tensor.datatype]
            if size != n * width:
                return None
            fmt.append(f"{n}{code}")
            starts[column] = unpacked
            unpacked += n
        offset += size
    order = [start + i for i in range(n) for start in starts]
    return _Layout(
        n,
        offset,
        struct.Struct("".join(fmt)),
        None if order == list(range(len(order))) else itemgetter(*order),
        wine_type,
        doc.id,
        column_shape,
        _outputs(doc.outputs),
    )


def _wine_type_flags(chunk: bytes, n: int) -> list[float] | None:
    """is_white per element of a BYTES tensor of exactly ``n`` elements ``red`` or ``white``."""
    if n == 1:
        flag = _WINE_TYPE_ELEMENTS.get(chunk)
        return None if flag is None else [flag]
    digits = v2_wine_type_digits(chunk)
    if digits is None or len(digits) != n:
        return None
    return [digit - _ZERO for digit in digits]


class _IdTemplate(NamedTuple):
    """A header with a request id, cut around the id's JSON string: any header of these bytes
    around a plain string (no escapes) has the same layout, and that string as its id."""

    before: bytes
    after: bytes
    layout: _Layout

    def id_of(self, body: bytes, header_length: int) -> str | None:
        """The id of a header (``body[:header_length]``) that fits the template, or None."""
        before, after = self.before, self.after
        end = header_length - len(after)
        if (
            end < len(before) + 2
            or not body.startswith(before)
            or not body.endswith(after, 0, header_length)
        ):
            return None
        text = body[len(before) + 1 : end - 1]
        if body[len(before)] != _QUOTE or body[end - 1] != _QUOTE or b'"' in text or b"\\" in text:
            return None
        try:
            request_id = text.decode()
        except UnicodeDecodeError:
            return None
        # A control character is no JSON string's (nor is an unprintable one taken here).
        return request_id if request_id.isprintable() else None


_QUOTE: Final = ord('"')
_PROBE_ID: Final = "@probe@"


def _id_template(header: bytes, layout: _Layout, request_id: str) -> _IdTemplate | None:
    """The template of a header naming ``request_id``, when the id is written as msgspec
    writes it, once; checked by reading the header with another id in that place."""
    text = msgspec.json.encode(request_id)
    if header.count(text) != 1:
        return None
    start = header.index(text)
    before, after = header[:start], header[start + len(text) :]
    probe = _layout(before + msgspec.json.encode(_PROBE_ID) + after)
    if probe is None or probe.id != _PROBE_ID or probe.size != layout.size:
        return None
    return _IdTemplate(before, after, layout)


class V2BinaryDecoder:
    """Valid small V2 requests with the binary tensor data extension -> ``V2Infer``, or None
    (``parse_v2_infer`` decides); the layouts of the last headers seen kept by their bytes.

    The header of the last request whose layout was kept is compared in place first (a client
    repeats its header): one ``startswith`` instead of copying the header out of the body and
    hashing it for the lookup, which cost as much as the rest of the decoding.
    """

    max_layouts: Final = 64
    max_header_bytes: Final = 4096
    """Longer headers (a few rows' take 1-2 kB) are not kept: 64 of them stay small."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._layouts: dict[bytes, _Layout | None] = {}
        self._last: tuple[bytes, _Layout | None] = (b"", None)
        """(header, layout) of the last request whose layout was kept."""
        self._id_template: _IdTemplate | None = None
        """The last header with a request id that made a template."""

    def decode(  # noqa: PLR0911 (one early return per refusal)
        self, body: bytes, header_length: int
    ) -> V2Infer | None:
        if not 0 < header_length <= len(body):
            return None
        last_header, layout = self._last
        request_id = None
        if header_length != len(last_header) or not body.startswith(last_header):
            layout, request_id = self._read_header(body, header_length)
        if layout is None:
            return None
        n = layout.rows
        if len(body) - header_length != layout.size or n > self._max_rows:
            return None
        start, end = layout.wine_type
        wine_type = body[header_length + start : header_length + end]
        values = layout.values.unpack_from(body, header_length)
        if layout.row_major is not None:
            values = layout.row_major(values)
        if n == 1:  # the common request, without the loops
            flag = _WINE_TYPE_ELEMENTS.get(wine_type)
            # NaN fails the comparisons, as infinities do.
            if flag is None or not _ONE_ROW_IN_RANGE(values):
                return None
            matrix = _matrix((*values, flag), 1)
            return V2Infer(matrix, request_id, layout.column_shape, layout.outputs)
        flags = _wine_type_flags(wine_type, n)
        if flags is None:
            return None
        # NaN fails both comparisons, as infinities fail one.
        if not (all(map(le, _ROW_MINIMA[n], values)) and all(map(le, values, _ROW_MAXIMA[n]))):
            return None
        flat = [0.0] * (n * _N_INPUTS)
        for j in range(_N_FEATURES):
            flat[j::_N_INPUTS] = values[j::_N_FEATURES]
        flat[_N_FEATURES::_N_INPUTS] = flags
        return V2Infer(_matrix(flat, n), request_id, layout.column_shape, layout.outputs)

    def _read_header(self, body: bytes, header_length: int) -> tuple[_Layout | None, str | None]:
        """(layout, request id) of the header ``body[:header_length]``. A short header's layout
        is kept (and the header remembered as the last) when it names no request id; a header
        with an id is tried against the id template, and (short) makes the next one."""
        template = self._id_template
        if template is not None:
            request_id = template.id_of(body, header_length)
            if request_id is not None:
                return template.layout, request_id
        header = body[:header_length]
        layout = self._layouts.get(header)
        if layout is None:
            layout = _layout(header)
            if layout is None:
                return None, None
            if len(header) > self.max_header_bytes:
                return layout, layout.id
            if layout.id is not None:
                # Likely never seen again, but for its id: not kept, a template instead.
                self._id_template = _id_template(header, layout, layout.id) or template
                return layout, layout.id
            if len(self._layouts) >= self.max_layouts:
                self._layouts.clear()
            self._layouts[header] = layout
        self._last = (header, layout)
        return layout, None
