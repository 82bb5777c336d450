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

import functools
import struct
from operator import attrgetter
from typing import Annotated, Any, Final, Literal

import msgspec
import numpy as np
from msgspec.structs import astuple

from winequality.contract import schema
from winequality.contract.features import WINE_TYPE_FLAGS, Matrix
from winequality.contract.parsers import SMALL_ROWS

_fields: list[tuple[str, Any]] = [
    (f.name, Annotated[float, msgspec.Meta(ge=f.minimum, le=f.maximum)]) for f in schema.FEATURES
]
_fields.append((schema.WINE_TYPE, Literal[schema.WINE_TYPES]))
# gc=False: the decoded structs hold floats and strings only, never a cycle.
_Wine = msgspec.defstruct("_Wine", _fields, forbid_unknown_fields=True, gc=False)
_Wines = msgspec.defstruct(
    "_Wines",
    [("wines", Annotated[list[_Wine], msgspec.Meta(min_length=1)])],  # type: ignore[valid-type]
    forbid_unknown_fields=True,
    gc=False,
)
_DECODER: Final = msgspec.json.Decoder(_Wines)
_ROW = attrgetter(*schema.FEATURE_NAMES, schema.WINE_TYPE)
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
    if n <= SMALL_ROWS:
        rows = []
        for wine in wines:
            row = list(_ROW(wine))
            row[-1] = WINE_TYPE_FLAGS[row[-1]]
            rows.append(row)
        # float64 -> float32 as the parser casts: the same matrix.
        return np.array(rows, dtype=np.float32)
    # Every wine as one tuple (its fields in model-column order, wine_type last) appended to one
    # flat list, the wine types swapped for their flags by a slice, and the doubles packed by
    # ``struct`` in one call, where numpy converting 1,200 Python floats one by one (or chaining
    # the tuples item by item) cost several times as much.
    flat: list[Any] = []
    extend = flat.extend
    for wine in wines:
        extend(astuple(wine))
    flat[_WIDTH - 1 :: _WIDTH] = map(WINE_TYPE_FLAGS.__getitem__, flat[_WIDTH - 1 :: _WIDTH])
    packed = _packer(n).pack(*flat)
    # float64 -> float32 as the parser casts: the same matrix.
    return np.frombuffer(packed, np.float64).reshape(n, _WIDTH).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _packer(rows: int) -> struct.Struct:
    """The native-double layout of ``rows`` wines (one per batch size, made once)."""
    return struct.Struct(f"{rows * _WIDTH}d")
