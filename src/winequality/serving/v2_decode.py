"""A typed decoder for valid V2 ``infer`` requests in JSON tensors (the ``/predict`` one is
``typed_decode.py``): msgspec picks each input tensor's struct by its name and checks its
datatype and values while decoding. Whatever it does not accept goes to
``contract.parsers.parse_v2_infer``, which decides and names the problems: the decoder only ever
accepts what that parser accepts, with the same request (``tests/unit/serving/test_v2_decode.py``
compares the two).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, Final, Literal, Union

import msgspec
import numpy as np

from winequality.contract import schema
from winequality.contract.features import WINE_TYPE_FLAGS
from winequality.contract.parsers import _V2_DATATYPES as V2_DATATYPES
from winequality.contract.parsers import SMALL_ROWS, V2Request

# --- V2 infer, JSON tensors ---------------------------------------------------------------------


def _v2_tensor_type(name: str, datatypes: Any, value: Any) -> Any:
    """The struct of one named input tensor: msgspec picks it by ``name`` (a tagged union) and
    checks its datatype and each value (number in range, or red/white) while decoding."""
    return msgspec.defstruct(
        f"_V2Tensor_{name}",
        [
            ("datatype", datatypes),
            ("shape", list[int]),
            # Flat data only: nested rows ([[x], [y]]) are the parser's, as rarer.
            ("data", list[value]),
            ("parameters", dict[str, Any] | None, None),
        ],
        tag_field="name",
        tag=name,
        gc=False,
    )


_V2_TENSORS: Final = (
    *(
        _v2_tensor_type(
            f.name,
            Literal[tuple(sorted(V2_DATATYPES[f.name]))],
            Annotated[float, msgspec.Meta(ge=f.minimum, le=f.maximum)],
        )
        for f in schema.FEATURES
    ),
    _v2_tensor_type(
        schema.WINE_TYPE,
        Literal[tuple(sorted(V2_DATATYPES[schema.WINE_TYPE]))],
        Literal[schema.WINE_TYPES],
    ),
)
_V2_TENSOR_NAMES: Final = {t: t.__struct_config__.tag for t in _V2_TENSORS}


class _V2Output(msgspec.Struct, gc=False):
    name: Literal[schema.OUTPUT_QUALITY, schema.OUTPUT_CLASS]  # type: ignore[valid-type]
    parameters: dict[str, Any] | None = None


_V2Doc = msgspec.defstruct(
    "_V2Doc",
    [
        ("inputs", list[Union[_V2_TENSORS]]),  # type: ignore[valid-type]  # noqa: UP007
        ("id", str | None, None),
        ("parameters", dict[str, Any] | None, None),
        ("outputs", list[_V2Output] | None, None),
    ],
    gc=False,
)
_V2_DECODER: Final = msgspec.json.Decoder(_V2Doc)
_V2_OUTPUT_NAMES: Final = (schema.OUTPUT_QUALITY, schema.OUTPUT_CLASS)
_DATA = attrgetter("data")
_SHAPE = attrgetter("shape")


def decode_v2(body: bytes, max_rows: int) -> V2Request | None:
    """A valid V2 request of up to ``SMALL_ROWS`` rows in flat JSON tensors, as
    ``contract.parsers.parse_v2_infer`` reads it; None for anything else (the parser decides).

    msgspec checks each tensor's datatype and values while decoding; left here: the 12 tensors
    once each, shape [N] or [N, 1] with N values each. The checks run as ``map``s over the
    tensors (C loops): a Python loop over 12 tensors cost as much as the decoding.
    """
    try:
        doc: Any = _V2_DECODER.decode(body)
    except msgspec.DecodeError:
        return None
    inputs = doc.inputs
    if len(set(map(type, inputs))) != len(_V2_TENSORS) or len(inputs) != len(_V2_TENSORS):
        return None
    data = list(map(_DATA, inputs))
    n = len(data[0])
    shapes = set(map(tuple, map(_SHAPE, inputs)))
    if set(map(len, data)) != {n} or not 0 < n <= min(SMALL_ROWS, max_rows):
        return None
    if not shapes <= {(n,), (n, 1)}:
        return None
    columns = dict(zip(map(_V2_TENSOR_NAMES.__getitem__, map(type, inputs)), data, strict=True))
    flags = list(map(WINE_TYPE_FLAGS.__getitem__, columns[schema.WINE_TYPE]))
    rows = list(zip(*map(columns.__getitem__, schema.FEATURE_NAMES), strict=True))
    measurements = np.array(rows, dtype=np.float64)
    matrix = np.array([[*row, flag] for row, flag in zip(rows, flags, strict=True)], np.float32)
    outputs = _V2_OUTPUT_NAMES if doc.outputs is None else tuple(o.name for o in doc.outputs)
    return V2Request(matrix, measurements, doc.id, shapes == {(n, 1)}, outputs)
