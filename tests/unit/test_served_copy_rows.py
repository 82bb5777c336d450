"""``served_copy_rows``: answered requests as PostgreSQL binary ``COPY`` tuples, decoded here by
the layout of PostgreSQL's documentation (16-bit field count; each field a 32-bit big-endian
length, -1 for NULL, then its bytes), field for field equal to ``served_record``."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from winequality.contract import schema
from winequality.feedback_store.rows import (
    COPY_SIGNATURE,
    COPY_TRAILER,
    SERVED_COLUMNS,
    ServedRequest,
    served_copy_rows,
    served_record,
)


def decode(stream: bytes) -> list[list[bytes | None]]:
    assert stream.startswith(COPY_SIGNATURE)
    assert stream.endswith(COPY_TRAILER)
    body, pos, tuples = stream[len(COPY_SIGNATURE) : -len(COPY_TRAILER)], 0, []
    while pos < len(body):
        (count,) = struct.unpack_from(">h", body, pos)
        pos += 2
        fields: list[bytes | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", body, pos)
            pos += 4
            if length == -1:
                fields.append(None)
            else:
                fields.append(body[pos : pos + length])
                pos += length
        tuples.append(fields)
    return tuples


def as_record(fields: list[bytes | None]) -> tuple[Any, ...]:
    rid, at, version, n, features, quality = fields
    assert rid is not None
    assert at is not None
    assert n is not None
    return (
        rid.decode(),
        struct.unpack(">d", at)[0],
        None if version is None else version.decode(),
        struct.unpack(">i", n)[0],
        features,
        quality,
    )


def test_each_request_is_one_tuple_equal_to_its_served_record() -> None:
    matrix = np.arange(3 * schema.N_MODEL_COLUMNS, dtype=np.float32).reshape(3, -1)
    scores = np.array([[5.0, 6.0], [6.5, 7.0], [4.0, 3.0]], dtype=np.float32)[:, 0]  # a view
    requests = [
        ("a" * 32, 1_700_000_000.123456, ServedRequest(matrix, scores, "7")),
        ("b" * 32, 1_700_000_001.5, ServedRequest(matrix[1:2], None, None)),
        ("c" * 32, 1_700_000_002.0, ServedRequest(matrix.astype(np.float64), scores, "vé")),
    ]
    stream = COPY_SIGNATURE + served_copy_rows(requests) + COPY_TRAILER
    tuples = decode(stream)
    assert [len(t) for t in tuples] == [len(SERVED_COLUMNS)] * 3
    assert [as_record(t) for t in tuples] == [served_record(*r) for r in requests]


def test_slices_concatenate_to_the_whole() -> None:
    rows = np.full((1, schema.N_MODEL_COLUMNS), 0.5, dtype=np.float32)
    requests = [(f"{i:032x}", float(i), ServedRequest(rows, rows[0, :1], "1")) for i in range(9)]
    whole = served_copy_rows(requests)
    assert served_copy_rows(requests[:4]) + served_copy_rows(requests[4:]) == whole
    assert served_copy_rows([]) == b""
