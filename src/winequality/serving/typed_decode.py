"""A typed decoder for valid ``/predict`` bodies: JSON straight into the model matrix.

``contract/parsers.py`` decodes a body into dicts and then checks them; for a 100-wine batch
most of that time goes to building and walking 1,100 dict entries. msgspec decodes into
structs whose fields and ranges come from ``schema.FEATURES`` and checks the rules while it
reads: exactly the schema's fields, numbers (an integer is one, a boolean is not) within the
physical ranges, ``wine_type`` red or white, one to ``max_rows`` wines, nothing else in the
document. Whatever it does not accept goes to ``contract.parsers.parse_predict``, which decides
and names the problems: the decoder only ever accepts what that parser accepts, with the same
matrix (``tests/unit/serving/test_typed_decode.py`` compares the two).
"""

from __future__ import annotations

import enum
import functools
import struct
from typing import Annotated, Any, Final

import msgspec
import numpy as np
from msgspec.structs import astuple

from winequality.contract import schema
from winequality.contract.features import WINE_TYPE_FLAGS, Matrix


class _Flag(float):
    """A ``wine_type`` member: its name as the enum value, and the model's flag as the float
    it is."""

    _value_: str

    def __new__(cls, name: str, flag: float) -> _Flag:
        member = float.__new__(cls, flag)
        member._value_ = name
        return member


# msgspec decodes a string enum's names itself (anything else is refused); the members being
# floats, a wine's fields are all doubles to ``struct`` as they come, where swapping the names
# for their flags in the flat list cost about 2 us of a 100-wine batch.
WineType = enum.Enum(  # type: ignore[misc]
    "WineType", {name: (name, flag) for name, flag in WINE_TYPE_FLAGS.items()}, type=_Flag
)
# The members' repr shows their name: float's, which Enum picks for a float type, refuses a str.
WineType._value_repr_ = repr  # type: ignore[attr-defined]

MEASUREMENTS: Final = tuple(
    Annotated[float, msgspec.Meta(ge=f.minimum, le=f.maximum)] for f in schema.FEATURES
)
"""The type of each measurement in the schema's order: a number within its physical range
(the typed decoders' one rule for a value, beside ``WineType``)."""
_fields: list[tuple[str, Any]] = [
    (f.name, kind) for f, kind in zip(schema.FEATURES, MEASUREMENTS, strict=True)
]
_fields.append((schema.WINE_TYPE, WineType))
# gc=False: the decoded structs hold floats and enum members only, never a cycle.
_Wine = msgspec.defstruct("_Wine", _fields, forbid_unknown_fields=True, gc=False)
_Wines = msgspec.defstruct(
    "_Wines",
    [("wines", Annotated[list[_Wine], msgspec.Meta(min_length=1)])],  # type: ignore[valid-type]
    forbid_unknown_fields=True,
    gc=False,
)
_DECODER: Final = msgspec.json.Decoder(_Wines)
_WIDTH: Final = schema.N_MODEL_COLUMNS


def decode_wines(body: bytes, max_rows: int) -> Matrix | None:
    """The model matrix of a valid ``{"wines": [...]}`` body, or None (not decided here)."""
    try:
        wines: list[Any] = _DECODER.decode(body).wines  # type: ignore[attr-defined]
    except msgspec.DecodeError:  # ValidationError is one: any refusal is the parser's to name
        return None
    n = len(wines)
    if n > max_rows:
        return None
    # Every wine as one tuple (its fields in model-column order, the wine type's flag last)
    # appended to one flat list, and the doubles packed by ``struct`` in one call straight into
    # the matrix, where numpy converting 1,200 Python floats one by one (or chaining the tuples
    # item by item) cost several times as much. The "f" layout casts each double to float32
    # (round to nearest) as the parser's astype does: the same matrix.
    flat: list[Any] = []
    extend = flat.extend
    for wine in wines:
        extend(astuple(wine))
    matrix = np.empty((n, _WIDTH), dtype=np.float32)
    _packer(n).pack_into(matrix.data, 0, *flat)
    return matrix


@functools.lru_cache(maxsize=256)
def _packer(rows: int) -> struct.Struct:
    """The native-float32 layout of ``rows`` wines (one per batch size, made once)."""
    return struct.Struct(f"{rows * _WIDTH}f")
